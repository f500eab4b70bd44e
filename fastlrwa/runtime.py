"""Device, precision and seeding: the few process-wide settings a command resolves once."""

from __future__ import annotations

import logging
import os
import platform
import random
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np
import torch

from fastlrwa.errors import ConfigError
from fastlrwa.paths import user_cache_dir

logger = logging.getLogger(__name__)

_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CPUINFO = Path("/proc/cpuinfo")
# x86: AVX512-BF16 or AMX-BF16; Arm: the bf16 feature. Without one, CPU autocast emulates bf16 in float32 and
# converts around every op: a digits epoch took 35 s instead of 2.1 s on an AVX2-only EPYC.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for CUDA but no CUDA device is available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name}: only cpu and cuda are supported")
    return device


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or in its own dtype where that is wider: outputs of a bf16/fp16 autocast region come
    back to float32, and a float64 run (the reference tests) stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def autocast_to(device_type: str, dtype: torch.dtype | None) -> ContextManager:
    """Autocast to ``dtype`` (bf16, fp16); with ``None`` autocast off, so float32 also inside an outer autocast.

    Devices without autocast (``meta``, where the budgets count FLOPs) need nothing; Dynamo cannot trace
    ``is_autocast_available``, and a compiled function never runs on ``meta``.
    """
    if dtype is not None:
        return torch.autocast(device_type, dtype=dtype)
    if torch.compiler.is_compiling() or torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the whole run for ``--amp`` mode (``auto``: none, see :func:`generator_dtype`);
    fp16 needs CUDA (CPU autocast is bf16)."""
    if mode == "auto":
        return None
    dtype = _AMP_DTYPES[mode]
    if dtype is torch.float16 and device.type != "cuda":
        raise ConfigError("--amp-dtype fp16 needs a CUDA device; on CPU use --amp (bf16)")
    if dtype is torch.bfloat16 and device.type == "cpu" and cpu_has_native_bf16() is False:
        logger.warning(
            "this CPU has no native bf16 (no AVX512-BF16 or AMX): --amp emulates it and makes training "
            "several times slower here; drop --amp on this machine"
        )
    return dtype


def generator_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The dtype the generator alone computes in: with ``auto``, bf16 on a CPU that computes it natively (AMX,
    AVX512-BF16), where the generator's convolutions, most of an iteration, run it about 1.6x as fast; None
    elsewhere (the run's precision). The teacher and the student stay in float32: their convolutions are small,
    and bf16 does not speed them up (``--amp``, everything in bf16, was no faster an iteration). Over 10 digits
    seeds the students came out as accurate as in float32 (RESULTS.md, "bf16 on the CPU"). On CUDA the presets
    keep the authors' float32 unless ``--amp`` asks otherwise."""
    if mode == "auto" and device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def cpu_has_native_bf16() -> bool | None:
    """Whether the CPU computes in bf16 natively, from the flags in /proc/cpuinfo; None where unknown."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & NATIVE_BF16_FLAGS) if flags else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_compile_cache() -> None:
    """Keep Inductor's compiled kernels across runs in ``user_cache_dir()/inductor``: a warm cache turns ~1 min
    of compiling into seconds.

    A ``TORCHINDUCTOR_CACHE_DIR`` the user set is kept. Torch's own default is replaced: the first import of
    torch._dynamo (torchvision does it) writes that default into the environment, so its presence does not
    mean the user chose it. Inductor reads the variable at each compile, so setting it before the first one
    is enough.
    """
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(_torch_default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(user_cache_dir() / "inductor")


def _torch_default_cache_dir() -> str:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # torch < 2.6 keeps it in runtime_utils
        from torch._inductor.runtime.runtime_utils import default_cache_dir
    return default_cache_dir()


def compiled(fn: Callable, **options: Any) -> Callable:
    """``torch.compile(fn, **options)`` with Inductor's cache in the user cache directory."""
    configure_compile_cache()
    return torch.compile(fn, **options)


def environment_versions(device: torch.device) -> dict[str, str]:
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
    }
    try:
        import triton

        versions["triton"] = triton.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        versions["cuda_device"] = torch.cuda.get_device_name(device)
        versions["cuda"] = str(torch.version.cuda)
    return versions
