"""Reading from and writing to Cloud Storage (``gs://bucket/path``).

Uses google-cloud-storage; set ``STORAGE_EMULATOR_HOST`` to talk to an emulator.
"""

from __future__ import annotations

from poisonlab.errors import PoisonlabError


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket:
        raise PoisonlabError(f"{uri!r} is not a gs:// URI; write gs://bucket/path")
    return bucket, name


def storage_client():
    """A storage client; a clear error when no credentials can be found."""
    import google.auth.exceptions
    from google.cloud import storage

    try:
        return storage.Client()
    except google.auth.exceptions.DefaultCredentialsError:
        raise PoisonlabError(
            "Cloud Storage: no Google credentials found; "
            "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from None


def read_gcs_bytes(uri: str) -> bytes:
    """The bytes of one object, or a clear error if its bucket or the object is missing."""
    from google.api_core import exceptions

    bucket_name, name = parse_gs_uri(uri)
    if not name:
        raise PoisonlabError(f"dataset.source: {uri} names a bucket, not a file; add the path")
    bucket = storage_client().bucket(bucket_name)
    try:
        return bucket.blob(name).download_as_bytes()
    except exceptions.NotFound:
        if not bucket.exists():
            raise PoisonlabError(
                f"dataset.source: bucket gs://{bucket_name} does not exist; check the bucket name"
            ) from None
        raise PoisonlabError(
            f"dataset.source: {uri} does not exist in gs://{bucket_name}; check the object path"
        ) from None
    except exceptions.Forbidden:
        raise PoisonlabError(
            f"dataset.source: no permission to read {uri}; grant roles/storage.objectViewer"
        ) from None
