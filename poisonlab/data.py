"""Loading tabular datasets, splitting them per trial, and storing them as Parquet.

A dataset is a float feature matrix ``X``, integer class codes ``y`` and the
names of both. Sources: ``sklearn:<name>`` (a bundled scikit-learn dataset),
a local CSV or Parquet file, or ``gs://bucket/path`` (CSV or Parquet).
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from poisonlab.config import ENCODE_METHODS, IMPUTE_METHODS
from poisonlab.errors import PoisonlabError
from poisonlab.seeding import derive_seed
from poisonlab.splits import (
    feature_settings,
    kept_rows,
    split_column_values,
    split_warnings,
    time_split_hint,
)
from poisonlab.synthetic import PREFIX as SYNTHETIC_PREFIX
from poisonlab.synthetic import synthetic_frame

LABEL = "_label"
SPLIT = "_split"  # a stored Dataset's split_values
SKLEARN_DATASETS = ("iris", "wine", "breast_cancer", "digits")
_METADATA_KEY = b"poisonlab"


@dataclass(frozen=True)
class Dataset:
    """Features, class codes and names. ``y[i]`` indexes ``class_names``."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]
    # The label column's name in the input table (what a user's schema gate calls it).
    label_name: str = "target"
    # The ``dataset.split`` column's value per row (a person id, a week), None for a
    # random split: what ``splits.test_masks`` splits by; a feature only if configured.
    split_values: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def array_hash(X: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of the feature and label values: equal data, equal hash."""
    digest = hashlib.sha256()
    # The arrays' own buffers, not a bytes copy of them (a million rows: 160 MB less).
    digest.update(np.ascontiguousarray(X, dtype=np.float64))
    digest.update(np.ascontiguousarray(y, dtype=np.int64))
    return digest.hexdigest()


def _read_sklearn(name: str) -> pd.DataFrame:
    import sklearn.datasets

    if name not in SKLEARN_DATASETS:
        hint = difflib.get_close_matches(name, SKLEARN_DATASETS, n=1)
        fix = f'did you mean "sklearn:{hint[0]}"?' if hint else f"choose from {SKLEARN_DATASETS}"
        raise PoisonlabError(f"dataset.source: sklearn:{name} is not a bundled dataset; {fix}")
    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    names = list(getattr(bunch, "target_names", []))
    if names and len(names) == frame["target"].nunique():
        frame["target"] = [str(names[i]) for i in frame["target"]]
    return frame


def _parse_bytes(data: bytes, source: str) -> pd.DataFrame:
    """Parse CSV or Parquet bytes, chosen by the source's file extension."""
    if not data.strip():
        raise PoisonlabError(
            f"dataset.source: {source} is empty; give a file with a header and rows"
        )
    suffix = Path(source).suffix.lower()
    if data[:2] == b"\x1f\x8b" and suffix not in (".parquet", ".pq"):
        # Warehouse exports are often gzipped CSV (``.csv.gz``): read the CSV inside.
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise PoisonlabError(
                f"dataset.source: {source} is a damaged gzip file ({error}); export it again"
            ) from None
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(io.BytesIO(data))
        _check_csv_header(data, source)
        return pd.read_csv(io.BytesIO(data))
    except UnicodeDecodeError as error:
        # Warehouse tools often export Latin-1 or UTF-16; pandas would guess nothing.
        raise PoisonlabError(
            f"dataset.source: {source} is not UTF-8 text (it holds byte "
            f"{error.object[error.start]:#04x}); save it as UTF-8 CSV, or as Parquet"
        ) from None
    except (ValueError, pa.ArrowException) as error:
        kind = "Parquet" if suffix in (".parquet", ".pq") else "CSV"
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PoisonlabError(
            f"dataset.source: {source} could not be read as {kind} ({first}); check the file"
        ) from None


def _check_csv_header(data: bytes, source: str) -> None:
    """Reject repeated column names, which pandas would silently rename to ``a.1``."""
    first_line = data.lstrip().split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
    header = next(csv.reader([first_line]), [])
    separator = next(
        (sep for sep in (";", "\t", "|") if len(header) == 1 and sep in header[0]), None
    )
    if separator:
        raise PoisonlabError(
            f"dataset.source: {source} separates its header with {separator!r}, not commas; "
            "save it as comma-separated CSV (or Parquet)"
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise PoisonlabError(
            f"dataset.source: {source} repeats column names {repeated}; "
            "give every column a distinct name"
        )


def read_source_bytes(source: str) -> bytes:
    """The raw bytes of a local or gs:// file, with a clear error if it is missing."""
    if source.startswith("gs://"):
        from poisonlab.gcs import read_gcs_bytes

        return read_gcs_bytes(source)
    path = Path(source).expanduser()  # a config's "~/data.csv": no shell expanded it
    if not path.exists():
        raise PoisonlabError(
            f"dataset.source: {source} does not exist; give sklearn:iris, or a CSV/Parquet path"
        )
    if not path.is_file():
        raise PoisonlabError(
            f"dataset.source: {source} is not a file; give the path of a CSV or Parquet file"
        )
    try:
        return path.read_bytes()
    except OSError as error:
        raise PoisonlabError(
            f"dataset.source: {source} cannot be read ({error.strerror}); check its permissions"
        ) from None


def is_generated(source: str) -> bool:
    """Whether a source is a table made by code (``sklearn:``, ``synthetic:``), not a file."""
    return source.startswith(("sklearn:", SYNTHETIC_PREFIX))


# Set on the load task of a cached local run: the input's SHA-256 as checked before the run.
# It is part of the task's cache key (a changed file is a new key); load refuses other bytes.
INPUT_SHA256_ENV = "POISONLAB_INPUT_SHA256"


def source_sha256(source: str) -> str:
    """The SHA-256 of a file source's bytes, as ``read_frame`` gives it, without parsing
    them; "" for a table made by code, which its name and the config already fix."""
    return "" if is_generated(source) else sha256_hex(read_source_bytes(source))


def read_frame(source: str) -> tuple[pd.DataFrame, str]:
    """The raw table behind a source and the SHA-256 of its bytes.

    Generated tables (``is_generated``) are hashed by their values.
    """
    if is_generated(source):
        if source.startswith(SYNTHETIC_PREFIX):
            frame = synthetic_frame(source)
        else:
            frame = _read_sklearn(source.removeprefix("sklearn:"))
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
        return frame, sha256_hex(hashed)
    data = read_source_bytes(source)
    return _parse_bytes(data, source), sha256_hex(data)


def _label_column(frame: pd.DataFrame, label_column: str | None, source: str) -> str:
    columns = [str(c) for c in frame.columns]
    if label_column is None:
        return "target" if "target" in columns else columns[-1]
    if label_column not in columns:
        hint = difflib.get_close_matches(label_column, columns, n=1)
        fix = f'did you mean "{hint[0]}"?' if hint else f"columns are: {', '.join(columns)}"
        raise PoisonlabError(
            f"dataset.label_column: {label_column!r} is not a column of {source}; {fix}"
        )
    return label_column


def _impute(features: pd.DataFrame, method: str) -> pd.DataFrame:
    """Fill missing feature values column by column (``drop_rows`` is handled by the caller).

    Statistics come from the whole table, before the split: the study measures
    poisoning, and the same fill for every trial keeps trials comparable.
    """
    filled = features.copy()
    for column in features.columns:
        values = features[column]
        if not values.isna().any():
            continue
        if pd.api.types.is_numeric_dtype(values):
            # Parquet's nullable Int64/boolean refuse a fill that is not of their kind (a mean).
            values = values.astype(np.float64)
        if method == "most_frequent" or not pd.api.types.is_numeric_dtype(values):
            counts = values.value_counts()
            # Ties broken by the sorted value, so the fill does not depend on row order.
            fill = sorted(counts[counts == counts.max()].index, key=str)[0]
        elif method == "median":
            fill = values.median()
        else:
            fill = values.mean()
        filled[column] = values.fillna(fill)
    return filled


def _encode(features: pd.DataFrame, columns: list[str], method: str) -> pd.DataFrame:
    """Turn text columns into numbers: one 0/1 column per value, or sorted value codes."""
    parts = []
    for column in features.columns:
        if str(column) not in columns:
            parts.append(features[[column]])
            continue
        values = features[column].astype(str)
        categories = sorted(set(values))
        if method == "ordinal":
            codes = values.map({v: float(i) for i, v in enumerate(categories)})
            parts.append(codes.to_frame(column))
            continue
        # All of a column's 0/1 columns in one frame: one insert per value fragments the
        # table (pandas warns once per insert, hundreds of lines for a column of names).
        onehot = {f"{column}={c}": (values == c).to_numpy(dtype=float) for c in categories}
        parts.append(pd.DataFrame(onehot, index=features.index))
    return pd.concat(parts, axis=1)


def _class_labels(values: pd.Series, label: str, source: str) -> np.ndarray:
    """The label column as class-name strings; numbers that are not whole are rejected."""
    if pd.api.types.is_float_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
        if not np.all(numbers == np.round(numbers)):
            raise PoisonlabError(
                f"dataset.label_column: {label!r} of {source} holds fractional numbers, "
                "not class labels; set dataset.label_column to the column of classes"
            )
        return np.array([str(int(v)) for v in numbers], dtype=object)
    # "yes " and "yes" are one class; spaces around a label are an export's artefact.
    return values.astype(str).str.strip().to_numpy()


def _drop_columns(frame: pd.DataFrame, label: str, drop: list[str], source: str) -> pd.DataFrame:
    """``frame`` without the columns named in ``dataset.drop_columns`` (checked first)."""
    columns = [str(c) for c in frame.columns]
    for name in drop:
        if name == label:
            raise PoisonlabError(
                f"dataset.drop_columns: {name!r} is the label column of {source}; "
                "remove it from drop_columns, or set dataset.label_column to another column"
            )
        if name not in columns:
            hint = difflib.get_close_matches(name, columns, n=1)
            fix = f'did you mean "{hint[0]}"?' if hint else f"columns are: {', '.join(columns)}"
            raise PoisonlabError(
                f"dataset.drop_columns: {name!r} is not a column of {source}; {fix}"
            )
    return frame.drop(columns=[c for c in frame.columns if str(c) in drop])


# Words that name a key column: ``customer_id``, ``CustomerID``, ``Order Key``, ``rownames``.
_KEY_WORDS = frozenset({"id", "ids", "key", "index", "rownames", "uuid", "guid"})


def has_key_name(name: str) -> bool:
    """Whether a column's name has a word that names a key (``id``, ``key``, ``uuid``...)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name))
    return any(word.lower() in _KEY_WORDS for word in re.split(r"[^0-9A-Za-z]+", spaced))


def looks_like_row_id(values: pd.Series) -> bool:
    """Whether a column looks like a row identifier rather than a feature.

    Unique per row and either text, or whole numbers that are a key: increasing
    in file order (an export's row number, possibly with gaps), a shuffled
    0..n-1 / 1..n, or in any order under a key's name (``customer_id``). A model
    would learn the row's position from it.
    """
    n = len(values)
    if n < 10 or values.isna().any():
        return False
    # Cheap tests first: counting distinct values is the slow part (seconds at 1M rows).
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
        if not np.all(numbers == np.round(numbers)):
            return False
        keyed = (
            bool(np.all(np.diff(numbers) > 0))
            or numbers.max() - numbers.min() == n - 1
            or has_key_name(str(values.name))
        )
        return keyed and values.nunique() == n
    is_text = pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)
    return is_text and values.nunique() == n


def row_id_warnings(frame: pd.DataFrame, dataset_config: dict) -> list[str]:
    """One line per kept feature column that looks like a row identifier, with the fix."""
    label = _label_column(frame, dataset_config["label_column"], dataset_config["source"])
    dropped = set(dataset_config.get("drop_columns") or [])
    return [
        f"dataset: column {str(column)!r} looks like a row identifier (a distinct value "
        "per row), so models and detectors would learn from it; add it to "
        "dataset.drop_columns"
        for column in frame.columns
        if str(column) != label and str(column) not in dropped and looks_like_row_id(frame[column])
    ]


def missing_markers(values: pd.Series, most: int = 3) -> list[str]:
    """The few text values of a column of numbers (``?``, ``-``, ``n.a.``): how some
    exports write a missing number. Encoding would turn every number into a
    category; [] when the column is numbers, or text of its own kind."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return []
    distinct = pd.Series(values.dropna().unique())
    numbers = pd.to_numeric(distinct, errors="coerce")
    others = distinct[numbers.isna()]
    # Mostly numbers: nine in ten distinct values, and a handful of others at most.
    if others.empty or len(others) > most or numbers.notna().sum() < 9 * len(others):
        return []
    return sorted(str(v) for v in others)


# A number as spreadsheets and some exports write it: thousands separators (1,234.5) or a
# decimal comma (5,1); plain numbers beside them (999) are text in that column too.
_NUMBER_TEXT = re.compile(r"[+-]?(\d{1,3}(,\d{3})+(\.\d+)?|\d+,\d+|\d*\.?\d+)")
# A leading zero before a digit (02134, 007) is a code, not a number.
_CODE_TEXT = re.compile(r"[+-]?0\d")


def numbers_as_text(values: pd.Series) -> str | None:
    """A value with a comma from a text column whose every value is a number written
    with thousands separators or a decimal comma (``'1,234'``, ``'5,1'``), else None.

    Such a column is a measurement: encoding would turn each number into a category,
    and dropping it loses a feature. Digits alone stay text (integer-coded categories
    stored as text are encoded, as the README says), as do Parquet categoricals."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return None
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return None
    distinct = pd.Series(values.dropna().unique())
    if distinct.empty or not all(isinstance(v, str) for v in distinct):
        return None
    text = distinct.str.strip()
    with_comma = text[text.str.contains(",", regex=False)]
    if with_comma.empty or not text.str.fullmatch(_NUMBER_TEXT).all():
        return None
    return None if text.str.match(_CODE_TEXT).any() else str(with_comma.iloc[0])


def holds_dates(values: pd.Series) -> bool:
    """Whether a column holds dates or times: a datetime type, or text whose distinct
    values all read as ISO 8601 (``2007-11-11``, ``2012-01-04T13:19:16Z``)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    distinct = pd.Series(values.dropna().unique())
    if distinct.empty or not all(isinstance(v, str) for v in distinct):
        return False
    # Only text with a date's shape is parsed: "N1A1" or "Biscoe" never is.
    if not distinct.str.fullmatch(r"\d{4}-\d{2}-\d{2}([ T][0-9:.]+Z?)?").all():
        return False
    return bool(pd.to_datetime(distinct, errors="coerce", format="ISO8601").notna().all())


# The share of rows repeating another row above which ``table_warnings`` says so.
REPEATS_SHARE = 0.01


def table_warnings(frame: pd.DataFrame, dataset_config: dict) -> list[str]:
    """One line per thing in a readable table that would quietly mislead a run, with the fix.

    A label column taken by default (the last column); row identifiers
    (``row_id_warnings``); text columns of nearly one value per row, which encoding
    turns into a feature per row; dates, which encoding treats as unrelated values;
    columns mostly missing, which imputing mostly invents; rows repeated exactly
    (over 1% of them), which as copies of one record sit in train and test at once;
    class names that differ only in case, counted as separate classes.
    """
    warnings = []
    label = _label_column(frame, dataset_config["label_column"], dataset_config["source"])
    if dataset_config["label_column"] is None and label != "target":
        # Counted as the run counts them: "yes " and "yes" are one class.
        classes = len(set(_class_labels(frame[label].dropna(), label, dataset_config["source"])))
        warnings.append(
            f"dataset.label_column is not set, so the last column, {label!r} "
            f"({classes} classes), is the label; set dataset.label_column "
            "to say which column holds the classes"
        )
    warnings += row_id_warnings(frame, dataset_config)
    dropped = set(dataset_config.get("drop_columns") or [])
    kept = frame[[c for c in frame.columns if str(c) not in dropped]]
    n = len(kept)
    for column in kept.columns:
        values = kept[column]
        if str(column) == label or looks_like_row_id(values):
            continue
        is_text = not pd.api.types.is_numeric_dtype(values)
        distinct = values.nunique() if is_text else 0
        if is_text and n >= 10 and distinct > n / 2:
            warnings.append(
                f"dataset: text column {str(column)!r} has {distinct} distinct values in {n} "
                "rows, so encoding makes nearly a feature per row; add it to "
                "dataset.drop_columns"
            )
        elif is_text and holds_dates(values):
            warnings.append(
                f"dataset: column {str(column)!r} holds dates, which encoding treats as "
                f"{distinct} unrelated values; add it to dataset.drop_columns, or give a "
                "number made from it (a year, days since a start)"
                + time_split_hint(str(column), dataset_config)
            )
        missing = int(values.isna().sum())
        if missing > n / 2:
            effect = (
                "dataset.impute: drop_rows would drop those rows"
                if dataset_config.get("impute") == "drop_rows"
                else "dataset.impute would invent most of it"
            )
            warnings.append(
                f"dataset: column {str(column)!r} is empty in {missing} of {n} rows, so "
                f"{effect}; add it to dataset.drop_columns"
            )
    # Rows compared by a hash of their values: 20 times faster than comparing the values.
    repeats = int(pd.util.hash_pandas_object(kept, index=False).duplicated().sum())
    # A repeat or two move a score less than one test row does (Iris repeats 1 of 150).
    if repeats > REPEATS_SHARE * n:
        warnings.append(
            f"dataset: {repeats} rows repeat another row exactly; copies of one record in "
            "train and test flatter every score: remove copies (rows that merely look alike "
            "are fine)"
        )
    names = sorted({str(v).strip() for v in kept[label].dropna()})
    folded: dict[str, list[str]] = {}
    for name in names:
        folded.setdefault(name.casefold(), []).append(name)
    for variants in folded.values():
        if len(variants) > 1:
            warnings.append(
                f"dataset.label_column: classes {variants} of {label!r} differ only in case, "
                "so they count as different classes; write each class one way in the file"
            )
    # Repeated entity ids and times, which call for dataset.split by group or time.
    return warnings + split_warnings(frame, dataset_config, label)


def _checked_table(
    frame: pd.DataFrame,
    label_column: str | None,
    source: str,
    impute: str | None,
    drop_columns: list[str] | None,
) -> tuple[pd.DataFrame, pd.Series, str]:
    """The checks every view of a table needs: the table's feature columns (after
    ``drop_columns``, and without the rows ``impute: drop_rows`` drops), its label
    column, and the label column's name."""
    if frame.shape[0] == 0 or frame.shape[1] < 2:
        raise PoisonlabError(
            f"dataset.source: {source} has no rows or fewer than 2 columns; "
            "give a table with feature columns and a label column"
        )
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise PoisonlabError(
            f"dataset.source: {source} repeats column names {duplicated}; "
            "give every column a distinct name"
        )
    label = _label_column(frame, label_column, source)
    if drop_columns:
        frame = _drop_columns(frame, label, drop_columns, source)
    missing_labels = int(frame[label].isna().sum())
    if missing_labels:
        # Not chosen by the user: the likelier fix is naming the label column.
        fix = (
            "drop those rows (labels are never imputed)"
            if label_column is not None
            else "set dataset.label_column (by default the last column is the label)"
        )
        if label_column is not None and not pd.api.types.is_numeric_dtype(frame[label]):
            # "NA" may be a class (North America): pandas reads it as missing all the same.
            fix += "; a class written NA, N/A, None or null reads as missing: rename it"
        raise PoisonlabError(
            f"dataset.label_column: {label!r} of {source} has {missing_labels} missing labels; "
            f"{fix}"
        )
    features = frame.drop(columns=[label])
    labels = frame[label]
    # The steps store a table with its labels (and split values) as columns of these names.
    reserved = [str(c) for c in features.columns if str(c) in (LABEL, SPLIT)]
    if reserved:
        raise PoisonlabError(
            f"dataset.source: column {reserved[0]!r} of {source} has a name poisonlab keeps for "
            "the labels it stores with the table; rename it, or add it to dataset.drop_columns"
        )
    # No fill can make a column of nothing into a feature (the mean of nothing is NaN).
    empty = [str(c) for c in features.columns if features[c].isna().all()]
    if empty:
        raise PoisonlabError(
            f"dataset.source: columns {empty} of {source} are empty in every row; "
            "add them to dataset.drop_columns"
        )
    for column in features.columns:
        written = numbers_as_text(features[column])
        if written is not None:
            raise PoisonlabError(
                f"dataset.source: column {str(column)!r} of {source} holds numbers written as "
                f"text ({written!r}); write them as plain numbers (no thousands separators, "
                "'.' before decimals), or add the column to dataset.drop_columns"
            )
        markers = missing_markers(features[column])
        if markers:
            raise PoisonlabError(
                f"dataset.source: column {str(column)!r} of {source} holds numbers but also "
                f"{markers}; write those as empty cells (missing values, which dataset.impute "
                "fills), or add the column to dataset.drop_columns"
            )
    missing = [str(c) for c in features.columns if features[c].isna().any()]
    if missing and impute == "drop_rows":
        kept = ~features.isna().any(axis=1)
        features, labels = features[kept], labels[kept]
        if features.shape[0] == 0:
            raise PoisonlabError(
                f"dataset.impute: drop_rows leaves no rows of {source}; use mean or median"
            )
    return features, labels, str(label)


def _check_finite(features: pd.DataFrame, source: str) -> None:
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    values = features[numeric].to_numpy(dtype=np.float64, na_value=0.0)
    if not np.isfinite(values).all():
        finite = np.isfinite(values).all(axis=0)
        infinite = [str(c) for c, ok in zip(numeric, finite, strict=True) if not ok]
        raise PoisonlabError(
            f"dataset.source: columns {infinite} of {source} hold infinite values; "
            "replace them with finite numbers"
        )
    # Trees compute in float32 (a larger value becomes infinite: every fit fails), and a
    # scaler squares values (past 1e154 the variance overflows: a model at chance, silently).
    largest = float(np.finfo(np.float32).max)
    huge = [
        str(c)
        for c, column in zip(numeric, values.T, strict=True)
        if np.abs(column).max(initial=0) > largest
    ]
    if huge:
        raise PoisonlabError(
            f"dataset.source: columns {huge} of {source} hold values over {largest:.1e} in size, "
            "which the models cannot compute with; rescale them (other units, or a log)"
        )


def _class_codes(labels: pd.Series, label: str, source: str) -> tuple[np.ndarray, list[str]]:
    names = _class_labels(labels, label, source)
    class_names = sorted(set(names))
    if len(class_names) < 2:
        raise PoisonlabError(
            f"dataset.label_column: {label!r} of {source} has one class ({class_names[0]!r}); "
            "a classifier needs at least 2: check the label column"
        )
    codes = pd.Categorical(names, categories=class_names).codes.astype(np.int64)
    return codes, class_names


def frame_to_table(
    frame: pd.DataFrame,
    label_column: str | None,
    source: str,
    impute: str | None = None,
    encode: str | None = None,
    drop_columns: list[str] | None = None,
):
    """Check a raw table and return its raw view (``poisonlab.table.Table``).

    The table's own columns after ``drop_columns``, with their dtypes and gaps;
    ``impute`` and ``encode`` are only recorded (the encoded view is fitted per
    training split), except ``impute: drop_rows``, which drops rows with gaps here.
    """
    from poisonlab.table import Schema, Table

    features, labels, label = _checked_table(frame, label_column, source, impute, drop_columns)
    _check_finite(features, source)
    codes, class_names = _class_codes(labels, label, source)
    # Whole numbers as labels (4, 6, 8 cylinders): user code gets them as numbers.
    numeric = bool(pd.api.types.is_numeric_dtype(labels)) and not pd.api.types.is_bool_dtype(labels)
    features = features.reset_index(drop=True)
    features.columns = [str(c) for c in features.columns]
    return Table(
        features,
        codes,
        class_names,
        label,
        Schema.of(features, encode, impute),
        label_numeric=numeric,
    )


def frame_to_dataset(
    frame: pd.DataFrame,
    label_column: str | None,
    source: str,
    impute: str | None = None,
    encode: str | None = None,
    drop_columns: list[str] | None = None,
) -> Dataset:
    """Check a raw table and turn it into a Dataset (the encoded view of the whole table).

    ``drop_columns`` are left out first (each must be a column, never the label).
    Missing feature values are an error unless ``impute`` says how to fill them;
    text feature columns are an error unless ``encode`` says how to turn them
    into numbers. The input table is never changed.
    """
    features, labels, label = _checked_table(frame, label_column, source, impute, drop_columns)
    missing = [str(c) for c in features.columns if features[c].isna().any()]
    if missing and impute is None:
        raise PoisonlabError(
            f"dataset.source: columns {missing} of {source} have missing values; "
            f"fill them, or set dataset.impute to one of {', '.join(IMPUTE_METHODS)}"
        )
    if missing and impute != "drop_rows":
        features = _impute(features, impute)
    non_numeric = [
        str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
    ]
    if non_numeric and encode is None:
        raise PoisonlabError(
            f"dataset.source: feature columns {non_numeric} of {source} are not numeric; "
            "add them to dataset.drop_columns, or set dataset.encode to one of "
            f"{', '.join(ENCODE_METHODS)}"
        )
    if non_numeric:
        features = _encode(features, non_numeric, encode)
    X = features.to_numpy(dtype=np.float64)
    _check_finite(features, source)
    codes, class_names = _class_codes(labels, label, source)
    return Dataset(
        X=X,
        y=codes,
        feature_names=[str(c) for c in features.columns],
        class_names=class_names,
        label_name=str(label),
    )


def load_dataset(
    source: str,
    label_column: str | None = None,
    *,
    impute: str | None = None,
    encode: str | None = None,
    drop_columns: list[str] | None = None,
) -> tuple[Dataset, str]:
    """Read and check a dataset; return it and the SHA-256 of the input."""
    frame, input_hash = read_frame(source)
    dataset = frame_to_dataset(frame, label_column, source, impute, encode, drop_columns)
    return dataset, input_hash


def _split_values(frame: pd.DataFrame, dataset_config: dict) -> np.ndarray | None:
    """The ``dataset.split`` column's value per kept row (None for a random split).

    Checked before the table: an error about the split column names dataset.split.
    """
    label = _label_column(frame, dataset_config["label_column"], dataset_config["source"])
    values = split_column_values(frame, dataset_config, label)
    return None if values is None else values[kept_rows(frame, dataset_config, label)]


def _from_config(frame: pd.DataFrame, dataset_config: dict, build: Callable) -> Any:
    """``build`` (``frame_to_table`` or ``frame_to_dataset``) with the options of a
    validated config's ``dataset`` section; the split column's values ride along.

    The ``dataset.split`` column is left out of the features unless ``feature: true``
    (``splits.feature_settings``), and its values are the result's ``split_values``.
    """
    values = _split_values(frame, dataset_config)
    built = build(
        frame,
        dataset_config["label_column"],
        dataset_config["source"],
        dataset_config.get("impute"),
        dataset_config.get("encode"),
        feature_settings(dataset_config).get("drop_columns"),
    )
    return built if values is None else replace(built, split_values=values)


def read_configured(dataset_config: dict) -> tuple[pd.DataFrame, Any, str]:
    """The raw table, its checked raw view (``poisonlab.table.Table``) and the input's
    SHA-256, with the options of a validated config's ``dataset`` section (the raw
    table is for ``table_warnings``)."""
    frame, input_hash = read_frame(dataset_config["source"])
    return frame, _from_config(frame, dataset_config, frame_to_table), input_hash


def load_table(dataset_config: dict) -> tuple[Any, str]:
    """The raw view (``Table``) of a validated config's dataset, and the input's SHA-256."""
    _, table, input_hash = read_configured(dataset_config)
    return table, input_hash


def load_configured(dataset_config: dict) -> tuple[Dataset, str]:
    """``load_dataset`` with the options of a validated config's ``dataset`` section: the
    encoded view of the whole table, with the split column's values."""
    frame, input_hash = read_frame(dataset_config["source"])
    return _from_config(frame, dataset_config, frame_to_dataset), input_hash


def split_masks(
    y: np.ndarray,
    test_size: float,
    seed: int,
    trials: int,
    class_names: list[str] | None = None,
) -> np.ndarray:
    """Boolean ``(trials, n)`` array, True where a row is in that trial's test set.

    Each trial's split is stratified and depends only on the seed and the trial
    index, so all poison levels of a trial share it. ``class_names`` name a class
    too small to split in the error.
    """
    counts = np.bincount(y)
    if counts[counts > 0].min() < 2:
        lone = int(np.flatnonzero(counts == 1)[0])
        name = repr(class_names[lone]) if class_names else f"code {lone}"
        raise PoisonlabError(
            f"dataset.label_column: class {name} has 1 row, so no stratified split can put it "
            "in both train and test; add rows of it or remove it from the file"
        )
    n = len(y)
    n_test = int(np.ceil(test_size * n))
    if n_test < len(counts) or n - n_test < len(counts):
        raise PoisonlabError(
            f"dataset.test_size: {test_size} of {n} rows leaves too few rows for every class "
            "in both splits; choose a test_size nearer 0.2"
        )
    from sklearn.model_selection import train_test_split  # imported here: slow to import

    masks = np.zeros((trials, n), dtype=bool)
    for trial in range(trials):
        _, test = train_test_split(
            np.arange(n),
            test_size=test_size,
            stratify=y,
            random_state=derive_seed(seed, "split", trial),
        )
        masks[trial, test] = True
    return masks


def write_dataset(dataset: Dataset, path: str | Path, extra: dict | None = None) -> None:
    """Write a Dataset as Parquet; names and ``extra`` go in the file's metadata."""
    columns = {name: dataset.X[:, j] for j, name in enumerate(dataset.feature_names)}
    columns[LABEL] = dataset.y
    if dataset.split_values is not None:
        columns[SPLIT] = dataset.split_values
    table = pa.table(columns)
    meta = {
        "feature_names": dataset.feature_names,
        "class_names": dataset.class_names,
        "label_name": dataset.label_name,
        **(extra or {}),
    }
    table = table.replace_schema_metadata({_METADATA_KEY: json.dumps(meta).encode()})
    pq.write_table(table, path)


def read_metadata(path: str | Path) -> dict:
    """The metadata poisonlab stored with a Parquet file (its footer alone is read)."""
    return json.loads(pq.read_metadata(path).metadata[_METADATA_KEY])


def read_dataset(path: str | Path) -> Any:
    """A file ``write_dataset`` wrote (a Dataset) or ``write_table`` wrote (a Table)."""
    meta = read_metadata(path)
    table = pq.read_table(path)
    if "schema" in meta:
        from poisonlab.table import Schema, Table, restore_dtypes

        schema = Schema.from_json(meta["schema"])
        features = restore_dtypes(table.select(schema.columns).to_pandas(), schema)
        return Table(
            features,
            table.column(LABEL).to_numpy().astype(np.int64),
            meta["class_names"],
            meta["label_name"],
            schema,
            label_numeric=meta.get("label_numeric", False),
            split_values=_stored_split_values(table),
        )
    X = np.column_stack([table.column(name).to_numpy() for name in meta["feature_names"]]).astype(
        np.float64, copy=False
    )
    return Dataset(
        X=X,
        y=table.column(LABEL).to_numpy().astype(np.int64),
        feature_names=meta["feature_names"],
        class_names=meta["class_names"],
        label_name=meta.get("label_name", "target"),
        split_values=_stored_split_values(table),
    )


def _stored_split_values(table: pa.Table) -> np.ndarray | None:
    """The split column's values a stored Dataset or Table holds (None: a random split)."""
    if SPLIT not in table.column_names:
        return None
    return table.column(SPLIT).to_numpy(zero_copy_only=False)


def write_table(table: Any, path: str | Path, extra: dict | None = None) -> None:
    """Write a Table (the raw view) as Parquet, dtypes kept; names, the schema and
    ``extra`` go in the file's metadata."""
    arrow = pa.Table.from_pandas(table.features, preserve_index=False)
    arrow = arrow.append_column(LABEL, pa.array(table.y.astype(np.int64)))
    if table.split_values is not None:
        arrow = arrow.append_column(SPLIT, pa.array(table.split_values))
    meta = {
        "schema": table.schema.to_json(),
        "feature_names": table.feature_names,
        "class_names": table.class_names,
        "label_name": table.label_name,
        "label_numeric": table.label_numeric,
        **(extra or {}),
    }
    arrow = arrow.replace_schema_metadata({_METADATA_KEY: json.dumps(meta).encode()})
    pq.write_table(arrow, path)


def write_splits(masks: np.ndarray, path: str | Path) -> None:
    pq.write_table(pa.table({f"trial_{t}": masks[t] for t in range(masks.shape[0])}), path)


def read_splits(path: str | Path) -> np.ndarray:
    table = pq.read_table(path)
    return np.vstack([table.column(name).to_numpy() for name in table.column_names])
