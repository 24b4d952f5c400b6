"""The whole experiment in one process: the numbers the pipeline must reproduce."""

from __future__ import annotations

import pytest

from poisonlab.config import load_config
from poisonlab.experiment import DETECTION_COLUMNS, SUMMARY_COLUMNS, defenses, run_experiment


@pytest.fixture(scope="module")
def iris_results():
    config = load_config(None, ["trials=3", "poison.levels=[0.0, 0.1, 0.5]"])
    summary, detection, records = run_experiment(config)
    return config, summary, detection, records


def _mean(frame, **where):
    for key, value in where.items():
        frame = frame[frame[key] == value]
    assert len(frame) == 1, where
    return float(frame["mean"].iloc[0])


def test_summary_has_a_row_per_level_attack_model_defense_and_metric(iris_results):
    config, summary, detection, _ = iris_results
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(detection.columns) == DETECTION_COLUMNS
    expected = (
        len(config["poison"]["levels"])
        * len(config["poison"]["attacks"])
        * len(config["train"]["models"])
        * len(defenses(config))
    )
    assert len(summary[summary["metric"] == "accuracy"]) == expected
    assert (summary["n"] == 3).all()
    assert (summary["ci_low"] <= summary["mean"]).all()
    assert (summary["mean"] <= summary["ci_high"]).all()


def test_label_flip_hurts_every_model(iris_results):
    config, summary, _, _ = iris_results
    accuracy = summary[(summary["metric"] == "accuracy") & (summary["attack"] == "label_flip")]
    for model in config["train"]["models"]:
        clean = _mean(accuracy, model=model, defense="none", poison_level=0.0)
        poisoned = _mean(accuracy, model=model, defense="none", poison_level=0.5)
        assert clean >= 0.9, model
        assert poisoned < clean, model


def test_range_check_finds_out_of_range_features(iris_results):
    _, _, detection, _ = iris_results
    recall = _mean(
        detection, attack="feature_noise", detector="zscore", metric="recall", poison_level=0.1
    )
    assert recall >= 0.9


def test_same_config_same_numbers(iris_results):
    config, summary, detection, _ = iris_results
    again, again_detection, _ = run_experiment(config)
    assert again.equals(summary) and again_detection.equals(detection)
