"""Scale: the pipeline on synthetic tables of growing size, on the KFP local runner.

    python benchmarks/scale.py [--rows 10000 100000 1000000]

Each size runs levels [0, 0.1], label_flip, logistic_regression and decision_tree,
confident learning and a range check, 1 trial, 20 features. Prints the wall time of each
task (from the runner's log) and the peak resident memory of the largest task
(``getrusage`` of the finished children), and the time ratio between sizes.
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.local import LOG_FILE, run_local  # noqa: E402
from poisonlab.config import load_config  # noqa: E402

_FINISHED = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) - INFO - Task '([^']+)' finished")
_STARTED = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) - INFO - Executing task '([^']+)'")


def _seconds(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def task_times(log: Path) -> dict[str, float]:
    """Total seconds per task name (summed over loop iterations), from pipeline.log."""
    started: dict[str, list[float]] = {}
    totals: dict[str, float] = {}
    for line in log.read_text().splitlines():
        if match := _STARTED.match(line):
            started.setdefault(match[4], []).append(_seconds(*match.groups()[:3]))
        elif (match := _FINISHED.match(line)) and started.get(match[4]):
            begin = started[match[4]].pop(0)
            totals[match[4]] = totals.get(match[4], 0.0) + _seconds(*match.groups()[:3]) - begin
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    rows_out = []
    for rows in args.rows:
        config = load_config(
            None,
            [
                f"dataset.source=synthetic:rows={rows},features=20,classes=2",
                "poison.levels=[0.0, 0.1]",
                "poison.attacks=[label_flip]",
                "train.models=[logistic_regression, decision_tree]",
                "validate.detectors=[confident_learning, zscore]",
                "trials=1",
                "mlflow.log_models=false",
            ],
        )
        with tempfile.TemporaryDirectory() as tmp:
            config["mlflow"]["tracking_uri"] = f"sqlite:///{tmp}/mlflow.db"
            started = time.perf_counter()
            run_local(config, Path(tmp) / "out")
            wall = time.perf_counter() - started
            times = task_times(Path(tmp) / "out" / LOG_FILE)
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        rows_out.append((rows, wall, times, peak_gib))
        print(f"{rows} rows: {wall:.0f} s", flush=True)
    stages = ["load", "poison", "validate", "train", "evaluate", "report", "mirror"]
    print("\n| rows | wall (s) | " + " | ".join(stages) + " | peak task RSS (GiB) |")
    print("|---:|---:|" + "---:|" * len(stages) + "---:|")
    for rows, wall, times, peak in rows_out:
        cells = " | ".join(f"{times.get(stage, float('nan')):.1f}" for stage in stages)
        print(f"| {rows} | {wall:.0f} | {cells} | {peak:.2f} |")
    for (small, t_small, *_), (big, t_big, *_) in zip(rows_out, rows_out[1:], strict=False):
        print(f"{small} -> {big} rows: time x{t_big / t_small:.1f}")


if __name__ == "__main__":
    main()
