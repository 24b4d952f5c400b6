"""A polling team's pipeline and contract for the 1988 Chile plebiscite survey
(tests/data/chile.csv: will a respondent vote Y or N?), written on its raw columns."""

from __future__ import annotations

import pandera.pandas as pa
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as chain
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMBERS = ["population", "age", "income", "statusquo"]
TEXT = ["region", "sex", "education"]


def make_pipeline(C: float = 1.0) -> Pipeline:
    """Numbers imputed and scaled, categories one-hot (gaps as the commonest), then a
    logistic regression: the team's model as deployed."""
    columns = ColumnTransformer(
        [
            ("numbers", chain(SimpleImputer(strategy="mean"), StandardScaler()), NUMBERS),
            (
                "text",
                chain(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                TEXT,
            ),
        ]
    )
    return Pipeline([("columns", columns), ("classify", LogisticRegression(C=C, max_iter=1000))])


SCHEMA = pa.DataFrameSchema(
    {
        "region": pa.Column(checks=pa.Check.isin(["C", "M", "N", "S", "SA"])),
        "population": pa.Column(int, pa.Check.in_range(3750, 250000)),
        "sex": pa.Column(checks=pa.Check.isin(["F", "M"])),
        "age": pa.Column(float, pa.Check.in_range(18, 70), nullable=True),
        "education": pa.Column(checks=pa.Check.isin(["P", "PS", "S"]), nullable=True),
        "income": pa.Column(float, pa.Check.in_range(2500, 200000), nullable=True),
        "statusquo": pa.Column(float, pa.Check.in_range(-1.73, 1.72), nullable=True),
        "vote": pa.Column(checks=pa.Check.isin(["Y", "N"])),
    },
    strict=True,
)
