"""The MLflow mirror against a real ``mlflow server`` on 127.0.0.1 (started once here).

Must-holds of issue 6: one parent and one child per level x attack x model x
defense, found through the REST API (1); the documented re-mirror command
changes no run count (2); a closed port still gives every output, exit 0 and a
warning within 60 s, and the warning's command then mirrors into a live server (3).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import numpy as np
import pytest

from poisonlab import experiment
from poisonlab.config import load_config, redact_uri
from poisonlab.data import load_dataset, split_masks
from poisonlab.errors import PoisonlabError
from poisonlab.mirror import job_tags, mirror_status, remirror_command, representative_models
from tests.conftest import ROOT, run_command, set_args
from tests.mlflow_server import (
    free_port,
    metrics,
    params,
    rest,
    runs_of,
    start_server,
    stop_server,
    tags,
)

# Small but with every axis of a child: 2 levels x 1 attack x 2 models x 2 defenses = 8.
LIVE_RUN = [
    "trials=2",
    "poison.levels=[0.0,0.2]",
    "poison.attacks=[label_flip]",
    "train.models=[logistic_regression,decision_tree]",
    "validate.detectors=[knn]",
]
LIVE_CHILDREN = 8
DOWN_RUN = [*LIVE_RUN[:3], "train.models=[logistic_regression]", "validate.detectors=[knn]"]
SECRET = "s3cret-token-must-not-leak"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mlflow_server")
    process, uri = start_server(directory)
    yield uri
    stop_server(process)


def _run(tmp_path_factory, name: str, overrides: list[str], tracking_uri: str, experiment: str):
    output = tmp_path_factory.mktemp(name) / "out"
    result = run_command(
        "submit.py",
        "--local",
        *set_args(
            *overrides, f"mlflow.tracking_uri={tracking_uri}", f"mlflow.experiment={experiment}"
        ),
        "--output-dir",
        str(output),
        env={"MLFLOW_TRACKING_TOKEN": SECRET},
    )
    return output, result


@pytest.fixture(scope="module")
def live_run(server, tmp_path_factory):
    """A local pipeline run mirroring into the live server, with a token in its environment."""
    output, result = _run(tmp_path_factory, "live", LIVE_RUN, server, "mirror-live")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output, result


def _run_key(output) -> str:
    return json.loads((output / "manifest.json").read_text())["run_key"]


@pytest.mark.slow
def test_local_run_makes_one_parent_and_a_child_per_group(server, live_run):
    """Must-hold 1, through the REST API."""
    output, result = live_run
    assert "warning" not in result.stderr
    runs = runs_of(server, "mirror-live", _run_key(output))
    parents = [r for r in runs if "mlflow.parentRunId" not in tags(r)]
    children = [r for r in runs if "mlflow.parentRunId" in tags(r)]
    assert len(parents) == 1 and len(children) == LIVE_CHILDREN
    parent_id = parents[0]["info"]["run_id"]
    groups, bounded = set(), 0
    for child in children:
        assert tags(child)["mlflow.parentRunId"] == parent_id
        values = metrics(child)
        if "accuracy_ci_low" in values:  # not logged where the trials tied (mean_ci)
            assert values["accuracy_ci_low"] <= values["accuracy_mean"]
            assert values["accuracy_mean"] <= values["accuracy_ci_high"]
            bounded += 1
        assert "detection_knn_flag_rate_mean" in values
        p = params(child)
        assert {p["trials"], p["seed"]} == {"2", "42"}
        groups.add((p["poison_level"], p["attack"], p["model"], p["defense"]))
        assert tags(child)["kfp.pipeline_job_name"] == _run_key(output)
    assert groups == {
        (level, "label_flip", model, defense)
        for level in ("0", "0.2")
        for model in ("logistic_regression", "decision_tree")
        for defense in ("none", "knn")
    }
    assert bounded > 0
    parent = rest(server, "runs/get", run_id=parent_id)["run"]
    assert params(parent)["data_sha256"] == tags(parent)["data_sha256"]
    assert "kfp.mirror_task" in tags(parent)
    datasets = parent["inputs"]["dataset_inputs"]
    assert len(datasets) == 1 and json.loads(datasets[0]["dataset"]["source"]) == {
        "tags": {"uri": "sklearn:iris"}
    }
    artifacts = rest(server, "artifacts/list", run_id=parent_id)
    assert {"report.html", "summary.csv", "manifest.json"} <= {
        f["path"] for f in artifacts["files"]
    }
    models = _models(server, parent["info"]["experiment_id"], _run_key(output))
    assert sorted(m["info"]["source_run_id"] for m in models) == sorted(
        c["info"]["run_id"] for c in children
    )
    status = json.loads((output / "mirror.json").read_text())
    assert status["ok"] and status["parent_run_id"] == parent_id


def _models(uri: str, experiment_id: str, run_key: str) -> list[dict]:
    found = rest(
        uri,
        "logged-models/search",
        {
            "experiment_ids": [experiment_id],
            "filter": f"tags.`poisonlab.run_key` = '{run_key}'",
            "max_results": 100,
        },
    )
    return found.get("models", [])


@pytest.mark.slow
def test_remirror_changes_no_run_count_history_or_models(server, live_run):
    """Must-hold 2: the documented command, run again on the same results."""
    output, _ = live_run
    run_key = _run_key(output)
    before = runs_of(server, "mirror-live", run_key)
    experiment_id = before[0]["info"]["experiment_id"]
    models_before = _models(server, experiment_id, run_key)
    command = remirror_command(output, server)
    result = subprocess.run(
        [sys.executable, *shlex.split(command)[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 new, 0 new models" in result.stdout
    after = runs_of(server, "mirror-live", run_key)
    assert sorted(r["info"]["run_id"] for r in after) == sorted(r["info"]["run_id"] for r in before)
    assert len(_models(server, experiment_id, run_key)) == len(models_before) == LIVE_CHILDREN
    child = next(r for r in after if "mlflow.parentRunId" in tags(r))
    history = rest(
        server, "metrics/get-history", run_id=child["info"]["run_id"], metric_key="accuracy_mean"
    )["metrics"]
    assert len(history) == 1


@pytest.mark.slow
def test_unreachable_server_keeps_results_warns_and_mirrors_later(server, tmp_path_factory):
    """Must-hold 3: a closed port, then the warning's command into a live server."""
    closed = f"http://127.0.0.1:{free_port()}"
    output, result = _run(tmp_path_factory, "down", DOWN_RUN, closed, "mirror-later")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("summary.csv", "detection.csv", "report.html", "manifest.json"):
        assert (output / name).stat().st_size > 0
    status = json.loads((output / "mirror.json").read_text())
    assert not status["ok"] and status["seconds"] < 60
    warning = result.stderr.strip().splitlines()
    assert warning[0].startswith("warning:") and str(output) in warning[0]
    command = shlex.split(warning[-1].strip())
    assert command[:4] == ["python", "-m", "poisonlab.mirror", "--results"]
    # The same command, pointed at a server that is up.
    command[command.index("--tracking-uri") + 1] = server
    later = subprocess.run(
        [sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert later.returncode == 0, later.stdout + later.stderr
    runs = runs_of(server, "mirror-later", _run_key(output))
    assert len(runs) == 1 + 2 * 2  # parent + 2 levels x 1 attack x 1 model x 2 defenses
    assert json.loads((output / "mirror.json").read_text())["ok"]


@pytest.mark.slow
def test_token_is_never_written(server, live_run):
    """The token in the environment reaches no file, log line, param or tag."""
    output, result = live_run
    assert SECRET not in result.stdout + result.stderr
    for path in output.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    for run in runs_of(server, "mirror-live", _run_key(output)):
        assert SECRET not in json.dumps(run)


def test_tracking_uri_with_credentials_is_refused_before_anything_runs(tmp_path):
    uri = "https://alice:hunter2@mlflow.example.com"
    result = run_command(
        "submit.py",
        "--local",
        *set_args(f"mlflow.tracking_uri={uri}"),
        "--output-dir",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "mlflow.tracking_uri" in result.stderr
    assert "hunter2" not in result.stderr and "MLFLOW_TRACKING_TOKEN" in result.stderr
    assert not (tmp_path / "summary.csv").exists()
    assert redact_uri(uri) == "https://***@mlflow.example.com"
    with pytest.raises(PoisonlabError, match="carries credentials"):
        load_config(None, [f"mlflow.tracking_uri={uri}"])


def test_mirror_status_on_a_missing_results_dir_is_a_status_not_an_exception(tmp_path):
    status = mirror_status(tmp_path, "http://127.0.0.1:9")
    assert status["ok"] is False and "manifest.json" in status["message"]


def test_representative_models_are_the_pipelines_trial_0_models():
    """Refitting trial 0 alone gives the models the train step fitted for trial 0."""
    config = load_config(None, ["trials=3", "poison.levels=[0.0,0.3]"])
    dataset, _ = load_dataset("sklearn:iris")
    masks = split_masks(dataset.y, 0.2, config["seed"], config["trials"])
    representative = representative_models(dataset, config)
    assert len(representative) == 2 * 2 * 3 * 3
    for level in config["poison"]["levels"]:
        sets = list(experiment.poison_level(dataset, masks, config, level))
        clean = experiment.clean_splits(dataset, masks)  # calibrated, as the pipeline is
        detections = experiment.detect_level(sets, config, dataset.n_classes, None, clean)
        trial0 = [s for s in sets if s.trial == 0]
        fitted = experiment.train_level(trial0, detections, config)
        for (_, attack, model, defense), estimator in fitted.items():
            np.testing.assert_array_equal(
                representative[(level, attack, model, defense)].predict(dataset.X),
                estimator.predict(dataset.X),
            )


def test_job_tags_leave_out_unresolved_placeholders():
    assert job_tags("poisonlab-sweep-1", "{{$.pipeline_job_uuid}}", "mirror") == {
        "kfp.pipeline_job_name": "poisonlab-sweep-1",
        "kfp.mirror_task": "mirror",
    }


def test_token_secret_is_read_from_secret_manager_with_the_tasks_credentials():
    """The Vertex route: the task reads the token by name; a wrong name is a clear error."""
    import base64
    import http.server
    import threading

    from google.auth.credentials import AnonymousCredentials

    from poisonlab.mirror import read_secret

    name = "projects/p/secrets/mlflow-token/versions/latest"
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            ok = self.path == f"/v1/{name}:access"
            body = json.dumps({"payload": {"data": base64.b64encode(b"tok-123\n").decode()}})
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode() if ok else b"{}")

        def log_message(self, *args):
            pass

    fake = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{fake.server_port}"
    try:
        assert read_secret(name, endpoint, AnonymousCredentials()) == "tok-123"
        with pytest.raises(PoisonlabError, match="HTTP 404"):
            read_secret(name.replace("latest", "7"), endpoint, AnonymousCredentials())
    finally:
        fake.shutdown()
    assert seen == [f"/v1/{name}:access", f"/v1/{name.replace('latest', '7')}:access"]
    with pytest.raises(PoisonlabError, match="mlflow.token_secret"):
        load_config(None, ["mlflow.token_secret=hunter2"])


def test_the_levels_hand_the_mirror_the_models_train_fitted_for_trial_0(tmp_path):
    """The pipeline's own trial-0 models reach the mirror: one per child, none refitted."""
    from poisonlab import steps
    from poisonlab.config import canonical_json
    from poisonlab.model_folders import read_model_files

    config = load_config(None, ["trials=2", "poison.levels=[0.0,0.3]", "train.models=[svm]"])
    text = canonical_json(config)
    data, splits = str(tmp_path / "data"), str(tmp_path / "splits")
    steps.load(text, data, splits)
    level_dirs, trained = [], {}
    for level in config["poison"]["levels"]:
        p, d, m, out = (str(tmp_path / f"{name}-{level}") for name in ("p", "d", "m", "out"))
        steps.poison(text, level, data, splits, p)
        steps.validate(text, p, d, data, splits)
        steps.train(text, p, d, m)
        steps.evaluate(text, level, data, splits, p, d, m, out)
        level_dirs.append(out)
        for (trial, attack, model, defense), estimator in experiment.read_models(m).items():
            if trial == 0:
                trained[(level, attack, model, defense)] = estimator
    handed = read_model_files(steps.level_model_files(level_dirs))
    assert set(handed) == set(trained) and len(handed) == 2 * 2 * 1 * 3
    dataset, _ = load_dataset("sklearn:iris")
    for key, estimator in handed.items():
        np.testing.assert_array_equal(estimator.predict(dataset.X), trained[key].predict(dataset.X))


@pytest.mark.parametrize(
    "source",
    [
        "sklearn:iris",
        "synthetic:rows=300,features=5,classes=3,informative=4",
        str(ROOT / "tests/corpus/data/flowers.csv"),
    ],
)
def test_every_kind_of_source_becomes_an_mlflow_dataset(source):
    """MLflow resolves only URIs: tables made by code must be recorded as made by code."""
    import mlflow.data

    from poisonlab.mirror import dataset_input

    label = "species" if source.endswith(".csv") else None
    dataset, sha256 = load_dataset(source, label)
    logged = dataset_input(dataset, source, sha256)
    assert logged.digest == sha256[:32] and len(logged.df) == len(dataset.y)
    # The schema, inferred from the first rows only, is the one MLflow infers from all.
    assert logged.schema == mlflow.data.from_pandas(logged.df).schema
