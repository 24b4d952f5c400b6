"""A real ``mlflow server`` on 127.0.0.1 for tests, started and stopped by its process id."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

READY_TIMEOUT = 150  # seconds; readiness takes 8 to 45 s on a quiet machine, more on a busy one


def free_port() -> int:
    """A port nothing listens on (closed again at once: also usable as "server down")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(directory: Path) -> tuple[subprocess.Popen, str]:
    """Start a server storing into ``directory``; return it and its URI once /health answers."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    # Left open for the server to write to; closed when the test process ends.
    log = open(directory / "server.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{directory / 'mlflow.db'}",
            "--artifacts-destination",
            str(directory / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(directory / 'server.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    return process, uri
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    stop_server(process)
    raise RuntimeError(f"mlflow server not ready after {READY_TIMEOUT} s")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process (its workers exit with it); kill it if it lingers."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def rest(uri: str, endpoint: str, body: dict | None = None, **query: str) -> dict:
    """Call the MLflow REST API: POST ``body`` if given, else GET with ``query``."""
    url = f"{uri}/api/2.0/mlflow/{endpoint}"
    if body is None:
        url += "?" + "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in query.items())
        request = urllib.request.Request(url)
    else:
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def runs_of(uri: str, experiment: str, run_key: str) -> list[dict]:
    """Every run (parent and children) mirrored from the run ``run_key``, via REST."""
    experiment_id = rest(uri, "experiments/get-by-name", experiment_name=experiment)["experiment"][
        "experiment_id"
    ]
    runs, token = [], None
    while True:
        body = {
            "experiment_ids": [experiment_id],
            "filter": f"tags.`poisonlab.run_key` = '{run_key}'",
            "max_results": 1000,
        }
        if token:
            body["page_token"] = token
        page = rest(uri, "runs/search", body)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
