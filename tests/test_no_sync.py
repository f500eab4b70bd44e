"""A training iteration never makes the host wait for the device.

On CUDA the iterations run under ``torch.cuda.set_sync_debug_mode("error")``, where every synchronising
CUDA call (``.item()``, ``.tolist()``, a blocking copy to the host, a Python branch on a tensor's
value, a stream or device synchronise) raises. On the CPU there is no device to wait for, but the
commonest cause of a sync is still visible: reading a tensor's value into Python, which every
``.item()``, ``bool(tensor)``, ``int(tensor)`` and ``float(tensor)`` dispatches as
``aten._local_scalar_dense``; the CPU test refuses it anywhere in an iteration.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import ZSKD_TINY, tiny_overrides
from fastlrwa.config.methods import METHODS
from fastlrwa.config.presets import train_config
from fastlrwa.distributed import DistributedContext
from fastlrwa.progress import EpochProgress
from fastlrwa.trainer.build import build_run
from fastlrwa.trainer.loop import Trainer
from fastlrwa.trainer.run_dir import RunDir

# Every method, the memory bank also in its pinned host tier (CUDA only: on the CPU there is none).
CASES = [(method, {}) for method in sorted(METHODS)] + [("lrwa-mb", {"replay.device_budget_mb": 1e-6})]


class NoValueReads(TorchDispatchMode):
    """Raises on any read of a tensor's value into Python but of the tensors in ``host_counters``."""

    def __init__(self, host_counters: tuple[torch.Tensor, ...] = ()) -> None:
        super().__init__()
        self.host_counters = {id(tensor) for tensor in host_counters}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and id(args[0]) not in self.host_counters:
            raise AssertionError("a tensor's value was read into Python inside a training iteration")
        return func(*args, **(kwargs or {}))


def _trainer(tmp_path, teacher, method: str, extra: dict, device: str) -> Trainer:
    """A tiny run ready to replay: one iteration done, the memory bank pushed, the VAE past its warm-up."""
    overrides = tiny_overrides(
        tmp_path / "run", teacher, method=method, **{"runtime.device": device, "lrwa.align_every": 2, **extra}
    )
    if METHODS[method].generator_objective == "impressions":
        overrides.update(ZSKD_TINY)
    parts = build_run(train_config("digits", overrides), teacher, DistributedContext(0, 1, 0, torch.device(device)))
    trainer = Trainer(parts, RunDir(tmp_path / "run"), EpochProgress(None, None))
    if parts.impressions is not None:
        trainer._build_impressions()  # once before the first epoch, outside the iterations
    trainer._iteration()  # first calls: allocations, lazy initialisation, the first batch observed
    if parts.replay is not None:
        parts.replay.end_epoch(1)
        assert parts.replay.is_ready()
    return trainer


def _optimizer_step_counters(trainer: Trainer) -> tuple[torch.Tensor, ...]:
    """Adam's step counts: host tensors on CUDA too (neither fused nor capturable), so reading them waits for
    nothing there; on the CPU they are the only value reads an iteration may make."""
    parts = trainer.parts
    optimizers = [parts.student_optimizer, parts.generator_optimizer]
    optimizers += [parts.replay.optimizer] if hasattr(parts.replay, "optimizer") else []
    return tuple(
        state["step"]
        for optimizer in optimizers
        for state in optimizer.state.values()
        if isinstance(state.get("step"), torch.Tensor) and state["step"].device.type == "cpu"
    )


def _iterate(trainer: Trainer, iterations: int = 2) -> None:
    for trainer.iteration in range(1, 1 + iterations):
        trainer._iteration()
        trainer.stats.live()  # the progress bar's read, as in fit()


def _assert_trained(trainer: Trainer, method: str) -> None:
    means = trainer.stats.means()
    assert "loss_student" in means
    if trainer.parts.generator_update is not None:
        assert "loss_generator" in means
    if METHODS[method].replay != "none":
        assert "loss_ret" in means  # the replay step ran
    if METHODS[method].student_update == "lrwa":
        assert "grad_cos" in means  # so did the alignment probe


@pytest.mark.parametrize("method,extra", [case for case in CASES if not case[1]], ids=lambda case: str(case))
def test_an_iteration_reads_no_tensor_value_on_the_cpu(method, extra, tmp_path, lenet_teacher, bn_teacher):
    trainer = _trainer(tmp_path, bn_teacher if method == "dfq" else lenet_teacher, method, extra, "cpu")
    with NoValueReads(_optimizer_step_counters(trainer)):
        for trainer.iteration in range(1, 3):
            trainer._iteration()
    _assert_trained(trainer, method)


def test_the_cpu_check_catches_a_python_branch_on_a_tensor():
    with pytest.raises(AssertionError, match="read into Python"), NoValueReads():
        if torch.ones(()) > 0:
            pass


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method,extra", CASES, ids=lambda case: str(case))
def test_an_iteration_does_not_synchronise_on_cuda(method, extra, tmp_path, lenet_teacher, bn_teacher):
    trainer = _trainer(tmp_path, bn_teacher if method == "dfq" else lenet_teacher, method, extra, "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _iterate(trainer)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    _assert_trained(trainer, method)
