"""The compiled (GPU) flavour of every kernel builds to a Hopper (sm_90) cubin, with no GPU needed.

The interpreter tests run the kernels' Python semantics; this compiles them through Triton's
real pipeline (TTIR -> PTX -> ptxas), which is where a constexpr or typing mistake in a CUDA-only
path would show. Block shapes come from the launch heuristic for small, large and multi-chunk C.
"""

from __future__ import annotations

import pytest
import torch

from fastlrwa.kernels import backend as kernel_backend
from fastlrwa.kernels import js, mae
from fastlrwa.kernels.launch import row_blocks

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not kernel_backend.TRITON_AVAILABLE, reason="triton is not installed"),
]

# Pointers that always hold fp32/fp64 accumulator values; every other pointer has the logits' dtype.
ACCUMULATOR_POINTERS = {"row_loss_ptr", "stats_ptr", "g_ptr"}


def _signature(kernel, logits_type: str, accumulator_type: str) -> dict[str, str]:
    signature = {}
    for param in kernel.params:
        if param.is_constexpr:
            signature[param.name] = "constexpr"
        elif param.name.endswith("_ptr"):
            signature[param.name] = f"*{accumulator_type if param.name in ACCUMULATOR_POINTERS else logits_type}"
        elif param.name.startswith("inv_"):
            signature[param.name] = "fp32"
        else:
            signature[param.name] = "i32"
    return signature


def _build(kernel, logits_type: str, constexprs: dict[str, object], num_warps: int) -> dict[str, object]:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    accumulator_type = "fp64" if logits_type == "fp64" else "fp32"
    source = ASTSource(fn=kernel, signature=_signature(kernel, logits_type, accumulator_type), constexprs=constexprs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps}).asm


@pytest.fixture(autouse=True)
def compiled_flavour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.mark.parametrize("cols", [10, 1000, 5000])
@pytest.mark.parametrize("logits_type", ["fp32", "bf16", "fp64"])
def test_kernels_build_for_sm90(logits_type: str, cols: int) -> None:
    import triton.language as tl

    acc = tl.float64 if logits_type == "fp64" else tl.float32
    built = []
    blocks = row_blocks(4096, cols, torch.device("cpu"), mae.TILE_ELEMENTS)
    shape = {"BLOCK_ROWS": blocks.block_rows, "BLOCK_COLS": blocks.block_cols}
    built.append(_build(mae._forward_kernel.in_mode(False), logits_type, {"ACC": acc, **shape}, blocks.num_warps))
    backward = {"ACC": acc, "WRITE_A": True, "WRITE_B": True, **shape}
    built.append(_build(mae._backward_kernel.in_mode(False), logits_type, backward, blocks.num_warps))
    blocks = row_blocks(4096, cols, torch.device("cpu"), js.TILE_ELEMENTS)
    shape = {"BLOCK_ROWS": blocks.block_rows, "BLOCK_COLS": blocks.block_cols}
    for official in (False, True):
        forward = {"OFFICIAL": official, "ACC": acc, "SINGLE_CHUNK": blocks.num_chunks == 1, **shape}
        built.append(_build(js._forward_kernel.in_mode(False), logits_type, forward, blocks.num_warps))
        backward = {"OFFICIAL": official, "ACC": acc, "WRITE_A": True, "WRITE_B": False, **shape}
        built.append(_build(js._backward_kernel.in_mode(False), logits_type, backward, blocks.num_warps))
    assert all(asm["cubin"] for asm in built)
