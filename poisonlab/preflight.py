"""Checks of a whole experiment that run before any pipeline task or cloud job.

``validate_config`` checks the config on its own; ``check_experiment`` also
reads the dataset and checks that config against it: every class can be split
into train and test, and no configured poison level empties a class from a
training split. A bad input then costs a second, not a failed job.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np
import pandas as pd

from poisonlab.attacks import dataset_attack_params, n_poisoned
from poisonlab.data import Dataset, read_configured, table_warnings
from poisonlab.errors import PoisonlabError
from poisonlab.splits import feature_settings, trial_masks


def trial_splits(dataset: Dataset, config: dict[str, Any]) -> np.ndarray:
    """Every trial's test mask under the config's ``dataset.split``, test size, seed and
    trials (``splits.trial_masks``): the splits the run uses."""
    return trial_masks(dataset, config)


def check_classes_survive(dataset: Dataset, test_masks: np.ndarray, config: dict[str, Any]) -> None:
    """Fail if some attack at some level leaves a class with no training rows.

    Attacks change at most round(level x n_train) rows (injection adds rows, which
    removes no class), so a class with more rows than that cannot vanish: only
    levels past that bound are poisoned here, with the same seeds as the
    pipeline, and their labels counted. Exact, and cheap.
    """
    from poisonlab.experiment import poison_level

    levels = config["poison"]["levels"]
    train_counts = [np.bincount(dataset.y[~m], minlength=dataset.n_classes) for m in test_masks]
    # The largest training split: a group split's trials hold different numbers of rows.
    n_train = int(max((~m).sum() for m in test_masks))
    smallest = min(int(c.min()) for c in train_counts)
    for index, level in enumerate(levels):
        if n_poisoned(level, n_train) < smallest:
            continue
        for poisoned in poison_level(dataset, test_masks, config, level):
            counts = np.bincount(poisoned.data.y, minlength=dataset.n_classes)
            if counts.min() == 0:
                gone = dataset.class_names[int(np.argmin(counts))]
                safe = (smallest - 0.5) / n_train
                raise PoisonlabError(
                    f"poison.levels[{index}]: {level:g} leaves class {gone!r} with no training "
                    f"rows under {poisoned.attack} (trial {poisoned.trial}); "
                    f"use levels below {safe:.3f}"
                )


def untested_class_warnings(dataset: Dataset, test_masks: np.ndarray) -> list[str]:
    """One line per class with no row in some trial's test split: no score of that
    trial measures it (balanced accuracy averages over the classes tested)."""
    warnings = []
    for code, name in enumerate(dataset.class_names):
        untested = sum(not (dataset.y[mask] == code).any() for mask in test_masks)
        if untested:
            rows = int((dataset.y == code).sum())
            warnings.append(
                f"dataset.label_column: class {name!r} has {rows} rows, too few for a test "
                f"row in {untested} of {len(test_masks)} trials, so no score there measures "
                "it; add rows of it, or raise dataset.test_size"
            )
    return warnings


def sample_rows(y: np.ndarray, per_class: int = 5) -> np.ndarray:
    """The first ``per_class`` rows of every class, in table order: a tiny table with
    every class, on which user code is tried before anything runs."""
    return np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)]))


def check_user_code(dataset: Dataset, config: dict[str, Any]) -> None:
    """Try the user's own models and gates on a few rows of the dataset.

    A model must fit them and predict one known class per row; a gate must
    return one flag (and score) per row. ``validate_config`` already imported
    them; here they meet the data, so a wrong schema or shape fails now, in one
    line naming the field, not in a pipeline task. Code that fails on the few
    rows is tried on the whole table before it is refused: some needs more rows
    (10-fold cross-validation, early stopping's validation split).
    """
    from poisonlab.detectors import DETECTORS, TableNames
    from poisonlab.detectors.user import run_gate
    from poisonlab.models import CERTIFIED, USER, check_user_model, model_kind

    names = TableNames(dataset.feature_names, dataset.class_names, dataset.label_name)
    sections = {}
    for name in config["train"]["models"]:
        section = config["train"][name]
        if model_kind(name, section) == USER:
            sections[name] = section
        elif model_kind(name, section) == CERTIFIED:  # its base may be a user model
            base, params = section["base"], section["base_params"]
            if model_kind(base, params) == USER:
                sections[base] = params
    checks = [
        functools.partial(check_user_model, name, section, columns=names.features)
        for name, section in sections.items()
    ]
    checks += [
        functools.partial(run_gate, name, config["validate"][name], names=names)
        for name in config["validate"]["detectors"]
        if name not in DETECTORS
    ]
    rows = sample_rows(dataset.y)
    for check in checks:
        try:
            check(X=dataset.X[rows], y=dataset.y[rows])
        except PoisonlabError as on_few_rows:
            try:
                check(X=dataset.X, y=dataset.y)
            except PoisonlabError:
                raise on_few_rows from None


def user_model_warnings(config: dict[str, Any]) -> list[str]:
    """Keys of the user's model sections that look misspelt (``models.misspelt_keywords``)."""
    from poisonlab.models import USER, misspelt_keywords, model_kind

    warnings = []
    for name in config["train"]["models"]:
        if model_kind(name, config["train"][name]) == USER:
            warnings += misspelt_keywords(name, config["train"][name])
    return warnings


def data_warnings(
    frame: pd.DataFrame, dataset: Dataset, test_masks: np.ndarray, settings: dict[str, Any]
) -> list[str]:
    """What in the table would quietly mislead the run (``table_warnings``) and the
    classes some trial cannot test: printed before the run, kept in the provenance
    and shown in the report."""
    # The split column is no feature unless configured: no feature warnings for it.
    return table_warnings(frame, feature_settings(settings)) + untested_class_warnings(
        dataset, test_masks
    )


def check_experiment(config: dict[str, Any]) -> Dataset:
    """Read and check the configured dataset against the whole config; return it.

    Raises PoisonlabError (one line, naming the field and the fix) on any
    problem a pipeline task would otherwise meet later. What would quietly mislead
    (``data_warnings``, ``user_model_warnings``) gets a one-line warning each on
    stderr once every check has passed (so an error stays the one line printed),
    and the run goes on.
    """
    settings = config["dataset"]
    frame, dataset, _ = read_configured(settings)
    # Attack parameters naming classes or features must fit this dataset.
    dataset_attack_params(config, dataset.class_names, dataset.feature_names)
    test_masks = trial_splits(dataset, config)
    check_classes_survive(dataset, test_masks, config)
    check_user_code(dataset, config)
    warnings = data_warnings(frame, dataset, test_masks, settings)
    for warning in [*warnings, *user_model_warnings(config)]:
        print(f"warning: {warning}", file=sys.stderr)
    return dataset
