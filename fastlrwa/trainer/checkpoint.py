"""The training checkpoint: its format and version, what goes into it, and the checks on what comes back.

One file, written by rank 0 and read by every rank with ``torch.load(weights_only=True)``:
``format``, ``version``, ``config`` (as ``to_dict`` writes it), ``teacher`` (path and SHA-256), the
position in the run (``epoch``, ``iteration``, ``epoch_train_time``, ``history``), ``world_size``,
``ranks`` (each process's own part: :mod:`fastlrwa.trainer.rank_state`) and the states that are the
same on every rank, one key per :meth:`RunParts.shared_state_owners` entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from fastlrwa.config.schema import to_dict
from fastlrwa.distributed import rank_seed
from fastlrwa.errors import CheckpointError
from fastlrwa.trainer.build import RunParts
from fastlrwa.trainer.epoch_stats import EpochStats
from fastlrwa.trainer.rank_state import capture_rank_state, restore_rank_state

CHECKPOINT_FORMAT = "fastlrwa-train"
# 2: per-rank parts under "ranks"; 3: the authors' generator (spectral norm on every conv); 4: the config's
# typed update options (lrwa.align_every, joint.objective), the generator's loss scaler under
# "generator_scaler", the epoch statistics as per-step rows.
CHECKPOINT_VERSION = 4


@dataclass
class RunPosition:
    """Where a run stands: ``epoch`` epochs done, ``iteration`` iterations of the next one."""

    epoch: int = 0
    iteration: int = 0
    epoch_train_time: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TeacherFile:
    path: Path
    sha256: str


def checkpoint_state(
    parts: RunParts, stats: EpochStats, position: RunPosition, teacher: TeacherFile
) -> dict[str, Any] | None:
    """The checkpoint on rank 0 (its shared state and every rank's own part), None on the others.

    Every rank must call it: the ranks' parts are gathered to rank 0.
    """
    ranks = parts.context.gather_to_main(capture_rank_state(parts, stats))
    if ranks is None:
        return None
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": to_dict(parts.config),
        "teacher": {"path": str(teacher.path), "sha256": teacher.sha256},
        "epoch": position.epoch,
        "iteration": position.iteration,
        "epoch_train_time": position.epoch_train_time,
        "history": position.history,
        "world_size": parts.context.world_size,
        "ranks": ranks,
    }
    for key, owner in parts.shared_state_owners().items():
        state[key] = owner.state_dict()
    return state


def read_checkpoint(path: Path, device: torch.device, teacher: TeacherFile) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to be a training checkpoint of this version for this teacher."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path} cannot be read ({type(error).__name__}); it is damaged: "
            "restore it from a copy or start afresh with --force"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a fastlrwa training checkpoint; start afresh with --force")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} was written by another fastlrwa version (checkpoint version "
            f"{state.get('version')}, this one reads {CHECKPOINT_VERSION}); "
            "start afresh with --force"
        )
    if state["teacher"]["sha256"] != teacher.sha256:
        raise CheckpointError(
            f"the teacher file {teacher.path} differs from the one this run was started with "
            f"({state['teacher']['path']}); resume with the original teacher"
        )
    return state


def _ranks(first: int, last: int) -> str:
    return f"rank {first}" if first == last else f"ranks {first}-{last}"


def restore_checkpoint(
    state: dict[str, Any], parts: RunParts, stats: EpochStats, log: Callable[[str], None]
) -> RunPosition:
    """Put a read checkpoint back into the run; with another number of processes than wrote it, as closely
    as the layout allows (``log`` says what changes)."""
    for key, owner in parts.shared_state_owners().items():
        owner.load_state_dict(state[key])
    ranks = state["ranks"]
    rank, world_size, saved = parts.context.rank, parts.context.world_size, len(ranks)
    restore_rank_state(ranks[rank] if rank < saved else ranks[0], parts, stats)
    if rank >= saved:
        # A rank the checkpoint has no part for starts from rank 0's memory with a stream of its own.
        parts.rng.manual_seed(rank_seed(parts.config.runtime.seed, rank))
    if saved != world_size:
        change = (
            f"the replay memory and random stream of {_ranks(world_size, saved - 1)} are dropped"
            if saved > world_size
            else f"{_ranks(saved, world_size - 1)} start from rank 0's replay memory with fresh random streams"
        )
        log(
            f"the checkpoint was written by {saved} process(es) and this run has {world_size}: "
            f"{change}; the continuation is not bit-identical to one with {saved}"
        )
    return RunPosition(
        epoch=state["epoch"],
        iteration=state["iteration"],
        epoch_train_time=state["epoch_train_time"],
        history=list(state["history"]),
    )
