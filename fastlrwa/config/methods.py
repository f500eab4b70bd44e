"""Each method of the paper's Table 1 as a composition: generator objective x student update x replay.

The trainer has one loop; a method only picks its three parts. DFKD* and the replay methods share
the JS + priors generator objective of the paper (eq. 9-15); they differ in how the student is
updated and what it replays. ZSKD, the anchor the others are compared with, has no generator: its samples are
data impressions synthesised once before training (``impressions``) and the student learns them by KD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastlrwa.errors import ConfigError
from fastlrwa.losses.options import GeneratorObjective
from fastlrwa.options import Options
from fastlrwa.updates.options import StudentUpdateKind

ReplayKind = Literal["none", "memory", "generative"]
# Where the student's samples come from: a generator trained with one of the objectives, or a fixed set of
# data impressions built before training.
SampleSource = Literal[GeneratorObjective, "impressions"]


@dataclass(frozen=True)
class MethodSpec(Options):
    generator_objective: SampleSource
    student_update: StudentUpdateKind
    replay: ReplayKind
    description: str


METHODS: dict[str, MethodSpec] = {
    "dafl": MethodSpec("dafl", "plain", "none", "DAFL: generator trained on the teacher priors only, no adversary"),
    "dfad": MethodSpec("dfad", "plain", "none", "DFAD: adversarial MAE, no priors"),
    "dfq": MethodSpec("dfq", "plain", "none", "DFQ: adversarial + BatchNorm-statistics matching + batch entropy"),
    "dfkd": MethodSpec("js_priors", "plain", "none", "DFKD*: JS adversary + priors, no replay"),
    "mb-dfkd": MethodSpec("js_priors", "joint", "memory", "MB-DFKD: memory bank, L_Acq + L_Ret"),
    "pre-dfkd": MethodSpec("js_priors", "joint", "generative", "PRE-DFKD: generative (VAE) replay, L_Acq + L_Ret"),
    "lrwa-mb": MethodSpec("js_priors", "lrwa", "memory", "Ours-1: LRWA meta update + memory bank"),
    "lrwa-gr": MethodSpec("js_priors", "lrwa", "generative", "Ours-2: LRWA meta update + generative replay"),
    "zskd": MethodSpec("impressions", "kd", "none", "ZSKD: data impressions from the teacher, then KD at T = 20"),
}


def method_spec(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method '{name}'; choose one of: {', '.join(METHODS)}") from None


def unread_config_sections(method: str) -> tuple[str, ...]:
    """The config sections (dotted-key prefixes) that ``method`` never reads: the options of the student
    updates it does not run, and the replay settings of a method without replay. Two runs of a method that
    differ only there compute the same thing."""
    spec = METHODS.get(method)
    if spec is None:
        return ()
    unread = tuple(f"{update}." for update in ("lrwa", "joint", "kd") if spec.student_update != update)
    if spec.generator_objective == "impressions":
        # its transfer set has augmentation of its own (impressions.shift, impressions.flip)
        unread += ("generator.", "loss.", "augment.", "schedule.gen_steps")
    else:
        unread += ("impressions.",)
    return unread + (("replay.",) if spec.replay == "none" else ())
