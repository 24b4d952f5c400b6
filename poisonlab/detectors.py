"""Data-validation detectors: a suspicion score and a flag for every training row.

A detector sees only what a data-validation gate would see: the (possibly
poisoned) training features and labels. Never the test split, never the mask.
Higher scores mean more suspicious; ``flags`` is the detector's own decision.

Every detector is sub-quadratic in the number of rows: neighbours come from a
search over at most ``max_reference`` rows, model-based scores from k-fold
out-of-sample predictions. The class-proportion check is dataset-level, not
per row, so it lives in ``poisonlab.gate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import ExtraTreesClassifier, IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from poisonlab.seeding import derive_rng

# Scales a median absolute deviation to a standard deviation for normal data.
_MAD_TO_SD = 1.4826
# Tukey's fences: 1.5 x IQR beyond the quartiles is "outside", 3 x is "far out".
_TUKEY_FAR = 3.0


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


def _nothing(n: int) -> Detection:
    return Detection(np.zeros(n), np.zeros(n, dtype=bool))


# --- neighbours -----------------------------------------------------------------------


def reference_rows(n: int, max_reference: int, seed: int) -> np.ndarray:
    """All ``n`` row indices, or a seeded sample of ``max_reference`` of them, sorted.

    Neighbour searches (and the ensemble's trees) look among these rows only:
    with at most ``max_reference`` reference rows a query costs the same at any
    n, so a search for every row grows linearly instead of quadratically. On
    large data that trades a little accuracy for speed.
    """
    if n <= max_reference:
        return np.arange(n)
    return np.sort(derive_rng(seed, "knn-sample").choice(n, max_reference, replace=False))


def neighbour_indices(Z: np.ndarray, k: int, *, seed: int, max_reference: int) -> np.ndarray:
    """Indices of each row's k nearest other rows, shape (n, k).

    The neighbours are searched among ``reference_rows``, by scikit-learn's choice
    of index: a KD-tree in few dimensions; in more than 15, where a tree prunes
    little, chunked brute force (8 times faster than a KD-tree at 20 features).
    A row never counts as its own neighbour, though an exact duplicate does.
    """
    n = len(Z)
    reference = reference_rows(n, max_reference, seed)
    k = min(k, len(reference) - 1)
    index = NearestNeighbors(n_neighbors=k + 1).fit(Z[reference])
    found = reference[index.kneighbors(Z, return_distance=False)]
    # Move each row's own index (if the reference holds it) to the end, keep k.
    is_self = found == np.arange(n)[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")
    return np.take_along_axis(found, order, axis=1)[:, :k]


def knn_disagreement(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    k: int = 10,
    threshold: float = 0.5,
    max_reference: int = 20000,
) -> Detection:
    """Score each row by the share of its k nearest neighbours with another label.

    Features are standardized first so that no feature dominates the distance.
    """
    n = len(y)
    if n < 2 or k < 1:
        return _nothing(n)
    Z = StandardScaler().fit_transform(X)
    neighbours = neighbour_indices(Z, k, seed=seed, max_reference=max_reference)
    scores = (y[neighbours] != y[:, None]).mean(axis=1)
    return Detection(scores, scores > threshold)


# --- feature ranges -------------------------------------------------------------------


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
    threshold: float = _TUKEY_FAR,
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
        return _nothing(n)
    forest = IsolationForest(
        n_estimators=n_estimators,
        contamination=contamination,
        max_samples=min(max_samples, n),
        random_state=seed,
    ).fit(X)
    scores = -forest.score_samples(X)
    return Detection(scores, forest.predict(X) == -1)


# --- label quality from out-of-sample probabilities -----------------------------------


def _logistic() -> BaseEstimator:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def out_of_sample_probabilities(
    estimator: BaseEstimator,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    n_splits: int,
    seed: int,
    fit_on: np.ndarray | None = None,
) -> np.ndarray:
    """Predicted class probabilities of every row from a model that never saw it.

    Stratified k-fold: one fit per fold, so the cost is k fits, not one per row.
    Only rows where ``fit_on`` is True (default all) are fitted on; every row is
    predicted. Columns are the dataset's classes, including any a fold did not
    see (0 there).
    """
    n = len(y)
    fit_on = np.ones(n, dtype=bool) if fit_on is None else fit_on
    probabilities = np.zeros((n, n_classes))
    counts = np.bincount(y, minlength=n_classes)
    smallest = int(counts[counts > 0].min())
    # Stratification needs every class in every fold: fewer folds for a rare
    # class, plain folds for a class of one row.
    splits = max(2, min(n_splits, smallest))
    if smallest >= 2:
        folds = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed).split(X, y)
    else:
        folds = _plain_folds(n, splits, seed)
    for train, held_out in folds:
        train = train[fit_on[train]]
        if len(train) == 0:
            probabilities[held_out] = 1.0 / n_classes
            continue
        if len(np.unique(y[train])) < 2:
            probabilities[held_out, y[train][0]] = 1.0
            continue
        model = clone(estimator).fit(X[train], y[train])
        probabilities[np.ix_(held_out, model.classes_)] = model.predict_proba(X[held_out])
    return probabilities


def _plain_folds(n: int, splits: int, seed: int):
    order = derive_rng(seed, "folds").permutation(n)
    for held_out in np.array_split(order, splits):
        yield np.setdiff1d(order, held_out), held_out


def confident_learning(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    n_splits: int = 5,
    filter_by: str = "prune_by_noise_rate",
) -> Detection:
    """cleanlab's ``find_label_issues`` on k-fold out-of-sample probabilities.

    The model is a standardized logistic regression; the score is one minus
    cleanlab's self-confidence label quality.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    n = len(y)
    if n < 2 * n_classes or len(np.unique(y)) < 2:
        return _nothing(n)
    probabilities = out_of_sample_probabilities(
        _logistic(), X, y, n_classes, n_splits=n_splits, seed=seed
    )
    flags = find_label_issues(y, probabilities, filter_by=filter_by, n_jobs=1)
    scores = 1.0 - get_label_quality_scores(y, probabilities)
    return Detection(scores, np.asarray(flags, dtype=bool))


def _ensemble_members(seed: int) -> list[tuple[BaseEstimator, bool]]:
    """Three model families that err differently: linear, local, tree-based.

    Each with whether it is fitted on the reference rows only (``reference_rows``):
    the neighbour search and the trees, whose cost grows faster than the
    logistic regression's.
    (Gaussian naive Bayes was tried as a fourth: its independence assumption
    cost F1 on Breast Cancer's correlated features.)
    """
    return [
        (_logistic(), False),
        (
            make_pipeline(
                StandardScaler(),
                KNeighborsClassifier(n_neighbors=10, weights="distance"),
            ),
            True,
        ),
        (
            ExtraTreesClassifier(n_estimators=25, min_samples_leaf=3, random_state=seed, n_jobs=1),
            True,
        ),
    ]


def ensemble(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    n_splits: int = 5,
    rounds: int = 2,
    filter_by: str = "prune_by_noise_rate",
    outlier_threshold: float = 3.5,
    max_reference: int = 20000,
) -> Detection:
    """Label quality from several model families, cleaned in rounds, plus a feature-outlier check.

    1. Feature outliers: rows whose *median* robust z-score over features exceeds
       ``outlier_threshold``, i.e. most of their values are far out (one heavy
       tail is not enough, so skewed clean features are not thrown away).
    2. Label quality: the mean out-of-sample probability of the given label under
       a logistic regression, a kNN and an extra-trees model.
       Averaging families whose errors differ calibrates better than any one.
    3. Rounds: after each round the models are refitted without the outliers and
       the rows whose label quality is below chance (1 / n_classes), so that
       poisoned labels stop teaching the models that judge them; every row is
       still scored out of sample.
    4. Flags: cleanlab's ``find_label_issues`` on the last round's probabilities
       (confident learning estimates how many labels are wrong) and, with three
       or more classes, every label whose quality is below chance: on Wine and
       Iris cleanlab's count alone misses a third of the flips at 10%.

    Score: the larger of 1 - label quality and z / (z + threshold) (0.5 at the
    outlier threshold). Cost: rounds x 3 x n_splits fits. The kNN and extra-trees
    members are fitted on at most ``max_reference`` rows (``reference_rows``), so
    their fits are bounded and their predictions linear in n; on larger tables
    they learn from a seeded sample, traded for accuracy: on 3 classes, 20
    features and 10% label flips, F1 0.70 in 37 s with the trees on every row
    against 0.67 in 18 s sampled at 100k rows, 0.74 in 751 s against 0.66 in
    129 s at 1M (README, Performance and scale).
    """
    from cleanlab.filter import find_label_issues

    n = len(y)
    if n < 2 * n_classes or len(np.unique(y)) < 2:
        return _nothing(n)
    outlier = np.median(robust_zscore(X), axis=1) if X.shape[1] else np.zeros(n)
    outliers = outlier > outlier_threshold
    keep = ~outliers
    members = _ensemble_members(seed)
    in_reference = np.zeros(n, dtype=bool)
    in_reference[reference_rows(n, max_reference, seed)] = True
    for _ in range(max(1, rounds)):
        probabilities = np.mean(
            [
                out_of_sample_probabilities(
                    member,
                    X,
                    y,
                    n_classes,
                    n_splits=n_splits,
                    seed=seed,
                    fit_on=keep & in_reference if sampled else keep,
                )
                for member, sampled in members
            ],
            axis=0,
        )
        quality = probabilities[np.arange(n), y]
        keep = ~outliers & (quality >= 1.0 / n_classes)
    flags = np.asarray(find_label_issues(y, probabilities, filter_by=filter_by, n_jobs=1), bool)
    if n_classes > 2:
        # Below chance is below the decision boundary only with three or more
        # classes; with two, chance is the boundary, where clean rows sit too.
        flags |= quality < 1.0 / n_classes
    scores = np.maximum(1.0 - quality, outlier / (outlier + outlier_threshold))
    return Detection(scores, flags | outliers)


DETECTORS: dict[str, Detector] = {
    "knn": Detector(knn_disagreement, {"k": 10, "threshold": 0.5, "max_reference": 20000}),
    "zscore": Detector(zscore_range, {"threshold": 3.5}),
    "iqr": Detector(iqr_range, {"threshold": _TUKEY_FAR}),
    "isolation_forest": Detector(
        isolation_forest, {"n_estimators": 100, "contamination": 0.05, "max_samples": 256}
    ),
    "confident_learning": Detector(
        confident_learning, {"n_splits": 5, "filter_by": "prune_by_noise_rate"}
    ),
    "ensemble": Detector(
        ensemble,
        {
            "n_splits": 5,
            "rounds": 2,
            "filter_by": "prune_by_noise_rate",
            "outlier_threshold": 3.5,
            "max_reference": 20000,
        },
    ),
}


_FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
)
# Parameter -> (lowest allowed value, fix); checked for every detector that takes it.
_LOWEST = {
    "k": (1, "use k >= 1, e.g. 10"),
    "max_reference": (2, "use e.g. 20000"),
    "n_splits": (2, "use 2 or more folds, e.g. 5"),
    "rounds": (1, "use 1 or more rounds, e.g. 2"),
    "n_estimators": (1, "use e.g. 100"),
    "max_samples": (2, "use e.g. 256"),
    "threshold": (0, "use a threshold >= 0"),
    "outlier_threshold": (0, "use a threshold >= 0, e.g. 3.5"),
}


def check_detector_params(name: str, params: dict[str, Any]) -> str | None:
    """The first problem with a detector's config parameters as "param: fix", or None."""
    for key, value in params.items():
        if key in _LOWEST and value is not None and value < _LOWEST[key][0]:
            return f"{key} = {value} is too small; {_LOWEST[key][1]}"
    if params.get("filter_by", _FILTERS[0]) not in _FILTERS:
        return f"filter_by = {params['filter_by']!r} is unknown; choose from {', '.join(_FILTERS)}"
    contamination = params.get("contamination", 0.1)
    if not 0 < contamination <= 0.5:
        return f"contamination = {contamination} is outside (0, 0.5]; use e.g. 0.05"
    return None


def run_detector(
    name: str, X: np.ndarray, y: np.ndarray, *, seed: int, n_classes: int, params: dict[str, Any]
) -> Detection:
    """Run the detector called ``name`` with its config parameters.

    BLAS runs single-threaded: the many small fits of k-fold detectors spend more
    time waking threads than computing (10x the CPU time on 2 busy cores).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return DETECTORS[name].detect(X, y, seed=seed, n_classes=n_classes, **params)
