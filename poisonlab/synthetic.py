"""Synthetic classification tables for scale work: ``synthetic:rows=N,features=F,classes=C``.

Made with scikit-learn's ``make_classification``; the same source string always
gives the same table (optional ``seed=S``, default 0).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from poisonlab.errors import PoisonlabError

PREFIX = "synthetic:"
_DEFAULTS = {"rows": 1000, "features": 20, "classes": 2, "informative": 0, "seed": 0}


def parse_synthetic(source: str) -> dict[str, int]:
    """``synthetic:rows=1000,features=20`` -> its parameters, defaults filled in."""
    spec = dict(_DEFAULTS)
    body = source.removeprefix(PREFIX)
    for part in filter(None, body.split(",")):
        key, _, value = part.partition("=")
        if key not in spec:
            raise PoisonlabError(
                f"dataset.source: {source}: unknown setting {key!r}; use {', '.join(_DEFAULTS)}"
            )
        try:
            spec[key] = int(value)
        except ValueError:
            raise PoisonlabError(
                f"dataset.source: {source}: {key}={value!r} is not a whole number"
            ) from None
    if spec["rows"] < 10 or spec["features"] < 2 or spec["classes"] < 2:
        raise PoisonlabError(
            f"dataset.source: {source}: needs rows >= 10, features >= 2 and classes >= 2"
        )
    return spec


def synthetic_frame(source: str) -> pd.DataFrame:
    """The table a ``synthetic:`` source names, with feature columns and ``target``."""
    from sklearn.datasets import make_classification  # slow to import; only needed here

    spec = parse_synthetic(source)
    # Half the features by default, but at least what make_classification needs for
    # the classes (2**informative >= 2 x classes) where the table has that many.
    needed = max(2, math.ceil(math.log2(2 * spec["classes"])))
    informative = spec["informative"] or min(spec["features"], max(needed, spec["features"] // 2))
    if 2**informative < 2 * spec["classes"] or informative > spec["features"]:
        raise PoisonlabError(
            f"dataset.source: {source}: too few informative features for {spec['classes']} "
            "classes; add features or set informative="
        )
    X, y = make_classification(
        n_samples=spec["rows"],
        n_features=spec["features"],
        n_informative=informative,
        n_redundant=0,
        n_classes=spec["classes"],
        random_state=spec["seed"],
    )
    frame = pd.DataFrame(X.astype(np.float64), columns=[f"x{j}" for j in range(X.shape[1])])
    frame["target"] = [f"class_{label}" for label in y]
    return frame
