"""A gate a team would put in front of training: does each row look like something the
source can send? Written against the clean export, as a team would; imports no poisonlab."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent.parent / "data"


def could_be_sent(
    X: pd.DataFrame, y: pd.Series, table: str, label: str, drop: list[str] | None = None
) -> np.ndarray:
    """Flag rows the source could not have sent: a column the export does not have (every
    row), a fraction in a whole-number column, a text value the clean export never holds.

    ``table``: the clean export's file name under tests/data; ``label``: its label column;
    ``drop``: its columns the pipeline does not take.
    """
    clean = pd.read_csv(DATA / table).drop(columns=[*(drop or []), label])
    flags = np.zeros(len(X), dtype=bool)
    if set(X.columns) - set(clean.columns):
        return ~flags
    for column in X.columns:
        values, known = X[column], clean[column]
        if pd.api.types.is_integer_dtype(known):
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            flags |= ~np.isnan(numbers) & (numbers != np.round(numbers))
        elif not pd.api.types.is_numeric_dtype(known):
            seen = set(known.dropna().astype(str))
            flags |= (values.notna() & ~values.astype(str).isin(seen)).to_numpy()
    return flags
