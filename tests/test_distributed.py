"""Distributed training on CPU with gloo and 2 processes: averaged gradients, identical weights, agreement on
errors, NaN and Ctrl-C, and exact resume, through forked workers and through torchrun itself.

The workers are forked from a fork server, a fresh process that has run nothing of the tests: a fork of the test
process itself can be refused by autograd after what earlier tests in that process ran ("Unable to handle
autograd's threading in combination with fork-based multiprocessing", seen under pytest-xdist). They report what
they saw in files and the assertions run here.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.multiprocessing as mp

from conftest import tiny_overrides, write_teacher
from fastlrwa.commands import distill as distill_command
from fastlrwa.commands.train import run_train
from fastlrwa.config.presets import train_config
from fastlrwa.distributed import DistributedContext
from fastlrwa.errors import ConfigError, DataNotFoundError, Interrupted, NonFiniteLossError
from fastlrwa.models.batchnorm import batchnorm_running_stats
from fastlrwa.runtime import seed_everything
from fastlrwa.trainer.build import build_run
from fastlrwa.trainer.loop import Trainer
from fastlrwa.trainer.run_lock import LOCK_FILE, run_dir_lock
from fastlrwa.updates.student_update import StudentUpdate

WORLD = 2
pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join_as(rank: int, port: int) -> None:
    """Give this worker the environment torchrun gives its processes."""
    os.environ.update(
        WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )


def _on_two_ranks(worker: Callable[..., None], *args: Any) -> None:
    """Run ``worker(rank, *args)`` in 2 processes; a worker's exception fails the test with its traceback.

    Forked from the fork server, which has touched neither CUDA nor autograd, whatever this process has.
    """
    mp.start_processes(worker, args=args, nprocs=WORLD, join=True, start_method="forkserver")


def _train(out: Path, teacher: Path, *, resume: bool = False, **extra: Any) -> list[dict]:
    overrides = tiny_overrides(out, teacher, **{"runtime.device": "cpu", **extra})
    return run_train(train_config("digits", overrides), resume=resume, explicit=set(overrides))


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ----- one process ------------------------------------------------------------------------------------------------
def test_without_torchrun_there_is_one_process_and_no_process_group(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with DistributedContext.from_environment("cpu") as context:
        assert (context.rank, context.world_size, context.is_main, context.is_distributed) == (0, 1, True, False)
        assert not torch.distributed.is_initialized()
        values = [torch.randn(5, 3), torch.randn(7)]
        kept = [v.clone() for v in values]
        context.average_(values)
        assert all(torch.equal(a, b) for a, b in zip(values, kept))
        assert context.mean_over_ranks({"loss": 0.25}) == {"loss": 0.25} and context.any_rank(True)
        assert context.gather_to_main("part") == ["part"] and context.first_report(None) is None
        with pytest.raises(DataNotFoundError, match="own"), context.fail_together():
            raise DataNotFoundError("own")


@pytest.mark.parametrize("environment", [{"WORLD_SIZE": "two"}, {"WORLD_SIZE": "2", "LOCAL_RANK": "0"}])
def test_a_broken_torchrun_environment_is_one_clear_error(monkeypatch, environment):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="torchrun --nproc_per_node") as error:
        DistributedContext.from_environment("cpu")
    assert "\n" not in str(error.value)


# ----- gradients and weights -----------------------------------------------------------------------------------------
def _mae_loss_float64(student: torch.nn.Module, teacher: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return (student(images) - teacher(images)).abs().mean()


def _float64_copies(*modules: torch.nn.Module) -> list[torch.nn.Module]:
    return [copy.deepcopy(m).double() for m in modules]


def _gradient_worker(rank: int, port: int, teacher: Path, out: Path) -> None:
    """DFAD steps: float64 reference gradients of this rank's own batch, and what the update installed."""
    _join_as(rank, port)
    torch.set_num_threads(1)
    with DistributedContext.from_environment("cpu") as context:
        config = train_config("digits", tiny_overrides(out / "run", teacher, method="dfad"))
        # Models initialised differently on each rank: building the run must make them rank 0's.
        seed_everything(config.runtime.seed + rank)
        parts = build_run(config, teacher, context)
        generator_params = [p for p in parts.generator.parameters() if p.requires_grad]
        student_params = list(parts.student.parameters())
        initial = torch.cat([p.detach().reshape(-1) for p in student_params + generator_params])
        initial_buffers = torch.cat([b.reshape(-1).float() for b in parts.generator.buffers()])
        report: dict[str, list] = {
            "local_generator": [],
            "installed_generator": [],
            "local_student": [],
            "installed_student": [],
        }
        for _ in range(3):
            z = torch.randn(config.schedule.batch_size, config.generator.latent_dim, generator=parts.rng)
            generator64, student64, teacher64 = _float64_copies(parts.generator, parts.student, parts.teacher)
            # dfad's generator objective written out: maximise the teacher-student MAE.
            loss = -config.loss.adv * _mae_loss_float64(student64, teacher64, generator64(z.double()))
            report["local_generator"].append(
                torch.autograd.grad(loss, [p for p in generator64.parameters() if p.requires_grad])
            )
            images, teacher_logits, _, _ = parts.generator_update.step(z)
            report["installed_generator"].append([p.grad.clone() for p in generator_params])

            (student64,) = _float64_copies(parts.student)
            loss = (student64(images.double()) - teacher_logits.double()).abs().mean()
            report["local_student"].append(torch.autograd.grad(loss, list(student64.parameters())))
            parts.student_update.step(images, teacher_logits, None, None)
            report["installed_student"].append([p.grad.clone() for p in student_params])
        report["initial"] = (initial, initial_buffers)
        report["parameters"] = torch.cat([p.detach().reshape(-1) for p in student_params + generator_params])
        report["bn_before"] = {k: v.clone() for k, v in batchnorm_running_stats(parts.generator).items()}
        context.average_(list(batchnorm_running_stats(parts.generator).values()))
        report["bn_after"] = {k: v.clone() for k, v in batchnorm_running_stats(parts.generator).items()}
    torch.save(report, out / f"rank{rank}.pt")


def test_gradients_are_the_mean_of_the_ranks_and_weights_stay_identical(tmp_path, lenet_teacher):
    _on_two_ranks(_gradient_worker, _free_port(), lenet_teacher, tmp_path)
    reports = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for part in ("generator", "student"):
        for step in range(3):
            local = [r[f"local_{part}"][step] for r in reports]
            installed = [r[f"installed_{part}"][step] for r in reports]
            # the ranks drew different batches, so there was something to average
            assert any(not torch.allclose(a, b) for a, b in zip(*local))
            expected = [(grad0 + grad1) / 2 for grad0, grad1 in zip(*local)]
            # float32 against float64 through the generator's BatchNorms: measured errors reach 3e-6 of the
            # largest gradient; the ranks' own gradients differ from their mean by far more than this slack
            scale = max(e.abs().max().item() for e in expected)
            for ours, theirs, mean in zip(installed[0], installed[1], expected):
                assert torch.equal(ours, theirs)
                assert torch.allclose(ours.double(), mean, rtol=1e-4, atol=2e-5 * scale), part
    assert all(torch.equal(a, b) for a, b in zip(reports[0]["initial"], reports[1]["initial"]))
    assert torch.equal(reports[0]["parameters"], reports[1]["parameters"])
    before = [r["bn_before"] for r in reports]
    assert before[0] and any(not torch.equal(before[0][k], before[1][k]) for k in before[0])
    for key in before[0]:
        assert torch.equal(reports[0]["bn_after"][key], reports[1]["bn_after"][key])
        assert torch.allclose(reports[0]["bn_after"][key], (before[0][key] + before[1][key]) / 2)


def _lrwa_gradient_worker(rank: int, port: int, teacher: Path, out: Path) -> None:
    """The LRWA update (torch.func gradients, memory replay): this rank's own gradients and the installed ones."""
    _join_as(rank, port)
    torch.set_num_threads(1)
    with DistributedContext.from_environment("cpu") as context:
        config = train_config("digits", tiny_overrides(out / "run", teacher, method="lrwa-mb"))
        seed_everything(config.runtime.seed)
        parts = build_run(config, teacher, context)
        update = parts.student_update
        z = torch.randn(config.schedule.batch_size, config.generator.latent_dim, generator=parts.rng)
        images, teacher_logits, _, _ = parts.generator_update.step(z)
        parts.replay.observe_student_batch(images, teacher_logits)
        parts.replay.end_epoch(1)
        x_mem, t_mem = parts.replay.sample()
        buffers = {name: value.clone() for name, value in update.buffers.items()}
        local, _ = update.with_replay(update.params, buffers, images, teacher_logits, x_mem, t_mem, loss_scale=None)
        update.step(images, teacher_logits, x_mem, t_mem)
        torch.save(
            {
                "local": {k: v.clone() for k, v in local.items()},
                "installed": {k: p.grad.clone() for k, p in update.params.items()},
            },
            out / f"rank{rank}.pt",
        )


def test_the_lrwa_update_averages_its_torch_func_gradients(tmp_path, lenet_teacher):
    _on_two_ranks(_lrwa_gradient_worker, _free_port(), lenet_teacher, tmp_path)
    reports = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    local = [r["local"] for r in reports]
    assert any(not torch.allclose(local[0][k], local[1][k]) for k in local[0])
    for name in local[0]:
        assert torch.equal(reports[0]["installed"][name], reports[1]["installed"][name])
        expected = (local[0][name].double() + local[1][name].double()) / 2
        assert torch.allclose(reports[0]["installed"][name].double(), expected, rtol=1e-6, atol=1e-9)


# ----- agreement ---------------------------------------------------------------------------------------------------
def _failure_worker(rank: int, port: int, teacher: Path, out: Path) -> None:
    """Only rank 0 loads the test set; an empty data root makes it fail there alone."""
    _join_as(rank, port)
    try:
        overrides = tiny_overrides(
            out / "run",
            teacher,
            **{"runtime.device": "cpu", "data.dataset": "mnist", "data.data_root": str(out / "empty")},
        )
        run_train(train_config("digits", overrides), explicit=set(overrides))
    except DataNotFoundError as error:
        (out / f"rank{rank}.txt").write_text(str(error))


def test_an_error_on_rank_0_alone_ends_every_rank_with_the_same_message(tmp_path):
    teacher = write_teacher(tmp_path / "mnist.pt", "lenet5", dataset="mnist")
    (tmp_path / "empty").mkdir()
    _on_two_ranks(_failure_worker, _free_port(), teacher, tmp_path)
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in range(WORLD)]
    assert messages[0] == messages[1] and "mnist" in messages[0] and "\n" not in messages[0]
    assert not (tmp_path / "run" / "config.json").exists()


def _teacher_worker(rank: int, port: int, teacher: Path, out: Path) -> None:
    """A resolver that records who called it stands in for the first-use pretraining of the teacher."""
    torch.set_num_threads(1)
    _join_as(rank, port)

    def resolve(*args: Any, **kwargs: Any) -> Path:
        (out / f"resolved_by_rank{rank}").touch()
        return teacher

    distill_command.resolve_teacher_path = resolve
    history = _train(out / "run", teacher, **{"schedule.epochs": 1, "teacher.path": None})
    (out / f"epochs{rank}.json").write_text(json.dumps([record["epoch"] for record in history]))


def test_only_rank_0_resolves_the_teacher_and_every_rank_trains_with_it(tmp_path, lenet_teacher):
    _on_two_ranks(_teacher_worker, _free_port(), lenet_teacher, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("resolved_by_rank*")) == ["resolved_by_rank0"]
    assert [json.loads((tmp_path / f"epochs{r}.json").read_text()) for r in range(WORLD)] == [[1], [1]]


def _automatic_run_dir_worker(rank: int, port: int, teacher: Path, out: Path) -> None:
    """Trains without --out; records the run directory each rank trained with."""
    torch.set_num_threads(1)
    _join_as(rank, port)
    original = distill_command._train

    def recorded(config, run, *args, **kwargs):
        (out / f"run_dir{rank}.txt").write_text(f"{run.root} {config.runtime.out}")
        return original(config, run, *args, **kwargs)

    distill_command._train = recorded
    overrides = tiny_overrides(out / "runs" / "digits", teacher, **{"runtime.device": "cpu", "schedule.epochs": 1})
    run_train(train_config("digits", overrides), explicit=set(overrides) - {"runtime.out"})


def test_every_rank_trains_in_the_run_directory_rank_0_chose_and_holds(tmp_path, lenet_teacher):
    """runs/digits is held by another process and holds no run yet: rank 0 takes runs/digits-2, while a rank
    looking without the lock sees runs/digits free; every rank must train in rank 0's."""
    busy = tmp_path / "runs" / "digits"
    with run_dir_lock(busy):
        _on_two_ranks(_automatic_run_dir_worker, _free_port(), lenet_teacher, tmp_path)
        chosen = tmp_path / "runs" / "digits-2"
        for rank in range(WORLD):
            assert (tmp_path / f"run_dir{rank}.txt").read_text() == f"{chosen} {chosen}"
        assert [line["epoch"] for line in _lines(chosen)] == [1]
        assert sorted(path.name for path in busy.iterdir()) == [LOCK_FILE]


def _nan_worker(rank: int, ports: list[int], teacher: Path, out: Path) -> None:
    torch.set_num_threads(1)
    _join_as(rank, ports[0])
    _train(out / "run", teacher, **{"schedule.epochs": 2, "runtime.stop_after": 1})
    original, calls = StudentUpdate.step, {"n": 0}

    def poisoned(self, *args, **kwargs):
        aux = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3 and rank == 1:
            aux["loss_student"] = aux["loss_student"] * float("nan")
        return aux

    StudentUpdate.step = poisoned
    _join_as(rank, ports[1])
    try:
        _train(out / "run", teacher, resume=True, **{"schedule.epochs": 2, "runtime.stop_after": 0})
    except NonFiniteLossError as error:
        (out / f"rank{rank}.txt").write_text(str(error))


def test_a_nan_on_one_rank_stops_every_rank_and_keeps_the_checkpoint(tmp_path, lenet_teacher):
    _on_two_ranks(_nan_worker, [_free_port(), _free_port()], lenet_teacher, tmp_path)
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in range(WORLD)]
    assert messages[0] == messages[1]
    assert "loss_student became nan on rank 1" in messages[0] and "(epoch 2," in messages[0]
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert [line["epoch"] for line in _lines(tmp_path / "run")] == [1]


def _ctrl_c_worker(rank: int, ports: list[int], teacher: Path, out: Path) -> None:
    torch.set_num_threads(1)
    extra = {"method": "lrwa-mb", "schedule.epochs": 3, "schedule.iters_per_epoch": 3}
    _join_as(rank, ports[0])
    full = _train(out / "full", teacher, **extra)
    original, calls = Trainer._iteration, {"n": 0}

    def interrupted_iteration(self):
        original(self)
        calls["n"] += 1
        if calls["n"] == 5 and rank == 1:  # epoch 2, iteration 2 of 3, on this rank only
            os.kill(os.getpid(), signal.SIGINT)

    Trainer._iteration = interrupted_iteration
    _join_as(rank, ports[1])
    try:
        _train(out / "split", teacher, **extra)
    except Interrupted as error:
        (out / f"rank{rank}.txt").write_text(str(error))
    Trainer._iteration = original
    if rank == 0:
        shutil.copy(out / "split" / "checkpoint.pt", out / "interrupted.pt")
    _join_as(rank, ports[2])
    resumed = _train(out / "split", teacher, resume=True, **extra)
    (out / f"histories{rank}.json").write_text(json.dumps({"full": full, "resumed": resumed}))


def test_ctrl_c_on_one_rank_stops_every_rank_at_the_same_iteration_and_resumes_exactly(tmp_path, lenet_teacher):
    _on_two_ranks(_ctrl_c_worker, [_free_port() for _ in range(3)], lenet_teacher, tmp_path)
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in range(WORLD)]
    assert messages[0] == messages[1] and "iteration 2" in messages[0] and "torchrun" in messages[0]
    state = torch.load(tmp_path / "interrupted.pt", weights_only=True)
    assert (state["epoch"], state["iteration"], state["world_size"], len(state["ranks"])) == (1, 2, 2, 2)
    # mid-epoch, each rank's generator BatchNorm statistics are its own (averaged only at epoch ends)
    own = [part["batchnorm"]["generator"] for part in state["ranks"]]
    assert any(not torch.equal(own[0][k], own[1][k]) for k in own[0])
    histories = [json.loads((tmp_path / f"histories{r}.json").read_text()) for r in range(WORLD)]
    key = ("epoch", "test_accuracy", "loss_student", "loss_generator", "grad_cos")
    for history in histories:
        assert [[r.get(k) for k in key] for r in history["resumed"]] == [
            [r.get(k) for k in key] for r in history["full"]
        ]
    assert histories[0]["full"] == histories[1]["full"]


# ----- torchrun end to end ------------------------------------------------------------------------------------------
RUN_SETTINGS = {"method": "lrwa-mb", "schedule.epochs": 4}
# The same run as tiny_overrides(**RUN_SETTINGS) on the command line (every setting lrwa-mb reads).
RUN_FLAGS = [
    "--method",
    "lrwa-mb",
    "--epochs",
    "4",
    "--student",
    "lenet5_half",
    "--latent-dim",
    "16",
    "--generator-width",
    "8",
    "--iters-per-epoch",
    "2",
    "--gen-steps",
    "1",
    "--student-steps",
    "2",
    "--batch-size",
    "24",
    "--memory-slots",
    "3",
    "--memory-slot-size",
    "8",
    "--memory-push-every",
    "1",
    "--device",
    "cpu",
    "--no-amp",  # as tiny_overrides, which the in-process runs compared with these use
    "--no-progress",
]


def _torchrun(out: Path, teacher: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(WORLD),
        "-m",
        "fastlrwa",
        "train",
        "--out",
        str(out),
        "--teacher",
        str(teacher),
        *RUN_FLAGS,
        *extra,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


def _unwrapped(log: str) -> str:
    """The log with rich's line wrapping (80 columns without a terminal) undone."""
    return " ".join(log.split())


def _uninterrupted_worker(rank: int, port: int, teacher: Path, out: Path) -> None:
    torch.set_num_threads(1)
    _join_as(rank, port)
    _train(out, teacher, **RUN_SETTINGS)


def test_torchrun_trains_resumes_and_its_checkpoint_continues_in_one_process(tmp_path, lenet_teacher, capfd):
    _on_two_ranks(_uninterrupted_worker, _free_port(), lenet_teacher, tmp_path / "full")
    split = tmp_path / "split"

    first = _torchrun(split, lenet_teacher, "--stop-after", "2")
    assert first.returncode == 0, first.stderr
    assert [line["epoch"] for line in _lines(split)] == [1, 2]
    assert "2 processes" in _unwrapped(first.stderr)
    assert "continue with: torchrun --nproc_per_node 2 -m fastlrwa train" in _unwrapped(first.stderr)
    assert json.loads((split / "config.json").read_text())["world_size"] == 2
    shutil.copytree(split, tmp_path / "single")

    resumed = _torchrun(split, lenet_teacher, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    # rank 0 alone logs: one line per epoch, not one per rank
    assert resumed.stderr.count("epoch 3/4") == 1
    key = ("epoch", "test_accuracy", "loss_student", "loss_generator", "grad_cos")
    full = _lines(tmp_path / "full")
    assert [[r.get(k) for k in key] for r in _lines(split)] == [[r.get(k) for k in key] for r in full]
    state = torch.load(split / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["world_size"], len(state["ranks"])) == (4, 2, 2)
    # after an epoch the ranks' BatchNorm statistics are their mean, the same on both
    own = [part["batchnorm"]["generator"] for part in state["ranks"]]
    assert all(torch.equal(own[0][k], own[1][k]) and torch.equal(own[0][k], state["generator"][k]) for k in own[0])

    capfd.readouterr()
    overrides = {"runtime.out": str(tmp_path / "single"), "teacher.path": str(lenet_teacher), "runtime.progress": False}
    history = run_train(train_config("digits", overrides), resume=True, explicit=set(overrides))
    assert "written by 2 process(es) and this run has 1" in _unwrapped(capfd.readouterr().err)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] == [line["epoch"] for line in _lines(tmp_path / "single")]
    assert history[:2] == _lines(split)[:2]
    assert torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)["world_size"] == 1
