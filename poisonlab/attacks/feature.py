"""Feature attacks: change or add training rows' features.

``feature_noise`` moves values out of range, ``feature_noise_inrange`` keeps
them in range, ``injection`` appends mislabelled near-copies, ``backdoor``
stamps a trigger and relabels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from poisonlab.attacks.base import Poisoned, check_column_ref, check_number, n_poisoned, row_mask
from poisonlab.config import _fail
from poisonlab.errors import PoisonlabError


def stamp_trigger(X: np.ndarray, features: Sequence[int], values: Sequence[float]) -> np.ndarray:
    """A copy of ``X`` with each of ``features`` set to its trigger value."""
    stamped = np.array(X, dtype=np.float64, copy=True)
    stamped[:, list(features)] = np.asarray(values, dtype=np.float64)
    return stamped


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
    return Poisoned(X_poisoned, y.copy(), row_mask(n, rows))


def feature_noise_inrange(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    sampling: str = "uniform",
) -> Poisoned:
    """Replace the features of round(level x n) rows with values inside the observed range.

    ``uniform``: each value uniform between the feature's training minimum and
    maximum. ``marginal``: each value copied from a random training row's value
    of that feature, so every feature's distribution is kept. Labels unchanged.
    """
    n, d = X.shape
    order_rng, value_rng = rng.spawn(2)
    rows = order_rng.permutation(n)[: n_poisoned(level, n)]
    # Drawn for every position of the permutation, so a lower level's rows get
    # the same values at a higher level.
    if sampling == "marginal":
        values = X[value_rng.integers(0, n, size=(n, d)), np.arange(d)]
    else:
        values = value_rng.uniform(X.min(axis=0), X.max(axis=0), size=(n, d))
    X_poisoned = X.copy()
    X_poisoned[rows] = values[: len(rows)]
    return Poisoned(X_poisoned, y.copy(), row_mask(n, rows))


def injection(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    jitter: float = 0.05,
) -> Poisoned:
    """Append round(level x n) new rows: jittered copies of real rows with a wrong label.

    Each copies a distinct training row's features plus Gaussian noise of
    ``jitter`` x the feature's standard deviation, clipped to the observed
    range, and carries a label drawn uniformly from the other classes. The
    original rows are untouched; the mask marks the appended ones.
    """
    n, d = X.shape
    order = rng.permutation(n)
    shifts = rng.integers(1, n_classes, size=n)
    noise = rng.standard_normal(size=(n, d))
    k = n_poisoned(level, n)
    sources = order[:k]
    new_X = X[sources] + noise[:k] * jitter * X.std(axis=0)
    new_X = np.clip(new_X, X.min(axis=0), X.max(axis=0))
    new_y = (y[sources] + shifts[:k]) % n_classes
    mask = np.concatenate([np.zeros(n, dtype=bool), np.ones(k, dtype=bool)])
    info = {"n_added": k}
    return Poisoned(np.vstack([X, new_X]), np.concatenate([y, new_y]), mask, info)


def least_informative_features(
    X: np.ndarray, y: np.ndarray, count: int, candidates: np.ndarray | None = None
) -> list[int]:
    """The ``count`` features with the lowest ANOVA F score for the label (ties: lower index).

    A trigger on features the clean model hardly uses leaves clean accuracy alone.
    ``candidates`` (a boolean mask over features, ``trigger_candidates``) come first;
    the others only where fewer than ``count`` are candidates.
    """
    import warnings

    from sklearn.feature_selection import f_classif

    if len(np.unique(y)) < 2:
        order = np.arange(X.shape[1])
    else:
        # A constant feature scores NaN (scikit-learn warns on stderr): it carries no
        # information at all.
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            scores, _ = f_classif(X, y)
        scores = np.nan_to_num(scores, nan=-1.0, posinf=np.inf)
        order = np.argsort(scores, kind="stable")
    if candidates is not None:
        order = np.r_[order[candidates[order]], order[~candidates[order]]]
    return sorted(int(i) for i in order[:count])


def quantile_values(X: np.ndarray, quantile: float, columns: Any = None) -> np.ndarray:
    """Each feature's ``quantile`` on ``X``, rounded where the column holds whole numbers
    (``columns.integer``, or every value whole), as decoding to raw rows rounds it."""
    whole = np.all(np.round(X) == X, axis=0)
    if columns is not None:
        whole |= np.asarray(columns.integer, dtype=bool)
    values = np.quantile(X, quantile, axis=0)
    return np.where(whole, np.round(values), values)


def trigger_candidates(X: np.ndarray, quantile: float, columns: Any = None) -> np.ndarray:
    """The features whose ``quantile`` value is a rare trigger a source could send.

    Not a one-hot column (``columns``: ``poisonlab.table.EncodedColumns``): a stamped
    category column is decoded back into one category of its group, and its 5% quantile
    is 0, the value of every row without that category. Not a column whose ``quantile``
    value (rounded where the column is whole numbers, as decoding rounds it) more than
    twice the rare share of clean rows, ``min(quantile, 1 - quantile)``, already hold:
    a count that is 0 in most rows, or a column constant in this split. On a one-hot
    encoded table (lending_club, credit_data) the default trigger was two such zeros,
    held by 78% to 100% of the clean training rows: the backdoor stamped nothing and
    was a relabelling.
    """
    n, d = X.shape
    allowed = np.ones(d, dtype=bool)
    if columns is not None:
        for group in columns.groups:
            allowed[np.asarray(group, dtype=int)] = False
    values = quantile_values(X, quantile, columns)
    held = np.equal(X, values).mean(axis=0)
    rare = max(2 * min(quantile, 1 - quantile), 2 / max(n, 1))
    return allowed & (held <= rare) & (X.min(axis=0) < X.max(axis=0))


def backdoor(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    target_class: int | None = None,
    features: list[int] | None = None,
    n_features: int = 2,
    quantile: float = 0.05,
    values: list[float] | None = None,
    columns: Any = None,
) -> Poisoned:
    """Stamp a trigger on round(level x n) rows of other classes and relabel them as the target.

    The trigger sets ``features`` (default: the ``n_features`` least
    class-informative ones among ``trigger_candidates``) to ``values`` (default:
    each feature's ``quantile`` on the training split: rare, yet inside the
    observed range). The target
    class defaults to the first class. Rows are chosen uniformly among those
    not already of the target class. The trigger goes into ``info`` so that
    evaluation can measure the attack success rate.
    """
    n = len(y)
    target = 0 if target_class is None else target_class
    chosen = features
    if chosen is None:
        candidates = trigger_candidates(X, quantile, columns)
        chosen = least_informative_features(X, y, n_features, candidates)
    if values is None:
        trigger = [float(v) for v in quantile_values(X, quantile, columns)[list(chosen)]]
    elif len(values) == len(chosen):
        trigger = [float(v) for v in values]
    else:
        raise PoisonlabError(
            f"config: poison.backdoor.values has {len(values)} values for {len(chosen)} trigger "
            "features; give one value per feature"
        )
    order = rng.permutation(n)
    candidates = order[y[order] != target]
    rows = candidates[: n_poisoned(level, n)]
    X_poisoned = X.copy()
    X_poisoned[rows] = stamp_trigger(X[rows], chosen, trigger)
    y_poisoned = y.copy()
    y_poisoned[rows] = target
    info = {"trigger_features": [int(f) for f in chosen], "trigger_values": trigger}
    info["target_class"] = int(target)
    return Poisoned(X_poisoned, y_poisoned, row_mask(n, rows), info)


def check_magnitude(attack: str, params: dict[str, Any]) -> None:
    check_number(f"poison.{attack}.magnitude", params["magnitude"], 0.5)


def check_sampling(attack: str, params: dict[str, Any]) -> None:
    if params["sampling"] not in ("uniform", "marginal"):
        raise _fail(
            f"poison.{attack}.sampling",
            f"= {params['sampling']!r} is unknown",
            "choose from: uniform, marginal",
        )


def check_jitter(attack: str, params: dict[str, Any]) -> None:
    check_number(f"poison.{attack}.jitter", params["jitter"], 0.0)


def check_backdoor(attack: str, params: dict[str, Any]) -> None:
    prefix = f"poison.{attack}"
    check_column_ref(f"{prefix}.target_class", params["target_class"], "class")
    n_features = params["n_features"]
    if not isinstance(n_features, int) or isinstance(n_features, bool) or n_features < 1:
        raise _fail(f"{prefix}.n_features", f"= {n_features!r} is below 1", "give 1 or more")
    check_number(f"{prefix}.quantile", params["quantile"], 0.0, 1.0)
    features = params["features"]
    if features is not None:
        if not isinstance(features, list) or not features:
            raise _fail(
                f"{prefix}.features",
                f"= {features!r} is not a list of features",
                "write e.g. [sepal width (cm)] or [1, 3], or null to choose automatically",
            )
        for i, feature in enumerate(features):
            check_column_ref(f"{prefix}.features[{i}]", feature, "feature")
        if len(set(features)) != len(features):
            raise _fail(f"{prefix}.features", f"= {features} names one twice", "list each once")
    values = params["values"]
    if values is not None:
        wanted = len(features) if features is not None else n_features
        if not isinstance(values, list) or len(values) != wanted:
            raise _fail(
                f"{prefix}.values",
                f"= {values!r} is not a list of {wanted} numbers (one per trigger feature)",
                "give one value per feature, or null for each feature's quantile",
            )
        for i, value in enumerate(values):
            check_number(f"{prefix}.values[{i}]", value, -math.inf)


def missing_values(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    share: float = 0.3,
) -> Poisoned:
    """Blank about ``share`` of the cells of round(level x n) rows, at least one per row.

    The blanked cells are NaN in the encoded matrix and missing in the raw rows
    (``poisonlab.table.Encoding.decode``; a one-hot group with a blank cell is a
    missing category; a column whose dtype holds no gap, numpy's int, keeps its
    value). An imputing pipeline then fills them with its training split's values:
    the attack tests what a feed of gaps does to it. Labels unchanged.
    The draws cover every position of the row permutation, so a higher level
    blanks a superset of a lower level's cells.
    """
    n, d = X.shape
    order_rng, cell_rng = rng.spawn(2)
    rows = order_rng.permutation(n)[: n_poisoned(level, n)]
    draws = cell_rng.uniform(size=(n, d))
    blank = draws < share
    blank[np.arange(n), draws.argmin(axis=1)] = True  # never a row left as it was
    X_poisoned = X.astype(np.float64, copy=True)
    X_poisoned[rows] = np.where(blank[: len(rows)], np.nan, X[rows])
    return Poisoned(X_poisoned, y.copy(), row_mask(n, rows))


def check_share(attack: str, params: dict[str, Any]) -> None:
    check_number(f"poison.{attack}.share", params["share"], 0.0, 1.0, open_low=True)
