"""Where commands write: every output checked before any work (one line, exit 2, nothing written), a fresh
run directory without --out, and one overwrite rule for `train` and `pretrain`."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY_TRAIN_FLAGS, write_teacher
from fastlrwa.cli import cli


def _invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_error_line(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(root.rglob("*"))}


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch) -> Path:
    """A folder in which creating anything fails with EROFS, as on a read-only mount.

    The tests run as root in CI, for whom permission bits do not stop a write, and mounting needs privileges:
    the file system calls that create (os.open with O_CREAT, os.mkdir) are made to fail under the folder,
    exactly as the kernel answers on a read-only mount.
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path) -> bool:
        return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(folder)

    def refused(path) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and inside(path):
            raise refused(path)
        return real_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if inside(path):
            raise refused(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)
    return folder


@pytest.mark.parametrize("where", ["read-only", "below-read-only", "regular-file", "below-regular-file"])
def test_train_refuses_an_unwritable_out_before_any_work(where, tmp_path, read_only_dir, lenet_teacher):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    out = {
        "read-only": read_only_dir,
        "below-read-only": read_only_dir / "run",
        "regular-file": a_file,
        "below-regular-file": a_file / "run",
    }[where]
    before = _snapshot(tmp_path)
    result = _invoke("train", "--out", out, "--teacher", lenet_teacher, *TINY_TRAIN_FLAGS)
    assert result.exit_code == 2, result.output
    line = _one_error_line(result)
    assert "--out" in line and str(out) in line
    assert "teacher (" not in result.output  # nothing ran: the teacher was not even evaluated
    assert _snapshot(tmp_path) == before


def test_pretrain_refuses_an_unwritable_out_before_training(read_only_dir):
    result = _invoke("pretrain", "--dataset", "digits", "--epochs", "1", "--no-progress", "--out", read_only_dir / "t")
    assert result.exit_code == 2 and "--out" in _one_error_line(result)
    assert "epoch 1/" not in result.output
    assert list(read_only_dir.iterdir()) == []


def test_export_and_report_refuse_unwritable_outputs(tmp_path, read_only_dir, lenet_teacher):
    exported = _invoke("export", "--checkpoint", lenet_teacher, "--out", read_only_dir / "export")
    assert exported.exit_code == 2 and "--out" in _one_error_line(exported)
    assert "compiling" not in exported.output
    run = tmp_path / "run"
    assert _invoke("train", "--out", run, "--teacher", lenet_teacher, *TINY_TRAIN_FLAGS).exit_code == 0
    for flag in ("--out", "--csv", "--plot"):
        result = _invoke("report", run, flag, read_only_dir / "table.png")
        assert result.exit_code == 2 and flag in _one_error_line(result)
    assert list(read_only_dir.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits (the EROFS test covers root)")
def test_a_folder_without_write_permission_is_refused(tmp_path, lenet_teacher):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = _invoke("train", "--out", locked / "run", "--teacher", lenet_teacher, *TINY_TRAIN_FLAGS)
    assert result.exit_code == 2 and "cannot write" in _one_error_line(result)


def test_without_out_every_run_gets_a_fresh_directory_and_says_which(tmp_path, monkeypatch, lenet_teacher):
    monkeypatch.chdir(tmp_path)
    first = _invoke("train", "--teacher", lenet_teacher, *TINY_TRAIN_FLAGS)
    second = _invoke("train", "--teacher", lenet_teacher, *TINY_TRAIN_FLAGS)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert f"run directory: {Path('runs') / 'digits'} " in first.output
    assert f"run directory: {Path('runs') / 'digits-2'} " in second.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["digits", "digits-2"]
    for name in ("digits", "digits-2"):
        assert len((tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()) == 1
    # A named --out keeps its protection; --resume and --force need one.
    again = _invoke("train", "--out", Path("runs") / "digits", "--teacher", lenet_teacher, *TINY_TRAIN_FLAGS)
    assert again.exit_code == 2 and "--force" in _one_error_line(again)
    for flag in ("--resume", "--force"):
        result = _invoke("train", flag, "--teacher", lenet_teacher, *TINY_TRAIN_FLAGS)
        assert result.exit_code == 2 and "--out" in _one_error_line(result)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["digits", "digits-2"]


def test_pretrain_refuses_to_overwrite_a_teacher_without_force(tmp_path):
    out = tmp_path / "teacher"
    args = ["pretrain", "--dataset", "digits", "--epochs", "1", "--no-progress", "--out", out]
    assert _invoke(*args, "--seed", "1").exit_code == 0
    first = (out / "model.pt").read_bytes()
    refused = _invoke(*args, "--seed", "2")
    assert refused.exit_code == 2 and "--force" in _one_error_line(refused)
    assert "epoch 1/" not in refused.output and (out / "model.pt").read_bytes() == first
    replaced = _invoke(*args, "--seed", "2", "--force")
    assert replaced.exit_code == 0 and (out / "model.pt").read_bytes() != first
    assert json.loads((out / "metrics.json").read_text())["recipe"]["seed"] == 2


def test_the_teacher_cache_is_checked_before_first_use_training(tmp_path, monkeypatch, read_only_dir):
    monkeypatch.setenv("FASTLRWA_CACHE", str(read_only_dir / "cache"))
    result = _invoke("train", "--out", tmp_path / "run", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "FASTLRWA_CACHE" in line and "--teacher" in line and "training one now" not in result.output


def test_a_damaged_cached_teacher_says_that_deleting_it_retrains_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTLRWA_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "teachers" / "digits-lenet5" / "model.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(write_teacher(tmp_path / "t.pt", "lenet5").read_bytes()[:300])
    result = _invoke("train", "--out", tmp_path / "run", *TINY_TRAIN_FLAGS)
    assert result.exit_code == 2
    assert f"delete {cached.parent} and run again" in _one_error_line(result)
