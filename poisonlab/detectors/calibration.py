"""Gates calibrated on clean data: thresholds that flag a known share of clean rows.

A detector's own threshold (a kNN disagreement of 0.5, a robust z-score of 3.5)
flags very different shares of clean rows on different tables: 18-21% for kNN
on real credit tables, under 1% for the z-score. Compared at their own
thresholds, detectors are ranked by how much they flag, not by how well. Here
every detector with scores is run on the trial's *clean* training split (the
data the gate was tuned on, before any attack), and its threshold is the score
that flags at most a share ``fpr`` of those rows: the Neyman-Pearson operating
point of a test whose null hypothesis is "this row is clean". The same
threshold is then applied to the poisoned split; recall there is the share of
poisoned rows caught at that false-positive rate.

Recall at a fixed false-positive rate is how anomaly and poisoning detectors
are compared in the literature (e.g. Steinhardt, Koh and Liang, "Certified
Defenses for Data Poisoning Attacks", NeurIPS 2017, set their sphere and slab
radii on clean quantiles).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from poisonlab.detectors.base import Detection

# The false-positive rates every scored detection reports recall at (detection.csv).
REPORTED_FPRS = (0.01, 0.05)
RECALL_AT = {0.01: "recall_at_1pct_fpr", 0.05: "recall_at_5pct_fpr"}


def clean_threshold(clean_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold t with ``mean(clean_scores > t) <= fpr``.

    Tied scores at the threshold are not flagged, so the share flagged on the
    clean rows is at most ``fpr`` (less where many rows tie, as kNN's shares of
    k neighbours do). With no clean rows the threshold is +inf: nothing flagged.
    """
    scores = np.sort(np.asarray(clean_scores, dtype=np.float64))[::-1]
    if len(scores) == 0:
        return float("inf")
    allowed = int(np.floor(fpr * len(scores) + 1e-9))
    return float(scores[min(allowed, len(scores) - 1)])


def thresholds(clean_scores: np.ndarray, fprs: tuple[float, ...]) -> dict[float, float]:
    """``clean_threshold`` at each of ``fprs``."""
    return {float(f): clean_threshold(clean_scores, f) for f in fprs}


def calibrated(detection: Detection, clean: Detection | None, fpr: float | None) -> Detection:
    """``detection`` with the thresholds of its ``clean`` counterpart, flagged at ``fpr``.

    A flag-only detection (``scored`` False), or one without a clean counterpart,
    keeps its own flags. With ``fpr`` None the detector's own flags are kept and
    only the reported thresholds are attached.
    """
    if clean is None or not detection.scored:
        return detection
    fprs = tuple(sorted({*REPORTED_FPRS, *([fpr] if fpr is not None else [])}))
    found = thresholds(clean.scores, fprs)
    flags = detection.scores > found[float(fpr)] if fpr is not None else detection.flags
    return replace(detection, flags=np.asarray(flags, dtype=bool), thresholds=found)


def recall_at_fpr(mask: np.ndarray, detection: Detection) -> dict[str, float]:
    """``recall_at_1pct_fpr`` and ``recall_at_5pct_fpr``: the share of poisoned rows
    scored above the clean threshold of each rate (none without poisoned rows, or
    without thresholds)."""
    if not mask.any() or not detection.thresholds:
        return {}
    return {
        name: float(np.mean(detection.scores[mask] > detection.thresholds[fpr]))
        for fpr, name in RECALL_AT.items()
        if fpr in detection.thresholds
    }
