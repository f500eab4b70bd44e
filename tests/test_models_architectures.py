"""Registered classifiers: parameter counts, shapes per dataset, features, functional_call, compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from fastlrwa.errors import ConfigError
from fastlrwa.models import CLASSIFIER_NAMES, Classifier, build_model

RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
WRN_SHAPES = {"wrn16_1": (16, 1), "wrn16_2": (16, 2), "wrn40_2": (40, 2)}
# Published CIFAR-10 parameter counts: ResNet-18/34 as reported for the CIFAR variant (e.g. kuangliu's
# pytorch-cifar, the DFAD/CMI code bases); WRN counts as listed in the CMI/DFKD model-zoo tables (2.24M,
# 0.69M, 0.175M). Each is also re-derived below from the layer formulas.
PUBLISHED_CIFAR10_COUNTS = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "wrn40_2": 2_243_546,
    "wrn16_2": 691_674,
    "wrn16_1": 175_066,
}
# (channels, image size, classes) of every dataset the project trains on.
DATASET_INPUTS = {
    "mnist/fashion/digits": (1, 32, 10),
    "cifar10/svhn": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "tiny-imagenet": (3, 64, 200),
}


def conv(cin: int, cout: int, k: int, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def linear(i: int, o: int) -> int:
    return i * o + o


def lenet_count(widths: tuple[int, int, int, int], classes: int, in_ch: int) -> int:
    c1, c2, c3, f = widths
    return conv(in_ch, c1, 5, True) + conv(c1, c2, 5, True) + conv(c2, c3, 5, True) + linear(c3, f) + linear(f, classes)


def cifar_resnet_count(blocks: tuple[int, ...], classes: int, in_ch: int = 3) -> int:
    total = conv(in_ch, 64, 3) + bn(64)
    planes = 64
    for width, n in zip((64, 128, 256, 512), blocks):
        for _ in range(n):
            total += conv(planes, width, 3) + bn(width) + conv(width, width, 3) + bn(width)
            if planes != width:  # the first block of stages 2-4: projection shortcut
                total += conv(planes, width, 1) + bn(width)
            planes = width
    return total + linear(512, classes)


def wrn_count(depth: int, k: int, classes: int, in_ch: int = 3) -> int:
    n = (depth - 4) // 6
    total = conv(in_ch, 16, 3)
    planes = 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += bn(planes) + conv(planes, width, 3) + bn(width) + conv(width, width, 3)
            if planes != width:
                total += conv(planes, width, 1)
            planes = width
    return total + bn(planes) + linear(planes, classes)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def final_linear(model: Classifier) -> nn.Linear:
    return model.get_submodule(model.head_weight_key.removesuffix(".weight"))


def test_registered_names() -> None:
    assert CLASSIFIER_NAMES == ("lenet5", "lenet5_half", "resnet18", "resnet34", "wrn16_1", "wrn16_2", "wrn40_2")


@pytest.mark.parametrize("classes", [10, 7])
def test_lenet_counts_match_the_layer_formula(classes: int) -> None:
    # LeNet-5 by hand for 10 classes: 156 + 2416 + 48120 + 10164 + 850; LeNet-5-Half: 78 + 608 + 12060 + 2562 + 430.
    if classes == 10:
        assert count(build_model("lenet5", 10, in_channels=1)) == 156 + 2416 + 48120 + 10164 + 850
        assert count(build_model("lenet5_half", 10, in_channels=1)) == 78 + 608 + 12060 + 2562 + 430
    assert count(build_model("lenet5", classes, in_channels=1)) == lenet_count((6, 16, 120, 84), classes, 1)
    assert count(build_model("lenet5_half", classes, in_channels=3)) == lenet_count((3, 8, 60, 42), classes, 3)


@pytest.mark.parametrize("arch", sorted(PUBLISHED_CIFAR10_COUNTS))
def test_published_cifar10_counts(arch: str) -> None:
    if arch in RESNET_BLOCKS:
        derived = cifar_resnet_count(RESNET_BLOCKS[arch], 10)
    else:
        derived = wrn_count(*WRN_SHAPES[arch], 10)
    assert derived == PUBLISHED_CIFAR10_COUNTS[arch]
    assert count(build_model(arch, 10)) == derived


@pytest.mark.parametrize("arch", ["resnet18", "wrn16_2"])
def test_counts_follow_classes_and_channels(arch: str) -> None:
    model = build_model(arch, 200, in_channels=1, image_size=64)
    derived = (
        cifar_resnet_count(RESNET_BLOCKS[arch], 200, 1)
        if arch in RESNET_BLOCKS
        else wrn_count(*WRN_SHAPES[arch], 200, 1)
    )
    assert count(model) == derived


# Every dataset's input on one ResNet and one WRN (all families share their code paths per depth),
# and every other registered architecture on one dataset; odd batch sizes throughout.
SHAPE_CASES = [
    *(("resnet18", dataset, *shape) for dataset, shape in DATASET_INPUTS.items()),
    *(("wrn16_1", dataset, *shape) for dataset, shape in DATASET_INPUTS.items()),
    ("lenet5", "mnist/fashion/digits", *DATASET_INPUTS["mnist/fashion/digits"]),
    ("lenet5_half", "mnist/fashion/digits", *DATASET_INPUTS["mnist/fashion/digits"]),
    ("resnet34", "tiny-imagenet", *DATASET_INPUTS["tiny-imagenet"]),
    ("wrn16_2", "cifar10/svhn", *DATASET_INPUTS["cifar10/svhn"]),
    ("wrn40_2", "cifar100", *DATASET_INPUTS["cifar100"]),
]


@pytest.mark.parametrize("arch,dataset,channels,size,classes", SHAPE_CASES)
def test_shapes_and_features_per_dataset(arch: str, dataset: str, channels: int, size: int, classes: int) -> None:
    model = build_model(arch, classes, in_channels=channels, image_size=size).eval()
    batch = 3 if size == 64 else 5
    x = torch.randn(batch, channels, size, size)
    captured = {}
    head = final_linear(model)
    handles = [
        head.register_forward_hook(lambda module, inputs, output: captured.update(input=inputs[0], output=output))
    ]
    if arch.startswith("lenet"):
        # DAFL's and the authors' features_T[-1] for LeNet-5: conv3's output after its ReLU, flattened.
        handles.append(
            model.conv3.register_forward_hook(
                lambda module, inputs, output: captured.update(features=torch.flatten(F.relu(output), 1))
            )
        )
    with torch.no_grad():
        logits, features = model(x, return_features=True)
        plain_logits = model(x)
    for handle in handles:
        handle.remove()
    assert logits.shape == (batch, classes)
    assert features.shape == (batch, model.feature_dim)
    assert isinstance(head, nn.Linear)
    expected_features = captured["features"] if arch.startswith("lenet") else captured["input"]
    assert model.feature_dim == (model.conv3.out_channels if arch.startswith("lenet") else head.in_features)
    torch.testing.assert_close(features, expected_features, rtol=0, atol=0)
    torch.testing.assert_close(logits, captured["output"], rtol=0, atol=0)
    torch.testing.assert_close(plain_logits, logits)


def test_lenet_refuses_other_image_sizes() -> None:
    with pytest.raises(ConfigError, match="32x32"):
        build_model("lenet5", 10, in_channels=1, image_size=28)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_bad_sizes_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("wrn16_1", bad)  # type: ignore[arg-type]


def test_initialisation_is_kaiming_and_unit_batchnorm() -> None:
    model = build_model("resnet18", 10)
    assert all(
        torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    )
    stem = model.conv1.weight  # kaiming normal, fan_out = 64 * 3 * 3, gain sqrt(2)
    expected_std = (2.0 / (64 * 9)) ** 0.5
    assert abs(stem.std().item() - expected_std) / expected_std < 0.1


def test_functional_call_batchnorm_updates_the_passed_buffers() -> None:
    model = build_model("wrn16_1", 10).train()
    params = dict(model.named_parameters())
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    untouched = {name: b.clone() for name, b in model.named_buffers()}
    x = torch.randn(5, 3, 32, 32)
    functional_call(model, (params, buffers), (x,))
    stem_output = F.conv2d(x, model.conv1.weight, padding=1).detach()  # the input of the first BatchNorm
    batch_mean = stem_output.mean(dim=(0, 2, 3))
    batch_var = stem_output.var(dim=(0, 2, 3), unbiased=True)
    first = "block1.layer.0.bn1."
    torch.testing.assert_close(
        buffers[first + "running_mean"], 0.9 * untouched[first + "running_mean"] + 0.1 * batch_mean
    )
    torch.testing.assert_close(buffers[first + "running_var"], 0.9 * untouched[first + "running_var"] + 0.1 * batch_var)
    assert buffers[first + "num_batches_tracked"].item() == 1
    for name, b in model.named_buffers():
        assert torch.equal(b, untouched[name]), f"module buffer {name} changed"


@pytest.mark.parametrize("arch", ["lenet5_half", "resnet18"])
def test_channels_last_gives_the_same_outputs(arch: str) -> None:
    channels = 1 if arch.startswith("lenet") else 3
    model = build_model(arch, 10, in_channels=channels).eval()
    x = torch.randn(3, channels, 32, 32)
    with torch.no_grad():
        reference = model(x, return_features=True)
        model = model.to(memory_format=torch.channels_last)
        result = model(x.contiguous(memory_format=torch.channels_last), return_features=True)
    for got, want in zip(result, reference):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_compiles_as_one_graph() -> None:
    model = build_model("wrn16_1", 10).train()
    x = torch.randn(5, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    logits, features = compiled(x, return_features=True)
    torch.testing.assert_close(logits, model(x), rtol=1e-4, atol=1e-5)
    assert features.shape == (5, model.feature_dim)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_inductor_compiled_resnet18_matches_eager() -> None:
    model = build_model("resnet18", 10).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-3, atol=1e-4)
