"""The options of the generator objective (``generator_objectives.py``): its weights and its JS form.

Torch-free, so that the command line can check them before torch is imported (``fastlrwa.options``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastlrwa.kernels.js_variant import JSVariant
from fastlrwa.options import Options

GeneratorObjective = Literal["dafl", "dfad", "dfq", "js_priors"]


@dataclass(frozen=True)
class GeneratorLossOptions(Options):
    """Weights and variants of the generator objective (paper eq. 9-15, DAFL, DFAD, DFQ)."""

    js_variant: JSVariant = "official"  # official: the authors' code | paper: eq. 10
    js_temperature: float = 3.0
    adv: float = 1.0  # weight of the adversarial (disagreement) term
    oh: float = 1.0  # one-hot loss L_OH
    a: float = 0.1  # activation loss L_A (gamma)
    ie: float = 5.0  # batch-entropy loss L_EM (delta)
    entropy_log_base: float = 10.0  # authors' code uses log10; 2.718281828459045 for the paper's natural log
    bn: float = 1.0  # DFQ: BatchNorm-statistics matching
