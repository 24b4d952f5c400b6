"""The pipeline's steps as functions of files: what each KFP component calls.

Each step reads its inputs from paths, calls the array-level functions in
``poisonlab.experiment``, and writes its outputs to paths, so components stay
a few lines long and every step can be tested without KFP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poisonlab import experiment
from poisonlab.config import config_from_json
from poisonlab.data import (
    array_hash,
    load_dataset,
    read_dataset,
    read_metadata,
    read_splits,
    split_masks,
    write_dataset,
    write_splits,
)


def load(config_json: str, data_path: str, splits_path: str) -> dict[str, Any]:
    """Read and check the dataset, split it once per trial; return its provenance."""
    config = config_from_json(config_json)
    dataset, input_hash = load_dataset(
        config["dataset"]["source"], config["dataset"]["label_column"]
    )
    masks = split_masks(dataset.y, config["dataset"]["test_size"], config["seed"], config["trials"])
    provenance = {
        "source": config["dataset"]["source"],
        "input_sha256": input_hash,
        "data_sha256": array_hash(dataset.X, dataset.y),
        "n_rows": int(len(dataset.y)),
        "n_features": len(dataset.feature_names),
        "class_names": dataset.class_names,
        "split_sha256": {
            str(t): {
                "train": array_hash(dataset.X[~m], dataset.y[~m]),
                "test": array_hash(dataset.X[m], dataset.y[m]),
            }
            for t, m in enumerate(masks)
        },
    }
    write_dataset(dataset, data_path, extra={"provenance": provenance})
    write_splits(masks, splits_path)
    return provenance


def poison(
    config_json: str, level: float, data_path: str, splits_path: str, poisoned_path: str
) -> dict[str, str]:
    """Poison every trial's training split at ``level``; return each variant's SHA-256."""
    config = config_from_json(config_json)
    dataset = read_dataset(data_path)
    sets = experiment.poison_level(dataset, read_splits(splits_path), config, level)
    experiment.write_poisoned(sets, dataset, poisoned_path)
    return experiment.poisoned_hashes(poisoned_path)


def validate(config_json: str, poisoned_path: str, detections_path: str) -> None:
    """Run every detector on every poisoned set."""
    config = config_from_json(config_json)
    n_classes = len(read_metadata(poisoned_path)["class_names"])
    sets = experiment.read_poisoned(poisoned_path)
    experiment.write_detections(experiment.detect_level(sets, config, n_classes), detections_path)


def train(config_json: str, poisoned_path: str, detections_path: str, models_path: str) -> None:
    """Fit every model on every poisoned set and on each detector's kept rows."""
    config = config_from_json(config_json)
    models = experiment.train_level(
        experiment.read_poisoned(poisoned_path),
        experiment.read_detections(detections_path),
        config,
    )
    experiment.write_models(models, models_path)


def evaluate(
    config_json: str,
    level: float,
    data_path: str,
    splits_path: str,
    poisoned_path: str,
    detections_path: str,
    models_path: str,
    records_path: str,
    confusion_path: str | None = None,
    quantity_path: str | None = None,
) -> dict[str, float]:
    """Score models on the clean test split and detectors against the mask.

    Also writes, if paths are given, the level's confusion counts and its
    quality-versus-quantity records (empty unless ``quantity.enabled``).
    Returns the level's headline numbers: mean accuracy per attack and model
    without defence.
    """
    config = config_from_json(config_json)
    dataset = read_dataset(data_path)
    masks = read_splits(splits_path)
    models = experiment.read_models(models_path)
    predictions = experiment.predict_level(models, dataset, masks)
    records = experiment.evaluate_level(
        models,
        dataset,
        masks,
        experiment.read_poisoned(poisoned_path),
        experiment.read_detections(detections_path),
        level,
        predictions,
    )
    experiment.write_records(records, records_path)
    if confusion_path:
        confusion = experiment.confusion_level(predictions, dataset, masks, level)
        confusion.to_parquet(confusion_path, index=False)
    if quantity_path:
        from poisonlab import quantity

        enabled = config["quantity"]["enabled"]
        rows = quantity.quantity_level(config, level) if enabled else quantity.empty_records()
        rows.to_parquet(quantity_path, index=False)
    accuracy = records[
        (records["metric"] == "accuracy") & (records["defense"] == experiment.NO_DEFENSE)
    ]
    means = accuracy.groupby(["attack", "model"], sort=False)["value"].mean()
    return {f"accuracy_{attack}_{model}": float(v) for (attack, model), v in means.items()}


def confusion_matrices(confusion_path: str) -> dict[str, tuple[list[str], list[list[int]]]]:
    """Per model: class names and the confusion matrix without defence, over trials and attacks.

    What the Vertex console shows for a level (the report has them per attack).
    """
    import pandas as pd

    frame = pd.read_parquet(confusion_path)
    frame = frame[frame["defense"] == experiment.NO_DEFENSE]
    matrices = {}
    for model, rows in frame.groupby("model", sort=False):
        classes = list(dict.fromkeys(rows["true"]))
        table = rows.pivot_table(
            index="true", columns="predicted", values="count", aggfunc="sum"
        ).reindex(index=classes, columns=classes, fill_value=0)
        matrices[str(model)] = (classes, table.fillna(0).astype(int).to_numpy().tolist())
    return matrices


def report(
    config_json: str,
    records_paths: list[str],
    data_path: str,
    results_dir: str,
    run_key: str,
    confusion_paths: list[str] | None = None,
    quantity_paths: list[str] | None = None,
) -> None:
    """Summaries, report and manifest of the whole run, from every level's outputs."""
    from poisonlab.report import write_results

    config = config_from_json(config_json)
    provenance = read_metadata(data_path)["provenance"]
    records = experiment.read_records(records_paths)
    confusion = experiment.read_records(confusion_paths) if confusion_paths else None
    quantity = experiment.read_records(quantity_paths) if quantity_paths else None
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    write_results(records, config, provenance, results_dir, run_key, confusion, quantity)
