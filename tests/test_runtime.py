"""Process-wide settings: the Inductor cache goes where the README says, and --amp on a CPU without native
bf16 says so once."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastlrwa.runtime as runtime

COMPILE_IN_FRESH_PROCESS = """
import torchvision  # imports torch._dynamo, which writes torch's own default cache folder into the environment
import torch
from fastlrwa.runtime import configure_compile_cache
configure_compile_cache()
double_sine = torch.compile(lambda x: (2 * x).sin())
x = torch.randn(7)
assert torch.allclose(double_sine(x), (2 * x).sin())
"""


def _fresh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    inherited = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
    env = {key: value for key, value in os.environ.items() if key not in inherited}
    return {**env, "FASTLRWA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", **extra}


# slow: a fresh process compiles; the default run keeps the cache folder the user chose
@pytest.mark.slow
def test_a_compiled_function_writes_into_the_fastlrwa_cache_after_torchvision_was_imported(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", COMPILE_IN_FRESH_PROCESS],
        env=_fresh_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    written = [path for path in (tmp_path / "cache" / "inductor").rglob("*") if path.is_file()]
    assert written, "the compile left nothing in $FASTLRWA_CACHE/inductor"


def test_a_cache_folder_the_user_chose_is_kept(tmp_path):
    code = (
        "import os, torchvision\nfrom fastlrwa.runtime import configure_compile_cache\n"
        "configure_compile_cache()\nprint(os.environ['TORCHINDUCTOR_CACHE_DIR'])"
    )
    chosen = str(tmp_path / "mine")
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_fresh_env(tmp_path, TORCHINDUCTOR_CACHE_DIR=chosen),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == chosen, done.stderr


@pytest.mark.parametrize(
    "flags, native",
    [
        ("fpu sse2 avx2 fma", False),
        ("fpu sse2 avx2 avx512f avx512bw avx512_bf16", True),
        ("fpu avx2 amx_bf16 amx_tile", True),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("".join(f"processor\t: {n}\nflags\t\t: {flags}\n\n" for n in range(3)))
    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo)
    assert runtime.cpu_has_native_bf16() is native


def test_native_bf16_is_unknown_without_cpu_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "CPUINFO", tmp_path / "absent")
    assert runtime.cpu_has_native_bf16() is None
    (tmp_path / "absent").write_text("processor\t: 0\nmodel name\t: something\n")
    assert runtime.cpu_has_native_bf16() is None
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    monkeypatch.setattr(runtime, "CPUINFO", arm)
    assert runtime.cpu_has_native_bf16() is True


@pytest.mark.parametrize("flags, warned", [("fpu avx2", True), ("fpu avx2 avx512_bf16", False)])
def test_amp_on_a_cpu_without_native_bf16_warns_once(tmp_path, monkeypatch, caplog, flags, warned):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"flags\t\t: {flags}\n")
    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo)
    with caplog.at_level(logging.WARNING, logger="fastlrwa.runtime"):
        assert runtime.amp_dtype("bf16", torch.device("cpu")) is torch.bfloat16
        assert runtime.amp_dtype("none", torch.device("cpu")) is None
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == int(warned)
    if warned:
        assert "no native bf16" in messages[0] and "--amp" in messages[0] and "\n" not in messages[0]


@pytest.mark.parametrize(
    "mode, device, flags, expected",
    [
        ("auto", "cpu", "fpu avx2 amx_bf16 amx_tile", torch.bfloat16),
        ("auto", "cpu", "fpu avx2 avx512_bf16", torch.bfloat16),
        ("auto", "cpu", "fpu sse2 avx2 fma", None),  # emulated bf16 would be slower than float32
        ("auto", "cuda", "fpu avx2 amx_bf16", None),  # the presets keep float32 on CUDA
        ("none", "cpu", "fpu avx2 amx_bf16", None),
        ("bf16", "cpu", "fpu avx2 amx_bf16", None),  # --amp: the whole run's autocast, not the generator's own
    ],
)
def test_the_generator_computes_in_bf16_by_default_only_where_the_cpu_does(
    tmp_path, monkeypatch, mode, device, flags, expected
):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"flags\t\t: {flags}\n")
    monkeypatch.setattr(runtime, "CPUINFO", cpuinfo)
    assert runtime.generator_dtype(mode, torch.device(device)) is expected
    # auto never puts the classifiers under autocast
    assert runtime.amp_dtype("auto", torch.device(device)) is None
