"""One poisoning experiment, step by step: poison, detect, train, evaluate, summarize.

Each step of a poison level is a function here and a thin KFP component in
``components/``; ``run_experiment`` runs them all in one process (used by tests
and benchmarks, and to measure the pipeline's orchestration overhead).

Per-trial results are long-format *records*, one row per measured value:
``poison_level, trial, attack, model, defense, detector, metric, value``.
Model records leave ``detector`` empty; detection records leave ``model`` and
``defense`` empty.

The modules that bring in scikit-learn or SciPy (detectors, models, metrics,
stats) are imported by the functions that use them: every pipeline task
imports this module, and one that needs neither (poison, report) starts
seconds sooner.
"""

from __future__ import annotations

import json
import pickle
import sys
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from poisonlab.attacks import (
    Poisoned,
    apply_attack,
    dataset_attack_params,
    in_subpopulation,
    stamp_trigger,
)
from poisonlab.attacks.subpopulation import SUBPOPULATION
from poisonlab.data import (
    LABEL,
    Dataset,
    load_table,
    read_metadata,
)
from poisonlab.errors import PoisonlabError
from poisonlab.gate import CLASS_BALANCE, CLASS_SHIFT, class_shift
from poisonlab.seeding import derive_rng, derive_seed
from poisonlab.table import (
    Encoding,
    Schema,
    Table,
    plain_columns,
    restore_dtypes,
    rows_hash,
    table_view,
)

if TYPE_CHECKING:
    from poisonlab.detectors import Detection, TableNames
    from poisonlab.units import Unit

RECORD_COLUMNS = [
    "poison_level",
    "trial",
    "attack",
    "model",
    "defense",
    "detector",
    "metric",
    "value",
]
SUMMARY_COLUMNS = [
    "poison_level",
    "attack",
    "model",
    "defense",
    "metric",
    "mean",
    "ci_low",
    "ci_high",
    "n",
]
DETECTION_COLUMNS = [
    "poison_level",
    "attack",
    "detector",
    "metric",
    "mean",
    "ci_low",
    "ci_high",
    "n",
]
NO_DEFENSE = "none"
_POISONED = "_poisoned"


@dataclass(frozen=True)
class PoisonedSet:
    """The poisoned training split of one trial under one attack."""

    trial: int
    attack: str
    data: Poisoned


# --- poison ---------------------------------------------------------------------------


def poison_level(
    dataset: Dataset | Table,
    test_masks: np.ndarray,
    config: dict[str, Any],
    level: float,
    unit: Unit | None = None,
    failed: list[dict[str, Any]] | None = None,
) -> Iterator[PoisonedSet]:
    """Poison every trial's training split with every configured attack, one set at a time.

    The sets come one at a time, so that a task holds one poisoned copy of the
    data, not one per trial and attack. Bad attack parameters raise at the call.
    ``unit`` (``poisonlab.units``) narrows them to its attacks and trials.

    An attack that raises on a trial's split (a user's gate inside a gate-aware
    attack, say) fails alone, as a failing detector or model does: that set is
    skipped and ``{trial, attack, error}`` appended to ``failed``; the other attacks
    stand. Without ``failed``, or when no set at all could be made, it raises.

    A ``Table`` (the raw view) is poisoned in its encoded view fitted on each
    trial's clean training split (``attack_view``), and every set's rows decoded back
    to raw rows (``Encoding.decode``): its ``X`` is a DataFrame of the table's columns.
    """
    # Class and feature names checked against the dataset once, before any poisoning.
    params = dataset_attack_params(config, dataset.class_names, dataset.feature_names)
    return _poisoned_sets(dataset, test_masks, config, level, params, unit, failed)


def attack_view(table: Table, test_mask: np.ndarray) -> tuple[pd.DataFrame, Encoding, np.ndarray]:
    """A trial's clean training rows (raw), the encoding fitted on them, and their matrix:
    the space attacks work in, and where an attack's info (a trigger, a cluster) lives."""
    rows = table.features[~test_mask].reset_index(drop=True)
    encoding = table.schema.fit(rows)
    return rows, encoding, encoding.transform(rows)


def _poisoned_sets(
    dataset: Dataset | Table,
    test_masks: np.ndarray,
    config: dict[str, Any],
    level: float,
    params: dict[str, dict[str, Any]],
    unit: Unit | None = None,
    failed: list[dict[str, Any]] | None = None,
) -> Iterator[PoisonedSet]:
    made = 0
    for trial in unit.trials if unit else range(config["trials"]):
        train = ~test_masks[trial]
        encoding, raw_view = None, {}
        if isinstance(dataset, Table):
            rows, encoding, X = attack_view(dataset, test_masks[trial])
            columns = encoding.columns_info(X)
            # Raw-view gates a gate-aware attack evades judge decoded rows, as in validate.
            raw_view = {
                "decode": partial(encoding.decode, original=rows),
                "view": table_view(dataset),
            }
        else:
            X = dataset.X[train]
            columns = plain_columns(dataset.feature_names, X)
        y = dataset.y[train]
        for attack in unit.attacks if unit else config["poison"]["attacks"]:
            try:
                poisoned = apply_attack(
                    attack,
                    X,
                    y,
                    level,
                    rng=derive_rng(config["seed"], "poison", trial, attack),
                    n_classes=dataset.n_classes,
                    params=params[attack],
                    feature_names=dataset.feature_names,
                    columns=columns,
                    **raw_view,
                    **_gate_names(attack, dataset),
                )
                if encoding is not None:  # back to rows a real source could send
                    poisoned = replace(poisoned, X=encoding.decode(poisoned.X, rows))
            except Exception as error:
                if failed is None:
                    raise
                from poisonlab.usercode import one_line

                traceback.print_exc(file=sys.stderr)
                failed.append({"trial": trial, "attack": attack, "error": one_line(error)})
                continue
            made += 1
            yield PoisonedSet(trial, attack, poisoned)
    if failed and not made:  # nothing to write: the level fails, with the first error
        raise RuntimeError(f"poison.{failed[0]['attack']}: {failed[0]['error']}")


def _gate_names(attack: str, dataset: Dataset | Table) -> dict[str, Any]:
    """A gate-aware attack's user gates see the table under the dataset's names."""
    from poisonlab.attacks import ATTACKS

    if attack in ATTACKS:
        return {}
    return {"class_names": dataset.class_names, "label_name": dataset.label_name}


def write_poisoned(
    sets: Iterable[PoisonedSet],
    dataset: Dataset | Table,
    path: str | Path,
    failed: list[dict[str, Any]] | None = None,
) -> None:
    """All poisoned sets of a level in one Parquet file, one row group per set.

    Written as the sets arrive, so only one is in memory. The footer's metadata
    lists the sets in row-group order, with each one's hash, poisoned count and
    attack info, and the attacks that failed (``failed``, filled while ``sets`` is
    read: ``poison_level``). A ``Table``'s sets are stored raw: the table's own
    columns and dtypes (text as text, integers as integers, missing as null).
    """
    raw = isinstance(dataset, Table)
    if raw:
        fields = list(pa.Schema.from_pandas(dataset.features, preserve_index=False))
    else:
        fields = [pa.field(name, pa.float64()) for name in dataset.feature_names]
    extra = [pa.field(LABEL, pa.int64()), pa.field(_POISONED, pa.bool_())]
    schema = pa.schema([*fields, *extra])
    meta: dict[str, Any] = {}
    with pq.ParquetWriter(path, schema) as writer:
        for s in sets:
            labels = [pa.array(s.data.y.astype(np.int64)), pa.array(s.data.mask.astype(bool))]
            if raw:
                part = pa.Table.from_pandas(
                    s.data.X, schema=pa.schema(fields), preserve_index=False
                )
                table = pa.Table.from_arrays([*part.columns, *labels], schema=schema)
            else:
                columns = [pa.array(c) for c in s.data.X.T]
                table = pa.Table.from_arrays([*columns, *labels], schema=schema)
            writer.write_table(table, row_group_size=max(1, len(s.data.y)))
            meta[f"{s.trial}/{s.attack}"] = {
                "sha256": rows_hash(s.data.X, s.data.y),
                "n_poisoned": int(s.data.mask.sum()),
                "info": s.data.info,
            }
        names = {
            "feature_names": dataset.feature_names,
            "class_names": dataset.class_names,
            "label_name": dataset.label_name,
            # The clean reference of the class-balance check (poisonlab.gate).
            "reference_class_counts": np.bincount(dataset.y, minlength=dataset.n_classes).tolist(),
        }
        if raw:
            names["schema"] = dataset.schema.to_json()
            names["label_numeric"] = dataset.label_numeric
        names["failed_attacks"] = list(failed or [])
        writer.add_key_value_metadata({"poisonlab": json.dumps({**names, "sets": meta})})


def read_poisoned(
    path: str | Path, *, features: bool = True, mask: bool = True
) -> Iterator[PoisonedSet]:
    """The sets ``write_poisoned`` wrote, read one row group (set) at a time.

    With ``features=False`` the feature columns are not read (``X`` has no
    columns), for steps that score rather than fit; with ``mask=False`` the
    poisoned-row mask is not read (``mask`` is None), for steps that must not
    see which rows were poisoned. Raw sets come back as DataFrames in the table's
    dtypes.
    """
    meta = read_metadata(path)
    schema = Schema.from_json(meta["schema"]) if "schema" in meta else None
    names = schema.columns if schema is not None else meta["feature_names"]
    columns = [*(names if features else []), LABEL, *([_POISONED] if mask else [])]
    file = pq.ParquetFile(path)
    for group, (key, info) in enumerate(meta["sets"].items()):
        trial, attack = key.split("/", 1)
        table = file.read_row_group(group, columns=columns)
        n = table.num_rows
        if schema is not None and features:
            X = restore_dtypes(table.select(names).to_pandas(), schema)
        elif features and names:
            X = np.column_stack([table.column(name).to_numpy() for name in names])
        else:
            X = np.empty((n, 0))
        data = Poisoned(
            X=X,
            y=table.column(LABEL).to_numpy().astype(np.int64, copy=False),
            mask=(
                table.column(_POISONED).to_numpy(zero_copy_only=False).astype(bool, copy=False)
                if mask
                else None
            ),
            info=info["info"],
        )
        yield PoisonedSet(int(trial), attack, data)


def poisoned_hashes(path: str | Path) -> dict[str, str]:
    """SHA-256 of every poisoned variant in a file written by ``write_poisoned``."""
    return {key: value["sha256"] for key, value in read_metadata(path)["sets"].items()}


# --- validate -------------------------------------------------------------------------

DetectionKey = tuple[int, str, str]  # trial, attack, detector


def detect_level(
    sets: list[PoisonedSet],
    config: dict[str, Any],
    n_classes: int,
    names: TableNames | None = None,
    clean: CleanSplits | None = None,
) -> dict:
    """Run every configured detector on every poisoned set (the mask is not passed).

    ``names`` (the dataset's column and class names) are for the user's own gates,
    which see the table as it was loaded. Raw sets (DataFrames) are encoded for the
    built-in detectors and gates with ``input: encoded``, by the encoding fitted on
    the set itself; the other gates get the raw rows.

    ``clean`` gives each trial's clean training split: every detector with scores
    is run on it too (once per trial), and its flags on the poisoned sets use the
    threshold that flags ``validate.fpr`` of those clean rows
    (``detectors.calibration``); the thresholds at 1% and 5% are kept for
    ``recall_at_1pct_fpr`` and ``recall_at_5pct_fpr``. Without ``clean`` each
    detector keeps its own threshold.

    A detector that raises leaves a ``FailedDetection`` with its one-line error in
    its place for that set: it gets a ``failed`` record there, its defence is not
    trained, and the other detectors and models of the level stand.
    """
    from poisonlab.detectors import run_detector
    from poisonlab.detectors.calibration import calibrated
    from poisonlab.usercode import one_line

    fpr = config["validate"].get("fpr")
    detections: dict[DetectionKey, Detection | FailedDetection] = {}
    references: dict[tuple[int, str], Any] = {}  # (trial, detector): its clean detection
    for s in sets:
        encoded = None
        for detector in config["validate"]["detectors"]:
            X = s.data.X
            if _needs_encoding(X, detector, config):
                # The encoded view, fitted on this (poisoned) training split.
                if encoded is None:
                    encoded = _encoded(X, names)
                X = encoded
            try:
                reference = None
                if clean is not None:
                    key = (s.trial, detector)
                    if key not in references:
                        references[key] = clean_detection(
                            clean, s.trial, detector, config, n_classes, names
                        )
                    reference = references[key]
                X_clean, y_clean = clean(s.trial) if clean is not None else (None, None)
                if reference is not None and _same_rows(s.data.X, s.data.y, X_clean, y_clean):
                    found = reference  # level 0: the poisoned set is the clean split
                else:
                    found = run_detector(
                        detector,
                        X,
                        s.data.y,
                        seed=derive_seed(config["seed"], "detect", s.trial, s.attack, detector),
                        n_classes=n_classes,
                        params=config["validate"][detector],
                        names=names,
                    )
                found = calibrated(found, reference, fpr)
            except Exception as error:  # one detector's failure stays that detector's
                traceback.print_exc(file=sys.stderr)
                where = f"trial {s.trial}'s {s.attack} set"
                found = FailedDetection(
                    f"{error} (on {where})"
                    if isinstance(error, PoisonlabError)  # a user's gate: it names its field
                    else f"validate.{detector}: detecting on {where} raised {one_line(error)}"
                )
            detections[(s.trial, s.attack, detector)] = found
    return detections


def _needs_encoding(X: np.ndarray | pd.DataFrame, detector: str, config: dict[str, Any]) -> bool:
    """Whether ``detector`` gets raw rows ``X`` encoded: a built-in, or a user gate with
    ``input: encoded`` (the other gates take the raw rows as they are)."""
    from poisonlab.detectors import DETECTORS
    from poisonlab.detectors.user import wants_encoded

    if not isinstance(X, pd.DataFrame):
        return False
    return detector in DETECTORS or wants_encoded(detector, config["validate"][detector])


def _encoded(X: pd.DataFrame, names: TableNames) -> np.ndarray:
    """Raw rows in the encoded view fitted on those rows (a training split's own)."""
    return names.view.schema.fit(X).transform(X)


# A trial's clean training split (features, labels), for calibrating the detectors.
CleanSplits = Any  # Callable[[int], tuple[np.ndarray, np.ndarray]]


def clean_splits(dataset: Dataset | Table, test_masks: np.ndarray) -> CleanSplits:
    """The ``clean`` argument of ``detect_level``: trial -> its clean training rows (raw
    rows for a Table, as its poisoned sets are)."""

    def split(trial: int) -> tuple[np.ndarray | pd.DataFrame, np.ndarray]:
        train = ~test_masks[trial]
        if isinstance(dataset, Table):
            return dataset.X[train].reset_index(drop=True), dataset.y[train]
        return dataset.X[train], dataset.y[train]

    return split


def clean_detection(
    clean: CleanSplits,
    trial: int,
    detector: str,
    config: dict[str, Any],
    n_classes: int,
    names: TableNames | None,
) -> Detection:
    """``detector`` on trial ``trial``'s clean training split: what its calibration
    thresholds are read from. Seeded by trial and detector only, so every attack and
    level of a trial shares one calibration."""
    from poisonlab.detectors import run_detector

    X, y = clean(trial)
    if _needs_encoding(X, detector, config):
        X = _encoded(X, names)
    return run_detector(
        detector,
        X,
        y,
        seed=derive_seed(config["seed"], "detect-clean", trial, detector),
        n_classes=n_classes,
        params=config["validate"][detector],
        names=names,
    )


def _same_rows(X: np.ndarray | pd.DataFrame, y: np.ndarray, X_clean: Any, y_clean: Any) -> bool:
    if isinstance(X, pd.DataFrame):
        return (
            isinstance(X_clean, pd.DataFrame)
            and np.array_equal(y, y_clean)
            and X.reset_index(drop=True).equals(X_clean)
        )
    return (
        X_clean is not None
        and X.shape == X_clean.shape
        and np.array_equal(y, y_clean)
        and np.array_equal(X, X_clean)
    )


@dataclass(frozen=True)
class FailedDetection:
    """In place of a detection whose detector raised (``detect_level``): its one-line
    error. Also in place of the models of the defence built on it (``train_level``)."""

    error: str


def failed_detections(
    detections: dict[DetectionKey, Detection | FailedDetection],
) -> list[dict[str, Any]]:
    """Every failed detection of a level, ``{trial, attack, detector, error}``, in run order."""
    return [
        {"trial": trial, "attack": attack, "detector": detector, "error": d.error}
        for (trial, attack, detector), d in detections.items()
        if isinstance(d, FailedDetection)
    ]


def write_detections(
    detections: dict[DetectionKey, Detection | FailedDetection], path: str | Path
) -> None:
    """A level's detections in one Parquet file: a row group per poisoned set, a score
    and a flag column per detector; the footer lists the sets, detectors and failed
    detections (whose columns are null in their set's row group)."""
    sets = list(dict.fromkeys((trial, attack) for trial, attack, _ in detections))
    detectors = list(dict.fromkeys(detector for _, _, detector in detections))
    schema = pa.schema(
        [
            field
            for detector in detectors
            for field in (
                pa.field(f"{detector}.score", pa.float64()),
                pa.field(f"{detector}.flag", pa.bool_()),
            )
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for trial, attack in sets:
            found = [detections[(trial, attack, detector)] for detector in detectors]
            ran = [d for d in found if not isinstance(d, FailedDetection)]
            n = len(ran[0].flags) if ran else 0
            columns = [
                column
                for d in found
                for column in (
                    (pa.nulls(n, pa.float64()), pa.nulls(n, pa.bool_()))
                    if isinstance(d, FailedDetection)
                    else (pa.array(d.scores.astype(np.float64)), pa.array(d.flags.astype(bool)))
                )
            ]
            table = pa.Table.from_arrays(columns, schema=schema)
            writer.write_table(table, row_group_size=max(1, table.num_rows))
        failed = failed_detections(detections)
        # Calibration thresholds and flag-only gates (detectors.calibration), by key.
        calibration = {
            f"{trial}/{attack}/{detector}": {
                "scored": d.scored,
                "thresholds": [[f, t] for f, t in d.thresholds.items()],
            }
            for (trial, attack, detector), d in detections.items()
            if not isinstance(d, FailedDetection) and (d.thresholds or not d.scored)
        }
        meta = {"sets": sets, "detectors": detectors, "failed": failed}
        if calibration:
            meta["calibration"] = calibration
        writer.add_key_value_metadata({"poisonlab": json.dumps(meta)})


def read_detections(path: str | Path) -> dict[DetectionKey, Detection | FailedDetection]:
    """The detections ``write_detections`` wrote, keyed by (trial, attack, detector)."""
    from poisonlab.detectors import Detection

    meta = read_metadata(path)
    failed = {(f["trial"], f["attack"], f["detector"]): f["error"] for f in meta.get("failed", [])}
    calibration = meta.get("calibration", {})
    file = pq.ParquetFile(path)
    detections = {}
    for group, (trial, attack) in enumerate(meta["sets"]):
        table = file.read_row_group(group)
        for detector in meta["detectors"]:
            key = (trial, attack, detector)
            detections[key] = (
                FailedDetection(failed[key])
                if key in failed
                else Detection(
                    table.column(f"{detector}.score").to_numpy(),
                    table.column(f"{detector}.flag").to_numpy(zero_copy_only=False),
                    **_calibration_fields(calibration.get(f"{trial}/{attack}/{detector}")),
                )
            )
    return detections


def _calibration_fields(found: dict[str, Any] | None) -> dict[str, Any]:
    if not found:
        return {}
    return {"scored": found["scored"], "thresholds": {f: t for f, t in found["thresholds"]}}


# --- train ----------------------------------------------------------------------------

ModelKey = tuple[int, str, str, str]  # trial, attack, model, defense


def defenses(config: dict[str, Any]) -> list[str]:
    """``none`` (train on everything), then one defence per configured detector."""
    return [NO_DEFENSE, *config["validate"]["detectors"]]


def train_level(
    sets: list[PoisonedSet],
    detections: dict[DetectionKey, Detection],
    config: dict[str, Any],
    columns: list[str] | None = None,
) -> dict[ModelKey, Any]:
    """Fit every model on every poisoned set, and again on the rows each detector kept.

    A fit that raises leaves a ``FailedFit`` with its one-line error in that
    model's place: that model gets a ``failed`` record there, the rest of the
    level stands. A defence whose detector failed on the set is not trained: its
    models' places hold the ``FailedDetection`` (a ``detector_failed`` record).

    ``columns``, the dataset's feature names, are what a user's model sees its
    features under (``models.user_model``); for raw sets (DataFrames) it is the
    table's ``TableView``, and every model takes raw rows (``models.make_model``).

    A model's random state depends on the trial and model only, so poisoned and
    defended fits of a trial differ in their data alone. Where the data are the
    same too, the fit is the same: at level 0 every attack's set is the clean
    split, and a defence whose detector flagged nothing keeps every row. So a
    fit is made once per model, random state and training rows (scikit-learn's
    estimators are deterministic given their ``random_state``), and the fitted
    object is shared by every key it serves, in pickle's file too: a third of
    the default config's fits. BLAS runs on one thread (``models.one_blas_thread``).
    """
    from poisonlab.models import fit_model, one_blas_thread
    from poisonlab.usercode import one_line

    models = {}
    fitted: dict[tuple[str, int, str], Any] = {}
    with one_blas_thread():
        for s in sets:
            for model in config["train"]["models"]:
                random_state = derive_seed(config["seed"], "model", s.trial, model)
                for defense in defenses(config):
                    detection = detections.get((s.trial, s.attack, defense))
                    if isinstance(detection, FailedDetection):
                        models[(s.trial, s.attack, model, defense)] = detection
                        continue
                    keep = slice(None) if defense == NO_DEFENSE else ~detection.flags
                    if defense != NO_DEFENSE and not can_fit(s.data.y[keep]):
                        models[(s.trial, s.attack, model, defense)] = None
                        continue
                    X, y = s.data.X[keep], s.data.y[keep]
                    same = (model, random_state, rows_hash(X, y))
                    if same not in fitted:
                        try:
                            fitted[same] = fit_model(
                                model, config["train"][model], X, y, random_state, columns
                            )
                        except Exception as error:  # one model's failure stays that model's
                            traceback.print_exc(file=sys.stderr)
                            fitted[same] = FailedFit(
                                f"train.{model}: fitting trial {s.trial}'s {s.attack} set "
                                f"(defence {defense}) raised {one_line(error)}"
                            )
                    models[(s.trial, s.attack, model, defense)] = fitted[same]
    return models


# Fewest rows a defence may keep for a model to be fitted on them.
MIN_FIT_ROWS = 10
UNFITTED = "unfitted"
FAILED = "failed"
# The record of a defence not trained because its detector failed on the set.
DETECTOR_FAILED = "detector_failed"


@dataclass(frozen=True)
class FailedFit:
    """In place of a model whose fit raised (``train_level``): its one-line error."""

    error: str


def failed_fits(models: dict[ModelKey, Any]) -> list[dict[str, Any]]:
    """Every failed fit of a level, ``{trial, attack, model, defense, error}``, in fit order."""
    return [
        {"trial": trial, "attack": attack, "model": model, "defense": defense, "error": m.error}
        for (trial, attack, model, defense), m in models.items()
        if isinstance(m, FailedFit)
    ]


def can_fit(y: np.ndarray) -> bool:
    """Whether the rows a defence kept can train a model: two classes or more, and at
    least ``MIN_FIT_ROWS`` rows. Otherwise that model and defence get no metrics for
    the trial (an ``unfitted`` record instead), and the rest of the level stands."""
    return len(y) >= MIN_FIT_ROWS and len(np.unique(y)) >= 2


def write_models(models: dict[ModelKey, Any], path: str | Path) -> None:
    """Pickle the fitted models: C pickle, several times faster than joblib's for the
    thousands of small trees of a level's forests (joblib pickles in Python)."""
    with open(path, "wb") as file:
        pickle.dump(models, file, protocol=pickle.HIGHEST_PROTOCOL)


def read_models(path: str | Path) -> dict[ModelKey, Any]:
    """Models written by ``write_models`` (a pipeline's own output: pickle runs code on load)."""
    with open(path, "rb") as file:
        return pickle.load(file)


# --- evaluate -------------------------------------------------------------------------


Predictions = dict[ModelKey, np.ndarray]
CONFUSION_COLUMNS = ["poison_level", "attack", "model", "defense", "true", "predicted", "count"]


def predict_level(
    models: dict[ModelKey, Any], dataset: Dataset, test_masks: np.ndarray
) -> Predictions:
    """Every fitted model's predicted class codes on its trial's clean test split.

    A model shared by several keys (``train_level``) predicts once, its
    predictions shared too. A model whose ``predict`` raises fails alone, as a fit
    that raises does: its place in ``models`` is taken by a ``FailedFit`` with the
    one-line error (so it gets a ``failed`` record), and it has no predictions.
    """
    from poisonlab.models import one_blas_thread, predict_classes

    predictions, done = {}, {}
    with one_blas_thread():
        for key, estimator in models.items():
            if estimator is None or isinstance(estimator, (FailedFit, FailedDetection)):
                continue
            once = (key[0], id(estimator))  # the trial's test split, this fitted object
            if once not in done:
                try:
                    done[once] = predict_classes(estimator, dataset.X[test_masks[key[0]]])
                except Exception as error:  # one model's failure stays that model's
                    done[once] = failed_prediction(key, "predict", error)
            if isinstance(done[once], FailedFit):
                models[key] = done[once]  # a value replaced, not a key added: safe here
                continue
            predictions[key] = done[once]
    return predictions


def failed_prediction(key: ModelKey, method: str, error: Exception) -> FailedFit:
    """The ``FailedFit`` of a model whose ``method`` raised on its trial's test split;
    the traceback goes to stderr, as a failed fit's does."""
    from poisonlab.usercode import one_line

    traceback.print_exc(file=sys.stderr)
    trial, attack, model, defense = key
    return FailedFit(
        f"train.{model}: {method} on trial {trial}'s test split ({attack} set, defence "
        f"{defense}) raised {one_line(error)}"
    )


def evaluate_level(
    models: dict[ModelKey, Any],
    dataset: Dataset,
    test_masks: np.ndarray,
    sets: list[PoisonedSet],
    detections: dict[DetectionKey, Detection],
    level: float,
    predictions: Predictions | None = None,
) -> pd.DataFrame:
    """Records for one level: models on the clean test split, detectors against the mask.

    ``predictions`` (from ``predict_level``) saves predicting twice when the
    caller also wants confusion matrices. Every model gets ``accuracy``,
    ``balanced_accuracy``, ``f1_macro`` and ``roc_auc`` (from its class scores,
    ``models.class_scores``; none for a model with neither ``predict_proba`` nor
    ``decision_function``); an unfitted one (None) gets one ``unfitted`` record, a failed one
    (``FailedFit``) one ``failed`` record, one whose defence's detector failed
    (``FailedDetection``) one ``detector_failed`` record. A failed detector gets one
    ``failed`` record for the set instead of its detection metrics.

    For ``subpopulation`` each model also gets ``subpopulation_accuracy``: its
    accuracy on the clean test rows inside the attacked cluster.
    For a backdoor (a set whose info holds a trigger) each model also gets
    ``attack_success_rate``: the share of clean test rows of other classes that,
    with the trigger stamped on, it predicts as the target class. Also each
    poisoned set's class shift from the loaded dataset's class proportions
    (detector ``class_balance``), which the validation gate checks.
    """
    from poisonlab.detectors.calibration import recall_at_fpr
    from poisonlab.metrics import detection_metrics
    from poisonlab.models import one_blas_thread

    if predictions is None:
        predictions = predict_level(models, dataset, test_masks)
    rows = []
    infos = {(s.trial, s.attack): s.data.info for s in sets}
    for (trial, attack, model, defense), estimator in models.items():
        if estimator is None:  # the defence kept too little to fit on (can_fit)
            rows.append((level, trial, attack, model, defense, "", UNFITTED, 1.0))
        elif isinstance(estimator, FailedFit):  # its error: failed_fits
            rows.append((level, trial, attack, model, defense, "", FAILED, 1.0))
        elif isinstance(estimator, FailedDetection):  # its error: failed_detections
            rows.append((level, trial, attack, model, defense, "", DETECTOR_FAILED, 1.0))
    with one_blas_thread():
        rows.extend(_model_records(models, dataset, test_masks, infos, level, predictions))
    masks = {(s.trial, s.attack): s.data.mask for s in sets}
    reference = np.bincount(dataset.y, minlength=dataset.n_classes)
    for s in sets:
        shift = class_shift(s.data.y, reference)
        rows.append((level, s.trial, s.attack, "", "", CLASS_BALANCE, CLASS_SHIFT, shift))
    for (trial, attack, detector), d in detections.items():
        if isinstance(d, FailedDetection):  # no precision or recall to invent
            rows.append((level, trial, attack, "", "", detector, FAILED, 1.0))
            continue
        scores = detection_metrics(masks[(trial, attack)], d.scores, d.flags)
        scores.update(recall_at_fpr(masks[(trial, attack)], d))
        for metric, value in scores.items():
            rows.append((level, trial, attack, "", "", detector, metric, value))
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _model_records(
    models: dict[ModelKey, Any],
    dataset: Dataset,
    test_masks: np.ndarray,
    infos: dict[tuple[int, str], dict[str, Any]],
    level: float,
    predictions: Predictions,
) -> list[tuple]:
    """The fitted models' record rows (``evaluate_level``)."""
    rows = []
    scored = {}  # a model shared by several keys (train_level) is scored once
    views: dict[int, tuple[Encoding, pd.DataFrame, np.ndarray]] = {}
    # A list: a model whose scoring raises leaves ``predictions`` (and is marked failed).
    for (trial, attack, model, defense), predicted in list(predictions.items()):
        key = (trial, attack, model, defense)
        estimator = models[key]
        test = test_masks[trial]
        once = (trial, id(estimator))
        if once not in scored:
            try:
                scored[once] = _test_scores(estimator, dataset, test, predicted)
            except Exception as error:  # predict_proba or decision_function raised
                scored[once] = failed_prediction(key, "scoring classes", error)
        if isinstance(scored[once], FailedFit):
            models[key] = scored[once]
            del predictions[key]
            rows.append((level, trial, attack, model, defense, "", FAILED, 1.0))
            continue
        scores = dict(scored[once])
        info = infos.get((trial, attack), {})
        if ("trigger_features" in info or SUBPOPULATION in info) and trial not in views:
            views[trial] = _test_view(dataset, test_masks[trial])
        if "trigger_features" in info:
            encoding, test_rows, encoded = views[trial]
            others = dataset.y[test] != info["target_class"]
            if others.any():
                stamped = stamp_trigger(
                    encoded[others], info["trigger_features"], info["trigger_values"]
                )
                if encoding is not None:  # raw rows a source could send, as the attack's
                    stamped = encoding.decode(stamped, test_rows[others])
                try:
                    hits = estimator.predict(stamped) == info["target_class"]
                    scores["attack_success_rate"] = float(hits.mean())
                except Exception:  # noqa: BLE001 - its other scores stand; the error is printed
                    traceback.print_exc(file=sys.stderr)
        if SUBPOPULATION in info:
            inside = in_subpopulation(views[trial][2], info)
            if inside.any():
                right = predicted[inside] == dataset.y[test][inside]
                scores["subpopulation_accuracy"] = float(right.mean())
        for metric, value in scores.items():
            rows.append((level, trial, attack, model, defense, "", metric, value))
    return rows


def _test_view(
    dataset: Dataset | Table, test_mask: np.ndarray
) -> tuple[Encoding | None, pd.DataFrame | None, np.ndarray]:
    """A trial's clean test rows in the space its attacks worked in: for a Table, the
    encoding fitted on the clean training split (``attack_view``), the raw test rows
    and their encoding; for a Dataset, its matrix."""
    if not isinstance(dataset, Table):
        return None, None, dataset.X[test_mask]
    _, encoding, _ = attack_view(dataset, test_mask)
    test_rows = dataset.features[test_mask].reset_index(drop=True)
    return encoding, test_rows, encoding.transform(test_rows)


def _test_scores(
    estimator: Any, dataset: Dataset, test: np.ndarray, predicted: np.ndarray
) -> dict[str, float]:
    """A fitted model's scores on a clean test split: ``classification_metrics``, and
    ``roc_auc`` where it has class scores; ``balanced_accuracy`` and ``roc_auc`` only
    where the split has two classes or more (else they have no record, and ``n``
    in summary.csv counts the trials that measured them)."""
    from poisonlab.metrics import classification_metrics, roc_auc
    from poisonlab.models import class_scores

    scores = classification_metrics(dataset.y[test], predicted, dataset.n_classes)
    if scores["balanced_accuracy"] != scores["balanced_accuracy"]:  # NaN: one class tested
        del scores["balanced_accuracy"]
    ranked = class_scores(estimator, dataset.X[test], dataset.n_classes)
    if ranked is not None:
        auc = roc_auc(dataset.y[test], ranked)
        if auc == auc:  # NaN: fewer than two classes in the test split
            scores["roc_auc"] = auc
    return scores


def confusion_level(
    predictions: Predictions, dataset: Dataset, test_masks: np.ndarray, level: float
) -> pd.DataFrame:
    """Confusion counts of one level, summed over trials, per attack, model and defence.

    Long format (``CONFUSION_COLUMNS``), with class names in ``true`` and
    ``predicted``; every class pair is listed, zero counts included.
    """
    k = dataset.n_classes
    totals: dict[tuple[str, str, str], np.ndarray] = {}
    for (trial, attack, model, defense), predicted in predictions.items():
        y_true = dataset.y[test_masks[trial]]
        counts = np.bincount(y_true * k + predicted.astype(np.int64), minlength=k * k)
        key = (attack, model, defense)
        totals[key] = totals.get(key, 0) + counts.reshape(k, k)
    rows = [
        (level, attack, model, defense, dataset.class_names[i], dataset.class_names[j], int(c))
        for (attack, model, defense), matrix in totals.items()
        for (i, j), c in np.ndenumerate(matrix)
    ]
    return pd.DataFrame(rows, columns=CONFUSION_COLUMNS)


def write_records(records: pd.DataFrame, path: str | Path) -> None:
    records.to_parquet(path, index=False)


def read_records(paths: list[str | Path]) -> pd.DataFrame:
    """Per-level Parquet tables (records, confusion counts, quantity records) as one frame."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


# --- summarize ------------------------------------------------------------------------

RECOVERY = "recovery"
DEFENCE_COST = "defence_cost"


def _paired(model_records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each defended score beside the same trial's undefended score at its level
    (``poisoned``) and at level 0 (``clean``), by trial, attack and model.

    Without level 0 in the config there is no clean score, so nothing is paired;
    a trial whose defended model was not fitted has no defended score.
    """
    scores = model_records[model_records["metric"] == metric]
    undefended = scores[scores["defense"] == NO_DEFENSE]
    pair = ["trial", "attack", "model"]
    clean = undefended[undefended["poison_level"] == 0.0][[*pair, "value"]]
    poisoned = undefended[["poison_level", *pair, "value"]]
    defended = scores[scores["defense"] != NO_DEFENSE]
    return defended.merge(
        poisoned.rename(columns={"value": "poisoned"}), on=["poison_level", *pair]
    ).merge(clean.rename(columns={"value": "clean"}), on=pair)


def recovery_summary(model_records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``recovery`` rows of summary.csv: the share of the loss to poisoning a defence wins back.

    Per level, attack, model and defence, over paired trials:
    mean(defended - poisoned) / mean(clean - poisoned), in ``metric``, with
    Fieller's 95% interval over paired trials (``stats.ratio_of_means_ci``),
    valid with 2 trials too. Only where poisoning cost something: where the
    loss's own 95% interval (Student-t over the paired trials) reaches zero there
    is no loss to recover, and no row; that is also where Fieller's interval
    would have no upper bound.
    """
    from poisonlab.stats import mean_ci, ratio_of_means_ci

    rows = []
    groups = _paired(model_records, metric).groupby(
        ["poison_level", "attack", "model", "defense"], sort=False
    )
    for (level, attack, model, defense), frame in groups:
        loss = (frame["clean"] - frame["poisoned"]).to_numpy()
        _, loss_low, _, _ = mean_ci(loss)
        if not loss_low > 0:  # NaN (one trial) too
            continue
        won = (frame["value"] - frame["poisoned"]).to_numpy()
        mean, low, high, n = ratio_of_means_ci(won, loss)
        rows.append((level, attack, model, defense, RECOVERY, mean, low, high, n))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def defence_cost_records(model_records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``defence_cost`` records at level 0: clean minus defended ``metric`` per trial.

    What a defence costs where there is nothing to defend against: the score
    lost to the clean rows it removed (negative: it gained).
    """
    paired = _paired(model_records, metric)
    paired = paired[paired["poison_level"] == 0.0].copy()
    paired["value"] = paired["clean"] - paired["value"]
    paired["metric"] = DEFENCE_COST
    return paired[RECORD_COLUMNS]


def _summarize(records: pd.DataFrame, keys: list[str], order: dict[str, list[str]]) -> pd.DataFrame:
    """Mean and 95% CI of ``value`` over trials, per group of ``keys``; no interval where
    every trial gave the same value (``stats.mean_ci``'s ``empty_if_tied``).

    Rows are sorted by level, then by each key in ``order`` (config order; names
    not listed there come after, alphabetically).
    """
    from poisonlab.metrics import METRIC_BOUNDS
    from poisonlab.stats import mean_ci

    rows = []
    metric_at = keys.index("metric")
    for group, frame in records.groupby(keys, sort=False):
        bounds = METRIC_BOUNDS.get(group[metric_at])
        mean, low, high, n = mean_ci(frame["value"].to_numpy(), bounds=bounds, empty_if_tied=True)
        rows.append((*group, mean, low, high, n))
    summary = pd.DataFrame(rows, columns=[*keys, "mean", "ci_low", "ci_high", "n"])
    return _sort(summary, keys, order)


_MODEL_KEYS = ["poison_level", "attack", "model", "defense", "metric"]


def _sort(summary: pd.DataFrame, keys: list[str], order: dict[str, list[str]]) -> pd.DataFrame:
    """Rows by level, then by each key in ``order`` (config order, then the rest by name)."""
    ranks = {"poison_level": summary["poison_level"]}
    for key in keys[1:]:
        names = order[key] + sorted(set(summary[key]) - set(order[key]))
        ranks[key] = summary[key].map({name: i for i, name in enumerate(names)})
    index = pd.DataFrame(ranks).sort_values(keys, kind="stable").index
    return summary.loc[index].reset_index(drop=True)


def summarize(
    records: pd.DataFrame, config: dict[str, Any], metric: str = "accuracy"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """summary.csv and detection.csv tables (DESIGN.md columns) from per-trial records.

    ``recovery`` and ``defence_cost`` are measured in ``metric``, the headline
    metric (``metrics.headline_metric``).
    """
    order = {
        "attack": config["poison"]["attacks"],
        "model": config["train"]["models"],
        "defense": defenses(config),
        "detector": [*config["validate"]["detectors"], CLASS_BALANCE],
        "metric": [
            "accuracy",
            "balanced_accuracy",
            "f1_macro",
            "roc_auc",
            RECOVERY,
            DEFENCE_COST,
            UNFITTED,
            FAILED,
            DETECTOR_FAILED,
            "precision",
            "recall",
            "recall_at_1pct_fpr",
            "recall_at_5pct_fpr",
            "f1",
            "roc_auc",
            "average_precision",
            "flag_rate",
            CLASS_SHIFT,
        ],
    }
    model_records = records[records["detector"] == ""]
    costs = defence_cost_records(model_records, metric)
    recovery = recovery_summary(model_records, metric)
    detection_records = records[records["detector"] != ""]
    summary = _summarize(
        pd.concat([model_records, costs], ignore_index=True),
        ["poison_level", "attack", "model", "defense", "metric"],
        order,
    )
    if not recovery.empty:
        summary = _sort(pd.concat([summary, recovery], ignore_index=True), _MODEL_KEYS, order)
    detection = _summarize(
        detection_records,
        ["poison_level", "attack", "detector", "metric"],
        {k: v for k, v in order.items() if k in ("attack", "detector", "metric")},
    )
    return summary[SUMMARY_COLUMNS], detection[DETECTION_COLUMNS]


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """CSV with fixed float formatting, so equal results give equal bytes."""
    frame.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")


# --- the whole experiment in one process ----------------------------------------------


def table_names(dataset: Dataset | Table) -> TableNames:
    """The dataset's names for the user's gates (with the raw view's, for a Table)."""
    from poisonlab.detectors import TableNames

    view = table_view(dataset) if isinstance(dataset, Table) else None
    return TableNames(dataset.feature_names, dataset.class_names, dataset.label_name, view)


def model_columns(dataset: Dataset | Table) -> Any:
    """What ``train_level`` builds models for: a Table's ``TableView`` (models take raw
    rows), a Dataset's feature names (models take its matrix)."""
    return table_view(dataset) if isinstance(dataset, Table) else dataset.feature_names


def run_level(
    dataset: Dataset | Table, test_masks: np.ndarray, config: dict[str, Any], level: float
) -> pd.DataFrame:
    """Poison, detect, train and evaluate one level; return its records."""
    sets = list(poison_level(dataset, test_masks, config, level))
    clean = clean_splits(dataset, test_masks)
    detections = detect_level(sets, config, dataset.n_classes, table_names(dataset), clean)
    models = train_level(sets, detections, config, model_columns(dataset))
    return evaluate_level(models, dataset, test_masks, sets, detections, level)


def run_experiment(config: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The pipeline's work in one process: (summary, detection, records), on the table's
    raw view as the pipeline runs it."""
    from poisonlab.splits import trial_masks

    dataset, _ = load_table(config["dataset"])
    test_masks = trial_masks(dataset, config)
    records = pd.concat(
        [run_level(dataset, test_masks, config, level) for level in config["poison"]["levels"]],
        ignore_index=True,
    )
    from poisonlab.metrics import headline_metric

    counts = np.bincount(dataset.y, minlength=dataset.n_classes).tolist()
    metric, _ = headline_metric(config["report"]["metric"], counts)
    summary, detection = summarize(records, config, metric)
    return summary, detection, records
