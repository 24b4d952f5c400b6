"""The fitted models as MLflow model folders, ready to upload: saved once per distinct model.

The mirror logs one representative model per child run (trial 0's). Saving them is
most of a mirror's work (skops writes every tree of a forest and MLflow reads it back
to check it), so the mirror has it done by a second process while it logs the runs:

    python -m poisonlab.model_folders DATA SCRATCH MODELS...

saves the models of the ``MODELS`` files (``experiment.write_models``' files, one per
level), with an input example from the dataset file ``DATA``, into folders under
``SCRATCH``, and writes ``SCRATCH/saved.json``: per child key, the folder and how the
model was stored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from poisonlab.experiment import FailedDetection, FailedFit
from poisonlab.mlflow_store import CLOUDPICKLE, SKOPS, SKOPS_TRUSTED_TYPES

ChildKey = tuple[float, str, str, str]  # poison_level, attack, model, defense
MODEL_NAME = "model"
SAVED_FILE = "saved.json"
ERRORS_FILE = "errors.log"

_log = logging.getLogger(__name__)


def child_key(level: float, attack: str, model: str, defense: str) -> str:
    """A child run's key, ``level/attack/model/defense``, with the level as ``%g``."""
    return f"{level:g}/{attack}/{model}/{defense}"


def feature_frame(dataset) -> pd.DataFrame:
    """The dataset's features as a frame with their names, as MLflow shows them: a
    Table's raw rows (a copy), a Dataset's matrix under its feature names."""
    if isinstance(dataset.X, pd.DataFrame):
        return dataset.X.copy()
    return pd.DataFrame(dataset.X, columns=dataset.feature_names)


def example_rows(dataset) -> pd.DataFrame:
    """The models' input example: the dataset's first rows."""
    return feature_frame(dataset).head(5)


@functools.cache
def pip_requirements(stored: str) -> list[str]:
    """Pinned explicitly: inferring them runs a subprocess per model (5-17 s each).
    ``stored``: the serialization format, whose package loading the model needs."""
    import importlib.metadata

    import numpy
    import sklearn

    return [
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={numpy.__version__}",
        f"pandas=={pd.__version__}",
        f"{stored}=={importlib.metadata.version(stored)}",
    ]


def content_digest(estimator: Any) -> str:
    """SHA-256 of a fitted model's pickle: equal for the same model fitted on the same rows
    with the same seed. A model pickle cannot take is equal to itself only."""
    try:
        return hashlib.sha256(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()
    except Exception:  # noqa: BLE001 (a user's model may hold anything)
        return f"object-{id(estimator)}"


def save_model_folder(estimator: Any, example: pd.DataFrame, folder: Path, key: ChildKey) -> str:
    """Save ``estimator`` as an MLflow model in ``folder``, with signature and input
    example; return how it was stored.

    skops first (no pickle; the types it may load are ``SKOPS_TRUSTED_TYPES``), which
    MLflow checks by loading the model back; a model skops cannot save or load that way
    (a user's own class, LightGBM) is stored with cloudpickle, with a logged note.
    The folder names no run or model entity yet: the mirror fills those in on upload.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        # Fitted on arrays, shown a named frame: harmless, and noisy in the task log.
        warnings.filterwarnings("ignore", message="X has feature names")
        from poisonlab.models import takes_raw_rows

        rows = example if takes_raw_rows(estimator) else example.to_numpy()
        signature = infer_signature(example, estimator.predict(rows))
        for stored in (SKOPS, CLOUDPICKLE):
            try:
                mlflow.sklearn.save_model(
                    estimator,
                    str(folder),
                    signature=signature,
                    input_example=example,
                    pip_requirements=pip_requirements(stored),
                    serialization_format=stored,
                    skops_trusted_types=SKOPS_TRUSTED_TYPES if stored == SKOPS else None,
                )
                return stored
            except Exception as error:  # noqa: BLE001 (skops refuses in many ways)
                if stored == CLOUDPICKLE:
                    raise
                shutil.rmtree(folder, ignore_errors=True)
                _log.info(
                    "%s: skops cannot store %s (%s); stored with cloudpickle",
                    child_key(*key),
                    type(estimator).__name__,
                    str(error).splitlines()[0][:200],
                )
    raise AssertionError("unreachable")


def save_model_folders(
    models: dict[ChildKey, Any], example: pd.DataFrame, scratch: Path
) -> dict[str, tuple[str, str]]:
    """Save every model as an MLflow model folder under ``scratch``; return, per child key,
    the folder and how the model was stored (``save_model_folder``).

    Saved once per distinct model: at level 0 every attack trains on the same clean
    rows, and a defence that flagged nothing trains on the undefended rows, so children
    share fits. A None model (a defence that kept too little to fit on), a failed fit
    (``experiment.FailedFit``) or a defence whose detector failed
    (``experiment.FailedDetection``) gets no folder.
    """
    quiet = logging.getLogger("mlflow.sklearn")
    level, quiet.level = quiet.level, logging.ERROR
    by_content: dict[str, tuple[str, str]] = {}
    saved = {}
    try:
        for key, estimator in models.items():
            if estimator is None or isinstance(estimator, (FailedFit, FailedDetection)):
                continue
            digest = content_digest(estimator)
            if digest not in by_content:
                folder = scratch / str(len(by_content)) / MODEL_NAME
                by_content[digest] = str(folder), save_model_folder(estimator, example, folder, key)
            saved[child_key(*key)] = by_content[digest]
    finally:
        quiet.setLevel(level)
    return saved


class SavingMeanwhile:
    """``save_model_folders`` of a pipeline's models, running in a second process.

    Started before the mirror imports MLflow and logs the runs, which leave the other
    core idle. A separate interpreter (not a fork: the mirror's process runs MLflow's
    threads, and a fork of it may hang) that reads the models and data files itself.
    """

    def __init__(self, models_paths: list[str | Path], data_path: str | Path, scratch: Path):
        self.scratch = scratch
        command = [sys.executable, "-m", __name__, str(data_path), str(scratch)]
        command += [str(path) for path in models_paths]
        # Its messages go to a file: a pipe nobody reads until the end could fill and stall it.
        with open(scratch / ERRORS_FILE, "w") as errors:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)

    def result(self) -> dict[str, tuple[str, str]] | None:
        """The saved folders by child key; None (and a logged reason) if the process failed."""
        if self.process.wait() != 0:
            lines = (self.scratch / ERRORS_FILE).read_text().strip().splitlines()
            _log.warning(
                "saving models in a second process failed (%s); saving them here",
                lines[-1] if lines else f"exit code {self.process.returncode}",
            )
            return None
        saved = json.loads((self.scratch / SAVED_FILE).read_text())
        return {key: (folder, stored) for key, (folder, stored) in saved.items()}

    def close(self) -> None:
        """Stop the process if it still runs (the mirror ended early, e.g. a dead server)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def read_model_files(paths: list[str | Path]) -> dict[ChildKey, Any]:
    """The trial-0 models of every level's file, in one dict by child key."""
    from poisonlab.experiment import read_models

    models = {}
    for path in paths:
        models.update(read_models(path))
    return models


def main(argv: list[str]) -> int:
    from poisonlab.data import read_dataset

    data_path, scratch, *models_paths = argv
    saved = save_model_folders(
        read_model_files(models_paths), example_rows(read_dataset(data_path)), Path(scratch)
    )
    (Path(scratch) / SAVED_FILE).write_text(json.dumps(saved))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
