"""Certified robustness to poisoning: partition aggregation and certificates from votes.

``aggregate.PartitionAggregation`` (DPA and Finite Aggregation) wraps any model
of ``poisonlab.models``; ``certificates`` turns votes into radii in rows added
or removed, modified, or relabelled; ``evaluation`` measures certified accuracy
per level and writes certified.csv. ``aggregate`` imports scikit-learn, so it
is not imported here: the report task starts without it.
"""

from poisonlab.certify.certificates import (
    UNITS,
    certified_accuracy,
    dpa_radius,
    finite_aggregation_radius,
    knn_radius,
    rows_radius,
    vote_counts,
    vote_gap,
    vote_winner,
)
from poisonlab.certify.partition import buckets, content_order, row_hash

__all__ = [
    "UNITS",
    "buckets",
    "certified_accuracy",
    "content_order",
    "dpa_radius",
    "finite_aggregation_radius",
    "knn_radius",
    "row_hash",
    "rows_radius",
    "vote_counts",
    "vote_gap",
    "vote_winner",
]
