"""A plan before paying: how many tasks a run makes and roughly what it costs.

``python submit.py --plan`` measures a local *pilot*: the pipeline's own steps
(``poisonlab.steps``) on row samples of the table at two sizes, one trial of each
attack at the config's highest poison level, with every model and detector. Each
step runs in a forked process, so its CPU time (user + system) and peak memory are
its own (``os.wait4``). Each step's cost per attack is extrapolated to the full table
by its measured growth with rows, ``t(N) = t(n2) * (N / n2) ** b`` with ``b =
log(t(n2) / t(n1)) / log(n2 / n1)`` (clipped to [0.5, 3]; memory's to [0, 1.5]),
then multiplied out over levels, trials and units (``poisonlab.units``). Each task
also pays its process start and imports, measured once per kind of step. The report
and mirror are measured on the pilot's one level and scaled by the number of levels.

What it does not know: how long Vertex takes to start a task (it prints how many
start one after another instead), and the cost of the quantity experiment.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab import resources as machines
from poisonlab import units
from poisonlab.config import canonical_json
from poisonlab.errors import PoisonlabError

# The pilot's larger sample: a tenth of the table, within these bounds; the smaller a
# quarter of it. Tables smaller than the smallest pilot are piloted whole and at half.
PILOT_MAX_ROWS = 20_000
PILOT_MIN_ROWS = 2_000
_EXPONENT = (0.5, 3.0)
_MEMORY_EXPONENT = (0.0, 1.5)
# What each step's task imports before its work (its component's imports, as a task's
# executor runs them), measured in a fresh interpreter.
_EXECUTOR = "import kfp.dsl.executor_main, poisonlab.steps"
_IMPORTS = {
    "load": _EXECUTOR,
    "units": "import kfp.dsl.executor_main, poisonlab.units",
    "poison": _EXECUTOR,
    "validate": f"{_EXECUTOR}, poisonlab.detectors",
    "train": f"{_EXECUTOR}, poisonlab.models",
    "evaluate": f"{_EXECUTOR}, poisonlab.models, poisonlab.metrics, "
    "poisonlab.certify.evaluation, poisonlab.quantity",
    "gather": "import kfp.dsl.executor_main, poisonlab.fan_in",
    "report": f"{_EXECUTOR}, poisonlab.report, poisonlab.plots",
    "mirror": f"{_EXECUTOR}, poisonlab.mirror",
}


@dataclass(frozen=True)
class Measured:
    """CPU seconds and peak resident memory (MB) of one forked step."""

    cpu: float
    peak_mb: float


def _rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(work: Callable[..., Any], *args: Any) -> Measured:
    """Run ``work(*args)`` in a forked child; its CPU time and its memory growth over
    this process's resident memory at the fork (the child starts sharing it)."""
    base = _rss_mb()
    sys.stdout.flush()
    sys.stderr.flush()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the child writes it, the parent reads it
    pid = os.fork()
    if pid == 0:  # the child: work, then leave at once (no atexit, no flushing twice)
        code = 0
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            work(*args)
        except BaseException:  # noqa: BLE001 - reported through the exit code
            import traceback

            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        log.seek(0)
        lines = log.read().decode(errors="replace").strip().splitlines() or ["no output"]
        raise PoisonlabError(f"--plan: the pilot's {work.__name__} step failed: {lines[-1]}")
    log.close()
    peak = usage.ru_maxrss / 1024  # KB on Linux
    return Measured(usage.ru_utime + usage.ru_stime, max(0.0, peak - base))


# A fresh interpreter's own peak memory: VmHWM belongs to its address space, while
# ru_maxrss would count the memory of this process it was forked from before its exec.
_PEAK = "; print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')))"


def task_start(step: str) -> Measured:
    """A task's start: a fresh interpreter importing what ``step``'s task imports."""
    process = subprocess.Popen(
        [sys.executable, "-c", _IMPORTS[step] + _PEAK],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise PoisonlabError(f"--plan: importing what a {step} task imports failed")
    peak_kb = int(output.split("VmHWM:")[1].split()[0])
    return Measured(usage.ru_utime + usage.ru_stime, peak_kb / 1024)


def growth(small: float, large: float, n_small: int, n_large: int, bounds: tuple) -> float:
    """The exponent b of cost ~ rows**b through two measurements (clipped to ``bounds``;
    the lower bound where either measurement is too small to time)."""
    if n_large <= n_small or small <= 0 or large <= 0:
        return bounds[0] if bounds[0] > 0 else 1.0
    b = math.log(large / small) / math.log(n_large / n_small)
    return float(min(max(b, bounds[0]), bounds[1]))


def extrapolate(small: Measured, large: Measured, n_small: int, n_large: int, n: int) -> Measured:
    """A step's cost at ``n`` rows from its cost at two sample sizes."""
    b = growth(small.cpu, large.cpu, n_small, n_large, _EXPONENT)
    m = growth(small.peak_mb, large.peak_mb, n_small, n_large, _MEMORY_EXPONENT)
    scale = n / n_large
    return Measured(large.cpu * scale**b, large.peak_mb * scale**m)


def pilot_sizes(n_rows: int) -> tuple[int, int]:
    """The two sample sizes of the pilot for a table of ``n_rows``."""
    large = min(n_rows, max(PILOT_MIN_ROWS, min(PILOT_MAX_ROWS, n_rows // 10)))
    return max(10, large // 4 if large < n_rows else large // 2), large


def _sample(frame, y: np.ndarray | None, n: int, seed: int):
    """``n`` rows of ``frame``, every class in proportion where the labels are known."""
    from poisonlab.seeding import derive_rng

    rng = derive_rng(seed, "plan", n)
    if y is None or len(y) != len(frame):
        return frame.iloc[np.sort(rng.choice(len(frame), n, replace=False))]
    chosen = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        k = max(2, round(n * len(rows) / len(y)))
        chosen.append(rng.choice(rows, min(k, len(rows)), replace=False))
    return frame.iloc[np.sort(np.concatenate(chosen))]


@dataclass
class Pilot:
    """What the pilot measured: per step (and attack) at the two sizes."""

    n_rows: int
    sizes: tuple[int, int]
    steps: dict[tuple[str, str], tuple[Measured, Measured]] = field(default_factory=dict)
    starts: dict[str, Measured] = field(default_factory=dict)
    seconds: float = 0.0


def run_pilot(config: dict[str, Any], work_dir: str | Path | None = None) -> Pilot:
    """Measure the pilot (module docstring): one trial of each attack, every model and
    detector, at the config's highest level, on samples of the table at two sizes."""
    from poisonlab import fan_in, steps
    from poisonlab.data import read_configured

    started = time.monotonic()
    frame, dataset, _ = read_configured(config["dataset"])
    labels = dataset.y
    n_rows = len(labels)
    del dataset
    sizes = pilot_sizes(n_rows)
    pilot = Pilot(n_rows, sizes)
    level = max(config["poison"]["levels"])
    own = tempfile.mkdtemp(prefix="poisonlab-plan-") if work_dir is None else None
    base = Path(work_dir or own)
    try:
        for n in sizes:
            root = base / f"rows-{n}"
            root.mkdir(parents=True, exist_ok=True)
            table = root / "table.parquet"
            _sample(frame, labels, n, config["seed"]).to_parquet(table, index=False)
            trial = copy.deepcopy(config)
            trial["dataset"]["source"] = str(table)
            trial["quantity"]["enabled"] = False
            trial["mlflow"]["tracking_uri"] = f"sqlite:///{root / 'mlflow.db'}"
            text = canonical_json(trial)
            data, splits = str(root / "data"), str(root / "splits")
            costs = {("load", ""): measure(steps.load, text, data, splits)}
            unit_dirs = []
            for attack in config["poison"]["attacks"]:
                item = {"attacks": [attack], "trials": [0]}
                p, d, m, out = (str(root / f"{s}-{attack}") for s in "pdmo")
                costs[("poison", attack)] = measure(
                    steps.poison, text, level, data, splits, p, item
                )
                costs[("validate", attack)] = measure(steps.validate, text, p, d, data, splits)
                costs[("train", attack)] = measure(steps.train, text, p, d, m)
                costs[("evaluate", attack)] = measure(
                    steps.evaluate, text, level, data, splits, p, d, m, out, item
                )
                unit_dirs.append(out)
            level_dir, results = str(root / "level"), str(root / "results")
            costs[("gather", "")] = measure(fan_in.gather, text, level, unit_dirs, level_dir)
            costs[("report", "")] = measure(steps.report, text, [level_dir], data, results, "plan")
            # The store's tables exist before a run's mirror (a server, or made while the
            # levels run locally): their creation is not the mirror's cost.
            measure(_prepare_store, trial["mlflow"]["tracking_uri"])
            costs[("mirror", "")] = measure(_mirror, results, level_dir, trial)
            for key, cost in costs.items():
                pilot.steps.setdefault(key, ())
                pilot.steps[key] = (*pilot.steps[key], cost)
        pilot.starts = {step: task_start(step) for step in _IMPORTS}
    finally:
        if own:
            shutil.rmtree(own, ignore_errors=True)
    pilot.seconds = time.monotonic() - started
    return pilot


def _prepare_store(uri: str) -> None:
    from poisonlab.mlflow_store import prepare_store

    prepare_store(uri)


def _mirror(results: str, level_dir: str, config: dict[str, Any]) -> None:
    from poisonlab.mirror import mirror_status
    from poisonlab.steps import level_model_files

    # MLflow keeps a SQLite store's artifacts (reports, models) in ./mlruns of the process
    # that makes the experiment: in the pilot's own folder, not the user's (this child's
    # working directory is its own).
    os.chdir(Path(level_dir).parent)
    status = mirror_status(
        results,
        tracking_uri=config["mlflow"]["tracking_uri"],
        tags={"poisonlab.run_key": "plan"},
        data_path=str(Path(level_dir).parent / "data"),
        models_paths=level_model_files([level_dir]),
    )
    if not status["ok"]:
        raise PoisonlabError(f"--plan: the pilot's mirror failed: {status['message']}")


@dataclass(frozen=True)
class StepEstimate:
    """One kind of task over the whole run."""

    step: str
    tasks: int
    cpu_per_task: float  # seconds, the task's start included
    cpu_total: float
    peak_mb: float  # the largest task's
    machine: dict[str, float]


@dataclass(frozen=True)
class Estimate:
    shape: units.Shape
    steps: list[StepEstimate]
    cpu_seconds: float
    billed_vcpu_hours: float
    wall_seconds: float
    chain_starts: int


def estimate(config: dict[str, Any], pilot: Pilot) -> Estimate:
    """The run's cost from the pilot's measurements (module docstring)."""
    shape = units.shape(config)
    n, (n1, n2) = pilot.n_rows, pilot.sizes
    resources = config["vertex"]["resources"] or {}
    levels = len(config["poison"]["levels"])

    def at_n(step: str, attack: str = "") -> Measured:
        small, large = pilot.steps[(step, attack)]
        return extrapolate(small, large, n1, n2, n)

    def start(step: str) -> Measured:
        return pilot.starts[step]

    items = units.level_items(config)
    rows = []
    per_unit_wall = []
    for step in units.UNIT_STEPS:
        # A unit's cost: its attacks' one-trial costs times its trials.
        unit_costs = [
            sum(at_n(step, a).cpu for a in item["attacks"]) * len(item["trials"]) for item in items
        ]
        peak = max(at_n(step, a).peak_mb for a in config["poison"]["attacks"])
        tasks = levels * len(items)
        total = levels * sum(unit_costs) + tasks * start(step).cpu
        rows.append(
            StepEstimate(
                step,
                tasks,
                total / tasks,
                total,
                start(step).peak_mb + peak,
                machines.machine(resources, step),
            )
        )
        per_unit_wall.append([c + start(step).cpu for c in unit_costs])
    load = at_n("load")
    rows.insert(
        0,
        StepEstimate(
            "load",
            1,
            load.cpu + start("load").cpu,
            load.cpu + start("load").cpu,
            start("load").peak_mb + load.peak_mb,
            machines.machine(resources, "load"),
        ),
    )
    if units.nested(config):
        gather = at_n("gather").cpu * config["trials"] + start("gather").cpu
        rows.append(
            StepEstimate(
                "units",
                levels,
                start("units").cpu,
                levels * start("units").cpu,
                start("units").peak_mb,
                machines.machine(resources, "units"),
            )
        )
        rows.append(
            StepEstimate(
                "gather",
                levels,
                gather,
                levels * gather,
                start("gather").peak_mb + at_n("gather").peak_mb,
                machines.machine(resources, "gather"),
            )
        )
    for step in ("report", "mirror"):
        # Measured on the pilot's one level; its work grows with the levels.
        cost = pilot.steps[(step, "")][1].cpu * levels + start(step).cpu
        peak = start(step).peak_mb + pilot.steps[(step, "")][1].peak_mb
        rows.append(StepEstimate(step, 1, cost, cost, peak, machines.machine(resources, step)))
    cpu = sum(r.cpu_total for r in rows)
    # Steps run on one core each (BLAS pinned to one thread), so a task's wall time is
    # about its CPU time; billed: the machine's vCPUs for that long.
    billed = sum(r.cpu_total * r.machine["cpu"] for r in rows) / 3600
    chains = [sum(costs) for costs in zip(*per_unit_wall, strict=True)]
    all_units = [c for _ in range(levels) for c in chains]
    cap = shape.concurrent_units or len(all_units)
    waves = _waves(sorted(all_units, reverse=True), cap)
    by_step = {r.step: r for r in rows}
    wall = by_step["load"].cpu_total + waves + by_step["report"].cpu_total
    wall += by_step["mirror"].cpu_total
    if units.nested(config):
        wall += by_step["units"].cpu_per_task + by_step["gather"].cpu_per_task
    return Estimate(shape, rows, cpu, billed, wall, shape.longest_chain)


def _waves(durations: list[float], slots: int) -> float:
    """Makespan of ``durations`` on ``slots`` workers, longest first to the freest."""
    free = [0.0] * max(1, min(slots, len(durations) or 1))
    for duration in durations:
        i = free.index(min(free))
        free[i] += duration
    return max(free)


def shape_lines(config: dict[str, Any]) -> list[str]:
    """The run's tasks, units and machines: what ``--dry-run`` prints (no pilot)."""
    shape = units.shape(config)
    section = config["pipeline"]
    chunk = section["trials_per_task"]
    per = (
        "every attack and trial of a level"
        if not units.nested(config)
        else f"one attack, {chunk} trials"
        if chunk
        else "one attack, every trial"
    )
    cap = shape.concurrent_units
    lines = [
        f"plan: fan_out {section['fan_out']}: {shape.levels} levels x {shape.units_per_level} "
        f"units ({per}) = {shape.levels * shape.units_per_level} units",
        f"plan: {shape.tasks} tasks; longest chain {shape.longest_chain} tasks; largest "
        f"fan-in {shape.largest_fan_in} artifacts (Vertex allows {units.VERTEX_FAN_IN_LIMIT})",
        "plan: at most "
        + (
            f"{cap} units at once (vertex.parallelism)"
            if cap
            else "every unit at once (no vertex.parallelism)"
        ),
    ]
    resources = config["vertex"]["resources"] or {}
    for step in units.STEPS:
        if step in units.NESTED_STEPS and not units.nested(config):
            continue
        asked = machines.step_resources(resources, step)
        if asked:
            text = ", ".join(f"{k} {v}" for k, v in asked.items())
            lines.append(f"plan: {step} runs with {text}")
    if not resources:
        lines.append("plan: every step on Vertex's default machine (4 CPUs, 16 GB)")
    return lines


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def estimate_lines(config: dict[str, Any], pilot: Pilot, found: Estimate) -> list[str]:
    """The pilot's estimate, per kind of task, and the run's totals."""
    n1, n2 = pilot.sizes
    lines = [
        f"plan: pilot on {n1} and {n2} of {pilot.n_rows} rows, one trial of each attack at "
        f"level {max(config['poison']['levels']):g}, took {pilot.seconds:.0f} s",
        "plan: step      tasks  CPU-s/task  CPU-s total  peak memory/task  machine",
    ]
    for r in found.steps:
        fits = r.peak_mb <= r.machine["memory_gb"] * 1000
        warn = "" if fits else "  <- more than the machine's memory: raise it in vertex.resources"
        lines.append(
            f"plan: {r.step:<9} {r.tasks:>6} {r.cpu_per_task:>11.1f} {r.cpu_total:>12.0f} "
            f"{r.peak_mb:>13.0f} MB  {r.machine['cpu']:g} CPU, {r.machine['memory_gb']:g} GB{warn}"
        )
    lines += [
        f"plan: total {found.cpu_seconds:.0f} CPU-seconds = "
        f"{found.cpu_seconds / 3600:.2f} vCPU-hours of work; billed about "
        f"{found.billed_vcpu_hours:.2f} vCPU-hours on the configured machines",
        f"plan: expected wall time {_hours(found.wall_seconds)} of compute, plus "
        f"{found.chain_starts} task starts one after another on Vertex (not measured here)",
    ]
    return lines


def plan(config: dict[str, Any]) -> list[str]:
    """The whole plan: shape, pilot, estimate (``python submit.py --plan``)."""
    pilot = run_pilot(config)
    return [*shape_lines(config), *estimate_lines(config, pilot, estimate(config, pilot))]


def write_pilot(pilot: Pilot, path: str | Path) -> None:
    """The pilot's measurements as JSON (benchmarks)."""
    Path(path).write_text(
        json.dumps(
            {
                "n_rows": pilot.n_rows,
                "sizes": pilot.sizes,
                "seconds": pilot.seconds,
                "steps": {
                    f"{s}/{a}": [m.__dict__ for m in costs] for (s, a), costs in pilot.steps.items()
                },
                "starts": {k: v.__dict__ for k, v in pilot.starts.items()},
            },
            indent=2,
        )
    )
