"""fused_mae / fused_js inside torch.func transforms, double backward and torch.compile.

The Triton kernels run on CPU tensors in Triton's interpreter (TRITON_INTERPRET=1, set per test by
the autouse fixture and read by fastlrwa.kernels at call time). References are float64 plain
autograd of F.l1_loss / the formulas written here, and finite differences (gradcheck).
"""

from __future__ import annotations

import zlib

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jvp, vjp, vmap

from fastlrwa.errors import ConfigError
from fastlrwa.kernels import backend as kernel_backend
from fastlrwa.kernels import fused_js, fused_mae

BACKENDS = [
    "torch",
    pytest.param("triton", marks=pytest.mark.skipif(not kernel_backend.TRITON_AVAILABLE, reason="no triton")),
]
requires_triton = pytest.mark.skipif(not kernel_backend.TRITON_AVAILABLE, reason="triton is not installed")


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _generator(*key: object) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def js_paper_float64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    p, q = torch.softmax(a, dim=-1), torch.softmax(b, dim=-1)
    m = (p + q) / 2
    return (0.5 * (p * torch.log(p / m)).sum(-1) + 0.5 * (q * torch.log(q / m)).sum(-1)).mean()


class _TanhMLP:
    """x -> tanh(x W1 + c1) W2: a network whose Hessian is not zero under MAE."""

    def __init__(self, generator: torch.Generator) -> None:
        self.inputs = _randn(generator, 13, 7)
        self.targets = _randn(generator, 13, 11)
        self.params = (_randn(generator, 7, 9), _randn(generator, 9), _randn(generator, 9, 11))
        self.direction = tuple(_randn(generator, *p.shape) for p in self.params)

    def logits(self, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        w1, c1, w2 = params
        return torch.tanh(self.inputs @ w1 + c1) @ w2


def _hvp_plain_autograd(model: _TanhMLP) -> tuple[torch.Tensor, ...]:
    params = tuple(p.clone().requires_grad_() for p in model.params)
    grads = torch.autograd.grad(F.l1_loss(model.logits(params), model.targets), params, create_graph=True)
    return torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, model.direction)), params)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mae_hessian_vector_product(backend: str) -> None:
    """Reverse-over-reverse (autograd and torch.func) and forward-over-reverse through MLP + MAE."""
    model = _TanhMLP(_generator("hvp"))
    expected = _hvp_plain_autograd(model)
    assert any(h.abs().max() > 1e-3 for h in expected)

    def loss(params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return fused_mae(model.logits(params), model.targets, backend=backend)

    params = tuple(p.clone().requires_grad_() for p in model.params)
    grads = torch.autograd.grad(loss(params), params, create_graph=True)
    by_autograd = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, model.direction)), params)
    _, vjp_fn = vjp(grad(loss), model.params)
    (by_vjp,) = vjp_fn(model.direction)
    _, by_jvp = jvp(grad(loss), (model.params,), (model.direction,))
    for result in (by_autograd, by_vjp, by_jvp):
        for actual, reference in zip(result, expected):
            torch.testing.assert_close(actual, reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mae_gradient_is_differentiable_in_the_upstream_gradient(backend: str) -> None:
    generator = _generator("upstream", backend)
    student, teacher = _randn(generator, 5, 10).requires_grad_(), _randn(generator, 5, 10).requires_grad_()
    upstream = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    probe_s, probe_t = _randn(generator, 5, 10), _randn(generator, 5, 10)
    grad_s, grad_t = torch.autograd.grad(
        fused_mae(student, teacher, backend=backend), (student, teacher), grad_outputs=upstream, create_graph=True
    )
    torch.testing.assert_close(grad_s, 0.7 * torch.sign(student - teacher) / 50)
    (d_upstream,) = torch.autograd.grad((grad_s * probe_s).sum() + (grad_t * probe_t).sum(), upstream)
    expected = (torch.sign(student - teacher) * (probe_s - probe_t)).sum() / 50
    torch.testing.assert_close(d_upstream, expected.detach())


@pytest.mark.parametrize("backend", BACKENDS)
def test_mae_forward_mode(backend: str) -> None:
    """jvp of the loss, and jvp of its vjp in the upstream gradient (linear: g -> g * sign / numel)."""
    generator = _generator("forward mode", backend)
    student, teacher = _randn(generator, 5, 10), _randn(generator, 5, 10)
    tangent_s, tangent_t = _randn(generator, 5, 10), _randn(generator, 5, 10)
    sign = torch.sign(student - teacher)
    _, loss_tangent = jvp(lambda s, t: fused_mae(s, t, backend=backend), (student, teacher), (tangent_s, tangent_t))
    torch.testing.assert_close(loss_tangent, (sign * (tangent_s - tangent_t)).sum() / 50)

    def input_grads(upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return vjp(lambda s, t: fused_mae(s, t, backend=backend), student, teacher)[1](upstream)

    upstream, tangent_upstream = torch.tensor(0.3, dtype=torch.float64), torch.tensor(-1.9, dtype=torch.float64)
    _, (grad_s_tangent, grad_t_tangent) = jvp(input_grads, (upstream,), (tangent_upstream,))
    torch.testing.assert_close(grad_s_tangent, -1.9 * sign / 50)
    torch.testing.assert_close(grad_t_tangent, 1.9 * sign / 50)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mae_hessian_vector_product_under_compile(backend: str) -> None:
    """Forward-over-reverse through MLP + MAE compiled with fullgraph: the kernel's place in a compiled LRWA step.

    A custom ``jvp`` cannot be traced by Dynamo; while compiling the loss is the torch expression.
    """
    torch._dynamo.reset()
    model = _TanhMLP(_generator("compiled hvp", backend))

    def hvp(params: tuple[torch.Tensor, ...], direction: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        acq_grad = grad(lambda p: fused_mae(model.logits(p), model.targets, backend=backend))
        return jvp(acq_grad, (params,), (direction,))[1]

    result = torch.compile(hvp, fullgraph=True, backend="aot_eager")(model.params, model.direction)
    for actual, reference in zip(result, _hvp_plain_autograd(model)):
        torch.testing.assert_close(actual, reference, rtol=1e-10, atol=1e-12)


@requires_triton
def test_mae_gradcheck_and_gradgradcheck() -> None:
    """Finite differences, including the backward's own derivatives and batched (vmap) gradients."""
    generator = _generator("gradcheck mae")
    student, teacher = _randn(generator, 3, 5).requires_grad_(), _randn(generator, 3, 5).requires_grad_()

    def loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return fused_mae(s, t, backend="triton")

    assert torch.autograd.gradcheck(loss, (student, teacher), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(loss, (student, teacher), check_batched_grad=True)


@requires_triton
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_js_gradcheck(variant: str) -> None:
    generator = _generator("gradcheck js", variant)
    a, b = (_randn(generator, 3, 6) * 3).requires_grad_(), (_randn(generator, 3, 6) * 3).requires_grad_()

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fused_js(x, y, temperature=1.5, variant=variant, backend="triton")

    assert torch.autograd.gradcheck(loss, (a, b), check_batched_grad=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_func_grad_of_js_reaches_both_inputs(backend: str) -> None:
    generator = _generator("func grad js", backend)
    a, b = _randn(generator, 6, 10), _randn(generator, 6, 10)
    grad_a, grad_b = grad(lambda x, y: fused_js(x, y, backend=backend), argnums=(0, 1))(a, b)
    a64, b64 = a.clone().requires_grad_(), b.clone().requires_grad_()
    expected_a, expected_b = torch.autograd.grad(js_paper_float64(a64, b64), (a64, b64))
    torch.testing.assert_close(grad_a, expected_a, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(grad_b, expected_b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("in_dims", [(0, None), (None, 1), (1, 0)])
def test_vmap_and_per_sample_gradients(backend: str, in_dims: tuple[int | None, int | None]) -> None:
    generator = _generator("vmap", backend, in_dims)
    batch, shape = 4, (3, 10)

    def stacked(dim: int | None) -> torch.Tensor:
        return _randn(generator, *shape) if dim is None else _randn(generator, batch, *shape).movedim(0, dim)

    a, b = stacked(in_dims[0]), stacked(in_dims[1])

    def sample(tensor: torch.Tensor, dim: int | None, index: int) -> torch.Tensor:
        return tensor if dim is None else tensor.select(dim, index)

    def per_sample(fn):
        return [fn(sample(a, in_dims[0], i), sample(b, in_dims[1], i)) for i in range(batch)]

    for fused, reference in (
        (lambda x, y: fused_mae(x, y, backend=backend), lambda x, y: (x - y).abs().mean()),
        (lambda x, y: fused_js(x, y, backend=backend), js_paper_float64),
    ):
        losses = vmap(fused, in_dims=in_dims)(a, b)
        torch.testing.assert_close(losses, torch.stack(per_sample(reference)), rtol=1e-10, atol=1e-13)
        grads = vmap(grad(fused, argnums=(0, 1)), in_dims=in_dims)(a, b)
        expected = per_sample(grad(reference, argnums=(0, 1)))
        for side in (0, 1):
            torch.testing.assert_close(grads[side], torch.stack([g[side] for g in expected]), rtol=1e-10, atol=1e-13)


@requires_triton
def test_nested_vmap() -> None:
    generator = _generator("nested vmap")
    a, b = _randn(generator, 2, 3, 4, 10), _randn(generator, 2, 3, 4, 10)
    losses = vmap(vmap(lambda x, y: fused_js(x, y, variant="official", backend="triton")))(a, b)
    expected = vmap(vmap(lambda x, y: fused_js(x, y, variant="official", backend="torch")))(a, b)
    assert losses.shape == (2, 3)
    torch.testing.assert_close(losses, expected, rtol=1e-10, atol=1e-13)


@requires_triton
def test_js_second_derivative_is_refused_not_dropped() -> None:
    generator = _generator("js second order")
    a, b = _randn(generator, 4, 10).requires_grad_(), _randn(generator, 4, 10)
    (grad_a,) = torch.autograd.grad(fused_js(a, b, backend="triton"), a, create_graph=True)
    with pytest.raises(ConfigError, match="second derivative"):
        torch.autograd.grad(grad_a.square().sum(), a)
    with pytest.raises(ConfigError, match="second derivative"):
        grad(lambda x: grad(lambda y: fused_js(y, b, backend="triton"))(x).square().sum())(a.detach())


def _generator_step_losses(backend: str):
    def losses(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        disagreement = fused_js(student, teacher, temperature=3.0, variant="official", backend=backend)
        paper = fused_js(student, teacher, backend=backend)
        return fused_mae(student, teacher, backend=backend) + (1 - disagreement.clamp(0, 1)) + paper

    return losses


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_fullgraph_matches_eager(backend: str) -> None:
    """Dynamo traces the losses without a graph break, and AOTAutograd their backward.

    ``aot_eager`` keeps this fast; test_compile_inductor_matches_eager (slow) runs Inductor.
    """
    torch._dynamo.reset()
    generator = _generator("compile", backend)
    student = (torch.randn(9, 10, generator=generator) * 3).requires_grad_()
    teacher = (torch.randn(9, 10, generator=generator) * 3).requires_grad_()
    fn = _generator_step_losses(backend)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    loss, grads = compiled(student, teacher), None
    grads = torch.autograd.grad(loss, (student, teacher))
    expected = fn(student, teacher)
    torch.testing.assert_close(loss, expected)
    for actual, reference in zip(grads, torch.autograd.grad(expected, (student, teacher))):
        torch.testing.assert_close(actual, reference)


@pytest.mark.slow
def test_compile_inductor_matches_eager() -> None:
    torch._dynamo.reset()
    generator = _generator("inductor")
    student = torch.randn(9, 10, generator=generator).requires_grad_()
    teacher = torch.randn(9, 10, generator=generator).requires_grad_()
    fn = _generator_step_losses("torch")
    loss = torch.compile(fn, fullgraph=True)(student, teacher)
    expected = fn(student, teacher)
    torch.testing.assert_close(loss, expected)
    for actual, reference in zip(
        torch.autograd.grad(loss, (student, teacher)), torch.autograd.grad(expected, (student, teacher))
    ):
        torch.testing.assert_close(actual, reference)
