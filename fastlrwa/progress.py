"""Live progress for long loops: a rich progress bar, or one plain line per epoch when disabled.

Piped to a file or another program, stderr gets the plain lines only, each whole: no bar (its redraws
leave fragments in a file) and no wrapping at the 80 columns rich assumes without a terminal.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class EpochProgress:
    """A bar over the steps of the current epoch with the latest numbers beside it.

    Without a console it shows nothing at all (the ranks of a distributed run other than rank 0).
    """

    def __init__(self, progress: Progress | None, console: Console | None) -> None:
        self._progress = progress
        self._console = console
        self._task = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.start(f"epoch {epoch}/{epochs}", steps)

    def start(self, description: str, steps: int) -> None:
        """A bar of ``steps`` for a stage of the run (an epoch, the synthesis of ZSKD's impressions)."""
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=steps, info="")

    def advance(self, steps: int = 1, info: str | None = None) -> None:
        if self._progress is None or self._task is None:
            return
        if info is None:
            self._progress.advance(self._task, steps)
        else:
            self._progress.update(self._task, advance=steps, info=info)

    def log(self, line: str) -> None:
        """A line that stays above the bar (or is printed plainly without a bar)."""
        if self._console is None:
            return
        self._console.print(line, highlight=False, markup=False)


@contextmanager
def epoch_progress(enabled: bool, *, silent: bool = False) -> Iterator[EpochProgress]:
    """A live bar when ``enabled`` and stderr is a terminal (else one plain line per epoch); ``silent``: neither
    bar nor lines."""
    if silent:
        yield EpochProgress(None, None)
        return
    console = Console(stderr=True, soft_wrap=True)
    if not enabled or not console.is_terminal:
        yield EpochProgress(None, console)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield EpochProgress(progress, console)
