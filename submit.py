"""Run the poisoning pipeline: locally on the KFP local runner, or on Vertex AI Pipelines.

    python submit.py --local [--config F] [--set k=v ...] [--output-dir D]
    python submit.py --config F --project P [--region R] [--pipeline-root gs://...] [--dry-run]

With no Vertex project configured, ``python submit.py`` runs locally and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from poisonlab.config import load_config
from poisonlab.errors import run_cli
from poisonlab.mirror import absolute_tracking_uri
from poisonlab.preflight import check_experiment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python submit.py",
        description="Run the data-poisoning pipeline locally or on Vertex AI Pipelines.",
    )
    parser.add_argument("--config", help="experiment config (YAML); default: built-in defaults")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    parser.add_argument("--local", action="store_true", help="run on the KFP local runner")
    parser.add_argument("--output-dir", help="local results directory (default: runs/<time>)")
    parser.add_argument(
        "--keep-artifacts", action="store_true", help="keep every task's outputs (local)"
    )
    parser.add_argument("--cache", action="store_true", help="reuse cached task outputs (local)")
    vertex = parser.add_argument_group("Vertex AI")
    vertex.add_argument("--project", help="Google Cloud project (vertex.project)")
    vertex.add_argument("--region", help="Vertex AI region (vertex.region)")
    vertex.add_argument(
        "--pipeline-root", help="gs:// root for task outputs (vertex.pipeline_root)"
    )
    vertex.add_argument("--service-account", help="service account the tasks run as")
    vertex.add_argument("--image", help="container image for every component (vertex.image)")
    vertex.add_argument("--experiment", help="Vertex AI Experiment to link the run to")
    vertex.add_argument("--dry-run", action="store_true", help="print the request, send nothing")
    return parser.parse_args(argv)


def _vertex_overrides(args: argparse.Namespace) -> list[str]:
    """Vertex flags as config overrides, so they are validated with the rest."""
    flags = {
        "project": args.project,
        "region": args.region,
        "pipeline_root": args.pipeline_root,
        "service_account": args.service_account,
        "image": args.image,
        "experiment": args.experiment,
    }
    return [f"vertex.{key}={value}" for key, value in flags.items() if value is not None]


def print_accuracy_table(summary_path: Path) -> None:
    """Mean accuracy without defence per attack and model (rows) and level (columns)."""
    import pandas as pd

    from poisonlab.report import accuracy_table

    table = accuracy_table(pd.read_csv(summary_path))
    print("\nMean accuracy on the clean test set (no defence), by poison level:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def run_locally(config: dict, args: argparse.Namespace) -> int:
    from pipelines.local import run_local

    output_dir = Path(args.output_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    config["mlflow"]["tracking_uri"] = absolute_tracking_uri(config["mlflow"]["tracking_uri"])
    started = time.monotonic()
    run_local(config, output_dir, keep_artifacts=args.keep_artifacts, enable_caching=args.cache)
    elapsed = time.monotonic() - started
    print_accuracy_table(output_dir / "summary.csv")
    uri = config["mlflow"]["tracking_uri"]
    print(f"\nDone in {elapsed:.0f} s. Results in {output_dir}/:")
    print("  summary.csv, detection.csv, report.html, manifest.json")
    print(f"  open the report: {output_dir / 'report.html'}")
    print(
        f"MLflow: experiment '{config['mlflow']['experiment']}' at {uri}; "
        f"browse it with: mlflow ui --backend-store-uri {uri}"
    )
    return report_failed_levels(output_dir)


def report_failed_levels(output_dir: Path) -> int:
    """Say on stderr which poison levels failed; exit code 1 if any did, else 0."""
    manifest = json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))
    failed = manifest["provenance"].get("failed_levels") or []
    for failure in failed:
        print(
            f"error: poison level {failure['level']:g} failed in {failure['step']} "
            f"({failure['error']}); the other levels' results are complete, "
            f"see {output_dir / 'pipeline.log'}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config, [*args.set, *_vertex_overrides(args)])
    # The data are checked against the config here, before any task or job starts.
    check_experiment(config)
    if args.local or (not config["vertex"]["project"] and not args.dry_run):
        if not args.local:
            print("No Vertex project configured (vertex.project or --project): running locally.")
        return run_locally(config, args)
    from pipelines.vertex import submit_to_vertex

    return submit_to_vertex(config, dry_run=args.dry_run)


if __name__ == "__main__":
    run_cli(main)
