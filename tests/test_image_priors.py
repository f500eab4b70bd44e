"""The generator's image priors (total variation, mode seeking) against their formulas written out in float64,
their gradients against finite differences, their place in every generator objective, and the refusals."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from conftest import TINY_TRAIN_FLAGS, assert_train_refused_in_one_line
from fastlrwa.cli import cli
from fastlrwa.losses.generator_objectives import generator_loss
from fastlrwa.losses.options import GeneratorLossOptions
from fastlrwa.losses.priors import mode_seeking_loss, total_variation_loss


def _tv_written_out(x: list) -> float:
    """Mean |vertical neighbour difference| + mean |horizontal neighbour difference| over every image and channel."""
    vertical, horizontal, n_vertical, n_horizontal = 0.0, 0.0, 0, 0
    for image in x:
        for channel in image:
            rows, cols = len(channel), len(channel[0])
            for i in range(rows):
                for j in range(cols):
                    if i + 1 < rows:
                        vertical += abs(channel[i + 1][j] - channel[i][j])
                        n_vertical += 1
                    if j + 1 < cols:
                        horizontal += abs(channel[i][j + 1] - channel[i][j])
                        n_horizontal += 1
    return vertical / n_vertical + horizontal / n_horizontal


def _mode_seeking_written_out(x: list, z: list) -> float:
    half = len(x) // 2
    flat = [[v for channel in image for row in channel for v in row] for image in x]
    ratios = []
    for i in range(half):
        a, b = flat[i], flat[i + half]
        image_distance = sum(abs(u - v) for u, v in zip(a, b)) / len(a)
        latent_distance = sum(abs(u - v) for u, v in zip(z[i], z[i + half])) / len(z[i])
        ratios.append(image_distance / latent_distance)
    return -sum(ratios) / len(ratios)


@pytest.mark.parametrize("shape", [(1, 1, 2, 3), (3, 1, 7, 5), (2, 3, 9, 11)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_total_variation_is_the_formula(shape, dtype):
    x = torch.randn(*shape, dtype=torch.float64) * 1.7 + 0.3
    expected = _tv_written_out(x.to(dtype).double().tolist())
    got = total_variation_loss(x.to(dtype))
    assert got.dtype in (torch.float32, torch.float64)
    assert got.item() == pytest.approx(expected, rel=1e-5 if dtype != torch.float64 else 1e-12)


def test_total_variation_favours_smooth_images():
    noise = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    smooth = torch.nn.functional.avg_pool2d(noise, 5, stride=1, padding=2)
    smooth = smooth * (noise.std() / smooth.std())  # the same spread, fewer edges
    assert total_variation_loss(smooth) < 0.5 * total_variation_loss(noise)


@pytest.mark.parametrize("batch", [2, 7, 12])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mode_seeking_is_the_formula(batch, dtype):
    x = torch.randn(batch, 2, 5, 3, dtype=torch.float64)
    z = torch.randn(batch, 9, dtype=torch.float64)
    expected = _mode_seeking_written_out(x.to(dtype).double().tolist(), z.to(dtype).double().tolist())
    got = mode_seeking_loss(x.to(dtype), z.to(dtype))
    assert got.item() == pytest.approx(expected, rel=1e-5 if dtype == torch.float32 else 1e-12)


def test_gradients_match_finite_differences():
    # Away from ties (no two neighbours or paired pixels equal), where both are differentiable.
    x = torch.randn(5, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(total_variation_loss, (x,), eps=1e-7, atol=1e-6)
    assert torch.autograd.gradcheck(mode_seeking_loss, (x, z), eps=1e-7, atol=1e-6)


def test_a_step_on_mode_seeking_pulls_paired_images_apart():
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    z = torch.randn(6, 10, dtype=torch.float64)
    (grad,) = torch.autograd.grad(mode_seeking_loss(x, z), x)
    before = (x[:3] - x[3:]).abs().mean()
    after = ((x - 0.1 * grad)[:3] - (x - 0.1 * grad)[3:]).abs().mean()
    assert after > before


@pytest.mark.parametrize("objective", ["dafl", "dfad", "dfq", "js_priors"])
def test_every_objective_adds_the_weighted_image_priors(objective):
    t, s = torch.randn(6, 10, dtype=torch.float64) * 2, torch.randn(6, 10, dtype=torch.float64) * 2
    f = torch.randn(6, 11, dtype=torch.float64)
    images = torch.randn(6, 1, 9, 7, dtype=torch.float64)
    z = torch.randn(6, 5, dtype=torch.float64)
    bn = torch.tensor(0.41, dtype=torch.float64)
    plain = GeneratorLossOptions(adv=1.3, oh=0.7, a=0.2, ie=4.0, bn=0.6)
    weighted = GeneratorLossOptions(**{**plain.__dict__, "tv": 0.35, "div": 2.5})
    base, base_parts = generator_loss(objective, t, f, s, plain, bn, images, z)
    loss, parts = generator_loss(objective, t, f, s, weighted, bn, images, z)
    assert "tv" not in base_parts and "div" not in base_parts
    assert set(parts) == set(base_parts) | {"tv", "div"}
    tv = _tv_written_out(images.tolist())
    div = _mode_seeking_written_out(images.tolist(), z.tolist())
    assert parts["tv"].item() == pytest.approx(tv, rel=1e-12)
    assert parts["div"].item() == pytest.approx(div, rel=1e-12)
    assert loss.item() == pytest.approx(base.item() + 0.35 * tv + 2.5 * div, rel=1e-9)


def test_a_run_logs_the_priors_and_they_change_the_generator(tmp_path):
    def generator_after(name, *flags):
        out = tmp_path / name
        result = CliRunner().invoke(
            cli, ["train", "--out", str(out), "--seed", "3", "--grad-norm-every", "1", *TINY_TRAIN_FLAGS, *flags]
        )
        assert result.exit_code == 0, result.output
        record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        state = torch.load(out / "checkpoint.pt", weights_only=True)["generator"]
        return record, state

    plain_record, plain = generator_after("plain")
    record, weighted = generator_after("priors", "--w-tv", "0.5", "--w-div", "0.2")
    assert "gen_tv" not in plain_record and "gen_div" not in plain_record
    assert record["gen_tv"] > 0 and record["gen_div"] < 0
    assert record["gen_grad_norm_tv"] > 0 and record["gen_grad_norm_div"] > 0
    assert any(not torch.equal(plain[key], weighted[key]) for key in plain if plain[key].is_floating_point())


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--w-tv", "-0.1"), "--w-tv"),
        (("--w-div", "-1"), "--w-div"),
        (("--w-div", "1", "--batch-size", "1"), "--batch-size"),
        (("--method", "zskd", "--w-tv", "0.5"), "--w-tv"),
    ],
)
def test_bad_image_prior_settings_are_refused_in_one_line(flags, named, tmp_path):
    assert_train_refused_in_one_line(tmp_path, flags, named)
