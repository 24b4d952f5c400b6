"""Submit the compiled pipeline to Vertex AI Pipelines, wait for it, bring its results back.

Everything that can be checked offline is checked before a ``PipelineJob`` is
built (``check_vertex``), so a typo fails in a second with one clear line
instead of after minutes in the queue. Credentials come only from the
environment (application default credentials); nothing secret goes into the
compiled pipeline or its parameters.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.poisoning import DEFAULT_IMAGE, IMAGE_ENV, PIPELINE_NAME, resolve_image
from poisonlab.errors import PoisonlabError
from poisonlab.units import check_fan_in

# Vertex AI resource rules, checked here because the client does not check them.
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
MAX_LABELS = 64
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
_SERVICE_ACCOUNT = re.compile(r"[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9.-]*\.[a-z]{2,}")
_NETWORK = re.compile(r"projects/[0-9]+/global/networks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_JOB_ID = re.compile(r"[a-z][a-z0-9-]{0,127}")
_EXPERIMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:-]*(@sha256:[0-9a-f]{64}|:[\w][\w.-]{0,127})?")
_SECRET_IN_URI = re.compile(r"^[a-z+]+://[^/@\s]*:[^/@\s]*@")
# Optional settings: their pattern, and how to fix a value that does not match it.
_OPTIONAL = (
    ("service_account", _SERVICE_ACCOUNT, "give an email: NAME@PROJECT.iam.gserviceaccount.com"),
    ("network", _NETWORK, "write projects/PROJECT_NUMBER/global/networks/NAME"),
    ("experiment", _EXPERIMENT, "use up to 128 lowercase letters, digits and '-'"),
    ("job_id", _JOB_ID, "use up to 128 lowercase letters, digits and '-', letter first"),
)
PLACEHOLDER_PROJECT = "your-project"
REPORT_TASK = "report"
RESULTS_OUTPUT = "results"


def _bad(field: str, value: Any, fix: str) -> PoisonlabError:
    return PoisonlabError(f"{field} = {value!r} is not valid; {fix}")


def check_labels(labels: Any) -> dict[str, str]:
    """Vertex's label rules: at most 64; keys and values lowercase letters, digits, _ and -,
    at most 63 characters; keys start with a letter."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise _bad("vertex.labels", labels, "write a mapping, e.g. {team: ml}, or --label team=ml")
    if len(labels) > MAX_LABELS:
        raise PoisonlabError(
            f"vertex.labels: {len(labels)} labels; Vertex allows at most {MAX_LABELS}"
        )
    checked = {}
    for key, value in labels.items():
        key, value = str(key), "" if value is None else str(value)
        if not _LABEL_KEY.fullmatch(key):
            raise PoisonlabError(
                f"vertex.labels: key {key!r} breaks Vertex's rules; use at most 63 "
                "lowercase letters, digits, '_' or '-', starting with a letter"
            )
        if not _LABEL_VALUE.fullmatch(value):
            raise PoisonlabError(
                f"vertex.labels: {key}={value!r} breaks Vertex's rules; values take at most 63 "
                "lowercase letters, digits, '_' or '-'"
            )
        checked[key] = value
    return checked


def parse_label_flags(flags: list[str]) -> dict[str, str]:
    """``["team=ml", "env=dev"]`` -> ``{"team": "ml", "env": "dev"}``."""
    labels = {}
    for flag in flags:
        key, sep, value = flag.partition("=")
        if not sep or not key:
            raise PoisonlabError(f"--label {flag!r} is not key=value; write e.g. --label team=ml")
        labels[key] = value
    return labels


def check_image(image: str, required: bool) -> str:
    """The image the components run in: given, from $POISONLAB_IMAGE, or (dry runs) the default."""
    chosen = resolve_image(image)
    if not image and chosen == DEFAULT_IMAGE:
        if required:
            raise PoisonlabError(
                "vertex.image is not set; build and push the image (README, 'Running on Vertex "
                "AI') and pass --image REGION-docker.pkg.dev/PROJECT/REPO/poisonlab:TAG "
                f"or set ${IMAGE_ENV}"
            )
        print(
            f"note: no image set (--image or ${IMAGE_ENV}); showing the default {DEFAULT_IMAGE}",
            file=sys.stderr,
        )
    if not _IMAGE.fullmatch(chosen):
        raise _bad(
            "vertex.image", chosen, "give an image reference like HOST/PROJECT/REPO/NAME:TAG"
        )
    return chosen


def check_dataset_source(source: str) -> None:
    """Cluster tasks read generated (sklearn:, synthetic:) and gs:// data, not local files."""
    from poisonlab.gcs import parse_gs_uri

    if source.startswith("gs://"):
        bucket, name = parse_gs_uri(source, "dataset.source")
        if not name or name.endswith("/"):
            raise _bad("dataset.source", source, "name a CSV or Parquet file: gs://bucket/data.csv")
        return
    if not source.startswith(("sklearn:", "synthetic:")):
        raise PoisonlabError(
            f"dataset.source: {source} is a local file, which pipeline tasks on Vertex AI or a "
            "Kubeflow cluster cannot read; upload it (gcloud storage cp FILE gs://BUCKET/PATH) "
            "and give that gs:// URI"
        )


def check_no_secrets(config: dict) -> None:
    """Secrets come from the environment, never from the config the pipeline carries."""
    uri = config["mlflow"]["tracking_uri"]
    if _SECRET_IN_URI.match(uri):
        raise PoisonlabError(
            "mlflow.tracking_uri holds a user name and password, which would be stored in the "
            "pipeline job; remove them and set MLFLOW_TRACKING_USERNAME/PASSWORD or "
            "MLFLOW_TRACKING_TOKEN in the environment"
        )


@dataclass(frozen=True)
class VertexSettings:
    """Checked Vertex settings for one submission."""

    project: str
    region: str
    pipeline_root: str
    labels: dict[str, str]
    service_account: str | None
    network: str | None
    experiment: str | None
    display_name: str
    job_id: str | None
    enable_caching: bool | None


def check_vertex(config: dict, dry_run: bool = False) -> VertexSettings:
    """Check the ``vertex`` section and the parts of the config a cloud run depends on.

    A dry run may leave the project unset (the request body does not contain it).
    """
    from poisonlab.gcs import parse_gs_uri

    vertex = config["vertex"]
    project = vertex["project"]
    if project is None:
        if not dry_run:
            raise PoisonlabError("vertex.project is not set; pass --project YOUR_PROJECT_ID")
        project = PLACEHOLDER_PROJECT
    if not isinstance(project, str) or not _PROJECT.fullmatch(project):
        raise _bad(
            "vertex.project", project, "give the project ID (6-30 lowercase letters, digits, '-')"
        )
    region = vertex["region"]
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise _bad("vertex.region", region, "give a region such as us-central1")
    root = vertex["pipeline_root"]
    if not root:
        raise PoisonlabError(
            "vertex.pipeline_root is not set; pass --pipeline-root gs://BUCKET/pipeline-root"
        )
    parse_gs_uri(str(root), "vertex.pipeline_root")
    for key, pattern, fix in _OPTIONAL:
        value = vertex[key]
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise _bad(f"vertex.{key}", value, fix)
    display_name = vertex["display_name"] or PIPELINE_NAME
    if not isinstance(display_name, str) or len(display_name) > 128:
        raise _bad("vertex.display_name", display_name, "use a string of at most 128 characters")
    caching = vertex["enable_caching"]
    if caching is not None and not isinstance(caching, bool):
        raise _bad("vertex.enable_caching", caching, "write true, false, or leave it unset")
    check_dataset_source(config["dataset"]["source"])
    check_no_secrets(config)
    check_fan_in(config)
    return VertexSettings(
        project=project,
        region=region,
        pipeline_root=str(root),
        labels=check_labels(vertex["labels"]),
        service_account=vertex["service_account"],
        network=vertex["network"],
        experiment=vertex["experiment"],
        display_name=display_name,
        job_id=vertex["job_id"],
        enable_caching=caching,
    )


def check_template(path: str, config: dict) -> str:
    """A precompiled pipeline YAML that takes this pipeline's parameters for ``config``
    (``pipeline.fan_out: level_attack`` adds ``units``)."""
    from pipelines.poisoning import pipeline_parameters

    file = Path(path)
    if not file.is_file():
        raise PoisonlabError(f"--template {path}: no such file; compile one with python compile.py")
    try:
        spec = yaml.safe_load(file.read_text(encoding="utf-8"))
        declared = set(spec["root"]["inputDefinitions"]["parameters"])
    except (yaml.YAMLError, UnicodeDecodeError, TypeError, KeyError):
        raise PoisonlabError(
            f"--template {path}: not a compiled KFP pipeline; compile one with python compile.py"
        ) from None
    wanted = list(pipeline_parameters(config))
    if declared != set(wanted):
        raise PoisonlabError(
            f"--template {path}: takes parameters {sorted(declared)}, not "
            f"{wanted}; compile this project's pipeline with python compile.py --config "
            "(pipeline.fan_out decides the shape)"
        )
    _check_template_machines(path, spec, config)
    return str(file)


def _machines(spec: dict) -> dict[str, Any]:
    """What a compiled pipeline fixes that the config also sets: each step's image and
    resources (``vertex.image``, ``vertex.resources``) and each loop's parallelism
    (``vertex.parallelism``)."""
    found: dict[str, Any] = {}
    for name, executor in spec.get("deploymentSpec", {}).get("executors", {}).items():
        container = executor.get("container", {})
        step = name.removeprefix("exec-")
        found[f"the {step} step's image"] = container.get("image")
        found[f"the {step} step's resources"] = container.get("resources")

    def loops(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "iteratorPolicy":
                    found[f"{where}'s parallelism"] = value.get("parallelismLimit")
                loops(value, key if key.startswith("for-loop") else where)

    loops(spec.get("root", {}), "the loop")
    return found


def _check_template_machines(path: str, spec: dict, config: dict) -> None:
    """A template runs the image, machines and parallelism it was compiled with, whatever
    --image or the config say: where they differ, fail before the plan printed from the
    config describes a job that would not run that way. With no image configured
    (--image, vertex.image, $POISONLAB_IMAGE) the template's own is taken."""
    from pipelines.poisoning import compile_pipeline

    images = {
        e.get("container", {}).get("image")
        for e in spec.get("deploymentSpec", {}).get("executors", {}).values()
    }
    image = config["vertex"]["image"] or os.environ.get(IMAGE_ENV) or sorted(map(str, images))[0]
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "pipeline.yaml"
        compile_pipeline(str(fresh), image, config)
        wanted = _machines(yaml.safe_load(fresh.read_text(encoding="utf-8")))
    have = _machines(spec)
    for what, value in wanted.items():
        if have.get(what) != value:
            raise PoisonlabError(
                f"--template {path}: {what}: {_shown(have.get(what))} in the template, "
                f"{_shown(value)} from --image and the config; compile it again with python "
                "compile.py --config (and --image), or give the config and flags it was "
                "compiled with"
            )


def _shown(value: Any) -> str:
    """A compiled image, resources or parallelism, as the plan prints them."""
    if isinstance(value, dict):
        accelerator = value.get("accelerator") or {}
        parts = [
            f"{name} {value[key]}"
            for name, key in (("cpu", "resourceCpuLimit"), ("memory", "resourceMemoryLimit"))
            if key in value
        ]
        if accelerator:
            kind = accelerator.get("resourceType", accelerator.get("type"))
            count = accelerator.get("resourceCount", accelerator.get("count"))
            parts.append(f"accelerator {kind} x {count}")
        value = ", ".join(parts) or None
    return "not set" if value is None else str(value)


def parameter_values(config: dict) -> dict[str, Any]:
    """The pipeline's parameters: the whole config as JSON, the levels to fan out over
    (and a level's units with ``pipeline.fan_out: level_attack``)."""
    from pipelines.poisoning import pipeline_parameters

    return pipeline_parameters(config)


def build_job(config: dict, settings: VertexSettings, template_path: str, credentials=None):
    """A ``PipelineJob`` for ``config``; building it sends nothing.

    ``credentials=None`` uses the environment's (application default credentials).
    """
    import google.auth.exceptions
    from google.cloud import aiplatform

    try:
        return aiplatform.PipelineJob(
            display_name=settings.display_name,
            template_path=template_path,
            job_id=settings.job_id,
            pipeline_root=settings.pipeline_root,
            parameter_values=parameter_values(config),
            enable_caching=settings.enable_caching,
            labels=settings.labels or None,
            project=settings.project,
            location=settings.region,
            credentials=credentials,
        )
    except google.auth.exceptions.DefaultCredentialsError:
        raise PoisonlabError(
            "Vertex AI: no Google credentials found; run `gcloud auth application-default "
            "login` or set GOOGLE_APPLICATION_CREDENTIALS (or use --dry-run)"
        ) from None


def console_link(resource_name: str) -> str:
    """The pipeline console page of a job ``projects/P/locations/L/pipelineJobs/ID``."""
    parts = resource_name.split("/")
    project, location, job_id = parts[1], parts[3], parts[5]
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{location}/pipelines/runs/"
        f"{job_id}?project={project}"
    )


def report_results_uri(job) -> str | None:
    """The gs:// URI of the report task's ``results`` artifact, if that task succeeded."""
    from google.cloud.aiplatform_v1.types import PipelineTaskDetail

    for task in job.task_details:
        if task.task_name == REPORT_TASK and task.state == PipelineTaskDetail.State.SUCCEEDED:
            artifacts = (
                task.outputs[RESULTS_OUTPUT].artifacts if RESULTS_OUTPUT in task.outputs else []
            )
            if artifacts and artifacts[0].uri:
                return artifacts[0].uri
    return None


def bring_back(results_uri: str, output_dir: Path, tracking_uri: str | None) -> None:
    """Download a run's results into ``output_dir`` and mirror them into MLflow from there."""
    from poisonlab.gcs import download_results

    download_results(results_uri, output_dir)
    print(f"results downloaded from {results_uri} to {output_dir}/")
    print("  summary.csv, detection.csv, report.html, manifest.json")
    if tracking_uri:
        from poisonlab.mirror import mirror_results, run_page

        result = mirror_results(output_dir, tracking_uri)
        print(f"mirrored into MLflow at {tracking_uri} (run {result.parent_run_id})")
        page = run_page(tracking_uri, result.experiment_id, result.parent_run_id)
        print(f"  the run's page: {page}")


def _refused(error) -> PoisonlabError:
    """One line for an error answer from the Vertex AI API."""
    message = " ".join(str(error.message).split())[:300]
    return PoisonlabError(f"Vertex AI refused the request (HTTP {error.code}): {message}")


def _job_state(job) -> str:
    return job._gca_resource.state.name


def submit_to_vertex(
    config: dict,
    *,
    template: str | None = None,
    dry_run: bool = False,
    wait: bool = False,
    output_dir: Path | None = None,
    tracking_uri: str | None = None,
) -> int:
    """Check, build and (unless ``dry_run``) submit the job; with ``wait``, bring results back.

    ``tracking_uri`` None skips the local mirror of the brought-back results.
    """
    from google.api_core import exceptions

    settings = check_vertex(config, dry_run=dry_run)
    if template:
        template_path = check_template(template, config)
    else:
        image = check_image(config["vertex"]["image"], required=not dry_run)
    with tempfile.TemporaryDirectory() as tmp:
        if not template:
            from pipelines.poisoning import compile_pipeline

            template_path = str(Path(tmp) / "pipeline.yaml")
            compile_pipeline(template_path, image, config)
        credentials = None
        if dry_run:
            import google.auth.credentials

            credentials = google.auth.credentials.AnonymousCredentials()
        job = build_job(config, settings, template_path, credentials)
        if dry_run:
            print(json.dumps(job.to_dict(), indent=2, sort_keys=True))
            print(
                f"dry run: this body would be sent to projects/{settings.project}/locations/"
                f"{settings.region}/pipelineJobs; nothing was sent",
                file=sys.stderr,
            )
            return 0
        try:
            job.submit(
                service_account=settings.service_account,
                network=settings.network,
                experiment=settings.experiment,
            )
        except exceptions.GoogleAPICallError as error:
            raise _refused(error) from None
    print(f"submitted Vertex AI pipeline job {job.resource_name}")
    print(f"  console: {console_link(job.resource_name)}")
    if not wait:
        print(
            f"  bring the results back later: python submit.py --fetch-results "
            f"{job.resource_name} --output-dir runs/{job.job_id}"
        )
        return 0
    return wait_and_fetch(job, output_dir or Path("runs") / job.job_id, tracking_uri)


def wait_and_fetch(job, output_dir: Path, tracking_uri: str | None) -> int:
    """Wait for ``job``; print its final state; bring back whatever results it produced.

    Results are fetched even when a later task (the in-cluster mirror, say) failed,
    so a run whose MLflow server was unreachable from Vertex still gets mirrored here.
    """
    from google.api_core import exceptions

    failed = False
    try:
        job.wait()
    except exceptions.GoogleAPICallError as error:
        raise _refused(error) from None
    except RuntimeError as error:
        failed = True
        detail = str(error).strip().splitlines()
        print(f"job failed: {' '.join(line.strip() for line in detail[1:3])}", file=sys.stderr)
    print(f"final state: {_job_state(job)}")
    print(f"  console: {console_link(job.resource_name)}")
    results = report_results_uri(job)
    if results:
        bring_back(results, Path(output_dir), tracking_uri)
    elif not failed:
        raise PoisonlabError(
            f"job {job.resource_name} succeeded but its report task has no results artifact"
        )
    return 1 if failed else 0


def fetch_results(
    config: dict, target: str, output_dir: Path | None, tracking_uri: str | None
) -> int:
    """Bring back a finished job's results: ``target`` is a gs:// directory holding them
    (the job's directory under the pipeline root) or a job name."""
    from poisonlab.gcs import find_results

    if target.startswith("gs://"):
        results = find_results(target)
        default_dir = Path("runs") / Path(results.rstrip("/")).parent.parent.name
    else:
        job = get_job(config, target)
        job_id = job.resource_name.rsplit("/", 1)[-1]
        results = report_results_uri(job) or find_results(
            job._gca_resource.runtime_config.gcs_output_directory, job_id=job_id
        )
        print(f"job {job.resource_name}: {_job_state(job)}")
        default_dir = Path("runs") / job_id
    bring_back(results, Path(output_dir or default_dir), tracking_uri)
    return 0


def get_job(config: dict, name: str):
    """The job ``projects/P/locations/L/pipelineJobs/ID``, or ID in the configured project."""
    import google.auth.exceptions
    from google.api_core import exceptions
    from google.cloud import aiplatform

    if not name.startswith("projects/"):
        if not _JOB_ID.fullmatch(name):
            raise PoisonlabError(
                f"--fetch-results {name!r}: give gs://BUCKET/ROOT/..., a job name "
                "projects/P/locations/L/pipelineJobs/ID, or a job ID with --project"
            )
        project = config["vertex"]["project"]
        if not project:
            raise PoisonlabError(f"--fetch-results {name}: a bare job ID needs --project")
        name = f"projects/{project}/locations/{config['vertex']['region']}/pipelineJobs/{name}"
    try:
        return aiplatform.PipelineJob.get(name)
    except google.auth.exceptions.DefaultCredentialsError:
        raise PoisonlabError(
            "Vertex AI: no Google credentials found; run `gcloud auth application-default login`"
        ) from None
    except exceptions.NotFound:
        raise PoisonlabError(f"--fetch-results: job {name} does not exist") from None
    except exceptions.GoogleAPICallError as error:
        raise _refused(error) from None
