"""What every attack shares: the poisoned set it returns, its registry entry, row counts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonlab.config import _fail


@dataclass(frozen=True)
class Poisoned:
    """A poisoned training set. ``mask[i]`` is True where row i was changed or added.

    ``mask`` is None where it was withheld: read back for a step that must not
    see it (``poisonlab.experiment.read_poisoned``).
    """

    X: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attack:
    """An attack function and the defaults of its parameters (its config section).

    ``check`` validates the parameters at config time (raising a PoisonlabError
    naming ``poison.<attack>.<param>``); ``class_params`` and ``feature_params``
    name the parameters that hold a class or feature (name or index; a list for
    features), resolved to indices by ``apply_attack``. ``level_note`` says in
    one line what the poison level means when it is not "the fraction of
    training rows changed". ``unit`` is what the attack does to each poisoned row, in
    the units of certificates (``poisonlab.certify``): ``label_flips`` (labels
    only), ``modified`` (features, maybe labels) or ``added_or_removed`` (new rows).
    ``encoded_columns``: the attack takes ``columns=`` (``apply_attack``), to keep its
    rows integer-valued, one category per one-hot group, in range.
    """

    poison: Callable[..., Poisoned]
    defaults: dict[str, Any]
    check: Callable[[str, dict[str, Any]], None] | None = None
    class_params: tuple[str, ...] = ()
    feature_params: tuple[str, ...] = ()
    level_note: str = ""
    unit: str = "modified"
    # True: the attack is also given ``columns``, what the encoding it works in is
    # (``poisonlab.table.EncodedColumns``: integer columns, one-hot groups, ranges).
    encoded_columns: bool = False


def n_poisoned(level: float, n_rows: int) -> int:
    """round(level x n_rows), halves rounded up."""
    return int(np.floor(level * n_rows + 0.5))


def row_mask(n: int, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def check_number(
    field: str, value: Any, low: float, high: float | None = None, *, open_low: bool = False
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (high is None or value <= high)
    if not ok:
        bracket = "(" if open_low else "["
        where = f"{bracket}{low}, {high}]" if high is not None else f"{bracket}{low}, inf)"
        raise _fail(field, f"= {value!r} is outside {where}", f"give a number in {where}")


def check_column_ref(field: str, value: Any, what: str) -> None:
    """A class or feature: a non-empty name or an index >= 0 (None: chosen automatically)."""
    if value is None:
        return
    if isinstance(value, str) and value:
        return
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return
    raise _fail(field, f"= {value!r} is not a {what}", f"give a {what} name or a 0-based index")
