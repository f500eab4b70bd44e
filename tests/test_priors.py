"""Generator priors against the paper's formulas (eq. 12-14) and DFQ's statistics, written out in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from fastlrwa.losses.priors import (
    BatchNormStatistics,
    activation_loss,
    adversarial_kl,
    batch_entropy_loss,
    one_hot_loss,
)


def _logits(n: int, c: int) -> torch.Tensor:
    return torch.randn(n, c, dtype=torch.float64) * 3


@pytest.mark.parametrize("n,c", [(1, 10), (7, 13), (33, 100)])
def test_one_hot_loss_is_cross_entropy_against_own_argmax(n, c):
    t = _logits(n, c)
    expected = 0.0
    for row in t.tolist():
        top = max(range(c), key=lambda j: row[j])
        log_z = math.log(sum(math.exp(v) for v in row))
        expected += -(row[top] - log_z)
    assert one_hot_loss(t).item() == pytest.approx(expected / n, rel=1e-12)


def test_activation_loss_is_minus_mean_abs():
    f = torch.randn(9, 42, dtype=torch.float64)
    assert activation_loss(f).item() == pytest.approx(-sum(abs(v) for v in f.flatten().tolist()) / f.numel(), rel=1e-12)


@pytest.mark.parametrize("base", [10.0, math.e])
def test_batch_entropy_loss_formula(base):
    t = _logits(11, 7)
    rows = [[math.exp(v) for v in row] for row in t.tolist()]
    probs = [[v / sum(row) for v in row] for row in rows]
    p_bar = [sum(p[j] for p in probs) / len(probs) for j in range(7)]
    expected = sum(p * math.log(p, base) for p in p_bar)
    assert batch_entropy_loss(t, base).item() == pytest.approx(expected, rel=1e-6)
    # the loss is minimised (= -log_base C) by a perfectly balanced batch
    balanced = torch.eye(7, dtype=torch.float64) * 30
    assert batch_entropy_loss(balanced, base).item() == pytest.approx(-math.log(7, base), rel=1e-6)


def test_adversarial_kl_formula():
    t, s = _logits(5, 9), _logits(5, 9)
    pt, ps = t.softmax(1), s.softmax(1)
    expected = (pt * (pt.log() - ps.log())).sum(1).mean()
    assert adversarial_kl(t, s).item() == pytest.approx(expected.item(), rel=1e-6)


def test_batchnorm_statistics_loss_and_gradient():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 4, 3), nn.BatchNorm2d(4)
    ).double()
    for bn in (net[1], net[4]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    net.eval()
    x = torch.randn(6, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    stats = BatchNormStatistics(net)
    with stats.recording():
        net(x)
    loss = stats.loss()

    def expected_of(inp):
        h1 = net[0](inp)
        h2 = net[3](net[2](net[1](h1)))
        terms = []
        for h, bn in ((h1, net[1]), (h2, net[4])):
            mu = h.mean(dim=(0, 2, 3))
            sd = (h.var(dim=(0, 2, 3), unbiased=False) + bn.eps).sqrt()
            terms.append(((mu - bn.running_mean) ** 2).sum() + ((sd - (bn.running_var + bn.eps).sqrt()) ** 2).sum())
        return (terms[0] + terms[1]) / 2

    expected = expected_of(x)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    (g,) = torch.autograd.grad(loss, x)
    (g_ref,) = torch.autograd.grad(expected, x)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-12)
    # outside the recording block nothing is recorded and hooks are gone
    net(x)
    assert all(not layer._forward_pre_hooks for layer in stats.layers)
