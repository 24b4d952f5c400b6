"""Keeping one poison level's failure inside that level.

On the KFP local runner (kfp 2.17.0) one failed ``ParallelFor`` iteration
discards every iteration's outputs, so a ``dsl.Collected`` fan-in gets nothing
and no level reaches the report. So a per-level step that raises writes a
*failure marker* in place of each of its outputs; the level's later steps pass
the marker on without working, and the report lists the level as failed while
every other level's results stay. Processes that die (out of memory, a
preempted VM) still fail their task, which KFP retries (``set_retry``).

A marker is a small text file: a fixed first line, then JSON naming the level,
the step that failed and its one-line error. Parquet files start with ``PAR1``,
so telling the two apart needs only the first bytes.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = b"poisonlab-failed-level\n"
# Test-only: a comma-separated list of poison levels whose poison step raises,
# so tests can fail a level on purpose (see README, "Errors, reproducibility ...").
FAIL_LEVELS_ENV = "POISONLAB_FAIL_LEVELS"


def read_failure(path: str | Path) -> dict[str, Any] | None:
    """The failure a marker file records, or None if ``path`` holds real data."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, "rb") as file:
        if file.read(len(MARKER)) != MARKER:
            return None
        return json.loads(file.read())


def write_failure(path: str | Path, failure: dict[str, Any]) -> None:
    Path(path).write_bytes(MARKER + json.dumps(failure, sort_keys=True).encode())


def injected_failure(level: float) -> None:
    """Raise if the test-only environment variable names this level."""
    wanted = os.environ.get(FAIL_LEVELS_ENV, "")
    if any(item.strip() and float(item) == level for item in wanted.split(",")):
        raise RuntimeError(f"failure injected for level {level:g} by {FAIL_LEVELS_ENV}")


def contained(
    step: str,
    level: float,
    inputs: list[str],
    outputs: list[str],
    work: Callable[[], Any],
    default: Any = None,
) -> Any:
    """Run one per-level step; keep a failure, its own or an upstream one, in the level.

    If an input is a failure marker, ``work`` is skipped and the marker is passed
    on to every output. If ``work`` raises, its traceback goes to the task log
    and a marker naming ``step`` goes to every output. Either way the task
    succeeds and returns ``default``.
    """
    failure = next((f for f in map(read_failure, inputs) if f is not None), None)
    if failure is None:
        try:
            return work()
        except Exception as error:  # any error: the level fails, the others go on
            traceback.print_exc(file=sys.stderr)
            message = " ".join(str(error).split()) or type(error).__name__
            failure = {"level": level, "step": step, "error": f"{type(error).__name__}: {message}"}
    for path in outputs:
        write_failure(path, failure)
    return default


def split_failures(paths: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Per-level result files: (those with data, the failures recorded in the others)."""
    kept, failed = [], []
    for path in paths:
        failure = read_failure(path)
        if failure is None:
            kept.append(path)
        else:
            failed.append(failure)
    return kept, sorted(failed, key=lambda f: f["level"])
