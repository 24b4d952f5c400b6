"""Summary statistics over trials."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """Mean and Student-t confidence interval of ``values``: (mean, low, high, n).

    With a single value the interval is undefined and returned as NaN.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(values.mean())
    if n == 1:
        return mean, math.nan, math.nan, 1
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n
