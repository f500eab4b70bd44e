"""A TorchScript teacher converted to an exported program: the same outputs as the script at any batch size, its
BatchNorm calls and head made modules, the run's random stream untouched, and the script kept where the
translation fails or disagrees with it."""

from __future__ import annotations

import pytest
import torch
from foreign_teachers import LoopingCNN, user_cnn

import fastlrwa.models.script_conversion as script_conversion
from fastlrwa.models.batchnorm import tracked_batchnorms
from fastlrwa.models.script_conversion import CONVERTED, script_teacher

SHAPE = (1, 32, 32)


@pytest.fixture(scope="module")
def script():
    return torch.jit.script(user_cnn(seed=6))


@pytest.fixture(scope="module")
def converted(script):
    return script_teacher(script, SHAPE)


def test_the_converted_program_gives_the_scripts_outputs_at_odd_batch_sizes(script, converted):
    assert converted.converted and converted.note == CONVERTED
    assert not isinstance(converted.module, torch.jit.ScriptModule)
    for batch in (1, 7, 13):
        x = torch.randn(batch, *SHAPE) * 2.5 + 0.3
        with torch.no_grad():
            torch.testing.assert_close(converted.module(x), script(x), rtol=1e-6, atol=1e-6)


def test_the_converted_program_has_the_scripts_batchnorms_and_head(script, converted):
    norms = [layer for _, layer in tracked_batchnorms(converted.module)]
    assert len(norms) == 3 and not any(layer.training for layer in norms)
    reference = [module for module in script.modules() if module.original_name == "BatchNorm2d"]
    for got, expected in zip(norms, reference):
        torch.testing.assert_close(got.running_mean, expected.running_mean, rtol=0, atol=0)
        torch.testing.assert_close(got.running_var, expected.running_var, rtol=0, atol=0)
    heads = [module for module in converted.module.modules() if isinstance(module, torch.nn.Linear)]
    assert len(heads) == 1
    torch.testing.assert_close(heads[0].weight, script.head.weight, rtol=0, atol=0)


def test_a_script_saved_in_train_mode_is_converted_in_eval_mode():
    model = user_cnn(seed=7)
    script = torch.jit.script(model.train())
    converted = script_teacher(script, SHAPE)
    assert converted.converted
    x = torch.randn(5, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(converted.module(x), model.eval()(x), rtol=1e-5, atol=1e-5)


def test_converting_draws_nothing_from_the_runs_random_stream_and_prints_nothing(script, capfd):
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    assert script_teacher(script, SHAPE).converted
    torch.testing.assert_close(torch.rand(4), expected, rtol=0, atol=0)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_script_torch_cannot_convert_is_kept_as_it_is():
    script = torch.jit.script(user_cnn(seed=8, cls=LoopingCNN))
    kept = script_teacher(script, SHAPE)
    assert kept.module is script and not kept.converted
    assert kept.note.startswith("run as TorchScript, without hooks: torch's converter failed (RuntimeError: ")


def test_a_translation_whose_outputs_differ_from_the_scripts_is_not_kept(script, monkeypatch):
    def shifted(module):
        graph = module

        class Shifted(torch.nn.Module):
            def forward(self, x):
                return graph(x) + 1e-3

        return Shifted()

    monkeypatch.setattr(script_conversion, "materialise_modules", shifted)
    kept = script_teacher(script, SHAPE)
    assert kept.module is script and "outputs differ from the script's (by up to 0.001)" in kept.note
