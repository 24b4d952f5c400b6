"""Start-up costs: the command before its first task, and every step as a fresh process.

    python benchmarks/startup.py [--repeat 3] [--against DIR] [--steps load,poison,...]

Each KFP task is a new Python process that imports kfp, poisonlab and the step's
libraries, then does the step's work. Here each step of one poison level (0.1 of the
default Iris config) runs the way a task runs it (``_KFP_RUNTIME=true``, one BLAS
thread), twice in one fresh process: the second call is the step's work alone, so
the process's CPU time less twice that is what starting costs. The command's cost is
``python submit.py --local`` from its start to the runner's first task process (the
checks, the imports, compiling the pipeline), where the script stops it; its CPU time
includes its threads (the MLflow store's set-up starts just before the runner).

Numbers are CPU seconds (user + system), which other work on the machine sways less
than wall seconds; wall seconds are printed too. ``--against DIR`` measures another
code tree (e.g. ``git worktree add /tmp/main main``) in the same loop, alternating,
so that both see the same moment of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEVEL = 0.1

# Inputs of every step for one level, made once per code tree by its own steps.
PREPARE = """
import sys
from pathlib import Path
from poisonlab import steps
from poisonlab.config import canonical_json, load_config
work = Path(sys.argv[1])
text = canonical_json(load_config("configs/iris.yaml"))
(work / "config.json").write_text(text)
w = lambda name: str(work / name)
steps.load(text, w("data"), w("splits"))
steps.poison(text, LEVEL, w("data"), w("splits"), w("poisoned"))
steps.validate(text, w("poisoned"), w("detections"), w("data"), w("splits"))
steps.train(text, w("poisoned"), w("detections"), w("models"))
steps.evaluate(text, LEVEL, w("data"), w("splits"), w("poisoned"), w("detections"),
               w("models"), w("level"))
""".replace("LEVEL", repr(LEVEL))

# One step's call; ``w`` names a prepared input, ``o`` an output of this call.
CALLS = {
    "load": "steps.load(text, o('data'), o('splits'))",
    "poison": f"steps.poison(text, {LEVEL}, w('data'), w('splits'), o('poisoned'))",
    "validate": "steps.validate(text, w('poisoned'), o('detections'), w('data'), w('splits'))",
    "train": "steps.train(text, w('poisoned'), w('detections'), o('models'))",
    "evaluate": (
        f"steps.evaluate(text, {LEVEL}, w('data'), w('splits'), w('poisoned'), "
        "w('detections'), w('models'), o('level'))"
    ),
    "report": "steps.report(text, [w('level')], w('data'), o('results'), 'x')",
}

# A task's process: what kfp's executor imports, then poisonlab's steps, then the call
# twice. Prints CPU seconds of each phase.
TASK = """
import time
started = time.process_time()
import kfp
from kfp import dsl
from kfp.dsl import *
kfp_done = time.process_time()
import sys, json
from pathlib import Path
from poisonlab import steps
imported = time.process_time()
work, out = Path(sys.argv[1]), Path(sys.argv[2])
text = (work / "config.json").read_text()
w = lambda name: str(work / name)
times = []
for call in range(2):
    o = lambda name: str(out / f"{call}-{name}")
    before = time.process_time()
    CALL
    times.append(time.process_time() - before)
print(json.dumps({"kfp": kfp_done - started, "poisonlab.steps": imported - kfp_done,
                  "first": times[0], "work": times[1], "modules": len(sys.modules)}))
"""

# The command up to its first task: stopped when the runner starts a task process.
COMMAND = """
import os, runpy, subprocess, sys
start_task = subprocess.Popen.__init__
def stop_at_first_task(self, args, *rest, **kwargs):
    if "executor_main" in " ".join(map(str, args if isinstance(args, list) else [args])):
        sys.__stdout__.write("FIRST_TASK\\n")  # the runner has stdout redirected to its log
        sys.__stdout__.flush()
        os._exit(0)
    return start_task(self, args, *rest, **kwargs)
subprocess.Popen.__init__ = stop_at_first_task
sys.argv = ["submit.py", *sys.argv[1:]]
runpy.run_path("submit.py", run_name="__main__")
"""


def _run(code: str, args: list[str], root: Path, env: dict[str, str]) -> tuple[str, float, float]:
    """Run ``code`` in a fresh Python with ``root``'s code; its stdout, wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=root,
        env={**os.environ, **env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"failed in {root}:\n{done.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return done.stdout, wall, cpu


# As the local runner starts a task (pipelines.local sets the BLAS variables).
TASK_ENV = {"_KFP_RUNTIME": "true", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def task_cost(root: Path, work: Path, step: str) -> dict[str, float]:
    """One step run twice in a fresh process: CPU seconds of its phases, and in all."""
    with tempfile.TemporaryDirectory() as out:
        stdout, wall, cpu = _run(
            TASK.replace("CALL", CALLS[step]), [str(work), out], root, TASK_ENV
        )
    phases = json.loads(stdout.strip().splitlines()[-1])
    return {**phases, "wall": wall, "cpu": cpu, "start-up": cpu - 2 * phases["work"]}


def command_cost(root: Path) -> dict[str, float]:
    """``submit.py --local`` (default config, MLflow in a temporary folder) to its first task."""
    with tempfile.TemporaryDirectory() as out:
        args = [
            "--local",
            "--output-dir",
            out,
            "--set",
            f"mlflow.tracking_uri=sqlite:///{out}/m.db",
        ]
        stdout, wall, cpu = _run(COMMAND, args, root, {"TMPDIR": out})
    if "FIRST_TASK" not in stdout:
        raise SystemExit(f"{root}: the command ended before any task started:\n{stdout[-2000:]}")
    return {"wall": wall, "cpu": cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (medians shown)")
    parser.add_argument("--against", type=Path, help="another code tree, measured alongside")
    parser.add_argument("--steps", default=",".join(CALLS), help="which steps, comma-separated")
    args = parser.parse_args(argv)
    roots = [ROOT, *([args.against.resolve()] if args.against else [])]
    steps = args.steps.split(",")
    scratch = tempfile.TemporaryDirectory(prefix="startup-")
    works = {root: Path(scratch.name) / str(i) for i, root in enumerate(roots)}
    for root, work in works.items():
        work.mkdir()
        _run(PREPARE, [str(work)], root, TASK_ENV)
    runs: dict[tuple[str, Path], list[dict[str, float]]] = {}
    for _ in range(args.repeat):
        for root in roots:
            runs.setdefault(("command", root), []).append(command_cost(root))
        for step in steps:
            for root in roots:
                runs.setdefault((step, root), []).append(task_cost(root, works[root], step))
    scratch.cleanup()

    def median(key: tuple[str, Path], field: str) -> float:
        return statistics.median(run[field] for run in runs[key])

    print(f"load average now: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"\nsubmit.py --local until its first task starts (median of {args.repeat})")
    for root in roots:
        key = ("command", root)
        print(
            f"  {str(root):40} CPU {median(key, 'cpu'):5.2f} s   wall {median(key, 'wall'):5.2f} s"
        )
    print(f"\nEach step as a fresh task process, level {LEVEL} (CPU seconds, medians)")
    header = f"  {'step':9} {'code':40} {'process':>7} {'kfp':>5} {'steps':>5}"
    print(header + f" {'1st call':>8} {'work':>6} {'start-up':>8} {'modules':>7} {'wall':>6}")
    for step in steps:
        for root in roots:
            key = (step, root)
            values = [median(key, f) for f in ("cpu", "kfp", "poisonlab.steps", "first", "work")]
            print(
                f"  {step:9} {str(root):40} "
                + " ".join(f"{v:{w}.2f}" for v, w in zip(values, (7, 5, 5, 8, 6), strict=True))
                + f" {median(key, 'start-up'):8.2f} {median(key, 'modules'):7.0f}"
                + f" {median(key, 'wall'):6.2f}"
            )
    print(
        "\nstart-up = process less twice the work: the interpreter, every import, first-call costs."
    )


if __name__ == "__main__":
    main()
