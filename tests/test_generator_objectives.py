"""Each method's generator objective against its formula written out in float64 (paper eq. 9-15, DAFL, DFAD, DFQ)."""

from __future__ import annotations

import math

import pytest
import torch

from fastlrwa.losses.generator_objectives import generator_loss
from fastlrwa.losses.options import GeneratorLossOptions


def _softmax(row, temperature=1.0):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _priors(t, f, w):
    n, c = len(t), len(t[0])
    oh = sum(-math.log(_softmax(row)[max(range(c), key=lambda j: row[j])]) for row in t) / n
    act = -sum(abs(v) for row in f for v in row) / (len(f) * len(f[0]))
    p_bar = [sum(_softmax(row)[j] for row in t) / n for j in range(c)]
    ie = sum(p * math.log(p) for p in p_bar) / math.log(w.entropy_log_base)
    return oh, act, ie


def _js_official(a, b, temperature):
    n, c = len(a), len(a[0])
    total = 0.0
    for ra, rb in zip(a, b):
        p, q = _softmax(ra, temperature), _softmax(rb, temperature)
        m = [(x + y) / 2 for x, y in zip(p, q)]
        clamp = lambda v: min(max(v, 0.01), 0.99)  # noqa: E731
        p, q, m = [clamp(v) for v in p], [clamp(v) for v in q], [clamp(v) for v in m]
        total += sum(mj * (math.log(mj) - math.log(pj)) for mj, pj in zip(m, p))
        total += sum(mj * (math.log(mj) - math.log(qj)) for mj, qj in zip(m, q))
    return 0.5 * total / (n * c)


def _js_paper(a, b, temperature):
    total = 0.0
    for ra, rb in zip(a, b):
        p, q = _softmax(ra, temperature), _softmax(rb, temperature)
        m = [(x + y) / 2 for x, y in zip(p, q)]
        total += 0.5 * sum(x * math.log(x / y) for x, y in zip(p, m))
        total += 0.5 * sum(x * math.log(x / y) for x, y in zip(q, m))
    return total / len(a)


@pytest.fixture
def outputs():
    torch.manual_seed(0)
    teacher = torch.randn(7, 13, dtype=torch.float64) * 2
    student = torch.randn(7, 13, dtype=torch.float64) * 2
    features = torch.randn(7, 11, dtype=torch.float64)
    return teacher, student, features


WEIGHTS = GeneratorLossOptions(adv=1.3, oh=0.7, a=0.2, ie=4.0, bn=0.6, js_temperature=3.0, entropy_log_base=10.0)


def test_dafl_is_priors_only(outputs):
    t, s, f = outputs
    loss, parts = generator_loss("dafl", t, f, None, WEIGHTS)
    oh, act, ie = _priors(t.tolist(), f.tolist(), WEIGHTS)
    assert set(parts) == {"oh", "act", "ie"}
    assert loss.item() == pytest.approx(0.7 * oh + 0.2 * act + 4.0 * ie, rel=1e-9)


def test_dfad_is_negative_mae(outputs):
    t, s, f = outputs
    loss, parts = generator_loss("dfad", t, f, s, WEIGHTS)
    mae = sum(abs(x - y) for rx, ry in zip(s.tolist(), t.tolist()) for x, y in zip(rx, ry)) / t.numel()
    assert set(parts) == {"adv"} and loss.item() == pytest.approx(-1.3 * mae, rel=1e-9)


def test_dfq_is_adversarial_kl_plus_bn_plus_batch_entropy(outputs):
    t, s, f = outputs
    bn = torch.tensor(0.37, dtype=torch.float64)
    loss, parts = generator_loss("dfq", t, f, s, WEIGHTS, bn)
    kl = sum(
        sum(pt * math.log(pt / ps) for pt, ps in zip(_softmax(rt), _softmax(rs)))
        for rt, rs in zip(t.tolist(), s.tolist())
    ) / len(t)
    _, _, ie = _priors(t.tolist(), f.tolist(), WEIGHTS)
    assert loss.item() == pytest.approx(-1.3 * kl + 0.6 * 0.37 + 4.0 * ie, rel=1e-6)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_js_priors_is_the_paper_generator_loss(outputs, variant):
    t, s, f = outputs
    weights = GeneratorLossOptions(**{**WEIGHTS.__dict__, "js_variant": variant})
    loss, parts = generator_loss("js_priors", t, f, s, weights)
    oh, act, ie = _priors(t.tolist(), f.tolist(), weights)
    if variant == "official":
        js = _js_official(t.tolist(), s.tolist(), 3.0)
        adversarial = 1.0 - min(max(js, 0.0), 1.0)
    else:
        js = _js_paper(t.tolist(), s.tolist(), 3.0)
        adversarial = -js
    assert parts["js"].item() == pytest.approx(js, rel=1e-6)
    assert loss.item() == pytest.approx(1.3 * adversarial + 0.7 * oh + 0.2 * act + 4.0 * ie, rel=1e-6)


def test_generator_objective_pushes_disagreement_up(outputs):
    """Minimising the JS objective's adversarial part raises the teacher-student JS (the generator's game)."""
    t, s, f = outputs
    s = s.clone().requires_grad_(True)
    weights = GeneratorLossOptions(adv=1.0, oh=0.0, a=0.0, ie=0.0, js_temperature=1.0, js_variant="paper")
    loss, parts = generator_loss("js_priors", t, f, s, weights)
    (grad,) = torch.autograd.grad(loss, s)
    _, after = generator_loss("js_priors", t, f, (s - 0.1 * grad).detach(), weights)
    assert after["js"].item() > parts["js"].item()


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_js_reaches_the_generator_through_the_student_alone(outputs, variant):
    """The authors pass ``outputs_T.detach()`` to their JS: the teacher's logits get gradient from the priors
    only, and exactly the gradient the priors alone give them."""
    t, s, f = outputs
    t = t.clone().requires_grad_(True)
    s = s.clone().requires_grad_(True)
    weights = GeneratorLossOptions(**{**WEIGHTS.__dict__, "js_variant": variant})
    loss, _ = generator_loss("js_priors", t, f, s, weights)
    grad_t, grad_s = torch.autograd.grad(loss, (t, s))
    priors_only = GeneratorLossOptions(**{**weights.__dict__, "adv": 0.0})
    (expected_t,) = torch.autograd.grad(generator_loss("js_priors", t, f, s, priors_only)[0], t)
    torch.testing.assert_close(grad_t, expected_t, rtol=1e-12, atol=1e-15)
    assert grad_s.abs().max() > 0
