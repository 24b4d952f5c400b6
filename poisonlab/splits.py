"""Which rows of the table each trial tests on: ``dataset.split``.

Three kinds, as a team would hold out its test set:

- ``random`` (the default): a stratified random share of rows per trial
  (``data.split_masks``), each trial its own.
- ``group``: whole groups (people, customers, shops) held out, so that no
  group has rows in both train and test; as stratified by class as the
  groups allow (scikit-learn's ``StratifiedGroupKFold``; past ``MANY_GROUPS``,
  whole groups shuffled); each trial draws its own group split from its seed.
  Rows of one person in train and test let a model recognise the person rather
  than learn the task, which flatters every score.
- ``time``: the latest ``test_size`` share of rows by a time column is the
  test set, rows of one time kept together; every trial shares it, so trials
  vary the poisoning and the models only.

Functions take the split column's values and return a boolean ``(trials, n)``
array, True where a row is in that trial's test set. The split column is not a
feature unless ``feature: true`` (``feature_settings``).
"""

from __future__ import annotations

import difflib
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from poisonlab.errors import PoisonlabError
from poisonlab.seeding import derive_rng, derive_seed

RANDOM, GROUP, TIME = "random", "group", "time"
# Past this many groups, a group split shuffles groups rather than stratify (group_masks).
MANY_GROUPS = 5000
SPLIT_KINDS = (RANDOM, GROUP, TIME)
# ``dataset.split``'s default: today's stratified random split.
DEFAULT_SPLIT = {"by": RANDOM, "column": None, "feature": False}


def _fail(field: str, problem: str, fix: str) -> PoisonlabError:
    return PoisonlabError(f"config: dataset.split.{field} {problem}; {fix}")


def check_split_config(split: dict[str, Any]) -> None:
    """Check ``dataset.split`` on its own (its column is checked against the table at load)."""
    by, column, feature = split["by"], split["column"], split["feature"]
    if by not in SPLIT_KINDS:
        close = difflib.get_close_matches(str(by), SPLIT_KINDS, n=1)
        hint = f'did you mean "{close[0]}"?' if close else f"choose from: {', '.join(SPLIT_KINDS)}"
        raise _fail("by", f"= {by!r} is not a kind of split", hint)
    if by == RANDOM:
        if column is not None:
            raise _fail(
                "column",
                f"= {column!r} is for a split by group or time",
                f"set dataset.split.by to group or time, or drop column (by: {RANDOM})",
            )
        if feature:
            raise _fail("feature", "is for a split by group or time", "drop it for by: random")
        return
    if column is not None and not isinstance(column, str):
        raise _fail("column", f"= {column!r} is not a column name", 'quote it, e.g. "id"')
    if not column:
        raise _fail(
            "column",
            f"is not set, and a split by {by} needs one",
            f'name the table\'s {by} column, e.g. {{by: {by}, column: "id"}}',
        )


def split_of(dataset_config: dict[str, Any]) -> dict[str, Any]:
    """The checked ``dataset.split`` of a dataset section (the default where it has none)."""
    return dataset_config.get("split") or DEFAULT_SPLIT


def feature_settings(dataset_config: dict[str, Any]) -> dict[str, Any]:
    """The dataset section as the features see it: the split column added to
    ``drop_columns`` unless ``feature: true`` (it decides the split, and a model
    that learns a person's id learns nothing that holds for new people)."""
    split = split_of(dataset_config)
    drop = list(dataset_config.get("drop_columns") or [])
    if split["by"] == RANDOM or split["feature"] or split["column"] in drop:
        return dataset_config
    return {**dataset_config, "drop_columns": [*drop, split["column"]]}


def split_column_values(
    frame: pd.DataFrame, dataset_config: dict[str, Any], label: str
) -> np.ndarray | None:
    """The split column's values, one per row of ``frame`` (None for a random split).

    The column must be in the table, not the label, not dropped when it is also to
    be a feature, and have a value in every row; a time column must hold numbers or
    dates (``time_keys``).
    """
    split = split_of(dataset_config)
    if split["by"] == RANDOM:
        return None
    column, source = split["column"], dataset_config["source"]
    columns = [str(c) for c in frame.columns]
    if column not in columns:
        close = difflib.get_close_matches(column, columns, n=1)
        fix = f'did you mean "{close[0]}"?' if close else f"columns are: {', '.join(columns)}"
        raise PoisonlabError(f"dataset.split.column: {column!r} is not a column of {source}; {fix}")
    if column == label:
        raise PoisonlabError(
            f"dataset.split.column: {column!r} is the label column of {source}; "
            f"name the {split['by']} column (a person id, a date), not the classes"
        )
    if split["feature"] and column in (dataset_config.get("drop_columns") or []):
        raise PoisonlabError(
            f"dataset.split.feature: true, but {column!r} is in dataset.drop_columns; "
            "remove it from drop_columns, or drop feature: true"
        )
    values = frame[column]
    missing = int(values.isna().sum())
    if missing:
        raise PoisonlabError(
            f"dataset.split.column: {column!r} of {source} is empty in {missing} rows, which "
            f"then belong to no {split['by']}; fill them, or remove those rows"
        )
    if split["by"] == TIME:
        time_keys(values.to_numpy(), column)  # checked now: numbers or dates
    return values.to_numpy()


def kept_rows(frame: pd.DataFrame, dataset_config: dict[str, Any], label: str) -> np.ndarray:
    """Which rows of ``frame`` the Dataset holds: all, except those ``dataset.impute:
    drop_rows`` drops for a missing feature value (``data.frame_to_dataset``)."""
    if dataset_config.get("impute") != "drop_rows":
        return np.ones(len(frame), dtype=bool)
    drop = set(feature_settings(dataset_config).get("drop_columns") or [])
    features = frame[[c for c in frame.columns if str(c) != label and str(c) not in drop]]
    return ~features.isna().any(axis=1).to_numpy()


def time_keys(values: np.ndarray, column: str = "") -> np.ndarray:
    """Sortable numbers for a time column: numbers as they are, dates and times
    (datetime values, or ISO 8601 text such as ``2021-03-04``) as nanoseconds."""
    series = pd.Series(values)
    shown = next(iter(series.dropna().astype(str)), "")
    if pd.api.types.is_bool_dtype(series):
        pass
    elif pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64)
    elif pd.api.types.is_datetime64_any_dtype(series):
        return _nanoseconds(pd.to_datetime(series, utc=True))
    else:
        # utc=True: an export's timestamps often carry an offset (2020-03-10T10:00:00Z),
        # which a naive datetime64 cannot hold (pandas raised a TypeError); naive ones
        # are read as UTC, which orders them as before.
        parsed = pd.to_datetime(series.astype(str), errors="coerce", format="ISO8601", utc=True)
        if parsed.notna().all():
            return _nanoseconds(parsed)
        numbers = pd.to_numeric(series, errors="coerce")
        if numbers.notna().all():
            return numbers.to_numpy(dtype=np.float64)
        if parsed.notna().any():  # some dates, some not: show one that is not
            shown = str(series[parsed.isna()].iloc[0])
    raise PoisonlabError(
        f"dataset.split.column: {column!r} holds {shown!r}, neither a number nor a date, so "
        "rows cannot be ordered by it; name a column of numbers (a week) or dates "
        "(2021-03-04), or split by: group"
    )


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """UTC datetimes as float nanoseconds since the epoch."""
    naive = times.dt.tz_localize(None).astype("datetime64[ns]")
    return naive.astype(np.int64).to_numpy(dtype=np.float64)


def _folds(test_size: float, n_groups: int) -> tuple[int, int]:
    """(k, m): k folds of groups, m of them the test set, m / k nearest ``test_size``
    (the fewest folds among equals); k no more than the groups."""
    best = None
    for k in range(2, max(2, min(20, n_groups)) + 1):
        m = min(k - 1, max(1, round(test_size * k)))
        error = abs(m / k - test_size)
        if best is None or error < best[0] - 1e-12:
            best = (error, k, m)
    return best[1], best[2]


def group_masks(
    y: np.ndarray,
    groups: np.ndarray,
    test_size: float,
    seed: int,
    trials: int,
    class_names: list[str] | None = None,
    column: str = "",
) -> np.ndarray:
    """Test masks that hold out whole groups, stratified by class as groups allow.

    Each trial shuffles the groups into k folds with scikit-learn's
    ``StratifiedGroupKFold`` (seeded by the trial) and tests on m of them, m / k
    nearest ``test_size`` (``_folds``: 1 of 5 for 0.2), trial t on folds t x m to
    t x m + m - 1 (mod k). Past ``MANY_GROUPS`` groups,
    where that greedy search takes seconds a trial and a random draw of groups is
    stratified by sheer number, the trial's groups are shuffled instead and taken
    in turn up to ``test_size`` of the rows (``_shuffled_groups``). A class found in
    one group only can never be in both train and test: refused, as is a split that
    leaves a class out of some trial's training rows.
    """
    from sklearn.model_selection import StratifiedGroupKFold  # slow to import

    codes, uniques = pd.factorize(pd.Series(groups), sort=True)
    n_groups = len(uniques)
    for c in np.unique(y):
        held = np.unique(codes[y == c])
        if len(held) < 2:
            name = repr(class_names[c]) if class_names else f"code {c}"
            raise PoisonlabError(
                f"dataset.split.column: every row of class {name} is in one group of "
                f"{column!r} ({_plain(uniques[held[0]])!r}), so no group split can put the "
                "class in both train and test; split by: random, or give the class rows in "
                "more groups"
            )
    masks = np.zeros((trials, len(y)), dtype=bool)
    if n_groups > MANY_GROUPS:
        for trial in range(trials):
            rng = derive_rng(seed, "split", trial)
            masks[trial] = _shuffled_groups(codes, n_groups, test_size, rng)
        _check_train_classes(y, masks, class_names, f"a split by group of {column!r}")
        return masks
    k, m = _folds(test_size, n_groups)
    for trial in range(trials):
        folds = StratifiedGroupKFold(
            n_splits=k, shuffle=True, random_state=derive_seed(seed, "split", trial)
        )
        with warnings.catch_warnings():  # "the least populated class has only N members"
            warnings.simplefilter("ignore", UserWarning)
            tests = [test for _, test in folds.split(np.zeros(len(y)), y, codes)]
        # Its shuffle only reorders groups of equal class spread: few or unlike groups
        # (hpc_data's 14 protocols) give one partition whatever the seed, and its first
        # fold tested the same 2 groups in every trial. Trial t takes the next m folds,
        # so consecutive trials test different groups, and k / m trials test each once.
        start = (trial * m) % k
        masks[trial, np.concatenate([tests[(start + j) % k] for j in range(m)])] = True
    _check_train_classes(y, masks, class_names, f"a split by group of {column!r}")
    return masks


def _shuffled_groups(
    codes: np.ndarray, n_groups: int, test_size: float, rng: np.random.Generator
) -> np.ndarray:
    """A test mask of whole groups (``codes``, 0..n_groups-1 per row): the groups in a
    random order, taken until their rows come nearest ``test_size`` of all rows."""
    order = rng.permutation(n_groups)
    sizes = np.bincount(codes, minlength=n_groups)[order]
    taken = int(np.argmin(np.abs(np.cumsum(sizes) - test_size * len(codes)))) + 1
    test_groups = np.zeros(n_groups, dtype=bool)
    test_groups[order[: min(taken, n_groups - 1)]] = True
    return test_groups[codes]


def time_masks(
    y: np.ndarray,
    times: np.ndarray,
    test_size: float,
    trials: int,
    class_names: list[str] | None = None,
    column: str = "",
) -> np.ndarray:
    """The same test mask for every trial: the latest rows by ``times``, about
    ``test_size`` of them, rows of one time all on one side.

    The cut is the time whose rows from it on come nearest ``test_size`` of all
    rows (the later of two equally near), leaving at least one row on each side.
    """
    keys = time_keys(times, column)
    distinct, counts = np.unique(keys, return_counts=True)
    if len(distinct) < 2:
        raise PoisonlabError(
            f"dataset.split.column: {column!r} holds one value, so no row is later than "
            "another; name a column that orders the rows, or split by: random"
        )
    from_each = np.cumsum(counts[::-1])[::-1]  # rows at or after each distinct time
    distance = np.abs(from_each[1:] - test_size * len(keys))  # the first time stays in train
    # Between two cuts equally near, the later one: the test set not above test_size.
    best = len(distance) - int(np.argmin(distance[::-1]))
    test = keys >= distinct[best]
    masks = np.repeat(test[np.newaxis, :], trials, axis=0)
    _check_train_classes(y, masks, class_names, f"a split by time on {column!r}")
    return masks


def _check_train_classes(
    y: np.ndarray, masks: np.ndarray, class_names: list[str] | None, what: str
) -> None:
    """Refuse a split whose training rows lack a class in some trial."""
    for trial, mask in enumerate(masks):
        missing = np.setdiff1d(np.unique(y), np.unique(y[~mask]))
        if missing.size:
            code = int(missing[0])
            name = repr(class_names[code]) if class_names else f"code {code}"
            raise PoisonlabError(
                f"dataset.split: {what} leaves class {name} no training rows in trial {trial}; "
                "lower dataset.test_size, or split by: random"
            )


def test_masks(
    y: np.ndarray,
    split: dict[str, Any],
    values: np.ndarray | None,
    test_size: float,
    seed: int,
    trials: int,
    class_names: list[str] | None = None,
) -> np.ndarray:
    """Boolean ``(trials, n)`` array, True where a row is in that trial's test set,
    under ``split`` (``dataset.split``) with the split column's ``values``."""
    if split["by"] == RANDOM:
        from poisonlab.data import split_masks

        return split_masks(y, test_size, seed, trials, class_names)
    if values is None or len(values) != len(y):
        raise PoisonlabError(
            f"dataset.split: by {split['by']} needs the values of column {split['column']!r}, "
            "which this dataset does not carry; load it again from its source"
        )
    if split["by"] == GROUP:
        return group_masks(y, values, test_size, seed, trials, class_names, split["column"])
    return time_masks(y, values, test_size, trials, class_names, split["column"])


def _plain(value: Any) -> Any:
    """A value of the split column as JSON has it (numbers as numbers, else text)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int | float | str | bool):
        return value
    return str(value)


def split_record(split: dict[str, Any], values: np.ndarray | None, masks: np.ndarray) -> dict:
    """What the manifest says of the split: its kind, column, and per trial the rows
    and groups (or the time range) in train and test."""
    trials = []
    for trial, test in enumerate(masks):
        entry = {"trial": trial, "train_rows": int((~test).sum()), "test_rows": int(test.sum())}
        if split["by"] == GROUP:
            entry["train_groups"] = int(pd.unique(values[~test]).size)
            entry["test_groups"] = int(pd.unique(values[test]).size)
        elif split["by"] == TIME:
            keys = time_keys(values, split["column"])
            for side, rows in (("train", ~test), ("test", test)):
                first, last = (
                    np.argmin(np.where(rows, keys, np.inf)),
                    np.argmax(np.where(rows, keys, -np.inf)),
                )
                entry[f"{side}_time"] = [_plain(values[first]), _plain(values[last])]
        trials.append(entry)
    return {
        "by": split["by"],
        "column": split["column"],
        "feature": split["feature"],
        "trials": trials,
    }


def split_sentence(record: dict | None) -> str:
    """The report's sentence on how the test set was held out (from ``split_record``)."""
    if not record or record["by"] == RANDOM:
        return (
            "Test split: a stratified random share of rows, drawn anew in each trial "
            "(dataset.split by: random)."
        )
    column = record["column"]
    trials = record["trials"]
    feature = "" if record["feature"] else f" ({column!r} is not a feature)"
    if record["by"] == GROUP:
        total = trials[0]["train_groups"] + trials[0]["test_groups"]

        def spread(key: str) -> str:  # folds of unlike groups differ in size
            low, high = min(t[key] for t in trials), max(t[key] for t in trials)
            return f"{low}" if low == high else f"{low} to {high}"

        return (
            f"Test split: by group of {column!r}{feature}: no group has rows in both train and "
            f"test; each trial holds out its own {spread('test_groups')} of {total} groups "
            f"({spread('test_rows')} rows), stratified by class as "
            "the groups allow (dataset.split by: group)."
        )
    first = trials[0]

    def span(times: list) -> str:
        return str(times[0]) if times[0] == times[1] else f"{times[0]} to {times[1]}"

    return (
        f"Test split: by time on {column!r}{feature}: the latest {first['test_rows']} rows "
        f"({column} {span(first['test_time'])}) are the test set, trained on the "
        f"{first['train_rows']} rows before them ({span(first['train_time'])}). "
        "Every trial shares this split, so trials vary only the "
        "poisoning and the models, and intervals over trials leave out the test set's own "
        "sampling error (dataset.split by: time)."
    )


# --- columns that call for a split by group or time ------------------------------------

# Words that name a time column: ``week``, ``order_date``, ``SaleYear``. Not ``time``,
# ``day`` or ``month``: as often a duration (a loan's ``Time`` in months) or a day or
# month of the year, which repeats every year and orders nothing.
_TIME_WORDS = frozenset({"date", "timestamp", "datetime", "week", "year", "quarter", "period"})


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[^0-9A-Za-z]+", spaced) if w]


def looks_like_time(values: pd.Series) -> bool:
    """Whether a column looks like a time given as numbers: whole numbers under a time's
    name (``week``, ``year``, ``order_date``) taking two values or more. Dates (text or
    datetime) are ``data.holds_dates``'s: their warning gives the same advice."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    if not any(word in _TIME_WORDS for word in _words(str(values.name))):
        return False
    numbers = values.dropna().to_numpy(dtype=np.float64)
    return (
        numbers.size > 0
        and bool(np.all(numbers == np.round(numbers)))
        and np.unique(numbers).size >= 2
    )


# A repeated entity: at least this many distinct values, each on 2 rows or more on average.
MIN_ENTITIES = 10


def looks_like_entity_id(values: pd.Series) -> bool:
    """Whether a column looks like the id of an entity that has several rows (a person
    in a panel, a customer's orders): whole numbers or text, no value missing, at least
    ``MIN_ENTITIES`` distinct values repeated on two rows each on average, and either a
    key's name (``customer_id``, ``data.has_key_name``) or each value's rows together
    in file order (how panels are stored). An ordinary feature (an age, a count)
    repeats too, but its equal values are scattered through the file."""
    from poisonlab.data import has_key_name

    n = len(values)
    if n < 2 * MIN_ENTITIES or values.isna().any() or pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
        if not np.all(numbers == np.round(numbers)):
            return False
    elif not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return False
    distinct = values.nunique()
    if distinct < MIN_ENTITIES or distinct > n / 2:
        return False
    if has_key_name(str(values.name)):
        return True
    runs = int((values.to_numpy()[1:] != values.to_numpy()[:-1]).sum()) + 1
    return runs == distinct  # every value's rows in one block


def split_warnings(frame: pd.DataFrame, dataset_config: dict[str, Any], label: str) -> list[str]:
    """One line per column that calls for another split than a random one, with the
    ``dataset.split`` to set: a repeated entity id (``looks_like_entity_id``; dropped
    columns too, as dropping the id leaves the entity's rows on both sides) or a time
    (``looks_like_time``; kept columns). Only under a random split."""
    from poisonlab.data import holds_dates

    if split_of(dataset_config)["by"] != RANDOM:
        return []
    dropped = set(dataset_config.get("drop_columns") or [])
    found = []
    for column in frame.columns:
        name, values = str(column), frame[column]
        # Dates are no entity's id, though a file sorted by date holds each in one block
        # (covid_testing's test dates read as "the id of an entity with several rows");
        # a kept one gets the time split's advice from data.table_warnings.
        if name == label or holds_dates(values):
            continue
        timed = looks_like_time(values)  # a table sorted by week repeats weeks in blocks
        if not timed and looks_like_entity_id(values):
            distinct = values.nunique()
            found.append(
                f"dataset: column {name!r} looks like the id of an entity with several rows "
                f"({distinct} values, {len(values) / distinct:.1f} rows each on average), so a "
                "random split tests on entities it trained on, which flatters every score; "
                f'set dataset.split={{by: group, column: "{name}"}} to hold out whole ones'
            )
        elif timed and name not in dropped:
            found.append(
                f"dataset: column {name!r} looks like a time ({values.min()} to "
                f"{values.max()}); to test on the latest rows, as a model in use meets them, "
                f'set dataset.split={{by: time, column: "{name}"}}'
            )
    return found


def time_split_hint(column: str, dataset_config: dict[str, Any]) -> str:
    """The end of ``data.table_warnings``' warning on a column of text dates: the split
    by time it could set (nothing once the split is not random)."""
    if split_of(dataset_config)["by"] != RANDOM:
        return ""
    return f'; to test on the latest rows, set dataset.split={{by: time, column: "{column}"}}'


def trial_masks(dataset: Any, config: dict[str, Any], trials: int | None = None) -> np.ndarray:
    """Every trial's test mask (``test_masks``) for a Dataset under a checked config's
    ``dataset.split``, test size, seed and trials (or the first ``trials``)."""
    return test_masks(
        dataset.y,
        split_of(config["dataset"]),
        dataset.split_values,
        config["dataset"]["test_size"],
        config["seed"],
        config["trials"] if trials is None else trials,
        dataset.class_names,
    )
