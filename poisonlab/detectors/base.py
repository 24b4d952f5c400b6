"""What every detector returns, and its registry entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Detection:
    """Per-row suspicion ``scores`` (higher is worse) and boolean ``flags``."""

    scores: np.ndarray
    flags: np.ndarray


@dataclass(frozen=True)
class Detector:
    """A detector function and the defaults of its parameters (its config section)."""

    detect: Callable[..., Detection]
    defaults: dict[str, Any]


def nothing_flagged(n: int) -> Detection:
    """No row flagged, every score 0: where a detector has too little data to judge."""
    return Detection(np.zeros(n), np.zeros(n, dtype=bool))
