"""Plain and joint student gradients, the factory, and the parameter-dict helpers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from conftest import params_of, replay_batches
from fastlrwa.errors import ConfigError
from fastlrwa.updates.functional import frozen_running_stats, sgd_step, tree_axpy, tree_cosine, tree_dot
from fastlrwa.updates.options import JointOptions, LRWAOptions
from fastlrwa.updates.student_grads import install_grads, make_student_grads

PAPER, OFFICIAL = JointOptions("paper"), JointOptions("official")

CLASSES = 5


def conv_bn_net() -> nn.Module:
    """A conv with bias feeding BatchNorm, a pooled head: 3 -> 4 channels, 5 classes."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, CLASSES)
    )


def make_problem(seed: int, dtype: torch.dtype = torch.float64):
    torch.manual_seed(seed)
    model = conv_bn_net().to(dtype).train()
    model[1].running_mean.uniform_(-1.0, 1.0)
    model[1].running_var.uniform_(0.5, 2.0)
    return model, replay_batches(11, 3, 6, CLASSES, dtype)


def reference_grads(model, losses_of):
    """Plain autograd on a copy of the buffers; ``losses_of(run)`` returns the losses to sum."""
    theta = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    losses = losses_of(lambda x: functional_call(model, (theta, buffers), (x,)))
    grads = torch.autograd.grad(sum(losses), list(theta.values()))
    return dict(zip(theta, grads)), [loss.detach() for loss in losses], buffers


def assert_dicts_close(actual, expected, **tolerance):
    assert set(actual) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, **tolerance)


def test_plain_gradient_matches_autograd():
    model, (x_new, t_new, _, _) = make_problem(seed=1)
    expected, (loss,), expected_buffers = reference_grads(model, lambda run: [F.l1_loss(run(x_new), t_new)])
    buffers = dict(model.named_buffers())
    grads, aux = make_student_grads("plain", model)(params_of(model), buffers, x_new, t_new)
    assert_dicts_close(grads, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(aux["loss"], loss, rtol=1e-12, atol=0.0)
    assert_dicts_close(buffers, expected_buffers, rtol=1e-12, atol=0.0)


def test_joint_paper_is_the_sum_of_two_separate_forwards():
    model, (x_new, t_new, x_mem, t_mem) = make_problem(seed=2)
    expected, (loss_acq, loss_ret), expected_buffers = reference_grads(
        model, lambda run: [F.l1_loss(run(x_new), t_new), F.l1_loss(run(x_mem), t_mem)]
    )
    buffers = dict(model.named_buffers())
    grads, aux = make_student_grads("joint", model, joint=PAPER)(params_of(model), buffers, x_new, t_new, x_mem, t_mem)
    assert_dicts_close(grads, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(aux["loss_acq"], loss_acq, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(aux["loss_ret"], loss_ret, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(aux["loss"], loss_acq + loss_ret, rtol=1e-12, atol=0.0)
    assert_dicts_close(buffers, expected_buffers, rtol=1e-12, atol=0.0)
    assert int(buffers["1.num_batches_tracked"]) == 2


def test_joint_official_is_one_forward_on_the_concatenation():
    model, (x_new, t_new, x_mem, t_mem) = make_problem(seed=3)
    expected, (loss,), expected_buffers = reference_grads(
        model, lambda run: [F.l1_loss(run(torch.cat([x_new, x_mem])), torch.cat([t_new, t_mem]))]
    )
    buffers = dict(model.named_buffers())
    grads, aux = make_student_grads("joint", model, joint=OFFICIAL)(
        params_of(model), buffers, x_new, t_new, x_mem, t_mem
    )
    assert_dicts_close(grads, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(aux["loss"], loss, rtol=1e-12, atol=0.0)
    # The parts are row blocks of the one forward: their size-weighted mean is the whole loss.
    n_new, n_mem = x_new.shape[0], x_mem.shape[0]
    torch.testing.assert_close(
        (n_new * aux["loss_acq"] + n_mem * aux["loss_ret"]) / (n_new + n_mem), loss, rtol=1e-12, atol=0.0
    )
    assert_dicts_close(buffers, expected_buffers, rtol=1e-12, atol=0.0)
    assert int(buffers["1.num_batches_tracked"]) == 1


def test_official_and_paper_joint_objectives_differ_under_batchnorm():
    model, batches = make_problem(seed=4)
    paper, _ = make_student_grads("joint", model, joint=PAPER)(
        params_of(model), dict(copy.deepcopy(model).named_buffers()), *batches
    )
    official, _ = make_student_grads("joint", model, joint=OFFICIAL)(
        params_of(model), dict(copy.deepcopy(model).named_buffers()), *batches
    )
    assert float((paper["0.weight"] - official["0.weight"]).norm()) > 1e-6


def test_step_factory_builds_each_kind_and_detaches():
    model, (x_new, t_new, x_mem, t_mem) = make_problem(seed=5)
    live = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    plain, plain_aux = make_student_grads("plain", model)(live, buffers, x_new, t_new)
    joint_grads_fn = make_student_grads("joint", model, joint=OFFICIAL)
    joint, joint_aux = joint_grads_fn(live, buffers, x_new, t_new, x_mem, t_mem)
    lrwa_options = LRWAOptions(hvp="first_order")
    lrwa, lrwa_aux = make_student_grads("lrwa", model, lrwa=lrwa_options, align=True)(
        live, buffers, x_new, t_new, x_mem, t_mem
    )
    assert set(plain_aux) == {"loss", "loss_acq"}
    assert set(joint_aux) == {"loss", "loss_acq", "loss_ret"}
    assert set(lrwa_aux) == {"loss", "loss_acq", "loss_ret", "grad_cos"}
    for grads in (plain, joint, lrwa):
        assert set(grads) == set(live) and all(not g.requires_grad for g in grads.values())


def test_released_lrwa_is_built_as_the_official_joint_step():
    model, batches = make_problem(seed=6)
    released = make_student_grads("lrwa", model, lrwa=LRWAOptions(objective="released"), align=True)
    grads, aux = released(params_of(model), dict(copy.deepcopy(model).named_buffers()), *batches)
    expected, expected_aux = make_student_grads("joint", model, joint=OFFICIAL)(
        params_of(model), dict(copy.deepcopy(model).named_buffers()), *batches
    )
    assert_dicts_close(grads, expected, rtol=0.0, atol=0.0)
    assert aux.keys() == expected_aux.keys() == {"loss", "loss_acq", "loss_ret"}


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: JointOptions(objective="sum"), "objective='sum' is not valid; choose one of: official, paper"),
        (lambda: LRWAOptions(hvp="lanczos"), "hvp='lanczos' is not valid; choose one of: exact, fd, first_order"),
        (lambda: make_student_grads("plain", make_problem(seed=0)[0], cuda_graphs=True), "compile=True"),
    ],
)
def test_bad_options_are_one_clear_line(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_factory_refuses_an_unknown_update():
    with pytest.raises(ValueError, match="'meta'; the updates are: plain, joint, lrwa"):
        make_student_grads("meta", make_problem(seed=0)[0])


def test_bf16_autocast_joint_step_stays_close_to_float32():
    """Stated tolerance for --amp bf16 on the joint update: relative error <= 3e-2."""
    model64, batches64 = make_problem(seed=6)
    model = copy.deepcopy(model64).float()
    batches = [b.float() for b in batches64]
    full, _ = make_student_grads("joint", model, joint=PAPER)(
        params_of(model), dict(copy.deepcopy(model).named_buffers()), *batches
    )
    mixed, _ = make_student_grads("joint", model, joint=PAPER, amp_dtype=torch.bfloat16)(
        params_of(model), dict(copy.deepcopy(model).named_buffers()), *batches
    )
    flat_full = torch.cat([g.flatten() for g in full.values()])
    flat_mixed = torch.cat([mixed[name].flatten() for name in full])
    assert float((flat_mixed - flat_full).norm() / flat_full.norm()) <= 3e-2


def test_frozen_running_stats_normalise_the_same_and_update_nothing():
    model, (x_new, _, _, _) = make_problem(seed=7)
    buffers = dict(model.named_buffers())
    before = {name: b.clone() for name, b in buffers.items()}
    frozen = frozen_running_stats(model, buffers)
    assert frozen["1.running_mean"] is None and frozen["1.num_batches_tracked"] is None
    out_frozen = functional_call(model, (params_of(model), frozen), (x_new,))
    out_live = functional_call(model, (params_of(model), {n: b.clone() for n, b in buffers.items()}), (x_new,))
    torch.testing.assert_close(out_frozen, out_live, rtol=1e-12, atol=1e-14)
    assert_dicts_close(buffers, before, rtol=0.0, atol=0.0)


def test_tree_helpers_match_the_flattened_formulas():
    torch.manual_seed(9)
    a = {"w": torch.randn(3, 5, dtype=torch.float64), "b": torch.randn(7, dtype=torch.float64)}
    b = {"w": torch.randn(3, 5, dtype=torch.float64), "b": torch.randn(7, dtype=torch.float64)}
    flat_a = torch.cat([a["w"].flatten(), a["b"]])
    flat_b = torch.cat([b["w"].flatten(), b["b"]])
    torch.testing.assert_close(tree_dot(a, b), flat_a @ flat_b)
    torch.testing.assert_close(tree_cosine(a, b), flat_a @ flat_b / (flat_a.norm() * flat_b.norm()))
    combined = tree_axpy(-0.3, a, b)
    torch.testing.assert_close(torch.cat([combined["w"].flatten(), combined["b"]]), -0.3 * flat_a + flat_b)
    stepped = sgd_step(a, b, lr=0.9, weight_decay=5e-4)
    torch.testing.assert_close(
        torch.cat([stepped["w"].flatten(), stepped["b"]]), flat_a - 0.9 * (flat_b + 5e-4 * flat_a)
    )


@pytest.mark.parametrize("fused", [True, False])
def test_installed_gradients_of_any_layout_give_the_sgd_formula(fused):
    """A gradient transposed in memory (as a convolution's double backward returns it) updates each weight
    by its own entry: p − lr (m), m = g + wd p on the first momentum step, written out here."""
    lr, momentum, weight_decay = 0.1, 0.9, 5e-4
    weight = nn.Parameter(torch.randn(7, 3, 5, 5, dtype=torch.float64))
    bias = nn.Parameter(torch.randn(7, dtype=torch.float64))
    grads = {
        "weight": torch.randn(3, 7, 5, 5, dtype=torch.float64).transpose(0, 1),
        "bias": torch.randn(7, dtype=torch.float64),
    }
    assert not grads["weight"].is_contiguous()
    expected = {
        "weight": weight.detach() - lr * (grads["weight"] + weight_decay * weight.detach()),
        "bias": bias.detach() - lr * (grads["bias"] + weight_decay * bias.detach()),
    }
    params = {"weight": weight, "bias": bias}
    optimizer = torch.optim.SGD(params.values(), lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
    install_grads(params, grads)
    optimizer.step()
    for name, param in params.items():
        torch.testing.assert_close(param.detach(), expected[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_a_channels_last_student_takes_the_sgd_formula_from_gradients_of_any_layout(fused):
    """The trainer's students are channels_last: two momentum steps with gradients in the contiguous layout (as
    ``torch.func`` may return them) and transposed in memory move each weight by its own entries, written out."""
    lr, momentum, weight_decay = 0.1, 0.9, 5e-4
    start = torch.randn(7, 3, 5, 5, dtype=torch.float64)
    weight = nn.Parameter(start.clone().contiguous(memory_format=torch.channels_last))
    assert not weight.is_contiguous()
    optimizer = torch.optim.SGD([weight], lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)
    grads = [torch.randn(7, 3, 5, 5, dtype=torch.float64), torch.randn(3, 7, 5, 5, dtype=torch.float64).transpose(0, 1)]
    expected, buffer = start, None
    for grad in grads:
        install_grads({"weight": weight}, {"weight": grad})
        optimizer.step()
        direction = grad + weight_decay * expected
        buffer = direction if buffer is None else momentum * buffer + direction
        expected = expected - lr * buffer
        torch.testing.assert_close(weight.detach(), expected, rtol=1e-12, atol=1e-12)
