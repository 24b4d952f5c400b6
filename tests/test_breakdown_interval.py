"""Breakdown points and losses with 95% intervals over trials, honest with few trials."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from poisonlab.findings import (
    breakdown_intervals,
    breakdown_level,
    breakdown_points,
    findings,
    format_interval,
    paired_losses,
)


def _means(records: pd.DataFrame) -> pd.DataFrame:
    """Mean over trials per level, attack, model, defence and metric: summary.csv's ``mean``."""
    group = ["poison_level", "attack", "model", "defense", "metric"]
    return records.groupby(group, sort=False)["value"].mean().rename("mean").reset_index()


def _records(accuracy_by_trial: np.ndarray, levels: list[float]) -> pd.DataFrame:
    rows = [
        (level, trial, "label_flip", "m", "none", "", "accuracy", value)
        for trial, values in enumerate(accuracy_by_trial)
        for level, value in zip(levels, values, strict=True)
    ]
    columns = ["poison_level", "trial", "attack", "model", "defense", "detector", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def _intervals(accuracy_by_trial: np.ndarray, levels: list[float]) -> pd.Series:
    return breakdown_intervals(paired_losses(_records(accuracy_by_trial, levels)), 0.1).iloc[0]


def test_the_interval_holds_the_point_and_narrows_with_agreeing_trials():
    levels = [0.0, 0.1, 0.2, 0.3]
    rng = np.random.default_rng(0)
    noisy = np.array([1.0, 0.95, 0.8, 0.6]) + rng.normal(0, 0.05, size=(10, 4))
    found = _intervals(noisy, levels)
    point = breakdown_level(np.array(levels), noisy.mean(axis=0), 0.1)
    assert found["ci_low"] <= point <= found["ci_high"] and found["n"] == 10
    assert found["ci_high"] - found["ci_low"] > 0.01
    agreeing = np.array([1.0, 0.95, 0.8, 0.6]) + rng.normal(0, 0.005, size=(10, 4))
    tight = _intervals(agreeing, levels)
    point = breakdown_level(np.array(levels), agreeing.mean(axis=0), 0.1)
    assert tight["ci_low"] <= point <= tight["ci_high"]
    assert tight["ci_high"] - tight["ci_low"] < found["ci_high"] - found["ci_low"]


def test_trials_that_tied_where_it_breaks_down_give_no_interval():
    """Duncan (45 rows, 9 test rows): knn scored 8/9 clean and 4/9 at 10% injection in
    every trial. The tied loss has no measured spread; its zero-width t interval gave
    "at 2.2% poison, 95% interval 2.3% to 2.3%": a certainty three trials cannot show,
    around a point outside it."""
    levels = [0.0, 0.1, 0.2]
    tied = np.array([[8 / 9, 4 / 9, 6 / 9], [8 / 9, 4 / 9, 5 / 9], [8 / 9, 4 / 9, 8 / 9]])
    found = _intervals(tied, levels)
    assert found["tied"] and math.isnan(found["ci_low"]) and math.isnan(found["ci_high"])
    text = format_interval(found["ci_low"], found["ci_high"], found["n"], found["tied"])
    assert text == "none (the 3 trials lost the same there: no spread to measure)"
    sentence = [s for s in _sentences(tied, levels) if "breaks down first" in s][0]
    assert "with no interval (the 3 trials lost the same there)" in sentence
    assert "95% interval" not in sentence
    # A tie past the crossing does not matter: the interval is read before it.
    later = np.array([[1.0, 0.8, 0.6, 0.5], [1.0, 0.75, 0.55, 0.5], [1.0, 0.85, 0.65, 0.5]])
    found = _intervals(later, [0.0, 0.1, 0.2, 0.3])
    assert not found["tied"] and 0.0 < found["ci_low"] < found["ci_high"] < 0.2


def test_two_trials_give_an_interval_wider_than_the_two_trials_show():
    """The trials' own breakdown points are 12.0% and 13.3%; a bootstrap over them could
    say no more than that. The t interval (12.7 times the standard error) says how
    little two trials pin down."""
    levels = [0.0, 0.1, 0.2, 0.3]
    two = np.array([[1.0, 0.95, 0.8, 0.6], [1.0, 0.93, 0.78, 0.62]])
    own = [breakdown_level(np.array(levels), trial, 0.1) for trial in two]
    found = _intervals(two, levels)
    assert found["ci_low"] < min(own) - 0.05 and found["n"] == 2
    assert math.isnan(found["ci_high"]) or found["ci_high"] > max(own) + 0.05


def test_resamples_that_never_break_down_count_as_beyond_the_levels_run():
    levels = [0.0, 0.1, 0.2]
    flat = np.tile([0.9, 0.9, 0.88], (5, 1))
    found = _intervals(flat, levels)
    assert math.isnan(found["ci_low"])
    assert format_interval(found["ci_low"], found["ci_high"]) == "none within the levels run"
    assert format_interval(0.1, math.nan) == "10.0% to beyond the levels run"


def test_one_trial_has_no_interval_and_says_why():
    found = _intervals(np.array([[1.0, 0.8, 0.5]]), [0.0, 0.1, 0.2])
    assert found["n"] == 1 and math.isnan(found["ci_low"]) and math.isnan(found["ci_high"])
    assert "1 trial" in format_interval(found["ci_low"], found["ci_high"], found["n"])


def _sentences(accuracy_by_trial: np.ndarray, levels: list[float]) -> list[str]:
    records = _records(accuracy_by_trial, levels)
    summary = _means(records)
    points = breakdown_points(summary, 0.1)
    losses = paired_losses(records)
    detection = pd.DataFrame(columns=["poison_level", "attack", "detector", "metric", "mean"])
    return findings(
        summary, detection, points, 0.1, "accuracy", losses, breakdown_intervals(losses, 0.1)
    )


def test_a_loss_within_noise_of_zero_is_not_stated_as_a_finding():
    """Two trials: one lost 30 points, the other 1; the mean loss, 15.5, is noise."""
    noisy = _sentences(np.array([[0.9, 0.6], [0.9, 0.89]]), [0.0, 0.3])
    assert "not distinguishable from zero" in noisy[0]
    assert "over these 2 trials" in noisy[0]
    steady = _sentences(np.array([[0.9, 0.6], [0.9, 0.61], [0.9, 0.59]]), [0.0, 0.3])
    assert "not distinguishable" not in steady[0] and "95% interval" in steady[0]
    single = _sentences(np.array([[0.9, 0.6]]), [0.0, 0.3])
    assert "not a finding" in single[0]


def test_a_model_no_better_than_the_majority_class_is_named():
    """A rare class: balanced accuracy 0.5 is what always predicting the largest class scores."""
    records = _records(np.array([[0.52, 0.5], [0.49, 0.5], [0.55, 0.45]]), [0.0, 0.3])
    summary = (
        records.groupby(["poison_level", "attack", "model", "defense", "metric"], sort=False)[
            "value"
        ]
        .agg(["mean", "std"])
        .reset_index()
    )
    summary["ci_low"], summary["ci_high"] = summary["mean"] - 0.1, summary["mean"] + 0.1
    points = breakdown_points(summary, 0.1)
    detection = pd.DataFrame(columns=["poison_level", "attack", "detector", "metric", "mean"])
    near = findings(summary, detection, points, 0.1, floor=0.5)
    assert "not distinguishable from the 0.500 of always predicting" in near[0]
    assert not any(
        "always predicting" in s for s in findings(summary, detection, points, 0.1, floor=0.3)
    )


def test_a_headline_metric_no_trial_measured_is_said_in_a_sentence():
    """Every test split without the rare class: balanced accuracy has no record at all."""
    records = _records(np.array([[1.0, 1.0], [1.0, 0.9]]), [0.0, 0.3])
    summary = _means(records)
    points = breakdown_points(summary, 0.1, "balanced_accuracy")
    detection = pd.DataFrame(columns=["poison_level", "attack", "detector", "metric", "mean"])
    sentences = findings(summary, detection, points, 0.1, "balanced_accuracy")
    assert sentences[0].startswith("No trial measured balanced_accuracy")
    assert not any("No trial measured" in s for s in findings(summary, detection, points, 0.1))


def test_a_detector_ranking_within_noise_is_not_stated_as_a_finding():
    records = _records(np.array([[0.9, 0.6], [0.9, 0.61]]), [0.0, 0.3])
    summary = _means(records)
    points = breakdown_points(summary, 0.1)

    def detection(second: float) -> pd.DataFrame:
        rows = [(0.3, "label_flip", "knn", "f1", 0.7, 0.6, 0.8, 3)]
        rows.append((0.3, "label_flip", "zscore", "f1", second, second - 0.1, second + 0.1, 3))
        columns = ["poison_level", "attack", "detector", "metric", "mean", "ci_low", "ci_high", "n"]
        return pd.DataFrame(rows, columns=columns)

    close = findings(summary, detection(0.65), points, 0.1)[-1]
    assert "knn finds the poisoned rows best" in close
    assert "zscore (0.65) lies within its 95% interval (0.60 to 0.80)" in close
    apart = findings(summary, detection(0.4), points, 0.1)[-1]
    assert "knn finds the poisoned rows best" in apart and "not a finding" not in apart

    # lending_club at 5% label_flip: ensemble 0.650 [0.647, 0.654], knn 0.650; to 2
    # places the interval read "(0.65 to 0.65)".
    narrow = pd.DataFrame(
        [
            (0.3, "label_flip", "ensemble", "f1", 0.650257, 0.646794, 0.65372, 3),
            (0.3, "label_flip", "knn", "f1", 0.64954, 0.642567, 0.656513, 3),
        ],
        columns=["poison_level", "attack", "detector", "metric", "mean", "ci_low", "ci_high", "n"],
    )
    sentence = findings(summary, narrow, points, 0.1)[-1]
    assert "the F1 of knn (0.650) lies within its 95% interval (0.647 to 0.654)" in sentence


def _defended_summary(defense: str) -> pd.DataFrame:
    """Mean metrics of 3 trials at levels 0 and 0.3, with ``defense`` at 0.3 as undefended."""
    records = _records(np.array([[0.9, 0.6], [0.9, 0.61], [0.9, 0.59]]), [0.0, 0.3])
    defended = records[records["poison_level"] == 0.3].assign(defense=defense)
    return (
        pd.concat([records, defended])
        .groupby(["poison_level", "attack", "model", "defense", "metric"], sort=False)["value"]
        .mean()
        .rename("mean")
        .reset_index()
    )


def test_a_recovery_whose_interval_reaches_zero_is_said_to_maybe_win_nothing():
    summary = _defended_summary("knn")
    recovery = (0.3, "label_flip", "m", "knn", "recovery", 0.8)
    columns = ["poison_level", "attack", "model", "defense", "metric", "mean"]
    detection = pd.DataFrame(columns=["poison_level", "attack", "detector", "metric", "mean"])
    points = breakdown_points(summary, 0.1)

    def loss_sentence(low: float) -> str:
        row = pd.DataFrame([recovery], columns=columns).assign(ci_low=low, ci_high=1.3, n=3)
        return findings(pd.concat([summary, row]), detection, points, 0.1)[0]

    assert "wins back 80% of them, 95% CI -20% to 130%, which reaches zero" in loss_sentence(-0.2)
    assert "reaches zero" not in loss_sentence(0.4)


def test_a_recovery_whose_interval_lies_below_zero_is_said_to_lower_the_metric():
    """MASS fgl, trim at 10% label_flip_greedy: recovery -2.30 with Fieller's interval
    -1047% to -10% read "wins back 0% of them, ..., which reaches zero": the defence made
    the model worse, which the interval shows and the sentence hid."""
    summary = _defended_summary("trim")
    row = pd.DataFrame(
        [(0.3, "label_flip", "m", "trim", "recovery", -2.3, -10.47, -0.10, 3)],
        columns=["poison_level", "attack", "model", "defense", "metric", "mean"]
        + ["ci_low", "ci_high", "n"],
    )
    detection = pd.DataFrame(columns=["poison_level", "attack", "detector", "metric", "mean"])
    points = breakdown_points(summary, 0.1)
    sentence = findings(pd.concat([summary, row]), detection, points, 0.1)[0]
    assert (
        "the trim detector kept wins back none of them and lowers accuracy further "
        "(-230% of the loss, 95% CI -1047% to -10%)" in sentence
    )
    assert "reaches zero" not in sentence and "wins back 0%" not in sentence
