"""A TorchScript teacher turned into an exported program, so that it serves what an exported teacher serves:
modules for its BatchNorm calls and its last Linear (``fastlrwa.models.exported_graph``), which DFQ and the
activation prior hook.

torch's converter (``torch._export.converter.TS2EPConverter``, a private API of torch 2.14) translates the
script's graph, TorchScript IR read from the archive by ``torch.jit.load`` (no pickled Python), into an FX graph
and traces that with ``torch.export`` on an example batch: no code of the file's author runs, only the ops its
graph names. It cannot translate every script (some control flow and ops have no handler), and a translation is
kept only where its outputs equal the script's on a random batch of another size than the example's (which also
shows that its batch dimension stayed dynamic). Otherwise the script runs as it is, without hooks, and the reason
is kept for the run's first line and for the refusal of the priors that need hooks.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn

from fastlrwa.models.exported_graph import materialise_modules

# The example batch the converter traces with, and the batch the translation is checked on: two sizes other than
# 1 (a size of 1 would be specialised into the graph), odd, so that neither is a size the models favour.
EXAMPLE_BATCH, CHECK_BATCH = 3, 5
# The converter reports on these loggers (a dimension specialised to the example's size, the tracing): messages
# for torch's developers, not for the user of a run.
_EXPORT_LOGGERS = ("torch._export", "torch.export", "torch.fx.experimental.symbolic_shapes", "torch._dynamo")

CONVERTED = "converted to a torch.export program"
KEPT = "run as TorchScript, without hooks"


@dataclass(frozen=True)
class ScriptTeacher:
    """The module a TorchScript teacher runs as, and how it came to be (``CONVERTED`` or why it was not)."""

    module: nn.Module
    note: str

    @property
    def converted(self) -> bool:
        return self.note == CONVERTED


@contextmanager
def _quiet_converter() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _EXPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        # "Manually populate ... num_batches_tracked": a buffer the eval-mode graph never reads.
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def script_teacher(script: torch.jit.ScriptModule, input_shape: tuple[int, ...]) -> ScriptTeacher:
    """``script`` (in eval mode) as an exported program with its BatchNorm and head calls made modules, checked
    against the script on ``CHECK_BATCH`` random inputs of ``input_shape`` (one image's); the script itself
    where that fails. The random inputs come from a stream of their own: the run's stream is not touched."""
    script.eval()
    stream = torch.Generator().manual_seed(0)
    example = torch.randn((EXAMPLE_BATCH, *input_shape), generator=stream)
    check = torch.randn((CHECK_BATCH, *input_shape), generator=stream)
    from torch._export.converter import TS2EPConverter  # private in torch 2.14: imported where it is used

    try:
        with _quiet_converter():
            program = TS2EPConverter(script, (example,)).convert()
            module = materialise_modules(program.module())
        with torch.no_grad():
            expected, got = script(check), module(check)
    except Exception as error:  # the converter raises many types on what it cannot translate
        return ScriptTeacher(script, f"{KEPT}: torch's converter failed ({_first_line(error)})")
    if not (isinstance(got, torch.Tensor) and isinstance(expected, torch.Tensor)) or got.shape != expected.shape:
        return ScriptTeacher(script, f"{KEPT}: the converted program's output is not the script's")
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        difference = (got - expected).abs().max().item()
        return ScriptTeacher(
            script,
            f"{KEPT}: the converted program's outputs differ from the script's (by up to {difference:.2g})",
        )
    return ScriptTeacher(module, CONVERTED)
