"""Scores: classifiers on the clean test set, detectors against the true poisoned mask.

A level scores hundreds of small prediction vectors, where scikit-learn's
argument checks cost more than the arithmetic: accuracy, F1, precision and
recall are counted here with numpy (80 microseconds for a classifier's scores,
against 3.7 ms with scikit-learn's ``f1_score``; the tests check them against
scikit-learn). ROC-AUC is computed from ranks (``binary_roc_auc``), about 60
times faster than scikit-learn's ``roc_auc_score``, whose input checks cost a
level's evaluation half its time; average precision is scikit-learn's, with
its parameter validation off.
scikit-learn is imported by average precision alone, so the report, which
needs only ``headline_metric``, starts without it.
"""

from __future__ import annotations

import numpy as np


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro F1 of one test split.

    Macro F1 is the mean F1 of the classes present in ``y_true`` or predicted, as
    scikit-learn's ``f1_score(average="macro", zero_division=0)``: a class the
    split lacks and the model never predicts has no F1 (scoring it 0 would cut a
    split without the rare class by 1 / classes for nothing the model did); one
    predicted but absent scores 0, for its false positives.
    Balanced accuracy is the mean recall of the classes present in ``y_true``
    (scikit-learn's ``balanced_accuracy_score``): a model that always predicts
    the majority class scores 1 / (classes present), whatever the imbalance.
    With one class present it would be that class's recall, plain accuracy
    under another name (a split with no row of the rare class), so it is NaN
    there, as ``roc_auc`` is.
    """
    counts = np.bincount(
        n_classes * np.asarray(y_true, dtype=np.int64) + np.asarray(y_pred, dtype=np.int64),
        minlength=n_classes * n_classes,
    ).reshape(n_classes, n_classes)
    correct = np.diag(counts)
    actual = counts.sum(axis=1)
    present = actual > 0
    predicted = counts.sum(axis=0)
    f1, seen = _f1(correct, actual, predicted), (actual + predicted) > 0
    return {
        "accuracy": float(correct.sum() / len(y_true)) if len(y_true) else 0.0,
        "balanced_accuracy": (
            float(np.mean(correct[present] / actual[present]))
            if present.sum() >= 2
            else float("nan")
        ),
        "f1_macro": float(np.mean(f1[seen])) if seen.any() else 0.0,
    }


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of a classifier's class scores on the test set; NaN where undefined.

    ``scores`` has a column per class of the dataset (``models.class_scores``).
    Two classes: the AUC of the positive class's (code 1) score. More: the macro
    mean of one-vs-rest AUCs over the classes present in ``y_true`` (a class
    absent from the test split has no positives to rank, so it is left out of
    the mean); NaN if fewer than two classes are present. The same numbers as
    scikit-learn's ``roc_auc_score`` (``multi_class="ovr"`` for more classes).
    """
    y_true = np.asarray(y_true)
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    classes = [1] if scores.shape[1] == 2 else present
    return float(np.mean([binary_roc_auc(y_true == c, scores[:, c]) for c in classes]))


def binary_roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` ranking the ``positive`` rows above the rest.

    The Mann-Whitney U statistic over the product of the class sizes, with tied
    scores sharing their average rank: the probability that a random positive
    row outscores a random negative one, ties counting one half. It equals the
    trapezoidal area under the ROC curve exactly (Hanley and McNeil, "The
    meaning and use of the area under a receiver operating characteristic (ROC)
    curve", Radiology 143, 1982; Mason and Graham, "Areas beneath the relative
    operating characteristics (ROC) and relative operating levels (ROL) curves",
    QJRMS 128, 2002). The rank sums are whole or half numbers, exact in floating
    point, so the one division is the only rounding.

    Needs positive and negative rows; scores must be finite (scikit-learn
    raises on NaN and infinity too).
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    if n_positive == 0 or n_negative == 0:
        raise ValueError("ROC-AUC needs positive and negative rows")
    if not np.isfinite(scores).all():
        raise ValueError("ROC-AUC scores contain NaN or infinity")
    rank_sum = float(average_ranks(scores)[positive].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, tied values sharing the mean of their ranks (``scipy.stats.rankdata``)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the rank of each group of ties' last value
    return (last - (counts - 1) / 2)[inverse]


# The range of every metric poisonlab records that has one: shares and areas in [0, 1];
# defence_cost, a difference of two shares, in [-1, 1]. Intervals are cut to it.
METRIC_BOUNDS = {
    **dict.fromkeys(
        [
            "accuracy",
            "balanced_accuracy",
            "f1_macro",
            "roc_auc",
            "attack_success_rate",
            "subpopulation_accuracy",
            "precision",
            "recall",
            "recall_at_1pct_fpr",
            "recall_at_5pct_fpr",
            "f1",
            "average_precision",
            "flag_rate",
            "class_shift",
            "certified_accuracy",
        ],
        (0.0, 1.0),
    ),
    "defence_cost": (-1.0, 1.0),
}

# report.metric auto picks balanced accuracy when the smallest class holds under this
# fraction of an equal share (1/k of the rows for k classes): 20% of the rows for two.
IMBALANCE_RATIO = 0.4


def _percent(share: float) -> str:
    return f"{share:.1%}".replace(".0%", "%")


def headline_metric(setting: str, class_counts: list[int]) -> tuple[str, str]:
    """The report's headline metric for ``report.metric`` and the dataset's class counts,
    with the reason it was chosen, in words.

    ``auto`` picks balanced accuracy when the smallest class holds under 40% of
    an equal share of the rows (20% for two classes, where always predicting the
    majority class already scores over 80% accuracy; 2.7% for 15 classes), else
    accuracy. Relative to an equal share, so ten even classes (10% each) are not
    called imbalanced.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    total = counts.sum() if counts.size else 0.0
    share = float(counts.min() / total) if total else 1.0
    majority = float(counts.max() / total) if total else 0.0
    if setting != "auto":
        return setting, "set by report.metric"
    k = max(counts.size, 2)
    bound = _percent(IMBALANCE_RATIO / k)
    if k > 2:
        bound += f": {IMBALANCE_RATIO:.0%} of an equal share among {k} classes"
    if share < IMBALANCE_RATIO / k:
        why = (
            f"where predicting the majority class alone scores {majority:.1%} accuracy"
            if k == 2
            else f"so accuracy hardly counts it (the largest holds {majority:.1%})"
        )
        return "balanced_accuracy", (
            f"report.metric auto: the smallest class holds {share:.1%} of the rows "
            f"(under {bound}), {why}"
        )
    return "accuracy", (
        f"report.metric auto: the smallest class holds {share:.1%} of the rows "
        f"(at least {bound}), so accuracy is not dominated by one class"
    )


def majority_score(metric: str, class_counts: list[int] | None) -> float | None:
    """What a model that always predicts the largest class scores in ``metric`` on a
    stratified test split: the floor a model must beat to have learnt anything.

    ``accuracy``: the largest class's share m; ``balanced_accuracy``: 1 / classes
    (one class's recall is 1, the others' 0); ``f1_macro``: that class's F1,
    2m / (1 + m), over the classes; ``roc_auc``: 0.5 (constant scores rank
    nothing). None for other metrics or without class counts.
    """
    counts = np.asarray(class_counts or [], dtype=np.float64)
    counts = counts[counts > 0]
    if counts.size < 2:
        return None
    majority = float(counts.max() / counts.sum())
    floors = {
        "accuracy": majority,
        "balanced_accuracy": 1.0 / counts.size,
        "f1_macro": 2 * majority / (1 + majority) / counts.size,
        "roc_auc": 0.5,
    }
    return floors.get(metric)


def _f1(true_positives, actual, predicted) -> np.ndarray:
    """F1 = 2 TP / (actual + predicted positives), 0 where both are 0."""
    total = np.asarray(actual + predicted)
    return np.divide(2.0 * true_positives, total, out=np.zeros(total.shape), where=total > 0)


def detection_metrics(mask: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """How well flags and scores find the poisoned rows.

    ``flag_rate`` is always defined (at level 0 it is the false-positive rate);
    the others need poisoned rows, and ROC-AUC and average precision also need
    clean ones, so they are left out when undefined.
    """
    import sklearn
    from sklearn.metrics import average_precision_score

    metrics = {"flag_rate": float(flags.mean()) if len(flags) else 0.0}
    if not mask.any():
        return metrics
    hits, n_flagged, n_poisoned = int(np.sum(mask & flags)), int(flags.sum()), int(mask.sum())
    metrics.update(
        precision=hits / n_flagged if n_flagged else 0.0,
        recall=hits / n_poisoned,
        f1=float(_f1(hits, n_poisoned, n_flagged)),
    )
    if not mask.all():
        metrics["roc_auc"] = binary_roc_auc(mask, scores)
        with sklearn.config_context(skip_parameter_validation=True):
            metrics["average_precision"] = float(average_precision_score(mask, scores))
    return metrics
