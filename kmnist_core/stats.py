"""Seed repeats: runs that differ only in their seed, as groups with means, t intervals and Welch comparisons."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats as sps

from .config import TrainConfig
from .errors import KmnistError
from .records import Status

if TYPE_CHECKING:
    from .jobs import JobQueue
    from .store import RunInfo

CONFIDENCE = 0.95
METRICS = {"val": ("best_val_accuracy", "best validation accuracy"), "test": ("test_accuracy", "test accuracy")}


class StatsError(KmnistError, ValueError):
    """Statistics asked of groups too small for them; one line."""


@dataclass(frozen=True)
class Summary:
    """n, mean, sample standard deviation (ddof=1) and a t confidence interval of the mean.

    With n = 1 the standard deviation and the interval are NaN: one run says nothing about noise.
    """

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def text(self, scale: float = 1.0, digits: int = 4) -> str:
        """'0.8650 ± 0.0042 (sd 0.0034, n = 5)': mean ± the interval's half width."""
        if self.n < 2:
            return f"{self.mean * scale:.{digits}f} (n = 1)"
        return (f"{self.mean * scale:.{digits}f} ± {self.half_width * scale:.{digits}f} "
                f"(sd {self.sd * scale:.{digits}f}, n = {self.n})")


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """Summary of a sample: the interval is mean ± t_{(1+c)/2, n-1} · sd / sqrt(n).

    Raises:
        StatsError: the sample is empty.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise StatsError("no values to summarize")
    mean = float(x.mean())
    if x.size < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan, confidence)
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf((1 + confidence) / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return Summary(int(x.size), mean, sd, mean - half, mean + half, confidence)


@dataclass(frozen=True)
class SeedGroup:
    """Completed runs of one configuration on one dataset that differ only in their seed, by seed."""

    config: TrainConfig  # the first run's config (its seed is one of `seeds`)
    data_source: str
    run_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    val: tuple[float, ...]  # best validation accuracy per run
    test: tuple[float, ...]  # test accuracy per run

    @property
    def n(self) -> int:
        return len(self.run_ids)

    def values(self, metric: str = "val") -> tuple[float, ...]:
        """The per-run values of a metric: "val" (best validation accuracy) or "test"."""
        if metric not in METRICS:
            raise StatsError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
        return self.val if metric == "val" else self.test

    def summary(self, metric: str = "val", confidence: float = CONFIDENCE) -> Summary:
        return summarize(self.values(metric), confidence)


def seedless_key(config: TrainConfig, data_source: str = "") -> str:
    """What runs of one group share: every field but the seed, and the data."""
    fields = config.to_dict()
    fields.pop("seed")
    fields["learning_rate"] = config.resolved_learning_rate  # None and the optimizer's default are one setting
    return json.dumps(fields, sort_keys=True) + "|" + data_source


def group_runs(runs: Iterable[RunInfo], min_size: int = 1) -> list[SeedGroup]:
    """Group completed runs that differ only in their seed; largest groups first.

    A seed trained twice (a forced retrain) counts once: its newest run.

    Args:
        runs: RunStore.list_runs() or any RunInfo list; runs not completed are left out.
        min_size: leave out groups with fewer runs.
    """
    groups: dict[str, dict[int, RunInfo]] = {}
    for info in sorted(runs, key=lambda r: r.created):
        if info.status != Status.COMPLETED or info.config is None:
            continue
        if info.metrics.get("best_val_accuracy") is None or info.metrics.get("test_accuracy") is None:
            continue
        groups.setdefault(seedless_key(info.config, info.data_source), {})[info.config.seed] = info
    out = []
    for by_seed in groups.values():
        members = [by_seed[s] for s in sorted(by_seed)]
        if len(members) < min_size:
            continue
        out.append(SeedGroup(
            config=members[0].config, data_source=members[0].data_source,
            run_ids=tuple(m.run_id for m in members), seeds=tuple(m.config.seed for m in members),
            val=tuple(float(m.metrics["best_val_accuracy"]) for m in members),
            test=tuple(float(m.metrics["test_accuracy"]) for m in members),
        ))
    return sorted(out, key=lambda g: (-g.n, g.run_ids[0]))


def group_of(runs: Iterable[RunInfo], config: TrainConfig, data_source: str | None = None) -> SeedGroup | None:
    """The largest group of runs of this config (any seed; on this data if given), or None."""
    key = seedless_key(config)
    for group in group_runs(runs):
        if seedless_key(group.config) == key and data_source in (None, group.data_source):
            return group
    return None


@dataclass(frozen=True)
class Comparison:
    """Two groups' difference of means (a - b) with its Welch confidence interval."""

    label_a: str
    label_b: str
    metric: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    df: float  # Welch-Satterthwaite degrees of freedom
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    @property
    def distinguishable(self) -> bool:
        """Whether the interval excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0

    def sentence(self) -> str:
        """E.g. 'adam beats rmsprop by 2.1 ± 0.8 points of best validation accuracy (n = 5 each)'."""
        name = METRICS[self.metric][1]
        n = f"n = {self.n_a} each" if self.n_a == self.n_b else f"n = {self.n_a} and {self.n_b}"
        points = f"{abs(self.diff) * 100:.1f} ± {self.half_width * 100:.1f} points"
        level = f"{self.confidence * 100:g} %"
        if not self.distinguishable:
            return (f"{self.label_a} and {self.label_b} cannot be told apart on {name}: the difference is "
                    f"{self.diff * 100:+.1f} ± {self.half_width * 100:.1f} points ({n}), and its {level} "
                    f"interval includes 0")
        winner, loser = (self.label_a, self.label_b) if self.diff > 0 else (self.label_b, self.label_a)
        return f"{winner} beats {loser} by {points} of {name} ({n})"


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
                   ) -> tuple[float, float, float, float]:
    """(mean(a) - mean(b), low, high, df): Welch's t interval, which does not assume equal variances.

    Raises:
        StatsError: either sample has fewer than 2 values.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        raise StatsError(f"comparing needs at least 2 runs in each group; got {x.size} and {y.size}")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    se = math.sqrt(va + vb)
    if se == 0:  # every run gave the same number: no noise to speak of
        return diff, diff, diff, math.inf
    df = float((va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1)))
    half = float(sps.t.ppf((1 + confidence) / 2, df)) * se
    return diff, diff - half, diff + half, df


def difference_labels(a: TrainConfig, b: TrainConfig) -> tuple[str, str]:
    """Short names for two configs from the fields they differ in (seed aside): ('adam', 'rmsprop')."""
    da, db = a.to_dict(), b.to_dict()
    names = [n for n in da if n != "seed" and da[n] != db[n]]
    if not names:
        return "A", "B"

    def label(d: dict, single: bool) -> str:
        parts = []
        for n in names:
            v = d[n]
            text = ",".join(map(str, v)) if isinstance(v, list) else f"{v:g}" if isinstance(v, float) else str(v)
            parts.append(text if single and isinstance(v, str) else f"{n} {text}")
        return ", ".join(parts)

    single = len(names) == 1
    return label(da, single), label(db, single)


def compare(a: SeedGroup, b: SeedGroup, metric: str = "val", labels: tuple[str, str] | None = None,
            confidence: float = CONFIDENCE) -> Comparison:
    """Compare two seed groups on a metric: difference of means with its Welch interval, and a sentence.

    Args:
        a, b: the groups; the difference is a - b.
        metric: "val" (best validation accuracy, the default) or "test".
        labels: what to call them; default from the fields their configs differ in.

    Raises:
        StatsError: a group has fewer than 2 runs, or the metric is unknown.
    """
    xa, xb = a.values(metric), b.values(metric)
    diff, low, high, df = welch_interval(xa, xb, confidence)
    la, lb = labels or difference_labels(a.config, b.config)
    return Comparison(la, lb, metric, len(xa), len(xb), float(np.mean(xa)), float(np.mean(xb)), diff, low, high,
                      df, confidence)


def seeds_for(config: TrainConfig, n: int) -> list[int]:
    """The seeds of an n-seed repeat: the config's own seed and the n - 1 after it."""
    if n < 1:
        raise StatsError(f"seeds must be at least 1; got {n}")
    return [config.seed + i for i in range(n)]


def submit_seeds(queue: JobQueue, config: TrainConfig, n: int, force: bool = False) -> list[str]:
    """Submit one config with n seeds through the job queue; seeds already trained come from the store.

    Returns:
        The run ids, in seed order.

    Raises:
        StatsError: n < 1.
        StoreError: the run store cannot be written.
    """
    return [queue.submit(config.replace(seed=s), force=force) for s in seeds_for(config, n)]
