"""Label attacks: change training labels, leave the features alone.

``label_flip`` flips at random; ``label_flip_targeted`` flips one class into
another; ``label_flip_margin`` flips the labels a surrogate model is surest of.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonlab.attacks.base import Poisoned, check_column_ref, check_number, n_poisoned, row_mask
from poisonlab.config import _fail

# At most this many folds for the cross-validated surrogate of label_flip_targeted.
_CV_FOLDS = 5


def surrogate_proba(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    C: float = 1.0,
    cv_seed: int | None = None,
) -> np.ndarray:
    """Class probabilities (n x n_classes) from a standardized logistic regression.

    With ``cv_seed`` the probabilities are cross-validated (each row scored by a
    model that did not see it; stratified folds, at most 5); otherwise in-sample.
    Classes absent from ``y`` get probability 0. With a single class present,
    every row gets probability 1 for its own label.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from poisonlab.models import make_model

    present, counts = np.unique(y, return_counts=True)
    proba = np.zeros((len(y), n_classes))
    if len(present) < 2:
        proba[np.arange(len(y)), y] = 1.0
        return proba
    model = make_model("logistic_regression", {"C": C, "max_iter": 1000}, random_state=0)
    folds = min(_CV_FOLDS, int(counts.min()))
    if cv_seed is not None and folds >= 2:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cv_seed)
        proba[:, present] = cross_val_predict(model, X, y, cv=splitter, method="predict_proba")
    else:
        proba[:, present] = model.fit(X, y).predict_proba(X)
    return proba


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
    return Poisoned(X.copy(), y_poisoned, row_mask(n, rows))


def most_confused_pair(
    proba: np.ndarray, y: np.ndarray, source: int | None = None, target: int | None = None
) -> tuple[int, int]:
    """The (source, target) classes with the highest mean probability of target on source rows.

    ``proba`` should be cross-validated. A given ``source`` or ``target`` is kept
    and only the other is chosen. Ties go to the lower class index.
    """
    n_classes = proba.shape[1]
    confusion = np.full((n_classes, n_classes), -np.inf)
    for c in np.unique(y):
        confusion[c] = proba[y == c].mean(axis=0)
    np.fill_diagonal(confusion, -np.inf)
    if source is not None:
        confusion[np.arange(n_classes) != source] = -np.inf
    if target is not None:
        confusion[:, np.arange(n_classes) != target] = -np.inf
    if not np.isfinite(confusion).any():
        # The given class has no training rows: any other class will do.
        if source is not None:
            return source, target if target is not None else (source + 1) % n_classes
        return (target + 1) % n_classes, target  # type: ignore[operator]
    s, t = np.unravel_index(int(np.argmax(confusion)), confusion.shape)
    return int(s), int(t)


def label_flip_targeted(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    source_class: int | None = None,
    target_class: int | None = None,
) -> Poisoned:
    """Relabel round(level x n_source) rows of the source class, chosen uniformly, as the target.

    The level is the fraction of the *source class's* training rows. A class
    left unset is chosen from the training split alone: the pair a clean,
    cross-validated logistic regression confuses most (``most_confused_pair``).
    """
    order_rng, cv_rng = rng.spawn(2)
    n = len(y)
    source, target = source_class, target_class
    if source is None or target is None:
        cv_seed = int(cv_rng.integers(0, 2**31 - 1))
        proba = surrogate_proba(X, y, n_classes, cv_seed=cv_seed)
        source, target = most_confused_pair(proba, y, source, target)
    order = order_rng.permutation(n)
    candidates = order[y[order] == source]
    rows = candidates[: n_poisoned(level, len(candidates))]
    y_poisoned = y.copy()
    y_poisoned[rows] = target
    info = {"source_class": int(source), "target_class": int(target)}
    return Poisoned(X.copy(), y_poisoned, row_mask(n, rows), info)


def label_flip_margin(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    C: float = 1.0,
) -> Poisoned:
    """Flip the round(level x n) labels a surrogate is surest of, each to its likeliest wrong class.

    The surrogate (standardized logistic regression, inverse regularization
    ``C``) is fitted once on the clean training split. Rows it classifies
    correctly come first, by decreasing probability of their true class; then
    the misclassified ones, likewise. Ties are broken by a random permutation.
    """
    n = len(y)
    proba = surrogate_proba(X, y, n_classes, C=C)
    own = proba[np.arange(n), y]
    correct = proba.argmax(axis=1) == y
    tiebreak = rng.permutation(n)
    # np.lexsort sorts by the last key first.
    ranking = np.lexsort((tiebreak, -own, ~correct))
    rows = ranking[: n_poisoned(level, n)]
    wrong = proba.copy()
    wrong[np.arange(n), y] = -np.inf
    y_poisoned = y.copy()
    y_poisoned[rows] = wrong[rows].argmax(axis=1)
    return Poisoned(X.copy(), y_poisoned, row_mask(n, rows))


def check_targeted(attack: str, params: dict[str, Any]) -> None:
    for key in ("source_class", "target_class"):
        check_column_ref(f"poison.{attack}.{key}", params[key], "class")
    if params["source_class"] is not None and params["source_class"] == params["target_class"]:
        raise _fail(
            f"poison.{attack}.target_class",
            f"= {params['target_class']!r} equals source_class",
            "flip to a different class",
        )


def check_margin(attack: str, params: dict[str, Any]) -> None:
    check_number(f"poison.{attack}.C", params["C"], 0.0, open_low=True)
