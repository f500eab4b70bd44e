"""The options of each student update, one frozen dataclass per update: ``LRWAOptions`` for the meta
update of ``lrwa.py``, ``JointOptions`` for the replay baselines' update of ``student_grads.py``,
``StudentAugmentOptions`` for the augmentation of the synthetic batches the student trains on (``student_batch.py``),
and ``KDOptions`` for the soft-target distillation of ZSKD's transfer.

They live in this torch-free module beside the updates so that the command line can check them, and
offer their choices, before torch is imported (``fastlrwa.options``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastlrwa.options import Options, option

StudentUpdateKind = Literal["plain", "joint", "lrwa", "kd"]
# paper: L_Acq(θ) + L_Ret(θ') (eq. 6) | official: the authors' outer loss, one forward on cat(new, memory) at θ
MetaObjective = Literal["paper", "official"]
JointObjective = Literal["official", "paper"]
HvpMode = Literal["exact", "fd", "first_order"]
ExactMethod = Literal["reverse", "forward"]


@dataclass(frozen=True)
class LRWAOptions(Options):
    """The meta update of eq. 6: an inner SGD step of size ``alpha`` with weight decay, then the outer loss.

    ``objective``: ``official`` (eq. 6 with the authors' outer loss on cat(new, memory)) | ``paper`` (eq. 6
    as written) | ``released`` (what the authors' released code computes: ``higher``'s
    ``copy_initial_weights=True`` drops the meta-gradient, leaving MB-DFKD's joint step on cat(new,
    memory)). ``hvp`` and ``exact_method``: how the Hessian-vector product is taken (``lrwa.py``).
    ``align_every``: the alignment probe cos(∇L_Acq(θ), ∇L_Ret(θ)) (one more forward/backward on the
    memory batch) runs on every ``align_every``-th student step of an epoch; 0 turns it off.
    """

    alpha: float = option(0.9, flag="--lr-inner", help="LRWA inner step size alpha")
    weight_decay: float = option(5e-4, flag="--inner-weight-decay", help="LRWA inner-step weight decay lambda")
    objective: Literal[MetaObjective, "released"] = option(
        "official",
        flag="--lrwa-objective",
        help="LRWA outer objective: official (eq. 6, the authors' outer loss on cat(new, memory)), paper (eq. 6 "
        "as written), released (what the authors' released code computes: equals mb-dfkd with --joint-objective "
        "official, no meta-gradient; see README)",
    )
    hvp: HvpMode = option("exact", flag="--hvp", help="LRWA Hessian-vector product mode")
    # reverse: reverse-over-reverse (fewer FLOPs and live tensors at paper size, both objectives;
    # BENCHMARKS.md) | forward: forward-over-reverse.
    exact_method: ExactMethod = option(
        "reverse",
        flag="--exact-method",
        help="exact HVP by reverse-over-reverse (default: fewer FLOPs and less memory) or forward-over-reverse",
    )
    align_every: int = option(
        10,
        flag="--align-every",
        help="log the LRWA gradient alignment grad_cos (one more forward/backward on the memory batch) on every "
        "N-th student step of an epoch; 0: never",
        run_local=True,
    )


@dataclass(frozen=True)
class JointOptions(Options):
    """The replay baselines' update (MB-DFKD, PRE-DFKD), L_Acq + L_Ret.

    ``objective``: ``official`` (the authors' code: one forward on cat(new, memory)) | ``paper`` (the sum of
    two losses, each batch with its own BatchNorm statistics).
    """

    objective: JointObjective = option(
        "official",
        flag="--joint-objective",
        help="replay baselines: one forward on cat(new, memory) or a sum of two losses",
    )


@dataclass(frozen=True)
class StudentAugmentOptions(Options):
    """Random shifts, rotations and flips of each generated batch before the teacher labels it and the student
    trains on it: ZSKD's augmentation of its transfer set, applied per sample to the synthetic batches. The
    teacher's logits are those of the augmented images, so every augmented sample carries its own target.

    ``shift``: the largest translation in pixels (whole pixels, each axis drawn uniformly from
    ``-shift..shift``); ``rotate``: the largest rotation in degrees (uniform in ``[-rotate, rotate]``);
    ``flip``: mirror left-right with probability 1/2. All zero (the default, the authors' setting): the batch
    is the generator's output unchanged and no random numbers are drawn for it.
    """

    shift: int = option(0, flag="--augment-shift", help="student batches: largest random shift in pixels (0: none)")
    rotate: float = option(
        0.0, flag="--augment-rotate", help="student batches: largest random rotation in degrees (0: none)"
    )
    flip: bool = option(False, flag="--augment-flip", help="student batches: random left-right flips")

    @property
    def enabled(self) -> bool:
        return self.shift > 0 or self.rotate > 0 or self.flip


@dataclass(frozen=True)
class KDOptions(Options):
    """The soft-target distillation of ZSKD's transfer (Hinton et al.): the cross-entropy between the teacher's and
    the student's softmax at ``temperature``, scaled by ``temperature**2`` (ZSKD: 20)."""

    temperature: float = option(20.0, flag="--kd-temperature", help="zskd: softmax temperature of the KD loss")
