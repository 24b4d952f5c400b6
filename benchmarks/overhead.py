"""Orchestration overhead: the default Iris run on the KFP local runner beside the same
work done in one process by calling the library directly.

    python benchmarks/overhead.py [--config configs/iris.yaml] [--set k=v ...] [--repeat 1]
                                  [--cache]

Both sides call the same steps (``poisonlab.steps``) with the same files between
them: load; poison, validate, train and evaluate every level; report; mirror into a
fresh MLflow sqlite store. The difference is the orchestration. A third run times
the whole ``python submit.py --local`` command, as a user runs it (start-up and
checks before the runner starts included). Prints a table of wall times and ratios, and
the whole command's tail: from its last ``evaluate`` task line to its end.

Each way's CPU time (user + system, its task processes and threads included) is
printed beside its wall time: two cores cannot finish a run in less wall time than
half its CPU time, whatever the order its tasks run in.

With ``--cache``, two more runs of the whole command with ``--cache`` into one output
directory, from an empty cache: the second takes every task but the mirror from the cache.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.local import run_local  # noqa: E402
from poisonlab import steps  # noqa: E402
from poisonlab.config import canonical_json, load_config  # noqa: E402
from poisonlab.mirror import mirror_results  # noqa: E402


def in_process(config: dict, workdir: Path) -> float:
    """The pipeline's steps called in order in this process, files in ``workdir``."""
    started = time.perf_counter()
    text = canonical_json(config)
    data, splits = str(workdir / "data.parquet"), str(workdir / "splits.parquet")
    steps.load(text, data, splits)
    levels = []
    for i, level in enumerate(config["poison"]["levels"]):
        poisoned, detections, models, level_results = (
            str(workdir / f"{name}-{i}") for name in ("poisoned", "detections", "models", "level")
        )
        steps.poison(text, level, data, splits, poisoned)
        steps.validate(text, poisoned, detections, data, splits)
        steps.train(text, poisoned, detections, models)
        steps.evaluate(text, level, data, splits, poisoned, detections, models, level_results)
        levels.append(level_results)
    results = workdir / "results"
    steps.report(text, levels, data, str(results), f"in-process-{workdir.name}")
    models = steps.level_model_files(levels)
    mirror_results(results, config["mlflow"]["tracking_uri"], data_path=data, models_paths=models)
    return time.perf_counter() - started


def on_local_runner(config: dict, workdir: Path) -> float:
    started = time.perf_counter()
    run_local(config, workdir)
    return time.perf_counter() - started


_TASK_LINE = re.compile(r"^\s*(\d+) s  (\S+)\s+success", re.MULTILINE)
TAILS: list[float] = []


def whole_command(config: dict, workdir: Path, *flags: str) -> float:
    """``python submit.py --local`` as a user runs it: start-up and checks included.
    Records the run's tail (last ``evaluate`` line to the end) in ``TAILS``."""
    config_file = workdir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    command = [sys.executable, str(ROOT / "submit.py"), "--local", "--config", str(config_file)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, *flags, "--output-dir", str(workdir / "out")],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(workdir), "POISONLAB_CACHE_DIR": str(workdir / "cache")},
        check=True,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    lines = [(int(t), task) for t, task in _TASK_LINE.findall(done.stdout)]
    last_evaluate = max((t for t, task in lines if task == "evaluate"), default=None)
    if last_evaluate is not None:
        # Task lines and "Done in" both count from the run's start (whole seconds).
        TAILS.append(float(re.search(r"Done in (\d+) s", done.stdout)[1]) - last_evaluate)
    return elapsed


def cached_pair(config: dict, workdir: Path) -> tuple[float, float]:
    """Two ``--cache`` runs into one output directory from an empty cache."""
    first = whole_command(config, workdir, "--cache")
    second = whole_command(config, workdir, "--cache")
    size = sum(f.stat().st_size for f in (workdir / "cache").rglob("*") if f.is_file())
    print(f"cache after one run: {size / 2**20:.1f} MiB")
    return first, second


def cpu_seconds() -> float:
    """CPU time of this process and its waited-for children so far (user + system)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


RUNS = {
    "in process": in_process,
    "KFP local runner": on_local_runner,
    "python submit.py --local (whole command)": whole_command,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/iris.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cache", action="store_true", help="also time a cached second run")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    times: dict[str, list[float]] = {name: [] for name in RUNS}
    cpu: dict[str, list[float]] = {name: [] for name in RUNS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for k, (name, run) in enumerate(RUNS.items()):
                workdir = Path(tmp) / f"{i}-{k}"
                workdir.mkdir()
                run_config = copy.deepcopy(config)
                run_config["mlflow"]["tracking_uri"] = f"sqlite:///{workdir / 'mlflow.db'}"
                cpu_before = cpu_seconds()
                times[name].append(run(run_config, workdir))
                cpu[name].append(cpu_seconds() - cpu_before)
    cached: list[tuple[float, float]] = []
    if args.cache:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.repeat):
                run_config = copy.deepcopy(config)
                run_config["mlflow"]["tracking_uri"] = f"sqlite:///{Path(tmp) / f'{i}.db'}"
                workdir = Path(tmp) / f"cached-{i}"
                workdir.mkdir()
                cached.append(cached_pair(run_config, workdir))
    base = statistics.median(times["in process"])
    print(
        f"\nconfig {args.config} {' '.join(args.set)}: {config['trials']} trials, "
        f"{len(config['poison']['levels'])} levels, median of {args.repeat}"
    )
    print("| how | wall time (s) | ratio to in-process | CPU time (s) | half the CPU time (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        median, cpu_median = statistics.median(values), statistics.median(cpu[name])
        print(
            f"| {name} | {median:.1f} | {median / base:.2f} | {cpu_median:.1f} "
            f"| {cpu_median / 2:.1f} |"
        )
    for label, index in (("--cache, empty cache", 0), ("--cache again, same output dir", 1)):
        if cached:
            median = statistics.median(pair[index] for pair in cached)
            print(f"| python submit.py --local {label} | {median:.1f} | {median / base:.2f} | | |")
    if cached:
        ratio = statistics.median(second / first for first, second in cached)
        print(f"\ncached second run / first run: {ratio:.2f}")
    print(f"tail of the whole command (last evaluate to the end), s: {sorted(TAILS)}")


if __name__ == "__main__":
    main()
