"""The two forms of the Jensen-Shannon divergence that ``fused_js`` computes (see ``js.py``).

Torch-free, so that the command line can offer them as choices before torch is imported.
"""

from __future__ import annotations

from typing import Literal, get_args

JSVariant = Literal["paper", "official"]
JS_VARIANTS: tuple[str, ...] = get_args(JSVariant)
