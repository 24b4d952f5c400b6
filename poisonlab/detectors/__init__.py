"""Data-validation detectors: a suspicion score and a flag for every training row.

A detector sees only what a data-validation gate would see: the (possibly
poisoned) training features and labels. Never the test split, never the mask.
Higher scores mean more suspicious; ``flags`` is the detector's own decision.

Every detector is sub-quadratic in the number of rows: neighbours come from a
search over at most ``max_reference`` rows, model-based scores from k-fold
out-of-sample predictions. The class-proportion check is dataset-level, not
per row, so it lives in ``poisonlab.gate``.
"""

from poisonlab.detectors.base import Detection, Detector
from poisonlab.detectors.label_quality import (
    confident_learning,
    ensemble,
    out_of_sample_probabilities,
)
from poisonlab.detectors.neighbours import knn_disagreement, neighbour_indices, reference_rows
from poisonlab.detectors.outliers import (
    iqr_distance,
    iqr_range,
    isolation_forest,
    robust_zscore,
    zscore_range,
)
from poisonlab.detectors.registry import (
    DETECTORS,
    check_detector_params,
    detector_kind,
    run_detector,
)
from poisonlab.detectors.user import TableNames, check_gate

__all__ = [
    "DETECTORS",
    "Detection",
    "Detector",
    "TableNames",
    "check_detector_params",
    "check_gate",
    "confident_learning",
    "detector_kind",
    "ensemble",
    "iqr_distance",
    "iqr_range",
    "isolation_forest",
    "knn_disagreement",
    "neighbour_indices",
    "out_of_sample_probabilities",
    "reference_rows",
    "robust_zscore",
    "run_detector",
    "zscore_range",
]
