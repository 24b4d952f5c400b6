"""Shared fixtures: a scratch environment, the project's commands run as a user runs them,
and one small end-to-end run on the KFP local runner that several tests inspect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A small experiment that still exercises every part: two levels, both attacks,
# every default model and detector, two trials (so CIs exist).
SMALL_RUN = ["trials=2", "poison.levels=[0.0,0.2]"]


# Session fixtures that run the whole pipeline (~1 min each): under pytest-xdist every
# worker would run its own copy, so the tests that use them share one worker.
SHARED_RUNS = {"small_run", "rerun_with_credentials"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SHARED_RUNS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("shared_runs"))


@pytest.fixture(scope="session", autouse=True)
def scratch_environment(tmp_path_factory: pytest.TempPathFactory):
    """Keep runner temp dirs and MLflow telemetry out of the machine's state."""
    scratch = tmp_path_factory.mktemp("env")
    saved = dict(os.environ)
    os.environ["TMPDIR"] = str(scratch)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.setdefault("CI", "true")
    yield
    os.environ.clear()
    os.environ.update(saved)


def run_command(
    script: str, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``python <script> args...`` from the repo as a user would; capture its output."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def set_args(*overrides: str) -> list[str]:
    """``--set`` flags for each override."""
    return [arg for override in overrides for arg in ("--set", override)]


def _small_local_run(base: Path, env: dict | None = None) -> Path:
    """Run configs/iris.yaml with SMALL_RUN into ``base/out`` (MLflow in ``base``); return it."""
    output = base / "out"
    tracking = f"sqlite:///{base / 'mlflow.db'}"
    result = run_command(
        "submit.py",
        "--local",
        "--config",
        str(ROOT / "configs" / "iris.yaml"),
        *set_args(*SMALL_RUN, f"mlflow.tracking_uri={tracking}"),
        "--output-dir",
        str(output),
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (base / "console.txt").write_text(result.stdout + result.stderr, encoding="utf-8")
    return output


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output directory of one small local pipeline run (Iris, 2 levels, 2 trials)."""
    return _small_local_run(tmp_path_factory.mktemp("small_run"))


# Credential-looking values in the environment of a run: none may reach any output.
FAKE_CREDENTIALS = {
    "MLFLOW_TRACKING_TOKEN": "tok-8f3a1c9e5b7d4e2f",
    "MLFLOW_TRACKING_USERNAME": "user-c41d7e",
    "MLFLOW_TRACKING_PASSWORD": "pw-5e8b2a9f0c3d6e1a",
    "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/creds-7b2e9d41.json",
    "AWS_SECRET_ACCESS_KEY": "aws-3f9c1e7a5b8d2c4e",
}


@pytest.fixture(scope="session")
def rerun_with_credentials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second run of ``small_run``'s config, with FAKE_CREDENTIALS in its environment.

    The tracking URI stays a local SQLite file, so the MLflow credentials are never
    used; they are there to prove they leak nowhere (and change no result). The
    console output is in ``console.txt`` beside the output directory.
    """
    return _small_local_run(tmp_path_factory.mktemp("rerun"), env=FAKE_CREDENTIALS)
