"""Scores: classifiers on the clean test set, detectors against the true poisoned mask."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Accuracy and macro F1 over all classes of the dataset."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(
            f1_score(y_true, y_pred, labels=np.arange(n_classes), average="macro", zero_division=0)
        ),
    }


def detection_metrics(mask: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """How well flags and scores find the poisoned rows.

    ``flag_rate`` is always defined (at level 0 it is the false-positive rate);
    the others need poisoned rows, and ROC-AUC and average precision also need
    clean ones, so they are left out when undefined.
    """
    metrics = {"flag_rate": float(flags.mean()) if len(flags) else 0.0}
    if not mask.any():
        return metrics
    metrics["precision"] = float(precision_score(mask, flags, zero_division=0))
    metrics["recall"] = float(recall_score(mask, flags, zero_division=0))
    metrics["f1"] = float(f1_score(mask, flags, zero_division=0))
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
