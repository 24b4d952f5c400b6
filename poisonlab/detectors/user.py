"""The user's own validation gates: a function of theirs, or a pandera schema.

A gate sees the poisoned training split as the team's gate would in production:
the raw rows (the table's own columns and dtypes, gaps as gaps) and the label
column as in the table (``poisonlab.table``). With ``input: encoded`` in its
section it sees what the built-in detectors see instead: the encoded features
as a DataFrame under the encoded feature names, labels as class names. Either
kind is scored against the true mask, used as a defence and by the validation
gate, like every built-in detector.

- ``validate.<name>: {detector: "module:attribute", **params}``: called as
  ``f(X, y, **params)``; returns per-row boolean flags, or ``(scores, flags)``
  with higher scores more suspicious (flags alone score 1 where flagged).
- ``validate.<name>: {schema: "module:attribute"}``: a pandera
  ``DataFrameSchema`` (or ``DataFrameModel``) validated lazily on the features
  plus the label column; a row is flagged when any check fails on it, and its
  score is the number of checks that failed on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from poisonlab.detectors.base import Detection
from poisonlab.errors import PoisonlabError
from poisonlab.table import TableView
from poisonlab.usercode import (
    INPUT_KEY,
    call_user_code,
    code_kwargs,
    import_reference,
    one_line,
    section_input,
)

FUNCTION = "detector"
SCHEMA = "schema"
# A section that is not a built-in detector's is recognised by one of these keys.
SECTION_KINDS = (FUNCTION, SCHEMA)


@dataclass(frozen=True)
class TableNames:
    """The dataset's own names: feature columns, classes by code, and the label column.

    ``view``: the raw view's schema and label values (``poisonlab.table.TableView``),
    where the sets are raw rows."""

    features: list[str]
    classes: list[str]
    label: str
    view: TableView | None = None


def wants_encoded(name: str, section: dict[str, Any]) -> bool:
    """Whether a user gate's section asks for the encoded view (``input: encoded``)."""
    return section_input(section, f"validate.{name}") == "encoded"


def training_table(
    X: np.ndarray | pd.DataFrame, y: np.ndarray, names: TableNames
) -> tuple[pd.DataFrame, pd.Series]:
    """Raw rows (a DataFrame) as they are, labels as in the table; encoded rows (an
    array) as a DataFrame under the encoded feature names, labels as class names."""
    if isinstance(X, pd.DataFrame):
        values = names.view.labels if names.view is not None else names.classes
        labels = np.asarray(values, dtype=object)[np.asarray(y)]
        if all(isinstance(v, int) for v in values):
            labels = labels.astype(np.int64)
        return X.reset_index(drop=True), pd.Series(labels, name=names.label)
    features = pd.DataFrame(X, columns=names.features)
    labels = pd.Series(np.asarray(names.classes, dtype=object)[y], name=names.label)
    return features, labels


def run_gate(
    name: str, section: dict[str, Any], X: np.ndarray, y: np.ndarray, names: TableNames
) -> Detection:
    """Run the user's gate configured as ``validate.<name>`` on one training split."""
    features, labels = training_table(X, y, names)
    if SCHEMA in section:
        return schema_gate(name, section, features, labels)
    return function_gate(name, section, features, labels)


def function_gate(
    name: str, section: dict[str, Any], features: pd.DataFrame, labels: pd.Series
) -> Detection:
    """``f(X, y, **params)`` for the function ``section["detector"]`` names, checked."""
    field = f"validate.{name}.{FUNCTION}"
    reference = section[FUNCTION]
    function = import_reference(reference, field)
    params = code_kwargs(section, FUNCTION)
    found = call_user_code(function, field, reference, features, labels, **params)
    return as_detection(found, len(labels), field, reference)


def as_detection(found: Any, n: int, field: str, reference: str) -> Detection:
    """A gate's answer, flags or ``(scores, flags)``, as a Detection of ``n`` rows.

    Anything else is a PoisonlabError naming ``field``: flags that are not
    booleans, scores that are not finite numbers, or not one of each per row.
    """
    contract = "return one boolean flag per row, or (scores, flags)"
    scored = isinstance(found, tuple)  # flags alone are a decision, not a ranking to calibrate
    if isinstance(found, tuple):
        if len(found) != 2:
            raise PoisonlabError(f"{field}: {reference} returned {len(found)} values; {contract}")
        scores, flags = (in_row_order(part, n, field, reference) for part in found)
    else:
        flags = in_row_order(found, n, field, reference)
        scores = flags.astype(np.float64) if flags.dtype == bool else flags
    if flags.shape != (n,) or scores.shape != (n,):
        shapes = flags.shape if scores.shape == flags.shape else (scores.shape, flags.shape)
        raise PoisonlabError(
            f"{field}: {reference} returned shape {shapes} for {n} rows; {contract}"
        )
    if flags.dtype != bool:
        raise PoisonlabError(f"{field}: {reference} returned {flags.dtype} flags; {contract}")
    if not np.issubdtype(scores.dtype, np.number) or not np.isfinite(scores).all():
        raise PoisonlabError(
            f"{field}: {reference} returned scores that are not all finite numbers; {contract}"
        )
    return Detection(scores.astype(np.float64), flags, scored=scored)


def in_row_order(values: Any, n: int, field: str, reference: str) -> np.ndarray:
    """A gate's per-row values as an array in the table's row order.

    A pandas Series is put in order by its index, which must hold the rows'
    labels (0..n-1, as in the X the gate was given): a Series built class by
    class (``pd.concat`` over groups) is in another order, and read by position
    its flags would land on other rows.
    """
    if not isinstance(values, pd.Series) or values.index.equals(pd.RangeIndex(n)):
        return np.asarray(values)
    if values.index.sort_values().equals(pd.RangeIndex(n)):
        return values.sort_index().to_numpy()
    raise PoisonlabError(
        f"{field}: {reference} returned a Series whose index is not the rows of X "
        "(0..n-1); return it indexed like X, or a numpy array in X's row order"
    )


def load_schema(name: str, section: dict[str, Any]) -> Any:
    """The pandera ``DataFrameSchema`` that ``section["schema"]`` names (a
    ``DataFrameModel`` is turned into its schema)."""
    import pandera.pandas as pandera

    field = f"validate.{name}.{SCHEMA}"
    reference = section[SCHEMA]
    schema = import_reference(reference, field)
    if isinstance(schema, type) and issubclass(schema, pandera.DataFrameModel):
        schema = schema.to_schema()
    if not isinstance(schema, pandera.DataFrameSchema):
        raise PoisonlabError(
            f"config: {field} = {reference!r} is a {type(schema).__name__}, not a pandera "
            "schema; name a pandera.pandas.DataFrameSchema or DataFrameModel"
        )
    return schema


def schema_gate(
    name: str, section: dict[str, Any], features: pd.DataFrame, labels: pd.Series
) -> Detection:
    """Validate the training table lazily; count the failed checks of every row.

    A failure that belongs to no row (a column missing, a wrong type) means the
    schema does not describe this table: a PoisonlabError naming the field.
    """
    from pandera.errors import SchemaErrors

    field = f"validate.{name}.{SCHEMA}"
    schema = load_schema(name, section)
    table = features.assign(**{labels.name: labels.to_numpy()})
    n = len(table)
    try:
        schema.validate(table, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
    except Exception as error:  # the user's schema: any error, reported as one line
        raise PoisonlabError(
            f"{field}: {section[SCHEMA]} raised {one_line(error)}; fix the schema"
        ) from error
    else:
        return Detection(np.zeros(n), np.zeros(n, dtype=bool), scored=False)
    # A type is the same on every split (features float, the label text), so a type
    # check pandera reports row by row is about the table too: it would flag every row.
    typed = cases["check"].astype(str).str.startswith(("dtype(", "coerce_dtype("))
    whole = cases[cases["index"].isna() | typed]
    if len(whole):
        first = whole.iloc[0]
        column = first["column"]
        if isinstance(column, str) and column in table.columns:
            found = f"column {column!r} is {table[column].dtype}, checked for {first['check']}"
        else:
            found = f"{first['check']} {first['failure_case']!r}"
        raise PoisonlabError(
            f"{field}: {section[SCHEMA]} fails on the table as a whole ({found}), not on "
            f"rows; it must describe the columns {', '.join(map(str, table.columns))} "
            f"({_described(table)})"
        )
    counts = cases["index"].astype(np.int64).value_counts()
    scores = np.zeros(n)
    scores[counts.index.to_numpy()] = counts.to_numpy()
    # The schema's rules are the user's own thresholds: kept, not calibrated.
    return Detection(scores, scores > 0, scored=False)


def _described(table: pd.DataFrame) -> str:
    """What a schema must describe, in words, for the error of one that does not."""
    if all(pd.api.types.is_float_dtype(table[c]) for c in table.columns[:-1]):
        return "features as floats, the label as in the table"
    return "the table's own columns and dtypes, with the label column"


def check_gate(name: str, section: dict[str, Any]) -> None:
    """What can be checked without data: the reference imports and is the right kind,
    and a schema section has no other keys."""
    field = f"validate.{name}"
    if SCHEMA in section:
        extra = sorted(set(section) - {SCHEMA, INPUT_KEY})
        if extra:
            raise PoisonlabError(
                f"config: {field}.{extra[0]} is not a key a schema gate takes; it takes only "
                "schema (and input)"
            )
        section_input(section, field)
        load_schema(name, section)
        return
    section_input(section, field)
    reference = section[FUNCTION]
    function = import_reference(reference, f"{field}.{FUNCTION}")
    if not callable(function):
        raise PoisonlabError(
            f"config: {field}.{FUNCTION} = {reference!r} is a {type(function).__name__}, not a "
            "function; name one called as f(X, y, **params)"
        )
