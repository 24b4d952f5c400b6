"""User models for the tests of dataset.split and of models that fail when they predict:
as a team would write them. Nothing here imports poisonlab."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

# (latest week fitted on, earliest week predicted) of every predict call, in call order.
WEEKS_SEEN: list[tuple[float, float]] = []


class WeekWatcher(ClassifierMixin, BaseEstimator):
    """A logistic regression that remembers the latest ``column`` value it was fitted on
    and, at every prediction, records the earliest it is asked about (``WEEKS_SEEN``):
    a model in use never meets rows older than its training."""

    def __init__(self, column: str = "week"):
        self.column = column

    def fit(self, X: pd.DataFrame, y):
        self.latest_ = float(X[self.column].max())
        self.model_ = LogisticRegression(max_iter=1000).fit(self._numbers(X), y)
        self.classes_ = self.model_.classes_
        return self

    @staticmethod
    def _numbers(X: pd.DataFrame) -> np.ndarray:
        """The raw rows' number columns (text categories left out), gaps as 0."""
        return X.select_dtypes("number").fillna(0).to_numpy()

    def _watch(self, X: pd.DataFrame) -> np.ndarray:
        WEEKS_SEEN.append((self.latest_, float(X[self.column].min())))
        return self._numbers(X)

    def predict(self, X):
        return self.model_.predict(self._watch(X))

    def predict_proba(self, X):
        return self.model_.predict_proba(self._watch(X))


class Lookup(ClassifierMixin, BaseEstimator):
    """A model that looks each row up among the rows it was fitted on and raises
    ``KeyError`` on a row it never saw: it passes a check that predicts its own
    training rows, and raises on a test split."""

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        self.classes_ = np.unique(y)
        self.table_ = {row.tobytes(): label for row, label in zip(X, y, strict=True)}
        return self

    def predict(self, X):
        rows = np.asarray(X, dtype=float)
        unseen = [i for i, row in enumerate(rows) if row.tobytes() not in self.table_]
        if unseen:
            raise KeyError(f"row {unseen[0]} of {len(rows)} was not among the rows fitted on")
        return np.array([self.table_[row.tobytes()] for row in rows])

    def predict_proba(self, X):
        predicted = self.predict(X)
        return (predicted[:, np.newaxis] == self.classes_).astype(float)
