"""Fused loss kernels (Triton) with torch reference versions; installed as ``fastlrwa.kernels``.

``fused_mae`` and ``fused_js`` take ``backend="auto" | "triton" | "torch"``: ``auto`` runs the
Triton kernels on CUDA tensors and the torch reference (``mae_reference``, ``js_reference``)
elsewhere. Importing this package does not import triton.
"""

from .js import fused_js, js_reference
from .mae import fused_mae, mae_reference

__all__ = ["fused_js", "fused_mae", "js_reference", "mae_reference"]
