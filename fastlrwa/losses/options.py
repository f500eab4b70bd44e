"""The options of the generator objective (``generator_objectives.py``): its weights and its JS form.

Torch-free, so that the command line can check them before torch is imported (``fastlrwa.options``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastlrwa.kernels.js_variant import JSVariant
from fastlrwa.options import Options, option

GeneratorObjective = Literal["dafl", "dfad", "dfq", "js_priors"]


@dataclass(frozen=True)
class GeneratorLossOptions(Options):
    """Weights and variants of the generator objective (paper eq. 9-15, DAFL, DFAD, DFQ)."""

    # official: the authors' code | paper: eq. 10
    js_variant: JSVariant = option("official", flag="--js-variant", help="Jensen-Shannon form")
    js_temperature: float = option(3.0, flag="--js-temperature", help="softmax temperature of the JS term")
    adv: float = option(1.0, flag="--w-adv", help="weight of the adversarial term")
    oh: float = option(1.0, flag="--w-oh", help="weight of the one-hot prior L_OH")
    a: float = option(0.1, flag="--w-act", help="weight of the activation prior L_A (gamma)")
    ie: float = option(5.0, flag="--w-ie", help="weight of the batch-entropy prior L_EM (delta)")
    # The authors' code uses log10; 2.718281828459045 for the paper's natural log.
    entropy_log_base: float = option(10.0, flag="--entropy-log-base", help="log base of L_EM (authors: 10)")
    bn: float = option(1.0, flag="--w-bn", help="weight of DFQ's BatchNorm-statistics loss")
