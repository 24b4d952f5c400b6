"""Feature-range detection: rows with values far outside what the other rows hold."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from poisonlab.detectors.base import Detection, nothing_flagged

# Scales a median absolute deviation to a standard deviation for normal data.
_MAD_TO_SD = 1.4826
# Tukey's fences: 1.5 x IQR beyond the quartiles is "outside", 3 x is "far out".
TUKEY_FAR = 3.0


def robust_zscore(X: np.ndarray) -> np.ndarray:
    """|x - median| / (1.4826 x MAD) per value; MAD 0 falls back to the mean deviation."""
    median = np.median(X, axis=0)
    deviation = np.abs(X - median)
    scale = _MAD_TO_SD * np.median(deviation, axis=0)
    fallback = deviation.mean(axis=0) * np.sqrt(np.pi / 2)
    scale = np.where(scale > 0, scale, np.where(fallback > 0, fallback, 1.0))
    return deviation / scale


def zscore_range(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    threshold: float = 3.5,
) -> Detection:
    """Flag rows with a feature more than ``threshold`` robust z-scores from its median.

    Median and MAD resist the outliers they look for, unlike mean and standard
    deviation; 3.5 is Iglewicz and Hoaglin's cut-off for modified z-scores.
    """
    scores = robust_zscore(X).max(axis=1) if X.shape[1] else np.zeros(len(y))
    return Detection(scores, scores > threshold)


def iqr_distance(X: np.ndarray) -> np.ndarray:
    """Per value: how many IQRs it lies outside [Q1, Q3] (0 inside); IQR 0 counts as 1."""
    q1, q3 = np.percentile(X, [25, 75], axis=0)
    iqr = np.where(q3 > q1, q3 - q1, 1.0)
    return np.maximum(q1 - X, X - q3).clip(min=0) / iqr


def iqr_range(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    threshold: float = TUKEY_FAR,
) -> Detection:
    """Flag rows with a feature more than ``threshold`` IQRs outside the quartiles.

    Tukey's fences; the default 3 is his "far out", so that ordinary tails of
    clean data are not thrown away.
    """
    scores = iqr_distance(X).max(axis=1) if X.shape[1] else np.zeros(len(y))
    return Detection(scores, scores > threshold)


def isolation_forest(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    n_estimators: int = 100,
    contamination: float = 0.05,
    max_samples: int = 256,
) -> Detection:
    """Isolation forest on the features: rows isolated in few splits are outliers.

    Each tree sees at most ``max_samples`` rows, so fitting is independent of n
    and scoring linear in it. ``contamination`` is the share flagged.
    """
    n = len(y)
    if n < 2:
        return nothing_flagged(n)
    forest = IsolationForest(
        n_estimators=n_estimators,
        contamination=contamination,
        max_samples=min(max_samples, n),
        random_state=seed,
    ).fit(X)
    scores = -forest.score_samples(X)
    return Detection(scores, forest.predict(X) == -1)
