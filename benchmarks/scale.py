"""Scale: the pipeline on synthetic tables of growing size, on the KFP local runner.

    python benchmarks/scale.py [--rows 10000 100000 1000000] [--detectors confident_learning zscore]

Each size runs levels [0, 0.1], label_flip, logistic_regression and decision_tree,
confident learning (or ``--detectors``) and a range check, 1 trial, 20 features,
and mirrors into a fresh MLflow sqlite store (models included). Prints two tables:
seconds per stage (from the runner's log; the two levels' tasks added up, though
they run side by side) and the peak resident memory of each stage's largest task
(its ``VmHWM``, read from /proc every 0.1 s while it runs; Linux only), beside
the size of the dataset's feature matrix; then the time ratio between sizes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.local import LOG_FILE, run_local  # noqa: E402
from poisonlab.config import load_config  # noqa: E402
from poisonlab.mirror import MIRROR_STATUS_FILE  # noqa: E402

STAGES = ["load", "poison", "validate", "train", "evaluate", "report", "mirror"]
FEATURES = 20


def _task_seconds(log: Path) -> dict[str, float]:
    """Seconds per task name (summed over loop iterations), from pipeline.log."""

    def seconds(stamp: str) -> float:
        h, m, s = stamp.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    started: dict[str, list[float]] = {}
    totals: dict[str, float] = {}
    pattern = re.compile(r"^(\S+) - INFO - (?:Executing task '([^']+)'|Task '([^']+)' finished)")
    for line in log.read_text(errors="replace").splitlines():
        if not (match := pattern.match(line)):
            continue
        if match[2]:
            started.setdefault(match[2], []).append(seconds(match[1]))
        elif started.get(match[3]):
            begin = started[match[3]].pop(0)
            totals[match[3]] = totals.get(match[3], 0.0) + seconds(match[1]) - begin
    return totals


class PeakMemory(threading.Thread):
    """Samples the peak RSS (VmHWM) of every running KFP task process, by task name."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    self._sample(proc)
            self._stop_event.wait(self.interval)

    def _sample(self, proc: Path) -> None:
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"kfp.dsl.executor_main" not in argv or b"--function_to_execute" not in argv:
                return
            task = argv[argv.index(b"--function_to_execute") + 1].decode()
            status = (proc / "status").read_text()
        except (OSError, IndexError):
            return  # the process ended while being read
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
                self.peaks[task] = max(self.peaks.get(task, 0), peak)

    def stop(self) -> dict[str, int]:
        self._stop_event.set()
        self.join()
        return self.peaks


def run_size(rows: int, detectors: list[str]) -> tuple[float, dict[str, float], dict[str, int]]:
    config = load_config(
        None,
        [
            f"dataset.source=synthetic:rows={rows},features={FEATURES},classes=2",
            "poison.levels=[0.0, 0.1]",
            "poison.attacks=[label_flip]",
            "train.models=[logistic_regression, decision_tree]",
            f"validate.detectors=[{', '.join(detectors)}]",
            "trials=1",
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        config["mlflow"]["tracking_uri"] = f"sqlite:///{tmp}/mlflow.db"
        sampler = PeakMemory()
        sampler.start()
        started = time.perf_counter()
        try:
            run_local(config, Path(tmp) / "out")
        finally:
            peaks = sampler.stop()
        wall = time.perf_counter() - started
        status = json.loads((Path(tmp) / "out" / MIRROR_STATUS_FILE).read_text())
        if not status["ok"]:  # a failed mirror is quick: its time would mislead
            raise SystemExit(f"{rows} rows: the mirror failed: {status['message']}")
        return wall, _task_seconds(Path(tmp) / "out" / LOG_FILE), peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--detectors", nargs="+", default=["confident_learning", "zscore"])
    args = parser.parse_args()
    results = []
    for rows in args.rows:
        wall, seconds, peaks = run_size(rows, args.detectors)
        results.append((rows, wall, seconds, peaks))
        print(f"{rows} rows: {wall:.0f} s", flush=True)

    print(f"\ndetectors: {', '.join(args.detectors)}; seconds per stage")
    print("| rows | wall (s) | " + " | ".join(STAGES) + " |")
    print("|---:|---:|" + "---:|" * len(STAGES))
    for rows, wall, seconds, _ in results:
        cells = " | ".join(f"{seconds.get(stage, float('nan')):.1f}" for stage in STAGES)
        print(f"| {rows} | {wall:.0f} | {cells} |")

    print("\npeak RSS of each stage's largest task (MiB), beside the feature matrix's size")
    print("| rows | features (MiB) | " + " | ".join(STAGES) + " |")
    print("|---:|---:|" + "---:|" * len(STAGES))
    for rows, _, _, peaks in results:
        cells = " | ".join(f"{peaks.get(stage, 0) / 2**20:.0f}" for stage in STAGES)
        print(f"| {rows} | {rows * FEATURES * 8 / 2**20:.0f} | {cells} |")

    for (small, t_small, *_), (big, t_big, *_) in zip(results, results[1:], strict=False):
        print(f"{small} -> {big} rows: time x{t_big / t_small:.1f}")


if __name__ == "__main__":
    main()
