"""Which settings are compared, and how their Table-1 cells differ over seeds.

Only settings run with at least 2 seeds (the report's aggregated rows) are compared, and only within
one table block (same dataset, teacher and student) and one number of logged epochs. Two ways to pick
the pairs:

- automatic: within each block, settings that differ only in their method (the same sweep cell:
  ``settings.same_cell``, which leaves out the options one of the methods never reads and those a method
  sets for itself, as ZSKD its schedule: ``settings.method_owned_keys``) are compared pairwise, each pair
  as "first listed − second listed";
- a baseline (``--compare``): a method name, ``key=value`` config conditions, or both, comma-separated
  (``mb-dfkd``, ``generator.lr=0.001``, ``mb-dfkd,generator.lr=0.001``). Every setting that does not
  match it is compared with its *counterpart*: the setting that matches the baseline and agrees with it
  on every other key. So ``--compare mb-dfkd`` sets each method of a sweep cell against MB-DFKD in the
  same cell, and ``--compare generator.lr=0.001`` each learning rate against 0.001 for the same method.

Two views: *equal epochs* compares the cells of the runs as they are, *equal training time*
(``report.equal_time``) compares the runs cut at the same training time. The quantities are the mean
μ and the population variance σ² of the test accuracy past the 80th percentile of epochs (Table 1's
last columns), and in the equal-time view also the accuracy reached at the budget; each difference
comes with Welch and bootstrap intervals (``report.intervals``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from fastlrwa.errors import ConfigError, UserFacingError
from fastlrwa.report.equal_time import accuracies_within, default_budget
from fastlrwa.report.intervals import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, Difference, difference
from fastlrwa.report.summary import AggregateSummary, Block
from fastlrwa.report.table import percentile_stats
from fastlrwa.run_log.settings import Setting, method_owned_keys, same_cell

COMPARED_PERCENTILE = 80


@dataclass(frozen=True)
class Quantity:
    """A per-run number that is compared, and what a positive or negative difference means."""

    key: str
    name: str
    higher: str
    lower: str


MEAN = Quantity(f"p{COMPARED_PERCENTILE}_mean", f">{COMPARED_PERCENTILE}th μ", "higher (better)", "lower (worse)")
VAR = Quantity(
    f"p{COMPARED_PERCENTILE}_var", f">{COMPARED_PERCENTILE}th σ²", "higher (less steady)", "lower (steadier)"
)
AT_BUDGET = Quantity("accuracy_at_budget", "accuracy at T", "higher (better)", "lower (worse)")


@dataclass(frozen=True)
class QuantityDifference:
    quantity: Quantity
    a: list[float]
    b: list[float]
    difference: Difference

    @property
    def verdict(self) -> str:
        return self.difference.verdict(higher=self.quantity.higher, lower=self.quantity.lower)


@dataclass(frozen=True)
class Comparison:
    """Setting ``a`` against setting ``b`` (differences are a − b) in one view.

    ``budget_s`` and the epochs each run reached within it are set in the equal-time view only.
    """

    a: AggregateSummary
    b: AggregateSummary
    view: str  # "epochs" | "equal_time"
    rows: list[QuantityDifference]
    budget_s: float | None = None
    epochs_a: list[int] | None = None
    epochs_b: list[int] | None = None

    @property
    def block(self) -> Block:
        return self.a.block


@dataclass(frozen=True)
class Baseline:
    """What ``--compare`` names: a method, config values, or both."""

    text: str
    method: str | None
    values: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Baseline:
        method, values = None, {}
        for token in (part.strip() for part in text.split(",")):
            key, equals, value = token.partition("=")
            if not token or (equals and not (key.strip() and value.strip())):
                raise ConfigError(
                    f"--compare {text!r}: {token!r} is neither a method nor key=value; "
                    "e.g. --compare mb-dfkd or --compare generator.lr=0.001"
                )
            if not equals:
                if method is not None:
                    raise ConfigError(f"--compare {text!r} names two methods; name one baseline method")
                method = token
            else:
                values[key.strip()] = value.strip()
        return cls(text, method, values)


def _coerced(text: str, like: Any, key: str) -> Any:
    """``text`` read as the type of the recorded value ``like``."""
    try:
        if isinstance(like, bool):
            return {"true": True, "false": False}[text.lower()]
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except (KeyError, ValueError):
        raise ConfigError(
            f"--compare {key}={text}: the runs record {key} as {type(like).__name__} "
            f"(e.g. {like!r}); give a value of that type"
        ) from None
    if like is None:
        return None if text.lower() in ("none", "null") else text
    return text


def _matches(aggregate: AggregateSummary, baseline: Baseline) -> bool:
    if baseline.method is not None and aggregate.method != baseline.method:
        return False
    values = dict(aggregate.setting)
    return all(
        key in values and values[key] == _coerced(text, values[key], key) for key, text in baseline.values.items()
    )


def _with_baseline_values(aggregate: AggregateSummary, baseline: Baseline) -> Setting:
    values = dict(aggregate.setting)
    for key, text in baseline.values.items():
        values[key] = _coerced(text, values[key], key)
    return tuple(sorted(values.items()))


def _comparable(a: AggregateSummary, b: AggregateSummary) -> bool:
    return a.block == b.block and a.n_epochs == b.n_epochs


def _one_cell(a: AggregateSummary, a_setting: Setting, b: AggregateSummary) -> bool:
    """Whether ``a`` (as ``a_setting``) and ``b`` ran the same cell, each method with its own settings."""
    owned = method_owned_keys(a.block.dataset, a.method, a_setting, b.method, b.setting)
    return same_cell(a_setting, b.setting, owned)


def _check_baseline(aggregates: Sequence[AggregateSummary], baseline: Baseline) -> None:
    known_keys = {key for aggregate in aggregates for key, _ in aggregate.setting}
    for key in baseline.values:
        if key not in known_keys:
            raise ConfigError(
                f"--compare {baseline.text!r}: {key} is not a config key these runs record; "
                "use a dotted key as `fastlrwa train` writes it in config.json, e.g. generator.lr"
            )
    if not any(_matches(aggregate, baseline) for aggregate in aggregates):
        raise ConfigError(
            f"--compare {baseline.text!r}: no setting with at least 2 seeds matches it; "
            "name a method or key=value of a setting the report aggregates"
        )


Pair = tuple[AggregateSummary, AggregateSummary]


def comparison_pairs(
    aggregates: Sequence[AggregateSummary], baseline: Baseline | None = None
) -> tuple[list[Pair], list[str]]:
    """The (a, b) pairs to compare, and a note for each setting left without a counterpart."""
    if baseline is None:
        pairs = [
            (a, b)
            for a, b in combinations(aggregates, 2)
            if a.method != b.method and _comparable(a, b) and _one_cell(a, a.setting, b)
        ]
        return pairs, []
    _check_baseline(aggregates, baseline)
    pairs, unmatched = [], []
    for aggregate in aggregates:
        if _matches(aggregate, baseline):
            continue
        if any(key not in dict(aggregate.setting) for key in baseline.values):
            unmatched.append(aggregate)
            continue
        wanted = _with_baseline_values(aggregate, baseline)
        counterparts = [
            other
            for other in aggregates
            if other.method == (baseline.method or aggregate.method)
            and _comparable(aggregate, other)
            and _matches(other, baseline)
            and _one_cell(aggregate, wanted, other)
        ]
        if counterparts:
            pairs += [(aggregate, counterpart) for counterpart in counterparts]
        else:
            unmatched.append(aggregate)
    notes = [
        f"{aggregate.method} on {aggregate.block.title} ({aggregate.stats.n_runs} seeds, {aggregate.n_epochs} "
        f"epochs): no counterpart matching --compare {baseline.text} with at least 2 seeds, not compared"
        for aggregate in unmatched
    ]
    return pairs, notes


def _quantity_difference(
    quantity: Quantity, a: list[float], b: list[float], *, resamples: int, seed: int
) -> QuantityDifference:
    return QuantityDifference(quantity, a, b, difference(a, b, resamples=resamples, seed=seed))


def compare_epochs(
    a: AggregateSummary, b: AggregateSummary, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> Comparison:
    """The >80th-percentile μ and σ² of a against b, over their seeds, as logged."""
    rows = []
    for quantity, field in ((MEAN, "mean"), (VAR, "var")):
        values = [[getattr(run.stats.percentiles[COMPARED_PERCENTILE], field) for run in side.runs] for side in (a, b)]
        rows.append(_quantity_difference(quantity, *values, resamples=resamples, seed=seed))
    return Comparison(a, b, "epochs", rows)


def compare_equal_time(
    a: AggregateSummary,
    b: AggregateSummary,
    budget_s: float | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Comparison:
    """a against b with every run cut at ``budget_s`` seconds of training (default: the shortest run's total)."""
    records = [run.record for run in a.runs + b.runs]
    budget = default_budget(records) if budget_s is None else budget_s
    cut = {id(run): accuracies_within(run.record, budget) for run in a.runs + b.runs}
    empty = [run.record.path for run in a.runs + b.runs if not cut[id(run)]]
    if empty:
        raise UserFacingError(
            f"the equal-time budget of {budget:.1f} s of training is shorter than the first epoch of "
            f"{empty[0]}; give a larger --time-budget or leave that run out"
        )
    values: dict[str, list[list[float]]] = {quantity.key: [[], []] for quantity in (AT_BUDGET, MEAN, VAR)}
    for side, aggregate in enumerate((a, b)):
        for run in aggregate.runs:
            accuracies = cut[id(run)]
            past = percentile_stats(accuracies, [COMPARED_PERCENTILE])[COMPARED_PERCENTILE]
            values[AT_BUDGET.key][side].append(accuracies[-1])
            values[MEAN.key][side].append(past.mean)
            values[VAR.key][side].append(past.var)
    rows = [
        _quantity_difference(quantity, *values[quantity.key], resamples=resamples, seed=seed)
        for quantity in (AT_BUDGET, MEAN, VAR)
    ]
    return Comparison(
        a,
        b,
        "equal_time",
        rows,
        budget_s=budget,
        epochs_a=[len(cut[id(run)]) for run in a.runs],
        epochs_b=[len(cut[id(run)]) for run in b.runs],
    )


def build_comparisons(
    aggregates: Sequence[AggregateSummary],
    *,
    baseline: str | None = None,
    equal_time: bool = False,
    time_budget_s: float | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[list[Comparison], list[str]]:
    """Every comparison of the report (equal epochs, then equal time when asked) and notes on settings left out."""
    if time_budget_s is not None and not time_budget_s > 0:
        raise ConfigError(f"--time-budget {time_budget_s} must be > 0 seconds")
    pairs, notes = comparison_pairs(aggregates, Baseline.parse(baseline) if baseline is not None else None)
    if equal_time and not pairs:
        raise ConfigError(
            "--equal-time compares two settings of one table block with at least 2 seeds each; "
            "these runs have no such pair: give the runs of two methods"
        )
    comparisons = [compare_epochs(a, b, resamples=resamples, seed=seed) for a, b in pairs]
    if equal_time:
        comparisons += [compare_equal_time(a, b, time_budget_s, resamples=resamples, seed=seed) for a, b in pairs]
    return comparisons, notes
