"""A credit team's training pipeline and data contract, written for their warehouse export
(tests/data/credit_data.csv): text categories with gaps, integer columns, missing incomes,
the label as text. Nothing here imports poisonlab: it is the team's code as they keep it."""

from __future__ import annotations

import pandera.pandas as pa
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as chain
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMBERS = ["Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"]
TEXT = ["Home", "Marital", "Records", "Job"]


def make_pipeline(C: float = 1.0) -> Pipeline:
    """The team's model on its raw columns: numbers imputed and scaled, text one-hot."""
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


def _whole(low: int, high: int) -> pa.Column:
    return pa.Column(int, pa.Check.in_range(low, high))


def _amount(low: float, high: float) -> pa.Column:
    return pa.Column(float, pa.Check.in_range(low, high), nullable=True)


def _one_of(*values: str, nullable: bool = False) -> pa.Column:
    return pa.Column(checks=pa.Check.isin(list(values)), nullable=nullable)


# The team's contract for a row of the export: categories they know, ranges of the rows
# they have seen, gaps where the export has them.
SCHEMA = pa.DataFrameSchema(
    {
        "Seniority": _whole(0, 41),
        "Home": _one_of("other", "owner", "parents", "priv", "rent", nullable=True),
        "Time": _whole(6, 60),
        "Age": _whole(19, 66),
        "Marital": _one_of("divorced", "married", "separated", "single", "widow", nullable=True),
        "Records": _one_of("no", "yes"),
        "Job": _one_of("fixed", "freelance", "others", "partime", nullable=True),
        "Expenses": _whole(35, 150),
        "Income": _amount(6, 800),
        "Assets": _amount(0, 150000),
        "Debt": _amount(0, 30000),
        "Amount": _whole(150, 3800),
        "Price": _whole(375, 8800),
        "Status": _one_of("good", "bad"),
    },
    strict=True,
)
