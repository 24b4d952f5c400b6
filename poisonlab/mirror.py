"""Mirror a run's results into MLflow: a parent run, one child per result row group.

Reads only the results directory (summary.csv, detection.csv, report.html,
manifest.json), so the same code serves the pipeline's ``mirror`` task and a
later re-mirror from the command line:

    python -m poisonlab.mirror --results runs/my-run [--tracking-uri URI]

Runs are found again by tags, so mirroring the same results twice updates the
same runs instead of adding new ones; metrics are logged with a fixed
timestamp and step, so their history does not grow either.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from poisonlab.errors import PoisonlabError, run_cli
from poisonlab.report import DETECTION_FILE, MANIFEST_FILE, REPORT_FILE, SUMMARY_FILE

RUN_KEY_TAG = "poisonlab.run_key"
CHILD_KEY_TAG = "poisonlab.child_key"
PARENT_TAG = "mlflow.parentRunId"


def absolute_tracking_uri(uri: str, base: Path | None = None) -> str:
    """``sqlite:///mlflow.db`` relative to ``base`` (default: here) made absolute.

    Pipeline tasks may run in another directory; an absolute URI finds the same file.
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str((base or Path.cwd()).resolve() / uri.removeprefix(prefix))
    return uri


def _flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested config -> {"poison.levels": "[0.0, 0.1]", ...}."""
    if isinstance(value, dict):
        flat: dict[str, str] = {}
        for key, sub in value.items():
            flat.update(_flatten(f"{prefix}.{key}" if prefix else key, sub))
        return flat
    return {prefix: json.dumps(value) if not isinstance(value, str) else value}


def _metric_name(*parts: str) -> str:
    return "_".join(p for p in parts if p)


def _log(client, run_id: str, params: dict[str, str], metrics: dict[str, float], tags: dict):
    """Log params, metrics and tags in one batch; skip params the run already has."""
    from mlflow.entities import Metric, Param, RunTag

    existing = client.get_run(run_id).data.params
    batch_params = [Param(k, v[:6000]) for k, v in params.items() if k not in existing]
    # Fixed timestamp and step: logging the same value again adds no history.
    batch_metrics = [Metric(k, float(v), 0, 0) for k, v in metrics.items() if pd.notna(v)]
    batch_tags = [RunTag(k, str(v)) for k, v in tags.items()]
    for start in range(0, max(len(batch_metrics), 1), 1000):
        client.log_batch(
            run_id,
            metrics=batch_metrics[start : start + 1000],
            params=batch_params if start == 0 else [],
            tags=batch_tags if start == 0 else [],
        )


def mirror_results(
    results_dir: str | Path,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Mirror one run's results into MLflow; return the parent run's id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    results_dir = Path(results_dir)
    for name in (SUMMARY_FILE, DETECTION_FILE, MANIFEST_FILE):
        if not (results_dir / name).is_file():
            raise PoisonlabError(
                f"--results {results_dir}: {name} is missing; give a run's output directory"
            )
    manifest = json.loads((results_dir / MANIFEST_FILE).read_text())
    config = manifest["config"]
    tracking_uri = tracking_uri or config["mlflow"]["tracking_uri"]
    experiment = experiment or config["mlflow"]["experiment"]
    run_key = manifest["run_key"]

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)

    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'", max_results=50000
    )
    parent = next((run for run in runs if CHILD_KEY_TAG not in run.data.tags), None)
    children = {
        run.data.tags[CHILD_KEY_TAG]: run.info.run_id
        for run in runs
        if CHILD_KEY_TAG in run.data.tags
    }
    run_tags = {RUN_KEY_TAG: run_key, **(tags or {})}
    if parent is None:
        parent = client.create_run(
            experiment_id, run_name=manifest.get("run_name", run_key), tags=run_tags
        )
    parent_id = parent.info.run_id

    summary = pd.read_csv(results_dir / SUMMARY_FILE)
    detection = pd.read_csv(results_dir / DETECTION_FILE)
    provenance = manifest["provenance"]
    params = _flatten("", {k: v for k, v in config.items() if k not in ("vertex",)})
    params["data_sha256"] = provenance["input_sha256"]
    headline = summary[(summary["metric"] == "accuracy") & (summary["defense"] == "none")]
    metrics = {
        _metric_name("accuracy", attack, model, f"level{level:g}"): mean
        for level, attack, model, mean in headline[
            ["poison_level", "attack", "model", "mean"]
        ].itertuples(index=False)
    }
    failed = provenance.get("failed_levels") or []
    parent_tags = {
        **run_tags,
        "data_sha256": provenance["input_sha256"],
        # Which levels are missing, so the MLflow UI does not pass them off as complete.
        "failed_levels": ", ".join(f"{f['level']:g} ({f['step']})" for f in failed) or "none",
    }
    _log(client, parent_id, params, metrics, parent_tags)
    if (results_dir / REPORT_FILE).is_file():
        client.log_artifact(parent_id, str(results_dir / REPORT_FILE))
    # Every SHA-256 (input, splits, poisoned variants) travels in the manifest.
    client.log_artifact(parent_id, str(results_dir / MANIFEST_FILE))

    group = ["poison_level", "attack", "model", "defense"]
    for (level, attack, model, defense), rows in summary.groupby(group, sort=False):
        child_key = f"{level:g}/{attack}/{model}/{defense}"
        child_metrics = {}
        for metric, mean, low, high in rows[["metric", "mean", "ci_low", "ci_high"]].itertuples(
            index=False
        ):
            child_metrics.update(
                {f"{metric}_mean": mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high}
            )
        detected = detection[(detection["poison_level"] == level) & (detection["attack"] == attack)]
        for detector, metric, mean in detected[["detector", "metric", "mean"]].itertuples(
            index=False
        ):
            child_metrics[f"detection_{detector}_{metric}_mean"] = mean
        child_tags = {**run_tags, CHILD_KEY_TAG: child_key, PARENT_TAG: parent_id}
        child_id = children.get(child_key)
        if child_id is None:
            child_id = client.create_run(
                experiment_id, run_name=child_key.replace("/", " "), tags=child_tags
            ).info.run_id
        child_params = {
            "poison_level": f"{level:g}",
            "attack": attack,
            "model": model,
            "defense": defense,
            "trials": str(config["trials"]),
            "seed": str(config["seed"]),
        }
        _log(client, child_id, child_params, child_metrics, child_tags)
        client.set_terminated(child_id)
    client.set_terminated(parent_id)
    return parent_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m poisonlab.mirror",
        description="Mirror a poisonlab run's results into MLflow (again, without duplicates).",
    )
    parser.add_argument("--results", required=True, help="a run's output directory")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the run's config)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the run's config)")
    args = parser.parse_args(argv)
    run_id = mirror_results(args.results, args.tracking_uri, args.experiment)
    print(f"mirrored {args.results} into MLflow run {run_id}")
    return 0


if __name__ == "__main__":
    run_cli(main)
