"""``trim``: a defence aimed at concentrated and optimised poison: fit on the rows that
fit best, iteratively.

After TRIM (Jagielski, Oprea, Biggio, Liu, Nita-Rotaru and Li, "Manipulating
Machine Learning: Poisoning Attacks and Countermeasures for Regression
Learning", IEEE S&P 2018): poison that moves a model has to be fitted badly by
a model trained without it, so the model is refitted, round after round, on
the ``(1 - trim)`` share of rows with the lowest loss under the previous fit,
until that subset stops changing. Here for classification: a standardized
logistic regression and the cross-entropy of each row's given label. A cluster
of identical poison rows (``minmax``) that a neighbour or label-quality check
accepts, because its rows vouch for each other, is fitted badly once the
clean majority alone sets the model.

Score: each row's loss under the final trimmed model (higher is worse); flags:
the rows outside the final subset (``validate.fpr`` replaces them with a
threshold from the clean split).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from poisonlab.detectors.base import Detection, nothing_flagged


def row_losses(model: LogisticRegression, Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy of every row's given label (a label the model never saw: large)."""
    proba = np.full((len(y), int(y.max()) + 1), 1e-12)
    proba[:, model.classes_] = np.clip(model.predict_proba(Z), 1e-12, 1.0)
    return -np.log(proba[np.arange(len(y)), y])


def trimmed_loss(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    trim: float = 0.2,
    max_rounds: int = 10,
    C: float = 1.0,
) -> Detection:
    """Score rows by their loss under a logistic regression fitted on the ``1 - trim``
    share of rows it fits best, refitted until that share stops changing (at most
    ``max_rounds`` fits after the first)."""
    n = len(y)
    if n < 2 * n_classes or len(np.unique(y)) < 2:
        return nothing_flagged(n)
    Z = StandardScaler().fit_transform(X)
    keep_count = max(2 * n_classes, int(np.ceil((1.0 - trim) * n)))
    model = LogisticRegression(C=C, max_iter=1000, warm_start=True, random_state=seed)
    kept = np.ones(n, dtype=bool)
    for _ in range(max_rounds + 1):
        classes = np.unique(y[kept])
        if len(classes) < 2:
            break
        if hasattr(model, "classes_") and not np.array_equal(model.classes_, classes):
            # The kept rows lost (or regained) a rare class: a warm start from the last
            # fit's coefficients has the wrong shape (MASS fgl, 9 rows of 'Tabl', raised
            # "Initialization coef is of shape (6, 10), expected shape (5, 10)").
            model = LogisticRegression(C=C, max_iter=1000, warm_start=True, random_state=seed)
        model.fit(Z[kept], y[kept])
        losses = row_losses(model, Z, y)
        order = np.argsort(losses, kind="stable")
        now = np.zeros(n, dtype=bool)
        now[order[:keep_count]] = True
        if np.array_equal(now, kept):
            break
        kept = now
    losses = row_losses(model, Z, y)
    return Detection(losses, ~kept)
