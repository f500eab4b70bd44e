"""Is one setting better than another? Two-sample intervals for a difference of means over seeds (pure).

A cell of Table 1 (e.g. the mean accuracy past the 80th percentile of epochs) is one number per run;
the runs of a setting differ only in their seed, so each setting gives a small sample of that number.
For two settings A and B, ``difference`` estimates mean(A) - mean(B) and gives two 95 % intervals:

- Welch's t interval: d ± t_{(1+c)/2, ν} · se with se² = s_A²/n_A + s_B²/n_B (sample variances,
  ddof = 1) and the Welch–Satterthwaite degrees of freedom
  ν = se⁴ / ((s_A²/n_A)² / (n_A - 1) + (s_B²/n_B)² / (n_B - 1)).
  It assumes each setting's values are roughly normal over seeds; it does not assume equal spreads.
- A percentile bootstrap: ``resamples`` times, draw n_A values of A and n_B values of B with
  replacement (each setting on its own), take the difference of the two means; the interval is
  the (1-c)/2 and (1+c)/2 quantiles of those differences (numpy's default linear interpolation).
  The generator is seeded, so a report is reproducible. With few seeds the bootstrap sees only the
  values it was given and its interval is too narrow (at n = 2 a resampled mean takes 3 values): at
  n < 5 seeds read Welch's interval.

An interval that contains 0 means the two settings cannot be told apart with these seeds; the verdict
says so in those words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    @property
    def sign(self) -> int:
        """+1 when the whole interval is above 0, -1 when below, 0 when it contains 0."""
        return 0 if self.contains_zero else (1 if self.low > 0 else -1)


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) over seeds with its Welch and bootstrap intervals."""

    estimate: float
    welch: Interval
    welch_df: float  # nan when both samples are constant (the interval is the point)
    bootstrap: Interval
    n_a: int
    n_b: int
    confidence: float
    resamples: int
    seed: int

    def verdict(self, *, higher: str, lower: str) -> str:
        """Plain words: ``higher`` or ``lower`` when both intervals exclude 0 on one side, else why not."""
        seeds = f"{self.n_a} vs {self.n_b} seeds"
        if self.welch.sign == self.bootstrap.sign:
            return {1: higher, -1: lower}.get(self.welch.sign, f"cannot be told apart at {seeds}")
        if self.welch.contains_zero or self.bootstrap.contains_zero:
            wide, narrow = ("Welch", "bootstrap") if self.welch.contains_zero else ("bootstrap", "Welch")
            return f"unclear at {seeds}: the {wide} interval contains 0, the {narrow} interval does not"
        return f"unclear at {seeds}: the Welch and bootstrap intervals lie on opposite sides of 0"


def _sample(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size < 2:
        raise ValueError(f"{name} needs at least 2 values (seeds), got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds a non-finite value")
    return array


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> tuple[Interval, float]:
    """Welch's t interval for mean(a) - mean(b) and its degrees of freedom (see the module docstring)."""
    a, b = _sample(a, "a"), _sample(b, "b")
    difference = float(a.mean() - b.mean())
    share_a, share_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(share_a + share_b)
    if se == 0.0:
        return Interval(difference, difference), math.nan
    df = se**4 / (share_a**2 / (a.size - 1) + share_b**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Interval(difference - half, difference + half), float(df)


def bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = CONFIDENCE,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Percentile bootstrap interval for mean(a) - mean(b), each sample resampled on its own (seeded)."""
    a, b = _sample(a, "a"), _sample(b, "b")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    means_b = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)
    low, high = np.quantile(means_a - means_b, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(float(low), float(high))


def difference(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = CONFIDENCE,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Difference:
    """mean(a) - mean(b) with both intervals; each sample needs at least 2 finite values."""
    welch, df = welch_interval(a, b, confidence)
    return Difference(
        estimate=math.fsum(a) / len(a) - math.fsum(b) / len(b),
        welch=welch,
        welch_df=df,
        bootstrap=bootstrap_interval(a, b, confidence, resamples=resamples, seed=seed),
        n_a=len(a),
        n_b=len(b),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )
