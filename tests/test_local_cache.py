"""Local runs people can lean on (issue 18): concurrent runs on one new SQLite store (1),
a cached second run that reruns nothing but the mirror (2), a killed run resumed (3),
and nothing but results in the results folder."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.local import SCRATCH_PREFIX, clean_stale_scratch, complete_cache_entries
from poisonlab import steps
from poisonlab.config import canonical_json, load_config
from poisonlab.data import INPUT_SHA256_ENV
from poisonlab.errors import PoisonlabError
from tests.conftest import ROOT, run_command, set_args

# Every axis of a run, small: 2 levels x 1 attack x 1 model x 2 defenses = 4 children.
TINY = [
    "trials=2",
    "poison.levels=[0.0,0.2]",
    "poison.attacks=[label_flip]",
    "train.models=[logistic_regression]",
    "validate.detectors=[knn]",
]
TINY_CHILDREN = 4
_EXECUTED = re.compile(r"Executing task '([^']+)'")


def _executed(output: Path) -> list[str]:
    """The tasks the runner ran (not taken from the cache), from the run's log."""
    return _EXECUTED.findall((output / "pipeline.log").read_text(encoding="utf-8"))


def _no_scratch(output: Path) -> bool:
    return not [p for p in output.iterdir() if "poisonlab-" in p.name or p.name.startswith(".")]


# --- units ----------------------------------------------------------------------------


def test_only_dead_runs_scratch_is_cleaned(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead, alive, unmarked = (tmp_path / f"{SCRATCH_PREFIX}{n}" for n in ("a", "b", "c"))
    for scratch in (dead, alive, unmarked):
        (scratch / "tmp").mkdir(parents=True)
    (dead / "pid").write_text(finished.stdout.strip())
    (alive / "pid").write_text(str(os.getpid()))
    assert clean_stale_scratch(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and unmarked.exists()


def test_cached_metrics_get_the_file_the_cache_looks_for(tmp_path):
    metrics, dataset = tmp_path / "run" / "gate", tmp_path / "run" / "detections"
    entry = {
        "gate": {"__kfp_artifact__": True, "schema_title": "system.Metrics", "uri": str(metrics)},
        "detections": {
            "__kfp_artifact__": True,
            "schema_title": "system.Dataset",
            "uri": str(dataset),
        },
        "Output": "pass",
    }
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "k.json").write_text(json.dumps(entry))
    (tmp_path / "tasks" / "half-written.json").write_text("{")
    assert complete_cache_entries(tmp_path / "tasks") == 1
    assert metrics.is_file() and metrics.stat().st_size == 0
    # A missing dataset stays missing: kfp must run that task again.
    assert not dataset.exists()


def test_load_refuses_data_that_changed_after_the_check(tmp_path, monkeypatch):
    source = tmp_path / "table.csv"
    source.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(40)))
    config = load_config(None, [f"dataset.source={source}", "trials=1"])
    monkeypatch.setenv(INPUT_SHA256_ENV, "0" * 64)
    with pytest.raises(PoisonlabError, match="dataset.source: .* changed after the run started"):
        steps.load(canonical_json(config), str(tmp_path / "d"), str(tmp_path / "s"))


def test_a_cached_load_is_keyed_by_the_datas_content(tmp_path):
    """kfp keys a task by its command, inputs and environment: the data's hash is in load's."""
    from kfp import compiler

    from pipelines.poisoning import build_pipeline

    def load_env(digest: str) -> list:
        path = tmp_path / f"{digest or 'none'}.yaml"
        compiler.Compiler().compile(build_pipeline("img", digest), package_path=str(path))
        spec = yaml.safe_load(path.read_text())
        return spec["deploymentSpec"]["executors"]["exec-load"]["container"].get("env", [])

    assert load_env("ab12") == [{"name": INPUT_SHA256_ENV, "value": "ab12"}]
    assert load_env("") == []


# --- end to end -----------------------------------------------------------------------


def _submit(output: Path, tracking: str, *extra: str, cache: Path | None = None):
    env = {"POISONLAB_CACHE_DIR": str(cache)} if cache else None
    return run_command(
        "submit.py",
        "--local",
        *extra,
        *set_args(*TINY, f"mlflow.tracking_uri={tracking}"),
        "--output-dir",
        str(output),
        env=env,
    )


@pytest.mark.slow
def test_a_killed_cached_run_resumes_where_it_stopped(tmp_path):
    output, cache, tracking = tmp_path / "out", tmp_path / "cache", f"sqlite:///{tmp_path}/m.db"
    command = [
        sys.executable,
        str(ROOT / "submit.py"),
        "--local",
        "--cache",
        *set_args(*TINY[:1], "poison.levels=[0.0,0.1,0.2]", *TINY[2:]),
        "--set",
        f"mlflow.tracking_uri={tracking}",
        "--output-dir",
        str(output),
    ]
    env = {**os.environ, "POISONLAB_CACHE_DIR": str(cache)}
    run = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    # Killed once a level is done and the others are not: the progress lines say when. A
    # task line after an evaluate's is a later level's, started once that evaluate was cached.
    evaluated = False
    for line in run.stdout:
        done = re.search(r"\b(\w+)\s+success", line)
        if done and done[1] == "evaluate":
            evaluated = True
        elif done and evaluated:
            break
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (output / "summary.csv").exists()
    scratch_base = Path(os.environ["TMPDIR"]).resolve() / f"poisonlab-{os.getuid()}"
    left = list(scratch_base.glob(SCRATCH_PREFIX + "*"))
    assert left  # the killed run could not clean up after itself
    resumed = run_command(*command[1:], env={"POISONLAB_CACHE_DIR": str(cache)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ran = _executed(output)
    assert "load" not in ran and ran.count("evaluate") < 3 and "mirror" in ran, ran
    assert _no_scratch(output)
    assert not [p for p in left if p.exists()]


@pytest.mark.slow
def test_two_runs_at_once_share_one_new_store_and_a_cached_rerun_runs_only_the_mirror(tmp_path):
    """Must-holds 1 and 2 on one pair of runs (each full run costs): two runs started
    together on one new SQLite file, one of them with --cache; then that one again."""
    store, cache = tmp_path / "shared.db", tmp_path / "cache"
    tracking = f"sqlite:///{store}"
    outputs = [tmp_path / "cached", tmp_path / "plain"]
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "submit.py"),
                "--local",
                *flags,
                *set_args(*TINY, f"mlflow.tracking_uri={tracking}"),
                "--output-dir",
                str(output),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "POISONLAB_CACHE_DIR": str(cache)},
        )
        for output, flags in zip(outputs, (["--cache"], []), strict=True)
    ]
    for run in runs:
        out, err = run.communicate(timeout=900)
        assert run.returncode == 0, err[-3000:]
        assert "MLflow: experiment 'data-poisoning', parent run" in out, out[-2000:] + err[-2000:]
        assert "not mirrored" not in err
    with sqlite3.connect(store) as db:
        parents = db.execute(
            "select run_uuid from runs where run_uuid not in "
            "(select run_uuid from tags where key = 'mlflow.parentRunId')"
        ).fetchall()
        assert len(parents) == 2
        for (parent,) in parents:
            (children,) = db.execute(
                "select count(*) from tags where key = 'mlflow.parentRunId' and value = ?",
                (parent,),
            ).fetchone()
            assert children == TINY_CHILDREN

    cached = outputs[0]
    assert "load" in _executed(cached) and "mirror" in _executed(cached)
    again = _submit(cached, tracking, "--cache", cache=cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _executed(cached) == ["mirror"], _executed(cached)
    assert "MLflow: experiment" in again.stdout
    for name in ("summary.csv", "detection.csv"):
        assert (cached / name).read_bytes() == (outputs[1] / name).read_bytes(), name
    assert _no_scratch(cached) and _no_scratch(outputs[1])
