"""Poisoning attacks on a training split.

Every attack takes the clean training rows and a poison level and returns the
poisoned rows with the ground-truth mask of the rows it changed or added. The
mask is for scoring only: detectors never see it.

Rows are chosen from one permutation drawn from ``rng``, so with the same
generator a higher level poisons a superset of a lower level's rows: levels of
one trial compare paired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Poisoned:
    """A poisoned training set. ``mask[i]`` is True where row i was changed or added."""

    X: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attack:
    """An attack function and the defaults of its parameters (its config section)."""

    poison: Callable[..., Poisoned]
    defaults: dict[str, Any]


def n_poisoned(level: float, n_rows: int) -> int:
    """round(level x n_rows), halves rounded up."""
    return int(np.floor(level * n_rows + 0.5))


def label_flip(
    X: np.ndarray, y: np.ndarray, level: float, *, rng: np.random.Generator, n_classes: int
) -> Poisoned:
    """Give round(level x n) rows, chosen uniformly, a label drawn uniformly from the others."""
    n = len(y)
    order = rng.permutation(n)
    shifts = rng.integers(1, n_classes, size=n)
    k = n_poisoned(level, n)
    rows = order[:k]
    y_poisoned = y.copy()
    y_poisoned[rows] = (y[rows] + shifts[:k]) % n_classes
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return Poisoned(X.copy(), y_poisoned, mask)


def feature_noise(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    magnitude: float = 3.0,
) -> Poisoned:
    """Replace the features of round(level x n) rows with out-of-distribution values.

    Each value lies beyond the feature's observed training range, above or below
    it at random, by between 0.5 and ``magnitude`` times the range.
    """
    n = len(y)
    order_rng, value_rng = rng.spawn(2)
    k = n_poisoned(level, n)
    rows = order_rng.permutation(n)[:k]
    low, high = X.min(axis=0), X.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    draws = value_rng.uniform(size=(k, X.shape[1], 2))
    above = draws[..., 0] < 0.5
    distance = span * (0.5 + (magnitude - 0.5) * draws[..., 1])
    X_poisoned = X.copy()
    X_poisoned[rows] = np.where(above, high + distance, low - distance)
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return Poisoned(X_poisoned, y.copy(), mask)


ATTACKS: dict[str, Attack] = {
    "label_flip": Attack(label_flip, {}),
    "feature_noise": Attack(feature_noise, {"magnitude": 3.0}),
}


def apply_attack(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    params: dict[str, Any],
) -> Poisoned:
    """Run the attack called ``name`` with its config parameters."""
    return ATTACKS[name].poison(X, y, level, rng=rng, n_classes=n_classes, **params)
