"""Export without compiling: BatchNorm folding, the exported program, meta.json, and run_export's errors.

The AOTInductor compile and the C++ runner are in ``test_export_runner.py`` (slow).
"""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from fastlrwa.commands.export import run_export
from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.export import ChannelAffine, export_classifier, export_metadata, file_sha256, fold_batchnorm
from fastlrwa.models import ModelMeta, build_model, save_model_checkpoint


def randomise_batchnorms(model: nn.Module, generator: torch.Generator) -> None:
    """Statistics and affine parameters far from their initial 0/1 values, so folding is really exercised."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(size, generator=generator) * 0.5)


def batchnorm_reference(x: torch.Tensor, batchnorm: _BatchNorm) -> torch.Tensor:
    """Eval-mode BatchNorm written out: (x - mean) / sqrt(var + eps) * weight + bias, per channel (dim 1)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    out = (x - batchnorm.running_mean.reshape(shape)) / torch.sqrt(batchnorm.running_var.reshape(shape) + batchnorm.eps)
    if batchnorm.affine:
        out = out * batchnorm.weight.reshape(shape) + batchnorm.bias.reshape(shape)
    return out


def student(arch: str, classes: int, channels: int, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(arch, classes, in_channels=channels)
    randomise_batchnorms(model, generator)
    return model.eval()


@pytest.mark.parametrize("arch, classes, channels", [("wrn16_1", 7, 3), ("resnet18", 3, 3), ("lenet5_half", 10, 1)])
def test_folded_model_computes_the_eval_model_logits(arch, classes, channels):
    model = student(arch, classes, channels, seed=11)
    model_float64 = copy.deepcopy(model).double()
    folded = fold_batchnorm(model)
    x = torch.randn(5, channels, 32, 32)
    with torch.no_grad():
        reference = model_float64(x.double())
        folded_float32 = folded(x)
        folded_float64 = fold_batchnorm(model_float64)(x.double())
    assert not any(isinstance(module, _BatchNorm) for module in folded.modules())
    assert (folded_float32.double() - reference).abs().max().item() <= 1e-5
    # In float64 the fold is exact up to rounding: any error in the formula would show far above 1e-10.
    assert (folded_float64 - reference).abs().max().item() <= 1e-10


def test_conv_batchnorm_pairs_are_merged_and_the_rest_become_channel_affines():
    # WRN's bn2 follows conv1 directly; every other BatchNorm follows a residual sum (pre-activation).
    wrn = student("wrn16_1", 4, 3, seed=3)
    after_sums = sum(1 for name, m in wrn.named_modules() if isinstance(m, _BatchNorm) and not name.endswith("bn2"))
    folded_wrn = fold_batchnorm(wrn)
    assert sum(isinstance(m, ChannelAffine) for m in folded_wrn.modules()) == after_sums
    # Every ResNet BatchNorm follows its own convolution, so all of them vanish into the weights.
    resnet = student("resnet18", 4, 3, seed=3)
    folded_resnet = fold_batchnorm(resnet)
    assert not any(isinstance(m, (ChannelAffine, _BatchNorm)) for m in folded_resnet.modules())
    assert sum(isinstance(m, nn.Conv2d) for m in folded_resnet.modules()) == sum(
        isinstance(m, nn.Conv2d) for m in resnet.modules()
    )


def test_fold_leaves_the_original_model_untouched():
    model = student("resnet18", 3, 3, seed=5)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    fold_batchnorm(model)
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert any(isinstance(m, _BatchNorm) for m in model.modules())


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("batchnorm_class, shape", [(nn.BatchNorm1d, (6, 5)), (nn.BatchNorm2d, (3, 5, 7, 9))])
def test_channel_affine_is_the_eval_batchnorm_formula(batchnorm_class, shape, affine):
    generator = torch.Generator().manual_seed(7)
    batchnorm = batchnorm_class(5, affine=affine).double()
    randomise_batchnorms(batchnorm, generator)
    batchnorm.eval()
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(
            ChannelAffine.from_batchnorm(batchnorm)(x), batchnorm_reference(x, batchnorm), rtol=0, atol=1e-12
        )


class SharedOutputNet(nn.Module):
    """conv -> bn where the conv output is used unnormalised too, and a conv called twice before its bn."""

    def __init__(self) -> None:
        super().__init__()
        self.branch = nn.Conv2d(3, 4, 3, padding=1)
        self.branch_bn = nn.BatchNorm2d(4)
        self.shared = nn.Conv2d(4, 4, 1)
        self.shared_bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.branch(x)
        normalised = self.branch_bn(features) + features
        return self.shared_bn(self.shared(self.shared(normalised)))


def test_fold_keeps_convolutions_whose_output_or_module_is_used_elsewhere():
    model = SharedOutputNet()
    randomise_batchnorms(model, torch.Generator().manual_seed(2))
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(3, 3, 7, 5)
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max().item() <= 1e-5
    assert sum(isinstance(m, ChannelAffine) for m in folded.modules()) == 2
    assert not any(isinstance(m, _BatchNorm) for m in folded.modules())


def test_batchnorm_without_running_statistics_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)).eval()
    with pytest.raises(ConfigError, match="running statistics"):
        fold_batchnorm(model)


class ValueBranchingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out if out.sum() > 0 else -out


def test_untraceable_model_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot be traced for export"):
        fold_batchnorm(ValueBranchingNet().eval())


def test_exported_program_has_no_batchnorm_and_a_dynamic_batch():
    model = student("wrn16_1", 5, 3, seed=13)
    reference = copy.deepcopy(model).double()
    program = export_classifier(model, (3, 32, 32))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert "aten.conv2d.default" in targets and not any("batch_norm" in target for target in targets)
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            assert (program.module()(x).double() - reference(x.double())).abs().max().item() <= 1e-5


def test_fixed_batch_export_takes_only_that_batch():
    model = student("lenet5_half", 10, 1, seed=17)
    program = export_classifier(model, (1, 32, 32), batch=3)
    assert tuple(program.example_inputs[0][0].shape) == (3, 1, 32, 32)
    with torch.no_grad():
        x = torch.randn(3, 1, 32, 32)
        assert (program.module()(x) - model(x)).abs().max().item() <= 1e-5
        with pytest.raises(AssertionError, match="Guard failed"):
            program.module()(torch.randn(4, 1, 32, 32))


def test_metadata_names_dataset_classes_normalisation_and_source(tmp_path):
    checkpoint = tmp_path / "student.pt"
    checkpoint.write_bytes(torch.randint(0, 256, (997,), dtype=torch.uint8).numpy().tobytes())
    meta = ModelMeta("wrn16_1", 10, 3, 32, "cifar10", (0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    content = export_metadata(
        meta,
        model_file="model.pt2",
        checkpoint=checkpoint,
        checkpoint_sha256=file_sha256(checkpoint),
        batch=None,
        device=torch.device("cpu"),
    )
    assert content["input_shape"] == [3, 32, 32] and content["dtype"] == "float32" and content["batch"] is None
    assert content["class_names"][0] == "airplane" and len(content["class_names"]) == 10
    assert content["normalization"] == {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}
    assert content["source_checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert content["torch_version"] == torch.__version__
    json.dumps(content)


@pytest.mark.parametrize("dataset, classes", [(None, 4), ("tiny-imagenet", 200), ("cifar10", 7)])
def test_metadata_numbers_classes_when_their_names_are_unknown(dataset, classes):
    meta = ModelMeta("resnet18", classes, 3, 32, dataset, None, None)
    content = export_metadata(
        meta, model_file="model.pt2", checkpoint="x.pt", checkpoint_sha256="0" * 64, batch=8, device=torch.device("cpu")
    )
    assert content["class_names"] == [str(index) for index in range(classes)]
    assert content["normalization"] is None and content["batch"] == 8


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        run_export(str(tmp_path / "absent.pt"), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "model.pt2").exists()


def test_corrupt_checkpoint_is_a_checkpoint_error(tmp_path):
    checkpoint = tmp_path / "student.pt"
    checkpoint.write_bytes(torch.randint(0, 256, (513,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        run_export(str(checkpoint), str(tmp_path / "out"))


def test_output_path_that_is_a_file_is_a_config_error(tmp_path):
    occupied = tmp_path / "out"
    occupied.write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file"):
        run_export(str(tmp_path / "student.pt"), str(occupied))


def test_non_positive_batch_is_a_config_error_and_keeps_the_previous_export(tmp_path):
    model = student("lenet5_half", 10, 1, seed=19)
    checkpoint = tmp_path / "student.pt"
    save_model_checkpoint(checkpoint, model, ModelMeta("lenet5_half", 10, 1, 32, "digits", (0.5,), (0.5,)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "meta.json").write_text('{"previous": true}')
    with pytest.raises(ConfigError, match="--batch must be a positive integer"):
        run_export(str(checkpoint), str(out), batch=0)
    assert json.loads((out / "meta.json").read_text()) == {"previous": True}
