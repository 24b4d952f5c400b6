"""``subpopulation``: relabel training rows inside one cluster of the feature space.

After Jagielski, Severi, Pousette Harger and Oprea, "Subpopulation Data
Poisoning Attacks", CCS 2021 (ClusterMatch with label flipping): the
subpopulation is found from the features alone (a k-means cluster of the
standardized training features), and the attack flips labels inside it only,
so the model fails on that part of the population while overall accuracy
hardly moves. Evaluation measures ``subpopulation_accuracy`` on the clean test
rows that fall in the same cluster (``in_subpopulation``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonlab.attacks.base import Poisoned, check_number, n_poisoned, row_mask
from poisonlab.config import _fail

SUBPOPULATION = "subpopulation"  # the key of the attack's info


def in_subpopulation(X: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Which rows of ``X`` fall in the attacked cluster (nearest centre, standardized)."""
    sub = info[SUBPOPULATION]
    Z = (np.asarray(X, dtype=np.float64) - np.array(sub["mean"])) / np.array(sub["scale"])
    centres = np.array(sub["centres"])
    distances = ((Z[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1) == sub["cluster"]


def subpopulation(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    clusters: int = 8,
    min_share: float = 0.1,
) -> Poisoned:
    """Relabel round(level x n) rows of one cluster as the cluster's second most common class.

    k-means (``clusters`` clusters, standardized features) splits the training
    rows; the subpopulation is the smallest cluster holding at least
    ``min_share`` of them (the largest if none does), chosen without the level,
    so every level attacks the same one. Rows are taken in random order among
    the cluster's rows not already of the target class; a level asking for
    more rows than that takes them all (``info["n_flipped"]`` says how many).
    """
    from sklearn.cluster import KMeans

    n = len(y)
    mean = X.mean(axis=0)
    scale = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    Z = (X - mean) / scale
    n_clusters = max(1, min(clusters, len(np.unique(Z, axis=0))))
    seed = int(rng.integers(0, 2**31 - 1))
    found = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(Z)
    sizes = np.bincount(found.labels_, minlength=n_clusters)
    large = np.flatnonzero(sizes >= min_share * n)
    cluster = int(large[np.argmin(sizes[large])]) if len(large) else int(np.argmax(sizes))
    members = found.labels_ == cluster
    counts = np.bincount(y[members], minlength=n_classes)
    ranked = np.argsort(-counts, kind="stable")
    target = int(ranked[1]) if n_classes > 1 else int(ranked[0])
    order = rng.permutation(n)
    candidates = order[members[order] & (y[order] != target)]
    rows = candidates[: n_poisoned(level, n)]
    y_poisoned = y.copy()
    y_poisoned[rows] = target
    info = {
        SUBPOPULATION: {
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "centres": found.cluster_centers_.tolist(),
            "cluster": cluster,
            "share": float(members.mean()),
        },
        "target_class": target,
        "n_flipped": int(len(rows)),
    }
    return Poisoned(X.copy(), y_poisoned, row_mask(n, rows), info)


def check_subpopulation(attack: str, params: dict[str, Any]) -> None:
    clusters = params["clusters"]
    if not isinstance(clusters, int) or isinstance(clusters, bool) or clusters < 1:
        raise _fail(f"poison.{attack}.clusters", f"= {clusters!r} is below 1", "give e.g. 8")
    check_number(f"poison.{attack}.min_share", params["min_share"], 0.0, 1.0)
