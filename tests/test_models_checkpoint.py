"""Model checkpoints: the fastlrwa format, foreign state_dicts, pickled modules, and every refusal."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from fastlrwa.errors import CheckpointError
from fastlrwa.models import (
    ModelMeta,
    build_model,
    check_num_classes,
    load_checkpoint,
    load_checkpoint_with_meta,
    save_model_checkpoint,
)


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Random values in every float tensor (BatchNorm statistics included), so a round trip proves something."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    return model


def assert_same_weights(loaded: torch.nn.Module, original: torch.nn.Module) -> None:
    expected = original.state_dict()
    got = loaded.state_dict()
    assert got.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(got[key], tensor), key


def refusal(path: Path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint_with_meta(path, **kwargs)
    message = str(raised.value)
    assert str(path) in message and "\n" not in message
    return message


def cifar_meta(arch: str, classes: int = 7) -> ModelMeta:
    return ModelMeta(
        arch=arch,
        num_classes=classes,
        in_channels=3,
        image_size=32,
        dataset="cifar10",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.247, 0.243, 0.261),
    )


def test_fastlrwa_round_trip(tmp_path: Path) -> None:
    model = randomised(build_model("wrn16_1", 7))
    meta = cifar_meta("wrn16_1")
    path = tmp_path / "nested" / "model.pt"
    save_model_checkpoint(
        path, model, meta, extra={"test_accuracy": np.float64(91.5), "recipe": {"epochs": 3, "tags": ("a",)}}
    )

    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == "fastlrwa-model" and raw["version"] == 1
    assert raw["extra"] == {"test_accuracy": 91.5, "recipe": {"epochs": 3, "tags": ["a"]}}
    assert type(raw["extra"]["test_accuracy"]) is float
    loaded, loaded_meta = load_checkpoint_with_meta(path)
    assert loaded_meta == meta
    assert_same_weights(loaded, model)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x), rtol=0, atol=0)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_save_refuses_unloadable_extras_and_wrong_meta(tmp_path: Path) -> None:
    model = build_model("lenet5_half", 10, in_channels=1)
    meta = ModelMeta("lenet5_half", 10, 1, 32, None, None, None)
    with pytest.raises(TypeError, match=r"extra\['weights'\]"):
        save_model_checkpoint(tmp_path / "a.pt", model, meta, extra={"weights": torch.ones(2)})
    with pytest.raises(ValueError, match="does not describe"):
        save_model_checkpoint(tmp_path / "b.pt", model, ModelMeta("lenet5", 10, 1, 32, None, None, None))
    assert not any(tmp_path.iterdir())


def test_bare_state_dict_infers_classes_and_channels(tmp_path: Path) -> None:
    model = randomised(build_model("lenet5_half", 13, in_channels=1))
    path = tmp_path / "bare.pt"
    torch.save(model.state_dict(), path)
    loaded, meta = load_checkpoint_with_meta(path, arch="lenet5_half")
    assert meta == ModelMeta("lenet5_half", 13, 1, 32, None, None, None)
    assert_same_weights(loaded, model)
    assert "--arch" in refusal(path)


@pytest.mark.parametrize("wrapping", ["state_dict", "model", "data_parallel", "compiled_data_parallel"])
def test_wrapped_state_dicts(tmp_path: Path, wrapping: str) -> None:
    model = randomised(build_model("resnet18", 10))
    weights = model.state_dict()
    payload = {
        "state_dict": {"state_dict": weights, "epoch": 200, "best_acc": 95.1},
        "model": {"model": weights, "optimizer": {"lr": 0.1}},
        "data_parallel": {"module." + key: value for key, value in weights.items()},
        "compiled_data_parallel": {"_orig_mod.module." + key: value for key, value in weights.items()},
    }[wrapping]
    path = tmp_path / "teacher.pth"
    torch.save(payload, path)
    loaded = load_checkpoint(path, arch="resnet18")
    assert_same_weights(loaded, model)


def test_plain_torchvision_state_dict(tmp_path: Path) -> None:
    reference = torchvision.models.mobilenet_v3_small(weights=None, num_classes=6)
    path = tmp_path / "tv.pt"
    torch.save(reference.state_dict(), path)
    loaded, meta = load_checkpoint_with_meta(path, arch="mobilenet_v3_small")
    assert meta.num_classes == 6 and meta.in_channels == 3
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), reference.eval()(x))


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    model = randomised(build_model("wrn16_1", 10))
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    message = refusal(path)
    assert "--trust-pickle" in message and "pickled" in message
    loaded, meta = load_checkpoint_with_meta(path, trust_pickle=True)
    assert meta.arch == "wrn16_1" and meta.num_classes == 10
    assert_same_weights(loaded, model)
    assert "--arch wrn16_2" in refusal(path, trust_pickle=True, arch="wrn16_2")


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4099))
    assert "corrupt" in refusal(path)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9, 0.999])
def test_truncated_checkpoint_is_refused(tmp_path: Path, fraction: float) -> None:
    whole = tmp_path / "whole.pt"
    save_model_checkpoint(
        whole, build_model("lenet5", 10, in_channels=1), ModelMeta("lenet5", 10, 1, 32, None, None, None)
    )
    data = whole.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    assert "corrupt" in refusal(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "no such file" in refusal(tmp_path / "absent.pt")
    assert "directory" in refusal(tmp_path)


def test_unknown_arch(tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save(build_model("lenet5", 10, in_channels=1).state_dict(), path)
    assert "unknown architecture 'lenet7'" in refusal(path, arch="lenet7")


def test_shape_mismatch_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save(build_model("resnet18", 10).state_dict(), path)
    assert "shape mismatch linear.weight (10, 512) != (100, 512)" in refusal(path, arch="resnet18", num_classes=100)
    assert "missing keys layer1.2.conv1.weight" in refusal(path, arch="resnet34")

    weights = build_model("lenet5", 10, in_channels=1).state_dict()
    del weights["fc1.weight"]
    torch.save(weights, path)
    assert "missing keys fc1.weight" in refusal(path, arch="lenet5")

    torch.save(build_model("wrn16_2", 10).state_dict(), path)
    message = refusal(path, arch="wrn16_1")
    assert "shape mismatch" in message and "more" in message  # only the first few are listed


def test_arch_and_size_disagreement_with_metadata(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_model_checkpoint(path, build_model("resnet18", 7), cifar_meta("resnet18"))
    assert "'resnet18' but --arch resnet34 was given" in refusal(path, arch="resnet34")
    assert "--teacher-arch resnet34" in refusal(path, arch="resnet34", arch_flag="--teacher-arch")
    assert "num_classes 7 but 10" in refusal(path, num_classes=10)
    assert load_checkpoint_with_meta(path, arch="resnet18", num_classes=7)[1].arch == "resnet18"


def test_class_count_check() -> None:
    meta = cifar_meta("resnet18", classes=10)
    check_num_classes(meta, 10, "cifar10", "t.pt")
    with pytest.raises(CheckpointError, match=r"t\.pt: .*10 classes but cifar100 has 100"):
        check_num_classes(meta, 100, "cifar100", "t.pt")


@pytest.mark.parametrize(
    "payload,problem",
    [
        ({"hello": "world"}, "no model weights"),
        ([1, 2, 3], "no model weights"),
        ({"format": "fastlrwa-model", "version": 2, "meta": {}, "state_dict": {}}, "upgrade fastlrwa"),
        ({"format": "fastlrwa-model", "version": "1", "meta": {}, "state_dict": {}}, "malformed fastlrwa checkpoint"),
        (
            {"format": "fastlrwa-model", "version": 1, "meta": {"arch": "lenet5"}, "state_dict": {}},
            "malformed metadata",
        ),
    ],
)
def test_unusable_contents(tmp_path: Path, payload: object, problem: str) -> None:
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    assert problem in refusal(path, arch="lenet5")
