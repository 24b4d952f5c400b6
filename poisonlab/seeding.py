"""Every random choice derives from the config seed and the names of what it is for.

Deriving from names (not from a shared generator's state) keeps results the same
whichever order tasks run in, and lets a trial share its split across levels.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _key_entropy(key: str | int | float) -> int:
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def derive_rng(seed: int, *keys: str | int | float) -> np.random.Generator:
    """A generator determined by ``seed`` and ``keys``, e.g. ``(seed, "split", trial)``."""
    return np.random.default_rng([seed, *(_key_entropy(key) for key in keys)])


def derive_seed(seed: int, *keys: str | int | float) -> int:
    """An integer seed (for scikit-learn's ``random_state``) determined like ``derive_rng``."""
    return int(derive_rng(seed, *keys).integers(0, 2**31 - 1))
