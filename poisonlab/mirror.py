"""Mirror a run's results into MLflow: one parent run, one child per result group.

Reads the results directory (summary.csv, detection.csv, report.html,
manifest.json), so the same code serves the pipeline's ``mirror`` task and a
later re-mirror from the command line:

    python -m poisonlab.mirror --results runs/my-run [--tracking-uri URI]

Layout in the experiment:

- a parent run per pipeline run: the config as params, the input data's hash,
  headline accuracies as metrics, the dataset as a run input, the report and
  tables as artifacts;
- a child run per poison level x attack x model x defense: params
  ``poison_level, attack, model, defense, trials, seed``, metrics
  ``<metric>_mean/_ci_low/_ci_high`` and the level's detection metrics per
  detector, and one representative model (trial 0's) with signature and input
  example.

Mirroring is idempotent: runs are found again by tags, metrics are logged at
a fixed timestamp and step (no new history), params and models are only
added where missing. It fails fast: MLflow's HTTP retries are turned down so
an unreachable server gives up in seconds, with one message.

Credentials come only from the environment (``MLFLOW_TRACKING_TOKEN``, or
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``), which MLflow reads
itself; a tracking URI carrying ``user:password@`` is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from poisonlab.certify.evaluation import CERTIFIED_FILE, clean_curves
from poisonlab.config import check_tracking_uri, redact_uri
from poisonlab.errors import CommandParser, PoisonlabError, run_cli
from poisonlab.mlflow_store import (
    CLOUDPICKLE,
    DESCRIPTION_TAG,
    ensure_experiment,
    prepare_store,
    retry_busy,
    run_description,
)
from poisonlab.model_folders import (
    MODEL_NAME,
    ChildKey,
    SavingMeanwhile,
    child_key,
    example_rows,
    feature_frame,
    read_model_files,
    save_model_folders,
)
from poisonlab.quantity import QUANTITY_FILE
from poisonlab.result_files import (
    DETECTION_FILE,
    GATE_FILE,
    MANIFEST_FILE,
    MARKDOWN_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
)

RUN_KEY_TAG = "poisonlab.run_key"
CHILD_KEY_TAG = "poisonlab.child_key"
PARENT_TAG = "mlflow.parentRunId"
JOB_TAG = "kfp.pipeline_job_name"
MIRROR_STATUS_FILE = "mirror.json"
# Files of a results directory that become artifacts of the parent run.
ARTIFACT_PATTERNS = (
    REPORT_FILE,
    MARKDOWN_FILE,
    SUMMARY_FILE,
    DETECTION_FILE,
    GATE_FILE,
    QUANTITY_FILE,
    CERTIFIED_FILE,
    MANIFEST_FILE,
    "*.png",
    "*.svg",
)

# MLflow's defaults retry a dead server for minutes; these give up in well under 60 s.
FAIL_FAST_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
_BATCH = 1000  # MLflow's limit of metrics per log_batch call
_PARAM_BATCH = 100  # and of params
SCHEMA_ROWS = 100  # rows the dataset input's schema is inferred from


# --- tracking URIs and credentials ----------------------------------------------------


def absolute_tracking_uri(uri: str, base: Path | None = None) -> str:
    """``sqlite:///mlflow.db`` relative to ``base`` (default: here) made absolute.

    Pipeline tasks may run in another directory; an absolute URI finds the same file.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((base or Path.cwd()).resolve() / uri.removeprefix(prefix))
    return uri


def remirror_command(results_dir: str | Path, tracking_uri: str | None = None) -> str:
    """The command that mirrors ``results_dir`` later (credentials stay in the environment)."""
    command = ["python", "-m", "poisonlab.mirror", "--results", str(results_dir)]
    if tracking_uri:
        command += ["--tracking-uri", redact_uri(tracking_uri)]
    return shlex.join(command)


# Where `mlflow ui` serves a local store unless told otherwise.
MLFLOW_UI_ADDRESS = "http://127.0.0.1:5000"


def run_page(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow page of a run: ``<server>/#/experiments/<id>/runs/<run id>``.

    The run's own page, not the experiment's: MLflow 3.17 opens an experiment on its
    GenAI overview (traces, token usage) even for a classic ML experiment. A local
    store (sqlite:, file paths) is served by ``mlflow ui`` at MLFLOW_UI_ADDRESS.
    """
    uri = redact_uri(tracking_uri)
    server = uri.rstrip("/") if uri.startswith(("http://", "https://")) else MLFLOW_UI_ADDRESS
    return f"{server}/#/experiments/{experiment_id}/runs/{run_id}"


@contextlib.contextmanager
def mlflow_session(tracking_uri: str) -> Iterator[None]:
    """Point MLflow at ``tracking_uri`` with fast-failing HTTP; restore both after.

    ``log_model`` and ``log_input`` use MLflow's global tracking URI, so it is set
    here rather than only on a client.
    """
    import mlflow

    saved = {key: os.environ.get(key) for key in FAIL_FAST_ENV}
    saved_uri = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    os.environ.update(FAIL_FAST_ENV)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def job_tags(job_name: str, job_id: str, task_name: str) -> dict[str, str]:
    """Tags linking the runs to the KFP or Vertex pipeline job and the mirror task.

    On Vertex the job name is the ``pipelineJobs/<name>`` id the console shows.
    """
    values = {JOB_TAG: job_name, "kfp.pipeline_job_id": job_id, "kfp.mirror_task": task_name}
    return {k: v for k, v in values.items() if v and "{{" not in v}


SECRET_MANAGER = "https://secretmanager.googleapis.com"


def read_secret(name: str, endpoint: str = SECRET_MANAGER, credentials=None) -> str:
    """The value of a Secret Manager secret version, read with the task's own credentials.

    Vertex AI Pipelines cannot put a secret into a task's environment without
    writing it into the pipeline spec, so the mirror task fetches the token itself
    (its service account needs ``roles/secretmanager.secretAccessor``).
    """
    import base64

    import google.auth
    import google.auth.exceptions
    from google.auth.transport.requests import AuthorizedSession

    if credentials is None:
        try:
            credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
        except google.auth.exceptions.DefaultCredentialsError:
            raise PoisonlabError(
                f"mlflow.token_secret: no Google credentials found to read {name}; run "
                "`gcloud auth application-default login`, or set MLFLOW_TRACKING_TOKEN"
            ) from None
    answer = AuthorizedSession(credentials).get(f"{endpoint}/v1/{name}:access", timeout=20)
    if answer.status_code != 200:
        raise PoisonlabError(
            f"mlflow.token_secret: reading {name} failed (HTTP {answer.status_code}); check the "
            "name and that the pipeline's service account may access it"
        )
    return base64.b64decode(answer.json()["payload"]["data"]).decode().strip()


def token_from_secret(config: dict) -> None:
    """Put the configured secret's token into this process's environment, if none is set."""
    name = config["mlflow"].get("token_secret")
    if name and not os.environ.get("MLFLOW_TRACKING_TOKEN"):
        os.environ["MLFLOW_TRACKING_TOKEN"] = read_secret(name)


def _one_line(error: BaseException, tracking_uri: str) -> str:
    """An MLflow/requests error as one short line that names the server."""
    text = " ".join(str(error).split()) or type(error).__name__
    if "Connection refused" in text or "Max retries exceeded" in text:
        text = "connection refused or no answer"
    elif "timed out" in text.lower():
        text = "the server did not answer in time"
    return f"MLflow at {redact_uri(tracking_uri)} failed: {text[:300]}"


# --- representative models ------------------------------------------------------------


def representative_models(dataset, config: dict[str, Any]) -> dict[ChildKey, Any]:
    """Trial 0's fitted model for every level x attack x model x defense.

    Every random choice derives from the seed, the trial and names, so refitting
    trial 0 alone gives the very models the pipeline's ``train`` task fitted for
    trial 0, at a fraction of the cost, from nothing but the dataset and config.
    """
    from poisonlab import experiment
    from poisonlab.splits import trial_masks

    one_trial = {**config, "trials": 1}
    names = experiment.table_names(dataset)
    masks = trial_masks(dataset, config, trials=1)
    models: dict[ChildKey, Any] = {}
    for level in config["poison"]["levels"]:
        sets = list(experiment.poison_level(dataset, masks, one_trial, level))
        # Calibrated on trial 0's clean split, as the pipeline's validate step does.
        clean = experiment.clean_splits(dataset, masks)
        detections = experiment.detect_level(sets, one_trial, dataset.n_classes, names, clean)
        fitted = experiment.train_level(
            sets, detections, one_trial, experiment.model_columns(dataset)
        )
        for (_, attack, model, defense), estimator in fitted.items():
            models[(float(level), attack, model, defense)] = estimator
    return models


def _load_data(manifest: dict, data_path: str | Path | None):
    """The run's dataset: from the pipeline's data artifact, else from the config's source.

    Returns ``(dataset, note)``; ``dataset`` is None (and ``note`` says why) when the
    source is unreadable or no longer has the content the run used.
    """
    from poisonlab.data import load_table, read_dataset

    if data_path is not None:
        return read_dataset(data_path), ""
    settings = manifest["config"]["dataset"]
    try:
        # The raw view, as the run's load step made it.
        dataset, input_hash = load_table(settings)
    # Unreadable now (moved, no access): mirror everything else.
    except Exception as error:  # noqa: BLE001
        return None, f"no dataset input or models: {' '.join(str(error).split())[:200]}"
    if input_hash != manifest["provenance"]["input_sha256"]:
        return None, f"no dataset input or models: {settings['source']} changed since the run"
    return dataset, ""


# --- logging --------------------------------------------------------------------------


def _flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested config -> {"poison.levels": "[0.0, 0.1]", ...}."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, sub in value.items():
            flat.update(_flatten(f"{prefix}.{key}" if prefix else key, sub))
        return flat
    return {prefix: json.dumps(value) if not isinstance(value, str) else value}


def _log(client, run, params: dict[str, str], metrics: dict[str, float], timestamp: int) -> None:
    """Log params and metrics in as few batches as MLflow allows; skip params already there.

    Metrics go in at ``timestamp`` and step 0, so logging the same value again adds
    no history (a param cannot change on an existing run, so existing ones are kept).
    """
    from mlflow.entities import Metric, Param

    new_params = [Param(k, v[:6000]) for k, v in params.items() if k not in run.data.params]
    # Values the run already holds are left alone: a re-mirror then costs no writes.
    new_metrics = [
        Metric(k, float(v), timestamp, 0)
        for k, v in metrics.items()
        if pd.notna(v) and run.data.metrics.get(k) != float(v)
    ]
    while new_params or new_metrics:
        params_now, new_params = new_params[:_PARAM_BATCH], new_params[_PARAM_BATCH:]
        room = _BATCH - len(params_now)
        metrics_now, new_metrics = new_metrics[:room], new_metrics[room:]
        client.log_batch(run.info.run_id, metrics=metrics_now, params=params_now)


def certified_headline(results_dir: Path) -> dict[str, float]:
    """Level-0 certified accuracy per certified model, unit and radius, from certified.csv."""
    path = results_dir / CERTIFIED_FILE
    if not path.is_file():
        return {}
    curves = clean_curves(pd.read_csv(path))
    columns = ["model", "unit", "radius", "certified_accuracy"]
    return {
        f"certified_accuracy_{model}_{unit}_r{radius}": value
        for model, unit, radius, value in curves[columns].itertuples(index=False)
    }


def _summary_metrics(rows: pd.DataFrame, prefix: str = "") -> dict[str, float]:
    """``<prefix><metric>_mean/_ci_low/_ci_high`` from summary or detection rows; an
    interval left empty (one trial, or tied trials: ``stats.mean_ci``) is not logged."""
    metrics = {}
    for metric, mean, low, high in rows[["metric", "mean", "ci_low", "ci_high"]].itertuples(
        index=False
    ):
        metrics[f"{prefix}{metric}_mean"] = mean
        if low == low:  # not NaN
            metrics[f"{prefix}{metric}_ci_low"] = low
            metrics[f"{prefix}{metric}_ci_high"] = high
    return metrics


def _tagged(search, experiment_id: str, run_key: str, page_size: int) -> list:
    """Everything ``search`` (runs or logged models) finds with this run key, all pages."""
    found, token = [], None
    while True:
        page = search(
            [experiment_id],
            filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'",
            max_results=page_size,
            page_token=token,
        )
        found.extend(page)
        token = page.token
        if not token:
            return found


def _logged_models(client, experiment_id: str, run_key: str) -> dict[str, Any]:
    """This pipeline run's logged models by source run id; a READY one wins over others."""
    found: dict[str, Any] = {}
    for model in _tagged(client.search_logged_models, experiment_id, run_key, 100):
        if model.source_run_id not in found or _ready(model):
            found[model.source_run_id] = model
    return found


def _ready(model) -> bool:
    return str(model.status).endswith("READY")


@dataclass(frozen=True)
class MirrorResult:
    parent_run_id: str
    experiment_id: str
    children: int
    new_runs: int
    new_models: int
    note: str


def mirror_results(
    results_dir: str | Path,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    tags: dict[str, str] | None = None,
    data_path: str | Path | None = None,
    log_models: bool | None = None,
    models_paths: list[str | Path] | None = None,
) -> MirrorResult:
    """Mirror one run's results into MLflow, creating only what is missing.

    ``tags`` link the runs to the pipeline job and task; ``data_path`` is the
    pipeline's loaded dataset (without it the config's source is read again and
    checked against the recorded hash) for the dataset input and the models;
    ``models_paths``, the files of trial-0 models the pipeline fitted, one per level
    (without them the models are fitted again, see ``representative_models``).
    """
    results_dir = Path(results_dir)
    for name in (SUMMARY_FILE, DETECTION_FILE, MANIFEST_FILE):
        if not (results_dir / name).is_file():
            raise PoisonlabError(
                f"--results {results_dir}: {name} is missing; give a run's output directory"
            )
    manifest = json.loads((results_dir / MANIFEST_FILE).read_text())
    config = manifest["config"]
    tracking_uri = check_tracking_uri(
        tracking_uri or config["mlflow"]["tracking_uri"],
        "--tracking-uri" if tracking_uri else "mlflow.tracking_uri",
    )
    experiment = experiment or config["mlflow"]["experiment"]
    if log_models is None:
        log_models = config["mlflow"].get("log_models", True)
    run_key = manifest["run_key"]
    provenance = manifest["provenance"]
    summary = pd.read_csv(results_dir / SUMMARY_FILE)
    detection = pd.read_csv(results_dir / DETECTION_FILE)
    token_from_secret(config)

    # Started first: MLflow's import alone takes seconds the other process can use.
    pipeline_models = models_paths if log_models and data_path is not None else None
    with (
        _models_saved_meanwhile(pipeline_models, data_path) as saving,
        mlflow_session(tracking_uri),
    ):
        from mlflow.tracking import MlflowClient

        prepare_store(tracking_uri)
        client = MlflowClient(tracking_uri)
        experiment_id = ensure_experiment(client, experiment)
        runs = _tagged(client.search_runs, experiment_id, run_key, 1000)
        parent = next((r for r in runs if CHILD_KEY_TAG not in r.data.tags), None)
        children = {r.data.tags[CHILD_KEY_TAG]: r for r in runs if CHILD_KEY_TAG in r.data.tags}
        run_tags = {RUN_KEY_TAG: run_key, JOB_TAG: run_key, **(tags or {})}
        new_runs = 0
        if parent is None:
            parent = client.create_run(
                experiment_id,
                run_name=manifest.get("run_name", run_key),
                tags={**run_tags, "data_sha256": provenance["input_sha256"]},
            )
            new_runs += 1
        parent_id = parent.info.run_id
        # The parent's start time, fixed once, stamps every metric: re-logging adds no history.
        stamp = parent.info.start_time
        failed = provenance.get("failed_levels") or []
        # Which levels are missing, so the MLflow UI does not pass the run off as complete.
        failed_tag = ", ".join(f"{f['level']:g} ({f['step']})" for f in failed) or "none"
        parent_tags = {**run_tags, "failed_levels": failed_tag}
        # And which detectors failed where (their results are missing there).
        found = provenance.get("failed_detections") or []
        where = dict.fromkeys(f"{f['detector']} at {f['level']:g} ({f['attack']})" for f in found)
        parent_tags["failed_detections"] = (", ".join(where) or "none")[:5000]
        attacks = provenance.get("failed_attacks") or []
        where = dict.fromkeys(f"{f['attack']} at {f['level']:g}" for f in attacks)
        parent_tags["failed_attacks"] = (", ".join(where) or "none")[:5000]
        parent_tags[DESCRIPTION_TAG] = run_description(config)
        client.log_batch(parent_id, tags=_tag_list(parent_tags))

        params = _flatten("", {k: v for k, v in config.items() if k != "vertex"})
        params["data_sha256"] = provenance["input_sha256"]
        params["config_sha256"] = manifest.get("config_sha256", "")
        # The report's headline metric (report.metric); accuracy for older manifests.
        chosen = manifest.get("headline_metric", {}).get("metric", "accuracy")
        headline = summary[(summary["metric"] == chosen) & (summary["defense"] == "none")]
        metrics = {
            f"{chosen}_{attack}_{model}_level{level:g}": mean
            for level, attack, model, mean in headline[
                ["poison_level", "attack", "model", "mean"]
            ].itertuples(index=False)
        }
        metrics.update(certified_headline(results_dir))
        _log(client, parent, params, metrics, stamp)
        for pattern in ARTIFACT_PATTERNS:
            for path in sorted(results_dir.glob(pattern)):
                client.log_artifact(parent_id, str(path))

        dataset, note = _load_data(manifest, data_path)
        if dataset is not None:
            _log_dataset(parent_id, dataset, config, provenance)

        gate_path = results_dir / GATE_FILE
        gate = pd.read_csv(gate_path) if gate_path.is_file() else pd.DataFrame()
        from poisonlab.models import user_model_params

        group = ["poison_level", "attack", "model", "defense"]
        pending = {}
        for (level, attack, model, defense), rows in summary.groupby(group, sort=False):
            key = child_key(level, attack, model, defense)
            child_metrics = _summary_metrics(rows)
            level_detection = detection[
                (detection["poison_level"] == level) & (detection["attack"] == attack)
            ]
            for detector, frame in level_detection.groupby("detector", sort=False):
                child_metrics.update(_summary_metrics(frame, f"detection_{detector}_"))
            if not gate.empty:
                verdict = gate[(gate["poison_level"] == level) & (gate["attack"] == attack)]
                if len(verdict):
                    child_metrics["gate_pass"] = float(verdict["verdict"].iloc[0] == "pass")
            child_tags = {
                **run_tags,
                CHILD_KEY_TAG: key,
                PARENT_TAG: parent_id,
                "kfp.level_tasks": "poison, validate, train, evaluate (poison-levels loop)",
            }
            child = children.get(key)
            if child is None:
                child = client.create_run(
                    experiment_id, run_name=key.replace("/", " "), tags=child_tags
                )
                new_runs += 1
            elif any(child.data.tags.get(k) != v for k, v in child_tags.items()):
                client.log_batch(child.info.run_id, tags=_tag_list(child_tags))
            child_params = {
                "poison_level": f"{level:g}",
                "attack": attack,
                "model": model,
                "defense": defense,
                "trials": str(config["trials"]),
                "seed": str(config["seed"]),
                # A user model's import path and keyword arguments (none for a built-in).
                **user_model_params(model, config["train"].get(model)),
            }
            pending[(float(level), attack, model, defense)] = (child, child_params, child_metrics)

        # Params and metrics first, while the models are still being saved (elsewhere).
        for child, child_params, child_metrics in pending.values():
            _log(client, child, child_params, child_metrics, stamp)
        new_models = 0
        if not log_models:
            note = "models not logged (mlflow.log_models false, or --no-models)"
        elif dataset is not None:
            child_ids = {key: child.info.run_id for key, (child, _, _) in pending.items()}
            new_models = _log_models(
                client, experiment_id, run_key, dataset, config, child_ids, models_paths, saving
            )
        for child, _, _ in pending.values():
            if child.info.status != "FINISHED":
                client.set_terminated(child.info.run_id)
        if parent.info.status != "FINISHED":
            client.set_terminated(parent_id)
    return MirrorResult(parent_id, experiment_id, len(pending), new_runs, new_models, note)


def _tag_list(tags: dict[str, str]) -> list:
    from mlflow.entities import RunTag

    return [RunTag(k, str(v)) for k, v in tags.items()]


def _log_dataset(run_id: str, dataset, config: dict, provenance: dict) -> None:
    """The input dataset as an input of the run: its source URI and content hash.

    MLflow links the same dataset to a run once, so mirroring again adds nothing.
    """
    import mlflow

    logged = dataset_input(dataset, config["dataset"]["source"], provenance["input_sha256"])
    with mlflow.start_run(run_id=run_id):
        mlflow.log_input(logged, context="training", tags={"sha256": provenance["input_sha256"]})


def dataset_input(dataset, source: str, sha256: str):
    """The dataset as an MLflow dataset: its values, labels, source and content hash."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.models import infer_signature

    from poisonlab.data import is_generated

    frame = feature_frame(dataset)
    frame["label"] = [dataset.class_names[i] for i in dataset.y]
    logged = mlflow.data.from_pandas(
        frame,
        # sklearn:<name> and synthetic:... are no URIs MLflow resolves: datasets made by code.
        source=CodeDatasetSource({"uri": source}) if is_generated(source) else source,
        targets="label",
        name=source.rsplit("/", 1)[-1],
        digest=sha256[:32],  # MLflow stores at most 36 characters
    )
    # MLflow infers the schema by visiting every value (a minute at a million rows). The
    # columns are typed and never missing (load imputes or refuses), so a few rows say the same.
    logged.schema = infer_signature(frame.head(SCHEMA_ROWS)).inputs
    return logged


def _log_models(
    client,
    experiment_id: str,
    run_key: str,
    dataset,
    config: dict,
    child_ids: dict,
    models_paths: list[str | Path] | None = None,
    saving: SavingMeanwhile | None = None,
) -> int:
    """Log each child's representative model unless it has one already; return how many.

    The models are the pipeline's own (``models_paths``), else fitted again; ``saving``,
    their folders being saved by ``save_model_folders`` in another process. The model
    entity is created here, in the run's experiment and tagged with the run key, so a
    re-mirror finds it; one left unfinished by a failed mirror is filled in rather than
    duplicated.
    """
    existing = _logged_models(client, experiment_id, run_key)
    todo = {
        key: run_id
        for key, run_id in child_ids.items()
        if run_id not in existing or not _ready(existing[run_id])
    }
    if not todo:
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        saved = saving.result() if saving is not None else None
        if saved is None:
            if models_paths is not None:
                models = read_model_files(models_paths)
            else:
                models = representative_models(dataset, config)
            wanted = {child_key(*key) for key in todo}
            models = {key: model for key, model in models.items() if child_key(*key) in wanted}
            saved = save_model_folders(models, example_rows(dataset), Path(scratch))
        pickled = []
        for key, run_id in todo.items():
            # Matched by child key: levels come back from summary.csv with 6 significant
            # digits. None saved: a defence kept too little to fit on (experiment.can_fit).
            if child_key(*key) not in saved:
                continue
            folder, stored = saved[child_key(*key)]
            _upload_model(client, experiment_id, run_key, key, run_id, Path(folder), existing)
            if stored == CLOUDPICKLE:
                pickled.append(child_key(*key))
    if pickled:
        # cloudpickle runs code when loaded: load those models only from a server you trust.
        print(
            f"mirror: {len(pickled)} of {len(todo)} models stored with cloudpickle, not skops "
            f"(e.g. {pickled[0]}); load them only from a tracking server you trust"
        )
    return len(todo)


@contextlib.contextmanager
def _models_saved_meanwhile(
    models_paths: list[str | Path] | None, data_path: str | Path | None
) -> Iterator[SavingMeanwhile | None]:
    """The pipeline's models (``models_paths``) saved by a second process while this one
    logs the runs; None without them. Only for the pipeline's models: there a mirror is
    the run's first, and every model is new."""
    if models_paths is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as scratch:
        saving = SavingMeanwhile(models_paths, data_path, Path(scratch))
        try:
            yield saving
        finally:
            saving.close()


def _upload_model(
    client, experiment_id: str, run_key: str, key: ChildKey, run_id: str, folder: Path, existing
) -> None:
    """Upload a saved model folder as the child's model, in an entity made (or reused) here.

    What ``mlflow.sklearn.log_model`` does, less what costs here and tells nothing new: a
    new client per model, metric copies (the child has none yet), and serving the input
    example through a second load of the model (the skops save already loads it back).
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    model = existing.get(run_id) or client.create_logged_model(
        experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags={RUN_KEY_TAG: run_key, CHILD_KEY_TAG: child_key(*key)},
    )
    described = Model.load(folder)
    described.artifact_path = model.artifact_location
    described.model_uuid = described.model_id = model.model_id
    described.run_id = run_id
    described.save(folder / "MLmodel")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    client.log_model_artifacts(model.model_id, str(folder))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)


# --- for the pipeline task and the command line ---------------------------------------


def mirror_status(
    results_dir: str | Path,
    tracking_uri: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Mirror, and never raise: a status dict (``ok``, ``message``, ...) for a pipeline task.

    A mirror that fails must not fail the run: the results are already written
    and can be mirrored later with ``python -m poisonlab.mirror``.
    """
    started = time.monotonic()
    uri = tracking_uri
    try:
        manifest = json.loads((Path(results_dir) / MANIFEST_FILE).read_text())
        uri = tracking_uri or manifest["config"]["mlflow"]["tracking_uri"]
        # Idempotent, so a store that was busy (another run mirroring) is simply tried again.
        result = retry_busy(lambda: mirror_results(results_dir, tracking_uri, **kwargs))
    except PoisonlabError as error:
        return _status(False, str(error), uri, started)
    # Any failure becomes a status, not a failed run.
    except Exception as error:  # noqa: BLE001
        return _status(False, _one_line(error, uri or "?"), uri, started)
    message = (
        f"mirrored into MLflow run {result.parent_run_id} with {result.children} child runs "
        f"({result.new_runs} new, {result.new_models} new models)"
        + (f"; {result.note}" if result.note else "")
    )
    return _status(True, message, uri, started, result.parent_run_id, result.experiment_id)


def _status(ok, message, uri, started, parent_run_id="", experiment_id="") -> dict[str, Any]:
    return {
        "ok": ok,
        "message": message,
        "tracking_uri": redact_uri(uri) if uri else "",
        "parent_run_id": parent_run_id,
        "experiment_id": experiment_id,
        "seconds": round(time.monotonic() - started, 1),
    }


def write_status(status: dict[str, Any], directory: str | Path) -> None:
    """Record the latest mirror status next to the results (``mirror.json``)."""
    text = json.dumps(status, indent=2, sort_keys=True) + "\n"
    (Path(directory) / MIRROR_STATUS_FILE).write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        prog="python -m poisonlab.mirror",
        description="Mirror a poisonlab run's results into MLflow (again, without duplicates). "
        "Credentials come from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD.",
    )
    parser.add_argument("--results", required=True, help="a run's output directory")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the run's config)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the run's config)")
    parser.add_argument("--no-models", action="store_true", help="skip the representative models")
    args = parser.parse_args(argv)
    if args.tracking_uri:
        check_tracking_uri(args.tracking_uri, "--tracking-uri")
    if not Path(args.results, MANIFEST_FILE).is_file():
        raise PoisonlabError(
            f"--results {args.results}: {MANIFEST_FILE} is missing; give a run's output directory"
        )
    status = mirror_status(
        args.results,
        args.tracking_uri,
        experiment=args.experiment,
        log_models=False if args.no_models else None,
    )
    write_status(status, args.results)
    if not status["ok"]:
        print(f"error: {status['message']}")
        return 1
    print(f"{status['message']} at {status['tracking_uri']} in {status['seconds']} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
