"""One poison level failing does not take the others' results with it.

kfp 2.17.0's local runner drops every iteration's outputs when one ParallelFor
iteration fails, so a failing per-level step is contained as data (see
poisonlab/failures.py). A test-only environment variable fails a level on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from poisonlab import steps
from poisonlab.config import canonical_json, validate_config
from poisonlab.failures import FAIL_LEVELS_ENV, read_failure
from tests.conftest import ROOT, run_command, set_args

FLOWERS = "tests/corpus/data/flowers.csv"


def _config(**extra) -> dict:
    return validate_config(
        {
            "dataset": {"source": str(ROOT / FLOWERS), "label_column": "species"},
            "poison": {"levels": [0.0, 0.2], "attacks": ["label_flip"]},
            "validate": {"detectors": ["knn"]},
            "train": {"models": ["logistic_regression"]},
            "trials": 2,
            **extra,
        }
    )


def test_a_failed_step_is_passed_along_its_level_and_reported(tmp_path: Path, monkeypatch):
    """The steps the components call, in process: level 0.2 fails, level 0 is reported."""
    monkeypatch.setenv(FAIL_LEVELS_ENV, "0.2")
    text = canonical_json(_config())
    data, splits = str(tmp_path / "data"), str(tmp_path / "splits")
    steps.load(text, data, splits)
    records = []
    for level in (0.0, 0.2):
        p, d, m, r = (str(tmp_path / f"{name}-{level}") for name in "pdmr")
        hashes = steps.poison(text, level, data, splits, p)
        steps.validate(text, p, d, data, splits)
        steps.train(text, p, d, m)
        headline = steps.evaluate(text, level, data, splits, p, d, m, r)
        assert bool(hashes) == bool(headline) == (level == 0.0)
        records.append(r)
    failure = read_failure(Path(records[1]) / steps.RECORDS_FILE)
    assert failure["level"] == 0.2 and failure["step"] == "poison"
    assert FAIL_LEVELS_ENV in failure["error"]
    results = tmp_path / "results"
    steps.report(text, records, data, str(results), "run-1")
    manifest = json.loads((results / "manifest.json").read_text())
    assert [f["level"] for f in manifest["provenance"]["failed_levels"]] == [0.2]
    assert set(pd.read_csv(results / "summary.csv")["poison_level"]) == {0.0}
    assert "level 0.2: poison failed" in (results / "report.html").read_text()
    assert "- level 0.2: poison failed" in (results / "report.md").read_text()


def test_a_failing_level_on_the_local_runner_leaves_the_others(tmp_path: Path):
    """End to end: level 0.2's task raises; report and mirror still run and name it."""
    output = tmp_path / "out"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_command(
        "submit.py",
        "--local",
        *set_args(
            f"dataset.source={FLOWERS}",
            "dataset.label_column=species",
            "poison.levels=[0.0,0.2]",
            "poison.attacks=[label_flip]",
            "validate.detectors=[knn]",
            "train.models=[logistic_regression]",
            "trials=2",
            f"mlflow.tracking_uri={tracking}",
        ),
        "--output-dir",
        str(output),
        env={FAIL_LEVELS_ENV: "0.2"},
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: poison level 0.2 failed in poison")
    summary = pd.read_csv(output / "summary.csv")
    assert set(summary["poison_level"]) == {0.0}
    assert set(pd.read_csv(output / "detection.csv")["poison_level"]) <= {0.0}
    manifest = json.loads((output / "manifest.json").read_text())
    assert [(f["level"], f["step"]) for f in manifest["provenance"]["failed_levels"]] == [
        (0.2, "poison")
    ]
    report = (output / "report.html").read_text()
    assert "1 poison level(s) failed" in report and "level 0.2: poison failed" in report
    # String labels from a column not called "target" keep their names in the report.
    for name in ("setosa", "versicolor", "virginica"):
        assert name in report
    # The mirror ran too, and tagged the failed level on the parent run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("data-poisoning")
    parents = [
        run
        for run in client.search_runs([experiment.experiment_id])
        if "poisonlab.child_key" not in run.data.tags
    ]
    assert len(parents) == 1
    assert parents[0].data.tags["failed_levels"] == "0.2 (poison)"
    assert parents[0].data.tags["data_sha256"] == manifest["provenance"]["input_sha256"]


def test_every_task_that_can_meet_a_passing_failure_retries(tmp_path: Path):
    """The compiled spec: each per-level task and load carry a retry policy.

    (The mirror task never fails: a mirror failure is its output, see the mirror's docs.)
    """
    import yaml
    from kfp import compiler

    from pipelines.poisoning import RETRIES, build_pipeline

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_pipeline("example.com/img:1"), package_path=str(path))
    spec = yaml.safe_load(path.read_text())
    loop = next(t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t)
    loop_tasks = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    tasks = {**loop_tasks, **spec["root"]["dag"]["tasks"]}
    for name in ("load", "poison", "validate", "train", "evaluate"):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == RETRIES, name
