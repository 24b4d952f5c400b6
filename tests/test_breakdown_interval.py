"""Breakdown points with a 95% bootstrap interval over trials."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from poisonlab.findings import breakdown_intervals, breakdown_level, format_interval


def _records(accuracy_by_trial: np.ndarray, levels: list[float]) -> pd.DataFrame:
    rows = [
        (level, trial, "label_flip", "m", "none", "", "accuracy", value)
        for trial, values in enumerate(accuracy_by_trial)
        for level, value in zip(levels, values, strict=True)
    ]
    columns = ["poison_level", "trial", "attack", "model", "defense", "detector", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def test_the_interval_holds_the_point_and_narrows_with_agreeing_trials():
    levels = [0.0, 0.1, 0.2, 0.3]
    rng = np.random.default_rng(0)
    noisy = np.array([1.0, 0.95, 0.8, 0.6]) + rng.normal(0, 0.05, size=(10, 4))
    found = breakdown_intervals(_records(noisy, levels), 0.1, seed=1).iloc[0]
    point = breakdown_level(np.array(levels), noisy.mean(axis=0), 0.1)
    assert found["ci_low"] <= point <= found["ci_high"]
    assert found["ci_high"] - found["ci_low"] > 0.01
    same = np.tile([1.0, 0.95, 0.8, 0.6], (10, 1))
    tight = breakdown_intervals(_records(same, levels), 0.1, seed=1).iloc[0]
    assert tight["ci_low"] == tight["ci_high"] == breakdown_level(np.array(levels), same[0], 0.1)
    again = breakdown_intervals(_records(noisy, levels), 0.1, seed=1)
    assert again.equals(breakdown_intervals(_records(noisy, levels), 0.1, seed=1))


def test_resamples_that_never_break_down_count_as_beyond_the_levels_run():
    levels = [0.0, 0.1, 0.2]
    flat = np.tile([0.9, 0.9, 0.88], (5, 1))
    found = breakdown_intervals(_records(flat, levels), 0.1, seed=1).iloc[0]
    assert math.isnan(found["ci_low"]) and found["never_share"] == 1.0
    assert format_interval(found["ci_low"], found["ci_high"]) == "none within the levels run"
    assert format_interval(0.1, math.nan) == "10.0% to beyond the levels run"
