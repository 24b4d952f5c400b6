"""The plan's CPU estimate beside the measured CPU time of the same run on the local runner.

    python benchmarks/plan_accuracy.py [--rows 100000] [--set key=value ...] [--out DIR]

Runs ``poisonlab.plan`` (its pilot on samples of the table), then the whole pipeline
on the KFP local runner, and measures the run's CPU time: this process's own
(``time.process_time``, the runner's orchestration and the MLflow store set-up)
plus every task subprocess it waited for (``RUSAGE_CHILDREN``). Prints both, the
ratio, and the estimate per step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.local import run_local  # noqa: E402
from poisonlab.config import load_config  # noqa: E402
from poisonlab.plan import estimate, estimate_lines, run_pilot, shape_lines  # noqa: E402

# A run whose cost is mostly the steps' work on the rows (no kNN detector: quadratic).
DEFAULTS = [
    "poison.levels=[0.0, 0.1]",
    "poison.attacks=[label_flip, feature_noise]",
    "train.models=[logistic_regression, decision_tree]",
    "validate.detectors=[zscore]",
    "trials=2",
    "mlflow.log_models=false",
]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="where the run's results go")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="plan-accuracy-"))
    out.mkdir(parents=True, exist_ok=True)
    source = f"synthetic:rows={args.rows},features={args.features},classes=2"
    config = load_config(
        None,
        [
            f"dataset.source={source}",
            f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}",
            *DEFAULTS,
            *args.set,
        ],
    )
    print("\n".join(shape_lines(config)))
    pilot = run_pilot(config)
    found = estimate(config, pilot)
    print("\n".join(estimate_lines(config, pilot, found)))

    before_self, before_children = time.process_time(), children_cpu()
    started = time.monotonic()
    run_local(config, out / "results")
    wall = time.monotonic() - started
    own, tasks = time.process_time() - before_self, children_cpu() - before_children
    measured = own + tasks
    ratio = found.cpu_seconds / measured
    print(
        f"\nmeasured: {measured:.0f} CPU-seconds ({tasks:.0f} in tasks, {own:.0f} in this "
        f"process) in {wall:.0f} s wall on {os.cpu_count()} cores"
    )
    print(f"plan / measured = {found.cpu_seconds:.0f} / {measured:.0f} = {ratio:.2f}")
    (out / "plan_accuracy.json").write_text(
        json.dumps(
            {
                "rows": args.rows,
                "config_overrides": [*DEFAULTS, *args.set],
                "estimate_cpu_s": found.cpu_seconds,
                "measured_cpu_s": measured,
                "measured_task_cpu_s": tasks,
                "measured_wall_s": wall,
                "ratio": ratio,
                "steps": {s.step: s.cpu_total for s in found.steps},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
