"""One training run across the processes torchrun starts: who this process is, and the few collective
operations the trainer needs.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``. Without them (or with ``WORLD_SIZE=1``)
there is one process and no process group, and every collective here returns its input untouched,
so a single-process run executes exactly the operations it did before distributed training existed.

On CUDA each process drives ``cuda:LOCAL_RANK`` and tensors travel over NCCL; a second, gloo group
over CPU tensors carries the host-side agreements (the Ctrl-C flag, error reports, checkpoint
parts), so agreeing on them never waits for a GPU. On CPU both are one gloo group.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from fastlrwa.errors import ConfigError, UserFacingError
from fastlrwa.runtime import resolve_device

T = TypeVar("T")

# Seeds of rank r's random stream: seed + r * RANK_SEED_STRIDE. A large prime stride keeps the streams of
# one run apart from those of runs with nearby seeds (seed 1 rank 0 is not seed 0 rank 1).
RANK_SEED_STRIDE = 1_000_003
# Long enough for rank 0 to pretrain a first-use teacher while the other ranks wait for it. A rank that
# dies does not make the others wait this long: torchrun stops every worker when one fails.
COLLECTIVE_TIMEOUT = timedelta(hours=1)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s own random stream (latents, replay sampling); rank 0 keeps ``seed``."""
    return seed + rank * RANK_SEED_STRIDE


def _rank_device(name: str, local_rank: int) -> torch.device:
    device = resolve_device(name)
    if device.type == "cpu":
        return device
    if name not in ("auto", "cuda"):
        raise ConfigError(
            f"--device {name}: under torchrun every process uses the GPU of its local rank "
            "(cuda:LOCAL_RANK); pass --device cuda, or choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    visible = torch.cuda.device_count()
    # Checked against the node's process count, not this rank's index, so that every rank fails alike.
    processes = _environment_int("LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in os.environ else local_rank + 1
    if processes > visible:
        raise ConfigError(
            f"{processes} processes on this node but {visible} GPU(s) visible: each process needs a GPU "
            f"of its own; start at most {visible} (torchrun --nproc_per_node {visible})"
        )
    return torch.device("cuda", local_rank)


def _environment_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(
            f"the environment variable {name}={value!r} is not a number; start distributed runs with "
            "torchrun --nproc_per_node N -m fastlrwa train ..."
        ) from None


def _apply_flat(tensors: Sequence[torch.Tensor], collective: Callable[[torch.Tensor], None]) -> None:
    """Run ``collective`` once per dtype on all ``tensors`` flattened into one buffer, then copy back."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = defaultdict(list)
    for tensor in tensors:
        by_dtype[tensor.dtype].append(tensor)
    with torch.no_grad():
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            collective(flat)
            for tensor, chunk in zip(group, flat.split([t.numel() for t in group])):
                tensor.copy_(chunk.view_as(tensor))


class DistributedContext:
    """This process's place in the run: ``rank`` of ``world_size``, its ``device``, and the collectives.

    Use as a context manager: leaving it (normally or by an error) destroys the process group.
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        local_rank: int,
        device: torch.device,
        control_group: dist.ProcessGroup | None = None,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.device = device
        self._control_group = control_group

    @classmethod
    def from_environment(cls, device_name: str) -> "DistributedContext":
        """The context torchrun's environment describes; joins the process group when there are several ranks.

        ``device_name`` is ``--device``: ``auto``/``cuda`` give each rank ``cuda:LOCAL_RANK`` (NCCL) when CUDA
        is present, ``cpu`` runs every rank on the CPU (gloo).
        """
        world_size = _environment_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1
        if world_size <= 1:
            return cls(rank=0, world_size=1, local_rank=0, device=resolve_device(device_name))
        rank, local_rank = _environment_int("RANK"), _environment_int("LOCAL_RANK")
        device = _rank_device(device_name, local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", timeout=COLLECTIVE_TIMEOUT, device_id=device)
            control = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
        else:
            dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
            control = dist.group.WORLD
        return cls(rank=rank, world_size=world_size, local_rank=local_rank, device=device, control_group=control)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, logs and writes the run's files."""
        return self.rank == 0

    def close(self) -> None:
        if self.is_distributed and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> "DistributedContext":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----- tensors on the training device ----------------------------------------------------------------------------
    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace each floating-point tensor by its mean over the ranks, in place: one all-reduce per dtype."""
        if not self.is_distributed or not tensors:
            return

        def mean(flat: torch.Tensor) -> None:
            dist.all_reduce(flat)
            flat.div_(self.world_size)

        _apply_flat(tensors, mean)

    def broadcast_module_state_(self, module: nn.Module) -> None:
        """Overwrite ``module``'s parameters and buffers with rank 0's, in place (one broadcast per dtype)."""
        if not self.is_distributed:
            return
        tensors = [t.detach() for t in module.parameters()] + list(module.buffers())
        _apply_flat(tensors, lambda flat: dist.broadcast(flat, src=0))

    def data_parallel(self, module: nn.Module) -> nn.Module:
        """``module`` wrapped in DistributedDataParallel (gradients averaged during backward), or itself alone.

        Buffers are not broadcast at each forward: BatchNorm statistics are averaged at epoch ends
        instead (see :meth:`average_`), and the other buffers (spectral-norm power iterations) depend
        only on the weights, which are the same on every rank.
        """
        if not self.is_distributed:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
            return DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)
        # Before torch 2.13 the flag was broadcast_buffers, whose False also keeps the buffers out of DDP's
        # initial broadcast: send them here so that every rank starts from rank 0's, as in newer versions.
        self.broadcast_module_state_(module)
        return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)

    # ----- host-side agreements (gloo, CPU) ------------------------------------------------------------------------
    def any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank; every rank gets the same answer (one tiny CPU all-reduce)."""
        if not self.is_distributed:
            return flag
        value = torch.tensor([int(flag)], dtype=torch.int32)
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self._control_group)
        return bool(value.item())

    def mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the ranks; every rank must pass the same keys."""
        if not self.is_distributed or not values:
            return values
        names = sorted(values)
        total = torch.tensor([values[n] for n in names], dtype=torch.float64)
        dist.all_reduce(total, group=self._control_group)
        return {n: v / self.world_size for n, v in zip(names, total.tolist())}

    def all_gather_object(self, obj: T) -> list[T]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.is_distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj, group=self._control_group)
        return gathered

    def gather_to_main(self, obj: T) -> list[T] | None:
        """Every rank's ``obj`` in rank order on rank 0; None on the other ranks."""
        if not self.is_distributed:
            return [obj]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, gathered, dst=0, group=self._control_group)
        return gathered

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.is_distributed:
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=0, group=self._control_group)
        return holder[0]

    def first_report(self, report: T | None) -> tuple[int, T] | None:
        """(rank, report) of the lowest rank that has a report (not None), the same on every rank; else None."""
        for rank, value in enumerate(self.all_gather_object(report)):
            if value is not None:
                return rank, value
        return None

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier(group=self._control_group)

    @contextmanager
    def fail_together(self) -> Iterator[None]:
        """Run a block on every rank; if it raises a UserFacingError on any rank, every rank raises that error.

        Without it a rank that fails alone (a missing file, a refused run directory) would leave the
        others waiting in their next collective. Errors of other kinds are bugs: torchrun stops the
        other ranks when that process dies.
        """
        failure: UserFacingError | None = None
        try:
            yield
        except UserFacingError as error:
            failure = error
        if self.is_distributed:
            first = self.first_report(failure)
            failure = None if first is None else first[1]
        if failure is not None:
            raise failure
