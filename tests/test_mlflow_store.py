"""A tracking store shared by concurrent runs, and what the MLflow UI shows of a run.

Issue 18, must-hold 5 (the experiment opens on its runs) and the skops round trip;
the concurrent runs themselves are in test_local_cache.py.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from poisonlab.mirror import (
    CHILD_KEY_TAG,
    MODEL_NAME,
    _upload_model,
    representative_models,
)
from poisonlab.mlflow_store import (
    CLOUDPICKLE,
    DESCRIPTION_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    SKOPS,
    prepare_store,
    retry_busy,
)
from poisonlab.model_folders import save_model_folder
from tests.conftest import ROOT


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def test_the_experiment_opens_on_runs_and_the_parent_says_what_ran(small_run):
    client = _client(f"sqlite:///{small_run.parent / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("data-poisoning")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    description = parents[0].data.tags[DESCRIPTION_TAG]
    assert "\n" not in description
    for part in ("sklearn:iris", "label_flip", "feature_noise", "0, 0.2", "2 trials"):
        assert part in description, description


def test_models_are_stored_with_skops_and_load_back_as_fitted(small_run, monkeypatch):
    """Every built-in model of the run is skops; loaded back, a forest predicts as the
    trial-0 forest fitted again from the seed."""
    import mlflow.sklearn

    from poisonlab.data import load_configured

    client = _client(f"sqlite:///{small_run.parent / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("data-poisoning")
    models = client.search_logged_models([experiment.experiment_id], max_results=200)
    assert models
    for model in models:
        described = yaml.safe_load(
            Path(urlparse(model.artifact_location).path, "MLmodel").read_text()
        )
        assert described["flavors"]["sklearn"]["serialization_format"] == SKOPS, model.tags
        # Children with the same model share one save; each folder still names its own run.
        assert (described["run_id"], described["model_id"]) == (model.source_run_id, model.model_id)
    level_0 = [m for m in models if m.tags[CHILD_KEY_TAG].startswith("0/")]
    assert len({m.source_run_id for m in level_0}) == len(level_0) > 1
    manifest = json.loads((small_run / "manifest.json").read_text())
    config = manifest["config"]
    dataset, _ = load_configured(config["dataset"])
    refitted = representative_models(dataset, config)
    key = (0.2, "label_flip", "random_forest", "none")
    forest = next(m for m in models if m.tags[CHILD_KEY_TAG] == "0.2/label_flip/random_forest/none")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    loaded = mlflow.sklearn.load_model(forest.artifact_location)
    np.testing.assert_array_equal(loaded.predict(dataset.X), refitted[key].predict(dataset.X))


class _OwnLogisticRegression(LogisticRegression):
    """A user's own estimator class: a type skops is not told to trust."""


def _save_and_upload(client, experiment_id, run_id, name, estimator, example):
    """One child's model as the mirror logs it: saved to a folder, then uploaded."""
    import tempfile

    key = (0.1, "a", name, "none")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / MODEL_NAME
        stored = save_model_folder(estimator, example, folder, key)
        _upload_model(client, experiment_id, "k", key, run_id, folder, {})
    return stored


def test_a_model_skops_will_not_load_is_stored_with_cloudpickle(tmp_path, caplog):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _client(uri)
    experiment_id = client.create_experiment("formats")
    run_id = client.create_run(experiment_id).info.run_id
    X = np.random.default_rng(0).normal(size=(30, 2))
    y = (X[:, 0] > 0).astype(int)
    example = pd.DataFrame(X[:5], columns=["a", "b"])
    mlflow.set_tracking_uri(uri)
    try:
        with caplog.at_level(logging.INFO, logger="poisonlab.model_folders"):
            own = _save_and_upload(
                client, experiment_id, run_id, "own", _OwnLogisticRegression().fit(X, y), example
            )
        run_id_2 = client.create_run(experiment_id).info.run_id
        tree = _save_and_upload(
            client, experiment_id, run_id_2, "tree", DecisionTreeClassifier().fit(X, y), example
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert (own, tree) == (CLOUDPICKLE, SKOPS)
    assert "skops cannot store _OwnLogisticRegression" in caplog.text
    ready = client.search_logged_models([experiment_id])
    assert len(ready) == 2 and all(str(m.status).endswith("READY") for m in ready)
    assert all(m.name == MODEL_NAME for m in ready)


def test_two_processes_set_up_one_fresh_store_at_once(tmp_path):
    """MLflow creates a fresh SQLite store's tables unguarded; two at once raced
    (``duplicate column name: step``). Both set-ups must succeed, one after the other."""
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = f"from poisonlab.mlflow_store import prepare_store; prepare_store({uri!r})"
    started = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for process in started:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()[-2000:]
    with sqlite3.connect(tmp_path / "fresh.db") as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master")}
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"experiments", "runs", "metrics"} <= tables
    assert mode == "wal"  # set up by poisonlab: write-ahead log


def test_a_store_that_existed_keeps_its_journal_mode(tmp_path):
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as db:
        db.execute("create table notes (text)")
    prepare_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert "runs" in {row[0] for row in db.execute("select name from sqlite_master")}


def test_a_busy_store_is_tried_again_and_other_errors_are_not():
    waits: list[float] = []
    answers = iter([sqlite3.OperationalError("database is locked")] * 2 + ["done"])

    def call():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retry_busy(call, sleep=waits.append) == "done"
    assert waits == [1.0, 2.0]
    with pytest.raises(ValueError):
        retry_busy(lambda: (_ for _ in ()).throw(ValueError("bad input")), sleep=waits.append)
    assert waits == [1.0, 2.0]
    locked = sqlite3.OperationalError("database is locked")
    with pytest.raises(sqlite3.OperationalError):
        retry_busy(lambda: (_ for _ in ()).throw(locked), retries=2, sleep=waits.append)
    assert waits == [1.0, 2.0, 1.0, 2.0]


def test_a_failed_saving_process_says_why_and_leaves_saving_to_the_mirror(tmp_path, caplog):
    from poisonlab.model_folders import SavingMeanwhile

    saving = SavingMeanwhile([tmp_path / "no-models.pkl"], tmp_path / "no-data.parquet", tmp_path)
    with caplog.at_level(logging.WARNING, logger="poisonlab.model_folders"):
        assert saving.result() is None
    assert "no-models.pkl" in caplog.text or "No such file" in caplog.text
    saving.close()
