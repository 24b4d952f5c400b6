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
from poisonlab.config import ENCODE_METHODS, IMPUTE_METHODS
from poisonlab.data import Dataset, read_configured, table_warnings
from poisonlab.errors import PoisonlabError
from poisonlab.splits import feature_settings, trial_masks
from poisonlab.table import Table
from poisonlab.usercode import raw_rows_fix, section_input


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


def check_user_code(dataset: Dataset | Table, config: dict[str, Any]) -> None:
    """Try the user's own models and gates on a few rows of the dataset.

    A model must fit them and predict one known class per row; a gate must
    return one flag (and score) per row. ``validate_config`` already imported
    them; here they meet the data, so a wrong schema or shape fails now, in one
    line naming the field, not in a pipeline task. Code that fails on the few
    rows is tried on the whole table before it is refused: some needs more rows
    (10-fold cross-validation, early stopping's validation split).

    With a ``Table`` each gets the view it asks for: the raw rows by default, the
    encoded view (fitted on those rows) with ``input: encoded``.
    """
    from poisonlab.detectors import DETECTORS
    from poisonlab.detectors.user import run_gate, wants_encoded
    from poisonlab.experiment import model_columns, table_names
    from poisonlab.models import CERTIFIED, USER, check_user_model, model_kind

    names = table_names(dataset)
    columns = model_columns(dataset)
    sections = {}
    for name in config["train"]["models"]:
        section = config["train"][name]
        if model_kind(name, section) == USER:
            sections[name] = (section, columns)
        elif model_kind(name, section) == CERTIFIED:  # its base may be a user model
            base, params = section["base"], section["base_params"]
            if model_kind(base, params) == USER:
                # A certified model's base gets the encoded view (partitions hash numbers).
                sections[base] = (params, dataset.feature_names)
    # Each check with the section whose code gets the raw rows (None: the encoded view),
    # named in the fix when that code chokes on text or gaps.
    checks = [
        (
            functools.partial(check_user_model, name, section, columns=view),
            view,
            f"train.{name}" if section_input(section, f"train.{name}") == "raw" else None,
        )
        for name, (section, view) in sections.items()
    ]
    checks += [
        (
            functools.partial(run_gate, name, config["validate"][name], names=names),
            wants_encoded(name, config["validate"][name]),
            None if wants_encoded(name, config["validate"][name]) else f"validate.{name}",
        )
        for name in config["validate"]["detectors"]
        if name not in DETECTORS
    ]
    rows = sample_rows(dataset.y)
    for check, view, field in checks:
        encoded = isinstance(view, list) or view is True
        try:
            check(X=_rows(dataset, rows, encoded), y=dataset.y[rows])
        except PoisonlabError as on_few_rows:
            whole = _rows(dataset, slice(None), encoded)
            try:
                check(X=whole, y=dataset.y)
            except PoisonlabError:
                raise (raw_rows_fix(on_few_rows, whole, field) if field else on_few_rows) from None


def _rows(dataset: Dataset | Table, rows: Any, encoded: bool) -> Any:
    """A dataset's ``rows``: a Table's raw rows, or their encoded view where ``encoded``
    (fitted on them, as a run fits it on a training split); a Dataset's matrix rows."""
    if not isinstance(dataset, Table):
        return dataset.X[rows]
    part = dataset.features.iloc[rows].reset_index(drop=True)
    if not encoded:
        return part
    return dataset.schema.fit(part).transform(part)


def numbers_needed(dataset: Dataset | Table, config: dict[str, Any]) -> None:
    """Fail if a built-in model or detector would need ``dataset.impute``/``encode`` that
    the config does not set: the error names the built-in that needs numbers.

    The user's models and gates take the raw rows (``input: encoded`` aside), and the
    attacks encode for themselves, so a run of user code alone needs neither.
    """
    if not isinstance(dataset, Table):
        return
    from poisonlab.detectors import DETECTORS
    from poisonlab.detectors.user import wants_encoded
    from poisonlab.models import USER, model_kind

    needs = [
        f"train.models: {name}"
        for name in config["train"]["models"]
        if model_kind(name, config["train"][name]) != USER
        or config["train"][name].get("input") == "encoded"
    ]
    needs += [
        f"validate.detectors: {name}"
        for name in config["validate"]["detectors"]
        if name in DETECTORS or wants_encoded(name, config["validate"][name])
    ]
    if not needs:
        return
    settings = config["dataset"]
    gaps = [c for c in dataset.columns if dataset.features[c].isna().any()]
    if "missing_values" in config["poison"]["attacks"]:
        gaps = gaps or ["(the cells poison.attacks: missing_values blanks)"]
    if gaps and settings["impute"] is None:
        raise PoisonlabError(
            f"dataset.impute: {needs[0]} needs numbers, and columns {gaps} have missing "
            f"values; set dataset.impute to one of {', '.join(IMPUTE_METHODS)} "
            "(your own models and gates get the raw rows and need none)"
        )
    text = dataset.schema.text_columns
    if text and settings["encode"] is None:
        raise PoisonlabError(
            f"dataset.encode: {needs[0]} needs numbers, and feature columns {text} are text; "
            f"set dataset.encode to {' or '.join(ENCODE_METHODS)}, or add them to "
            "dataset.drop_columns "
            "(your own models and gates get the raw rows and need none)"
        )


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


def check_experiment(config: dict[str, Any]) -> Table:
    """Read and check the configured dataset against the whole config; return it.

    Raises PoisonlabError (one line, naming the field and the fix) on any
    problem a pipeline task would otherwise meet later. What would quietly mislead
    (``data_warnings``, ``user_model_warnings``) gets a one-line warning each on
    stderr once every check has passed (so an error stays the one line printed),
    and the run goes on.
    """
    settings = config["dataset"]
    frame, dataset, _ = read_configured(settings)  # the raw view, a Table
    numbers_needed(dataset, config)
    # Attack parameters naming classes or features must fit this dataset.
    dataset_attack_params(config, dataset.class_names, dataset.feature_names)
    test_masks = trial_splits(dataset, config)
    check_classes_survive(dataset, test_masks, config)
    check_user_code(dataset, config)
    warnings = data_warnings(frame, dataset, test_masks, settings)
    for warning in [*warnings, *user_model_warnings(config)]:
        print(f"warning: {warning}", file=sys.stderr)
    return dataset
