"""Run the poisoning pipeline on the KFP local runner, with no cloud account.

Tasks run as subprocesses of this Python (``SubprocessRunner(use_venv=False)``),
so they use the installed poisonlab and install nothing. Task outputs go to a
scratch directory; the run's results are copied to the output directory only
once the whole pipeline has succeeded, so a failed run leaves no half-written
results there.
"""

import builtins
import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines.poisoning import build_pipeline, resolve_image
from poisonlab.config import canonical_json
from poisonlab.errors import PoisonlabError
from poisonlab.mirror import write_status

LOG_FILE = "pipeline.log"
_TASK_DONE = re.compile(r"Task '(?P<task>[^']+)' finished with status (?P<status>[A-Z]+)")
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
                done = _TASK_DONE.search(_ANSI.sub("", line))
                if done:
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
    with open(log_path, "w", encoding="utf-8") as log:
        progress = _ProgressLog(log, sys.stdout)
        try:
            with contextlib.redirect_stdout(progress), contextlib.redirect_stderr(progress):
                yield
        finally:
            # Parallel tasks race on kfp's indented print and can leave it patched.
            builtins.print = original_print


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


def run_local(
    config: dict,
    output_dir: str | Path,
    keep_artifacts: bool = False,
    enable_caching: bool = False,
) -> Path:
    """Run the whole pipeline locally; copy its results into ``output_dir`` and return it.

    With ``keep_artifacts`` every task's outputs stay in ``output_dir/artifacts``.
    """
    from kfp import local

    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".poisonlab-", dir=output_dir))
    pipeline_root = output_dir / "artifacts" if keep_artifacts else scratch / "root"
    try:
        with _task_environment(scratch), _quiet_runner(output_dir / LOG_FILE):
            local.init(
                runner=local.SubprocessRunner(use_venv=False),
                pipeline_root=str(pipeline_root),
                # The runner deletes its workspace after a run: keep it inside scratch.
                workspace_root=str(scratch / "workspace"),
                raise_on_error=True,
                enable_caching=enable_caching,
                cache_root=str(output_dir / ".kfp_cache") if enable_caching else None,
            )
            pipeline = build_pipeline(resolve_image(config["vertex"]["image"]))
            try:
                task = pipeline(
                    config=canonical_json(config), poison_levels=config["poison"]["levels"]
                )
            except RuntimeError as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else "failed"
                raise PoisonlabError(
                    f"the local pipeline run failed: {first}; "
                    f"the task's log is in {output_dir / LOG_FILE}"
                ) from None
            results = Path(task.outputs["results"].path)
            for item in sorted(results.iterdir()):
                target = output_dir / item.name
                if item.is_dir():
                    shutil.copytree(item, target, dirs_exist_ok=True)
                else:
                    shutil.copyfile(item, target)
            # Whether MLflow got the results: submit.py warns from this if it did not.
            write_status(task.outputs["mirror_status"], output_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output_dir
