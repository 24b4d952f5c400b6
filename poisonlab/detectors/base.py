"""What every detector returns, and its registry entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Detection:
    """Per-row suspicion ``scores`` (higher is worse) and boolean ``flags``.

    ``scored`` is False for a gate that gives flags only (a user function returning
    flags, a pandera schema): its scores are its flags, not a ranking, and it is not
    calibrated. ``thresholds`` maps a false-positive rate to the score threshold that
    flags that share of the trial's clean training split (``detectors.calibration``);
    empty where no clean split was scored.
    """

    scores: np.ndarray
    flags: np.ndarray
    scored: bool = True
    thresholds: dict[float, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Detector:
    """A detector function and the defaults of its parameters (its config section)."""

    detect: Callable[..., Detection]
    defaults: dict[str, Any]


def nothing_flagged(n: int) -> Detection:
    """No row flagged, every score 0: where a detector has too little data to judge."""
    return Detection(np.zeros(n), np.zeros(n, dtype=bool))
