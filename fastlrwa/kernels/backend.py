"""Choosing between the Triton kernels and the torch reference for one loss call.

``auto`` picks Triton for CUDA tensors when triton is installed and the torch reference otherwise.
``triton`` forces the kernels: on CPU tensors they run only in Triton's interpreter, selected by
``TRITON_INTERPRET=1``. ``torch`` forces the reference.

While torch.compile traces, every backend is the torch reference. Inductor generates one fused
kernel for it (and can fuse it with its neighbours, which an opaque kernel call prevents), and
its ATen ops have forward-mode rules: Dynamo refuses an ``autograd.Function`` with a custom
``jvp`` and a custom op cannot register one, so a kernel would make ``torch.func.jvp`` through
the loss fail in a compiled step. Measured and argued in BENCHMARKS.md ("Loss kernels").

Which mode a Triton kernel runs in (compiled or interpreted) is asked at each launch: see ``triton_jit``.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from fastlrwa.errors import ConfigError

BACKENDS = ("auto", "triton", "torch")

TRITON_AVAILABLE = importlib.util.find_spec("triton") is not None

_TRUE_WORDS = ("1", "true", "on", "yes", "y")


def interpreter_requested() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to run kernels in its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in _TRUE_WORDS


def use_triton(backend: str, tensor: torch.Tensor) -> bool:
    """Resolve ``backend`` for a call whose tensors live where ``tensor`` lives.

    Raises ConfigError for an unknown backend and for a forced ``triton`` that cannot run here.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown kernel backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "torch" or torch.compiler.is_compiling():
        return False
    if backend == "auto":
        return tensor.is_cuda and TRITON_AVAILABLE
    if not TRITON_AVAILABLE:
        raise ConfigError(
            "backend='triton' needs the triton package, which is not installed here: "
            "use backend='auto' or backend='torch'"
        )
    if not tensor.is_cuda and not interpreter_requested():
        raise ConfigError(
            "backend='triton' on CPU tensors runs only in Triton's interpreter: set TRITON_INTERPRET=1 "
            "(for correctness checks; it is slow), or use backend='auto'"
        )
    return True
