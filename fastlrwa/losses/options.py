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
    # Image priors any generator objective can add (0: off, every method's default): smoothness (DeepInversion's
    # R_TV) and diversity between the images of distinct latents (MSGAN's mode-seeking term).
    tv: float = option(0.0, flag="--w-tv", help="weight of the total-variation image prior R_TV (0: off)")
    div: float = option(0.0, flag="--w-div", help="weight of the mode-seeking diversity term (0: off)")


@dataclass(frozen=True)
class ImpressionOptions(Options):
    """ZSKD's data impressions (``impressions.py``) and their augmentation in the transfer: the paper's settings
    for LeNet-5 on (Fashion-)MNIST by default (24000 impressions, half of each class at beta 1.0 and half at
    0.1, Adam at 0.01 for 1500 steps, softmax temperature 20); the released code optimises at 1e-3."""

    count: int = option(24000, flag="--impressions", help="zskd: number of data impressions, equal per class")
    steps: int = option(1500, flag="--impression-steps", help="zskd: Adam steps optimising each impression")
    lr: float = option(0.01, flag="--impression-lr", help="zskd: Adam learning rate of the impressions")
    temperature: float = option(
        20.0, flag="--impression-temperature", help="zskd: softmax temperature the impressions are matched at"
    )
    # Comma-separated: each takes an equal share of every class's impressions.
    betas: str = option(
        "1.0,0.1",
        flag="--impression-betas",
        help="zskd: B[,B,...] Dirichlet concentration scales, an equal share of each class's impressions each",
    )
    # Impressions optimised at once: only the speed depends on it (each impression's loss is its own).
    chunk: int = option(
        2000, flag="--impression-chunk", help="zskd: impressions optimised at once (speed only)", run_local=True
    )
    # The transfer set's augmentation, re-labelled by the teacher: a random shift of up to `shift` pixels
    # (crop after zero padding) and, with `flip`, a horizontal flip.
    shift: int = option(2, flag="--impression-shift", help="zskd: random shift of up to N pixels in the transfer")
    flip: bool = option(
        True, flag="--impression-flip/--no-impression-flip", help="zskd: random horizontal flips in the transfer"
    )

    def beta_values(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.betas.split(","))
