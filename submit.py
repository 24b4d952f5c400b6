"""Run the poisoning pipeline: locally on the KFP local runner, or on Vertex AI Pipelines.

    python submit.py --local [--config F] [--set k=v ...] [--output-dir D]
    python submit.py --config F --project P [--region R] [--pipeline-root gs://...] [--dry-run]
        [--image IMAGE] [--template pipeline.yaml] [--label k=v ...] [--wait --output-dir D]
    python submit.py --fetch-results JOB_NAME_OR_GS_DIR [--output-dir D]
    python submit.py --plan [--config F]   (tasks, units, and a measured estimate of the cost)
    python submit.py --kfp-host URL [--wait] ...

With no Vertex project configured, ``python submit.py`` runs locally and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from poisonlab.config import load_config
from poisonlab.errors import CommandParser, PoisonlabError, run_cli
from poisonlab.paths import check_output_dir
from poisonlab.preflight import check_experiment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python submit.py",
        description="Run the data-poisoning pipeline locally or on Vertex AI Pipelines.",
        hints={"--resume": "to resume a killed local run, run it again with --cache"},
    )
    parser.add_argument("--config", help="experiment config (YAML); default: built-in defaults")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    parser.add_argument("--local", action="store_true", help="run on the KFP local runner")
    parser.add_argument(
        "--plan",
        action="store_true",
        help="print the run's tasks, units and an estimate of its CPU time, memory and wall "
        "time from a local pilot; run nothing (with --dry-run: also the request)",
    )
    parser.add_argument("--output-dir", help="local results directory (default: runs/<time>)")
    parser.add_argument(
        "--keep-artifacts", action="store_true", help="keep every task's outputs (local)"
    )
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reuse cached task outputs (local: off unless given; Vertex and KFP: "
        "vertex.enable_caching, else each task's compiled setting)",
    )
    vertex = parser.add_argument_group("Vertex AI")
    vertex.add_argument("--project", help="Google Cloud project (vertex.project)")
    vertex.add_argument("--region", help="Vertex AI region (vertex.region)")
    vertex.add_argument(
        "--pipeline-root", help="gs:// root for task outputs (vertex.pipeline_root)"
    )
    vertex.add_argument("--service-account", help="service account the tasks run as")
    vertex.add_argument("--image", help="container image for every component (vertex.image)")
    vertex.add_argument("--experiment", help="Vertex AI Experiment to link the run to")
    vertex.add_argument("--network", help="VPC: projects/NUMBER/global/networks/NAME")
    vertex.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="a job label"
    )
    vertex.add_argument("--display-name", help="the job's name in the console")
    vertex.add_argument("--job-id", help="the job's ID (default: display name + time)")
    vertex.add_argument("--template", help="submit this compiled pipeline YAML, do not compile")
    vertex.add_argument("--dry-run", action="store_true", help="print the request, send nothing")
    vertex.add_argument(
        "--wait",
        action="store_true",
        help="wait for the job, then download its results to --output-dir and mirror them",
    )
    vertex.add_argument(
        "--fetch-results",
        metavar="JOB",
        help="download a job's results (job name, or its gs:// directory) and mirror them",
    )
    vertex.add_argument(
        "--no-mirror", action="store_true", help="download results without mirroring to MLflow"
    )
    kfp = parser.add_argument_group("Kubeflow Pipelines cluster")
    kfp.add_argument("--kfp-host", help="submit to this KFP API endpoint instead of Vertex")
    kfp.add_argument("--kfp-namespace", help="the KFP namespace (multi-user clusters)")
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
        "network": args.network,
        "display_name": args.display_name,
        "job_id": args.job_id,
    }
    # JSON-quoted so that YAML keeps every flag a string ("123" stays text).
    overrides = [
        f"vertex.{key}={json.dumps(value)}" for key, value in flags.items() if value is not None
    ]
    if args.cache is not None:
        overrides.append(f"vertex.enable_caching={str(args.cache).lower()}")
    return overrides


def _check_flags(args: argparse.Namespace) -> None:
    """Flags that exclude each other, before anything runs."""
    remote = [
        flag
        for flag, given in (
            ("--dry-run", args.dry_run),
            ("--wait", args.wait),
            ("--template", args.template),
            ("--kfp-host", args.kfp_host),
            ("--fetch-results", args.fetch_results),
        )
        if given
    ]
    if args.local and remote:
        raise PoisonlabError(f"--local runs here; drop {remote[0]} or --local")
    if args.plan and (args.local or args.wait or args.fetch_results):
        flag = "--local" if args.local else "--wait" if args.wait else "--fetch-results"
        raise PoisonlabError(f"--plan runs nothing; drop {flag} or --plan")
    if args.dry_run and args.wait:
        raise PoisonlabError("--dry-run sends nothing, so there is nothing to --wait for")
    if args.fetch_results and (args.dry_run or args.wait or args.kfp_host or args.template):
        raise PoisonlabError("--fetch-results only downloads; drop the submission flags")


def _mirror_uri(config: dict, args: argparse.Namespace) -> str | None:
    """Where brought-back results are mirrored: the config's MLflow, unless --no-mirror."""
    from poisonlab.mirror import absolute_tracking_uri  # imported here: it loads matplotlib

    if args.no_mirror:
        return None
    return absolute_tracking_uri(config["mlflow"]["tracking_uri"])


def print_accuracy_table(summary_path: Path) -> None:
    """The headline metric without defence per attack and model (rows) and level (columns),
    named with the reason it was chosen (manifest.json beside summary.csv)."""
    import pandas as pd

    from poisonlab.report import accuracy_table
    from poisonlab.result_files import MANIFEST_FILE

    manifest = json.loads((summary_path.parent / MANIFEST_FILE).read_text(encoding="utf-8"))
    chosen = manifest.get("headline_metric", {"metric": "accuracy", "reason": ""})
    table = accuracy_table(pd.read_csv(summary_path), chosen["metric"])
    trials = manifest.get("config", {}).get("trials")
    over = f" over {trials} trials (95% intervals in summary.csv)" if trials else ""
    print(f"\nMean {chosen['metric']} on the clean test set (no defence){over}, by poison level")
    print(f"({chosen['reason']}):" if chosen["reason"] else ":")
    if table.empty:  # balanced_accuracy and roc_auc need two classes in a test split
        print(
            f"  none: no trial's test split held two classes, so none measured {chosen['metric']}"
        )
        return
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def run_locally(config: dict, args: argparse.Namespace) -> int:
    from pipelines.local import run_local
    from poisonlab.mirror import absolute_tracking_uri, token_from_secret

    # mlflow.token_secret read here, before the run (the tasks inherit the token): no
    # credentials or access only showed at the mirror, after every level ran.
    token_from_secret(config)

    output_dir = Path(args.output_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    config["mlflow"]["tracking_uri"] = absolute_tracking_uri(config["mlflow"]["tracking_uri"])
    if args.cache:
        from pipelines.local import cache_dir

        print(f"Finished tasks are reused from, and kept in, {cache_dir()} (--cache).")
    started = time.monotonic()
    run_local(
        config, output_dir, keep_artifacts=args.keep_artifacts, enable_caching=bool(args.cache)
    )
    elapsed = time.monotonic() - started
    print_accuracy_table(output_dir / "summary.csv")
    print(f"\nDone in {elapsed:.0f} s. Results in {output_dir}/:")
    certified = ", certified.csv" if (output_dir / "certified.csv").is_file() else ""
    print(f"  summary.csv, detection.csv{certified}, report.html, manifest.json")
    print(f"  open the report: {output_dir / 'report.html'}")
    report_mirror(output_dir, config)
    return report_failed_levels(output_dir)


def first_failures(failures: list[dict], part: str) -> list[dict]:
    """The first of ``failures`` for each level, attack and ``part`` (model or detector):
    one line each, not one per trial and defence."""
    said, first = set(), []
    for failure in failures:
        key = (failure["level"], failure["attack"], failure[part])
        if key not in said:
            said.add(key)
            first.append(failure)
    return first


def report_failed_levels(output_dir: Path) -> int:
    """Say on stderr which poison levels, attacks, models' fits and detectors failed;
    exit code 1 if any did, else 0."""
    manifest = json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))
    failed = manifest["provenance"].get("failed_levels") or []
    for failure in failed:
        print(
            f"error: poison level {failure['level']:g} failed in {failure['step']} "
            f"({failure['error']}); the other levels' results are complete, "
            f"see {output_dir / 'pipeline.log'}",
            file=sys.stderr,
        )
    fits = manifest["provenance"].get("failed_fits") or []
    for fit in first_failures(fits, "model"):
        print(
            f"error: model {fit['model']} failed at poison level {fit['level']:g} under "
            f"{fit['attack']} ({fit['error']}); it has no metrics there, every other result "
            "is complete",
            file=sys.stderr,
        )
    attacks = manifest["provenance"].get("failed_attacks") or []
    for attack in first_failures(attacks, "attack"):
        print(
            f"error: attack {attack['attack']} failed at poison level {attack['level']:g} "
            f"({attack['error']}); it has no results there, every other attack's are complete",
            file=sys.stderr,
        )
    detections = manifest["provenance"].get("failed_detections") or []
    for found in first_failures(detections, "detector"):
        print(
            f"error: detector {found['detector']} failed at poison level {found['level']:g} "
            f"under {found['attack']} ({found['error']}); where it failed it has no detection "
            "metrics and its defence was not trained, every other result is complete",
            file=sys.stderr,
        )
    return 1 if failed or fits or attacks or detections else 0


def report_mirror(output_dir: Path, config: dict) -> None:
    """Say where MLflow has the run; if the mirror failed, warn and give the command for later."""
    from poisonlab.mirror import MIRROR_STATUS_FILE, remirror_command

    status = json.loads((output_dir / MIRROR_STATUS_FILE).read_text())
    uri = config["mlflow"]["tracking_uri"]
    if status["ok"]:
        from poisonlab.mirror import run_page

        browse = f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite:") else uri
        print(
            f"MLflow: experiment '{config['mlflow']['experiment']}', parent run "
            f"{status['parent_run_id']}; browse it with: {browse}"
        )
        print(
            f"  the run's page: {run_page(uri, status['experiment_id'], status['parent_run_id'])}"
        )
        return
    print(
        f"warning: the results were not mirrored to MLflow ({status['message']}). "
        f"They are all in {output_dir}/; mirror them once the server is up with:\n"
        f"  {remirror_command(output_dir, uri)}",
        file=sys.stderr,
    )


def note_user_modules(config: dict) -> None:
    """Say which modules of the user's code the image must provide: tasks on Vertex AI or a
    Kubeflow cluster import them there, not from this machine."""
    from poisonlab.usercode import user_modules

    modules = user_modules(config)
    if modules:
        listed = "; ".join(f"{module} ({', '.join(fields)})" for module, fields in modules.items())
        print(
            f"note: the image must provide these modules of your own code: {listed}. Build it "
            "with the Dockerfile's USER_REQUIREMENTS and USER_PACKAGE build arguments (README, "
            "'Your own model and gate')",
            file=sys.stderr,
        )


def print_plan(config: dict, estimate: bool) -> None:
    """The run's shape and machines (``poisonlab.plan``); with ``estimate``, the pilot's
    measured estimate of its cost. On stderr: stdout may be a request body."""
    from poisonlab.plan import plan, shape_lines

    if estimate:
        print("plan: running a pilot on samples of the table ...", file=sys.stderr)
    lines = plan(config) if estimate else shape_lines(config)
    if not estimate:
        lines.append("plan: python submit.py --plan adds a measured estimate of CPU time and cost")
    print("\n".join(lines), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _check_flags(args)
    if args.output_dir and not (args.dry_run or args.plan):  # both write nothing there
        check_output_dir(args.output_dir, "--output-dir")
    config = load_config(args.config, [*args.set, *_vertex_overrides(args)])
    if args.label:
        from pipelines.vertex import parse_label_flags

        config["vertex"]["labels"] = {
            **(config["vertex"]["labels"] or {}),
            **parse_label_flags(args.label),
        }
    output_dir = Path(args.output_dir) if args.output_dir else None
    if args.fetch_results:
        from pipelines.vertex import fetch_results

        return fetch_results(config, args.fetch_results, output_dir, _mirror_uri(config, args))
    if args.plan and not args.dry_run:
        check_experiment(config)  # the data against the config, before the pilot reads it
        print_plan(config, estimate=True)
        return 0
    if args.kfp_host:
        from pipelines.kfp_cluster import submit_to_kfp
        from pipelines.vertex import check_dataset_source

        # A local file gets the cluster's own error before it is read here (as for Vertex).
        check_dataset_source(config["dataset"]["source"])
        check_experiment(config)  # the data against the config, before any job exists
        note_user_modules(config)
        code = submit_to_kfp(
            config,
            args.kfp_host,
            namespace=args.kfp_namespace,
            template=args.template,
            dry_run=args.dry_run,
            wait=args.wait,
        )
        if args.dry_run:  # after the request: everything in it was checked by then
            print_plan(config, estimate=args.plan)
        return code
    remote = args.dry_run or args.wait or args.template
    if args.local or (not config["vertex"]["project"] and not remote):
        check_experiment(config)  # the data against the config, before the runner starts
        if not args.local:
            print("No Vertex project configured (vertex.project or --project): running locally.")
        return run_locally(config, args)
    from pipelines.vertex import check_dataset_source, submit_to_vertex

    # A local file gets Vertex's own error (tasks there cannot read it) before it is read here.
    check_dataset_source(config["dataset"]["source"])
    check_experiment(config)  # the data against the config, before any job is built
    note_user_modules(config)
    code = submit_to_vertex(
        config,
        template=args.template,
        dry_run=args.dry_run,
        wait=args.wait,
        output_dir=output_dir,
        tracking_uri=_mirror_uri(config, args),
    )
    if args.dry_run:  # after the request: everything in it was checked by then
        print_plan(config, estimate=args.plan)
    return code


if __name__ == "__main__":
    run_cli(main)
