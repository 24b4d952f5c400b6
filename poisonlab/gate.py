"""The validation gate: a pass or fail verdict per poison level, computed as data.

A data-validation gate stops a training run when its data look wrong. Here it
checks two things against configurable thresholds (config ``validate.gate``):

- ``flag_rate``: the share of training rows the gate's detector flags;
- ``class_shift``: how far the training labels' class proportions moved from
  the clean reference (the loaded dataset), as total variation distance
  (half the summed absolute differences: 0 identical, 1 disjoint). This is the
  ``class_balance`` check: it is dataset-level, so it has a verdict, not per-row flags.

The verdict is data (a table and component metrics), not a branch in the
pipeline: a ``dsl.If`` inside the ParallelFor would break the fan-in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

GATE_COLUMNS = [
    "poison_level",
    "attack",
    "detector",
    "flag_rate",
    "max_flag_rate",
    "class_shift",
    "max_class_shift",
    "pass_share",
    "verdict",
    "reason",
]
CLASS_BALANCE = "class_balance"
CLASS_SHIFT = "class_shift"


def class_shift(y: np.ndarray, reference_counts: np.ndarray) -> float:
    """Total variation distance between the class proportions of ``y`` and the reference's.

    ``reference_counts[c]`` is the number of rows of class c in the clean reference.
    """
    reference = np.asarray(reference_counts, dtype=np.float64)
    counts = np.bincount(y, minlength=len(reference)).astype(np.float64)
    if not counts.sum() or not reference.sum():
        return 0.0 if counts.sum() == reference.sum() else 1.0
    return float(0.5 * np.abs(counts / counts.sum() - reference / reference.sum()).sum())


def gate_detector(config: dict[str, Any]) -> str | None:
    """The detector whose flag rate the gate checks: the configured one, else the first."""
    detectors = config["validate"]["detectors"]
    return config["validate"]["gate"]["detector"] or (detectors[0] if detectors else None)


def detection_flag_rate(detection: Any) -> float:
    """The share of rows a detection flagged; NaN for none (no gate detector) or a failed
    one (``experiment.FailedDetection``, which has no flags)."""
    flags = getattr(detection, "flags", None)
    return float(flags.mean()) if flags is not None else np.nan


def verdicts(checks: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """One verdict per level and attack from per-trial checks.

    ``checks`` has columns ``poison_level, attack, trial, flag_rate, class_shift``
    (``flag_rate`` NaN where no detector runs, or where the gate's detector failed).
    A level passes when the mean flag rate and the mean class shift over trials are
    both within their thresholds; ``pass_share`` is the share of trials that pass on
    their own. A flag rate missing because the gate's detector failed is not a pass:
    that trial fails, the level fails, and ``reason`` says the gate could not be
    evaluated there (it is empty otherwise).
    """
    params = config["validate"]["gate"]
    max_flag, max_shift = params["max_flag_rate"], params["max_class_shift"]
    detector = gate_detector(config)
    flag_ok = checks["flag_rate"] <= max_flag  # NaN (failed) is not within the limit
    if detector is None:
        flag_ok = pd.Series(True, index=checks.index)
    checks = checks.assign(passed=flag_ok & (checks["class_shift"] <= max_shift))
    rows = []
    for (level, attack), group in checks.groupby(["poison_level", "attack"], sort=False):
        flag_rate = float(group["flag_rate"].mean()) if group["flag_rate"].notna().any() else None
        shift = float(group["class_shift"].mean())
        passed = (flag_rate is None or flag_rate <= max_flag) and shift <= max_shift
        missing = int(group["flag_rate"].isna().sum()) if detector else 0
        reason = (
            f"not evaluated: detector {detector} failed in {missing} of {len(group)} trials, "
            "so its flag rate is unknown"
            if missing
            else ""
        )
        rows.append(
            (
                level,
                attack,
                detector or "",
                flag_rate,
                max_flag,
                shift,
                max_shift,
                float(group["passed"].mean()),
                "pass" if passed and not missing else "fail",
                reason,
            )
        )
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def gate_table(records: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """The gate's verdict per level and attack (gate.csv), from per-trial records."""
    keys = ["poison_level", "attack", "trial"]
    shift = records[(records["detector"] == CLASS_BALANCE) & (records["metric"] == CLASS_SHIFT)]
    checks = shift[keys].assign(class_shift=shift["value"].to_numpy())
    detector = gate_detector(config)
    flagged = records[(records["detector"] == detector) & (records["metric"] == "flag_rate")]
    flagged = flagged[keys].assign(flag_rate=flagged["value"].to_numpy())
    checks = checks.merge(flagged, on=keys, how="left")
    return verdicts(checks.sort_values("poison_level", kind="stable"), config)
