"""Ctrl-C (SIGINT) and SIGTERM, which batch schedulers send before they kill a job: how a command stops on them.

Two regimes. While a command loads (imports, data, a teacher, building the run) nothing is lost by stopping
at once, so the first signal raises ``StoppedAtOnce`` where the program is (``stop_at_once``, installed by the
CLI for every command). Once a run trains, the first signal only asks the loop to stop at the next iteration
boundary with a checkpoint (``stop_request``) and a second stops at once. Either way the command ends as one
line with the exit code of the signal (130 for SIGINT, 143 for SIGTERM: ``stop_error``).

Torch-free: the CLI installs it before any heavy import.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Any, Iterator

from fastlrwa.errors import Interrupted, Terminated

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived during training; a checkpoint was written at the last safe point."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StoppedAtOnce(KeyboardInterrupt):
    """A SIGINT or SIGTERM that stopped the program where it was (while loading, or a second one in training).

    A ``KeyboardInterrupt``, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StoppedAgain(StoppedAtOnce):
    """The second SIGINT or SIGTERM in training, after the first asked the loop to stop (``stop_request``)."""


def stop_error(stop: BaseException) -> type[Interrupted]:
    """The error a stop ends with: ``Terminated`` (exit 143) for SIGTERM, ``Interrupted`` (130) for Ctrl-C (a
    plain ``KeyboardInterrupt`` is Python's own Ctrl-C)."""
    return Terminated if getattr(stop, "signum", None) == signal.SIGTERM else Interrupted


def stop_name(stop: BaseException) -> str:
    """How the messages name the signal of a stop."""
    return "SIGTERM" if getattr(stop, "signum", None) == signal.SIGTERM else "Ctrl-C"


@contextmanager
def _handling(handler: Any) -> Iterator[bool]:
    """``handler`` for both stop signals inside the block, the previous ones restored after it. Yields False
    where signals cannot be handled (not the main thread): there they behave as usual."""
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, handler)
    except ValueError:
        yield False
        return
    try:
        yield True
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def stop_at_once() -> Iterator[None]:
    """Inside the block the first SIGINT or SIGTERM raises ``StoppedAtOnce``, SIGTERM included (whose default
    ends the process with no word and no cleanup: no lock given back, no line saying what is kept).

    Raised where the program is, the stop can break what it interrupts (a module half imported fails again on
    its next use, numpy's with a ``RecursionError``): whatever error leaves the block after a stop signal is
    that stop."""
    received = {"signum": 0}

    def handler(signum: int, frame: Any) -> None:
        received["signum"] = signum
        raise StoppedAtOnce(signum)

    with _handling(handler):
        try:
            yield
        except Exception as error:
            if not received["signum"] or isinstance(error, Interrupted):
                raise
            raise StoppedAtOnce(received["signum"]) from None


@contextmanager
def stop_request() -> Iterator[dict[str, int]]:
    """The first SIGINT or SIGTERM asks the loop to stop at the next safe point (``stop`` holds its number);
    a second one of either stops at once (``StoppedAgain``, naming the second signal, which sets the exit
    code)."""
    request = {"stop": 0}
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def handler(signum: int, frame: Any) -> None:
        if request["stop"]:
            for number, old in previous.items():
                signal.signal(number, old)
            raise StoppedAgain(signum)
        request["stop"] = signum

    with _handling(handler):
        yield request
