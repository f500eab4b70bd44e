"""Fused loss kernels (Triton) with torch reference versions; installed as ``fastlrwa.kernels``.

``fused_mae`` and ``fused_js`` take ``backend="auto" | "triton" | "torch"``: ``auto`` runs the
Triton kernels on CUDA tensors and the torch reference (``mae_reference``, ``js_reference``)
elsewhere. Importing this package does not import triton, nor torch: the names below are imported on
first use (``fastlrwa.lazy``), so that the torch-free ``js_variant`` stays light.
"""

from fastlrwa.lazy import lazy_exports

_EXPORTS = {
    "js": ("fused_js", "js_reference"),
    "mae": ("fused_mae", "mae_reference"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
