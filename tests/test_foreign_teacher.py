"""Teachers from outside fastlrwa: TorchScript, torch.export and a state_dict of the user's own class, each
told apart by content, mapped to the run's normalisation, checked before training and distilled end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from foreign_teachers import FACTORY, LoopingCNN, UserCNN, save_three_ways, user_cnn

from conftest import TINY_TRAIN_FLAGS, tiny_overrides
from fastlrwa.cli import cli
from fastlrwa.commands.train import run_train
from fastlrwa.config.presets import train_config
from fastlrwa.config.schema import TeacherConfig
from fastlrwa.data import dataset_info
from fastlrwa.errors import CheckpointError, ConfigError
from fastlrwa.models.batchnorm import tracked_batchnorms
from fastlrwa.models.teacher_forms import teacher_form
from fastlrwa.trainer.impressions import class_vectors
from fastlrwa.trainer.teacher import load_frozen_teacher

DIGITS = dataset_info("digits")
FORMS = {"torchscript": {}, "exported": {}, "state_dict": {"teacher.factory": FACTORY}}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = user_cnn(seed=3)
    return model, save_three_ways(model, tmp_path_factory.mktemp("user_teacher"))


@pytest.fixture(scope="module")
def looping(tmp_path_factory):
    """A TorchScript teacher torch's converter cannot translate (a data-dependent loop), and its Python module."""
    model = user_cnn(seed=4, cls=LoopingCNN)
    path = tmp_path_factory.mktemp("looping") / "looping_script.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    return model, path


def _config(path, **fields):
    return TeacherConfig(path=str(path), **fields)


def test_forms_are_told_apart_by_content_not_extension(saved, tmp_path):
    _, paths = saved
    swapped = {}
    for form, path in paths.items():
        swapped[form] = tmp_path / f"{form}.bin"
        swapped[form].write_bytes(path.read_bytes())
    assert teacher_form(swapped["torchscript"]) == "torchscript"
    assert teacher_form(swapped["exported"]) == "exported"
    assert teacher_form(swapped["state_dict"]) == "checkpoint"


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_form_gives_the_models_logits_on_its_own_normalisation(saved, form):
    model, paths = saved
    mean, std = (0.5,), (0.25,)
    fields = {"factory": FACTORY} if form == "state_dict" else {}
    teacher, meta = load_frozen_teacher(
        paths[form], _config(paths[form], mean="0.5", std="0.25", **fields), DIGITS, torch.device("cpu")
    )
    torch.manual_seed(11)
    x = torch.randn(5, 1, 32, 32, dtype=torch.float64)
    # The generator's x is in digits' normalisation; the teacher was trained on (p - 0.5) / 0.25.
    pixels = x * DIGITS.std[0] + DIGITS.mean[0]
    expected = model.double()(((pixels - mean[0]) / std[0]))
    model.float()
    got = teacher(x.float())
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-4)
    assert (meta.mean, meta.std) == (mean, std)
    assert all(not parameter.requires_grad for parameter in teacher.parameters())


def test_features_are_the_input_of_the_last_linear_for_the_users_class(saved):
    model, paths = saved
    teacher, _ = load_frozen_teacher(
        paths["state_dict"], _config(paths["state_dict"], factory=FACTORY), DIGITS, torch.device("cpu")
    )
    x = torch.randn(7, 1, 32, 32)
    logits, features = teacher(x, return_features=True)
    reference = model.body(x)
    torch.testing.assert_close(features, reference)
    torch.testing.assert_close(logits, F.linear(reference, model.head.weight, model.head.bias))


def test_a_torchscript_teacher_torch_cannot_convert_runs_as_it_is_without_features(looping):
    model, path = looping
    teacher, _ = load_frozen_teacher(path, _config(path), DIGITS, torch.device("cpu"))
    assert isinstance(teacher.model, torch.jit.ScriptModule) and not teacher.takes_hooks
    assert "converter failed" in teacher.note and "prim::Loop" in teacher.note
    x = torch.randn(3, 1, 32, 32)
    logits, features = teacher(x, return_features=True)
    assert features is None
    torch.testing.assert_close(logits, model(x * teacher.input_scale + teacher.input_shift))


def _batchnorm_inputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    layers = [layer for _, layer in tracked_batchnorms(model)]
    handles = [layer.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0])) for layer in layers]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("form", ["exported", "torchscript"])
def test_a_graph_teacher_has_its_batchnorms_and_head_back_as_modules(saved, form):
    """The exported program, and the program torch converts a TorchScript file to, read as the Python module:
    its penultimate features, its head's weights (ZSKD's class vectors), its BatchNorm statistics and the inputs
    of its BatchNorm layers."""
    model, paths = saved
    path = paths[form]
    teacher, _ = load_frozen_teacher(path, _config(path), DIGITS, torch.device("cpu"))
    assert teacher.takes_hooks and teacher.note == ("" if form == "exported" else "converted to a torch.export program")
    x = torch.randn(5, 1, 32, 32)
    _, features = teacher(x, return_features=True)
    torch.testing.assert_close(features, model.body(x))
    torch.testing.assert_close(class_vectors(teacher, form), model.head.weight, rtol=0, atol=0)
    norms = [layer for _, layer in tracked_batchnorms(teacher)]
    reference = [layer for _, layer in tracked_batchnorms(model)]
    assert len(norms) == 3 and not any(layer.training for layer in norms)
    for got, expected in zip(norms, reference):
        for name in ("running_mean", "running_var", "weight", "bias"):
            torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=0)
        assert got.eps == expected.eps
    # The teacher's input is the run's normalisation, the model's its own: the same mapping as the wrapper's.
    inner = x * teacher.input_scale + teacher.input_shift
    for got, expected in zip(_batchnorm_inputs(teacher, x), _batchnorm_inputs(model, inner)):
        torch.testing.assert_close(got, expected)


def _train(tmp_path, teacher, method="mb-dfkd", **extra):
    overrides = tiny_overrides(tmp_path / "run", teacher, method=method, **{"schedule.epochs": 1, **extra})
    return run_train(train_config("digits", overrides), explicit=set(overrides))


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_form_distils_through_the_whole_loop_with_the_activation_prior(saved, tmp_path, form):
    _, paths = saved
    history = _train(tmp_path, paths[form], **{"loss.a": 0.5, **FORMS[form]})
    assert len(history) == 1 and 0.0 <= history[0]["test_accuracy"] <= 100.0
    assert history[0]["gen_act"] != 0
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["teacher_arch"] == (FACTORY if form == "state_dict" else form)


def test_dfq_reads_the_batchnorm_layers_of_the_users_class(saved, tmp_path):
    _, paths = saved
    history = _train(tmp_path, paths["state_dict"], method="dfq", **{"teacher.factory": FACTORY})
    assert history[0]["gen_bn"] > 0


def test_a_torchscript_teacher_torch_cannot_convert_refuses_the_activation_prior_naming_w_act_0(looping, tmp_path):
    _, path = looping
    with pytest.raises(ConfigError, match="--w-act 0") as refused:
        _train(tmp_path, path, **{"loss.a": 0.5})
    assert "converter failed" in str(refused.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_torchscript_teacher_torch_cannot_convert_refuses_dfq(looping, tmp_path):
    _, path = looping
    with pytest.raises(ConfigError, match="--teacher-factory") as refused:
        _train(tmp_path, path, method="dfq")
    assert "converter failed" in str(refused.value) and "another method" in str(refused.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_torchscript_teacher_torch_cannot_convert_trains_without_the_priors_and_says_so(looping, tmp_path, capsys):
    _, path = looping
    history = _train(tmp_path, path, **{"loss.a": 0.0})
    assert len(history) == 1 and 0.0 <= history[0]["test_accuracy"] <= 100.0
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert first.startswith("mb-dfkd: torchscript teacher, run as TorchScript, without hooks: torch's converter failed")


@pytest.mark.parametrize("form", ["exported", "torchscript"])
def test_a_graph_teacher_serves_dfq(saved, tmp_path, capsys, form):
    _, paths = saved
    history = _train(tmp_path, paths[form], method="dfq")
    assert history[0]["gen_bn"] > 0
    first = capsys.readouterr().err.strip().splitlines()[0]
    note = ", converted to a torch.export program" if form == "torchscript" else ""
    assert first.startswith(f"dfq: {form} teacher{note} (")


def _load(path, **fields):
    return load_frozen_teacher(path, _config(path, **fields), DIGITS, torch.device("cpu"))


def test_a_file_of_no_accepted_form_is_refused(tmp_path):
    junk = tmp_path / "teacher.pt"
    junk.write_bytes(b"not a model at all" * 7)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as refused:
        _load(junk)
    for form in ("fastlrwa model file", "state_dict", "--teacher-factory", "torch.jit.save", "torch.export.save"):
        assert form in str(refused.value)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("no_such_module_here:Net", "does not import"),
        ("missing_file.py:Net", "no file"),
        (FACTORY.replace(":UserCNN", ":NoSuchClass"), "no callable"),
        (FACTORY.replace(":UserCNN", ":save_three_ways"), "failed"),
        (FACTORY.replace(":UserCNN", ":FACTORY"), "no callable"),
        ("Net", "MODULE_OR_FILE.py:CALLABLE"),
    ],
)
def test_a_factory_that_does_not_build_a_module_is_refused(saved, factory, message):
    _, paths = saved
    with pytest.raises(ConfigError, match=message):
        _load(paths["state_dict"], factory=factory)


def test_a_factory_returning_no_module_is_refused(saved, tmp_path):
    _, paths = saved
    source = tmp_path / "not_a_model.py"
    source.write_text("def build():\n    return 42\n")
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        _load(paths["state_dict"], factory=f"{source}:build")


def test_a_state_dict_that_does_not_fit_the_factory_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(UserCNN(width=4).state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        _load(path, factory=FACTORY)


def test_a_teacher_whose_output_is_not_one_logit_per_class_is_refused(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 7)).eval()
    path = tmp_path / "seven.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    with pytest.raises(CheckpointError, match=r"\[N, 10\]"):
        _load(path)


def test_an_exported_teacher_with_a_fixed_batch_is_refused(tmp_path):
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(user_cnn(), (torch.randn(2, 1, 32, 32),)), str(path))
    with pytest.raises(CheckpointError, match="dynamic batch"):
        _load(path)


@pytest.mark.parametrize(("field", "value"), [("mean", "0.1,0.2"), ("std", "0.3,0.3,0.3"), ("std", "0"), ("mean", "x")])
def test_a_normalisation_of_the_wrong_length_is_refused_before_any_work(saved, tmp_path, field, value):
    _, paths = saved
    with pytest.raises(ConfigError, match=f"--teacher-{field}"):
        _train(tmp_path, paths["torchscript"], **{f"teacher.{field}": value, "loss.a": 0.0})
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--teacher-factory", "no_such_module_here:Net"], "--teacher-factory no_such_module_here:Net"),
        (["--teacher-mean", "0.1,0.2", "--w-act", "0"], "--teacher-mean 0.1,0.2"),
    ],
)
def test_the_command_line_answers_bad_teacher_input_in_one_line(saved, tmp_path, flags, message):
    _, paths = saved
    teacher = paths["state_dict"] if "--teacher-factory" in flags else paths["torchscript"]
    args = ["train", "--out", str(tmp_path / "run"), "--teacher", str(teacher), *TINY_TRAIN_FLAGS, *flags]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
