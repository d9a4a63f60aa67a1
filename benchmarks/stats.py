"""Small statistics of repeated measurements: medians, steady epochs, percentiles, the load average."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence

import numpy as np


def median(values: Sequence[float]) -> float:
    """The median, as a plain float."""
    return float(statistics.median(values))


def steady(epoch_seconds: Sequence[float]) -> float:
    """The epoch time once traced/compiled: the median of the epochs after the first."""
    return median(epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds)


def percentiles_ms(seconds: Sequence[float]) -> tuple[float, float]:
    """(p50, p99) of durations given in seconds, in milliseconds."""
    ms = np.asarray(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def load_avg() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def series(values: Sequence[float], digits: int = 3) -> str:
    """Values for a log line: '0.412 0.398 0.405'."""
    return " ".join(f"{v:.{digits}f}" for v in values)
