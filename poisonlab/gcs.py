"""Reading from and writing to Cloud Storage (``gs://bucket/path``).

Uses google-cloud-storage; set ``STORAGE_EMULATOR_HOST`` to talk to an emulator.
Two uses: a dataset whose ``dataset.source`` is a gs:// CSV or Parquet file, and
bringing a Vertex run's results (the report task's ``results`` artifact under
the pipeline root) back to a local directory.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from poisonlab.errors import PoisonlabError
from poisonlab.result_files import (
    DETECTION_FILE,
    GATE_FILE,
    MANIFEST_FILE,
    MARKDOWN_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
)

# Bucket naming rules (without dots-in-domain-names subtleties): 3 to 63 characters,
# lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
# The report task's output artifact holding the results files (see components/report.py).
RESULTS_ARTIFACT = "results"


def parse_gs_uri(uri: str, field: str = "dataset.source") -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``; a clear error for anything else."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket:
        raise PoisonlabError(f"{field}: {uri!r} is not a gs:// URI; write gs://bucket/path")
    if not _BUCKET.fullmatch(bucket):
        raise PoisonlabError(
            f"{field}: {bucket!r} in {uri} is not a valid bucket name; use 3-63 lowercase "
            "letters, digits, '-', '_' or '.'"
        )
    return bucket, name


def storage_client(field: str = "Cloud Storage", uri: str = ""):
    """A storage client; a clear error when no credentials can be found, naming the
    ``field`` and ``uri`` that needed them (``dataset.source: ... reading gs://...``)."""
    import google.auth.exceptions
    from google.cloud import storage

    try:
        return storage.Client()
    except google.auth.exceptions.DefaultCredentialsError:
        reading = f" reading {uri}" if uri else ""
        raise PoisonlabError(
            f"{field}: no Google credentials found{reading}; "
            "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from None


def _missing(client, bucket_name: str, uri: str, field: str) -> PoisonlabError:
    """The error for a NotFound: the bucket or only the object."""
    if not client.bucket(bucket_name).exists():
        return PoisonlabError(
            f"{field}: bucket gs://{bucket_name} does not exist; check the bucket name"
        )
    return PoisonlabError(
        f"{field}: {uri} does not exist in gs://{bucket_name}; check the object path"
    )


def read_gcs_bytes(uri: str, field: str = "dataset.source") -> bytes:
    """The bytes of one object, or a clear error if its bucket or the object is missing."""
    from google.api_core import exceptions

    bucket_name, name = parse_gs_uri(uri, field)
    if not name or name.endswith("/"):
        raise PoisonlabError(f"{field}: {uri} names a bucket or folder, not a file; add the path")
    client = storage_client(field, uri)
    try:
        return client.bucket(bucket_name).blob(name).download_as_bytes()
    except exceptions.NotFound:
        raise _missing(client, bucket_name, uri, field) from None
    except exceptions.Forbidden:
        raise PoisonlabError(
            f"{field}: no permission to read {uri}; grant roles/storage.objectViewer"
        ) from None


def find_results(prefix: str, field: str = "--fetch-results", job_id: str | None = None) -> str:
    """The gs:// URI of the one report ``results`` artifact under ``prefix``
    (with ``job_id``: the one in that job's directory).

    On Vertex it lives at ``<pipeline_root>/<project number>/<job id>/report_<task id>/results``;
    the local runner writes ``<root>/<pipeline>-<time>/report/results``. Any prefix that
    holds exactly one run's results works: the job's own directory, or a pipeline root
    used by a single run.
    """
    from google.api_core import exceptions

    bucket_name, name = parse_gs_uri(prefix, field)
    client = storage_client(field, prefix)
    suffix = f"/{RESULTS_ARTIFACT}/{MANIFEST_FILE}"
    try:
        names = [
            blob.name
            for blob in client.list_blobs(bucket_name, prefix=name.rstrip("/"))
            if blob.name.endswith(suffix)
            and Path(blob.name.removesuffix(suffix)).name.startswith("report")
            and (job_id is None or job_id in Path(blob.name).parts)
        ]
    except exceptions.NotFound:
        raise _missing(client, bucket_name, prefix, field) from None
    if not names:
        raise PoisonlabError(
            f"{field}: no report results under {prefix}; give the pipeline root of a job "
            "whose report task succeeded"
        )
    if len(names) > 1:
        runs = ", ".join(f"gs://{bucket_name}/{n.removesuffix(suffix)}" for n in sorted(names)[:3])
        raise PoisonlabError(
            f"{field}: {len(names)} runs' results under {prefix} ({runs}, ...); "
            "give the job's own directory or its job name"
        )
    return f"gs://{bucket_name}/{names[0].removesuffix('/' + MANIFEST_FILE)}"


def download_results(results_uri: str, output_dir: str | Path) -> Path:
    """Download summary.csv, detection.csv, report.html and manifest.json from a
    ``results`` artifact into ``output_dir``, with gate.csv, report.md, certified.csv and
    quantity.csv where the run wrote them; return it.

    Files land in a temporary directory first and are moved in only once all of
    them arrived, so a failed download leaves no half-set of results behind; a
    file the run did not write is removed from ``output_dir`` (an earlier run's).
    """
    from google.api_core import exceptions

    from poisonlab.result_files import optional_files

    files = (SUMMARY_FILE, DETECTION_FILE, REPORT_FILE, MANIFEST_FILE)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    base = results_uri.rstrip("/")
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=output_dir))
    try:
        for name in files:
            (staging / name).write_bytes(read_gcs_bytes(f"{base}/{name}", "results"))
        bucket_name, prefix = parse_gs_uri(base, "results")
        bucket = storage_client("results", base).bucket(bucket_name)
        absent = []
        for name in (GATE_FILE, MARKDOWN_FILE, *optional_files()):
            try:  # written by some runs only (gate.csv and report.md: by newer ones)
                (staging / name).write_bytes(bucket.blob(f"{prefix}/{name}").download_as_bytes())
            except exceptions.NotFound:
                absent.append(name)
        for path in sorted(staging.iterdir()):
            path.replace(output_dir / path.name)
        for name in absent:
            (output_dir / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir
