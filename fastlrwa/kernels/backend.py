"""Choosing between the Triton kernels and the torch reference for one loss call.

``auto`` picks Triton for CUDA tensors when triton is installed and the torch reference otherwise.
``triton`` forces the kernels: on CPU tensors they run only in Triton's interpreter, selected by
``TRITON_INTERPRET=1``. ``torch`` forces the reference.

While torch.compile traces, every backend is the torch reference. Inductor generates one fused
kernel for it (and can fuse it with its neighbours, which an opaque kernel call prevents), and
its ATen ops have forward-mode rules: Dynamo refuses an ``autograd.Function`` with a custom
``jvp`` and a custom op cannot register one, so a kernel would make ``torch.func.jvp`` through
the loss fail in a compiled step. Measured and argued in BENCHMARKS.md ("Loss kernels").

Triton reads ``TRITON_INTERPRET`` once, when ``@triton.jit`` decorates a function. So that the
variable counts when a kernel is called, not when some earlier import happened to load it, each
kernel module is loaded on first use, once per mode (``kernel_module``): compiled kernels for the
GPU and interpreted ones for the CPU can live in one process (one pytest run, say).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

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


_kernel_modules: dict[tuple[str, bool], ModuleType] = {}


def kernel_module(module_name: str) -> ModuleType:
    """The ``@triton.jit`` module ``module_name`` (``_mae_triton``, ...) in the mode asked for now."""
    interpreted = interpreter_requested()
    key = (module_name, interpreted)
    if key not in _kernel_modules:
        _kernel_modules[key] = _import_in_mode(module_name, interpreted)
    return _kernel_modules[key]


def _import_in_mode(module_name: str, interpreted: bool) -> ModuleType:
    import triton

    origin = importlib.util.find_spec(f"{__package__}.{module_name}").origin
    qualified = f"{__package__}.{module_name}{'_interpreted' if interpreted else ''}"
    spec = importlib.util.spec_from_file_location(qualified, origin)
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    try:
        with triton.knobs.runtime.scope():
            triton.knobs.runtime.interpret = interpreted
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[qualified]
        raise
    return module
