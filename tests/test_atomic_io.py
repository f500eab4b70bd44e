"""Atomic writes: the target is either the old or the new content, never partial, and no temp file is left."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from fastlrwa.atomic_io import atomic_torch_save, atomic_write_json, atomic_write_text, atomic_write_with


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "state.pt"
    atomic_torch_save({"w": torch.arange(5)}, target)

    def broken(handle):
        handle.write(b"half a checkpoint")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, broken)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.arange(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_round_trips_and_mode_follows_umask(tmp_path):
    atomic_write_text(tmp_path / "a" / "b.txt", "héllo")
    assert (tmp_path / "a" / "b.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write_json(tmp_path / "c.json", {"x": [1, 2.5]})
    assert (tmp_path / "c.json").read_text().strip().startswith("{")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "c.json").st_mode) == 0o666 & ~umask
