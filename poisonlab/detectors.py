"""Data-validation detectors: a suspicion score and a flag for every training row.

A detector sees only what a data-validation gate would see: the (possibly
poisoned) training features and labels. Never the test split, never the mask.
Higher scores mean more suspicious; ``flags`` is the detector's own decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

# Scales a median absolute deviation to a standard deviation for normal data.
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class Detection:
    """Per-row suspicion ``scores`` (higher is worse) and boolean ``flags``."""

    scores: np.ndarray
    flags: np.ndarray


@dataclass(frozen=True)
class Detector:
    """A detector function and the defaults of its parameters (its config section)."""

    detect: Callable[..., Detection]
    defaults: dict[str, Any]


def knn_disagreement(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    k: int = 10,
    threshold: float = 0.5,
) -> Detection:
    """Score each row by the share of its k nearest neighbours with another label.

    Features are standardized first so that no feature dominates the distance.
    Neighbours come from a tree index, so the cost grows as n log n.
    """
    n = len(y)
    k = min(k, n - 1)
    if k < 1:
        return Detection(np.zeros(n), np.zeros(n, dtype=bool))
    Z = StandardScaler().fit_transform(X)
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(Z).kneighbors(Z, return_distance=False)
    # Column 0 is the row itself (or an exact duplicate of it); drop it.
    disagree = y[neighbours[:, 1:]] != y[:, None]
    scores = disagree.mean(axis=1)
    return Detection(scores, scores > threshold)


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


DETECTORS: dict[str, Detector] = {
    "knn": Detector(knn_disagreement, {"k": 10, "threshold": 0.5}),
    "zscore": Detector(zscore_range, {"threshold": 3.5}),
}


def run_detector(
    name: str, X: np.ndarray, y: np.ndarray, *, seed: int, n_classes: int, params: dict[str, Any]
) -> Detection:
    """Run the detector called ``name`` with its config parameters."""
    return DETECTORS[name].detect(X, y, seed=seed, n_classes=n_classes, **params)
