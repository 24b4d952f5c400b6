"""Summary statistics over trials."""

from __future__ import annotations

import math

import numpy as np

# The t quantile from scipy.special, which scipy.stats.t.ppf calls: importing
# scipy.stats would add 2 s to the report task's start.
from scipy.special import stdtrit


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
    half = float(stdtrit(n - 1, (1 + confidence) / 2) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n
