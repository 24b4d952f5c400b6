"""Which partition (bucket) each training row belongs to, decided by its feature values alone.

Certificates of partition aggregation are exact only if a poisoned row touches
no partition but its own: a row's bucket is a hash of its feature values (so
relabelling a row leaves it where it was, and moving it touches two buckets),
and each bucket's rows are sorted by content before fitting (so row order
never matters).
"""

from __future__ import annotations

import numpy as np

# splitmix64's constants (Steele, Lea and Flood, OOPSLA 2014): a fast 64-bit mix
# whose every output bit depends on every input bit.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(30))) * _MIX_1
    h = (h ^ (h >> np.uint64(27))) * _MIX_2
    return h ^ (h >> np.uint64(31))


def row_hash(X: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's feature values (uint64, one per row).

    Vectorised over rows (one pass per column). -0.0 hashes as 0.0, so equal
    values give equal hashes.
    """
    values = np.ascontiguousarray(X, dtype=np.float64) + 0.0  # -0.0 + 0.0 is 0.0
    bits = values.view(np.uint64)
    h = np.full(len(values), _GOLDEN, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(bits.shape[1]):
            h = _mix(h + bits[:, column] + _GOLDEN)
    return h


def buckets(X: np.ndarray, n_buckets: int) -> np.ndarray:
    """The bucket (0 to n_buckets - 1) of each row: its feature hash modulo n_buckets."""
    return (row_hash(X) % np.uint64(n_buckets)).astype(np.int64)


def content_order(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Row indices sorted by group, then by feature values, then by label.

    Sorting by content makes each group's rows the same whatever order they
    came in; equal rows are interchangeable, so ties do not matter.
    """
    keys = [y, *np.asarray(X).T[::-1], groups]  # np.lexsort sorts by the last key first
    return np.lexsort(keys)


def spread(n_buckets: int, d: int) -> np.ndarray:
    """For Finite Aggregation: the d buckets each of the n_buckets base models trains on.

    Model i trains on buckets i, i+1, ..., i+d-1 (mod n_buckets), so every bucket
    feeds exactly d models. A cyclic window, where Wang, Levine and Feizi (ICML
    2022) spread buckets by a hash; their certificate holds for any spreading
    in which each bucket feeds d models. With d = 1 this is DPA.
    """
    return (np.arange(n_buckets)[:, None] + np.arange(d)[None, :]) % n_buckets
