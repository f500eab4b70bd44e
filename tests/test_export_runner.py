"""End to end: AOTInductor packages from ``run_export`` and the CMake-built C++ runner ``fastlrwa-infer``.

The packages' tests from Python run by default (an AOT compile per model); the tests through the C++ runner
are marked slow (a libtorch C++ build, about a minute on 2 cores): ``python -m pytest -m slow`` runs them.
Each package is checked against the eager eval-mode model in float64 on fresh random inputs of odd
batch sizes, from Python (``aoti_load_package``) and through the runner's stdin/stdout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._inductor
from torch.nn.modules.batchnorm import _BatchNorm

from fastlrwa.commands.export import run_export
from fastlrwa.models import ModelMeta, build_model, save_model_checkpoint

# Not marked slow although it compiles (AOTInductor) and builds the C++ runner (CMake): CI must run it.
# ResNet-18 is left out here (its BatchNorm folding is checked in test_export.py) to keep it to minutes.
REPOSITORY = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
BUILD_TIMEOUT_S = 1800
# (arch, classes, channels, dataset, fixed batch or None for any)
STUDENTS = {
    "lenet5_half": ("lenet5_half", 10, 1, "digits", None),
    "wrn16_1": ("wrn16_1", 10, 3, "cifar10", None),
    "lenet5_half_batch3": ("lenet5_half", 10, 1, "digits", 3),
}


def readme_build_commands(build: Path) -> list[str]:
    """The README's runner build, verbatim but for the build folder: what a user copies must work as it is,
    without a CUDA toolkit even where torch is a CUDA build (this machine's)."""
    readme = (REPOSITORY / "README.md").read_text()
    section = readme[readme.index("### export") : readme.index("## Datasets, offline")]
    lines = [line for line in section.splitlines() if line.startswith("cmake ")]
    assert lines, "the README's export section has no cmake line"
    return [re.sub(r"(?<=-B )build\b|(?<=--build )build\b", str(build), line) for line in lines]


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Path:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    build = tmp_path_factory.mktemp("runner-build")
    # `python` in the README's command is the interpreter running the tests (its torch is the one exported with).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CUDA_HOME", None)
    env.pop("CUDA_PATH", None)
    for command in readme_build_commands(build):
        result = subprocess.run(
            ["bash", "-c", command], cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
        assert result.returncode == 0, f"{command} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return build / "fastlrwa-infer"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[torch.nn.Module, Path, dict]]:
    """Each student of STUDENTS saved as a checkpoint and exported: (eval model, export folder, summary)."""
    exports = {}
    for seed, (name, (arch, classes, channels, dataset, batch)) in enumerate(STUDENTS.items()):
        torch.manual_seed(seed)
        model = build_model(arch, classes, in_channels=channels)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, _BatchNorm):
                    module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.5)
                    module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                    module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.5)
        folder = tmp_path_factory.mktemp(name)
        statistics = None if dataset is None else tuple(0.1 + 0.2 * c for c in range(channels))
        meta = ModelMeta(arch, classes, channels, 32, dataset, statistics, statistics)
        save_model_checkpoint(folder / "student.pt", model, meta)
        summary = run_export(str(folder / "student.pt"), str(folder / "export"), batch=batch)
        exports[name] = (model.eval().double(), folder / "export", summary)
    return exports


def run_runner(runner: Path, package: Path, shape: tuple[int, ...], payload: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(runner), str(package), *map(str, shape)], input=payload, capture_output=True, timeout=300
    )


@pytest.mark.parametrize("name, batch", [("lenet5_half", 5), ("wrn16_1", 7), ("wrn16_1", 1)])
def test_python_aoti_package_matches_eager_model(exported, name, batch):
    model, folder, _ = exported[name]
    compiled = torch._inductor.aoti_load_package(str(folder / "model.pt2"))
    x = torch.randn(batch, model.in_channels, 32, 32)
    with torch.no_grad():
        difference = (compiled(x).double() - model(x.double())).abs().max().item()
    assert difference <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("name, batch", [("lenet5_half", 5), ("wrn16_1", 7), ("wrn16_1", 1), ("lenet5_half_batch3", 3)])
def test_cpp_runner_matches_eager_model(runner, exported, name, batch):
    model, folder, summary = exported[name]
    x = torch.randn(batch, model.in_channels, 32, 32)
    result = run_runner(runner, folder / "model.pt2", tuple(x.shape), x.numpy().astype("<f4").tobytes())
    assert result.returncode == 0, result.stderr.decode()
    logits = torch.from_numpy(np.frombuffer(result.stdout, dtype="<f4").copy())
    assert logits.numel() == batch * summary["num_classes"]
    with torch.no_grad():
        expected = model(x.double())
    assert (logits.reshape(batch, -1).double() - expected).abs().max().item() <= TOLERANCE


def test_meta_json_describes_the_export(exported):
    model, folder, summary = exported["wrn16_1"]
    content = json.loads((folder / "meta.json").read_text())
    assert content["input_shape"] == [3, 32, 32] and content["num_classes"] == 10 and content["batch"] is None
    assert content["class_names"][:2] == ["airplane", "automobile"]
    assert content["normalization"]["mean"] == pytest.approx([0.1, 0.3, 0.5])
    assert summary["model"] == str(folder / "model.pt2")
    assert not [path.name for path in folder.iterdir() if path.name not in ("model.pt2", "meta.json")]


@pytest.mark.slow
@pytest.mark.parametrize("values_sent", [0, 1, 3 * 32 * 32 * 2 - 1])
def test_runner_refuses_short_input(runner, exported, values_sent):
    _, folder, _ = exported["wrn16_1"]
    payload = torch.randn(values_sent).numpy().astype("<f4").tobytes()
    result = run_runner(runner, folder / "model.pt2", (2, 3, 32, 32), payload)
    assert result.returncode == 2 and result.stdout == b""
    assert f"stdin ended after {4 * values_sent} bytes" in result.stderr.decode()


@pytest.mark.slow
def test_runner_refuses_input_longer_than_the_shape(runner, exported):
    _, folder, _ = exported["lenet5_half"]
    payload = torch.randn(2 * 32 * 32 + 1).numpy().astype("<f4").tobytes()
    result = run_runner(runner, folder / "model.pt2", (2, 1, 32, 32), payload)
    assert result.returncode == 2 and "more than N*C*H*W" in result.stderr.decode()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, shape, message",
    [
        ("wrn16_1", (2, 3, 31, 32), "the model takes C H W = 3 32 32"),
        ("wrn16_1", (2, 1, 32, 32), "the model takes C H W = 3 32 32"),
        ("lenet5_half_batch3", (4, 1, 32, 32), "fixed batch of 3"),
    ],
)
def test_runner_refuses_a_shape_the_package_was_not_exported_for(runner, exported, name, shape, message):
    _, folder, _ = exported[name]
    payload = torch.randn(int(np.prod(shape))).numpy().astype("<f4").tobytes()
    result = run_runner(runner, folder / "model.pt2", shape, payload)
    assert result.returncode == 2 and message in result.stderr.decode()


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments, message",
    [
        ((), "expected 5 arguments, got 0"),
        (("model.pt2", "2", "3", "32"), "expected 5 arguments, got 4"),
        (("model.pt2", "2", "0", "32", "32"), "C must be a positive integer"),
        (("model.pt2", "two", "3", "32", "32"), "N must be a positive integer"),
        (("absent.pt2", "2", "3", "32", "32"), "is not a file"),
    ],
)
def test_runner_reports_bad_arguments_in_one_line(runner, tmp_path, arguments, message):
    result = subprocess.run([str(runner), *arguments], input=b"", capture_output=True, cwd=tmp_path, timeout=60)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0]


@pytest.mark.slow
def test_runner_refuses_a_file_that_is_not_a_package(runner, exported):
    _, folder, _ = exported["lenet5_half"]
    not_a_package = folder.parent / "student.pt"
    result = run_runner(runner, not_a_package, (1, 1, 32, 32), torch.randn(1024).numpy().astype("<f4").tobytes())
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "cannot load" in lines[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_package_runs_on_the_gpu_from_python_and_cpp(runner, exported, tmp_path):
    model, folder, _ = exported["wrn16_1"]
    summary = run_export(str(folder.parent / "student.pt"), str(tmp_path / "cuda"), device="cuda")
    package = tmp_path / "cuda" / "model.pt2"
    assert summary["device"] == "cuda" and json.loads((tmp_path / "cuda" / "meta.json").read_text())["device"] == "cuda"
    x = torch.randn(5, 3, 32, 32)
    compiled = torch._inductor.aoti_load_package(str(package))
    result = run_runner(runner, package, tuple(x.shape), x.numpy().astype("<f4").tobytes())
    assert result.returncode == 0, result.stderr.decode()
    with torch.no_grad():
        expected = model(x.double())
        from_python = compiled(x.cuda()).cpu().double()
    from_cpp = torch.from_numpy(np.frombuffer(result.stdout, dtype="<f4").copy()).reshape(5, -1).double()
    # cuDNN convolutions may run in TF32 (10-bit mantissa) on the GPU, so the bound is looser than on the CPU.
    assert (from_python - expected).abs().max().item() <= 1e-2
    assert (from_cpp - expected).abs().max().item() <= 1e-2
