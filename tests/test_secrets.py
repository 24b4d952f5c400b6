"""No secret leaks: credential-looking values set in the environment reach no output,
and the image runs as an unprivileged user with nothing installed when a task starts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAKE_CREDENTIALS, ROOT, run_command, set_args

SECRET_KEY = re.compile(r"(password|passwd|secret|token|api[_-]?key|credential)", re.I)


def _leaks(text: str) -> list[str]:
    return [name for name, value in FAKE_CREDENTIALS.items() if value in text]


def test_compiled_yaml_holds_no_credentials_from_the_environment(tmp_path: Path):
    output = tmp_path / "pipeline.yaml"
    result = run_command("compile.py", "--output", str(output), env=FAKE_CREDENTIALS)
    assert result.returncode == 0, result.stderr
    text = output.read_text()
    assert "poisonlab-sweep" in text
    assert _leaks(text) == []
    assert _leaks(result.stdout + result.stderr) == []


def test_vertex_request_holds_no_credentials_from_the_environment():
    result = run_command(
        "submit.py",
        "--dry-run",
        "--project",
        "demo-project",
        "--pipeline-root",
        "gs://demo-bucket/root",
        *set_args("trials=1"),
        env=FAKE_CREDENTIALS,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pipelineSpec" in result.stdout
    assert _leaks(result.stdout + result.stderr) == []


def test_configs_hold_no_secrets():
    def keys(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield f"{path}{key}", value
                yield from keys(value, f"{path}{key}.")

    for config in sorted((ROOT / "configs").glob("*.yaml")):
        for key, value in keys(yaml.safe_load(config.read_text()) or {}):
            assert not (SECRET_KEY.search(key) and value), f"{config.name}: {key}"
        assert _leaks(config.read_text()) == []


def test_a_run_with_credentials_in_its_environment_leaks_none(rerun_with_credentials: Path):
    """Results, report, manifest, the pipeline log, the console and the MLflow store."""
    files = [p for p in rerun_with_credentials.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"summary.csv", "detection.csv", "report.html", "manifest.json", "pipeline.log"} <= names
    store = rerun_with_credentials.parent / "mlflow.db"
    console = rerun_with_credentials.parent / "console.txt"
    assert store.is_file() and console.is_file()
    for path in [*files, store, console]:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert _leaks(text) == [], path.name


def _dockerfile() -> list[tuple[str, str]]:
    path = ROOT / "Dockerfile"
    if not path.is_file():
        pytest.fail("no Dockerfile at the repository root")
    text = re.sub(r"\\\n", " ", path.read_text())  # join continued lines
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_image_runs_as_a_non_root_user_on_a_pinned_base():
    instructions = _dockerfile()
    users = [args.split(":")[0].strip() for op, args in instructions if op == "USER"]
    assert users, "the Dockerfile sets no USER: the image would run as root"
    assert users[-1] not in ("root", "0")
    bases = [args.split()[0] for op, args in instructions if op == "FROM"]
    for base in bases:
        # A digest, or a tag with an exact version (python:3.11.7-slim), never latest.
        assert "@sha256:" in base or re.search(r":\d+\.\d+\.\d+", base), base
        assert not base.endswith(":latest")
    # Nothing is installed when a task starts: no pip in what the container runs.
    for op, args in instructions:
        if op in ("ENTRYPOINT", "CMD"):
            assert "pip" not in args, args
    assert any(op == "RUN" and "pip install" in args for op, args in instructions)
