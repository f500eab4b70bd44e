"""Student and generator updates: pure functions of (params, buffers, batches) -> (grads, aux).

``make_student_step`` builds the trainer's student update (plain, joint replay, or the LRWA meta
update of ``lrwa.py``) once, optionally compiled; ``install_grads`` hands its gradients to a fused
optimiser. ``GeneratorUpdate`` is the generator's step; ``StudentUpdate`` applies a student step.
"""

from fastlrwa.updates.functional import StudentStep
from fastlrwa.updates.lrwa import (
    EXACT_METHODS,
    HVP_MODES,
    OBJECTIVES,
    check_lrwa_options,
    lrwa_grads,
    make_lrwa_step,
)
from fastlrwa.updates.student_steps import STEP_KINDS, install_grads, joint_grads, make_student_step, plain_grads

__all__ = [
    "EXACT_METHODS",
    "HVP_MODES",
    "OBJECTIVES",
    "STEP_KINDS",
    "StudentStep",
    "check_lrwa_options",
    "install_grads",
    "joint_grads",
    "lrwa_grads",
    "make_lrwa_step",
    "make_student_step",
    "plain_grads",
]
