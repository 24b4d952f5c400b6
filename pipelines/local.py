"""Run the poisoning pipeline on the KFP local runner, with no cloud account.

Tasks run as subprocesses of this Python (``SubprocessRunner(use_venv=False)``),
so they use the installed poisonlab and install nothing. Task outputs go to a
scratch directory outside the output directory; the run's results are copied to
the output directory only once the whole pipeline has succeeded, so a failed
run leaves no half-written results there, and the output directory holds
results only. A run killed before it could delete its scratch directory leaves
it to the next run, which deletes it (see ``clean_stale_scratch``).

With caching on, task outputs go to the cache instead (``cache_dir``), where
they outlive the run: kfp's local cache keys a task by its component's code,
its parameters (the config, the level) and its input artifacts, and an input
artifact there is named by the cached output of the task that made it, so the
keys do not depend on the output directory or on scratch paths. A run killed
mid-way and started again takes every task that had finished from the cache.
"""

import builtins
import contextlib
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines.poisoning import build_pipeline, pipeline_parameters, resolve_image
from poisonlab.data import source_sha256
from poisonlab.errors import PoisonlabError
from poisonlab.mirror import write_status

LOG_FILE = "pipeline.log"
LOCAL_PARALLELISM = 2
CACHE_ENV = "POISONLAB_CACHE_DIR"
SCRATCH_PREFIX = "poisonlab-run-"
_OWNER_FILE = "pid"
_TASK_DONE = re.compile(r"Task '(?P<task>[^']+)' finished with status (?P<status>SUCCESS|FAILURE)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _ProgressLog(io.TextIOBase):
    """Takes the runner's verbose output: all of it to the log, a line per task to the console."""

    def __init__(self, log: io.TextIOBase, console: io.TextIOBase):
        self.log, self.console = log, console
        self.started = time.monotonic()
        self.pending = ""
        # Loop iterations run in threads that all print here; unguarded, their writes
        # interleave inside the file's buffer (seen: invalid UTF-8 in pipeline.log).
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.log.write(_ANSI.sub("", text))
            self.pending += text
            *lines, self.pending = self.pending.split("\n")
            for line in lines:
                # Tasks in parallel threads print in pieces: two messages may share a line.
                for done in _TASK_DONE.finditer(_ANSI.sub("", line)):
                    elapsed = time.monotonic() - self.started
                    status = done["status"].lower()
                    self.console.write(f"  {elapsed:5.0f} s  {done['task']:<10} {status}\n")
                    self.console.flush()
        return len(text)

    def flush(self) -> None:
        with self.lock:
            self.log.flush()


@contextmanager
def _quiet_runner(log_path: Path):
    """Send the runner's output to ``log_path``; undo its patching of ``print``."""
    original_print = builtins.print
    root = logging.getLogger()
    original_level, original_handlers = root.level, root.handlers[:]
    with open(log_path, "w", encoding="utf-8") as log:
        progress = _ProgressLog(log, sys.stdout)
        # kfp sets up and resets the root logger around each task; parallel tasks race on
        # it, and a task that finishes after another's reset logged nothing ("finished"
        # lines went missing). What it resets to is this: INFO, into the same log.
        handler = logging.StreamHandler(progress)
        handler.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d - %(levelname)s - %(message)s", "%H:%M:%S")
        )
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(progress), contextlib.redirect_stderr(progress):
                yield
        finally:
            # Parallel tasks race on kfp's indented print and can leave it patched.
            builtins.print = original_print
            root.handlers[:] = original_handlers
            root.setLevel(original_level)


# Two tasks run at once locally; threaded BLAS in each would fight over the cores
# (seen here: a third more CPU time for the same work).
_SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def _task_environment(root: Path):
    """What every task inherits: TMPDIR inside ``root`` (the runner leaves temp dirs
    there) and single-threaded BLAS unless the user chose otherwise."""
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    changes = {"TMPDIR": str(tmp)}
    changes.update({k: v for k, v in _SINGLE_THREADED.items() if k not in os.environ})
    previous = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    tempfile.tempdir = None
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tempfile.tempdir = None


def cache_dir() -> Path:
    """Where ``--cache`` keeps task outputs between runs: $POISONLAB_CACHE_DIR, else
    ``poisonlab`` in the user's cache folder ($XDG_CACHE_HOME, else ~/.cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().resolve() / "poisonlab"


# Artifacts whose values live in the task's metadata; the local runner writes no file.
_FILELESS = {"system.Metrics", "system.ClassificationMetrics"}


def complete_cache_entries(cache_root: Path) -> int:
    """Give the cached Metrics outputs the empty file kfp's cache looks for; return how
    many were made.

    kfp's local cache treats an entry whose local artifact file is missing as a miss,
    but the runner writes no file for Metrics and ClassificationMetrics (their values
    are in the entry's metadata): without this, validate and evaluate never hit.
    """
    made = 0
    for entry in sorted(cache_root.glob("*.json")):
        try:
            outputs = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue  # half-written by a killed run: kfp reads it as a miss
        for output in outputs.values():
            if not isinstance(output, dict) or output.get("schema_title") not in _FILELESS:
                continue
            uri = Path(output.get("uri", ""))
            if uri.is_absolute() and not uri.exists():
                uri.parent.mkdir(parents=True, exist_ok=True)
                uri.touch()
                made += 1
    return made


def scratch_base() -> Path:
    """The folder of every local run's scratch directory: in the system's temp folder,
    outside any results folder."""
    return Path(tempfile.gettempdir()).resolve() / f"poisonlab-{os.getuid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_scratch(base: Path) -> list[Path]:
    """Delete the scratch directories in ``base`` whose run is no longer alive (killed
    runs cannot delete their own); return them. A directory without its owner's pid
    is one being made right now, and is left alone."""
    removed = []
    for scratch in sorted(base.glob(SCRATCH_PREFIX + "*")):
        try:
            owner = int((scratch / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(scratch)
    return removed


def _make_scratch() -> Path:
    """A new scratch directory for this run, marked with this process's id."""
    base = scratch_base()
    base.mkdir(parents=True, exist_ok=True)
    clean_stale_scratch(base)
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=base))
    (scratch / _OWNER_FILE).write_text(str(os.getpid()))
    return scratch


def _prepare_store_meanwhile(tracking_uri: str) -> threading.Thread:
    """Set up a SQLite tracking store in a thread while the levels run, so that the mirror,
    at the end, finds it ready (creating a fresh store's tables takes seconds). A failure
    here is left for the mirror to meet and report."""

    def prepare() -> None:
        from poisonlab.mlflow_store import prepare_store

        with contextlib.suppress(Exception):
            prepare_store(tracking_uri)

    thread = threading.Thread(target=prepare, name="prepare-mlflow-store", daemon=True)
    thread.start()
    return thread


def copy_results(results: Path, output_dir: Path) -> None:
    """Copy a run's ``results`` into ``output_dir``, and remove the files only some runs
    write (certified.csv, quantity.csv) that this run did not: in a directory used
    again, an earlier run's would pass for this one's (listed by submit.py, mirrored by
    ``poisonlab.mirror --results``)."""
    from poisonlab.result_files import optional_files

    for name in optional_files():
        if not (results / name).exists():
            (output_dir / name).unlink(missing_ok=True)
    for item in sorted(results.iterdir()):
        target = output_dir / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(item, target)


def run_local(
    config: dict,
    output_dir: str | Path,
    keep_artifacts: bool = False,
    enable_caching: bool = False,
) -> Path:
    """Run the whole pipeline locally; copy its results into ``output_dir`` and return it.

    With ``keep_artifacts`` every task's outputs stay in ``output_dir/artifacts``.
    With ``enable_caching`` they stay in the cache (``cache_dir()``, whatever
    ``keep_artifacts`` says), and a task whose
    code, parameters and inputs match a finished one there is not run again; the
    MLflow mirror always runs.
    """
    from kfp import local

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    scratch = _make_scratch()
    if enable_caching:
        cache = cache_dir()
        pipeline_root, cache_root = cache / "artifacts", cache / "tasks"
    else:
        pipeline_root = output_dir / "artifacts" if keep_artifacts else scratch / "root"
        cache_root = None
    if cache_root:
        # Entries a killed run finished, too: a resumed run takes them.
        complete_cache_entries(cache_root)
    store = _prepare_store_meanwhile(config["mlflow"]["tracking_uri"])
    try:
        with _task_environment(scratch), _quiet_runner(output_dir / LOG_FILE):
            local.init(
                runner=local.SubprocessRunner(use_venv=False),
                pipeline_root=str(pipeline_root),
                # The runner deletes its workspace after a run: keep it inside scratch.
                workspace_root=str(scratch / "workspace"),
                raise_on_error=True,
                enable_caching=enable_caching,
                cache_root=str(cache_root) if cache_root else None,
            )
            # Cached: load's key must change when the file behind dataset.source does.
            digest = source_sha256(config["dataset"]["source"]) if enable_caching else ""
            # The runner runs 2 iterations of each loop at once: nested, 2 x 2 tasks.
            # Capped at 2 in all, as with one loop (memory: each task holds the table).
            image = resolve_image(config["vertex"]["image"])
            pipeline = build_pipeline(image, digest, config, parallelism=LOCAL_PARALLELISM)
            try:
                task = pipeline(**pipeline_parameters(config))
            except RuntimeError as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else "failed"
                raise PoisonlabError(
                    f"the local pipeline run failed: {first}; "
                    f"the task's log is in {output_dir / LOG_FILE}"
                ) from None
            if cache_root:
                complete_cache_entries(cache_root)
            copy_results(Path(task.outputs["results"].path), output_dir)
            # Whether MLflow got the results: submit.py warns from this if it did not.
            write_status(task.outputs["mirror_status"], output_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        store.join()
    return output_dir
