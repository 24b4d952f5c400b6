"""Cloud Storage against gcp-storage-emulator started here: gs:// datasets, results brought back.

The emulator runs in-process; ``STORAGE_EMULATOR_HOST`` points google-cloud-storage
(and the local runner's task subprocesses, which inherit the environment) at it.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import submit
from poisonlab.data import read_frame
from poisonlab.errors import PoisonlabError
from poisonlab.gcs import download_results, find_results, read_gcs_bytes
from tests.conftest import run_command, set_args
from tests.test_vertex import BASE, fake_vertex, template  # noqa: F401  (fixtures)

BUCKET = "poisonlab-test"
RESULT_FILES = ("summary.csv", "detection.csv", "report.html", "manifest.json")
# Vertex's layout: <root>/<project number>/<job id>/<task>_<task id>/<output>.
JOB_DIR = "root/123456789012/poisonlab-sweep-20261122000000"
RESULTS_DIR = f"{JOB_DIR}/report_-4242/results"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    """A running in-memory emulator with the test bucket; yields its URL."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", url)
        yield url
    server.stop()


def _upload(name: str, data: bytes) -> str:
    from google.cloud import storage

    storage.Client().bucket(BUCKET).blob(name).upload_from_string(data)
    return f"gs://{BUCKET}/{name}"


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory) -> Path:
    """Iris as a CSV file on disk, with its species names as labels."""
    frame, _ = read_frame("sklearn:iris")
    path = tmp_path_factory.mktemp("data") / "iris.csv"
    frame.to_csv(path, index=False)
    return path


# --- reading datasets ----------------------------------------------------------------------


def test_gs_csv_and_parquet_read_like_local_files(emulator, iris_csv):
    local, local_hash = read_frame(str(iris_csv))
    csv_uri = _upload("data/iris.csv", iris_csv.read_bytes())
    from_gcs, gcs_hash = read_frame(csv_uri)
    pd.testing.assert_frame_equal(from_gcs, local)
    assert gcs_hash == local_hash

    buffer = io.BytesIO()
    local.to_parquet(buffer, index=False)
    parquet_uri = _upload("data/iris.parquet", buffer.getvalue())
    from_parquet, _ = read_frame(parquet_uri)
    pd.testing.assert_frame_equal(from_parquet, local)


def test_missing_bucket_and_object_give_distinct_errors(emulator):
    with pytest.raises(PoisonlabError, match="bucket gs://no-such-bucket does not exist"):
        read_gcs_bytes("gs://no-such-bucket/iris.csv")
    with pytest.raises(PoisonlabError, match=f"gs://{BUCKET}/missing.csv does not exist in"):
        read_gcs_bytes(f"gs://{BUCKET}/missing.csv")
    with pytest.raises(PoisonlabError, match="not a file"):
        read_gcs_bytes(f"gs://{BUCKET}/")
    with pytest.raises(PoisonlabError, match="not a valid bucket name"):
        read_gcs_bytes("gs://Bad Bucket/x.csv")


@pytest.mark.slow
def test_local_run_from_gs_matches_run_from_disk(emulator, iris_csv, tmp_path):
    """Must-hold 3: the same CSV on the emulator and on disk gives the same summary.csv bytes."""
    uri = _upload("data/iris-run.csv", iris_csv.read_bytes())
    small = [
        "trials=1",
        "poison.levels=[0.0,0.2]",
        "poison.attacks=[label_flip]",
        "train.models=[logistic_regression]",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    outputs = {}
    for name, source in (("disk", str(iris_csv)), ("gcs", uri)):
        outputs[name] = tmp_path / name
        result = run_command(
            "submit.py",
            "--local",
            *set_args(*small, f"dataset.source={source}"),
            "--output-dir",
            str(outputs[name]),
        )
        assert result.returncode == 0, result.stderr[-2000:]
    summary = (outputs["gcs"] / "summary.csv").read_bytes()
    assert summary == (outputs["disk"] / "summary.csv").read_bytes()
    assert len(summary.splitlines()) > 1
    manifests = [json.loads((outputs[n] / "manifest.json").read_text()) for n in outputs]
    assert manifests[0]["provenance"]["input_sha256"] == manifests[1]["provenance"]["input_sha256"]


# --- bringing results back -----------------------------------------------------------------


@pytest.fixture(scope="module")
def vertex_layout(emulator, small_run) -> str:
    """A finished Vertex job's outputs on the emulator, as Vertex lays them out."""
    for name in RESULT_FILES:
        _upload(f"{RESULTS_DIR}/{name}", (small_run / name).read_bytes())
    _upload(f"{JOB_DIR}/load_-1111/data", b"PAR1")
    _upload(f"{JOB_DIR}/report_-4242/report_html", (small_run / "report.html").read_bytes())
    _upload(f"{JOB_DIR}/mirror_-5151/executor_output.json", b"{}")
    return f"gs://{BUCKET}/{RESULTS_DIR}"


def test_find_results_in_a_job_directory(vertex_layout):
    assert find_results(f"gs://{BUCKET}/root") == vertex_layout
    assert find_results(f"gs://{BUCKET}/{JOB_DIR}/") == vertex_layout
    with pytest.raises(PoisonlabError, match="no report results"):
        find_results(f"gs://{BUCKET}/elsewhere")


def test_find_results_refuses_to_guess_between_runs(vertex_layout):
    other = "root/123456789012/poisonlab-sweep-20261123000000/report_-1/results/manifest.json"
    _upload(f"other/{other}", b"{}")
    _upload(f"other/{other.replace('20261123', '20261124')}", b"{}")
    with pytest.raises(PoisonlabError, match="2 runs' results"):
        find_results(f"gs://{BUCKET}/other/root")


def test_download_results_is_all_or_nothing(vertex_layout, small_run, tmp_path):
    out = download_results(vertex_layout, tmp_path / "out")
    for name in RESULT_FILES:
        assert (out / name).read_bytes() == (small_run / name).read_bytes()
    _upload("partial/results/summary.csv", b"a,b\n")
    with pytest.raises(PoisonlabError, match="detection.csv does not exist"):
        download_results(f"gs://{BUCKET}/partial/results", tmp_path / "partial")
    assert list((tmp_path / "partial").iterdir()) == []


def test_fetch_results_from_the_pipeline_root(vertex_layout, small_run, tmp_path, capsys):
    code = submit.main(
        ["--fetch-results", f"gs://{BUCKET}/root", "--output-dir", str(tmp_path), "--no-mirror"]
    )
    assert code == 0
    assert (tmp_path / "summary.csv").read_bytes() == (small_run / "summary.csv").read_bytes()
    assert vertex_layout in capsys.readouterr().out


def test_wait_brings_results_back_and_mirrors_them(
    vertex_layout,
    small_run,
    fake_vertex,  # noqa: F811
    template,  # noqa: F811
    tmp_path,
    capsys,
):
    """The in-cluster mirror failed (MLflow unreachable from Vertex): the job failed, yet
    the report's results come back and are mirrored here; the exit code says it failed."""
    from mlflow.tracking import MlflowClient

    fake_vertex(final="PIPELINE_STATE_FAILED", results_uri=vertex_layout)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "results"
    code = submit.main(
        [
            *BASE,
            "--template",
            template,
            "--wait",
            "--output-dir",
            str(out),
            "--set",
            f"mlflow.tracking_uri={tracking}",
        ]
    )
    assert code == 1
    for name in RESULT_FILES:
        assert (out / name).read_bytes() == (small_run / name).read_bytes()
    run_key = json.loads((out / "manifest.json").read_text())["run_key"]
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("data-poisoning")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`poisonlab.run_key` = '{run_key}'"
    )
    assert len(runs) > 1  # a parent and its children
    printed = capsys.readouterr().out
    assert "final state: PIPELINE_STATE_FAILED" in printed and "mirrored into MLflow" in printed


@pytest.mark.parametrize("with_task_details", [True, False])
def test_fetch_results_by_job_name(
    vertex_layout,
    small_run,
    fake_vertex,  # noqa: F811
    tmp_path,
    with_task_details,
):
    """From the job's task details, or (older jobs) by looking under its pipeline root."""
    job_id = JOB_DIR.rsplit("/", 1)[-1]
    name = f"projects/demo-proj/locations/us-central1/pipelineJobs/{job_id}"
    job = {"name": name, "runtimeConfig": {"gcsOutputDirectory": f"gs://{BUCKET}/root"}}
    fake = fake_vertex(job=job, results_uri=vertex_layout if with_task_details else None)
    code = submit.main(["--fetch-results", name, "--output-dir", str(tmp_path), "--no-mirror"])
    assert code == 0
    assert (tmp_path / "report.html").read_bytes() == (small_run / "report.html").read_bytes()
    assert [m for m, _, _ in fake.api.requests] == ["GET"] * len(fake.api.requests)


def test_no_credentials_names_the_field_and_the_uri(monkeypatch, tmp_path):
    """Without credentials (and no emulator) the one line says which field's gs:// URI
    needed them, not only "Cloud Storage"."""
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login here
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # nor a metadata server to ask
    with pytest.raises(PoisonlabError) as error:
        read_gcs_bytes("gs://some-bucket/data.csv")
    assert str(error.value).startswith(
        "dataset.source: no Google credentials found reading gs://some-bucket/data.csv; run"
    )
    with pytest.raises(PoisonlabError, match=r"^--fetch-results: no Google credentials found"):
        find_results("gs://some-bucket/root/123/job")


def test_download_brings_back_the_files_only_some_runs_write(emulator, tmp_path):
    """certified.csv (a certified model), gate.csv and report.md came back too only
    when written; a results directory used again loses an earlier run's extras."""
    base = "optional/results"
    for name in (*RESULT_FILES, "certified.csv", "gate.csv"):
        _upload(f"{base}/{name}", f"{name} of this run".encode())
    out = tmp_path / "out"
    out.mkdir()
    (out / "quantity.csv").write_text("an earlier run's", encoding="utf-8")
    download_results(f"gs://{BUCKET}/{base}", out)
    assert (out / "certified.csv").read_text() == "certified.csv of this run"
    assert (out / "gate.csv").read_text() == "gate.csv of this run"
    assert not (out / "quantity.csv").exists() and not (out / "report.md").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*RESULT_FILES, "certified.csv", "gate.csv"]
    )
