"""The registry of detectors by config name, their parameter checks, and how they run.

A name in ``validate.detectors`` is a built-in (``DETECTORS``) or names a section
whose key says what it is (``detector_kind``): the user's gate function or pandera
schema (``poisonlab.detectors.user``). ``run_detector`` runs either kind.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonlab.detectors.base import Detection, Detector
from poisonlab.detectors.label_quality import confident_learning, ensemble
from poisonlab.detectors.neighbours import knn_disagreement
from poisonlab.detectors.outliers import TUKEY_FAR, iqr_range, isolation_forest, zscore_range
from poisonlab.detectors.trimmed import trimmed_loss
from poisonlab.detectors.user import SECTION_KINDS, TableNames, run_gate
from poisonlab.models import one_blas_thread

DETECTORS: dict[str, Detector] = {
    "knn": Detector(knn_disagreement, {"k": 10, "threshold": 0.5, "max_reference": 20000}),
    "zscore": Detector(zscore_range, {"threshold": 3.5}),
    "iqr": Detector(iqr_range, {"threshold": TUKEY_FAR}),
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
            "correct_noise": False,
            "normalise": True,
            "by_class": False,
        },
    ),
    "trim": Detector(trimmed_loss, {"trim": 0.2, "max_rounds": 10, "C": 1.0}),
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
    "max_rounds": (1, "use 1 or more rounds, e.g. 10"),
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
    trim = params.get("trim", 0.2)
    if not 0 < trim < 0.5:
        return f"trim = {trim} is outside (0, 0.5); use e.g. 0.2"
    if params.get("C", 1.0) <= 0:
        return f"C = {params['C']} is not positive; use e.g. 1.0"
    contamination = params.get("contamination", 0.1)
    if not 0 < contamination <= 0.5:
        return f"contamination = {contamination} is outside (0, 0.5]; use e.g. 0.05"
    return None


BUILTIN = "builtin"


def detector_kind(name: str, section: Any) -> str | None:
    """``builtin``, the user gate's kind by its section's key (``detector`` or
    ``schema``), or None."""
    if name in DETECTORS:
        return BUILTIN
    if isinstance(section, dict):
        return next((key for key in SECTION_KINDS if key in section), None)
    return None


def run_detector(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    params: dict[str, Any],
    names: TableNames | None = None,
) -> Detection:
    """Run the detector called ``name`` with its config parameters (its section).

    A user gate sees the table under the dataset's ``names``. BLAS runs
    single-threaded: the many small fits of k-fold detectors spend more time
    waking threads than computing (10x the CPU time on 2 busy cores).
    """
    with one_blas_thread():
        if name in DETECTORS:
            return DETECTORS[name].detect(X, y, seed=seed, n_classes=n_classes, **params)
        if names is None:
            raise ValueError(f"the user gate {name} needs the dataset's column and class names")
        return run_gate(name, params, X, y, names)
