"""Summary statistics over trials."""

from __future__ import annotations

import math

import numpy as np

# The t quantile from scipy.special, which scipy.stats.t.ppf calls: importing
# scipy.stats would add 2 s to the report task's start.
from scipy.special import stdtrit


def mean_ci(
    values: np.ndarray,
    confidence: float = 0.95,
    bounds: tuple[float, float] | None = None,
) -> tuple[float, float, float, int]:
    """Mean and Student-t confidence interval of ``values``: (mean, low, high, n).

    ``bounds``: the range the measured quantity cannot leave (a proportion's
    [0, 1]); the interval is cut to it. With few trials near a bound a t interval
    reaches past it (accuracy up to 1.02); the cut one covers the true value
    exactly when the uncut one does, and shows no impossible value.
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
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return mean, low, high, n


def ratio_of_means_ci(
    numerator: np.ndarray,
    denominator: np.ndarray,
    rng: np.random.Generator,
    confidence: float = 0.95,
    resamples: int = 2000,
) -> tuple[float, float, float, int]:
    """mean(numerator) / mean(denominator) over paired trials, with a bootstrap interval.

    Percentile bootstrap over trials (Efron and Tibshirani, "An Introduction to
    the Bootstrap", 1993, ch. 13): trials are resampled with replacement, pairs
    kept together, and the ratio of the resampled means taken each time. A ratio
    of means stays stable where per-trial ratios explode (a trial that lost
    almost nothing divides by almost zero). Resamples whose denominator is not
    positive have no ratio and are left out. Returns (ratio, low, high, n).
    """
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    n = len(numerator)
    if n == 0 or denominator.mean() <= 0:
        return math.nan, math.nan, math.nan, n
    ratio = float(numerator.mean() / denominator.mean())
    if n == 1:
        return ratio, math.nan, math.nan, 1
    picks = rng.integers(0, n, size=(resamples, n))
    means_num, means_den = numerator[picks].mean(axis=1), denominator[picks].mean(axis=1)
    valid = means_den > 0
    ratios = means_num[valid] / means_den[valid]
    low, high = np.quantile(ratios, [(1 - confidence) / 2, (1 + confidence) / 2])
    return ratio, float(low), float(high), n
