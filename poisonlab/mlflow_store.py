"""An MLflow tracking store that many runs share at once, and how models are stored in it.

Any number of local runs may mirror into one tracking store. Three things make
that safe:

- a fresh SQLite store's tables are created by one process at a time
  (``prepare_store``): MLflow creates them on first use without a lock, and two
  processes that meet an empty file both migrate it (seen: ``duplicate column
  name: step``);
- a database that is busy or still being set up by another run is retried
  (``retry_busy``); mirroring is idempotent, so doing it again is safe;
- an experiment created by two runs at once is created once (``ensure_experiment``).

Models are stored with skops, which needs no pickle, where it can store them
with ``SKOPS_TRUSTED_TYPES``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

_log = logging.getLogger(__name__)

# Shown by MLflow 3's UI: runs and models ("Model training"), not the GenAI view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # the run's description in the UI

# What a busy or half-set-up store says; anything else is not retried.
_TRANSIENT = (
    "database is locked",
    "database is busy",
    "duplicate column name",
    "already exists",
    "no such table",
    "unique constraint failed",
)
RETRIES = 5
BACKOFF_SECONDS = 1.0

T = TypeVar("T")


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file behind a ``sqlite:///`` tracking URI, else None."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return Path(tracking_uri.removeprefix(prefix).split("?", 1)[0])


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite store's file while it is set up.

    The lock is an ``flock`` on the database file itself, which SQLite does not use
    (it takes ``fcntl`` record locks), so it leaves no lock file behind. Other stores
    need no lock here: servers and other databases are retried instead.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_transient(error: BaseException) -> bool:
    """Whether an MLflow error is a busy or half-set-up store, worth another try."""
    text = str(error).lower()
    return any(sign in text for sign in _TRANSIENT)


def retry_busy(
    call: Callable[[], T],
    retries: int = RETRIES,
    backoff: float = BACKOFF_SECONDS,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """``call()``, tried again after 1, 2, 4 ... s while the store is busy (``is_transient``)."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as error:  # noqa: BLE001 (MLflow and SQLAlchemy raise many kinds)
            if attempt == retries or not is_transient(error):
                raise
            _log.info("MLflow store busy (%s); trying again", str(error).splitlines()[0])
            sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


def prepare_store(tracking_uri: str) -> None:
    """Create a SQLite store's tables if it has none, one process at a time.

    Cheap on a store that is ready; a run may call it early (while its levels run)
    so that the mirror finds the store set up. A store created here is put in
    SQLite's write-ahead-log mode (``use_write_ahead_log``); one that existed is left
    as it was.
    """
    from mlflow.tracking import MlflowClient

    path = sqlite_path(tracking_uri)
    if path is None:
        return
    with store_lock(tracking_uri):
        fresh = path.stat().st_size == 0  # store_lock made the file if it was missing
        if fresh:
            use_write_ahead_log(path)
        # The client creates the store, and with it the tables, on first use.
        retry_busy(lambda: MlflowClient(tracking_uri).search_experiments(max_results=1))


def use_write_ahead_log(path: Path) -> None:
    """Put the SQLite database at ``path`` in write-ahead-log mode (it stays so).

    A mirror writes a few hundred small transactions; in SQLite's default rollback
    journal each one syncs the disk several times, in WAL mode once, which halves the
    mirror's time here, and readers (``mlflow ui``, another run's mirror) no longer
    block the writer. WAL needs a local disk (SQLite's documentation: not a network
    file system), where a sqlite:/// store belongs anyway.
    """
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as database:
        database.execute("PRAGMA journal_mode=WAL")


def ensure_experiment(client, name: str) -> str:
    """The id of experiment ``name``, created if missing, tagged as model development.

    Two runs creating it at once: the second finds the first's.
    """
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except Exception as error:  # noqa: BLE001
            found = client.get_experiment_by_name(name)
            if found is None:
                raise error from None
    if found.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return found.experiment_id


def run_description(config: dict[str, Any]) -> str:
    """What a run was, in one line: dataset, attacks, levels, models, trials."""
    levels = ", ".join(f"{level:g}" for level in config["poison"]["levels"])
    return (
        f"{config['dataset']['source']}: {', '.join(config['poison']['attacks'])} "
        f"at poison levels {levels}; models {', '.join(config['train']['models'])}; "
        f"{config['trials']} trials, seed {config['seed']}"
    )


# --- model format ---------------------------------------------------------------------

SKOPS = "skops"
CLOUDPICKLE = "cloudpickle"

# Types in the built-in models that skops does not trust by default; all are
# scikit-learn's own fitted-state classes. A model holding any other untrusted type
# (a user's estimator, LightGBM), or one skops cannot save, is stored with cloudpickle,
# and the mirror says so.
SKOPS_TRUSTED_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.tree._tree.Tree",
    # The user model's first step: the feature names it sees (models.NamedColumns).
    "poisonlab.models.NamedColumns",
    # A built-in model's first step on the raw view: the table's encoding (plain data).
    "poisonlab.models.TableEncoder",
]
