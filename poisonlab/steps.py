"""The pipeline's steps as functions of files: what each KFP component calls.

Each step reads its inputs from paths, calls the array-level functions in
``poisonlab.experiment``, and writes its outputs to paths, so components stay
a few lines long and every step can be tested without KFP.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from poisonlab import experiment, gate, units
from poisonlab.config import check_complete, config_from_json
from poisonlab.data import (
    INPUT_SHA256_ENV,
    read_configured,
    read_dataset,
    read_metadata,
    read_splits,
    write_splits,
    write_table,
)
from poisonlab.errors import PoisonlabError
from poisonlab.failures import (
    contained,
    injected_failure,
    read_failure,
    split_failures,
    write_failure,
)
from poisonlab.preflight import (
    check_classes_survive,
    data_warnings,
    numbers_needed,
    trial_splits,
)
from poisonlab.splits import split_of, split_record
from poisonlab.table import Schema, TableView, plain_labels, rows_hash


def _checked(config_json: str) -> dict[str, Any]:
    """The config of a step after ``load``, which checked that it is complete and valid:
    parsed, not checked again (checking imports scikit-learn, 2 s a task)."""
    return json.loads(config_json)


def load(config_json: str, data_path: str, splits_path: str) -> dict[str, Any]:
    """Check the config, read and check the dataset, split it once per trial; return the
    dataset's provenance.

    The config must be complete (every default written out, as poisonlab sends it):
    the later steps take it as it is.
    """
    config = config_from_json(config_json)
    check_complete(config, json.loads(config_json))
    frame, dataset, input_hash = read_configured(config["dataset"])  # the raw view, a Table
    expected = os.environ.get(INPUT_SHA256_ENV)
    if expected and expected != input_hash:
        raise PoisonlabError(
            f"dataset.source: {config['dataset']['source']} changed after the run started "
            "(its SHA-256 differs); start the run again"
        )
    numbers_needed(dataset, config)
    masks = trial_splits(dataset, config)
    # Also checked by submit.py; here too for a pipeline started from its compiled YAML.
    check_classes_survive(dataset, masks, config)
    warnings = data_warnings(frame, dataset, masks, config["dataset"])
    del frame  # the raw table is not needed again: free it before the splits are hashed
    provenance = {
        "source": config["dataset"]["source"],
        "input_sha256": input_hash,
        "data_sha256": rows_hash(dataset.X, dataset.y),
        "n_rows": int(len(dataset.y)),
        "n_features": len(dataset.feature_names),
        "class_names": dataset.class_names,
        # The columns the built-ins saw, after dropping and encoding; rows per class.
        "feature_names": dataset.feature_names,
        # The table's own columns and dtypes: what the user's models and gates saw.
        "raw_columns": dataset.schema.raw_columns(),
        "label_column": dataset.label_name,
        "class_counts": np.bincount(dataset.y, minlength=dataset.n_classes).tolist(),
        "split_sha256": {
            str(t): {
                "train": rows_hash(dataset.X[~m], dataset.y[~m]),
                "test": rows_hash(dataset.X[m], dataset.y[m]),
            }
            for t, m in enumerate(masks)
        },
        # What submit.py warned about before the run, for the report to say too.
        "data_warnings": warnings,
        # How the test sets were held out: kind, column, rows and groups or times per trial.
        "split": split_record(split_of(config["dataset"]), dataset.split_values, masks),
    }
    write_table(dataset, data_path, extra={"provenance": provenance})
    write_splits(masks, splits_path)
    return provenance


def poison(
    config_json: str,
    level: float,
    data_path: str,
    splits_path: str,
    poisoned_path: str,
    unit: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Poison every trial's training split at ``level``; return each variant's SHA-256.

    ``unit`` (a loop item, ``poisonlab.units``): only its attacks and trials; none, all.
    """
    config = _checked(config_json)

    def work() -> dict[str, str]:
        injected_failure(level)
        dataset = read_dataset(data_path)
        chosen = units.resolve(config, level, unit)
        failed: list[dict[str, Any]] = []  # attacks that raised on a split fail alone
        sets = experiment.poison_level(
            dataset, read_splits(splits_path), config, level, chosen, failed
        )
        experiment.write_poisoned(sets, dataset, poisoned_path, failed)
        return experiment.poisoned_hashes(poisoned_path)

    return contained("poison", level, [], [poisoned_path], work, default={})


def validate(
    config_json: str,
    poisoned_path: str,
    detections_path: str,
    data_path: str,
    splits_path: str,
) -> dict[str, Any]:
    """Run every detector on every poisoned set; return the gate's verdict per attack.

    The verdict (``poisonlab.gate``) is data for the component's outputs: the
    pipeline does not branch on it. The dataset and its splits give each trial's
    clean training split, on which detectors are calibrated (``validate.fpr``) and
    recall at 1% and 5% false positives is measured.
    """
    config = _checked(config_json)

    def work() -> dict[str, Any]:
        metadata = read_metadata(poisoned_path)
        n_classes = len(metadata["class_names"])
        # Without the mask: the detectors cannot peek at which rows were poisoned.
        sets = experiment.read_poisoned(poisoned_path, mask=False)
        names = _table_names(metadata)
        clean = experiment.clean_splits(read_dataset(data_path), read_splits(splits_path))
        detections = experiment.detect_level(sets, config, n_classes, names, clean)
        experiment.write_detections(detections, detections_path)
        detector = gate.gate_detector(config)
        checks = pd.DataFrame(
            [
                {
                    "poison_level": 0.0,  # this task's level; the table is for one level
                    "attack": s.attack,
                    "trial": s.trial,
                    "flag_rate": gate.detection_flag_rate(
                        detections.get((s.trial, s.attack, detector))
                    ),
                    "class_shift": gate.class_shift(s.data.y, metadata["reference_class_counts"]),
                }
                # Labels alone, read again: the sets were streamed through the detectors.
                for s in experiment.read_poisoned(poisoned_path, features=False, mask=False)
            ]
        )
        table = gate.verdicts(checks, config).drop(columns="poison_level")
        # No detector (or a failed one), no flag rate: None rather than NaN, not JSON.
        return {
            row["attack"]: {k: None if v is None or v != v else v for k, v in row.items()}
            for row in table.to_dict("records")
        }

    return contained("validate", None, [poisoned_path], [detections_path], work, default={})


def _table_names(metadata: dict[str, Any]) -> Any:
    """The dataset's names (and raw view, for raw sets) from a poisoned file's metadata."""
    from poisonlab.detectors import TableNames

    view = _model_columns(metadata)
    return TableNames(
        metadata["feature_names"],
        metadata["class_names"],
        metadata["label_name"],
        view if isinstance(view, TableView) else None,
    )


def _model_columns(metadata: dict[str, Any]) -> Any:
    """What the models of a poisoned file are built for (``experiment.model_columns``)."""
    if "schema" not in metadata:
        return metadata["feature_names"]
    labels = plain_labels(metadata["class_names"], metadata.get("label_numeric", False))
    return TableView(Schema.from_json(metadata["schema"]), labels)


def train(config_json: str, poisoned_path: str, detections_path: str, models_path: str) -> None:
    """Fit every model on every poisoned set and on each detector's kept rows."""
    config = _checked(config_json)

    def work() -> None:
        models = experiment.train_level(
            experiment.read_poisoned(poisoned_path, mask=False),
            experiment.read_detections(detections_path),
            config,
            _model_columns(read_metadata(poisoned_path)),
        )
        experiment.write_models(models, models_path)

    inputs = [poisoned_path, detections_path]
    contained("train", None, inputs, [models_path], work)


# The one artifact a level fans in to the report (Vertex refuses a fan-in of more than
# 100 artifacts, so one per level, not one per table): a directory of these files.
RECORDS_FILE = "records.parquet"
CONFUSION_FILE = "confusion.parquet"
QUANTITY_RECORDS_FILE = "quantity.parquet"
MODELS_FILE = "models.pkl"  # trial 0's models: what the mirror logs to MLflow
CERTIFIED_RECORDS_FILE = "certified.parquet"  # certified accuracy per trial (poisonlab.certify)


def evaluate(
    config_json: str,
    level: float,
    data_path: str,
    splits_path: str,
    poisoned_path: str,
    detections_path: str,
    models_path: str,
    level_dir: str,
    unit: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Score models on the clean test split and detectors against the mask.

    ``unit``: the task's share of the level (``poisonlab.units``); the level's first
    unit also writes the level's quantity records.

    Writes the level's records, confusion counts, quality-versus-quantity
    records (empty unless ``quantity.enabled``) and trial 0's fitted models (the
    ones the mirror logs) into ``level_dir``. Returns the level's headline
    numbers: mean accuracy per attack and model without defence.
    """
    config = _checked(config_json)
    level_dir = Path(level_dir)
    level_dir.mkdir(parents=True, exist_ok=True)
    records_path, confusion_path, quantity_path, models_out, certified_path = (
        level_dir / name
        for name in (
            RECORDS_FILE,
            CONFUSION_FILE,
            QUANTITY_RECORDS_FILE,
            MODELS_FILE,
            CERTIFIED_RECORDS_FILE,
        )
    )

    def work() -> dict[str, float]:
        dataset = read_dataset(data_path)
        masks = read_splits(splits_path)
        models = experiment.read_models(models_path)
        trial_0 = {
            (level, attack, model, defense): estimator
            for (trial, attack, model, defense), estimator in models.items()
            if trial == 0
        }
        experiment.write_models(trial_0, models_out)
        predictions = experiment.predict_level(models, dataset, masks)
        sets = list(experiment.read_poisoned(poisoned_path, features=False))
        detections = experiment.read_detections(detections_path)
        records = experiment.evaluate_level(
            models, dataset, masks, sets, detections, level, predictions
        )
        experiment.write_records(records, records_path)
        from poisonlab.certify.evaluation import certified_records

        poisoned_rows = {(s.trial, s.attack): (len(s.data.y), int(s.data.mask.sum())) for s in sets}
        certified = certified_records(models, dataset.X, dataset.y, masks, poisoned_rows, level)
        certified.to_parquet(certified_path, index=False)
        hashes = experiment.poisoned_hashes(poisoned_path)
        _attach(
            records_path,
            {
                "poison_level": level,
                "poisoned_sha256": hashes,
                "failed_fits": experiment.failed_fits(models),
                "failed_detections": experiment.failed_detections(detections),
                "failed_attacks": read_metadata(poisoned_path).get("failed_attacks", []),
            },
        )
        confusion = experiment.confusion_level(predictions, dataset, masks, level)
        confusion.to_parquet(confusion_path, index=False)
        from poisonlab import quantity

        first = units.first_of_level(config, units.resolve(config, level, unit))
        enabled = config["quantity"]["enabled"] and first
        rows = quantity.quantity_level(config, level) if enabled else quantity.empty_records()
        rows.to_parquet(quantity_path, index=False)
        accuracy = records[
            (records["metric"] == "accuracy") & (records["defense"] == experiment.NO_DEFENSE)
        ]
        means = accuracy.groupby(["attack", "model"], sort=False)["value"].mean()
        return {f"accuracy_{attack}_{model}": float(v) for (attack, model), v in means.items()}

    inputs = [poisoned_path, detections_path, models_path]
    outputs = [records_path, confusion_path, quantity_path, models_out, certified_path]
    headline = contained("evaluate", level, inputs, outputs, work, default={})
    failure = read_failure(records_path)
    if failure is not None and failure["level"] is None:
        # validate and train do not know their level: name it here, where it is known.
        for path in outputs:
            write_failure(path, {**failure, "level": level})
    return headline


def _attach(parquet_path: str | Path, extra: dict[str, Any]) -> None:
    """Store ``extra`` in a Parquet file's metadata (rewrites the small file)."""
    table = pq.read_table(parquet_path)
    meta = {**(table.schema.metadata or {}), b"poisonlab": json.dumps(extra).encode()}
    pq.write_table(table.replace_schema_metadata(meta), parquet_path)


def _attached(parquet_path: str | Path) -> dict[str, Any]:
    meta = pq.read_schema(parquet_path).metadata or {}
    return json.loads(meta.get(b"poisonlab", b"{}"))


def level_model_files(level_dirs: list[str]) -> list[Path]:
    """The files of trial 0's models (what the mirror logs) of every level that did not fail."""
    kept, _ = split_failures([Path(d) / RECORDS_FILE for d in level_dirs])
    return [Path(path).parent / MODELS_FILE for path in kept]


def confusion_matrices(level_dir: str) -> dict[str, tuple[list[str], list[list[int]]]]:
    """Per model: class names and the confusion matrix without defence, over trials and attacks.

    What the Vertex console shows for a level (the report has them per attack).
    """
    confusion_path = Path(level_dir) / CONFUSION_FILE
    if read_failure(confusion_path) is not None:
        return {}  # the level failed: nothing to show
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
    level_dirs: list[str],
    data_path: str,
    results_dir: str,
    run_key: str,
) -> None:
    """Summaries, report and manifest of the whole run, from every level's ``evaluate`` output."""
    from poisonlab.report import write_results

    config = _checked(config_json)
    provenance = read_metadata(data_path)["provenance"]
    kept, failed = split_failures([Path(d) / RECORDS_FILE for d in level_dirs])
    if not kept:
        levels = ", ".join(f"{f['level']:g} ({f['step']}: {f['error']})" for f in failed)
        raise RuntimeError(f"every poison level failed: {levels}")
    kept_dirs = [path.parent for path in kept]
    records = experiment.read_records(kept)
    # Which levels failed, and the SHA-256 of every poisoned variant of the others.
    provenance["failed_levels"] = failed
    levels = [_attached(path) for path in kept]
    # Models and detectors that failed on some split of a level that stands
    # (experiment.FailedFit, experiment.FailedDetection).
    for key in ("failed_fits", "failed_detections", "failed_attacks"):
        provenance[key] = [
            {"level": meta["poison_level"], **failure}
            for meta in levels
            for failure in meta.get(key, [])
        ]
    provenance["poisoned_sha256"] = {
        f"{meta['poison_level']:g}": meta["poisoned_sha256"] for meta in levels
    }
    confusion = experiment.read_records([d / CONFUSION_FILE for d in kept_dirs])
    quantity = experiment.read_records([d / QUANTITY_RECORDS_FILE for d in kept_dirs])
    certified_paths = [d / CERTIFIED_RECORDS_FILE for d in kept_dirs]
    found = [path for path in certified_paths if path.is_file()]
    certified = experiment.read_records(found) if found else None
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    write_results(records, config, provenance, results_dir, run_key, confusion, quantity, certified)
