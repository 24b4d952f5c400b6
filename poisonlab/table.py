"""The raw and encoded views of a table, in one place.

The *raw view* is the table as a team's pipeline receives it: its own columns
after ``dataset.drop_columns``, with their own dtypes (text as text, integers as
integers, missing cells missing), and the label as in the table. The user's own
models and gates get it by default.

The *encoded view* is the float matrix the built-in models, detectors and
attacks work on: missing cells filled (``dataset.impute``), text columns turned
into numbers (``dataset.encode``). It is fitted on each training split, as a
deployed pipeline fits its preprocessing on its training data: the fill values
and the categories it knows come from those rows only. The layout (which
encoded column is which) is the table's own, so encoded feature names are the
same in every split; a category a split never saw encodes as all zeros in its
one-hot group (scikit-learn's ``OneHotEncoder(handle_unknown="ignore")``), or as
the fill under ordinal codes.

``Encoding.decode`` turns encoded rows back into raw rows a real source could
send: numbers in their own units, integers rounded, a one-hot group to its
likeliest seen category, an ordinal code to the nearest seen category, and a
cell missing in the original row stays missing. Attacks work on the encoded
matrix; their rows go through ``decode`` (``poisonlab.experiment``), so any
attack in encoded space gives raw rows. ``Encoding.columns_info`` says what the
encoding is (integer columns, one-hot groups, ranges) for attacks that must
stay inside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

NUMBER = "number"
INTEGER = "integer"
BOOLEAN = "boolean"
TEXT = "text"
RAW = "raw"
ENCODED = "encoded"


def column_kind(values: pd.Series) -> str:
    """``boolean``, ``integer``, ``number`` (floats) or ``text`` (anything else)."""
    if pd.api.types.is_bool_dtype(values):
        return BOOLEAN
    if pd.api.types.is_integer_dtype(values):
        return INTEGER
    if pd.api.types.is_numeric_dtype(values):
        return NUMBER
    return TEXT


def _text(values: pd.Series) -> np.ndarray:
    """A text column's values as str, missing as None."""
    present = values.notna().to_numpy()
    out = np.full(len(values), None, dtype=object)
    out[present] = values[present].astype(str).to_numpy()
    return out


@dataclass(frozen=True)
class Schema:
    """What the raw table's feature columns are, and how its encoded view is laid out.

    ``categories``: every text column's values in the whole table, sorted (the
    one-hot layout; ``Encoding.seen`` are those a training split holds).
    ``encode``/``impute``: the config's ``dataset.encode``/``dataset.impute`` (None:
    not set; the attacks' encoding then uses one-hot and means).
    """

    columns: list[str]
    dtypes: list[str]
    kinds: list[str]
    categories: dict[str, list[str]]
    encode: str | None = None
    impute: str | None = None

    @classmethod
    def of(cls, features: pd.DataFrame, encode: str | None, impute: str | None) -> Schema:
        kinds = [column_kind(features[c]) for c in features.columns]
        categories = {
            str(c): sorted({v for v in _text(features[c]) if v is not None})
            for c, kind in zip(features.columns, kinds, strict=True)
            if kind == TEXT
        }
        return cls(
            [str(c) for c in features.columns],
            [str(features[c].dtype) for c in features.columns],
            kinds,
            categories,
            encode,
            impute,
        )

    @property
    def method(self) -> str:
        return self.encode or "onehot"

    @cached_property
    def feature_names(self) -> list[str]:
        """The encoded view's column names: a number under its own name, a text column
        as ``column=value`` per category (one-hot) or under its own name (ordinal)."""
        names = []
        for column, kind in zip(self.columns, self.kinds, strict=True):
            if kind == TEXT and self.method == "onehot":
                names += [f"{column}={c}" for c in self.categories[column]]
            else:
                names.append(column)
        return names

    @property
    def text_columns(self) -> list[str]:
        return [c for c, k in zip(self.columns, self.kinds, strict=True) if k == TEXT]

    def raw_columns(self) -> list[dict[str, str]]:
        """``[{name, dtype}]``: what the manifest lists beside the encoded feature names."""
        return [{"name": c, "dtype": d} for c, d in zip(self.columns, self.dtypes, strict=True)]

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "dtypes": self.dtypes,
            "kinds": self.kinds,
            "categories": self.categories,
            "encode": self.encode,
            "impute": self.impute,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schema:
        return cls(**data)

    def fit(self, rows: pd.DataFrame) -> Encoding:
        """The encoding fitted on ``rows`` (a training split's raw features)."""
        fills: list[Any] = []
        seen: dict[str, list[str]] = {}
        for column, kind in zip(self.columns, self.kinds, strict=True):
            values = rows[column]
            if kind == TEXT:
                text = pd.Series(_text(values)).dropna()
                seen[column] = sorted(set(text))
                fills.append(_most_frequent(text, self.categories[column]))
                continue
            numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
            numbers = numbers[~np.isnan(numbers)]
            if not len(numbers):
                fills.append(0.0)
            elif self.impute == "median":
                fills.append(float(np.median(numbers)))
            elif self.impute == "most_frequent":
                fills.append(float(_most_frequent(pd.Series(numbers), [0.0])))
            else:  # mean; also the attacks' view where dataset.impute is not set
                fills.append(float(numbers.mean()))
        return Encoding(self, fills, seen)


def _most_frequent(values: pd.Series, otherwise: list[Any]) -> Any:
    """The most frequent value, ties broken by the sorted value (not by row order)."""
    if values.empty:
        return otherwise[0] if otherwise else ""
    counts = values.value_counts()
    return sorted(counts[counts == counts.max()].index, key=str)[0]


@dataclass(frozen=True)
class EncodedColumns:
    """What an encoding is, per encoded column: for attacks that must produce rows the
    encoding can hold (integer-valued, one category per one-hot group, in range).

    ``integer``: True where every valid value is a whole number (integer and
    boolean columns, one-hot columns, ordinal codes). ``groups``: the encoded
    column indices of each one-hot group (exactly one of them is 1 in a valid
    row). ``low``/``high``: each encoded column's range on the fitted rows.
    ``raw``: the raw column each encoded column comes from.
    """

    names: list[str]
    integer: np.ndarray
    groups: list[np.ndarray]
    low: np.ndarray
    high: np.ndarray
    raw: list[str]


def plain_columns(names: list[str], X: np.ndarray) -> EncodedColumns:
    """``EncodedColumns`` of a matrix that is already numbers (a ``Dataset``'s): every
    column a float, no one-hot groups, ranges from ``X``."""
    d = X.shape[1]
    low = X.min(axis=0) if len(X) else np.full(d, -np.inf)
    high = X.max(axis=0) if len(X) else np.full(d, np.inf)
    return EncodedColumns(list(names), np.zeros(d, dtype=bool), [], low, high, list(names))


@dataclass(frozen=True)
class Encoding:
    """A schema's encoding fitted on one training split: fill values, seen categories."""

    schema: Schema
    fills: list[Any]
    seen: dict[str, list[str]] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return self.schema.feature_names

    def transform(self, rows: pd.DataFrame) -> np.ndarray:
        """The encoded float matrix of raw ``rows`` (missing filled, text as numbers)."""
        parts = []
        schema = self.schema
        for column, kind, fill in zip(schema.columns, schema.kinds, self.fills, strict=True):
            values = rows[column]
            if kind != TEXT:
                numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
                if np.isnan(numbers).any():
                    numbers = np.where(np.isnan(numbers), fill, numbers)
                parts.append(numbers[:, None])
                continue
            text = _text(values)
            text[pd.isna(text)] = fill
            known = self.seen[column]
            vocabulary = schema.categories[column]
            if schema.method == "ordinal":
                known_set = set(known)
                codes = {c: float(i) for i, c in enumerate(vocabulary) if c in known_set}
                fill_code = float(vocabulary.index(fill)) if fill in vocabulary else 0.0
                parts.append(np.array([codes.get(v, fill_code) for v in text])[:, None])
                continue
            known_set = set(known)
            block = np.zeros((len(text), len(vocabulary)))
            for j, category in enumerate(vocabulary):
                if category in known_set:  # unseen in training: the group stays all zero
                    block[:, j] = text == category
            parts.append(block)
        if not parts:
            return np.empty((len(rows), 0))
        return np.hstack(parts).astype(np.float64, copy=False)

    def columns_info(self, X: np.ndarray | None = None) -> EncodedColumns:
        """What this encoding is (``EncodedColumns``); ranges from ``X`` (encoded rows) if
        given, else from the encoding's own layout (0/1 for one-hot, codes for ordinal)."""
        schema = self.schema
        integer, groups, raw = [], [], []
        for column, kind in zip(schema.columns, schema.kinds, strict=True):
            if kind == TEXT and schema.method == "onehot":
                width = len(schema.categories[column])
                groups.append(np.arange(len(integer), len(integer) + width))
                integer += [True] * width
                raw += [column] * width
            else:
                integer.append(kind != NUMBER)
                raw.append(column)
        if X is not None and len(X):
            low, high = X.min(axis=0), X.max(axis=0)
        else:
            low, high = np.full(len(integer), -np.inf), np.full(len(integer), np.inf)
        return EncodedColumns(
            list(self.feature_names), np.array(integer, dtype=bool), groups, low, high, raw
        )

    def decode(self, X: np.ndarray, original: pd.DataFrame | None = None) -> pd.DataFrame:
        """Raw rows for encoded rows ``X``, in the table's columns and dtypes.

        With ``original`` (the raw rows ``X``'s first rows were encoded from), a cell
        whose encoding ``X`` left unchanged keeps its raw value, and a cell missing
        there stays missing; rows past ``original`` (added rows) are decoded whole.
        A cell that is NaN in ``X`` becomes missing (``missing_values`` blanks cells),
        except in a numpy integer or boolean column, which holds no gap.
        Numbers keep their own units; integers are rounded (and clipped to their
        dtype); a one-hot group becomes its largest seen category, an ordinal code
        the nearest seen category's.
        """
        schema = self.schema
        n = len(X)
        base = None if original is None else original.reset_index(drop=True)
        n_old = 0 if base is None else len(base)
        before = None if base is None else self.transform(base)
        out = {}
        j = 0
        for column, kind, dtype in zip(schema.columns, schema.kinds, schema.dtypes, strict=True):
            onehot = kind == TEXT and schema.method == "onehot"
            width = len(schema.categories[column]) if onehot else 1
            block = X[:, j : j + width]
            changed = np.ones(n, dtype=bool)
            missing = np.zeros(n, dtype=bool)
            values = np.full(n, None, dtype=object)
            if base is not None:
                old = before[:, j : j + width]
                changed[:n_old] = (
                    (block[:n_old] != old) & ~(np.isnan(block[:n_old]) & np.isnan(old))
                ).any(axis=1)
                missing[:n_old] = base[column].isna().to_numpy()
                values[:n_old] = base[column].to_numpy(dtype=object)
            blanked = np.isnan(block).any(axis=1)
            if kind in (INTEGER, BOOLEAN) and dtype[0].islower():
                # numpy's int and bool hold no gap (a CSV would turn the column into
                # floats, and a contract typed int would fail as a whole): kept as it was.
                changed &= ~blanked
                blanked[:] = False
            write = changed & ~missing & ~blanked
            values[changed & blanked] = None
            if write.any():
                values[write] = self._decode_cells(column, kind, dtype, block[write])
            out[column] = _as_dtype(values, dtype, kind)
            j += width
        return pd.DataFrame(out)

    def _decode_cells(self, column: str, kind: str, dtype: str, block: np.ndarray) -> np.ndarray:
        if kind == NUMBER:
            return block[:, 0].astype(object)
        if kind == BOOLEAN:
            return (block[:, 0] >= 0.5).astype(object)
        if kind == INTEGER:
            numbers = np.rint(block[:, 0])
            try:
                info = np.iinfo(np.dtype(dtype.lower()))
                numbers = np.clip(numbers, info.min, info.max)
            except TypeError:
                pass
            return np.array([int(v) for v in numbers], dtype=object)
        vocabulary = self.schema.categories[column]
        known = self.seen[column] or vocabulary
        if self.schema.method == "onehot":
            index = [vocabulary.index(c) for c in known]
            chosen = np.argmax(block[:, index], axis=1)
        else:
            codes = np.array([vocabulary.index(c) for c in known], dtype=np.float64)
            chosen = np.argmin(np.abs(block[:, [0]] - codes[None, :]), axis=1)
        return np.asarray(known, dtype=object)[chosen]


def _as_dtype(values: np.ndarray, dtype: str, kind: str) -> pd.Series:
    """Decoded cells (None where missing) as a column of the table's dtype."""
    series = pd.Series(values, dtype=object)
    if kind == TEXT:
        return series.astype(dtype) if dtype != "object" else series.where(series.notna(), np.nan)
    if series.isna().any() and kind in (INTEGER, BOOLEAN) and dtype[0].islower():
        # A numpy int column with a gap is read from a CSV as floats: so it comes here.
        dtype = "float64" if kind == INTEGER else "boolean"
    try:
        return series.astype(dtype)
    except (TypeError, ValueError):
        return pd.Series(pd.to_numeric(series, errors="coerce"))


def restore_dtypes(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """A frame read back from Parquet in the table's dtypes (an integer column with a
    blanked cell comes back as float: it is given pandas' nullable integer type)."""
    for column, dtype, kind in zip(schema.columns, schema.dtypes, schema.kinds, strict=True):
        if str(frame[column].dtype) != dtype:
            frame[column] = _as_dtype(frame[column].astype(object).to_numpy(), dtype, kind)
    return frame


def rows_hash(X: np.ndarray | pd.DataFrame, y: np.ndarray) -> str:
    """SHA-256 of rows and labels, raw (a DataFrame) or encoded (an array)."""
    if not isinstance(X, pd.DataFrame):
        from poisonlab.data import array_hash

        return array_hash(X, y)
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(X, index=False).to_numpy())
    digest.update(np.ascontiguousarray(y, dtype=np.int64))
    return digest.hexdigest()


@dataclass(frozen=True)
class Table:
    """The raw view of a dataset: feature columns as loaded, class codes, names.

    ``X`` is the features (a DataFrame, as scikit-learn takes one); ``y[i]``
    indexes ``class_names``; ``labels(codes)`` gives the label column's own
    values (numbers where the table's label held whole numbers).
    """

    features: pd.DataFrame
    y: np.ndarray
    class_names: list[str]
    label_name: str
    schema: Schema
    label_numeric: bool = False
    # The ``dataset.split`` column's value per row (a person id, a week), None for a
    # random split: what ``splits.test_masks`` splits by; a feature only if configured.
    split_values: np.ndarray | None = None

    @property
    def X(self) -> pd.DataFrame:
        return self.features

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def feature_names(self) -> list[str]:
        """The encoded view's feature names (attack parameters name these)."""
        return self.schema.feature_names

    @property
    def columns(self) -> list[str]:
        return self.schema.columns

    def labels(self, codes: np.ndarray) -> np.ndarray:
        return label_values(self.class_names, self.label_numeric)[np.asarray(codes)]

    def encoded(self, rows: np.ndarray | slice = slice(None)) -> tuple[Encoding, np.ndarray]:
        """The encoding fitted on ``rows`` (a boolean mask or slice) and their matrix."""
        part = self.features[rows].reset_index(drop=True)
        encoding = self.schema.fit(part)
        return encoding, encoding.transform(part)


def label_values(class_names: list[str], numeric: bool) -> np.ndarray:
    """The label column's values by class code: whole numbers where the table's were."""
    if numeric:
        return np.array([int(name) for name in class_names], dtype=np.int64)
    return np.asarray(class_names, dtype=object)


@dataclass(frozen=True)
class TableView:
    """What a model built for the raw view needs to know (``models.make_model``): the
    table's schema, and the label column's values by class code."""

    schema: Schema
    labels: tuple[Any, ...]

    @property
    def feature_names(self) -> list[str]:
        return self.schema.feature_names


def table_view(table: Table) -> TableView:
    """The ``TableView`` of a table's raw view."""
    return TableView(table.schema, plain_labels(table.class_names, table.label_numeric))


def plain_labels(class_names: list[str], numeric: bool) -> tuple[Any, ...]:
    """The label column's values by class code as plain Python values (int or str)."""
    return tuple(
        v.item() if isinstance(v, np.generic) else v for v in label_values(class_names, numeric)
    )
