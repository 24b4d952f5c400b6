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
    empty_if_tied: bool = False,
) -> tuple[float, float, float, int]:
    """Mean and Student-t confidence interval of ``values``: (mean, low, high, n).

    ``bounds``: the range the measured quantity cannot leave (a proportion's
    [0, 1]); the interval is cut to it. With few trials near a bound a t interval
    reaches past it (accuracy up to 1.02); the cut one covers the true value
    exactly when the uncut one does, and shows no impossible value.
    With a single value the interval is undefined and returned as NaN.

    ``empty_if_tied``: values all equal give NaN ends too, not a zero-width
    interval. A few trials of a score on a small test split often tie (3 trials
    of 74 right out of 80); their spread is then unmeasured, not zero, and
    [0.925, 0.925] would claim a certainty the trials cannot show.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(values.mean())
    if n == 1 or (empty_if_tied and values.min() == values.max()):
        return mean, math.nan, math.nan, n
    half = float(stdtrit(n - 1, (1 + confidence) / 2) * values.std(ddof=1) / math.sqrt(n))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return mean, low, high, n


def ratio_of_means_ci(
    numerator: np.ndarray,
    denominator: np.ndarray,
    confidence: float = 0.95,
) -> tuple[float, float, float, int]:
    """mean(numerator) / mean(denominator) over paired trials, with Fieller's interval.

    Fieller's theorem (Fieller, "Some problems in interval estimation", JRSS B 16,
    1954): the interval holds every ratio r for which the paired mean of
    ``numerator - r * denominator`` is within its Student-t interval of zero. It
    is exact for normal pairs at any number of trials (n - 1 degrees of freedom),
    where a bootstrap over 2 or 3 trials only spans what those trials show. It is
    a finite interval exactly when mean(denominator) is itself distinguishable
    from zero by its t interval; otherwise the ratio has no upper bound (it may be
    dividing by noise), and low and high are NaN. A ratio of means stays stable
    where per-trial ratios explode (a trial that lost almost nothing divides by
    almost zero). Returns (ratio, low, high, n); NaN where mean(denominator) is
    not positive. Trials that all tied in both (a zero-width interval) leave the
    ends NaN, as ``mean_ci``'s ``empty_if_tied`` does: their spread is unmeasured.
    """
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    n = len(numerator)
    if n == 0 or denominator.mean() <= 0:
        return math.nan, math.nan, math.nan, n
    top, bottom = float(numerator.mean()), float(denominator.mean())
    ratio = top / bottom
    tied = numerator.min() == numerator.max() and denominator.min() == denominator.max()
    if n == 1 or tied:
        return ratio, math.nan, math.nan, n
    t2 = float(stdtrit(n - 1, (1 + confidence) / 2)) ** 2
    cov = np.cov(numerator, denominator, ddof=1) / n  # covariance of the two means
    # r in the interval <=> (top - r bottom)^2 <= t2 (v11 - 2 r v12 + r^2 v22):
    # a r^2 - 2 b r + c <= 0.
    a = bottom**2 - t2 * cov[1, 1]
    b = top * bottom - t2 * cov[0, 1]
    c = top**2 - t2 * cov[0, 0]
    if a <= 0:  # the denominator's interval reaches zero: no finite bound
        return ratio, math.nan, math.nan, n
    half = math.sqrt(max(b * b - a * c, 0.0))
    return ratio, (b - half) / a, (b + half) / a, n
