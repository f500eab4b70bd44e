"""Second-order gradients through the students, as the LRWA meta-update needs them."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad

from fastlrwa.models import build_model


def loss_of(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor):
    def loss(params: dict, buffers: dict) -> torch.Tensor:
        return (functional_call(model, (params, buffers), (x,)) - target).abs().mean()

    return loss


def hvp_by_func(loss, params: dict, buffers: dict, vector: dict) -> dict:
    def directional_gradient(p: dict, b: dict) -> torch.Tensor:
        g = grad(loss)(p, b)
        return sum((g[name] * vector[name]).sum() for name in g)

    return grad(directional_gradient)(params, buffers)


def test_lenet5_half_hessian_vector_product_matches_finite_differences() -> None:
    # A fixed draw: the gradient jumps where a ReLU or max-pool switches, and a finite difference that
    # happens to straddle such a switch is meaningless, so the (tiny) chance of one must not make it flaky.
    torch.manual_seed(20230618)
    model = build_model("lenet5_half", 10, in_channels=1).double()
    x = torch.randn(3, 1, 32, 32, dtype=torch.float64)
    target = torch.randn(3, 10, dtype=torch.float64)
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    # A smooth loss, so the finite difference does not straddle the kink of |.|.
    def loss(p: dict, b: dict) -> torch.Tensor:
        return (functional_call(model, (p, b), (x,)) - target).square().mean()

    vector = {name: torch.randn_like(p) for name, p in params.items()}
    hvp = hvp_by_func(loss, params, buffers, vector)
    step = 1e-7
    plus = grad(loss)({n: p + step * vector[n] for n, p in params.items()}, buffers)
    minus = grad(loss)({n: p - step * vector[n] for n, p in params.items()}, buffers)
    for name in params:
        finite_difference = (plus[name] - minus[name]) / (2 * step)
        torch.testing.assert_close(hvp[name], finite_difference, rtol=1e-6, atol=1e-8)
    assert sum(h.abs().sum() for h in hvp.values()) > 0


@pytest.mark.parametrize("arch,size", [("resnet18", 16), ("wrn16_1", 32), ("lenet5_half", 32)])
def test_func_double_backward_matches_autograd_in_train_mode(arch: str, size: int) -> None:
    channels = 1 if arch.startswith("lenet") else 3
    model = build_model(arch, 10, in_channels=channels, image_size=size).train()
    # ResNet-18 at 16x16 (adaptive pooling makes it the same network) keeps this test fast.
    x = torch.randn(2, channels, size, size)
    target = torch.randn(2, 10)
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    vector = {name: torch.randn_like(p) for name, p in params.items()}
    hvp = hvp_by_func(loss_of(model, x, target), params, buffers, vector)

    names = list(params)
    leaves = [params[n].clone().requires_grad_() for n in names]
    output = functional_call(model, ({n: leaf for n, leaf in zip(names, leaves)}, buffers), (x,))
    gradients = torch.autograd.grad((output - target).abs().mean(), leaves, create_graph=True)
    directional = sum((g * vector[n]).sum() for g, n in zip(gradients, names))
    reference = torch.autograd.grad(directional, leaves)
    for name, expected in zip(names, reference):
        torch.testing.assert_close(hvp[name], expected, rtol=1e-3, atol=1e-5)
    assert sum(h.abs().sum() for h in hvp.values()) > 0
