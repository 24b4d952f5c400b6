"""The whole experiment in one process: the numbers the pipeline must reproduce."""

from __future__ import annotations

import numpy as np
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
    # recovery leaves out trials where poisoning cost nothing, so its n may be lower.
    recovery = summary["metric"] == "recovery"
    # Calibrated on clean rows (validate.fpr), knn flags most of a 50%-flipped split: a
    # defence that keeps too little leaves that trial unfitted, so its n may be lower too.
    keys = ["poison_level", "attack", "model", "defense"]
    unfitted = summary.loc[summary["metric"] == "unfitted", keys]
    short = summary[keys].merge(unfitted, how="left", indicator=True)["_merge"] == "both"
    short = short.to_numpy() | recovery.to_numpy()
    assert (summary.loc[~short, "n"] == 3).all() and (summary.loc[short, "n"] <= 3).all()
    bounded = summary.dropna(subset=["ci_low"])
    assert (bounded["ci_low"] <= bounded["mean"]).all()
    assert (bounded["mean"] <= bounded["ci_high"]).all()


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


@pytest.fixture(scope="module")
def clean_level():
    """Level 0 of two trials, trained: both attacks' sets are the clean split."""
    from poisonlab.data import load_configured, split_masks
    from poisonlab.detectors import TableNames
    from poisonlab.experiment import detect_level, poison_level, train_level

    overrides = ["trials=2", "poison.levels=[0.0]", "train.random_forest.n_estimators=5"]
    config = load_config(None, overrides)
    dataset, _ = load_configured(config["dataset"])
    masks = split_masks(dataset.y, config["dataset"]["test_size"], config["seed"], 2)
    sets = list(poison_level(dataset, masks, config, 0.0))
    names = TableNames(dataset.feature_names, dataset.class_names, dataset.label_name)
    detections = detect_level(sets, config, dataset.n_classes, names)
    models = train_level(sets, detections, config)
    return config, dataset, masks, sets, detections, models


def test_the_same_fit_is_made_once_and_shared(clean_level):
    config, _, _, _, detections, models = clean_level
    first, second = config["poison"]["attacks"]
    for trial in range(2):
        for model in config["train"]["models"]:
            for defense in defenses(config):
                assert (
                    models[(trial, first, model, defense)]
                    is models[(trial, second, model, defense)]
                )
            for detector in config["validate"]["detectors"]:
                kept_all = not detections[(trial, first, detector)].flags.any()
                shared = (
                    models[(trial, first, model, detector)] is models[(trial, first, model, "none")]
                )
                assert shared == kept_all, (trial, model, detector)
    assert len({id(m) for m in models.values()}) <= len(models) / 2


def test_shared_fits_give_the_numbers_of_separate_fits(clean_level, tmp_path):
    """Each key refitted on its own rows predicts what the shared fit predicts, and
    scoring the shared objects gives the records of scoring separate copies."""
    import pickle

    from poisonlab.experiment import evaluate_level, read_models, write_models
    from poisonlab.models import fit_model
    from poisonlab.seeding import derive_seed

    config, dataset, masks, sets, detections, models = clean_level
    for s in sets:
        for model in config["train"]["models"]:
            for defense in defenses(config):
                flags = detections.get((s.trial, s.attack, defense))
                keep = slice(None) if flags is None else ~flags.flags
                alone = fit_model(
                    model,
                    config["train"][model],
                    s.data.X[keep],
                    s.data.y[keep],
                    derive_seed(config["seed"], "model", s.trial, model),
                )
                shared = models[(s.trial, s.attack, model, defense)]
                assert np.array_equal(
                    alone.predict_proba(dataset.X), shared.predict_proba(dataset.X)
                )
    separate = {key: pickle.loads(pickle.dumps(m)) for key, m in models.items()}
    records = evaluate_level(models, dataset, masks, sets, detections, 0.0)
    assert records.equals(evaluate_level(separate, dataset, masks, sets, detections, 0.0))
    write_models(models, tmp_path / "models.pkl")
    loaded = read_models(tmp_path / "models.pkl")
    first, second = config["poison"]["attacks"]
    assert (
        loaded[(0, first, "decision_tree", "none")] is loaded[(0, second, "decision_tree", "none")]
    )
