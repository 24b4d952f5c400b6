"""Certified robustness to poisoning: partition aggregation and certificates from votes.

``PartitionAggregation`` (DPA and Finite Aggregation) wraps any model of
``poisonlab.models``; ``certificates`` turns votes into radii in rows added or
removed, modified, or relabelled; ``evaluation`` measures certified accuracy
per level and writes certified.csv.
"""

from poisonlab.certify.aggregate import AGGREGATES, PartitionAggregation, aggregate_model
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
    "AGGREGATES",
    "UNITS",
    "PartitionAggregation",
    "aggregate_model",
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
