"""A user's own training pipeline and validation gates, as a team would keep them in its
repository: what the tests (and the README's worked example) point poisonlab at through
PYTHONPATH. Nothing here imports poisonlab."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.pipeline import make_pipeline as chain
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler


def make_pipeline(C: float = 1.0, degree: int = 2) -> Pipeline:
    """The team's model: scaled features, their pairwise products, a logistic regression."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("interactions", PolynomialFeatures(degree=degree, include_bias=False)),
            ("classify", LogisticRegression(C=C, max_iter=2000)),
        ]
    )


# The same model as an instance: named in a config, it is cloned and given the section's keys.
IRIS_MODEL = make_pipeline()

CREDIT_NUMBERS = ["Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount"]
CREDIT_TEXT = ["Home", "Marital", "Records", "Job"]


def credit_pipeline(C: float = 1.0) -> Pipeline:
    """A credit team's model, selecting columns by name as they do on their warehouse export:
    numbers imputed and scaled, text categories one-hot encoded, classes weighted."""
    columns = ColumnTransformer(
        [
            ("numbers", chain(SimpleImputer(strategy="median"), StandardScaler()), CREDIT_NUMBERS),
            ("text", OneHotEncoder(handle_unknown="ignore"), CREDIT_TEXT),
        ]
    )
    classify = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
    return Pipeline([("columns", columns), ("classify", classify)])


# The team's data contract for Iris: each measurement within a plausible range (a little
# wider than any flower in the data), and a known species.
IRIS_SCHEMA = pa.DataFrameSchema(
    {
        "sepal length (cm)": pa.Column(float, pa.Check.in_range(4.0, 8.5)),
        "sepal width (cm)": pa.Column(float, pa.Check.in_range(1.5, 5.0)),
        "petal length (cm)": pa.Column(float, pa.Check.in_range(0.5, 7.5)),
        "petal width (cm)": pa.Column(float, pa.Check.in_range(0.0, 3.0)),
        "target": pa.Column(str, pa.Check.isin(["setosa", "versicolor", "virginica"])),
    }
)


def far_from_class(X: pd.DataFrame, y: pd.Series, threshold: float = 4.0):
    """A gate function: how far each row lies from its class's median, in robust units.

    Returns (scores, flags): the largest per-feature distance from the median of the
    row's own class, in median absolute deviations, and whether it exceeds ``threshold``.
    """
    scores = np.zeros(len(X))
    for label in y.unique():
        rows = (y == label).to_numpy()
        values = X.to_numpy()[rows]
        median = np.median(values, axis=0)
        spread = np.median(np.abs(values - median), axis=0)
        spread[spread == 0] = 1.0
        scores[rows] = (np.abs(values - median) / spread).max(axis=1)
    return scores, scores > threshold


# --- broken on purpose: what the tests expect poisonlab to refuse ---------------------


def make_regressor():
    """Not a classifier: a model that predicts numbers."""
    from sklearn.linear_model import LinearRegression

    return LinearRegression()


def wrong_shape(X: pd.DataFrame, y: pd.Series):
    """A gate that forgets a row."""
    return np.zeros(len(X) - 1, dtype=bool)


def fails_on_large_tables(X: pd.DataFrame, y: pd.Series):
    """A gate that passes the check on a few rows, then fails on a real training split."""
    if len(X) > 50:
        raise ValueError("this gate cannot handle more than 50 rows")
    return np.zeros(len(X), dtype=bool)


def fails_on_uneven_classes(X: pd.DataFrame, y: pd.Series):
    """A gate that checks a split with as many rows of every class, and raises on another
    (flipped labels leave the classes uneven)."""
    if y.value_counts().nunique() > 1:
        raise ZeroDivisionError("the classes are uneven")
    return np.zeros(len(X), dtype=bool)


# The species as numbers: a type no table here has (features are floats, labels text).
NUMBERED_SPECIES = pa.DataFrameSchema({"target": pa.Column(int, pa.Check.isin([0, 1, 2]))})


class FailsOnUnevenClasses(ClassifierMixin, BaseEstimator):
    """A model that fits a split with as many rows of every class, and raises on another."""

    def fit(self, X, y):
        if len(set(np.bincount(y).tolist())) > 1:
            raise FloatingPointError("the solver diverged")
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])

    def predict_proba(self, X):
        return np.tile(np.eye(len(self.classes_))[0], (len(X), 1))


def scaled_knn(n_neighbors: int = 5) -> Pipeline:
    """A team's nearest-neighbour model: scaled features, uniform votes."""
    from sklearn.neighbors import KNeighborsClassifier

    return chain(StandardScaler(), KNeighborsClassifier(n_neighbors=n_neighbors))
