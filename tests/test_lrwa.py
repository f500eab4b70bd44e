"""The LRWA meta-update against a float64 plain-autograd implementation written out here.

The reference differentiates through the unrolled inner step with ``create_graph=True`` and a
second ``torch.autograd.grad``, which is how the paper's eq. 6 reads; fastlrwa computes the same
gradient by reuse and a Hessian-vector product.
"""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from conftest import params_of, replay_batches
from fastlrwa.errors import ConfigError
from fastlrwa.kernels import backend as kernel_backend
from fastlrwa.kernels import fused_mae
from fastlrwa.losses import distill
from fastlrwa.updates.lrwa import fd_epsilon, lrwa_grads
from fastlrwa.updates.options import LRWAOptions
from fastlrwa.updates.student_grads import make_student_grads

ALPHA = 0.9
WEIGHT_DECAY = 5e-4
CLASSES = 7

requires_triton = pytest.mark.skipif(not kernel_backend.TRITON_AVAILABLE, reason="triton is not installed")


def options(objective: str = "paper", hvp: str = "exact", exact_method: str = "forward") -> LRWAOptions:
    return LRWAOptions(alpha=ALPHA, weight_decay=WEIGHT_DECAY, objective=objective, hvp=hvp, exact_method=exact_method)


def bn_conv_net(activation: type[nn.Module]) -> nn.Module:
    """Two conv-BN-activation blocks (odd channel counts, a strided conv) and a linear head."""
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1, bias=False),
        nn.BatchNorm2d(5),
        activation(),
        nn.Conv2d(5, 6, 3, stride=2),
        nn.BatchNorm2d(6),
        activation(),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, CLASSES),
    )


def make_problem(seed: int, dtype: torch.dtype = torch.float64, activation: type[nn.Module] = nn.ReLU):
    """A fresh train-mode network and batches: 9 new samples, 5 memory samples, 7x7 images."""
    torch.manual_seed(seed)
    model = bn_conv_net(activation).to(dtype).train()
    # Non-trivial running statistics, so an update that overwrites instead of averaging shows up.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1.0, 1.0)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model, replay_batches(9, 5, 7, CLASSES, dtype)


def flat(grads: dict[str, torch.Tensor], names) -> torch.Tensor:
    return torch.cat([grads[name].flatten() for name in names])


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


def reference_lrwa(model, x_new, t_new, x_mem, t_mem, *, objective: str, first_order: bool):
    """Eq. 6 by plain autograd on a copy of the model's buffers, forwards in the documented order.

    With the official objective only the cat forward updates the running statistics (the authors'
    inner and retention forwards run through higher's patched copy, whose buffers are its own).
    Returns the flat gradient, the objective's parts, cos(∇L_Acq(θ), ∇L_Ret(θ)) and the buffers
    after the update.
    """
    names = [name for name, _ in model.named_parameters()]
    theta = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}

    def loss(params, x, t, bufs):
        return F.l1_loss(functional_call(model, (params, bufs), (x,)), t)

    parts = {}
    if objective == "official":
        parts["loss_cat"] = loss(theta, torch.cat([x_new, x_mem]), torch.cat([t_new, t_mem]), buffers)
    inner_buffers = {name: b.clone() for name, b in buffers.items()} if objective == "official" else buffers
    loss_acq = loss(theta, x_new, t_new, inner_buffers)
    g_acq = torch.autograd.grad(loss_acq, list(theta.values()), create_graph=not first_order, retain_graph=True)
    if first_order:
        g_acq = [g.detach() for g in g_acq]
    theta_prime = {name: theta[name] - ALPHA * (g + WEIGHT_DECAY * theta[name]) for name, g in zip(names, g_acq)}
    loss_ret = loss(theta_prime, x_mem, t_mem, inner_buffers)
    outer = parts["loss_cat"] if objective == "official" else loss_acq
    total = torch.autograd.grad(outer + loss_ret, list(theta.values()), retain_graph=True)

    probe_buffers = {name: b.clone() for name, b in buffers.items()}
    g_ret_at_theta = torch.autograd.grad(loss(theta, x_mem, t_mem, probe_buffers), list(theta.values()))
    g_acq_flat = torch.cat([g.flatten() for g in g_acq]).detach()
    g_ret_flat = torch.cat([g.flatten() for g in g_ret_at_theta])
    parts.update(loss_acq=loss_acq, loss_ret=loss_ret, loss=outer + loss_ret)
    cosine = torch.dot(g_acq_flat, g_ret_flat) / (g_acq_flat.norm() * g_ret_flat.norm())
    return torch.cat([g.flatten() for g in total]), {k: v.detach() for k, v in parts.items()}, cosine, buffers


MODES = [("exact", "reverse"), ("exact", "forward"), ("first_order", "reverse"), ("fd", "reverse")]


def _check_against_reference(update, *, objective: str, hvp: str, seed: int = 11) -> None:
    """``update(model, params, buffers, *batches)`` (float64) against :func:`reference_lrwa`."""
    model, (x_new, t_new, x_mem, t_mem) = make_problem(seed=seed)
    expected, parts, cosine, expected_buffers = reference_lrwa(
        model, x_new, t_new, x_mem, t_mem, objective=objective, first_order=hvp == "first_order"
    )
    buffers = dict(model.named_buffers())
    grads, aux = update(model, params_of(model), buffers, x_new, t_new, x_mem, t_mem)

    tolerance = 1e-2 if hvp == "fd" else 1e-7
    assert relative_error(flat(grads, params_of(model)), expected) <= tolerance
    assert set(aux) == {"loss", "loss_acq", "loss_ret", "grad_cos"}
    for name in ("loss", "loss_acq", "loss_ret"):
        torch.testing.assert_close(aux[name], parts[name], rtol=1e-12, atol=0.0)
    torch.testing.assert_close(aux["grad_cos"], cosine, rtol=1e-10, atol=1e-12)
    # Running statistics: updated by the documented forwards only, not by the HVP, FD or probe ones.
    for name, value in expected_buffers.items():
        torch.testing.assert_close(buffers[name], value, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("objective", ["paper", "official"])
@pytest.mark.parametrize("hvp,exact_method", MODES)
def test_gradient_matches_float64_autograd(objective, hvp, exact_method):
    _check_against_reference(
        partial(lrwa_grads, options=options(objective, hvp, exact_method), align=True), objective=objective, hvp=hvp
    )


def _with_mae_backend(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """Route the student loss of every step to ``fused_mae(backend=...)`` (Triton: its CPU interpreter)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(distill, "fused_mae", partial(fused_mae, backend=backend))


@requires_triton
@pytest.mark.parametrize("exact_method", ["reverse", "forward"])
def test_triton_mae_in_the_exact_step_matches_float64_autograd(monkeypatch, exact_method):
    """The kernel's own derivatives in the step: double backward (reverse), forward mode (forward)."""
    _with_mae_backend(monkeypatch, "triton")
    _check_against_reference(
        partial(lrwa_grads, options=options("official", "exact", exact_method), align=True),
        objective="official",
        hvp="exact",
    )


@pytest.mark.parametrize("exact_method", ["reverse", "forward"])
def test_compiled_exact_step_matches_float64_autograd(monkeypatch, exact_method):
    """torch.compile(fullgraph) of the exact step, the fused MAE asked for, against the float64 reference.

    fullgraph: no graph break, so nothing in the step syncs the host or runs Python on tensor values.
    The fused MAE's forward-mode rule cannot be traced; compiled, it is the torch expression.
    ``aot_eager`` runs the traced functional graph without Inductor's code generation (minutes on
    two cores); the Inductor build itself is compared in the slow tests below.
    """
    torch._dynamo.reset()
    _with_mae_backend(monkeypatch, "triton" if kernel_backend.TRITON_AVAILABLE else "auto")

    def compiled(model, *args):
        update = partial(lrwa_grads, model, options=options("official", "exact", exact_method), align=True)
        return torch.compile(update, fullgraph=True, backend="aot_eager")(*args)

    _check_against_reference(compiled, objective="official", hvp="exact")


def test_exact_and_first_order_differ_by_the_hessian_term():
    """Guards the reference itself: on this problem the Hessian term is far from negligible."""
    model, batches = make_problem(seed=5)
    exact, *_ = reference_lrwa(model, *batches, objective="paper", first_order=False)
    first_order, *_ = reference_lrwa(model, *batches, objective="paper", first_order=True)
    assert relative_error(first_order, exact) > 1e-3


@pytest.mark.parametrize("objective", ["paper", "official"])
def test_exact_gradient_is_the_directional_derivative_of_the_objective(objective):
    """Central difference of aux['loss'] (the objective J itself) along a random direction."""
    model, (x_new, t_new, x_mem, t_mem) = make_problem(seed=23)
    params = params_of(model)
    kwargs = dict(options=options(objective))
    grads, _ = lrwa_grads(model, params, dict(model.named_buffers()), x_new, t_new, x_mem, t_mem, **kwargs)
    direction = {name: torch.randn_like(p) for name, p in params.items()}
    h = 1e-6

    def objective_at(sign: float) -> torch.Tensor:
        shifted = {name: p + sign * h * direction[name] for name, p in params.items()}
        buffers = {name: b.clone() for name, b in model.named_buffers()}
        return lrwa_grads(model, shifted, buffers, x_new, t_new, x_mem, t_mem, **kwargs)[1]["loss"]

    numeric = (objective_at(1.0) - objective_at(-1.0)) / (2 * h)
    analytic = sum(torch.sum(grads[name] * direction[name]) for name in params)
    torch.testing.assert_close(numeric, analytic, rtol=1e-6, atol=1e-9)


def test_fd_epsilon_follows_the_stated_formula():
    torch.manual_seed(3)
    params = {"a": torch.randn(4, 3), "b": torch.randn(5)}
    v = {"a": torch.randn(4, 3) * 7.0, "b": torch.randn(5) * 7.0}
    theta_norm = torch.cat([params["a"].flatten(), params["b"]]).norm()
    v_norm = torch.cat([v["a"].flatten(), v["b"]]).norm()
    expected = torch.finfo(torch.float32).eps ** 0.5 * (1 + theta_norm) / v_norm
    torch.testing.assert_close(fd_epsilon(params, v), expected)


def test_fd_in_float32_is_close_to_exact_on_a_smooth_network():
    """With smooth activations the float32 fd update is within 1e-2 of the exact float64 one.

    (On ReLU networks it is not, for a reason the module docstring gives; BENCHMARKS.md has figures.)
    """
    model64, batches64 = make_problem(seed=31, activation=nn.GELU)
    model32 = copy.deepcopy(model64).float()
    exact, _ = lrwa_grads(
        model64, params_of(model64), dict(model64.named_buffers()), *batches64, options=options(hvp="exact")
    )
    first_order, _ = lrwa_grads(
        model64,
        params_of(model64),
        dict(copy.deepcopy(model64).named_buffers()),
        *batches64,
        options=options(hvp="first_order"),
    )
    fd, _ = lrwa_grads(
        model32,
        params_of(model32),
        dict(model32.named_buffers()),
        *(b.float() for b in batches64),
        options=options(hvp="fd"),
    )
    names = list(params_of(model64))
    assert relative_error(flat(first_order, names), flat(exact, names)) > 0.05  # the Hessian term matters here
    assert relative_error(flat(fd, names).double(), flat(exact, names)) <= 1e-2


def test_inputs_are_not_modified_and_outputs_carry_no_graph():
    model, (x_new, t_new, x_mem, t_mem) = make_problem(seed=2)
    live = dict(model.named_parameters())
    before = {name: p.detach().clone() for name, p in live.items()}
    step = make_student_grads("lrwa", model, lrwa=options("official"), align=True)
    grads, aux = step(live, dict(model.named_buffers()), x_new, t_new, x_mem, t_mem)
    for name, p in live.items():
        assert torch.equal(p.detach(), before[name])
    assert all(not g.requires_grad for g in grads.values())
    assert all(value.dim() == 0 and not value.requires_grad for value in aux.values())


@pytest.mark.parametrize("objective", ["paper", "official"])
def test_without_alignment_probe_nothing_else_changes_and_nothing_unlogged_is_computed(objective):
    """The step returns exactly what the trainer logs; without the probe it saves the probe's forward and
    backward on the memory batch (FLOPs counted) and the gradient is the same to the bit."""
    from torch.utils.flop_counter import FlopCounterMode

    model, batches = make_problem(seed=8)

    def run(align: bool):
        with FlopCounterMode(display=False) as counter:
            result = lrwa_grads(
                model,
                params_of(model),
                dict(copy.deepcopy(model).named_buffers()),
                *batches,
                options=options(objective),
                align=align,
            )
        return result, counter.get_total_flops()

    (with_probe, aux), probe_flops = run(True)
    (without, aux_without), plain_flops = run(False)
    assert set(aux) == {"loss", "loss_acq", "loss_ret", "grad_cos"}
    assert set(aux_without) == {"loss", "loss_acq", "loss_ret"}
    for name, g in with_probe.items():
        torch.testing.assert_close(without[name], g, rtol=0.0, atol=0.0)
    # The probe is a forward and a backward of the student on the memory batch, at least 3 x 5/9 of the
    # inner step's forward on x_new: several percent of the whole update.
    assert plain_flops < 0.97 * probe_flops


def test_bf16_autocast_stays_close_to_float32():
    """Stated tolerance for --amp bf16: relative error <= 5e-2 of the whole update, cosine >= 0.998."""
    model64, batches64 = make_problem(seed=17)
    model = copy.deepcopy(model64).float()
    batches = [b.float() for b in batches64]
    kwargs = dict(options=options("official"))
    full, _ = lrwa_grads(model, params_of(model), dict(copy.deepcopy(model).named_buffers()), *batches, **kwargs)
    mixed, aux = lrwa_grads(
        model,
        params_of(model),
        dict(copy.deepcopy(model).named_buffers()),
        *batches,
        amp_dtype=torch.bfloat16,
        **kwargs,
    )
    names = list(full)
    assert all(g.dtype == torch.float32 for g in mixed.values())
    assert relative_error(flat(mixed, names), flat(full, names)) <= 5e-2
    assert float(F.cosine_similarity(flat(mixed, names), flat(full, names), dim=0)) >= 0.998
    assert aux["loss"].dtype == torch.float32


def test_loss_scale_multiplies_the_gradient():
    """fp16 autocast with a loss scale S returns S times the gradient, ready for GradScaler.step."""
    model64, batches64 = make_problem(seed=19)
    model = copy.deepcopy(model64).float()
    batches = [b.float() for b in batches64]
    kwargs = dict(options=options(hvp="fd"))
    full, _ = lrwa_grads(model, params_of(model), dict(copy.deepcopy(model).named_buffers()), *batches, **kwargs)
    scale = torch.tensor(1024.0)
    scaled, _ = lrwa_grads(
        model,
        params_of(model),
        dict(copy.deepcopy(model).named_buffers()),
        *batches,
        amp_dtype=torch.float16,
        loss_scale=scale,
        **kwargs,
    )
    names = list(full)
    assert relative_error(flat(scaled, names) / scale, flat(full, names)) <= 2e-2


@pytest.mark.parametrize("option", [dict(objective="meta"), dict(hvp="second"), dict(exact_method="both")])
def test_bad_options_are_config_errors_naming_the_choices(option):
    with pytest.raises(ConfigError, match="is not valid; choose one of: "):
        LRWAOptions(**option)


def _assert_same_update(actual, expected, rtol: float = 1e-4, atol: float = 1e-5):
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=rtol, atol=atol)


@pytest.mark.slow
@pytest.mark.parametrize(
    "hvp,exact_method,objective",
    [
        ("exact", "forward", "paper"),
        ("exact", "reverse", "official"),
        ("fd", "forward", "paper"),
        ("first_order", "forward", "official"),
    ],
)
def test_inductor_compiled_step_matches_eager(hvp, exact_method, objective):
    model, (x_new, t_new, x_mem, t_mem) = make_problem(seed=29, dtype=torch.float32)
    kwargs = dict(lrwa=options(objective, hvp, exact_method), align=True)
    eager_buffers = dict(copy.deepcopy(model).named_buffers())
    eager, eager_aux = make_student_grads("lrwa", model, **kwargs)(
        params_of(model), eager_buffers, x_new, t_new, x_mem, t_mem
    )
    compiled_buffers = dict(copy.deepcopy(model).named_buffers())
    compiled, compiled_aux = make_student_grads("lrwa", model, compile=True, **kwargs)(
        params_of(model), compiled_buffers, x_new, t_new, x_mem, t_mem
    )
    if hvp == "fd":
        # The difference quotient amplifies rounding by about 1/sqrt(eps): Inductor's own summation
        # order moves the float32 fd update by up to ~1e-3 of its norm.
        names = list(eager)
        assert relative_error(flat(compiled, names), flat(eager, names)) <= 2e-3
    else:
        _assert_same_update(compiled, eager)
    _assert_same_update(compiled_aux, eager_aux)
    _assert_same_update(compiled_buffers, eager_buffers, rtol=1e-5, atol=1e-6)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def exact_cuda_float32():
    """cuDNN and cuBLAS in full float32 (no TF32), so eager and compiled steps are comparable."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_step_matches_eager_on_cuda(exact_cuda_float32):
    """compile + CUDA graphs (channels_last inputs, static buffers) against eager, three calls each."""
    model, batches = make_problem(seed=37, dtype=torch.float32)
    model = model.cuda()
    batches = [b.cuda() for b in batches]
    kwargs = dict(lrwa=options("official"), align=True)
    eager_step = make_student_grads("lrwa", model, **kwargs)
    graph_step = make_student_grads("lrwa", model, compile=True, cuda_graphs=True, **kwargs)
    eager_buffers = {name: b.clone() for name, b in model.named_buffers()}
    graph_buffers = {name: b.clone() for name, b in model.named_buffers()}
    for _ in range(3):  # warm-up, record, replay
        eager, _ = eager_step(params_of(model), eager_buffers, *batches)
        replayed, aux = graph_step(params_of(model), graph_buffers, *batches)
        replayed = {name: g.clone() for name, g in replayed.items()}  # the next replay overwrites them
    for name, g in eager.items():
        torch.testing.assert_close(replayed[name], g, rtol=1e-4, atol=1e-5)
    for name, value in eager_buffers.items():
        torch.testing.assert_close(graph_buffers[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@needs_cuda
def test_fp16_step_with_grad_scaler_matches_float32_on_cuda(exact_cuda_float32):
    """The trainer's fp16 flow: scaled grads -> install_grads -> GradScaler.step -> update."""
    from fastlrwa.updates.student_grads import install_grads

    model, batches = make_problem(seed=41, dtype=torch.float32)
    batches = [b.cuda() for b in batches]
    kwargs = dict(lrwa=options("paper"))
    results = []
    for amp_dtype in (None, torch.float16):
        student = copy.deepcopy(model).cuda()
        params = dict(student.named_parameters())
        optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is not None)
        step = make_student_grads("lrwa", student, amp_dtype=amp_dtype, **kwargs)
        loss_scale = scaler.scale(torch.ones((), device="cuda")) if amp_dtype is not None else None
        grads, _ = step(params, dict(student.named_buffers()), *batches, loss_scale=loss_scale)
        install_grads(params, grads)
        scaler.step(optimizer)
        scaler.update()
        results.append(torch.cat([p.detach().flatten() for p in student.parameters()]))
    start = torch.cat([p.detach().flatten() for p in model.parameters()]).cuda()
    full_update, mixed_update = results[0] - start, results[1] - start
    assert float((mixed_update - full_update).norm() / full_update.norm()) <= 5e-2
