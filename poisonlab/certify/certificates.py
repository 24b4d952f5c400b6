"""Certificates from votes: how many training rows may be poisoned without changing a prediction.

Every certificate here reads the votes of a prediction and nothing else. It is
a radius per test row, in one of three units of poisoning:

- ``added_or_removed``: training rows inserted or deleted;
- ``label_flips``: training rows relabelled (features unchanged);
- ``modified``: training rows changed in any way (features and label).

A radius r means: no attacker with r rows of that kind changes this prediction,
whatever rows they pick and however they change them.
"""

from __future__ import annotations

import numpy as np

UNITS = ("added_or_removed", "modified", "label_flips")


def vote_winner(votes: np.ndarray) -> np.ndarray:
    """The predicted class of each row from its vote counts: ties go to the smaller class index."""
    return np.argmax(votes, axis=1)  # np.argmax returns the first maximum


def vote_gap(votes: np.ndarray) -> np.ndarray:
    """The winner's margin over the strongest runner-up, ties counted against the winner.

    gap = n_c - max over c' != c of (n_c' + [c' < c]): the winner keeps the
    prediction while its margin stays >= 0, since a tie with a smaller class
    index goes to that class.
    """
    winner = vote_winner(votes)
    rows = np.arange(len(votes))
    classes = np.arange(votes.shape[1])
    handicap = votes + (classes[None, :] < winner[:, None])
    handicap[rows, winner] = 0  # a class with no votes is a runner-up at 0 all the same
    return votes[rows, winner] - handicap.max(axis=1)


def dpa_radius(votes: np.ndarray) -> np.ndarray:
    """Deep Partition Aggregation's certificate in poisoned buckets: floor(gap / 2).

    Levine and Feizi, "Deep Partition Aggregation: Provable Defenses against
    General Poisoning Attacks", ICLR 2021, Theorem 1: a poisoned bucket changes
    one base model's vote, which moves the margin by at most 2.
    """
    return np.maximum(vote_gap(votes), 0) // 2


def finite_aggregation_radius(
    predictions: np.ndarray, n_classes: int, windows: np.ndarray
) -> np.ndarray:
    """Finite Aggregation's certificate in poisoned buckets.

    Wang, Levine and Feizi, "Improved Certified Defenses against Data Poisoning
    with (Deterministic) Finite Aggregation", ICML 2022, Theorem 2.
    ``predictions`` (rows x models) holds each base model's class, -1 where it
    abstains; ``windows[i]`` lists the buckets model i trained on. Poisoning
    bucket j can change every model trained on it; against a runner-up c' that
    costs the margin 2 for each such model voting for the winner c, 1 for each
    voting for neither (or abstaining) and 0 for each voting c'. The radius
    against c' is the largest r whose r costliest buckets together cost no
    more than the gap to c' (overlaps counted twice, so the bound is safe);
    the certificate is the smallest over runner-ups.
    """
    n_rows, n_models = predictions.shape
    votes = vote_counts(predictions, n_classes)
    winner = vote_winner(votes)
    rows = np.arange(n_rows)
    radius = np.full(n_rows, n_models, dtype=np.int64)
    # models_of[j]: the models trained on bucket j.
    models_of = [[] for _ in range(n_models)]
    for model, window in enumerate(windows):
        for bucket in window:
            models_of[bucket].append(model)
    models_of = np.array(models_of)
    for other in range(n_classes):
        cost = np.where(predictions == winner[:, None], 2, np.where(predictions == other, 0, 1))
        bucket_cost = cost[:, models_of].sum(axis=2)
        spent = np.cumsum(-np.sort(-bucket_cost, axis=1), axis=1)
        gap = votes[rows, winner] - votes[:, other] - (other < winner)
        against = (spent <= gap[:, None]).sum(axis=1)
        radius = np.where(winner == other, radius, np.minimum(radius, against))
    return np.where(vote_gap(votes) < 0, 0, radius)


def rows_radius(bucket_radius: np.ndarray, unit: str) -> np.ndarray:
    """Radius in rows from a radius in poisoned buckets.

    Buckets come from a hash of the features, so an added, removed or
    relabelled row poisons one bucket, and a modified row at most two (the one
    it leaves and the one it lands in).
    """
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r} is not one of {UNITS}")
    return bucket_radius // 2 if unit == "modified" else bucket_radius


def knn_radius(votes: np.ndarray) -> np.ndarray:
    """The k-nearest-neighbour certificate from the neighbours' votes: floor(gap / 2) rows.

    Jia, Cao and Gong, "Certified Robustness of Nearest Neighbors against Data
    Poisoning and Backdoor Attacks", AAAI 2022, Theorem 1: an added, removed,
    relabelled or modified training row changes at most one of the k
    neighbours' votes into another, moving the margin by at most 2. (With
    features standardized on the training rows, added and modified rows also
    move the scaling: only ``label_flips`` stays exact then.)
    """
    return np.maximum(vote_gap(votes), 0) // 2


def vote_counts(predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Votes per class (rows x n_classes) from base models' classes (-1: abstained)."""
    n_rows = len(predictions)
    votes = np.zeros((n_rows, n_classes), dtype=np.int64)
    for column in predictions.T:
        voted = column >= 0
        votes[np.flatnonzero(voted), column[voted]] += 1
    return votes


def certified_accuracy(correct: np.ndarray, radius: np.ndarray, max_radius: int) -> np.ndarray:
    """Share of rows predicted correctly with a radius of at least r, for r = 0 .. max_radius.

    At r = 0 it is the accuracy; it never rises with r.
    """
    certified = np.minimum(np.where(correct, radius, -1), max_radius)
    counts = np.bincount(certified[certified >= 0], minlength=max_radius + 1)
    at_least = np.cumsum(counts[::-1])[::-1]
    return at_least / max(len(correct), 1)
