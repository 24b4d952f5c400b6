"""One large table, three fan-outs on the local runner: the same results, other task sizes.

    python benchmarks/fan_out.py [--rows 1000000] [--trials 2] [--out DIR]

Runs the pipeline on a synthetic table with ``pipeline.fan_out: level`` (one task
chain per level), ``level_attack`` (one per level and attack) and ``level_attack``
with ``trials_per_task: 1`` (one per level, attack and trial), and checks that
summary.csv and detection.csv are byte-identical. Prints each run's tasks, wall time
and CPU time (tasks' and this process's). The local runner runs at most 2 loop
iterations at once, so finer units buy no speed here; on Vertex they run side by side.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.local import run_local  # noqa: E402
from poisonlab.config import load_config  # noqa: E402
from poisonlab.units import shape  # noqa: E402

BASE = [
    "poison.levels=[0.0, 0.1]",
    "poison.attacks=[label_flip, feature_noise]",
    "train.models=[logistic_regression]",
    "validate.detectors=[zscore]",
    "mlflow.log_models=false",
]
FAN_OUTS = {
    "level": [],
    "level_attack": ["pipeline.fan_out=level_attack"],
    "level_attack, 1 trial per task": [
        "pipeline.fan_out=level_attack",
        "pipeline.trials_per_task=1",
    ],
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="fan-out-"))
    source = f"synthetic:rows={args.rows},features={args.features},classes=2"
    results, rows = {}, []
    for name, extra in FAN_OUTS.items():
        folder = out / name.replace(", ", "-").replace(" ", "_")
        config = load_config(
            None,
            [
                f"dataset.source={source}",
                f"trials={args.trials}",
                f"mlflow.tracking_uri=sqlite:///{folder / 'mlflow.db'}",
                *BASE,
                *extra,
            ],
        )
        before, started = _cpu(), time.monotonic()
        run_local(config, folder / "results")
        wall, cpu = time.monotonic() - started, _cpu() - before
        results[name] = {
            f: (folder / "results" / f).read_bytes() for f in ("summary.csv", "detection.csv")
        }
        rows.append((name, shape(config).tasks, wall, cpu))
        print(
            f"{name}: {shape(config).tasks} tasks, {wall:.0f} s wall, {cpu:.0f} CPU-s", flush=True
        )
    first = next(iter(results.values()))
    same = {name: got == first for name, got in results.items()}
    print(f"\n{args.rows} rows, {args.trials} trials; identical summary.csv and detection.csv:")
    print("| fan-out | tasks | wall (s) | CPU (s) | identical to level |")
    print("|---|---:|---:|---:|---|")
    for name, tasks, wall, cpu in rows:
        print(f"| {name} | {tasks} | {wall:.0f} | {cpu:.0f} | {same[name]} |")
    (out / "fan_out.json").write_text(
        json.dumps({"rows": args.rows, "runs": rows, "identical": same}, indent=2)
    )
    if not all(same.values()):
        sys.exit("the fan-outs' results differ")


if __name__ == "__main__":
    main()
