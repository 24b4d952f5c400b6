"""Scores: classifiers on the clean test set, detectors against the true poisoned mask.

A level scores hundreds of small prediction vectors; scikit-learn's argument
checks cost more than the arithmetic there, so the inputs (our own arrays) are
scored with its parameter validation off, and precision, recall and F1 come
from one call. scikit-learn is imported by the scoring functions alone, so the
report, which needs only ``recovery``, starts without it.
"""

from __future__ import annotations

import numpy as np


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Accuracy and macro F1 over all classes of the dataset."""
    import sklearn
    from sklearn.metrics import f1_score

    with sklearn.config_context(skip_parameter_validation=True):
        f1_macro = f1_score(
            y_true, y_pred, labels=np.arange(n_classes), average="macro", zero_division=0
        )
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "f1_macro": float(f1_macro),
    }


def detection_metrics(mask: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """How well flags and scores find the poisoned rows.

    ``flag_rate`` is always defined (at level 0 it is the false-positive rate);
    the others need poisoned rows, and ROC-AUC and average precision also need
    clean ones, so they are left out when undefined.
    """
    import sklearn
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    metrics = {"flag_rate": float(flags.mean()) if len(flags) else 0.0}
    if not mask.any():
        return metrics
    with sklearn.config_context(skip_parameter_validation=True):
        precision, recall, f1, _ = precision_recall_fscore_support(
            mask, flags, average="binary", zero_division=0
        )
        metrics.update(precision=float(precision), recall=float(recall), f1=float(f1))
        if not mask.all():
            metrics["roc_auc"] = float(roc_auc_score(mask, scores))
            metrics["average_precision"] = float(average_precision_score(mask, scores))
    return metrics


def recovery(clean: np.ndarray, poisoned: np.ndarray, defended: np.ndarray) -> np.ndarray:
    """Share of the accuracy lost to poisoning that a defence wins back.

    (defended - poisoned) / (clean - poisoned), element-wise over paired trials:
    1 is full recovery, 0 none, negative a defence that made things worse. NaN
    where poisoning cost nothing (clean <= poisoned), since there is nothing to recover.
    """
    clean, poisoned, defended = (
        np.asarray(a, dtype=np.float64) for a in (clean, poisoned, defended)
    )
    lost = clean - poisoned
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lost > 0, (defended - poisoned) / lost, np.nan)
