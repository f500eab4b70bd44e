"""The generator objectives of the compared methods, as one function of the teacher's and student's outputs.

- ``dafl``: priors only, no adversary: ``oh*L_OH + a*L_A + ie*L_EM``.
- ``dfad``: adversarial MAE: ``-adv * MAE(S(x), T(x))``.
- ``dfq``: adversarial KL + BatchNorm-statistics matching + batch entropy: ``-adv*KL(p_T||p_S) + bn*L_BN + ie*L_EM``.
- ``js_priors`` (DFKD*, MB-DFKD, PRE-DFKD, LRWA; paper eq. 15): JS disagreement + priors. With the
  authors' JS form the disagreement term is ``adv * (1 - clamp(JS, 0, 1))``; with the paper's it is ``-adv * JS``.
  The teacher's logits enter JS detached, as in the authors' code (``outputs_T.detach()``): the
  disagreement reaches the generator through the student alone, the priors through the teacher.

Any of them can add two image priors, off unless weighted: ``tv*R_TV`` (smoothness) and ``div*L_MS`` (diversity).
"""

from __future__ import annotations

import torch

from fastlrwa.kernels import fused_js, fused_mae
from fastlrwa.losses.options import GeneratorLossOptions, GeneratorObjective
from fastlrwa.losses.priors import (
    activation_loss,
    adversarial_kl,
    batch_entropy_loss,
    mode_seeking_loss,
    one_hot_loss,
    total_variation_loss,
)


def generator_loss(
    objective: GeneratorObjective,
    teacher_logits: torch.Tensor,
    teacher_features: torch.Tensor | None,
    student_logits: torch.Tensor | None,
    weights: GeneratorLossOptions,
    bn_loss: torch.Tensor | None = None,
    images: torch.Tensor | None = None,
    latents: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss the generator minimises, and its parts (0-dim tensors, for logging).

    ``teacher_features`` is None for a teacher whose features cannot be read (a TorchScript or exported graph):
    the activation prior is then left out, which the trainer allows only at weight 0. ``images`` (the generated
    batch) and ``latents`` (the generator's input) are needed only where the image priors are weighted.
    """
    parts: dict[str, torch.Tensor] = {}
    if objective in ("dafl", "js_priors"):
        parts["oh"] = one_hot_loss(teacher_logits)
        if teacher_features is not None:
            parts["act"] = activation_loss(teacher_features)
    if objective in ("dafl", "dfq", "js_priors"):
        parts["ie"] = batch_entropy_loss(teacher_logits, weights.entropy_log_base)
    if objective == "dfad":
        parts["adv"] = -fused_mae(student_logits, teacher_logits)
    elif objective == "dfq":
        parts["adv"] = -adversarial_kl(teacher_logits, student_logits)
        parts["bn"] = bn_loss
    elif objective == "js_priors":
        js = fused_js(
            teacher_logits.detach(), student_logits, temperature=weights.js_temperature, variant=weights.js_variant
        )
        parts["js"] = js
        parts["adv"] = 1.0 - js.clamp(0.0, 1.0) if weights.js_variant == "official" else -js
    elif objective != "dafl":
        raise ValueError(f"unknown generator objective {objective!r}")
    if weights.tv > 0:
        parts["tv"] = total_variation_loss(images)
    if weights.div > 0:
        parts["div"] = mode_seeking_loss(images, latents)
    return sum(weighted_terms(parts, weights).values()), parts


def weighted_terms(parts: dict[str, torch.Tensor], weights: GeneratorLossOptions) -> dict[str, torch.Tensor]:
    """The terms the generator's loss sums, each times its weight, by name (``js`` is logged, not summed)."""
    scale = {
        "oh": weights.oh,
        "act": weights.a,
        "ie": weights.ie,
        "adv": weights.adv,
        "bn": weights.bn,
        "tv": weights.tv,
        "div": weights.div,
    }
    return {name: scale[name] * value for name, value in parts.items() if name in scale}
