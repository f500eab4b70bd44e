"""A run's TensorBoard event file, written in the training thread.

``SummaryWriter`` writes from a background thread: a full disk there prints that thread's traceback and
reaches the run only at a later call, if at all. Here an epoch's events go to the file in one append,
forced to disk; an append that fails is cut back off, so no partial record is left, and the ``OSError``
is raised where the run's write guard turns it into one line.
"""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path
from typing import Any


class EventLog:
    """The events of one process in ``directory``; ``first_step`` is the first step it logs.

    Events of ``first_step`` and later in the folder's older files (a run resumed after a crash, which
    logs those steps again) are hidden from TensorBoard by the session start this file opens with.
    """

    def __init__(self, directory: Path, first_step: int) -> None:
        self.directory = Path(directory)
        self.first_step = first_step
        self._path: Path | None = None
        self._pending: list[Any] = []

    def scalar(self, tag: str, value: float, step: int) -> None:
        from torch.utils.tensorboard.summary import scalar

        self._add(scalar(tag, value), step)

    def histogram_raw(self, tag: str, step: int, **buckets: Any) -> None:
        """``buckets``: the fields of ``torch.utils.tensorboard.summary.histogram_raw`` after the tag."""
        from torch.utils.tensorboard.summary import histogram_raw

        self._add(histogram_raw(tag, **buckets), step)

    def image(self, tag: str, image: Any, step: int) -> None:
        """``image``: a ``[3, H, W]`` tensor in [0, 1]."""
        from torch.utils.tensorboard.summary import image as image_summary

        self._add(image_summary(tag, image, dataformats="CHW"), step)

    def _add(self, summary: Any, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._pending.append(Event(wall_time=time.time(), step=step, summary=summary))

    def _opening_events(self) -> list[Any]:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        now = time.time()
        return [
            Event(wall_time=now, step=self.first_step, file_version="brain.Event:2"),
            Event(wall_time=now, step=self.first_step, session_log=SessionLog(status=SessionLog.START)),
        ]

    def flush(self) -> None:
        """Append the events added since the last flush; on an ``OSError`` the file is as it was before."""
        from tensorboard.summary.writer.record_writer import RecordWriter

        opening = self._path is None
        events = (self._opening_events() if opening else []) + self._pending
        if not events:
            return
        buffer = io.BytesIO()
        records = RecordWriter(buffer)
        for event in events:
            records.write(event.SerializeToString())
        if opening:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.0"
            path = self.directory / name
        else:
            path = self._path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            try:
                data = buffer.getvalue()
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)
                if opening:
                    os.unlink(path)
                raise
        finally:
            os.close(fd)
        self._path = path
        self._pending = []
