"""Partition aggregation: a classifier that votes over base models trained on disjoint buckets.

Deep Partition Aggregation (Levine and Feizi, ICLR 2021) trains k base models,
each on the training rows a hash sends to its partition, and predicts by vote.
Finite Aggregation (Wang, Levine and Feizi, ICML 2022) splits the rows into
k x d buckets and trains k x d base models, each on d buckets, so that every
bucket feeds d models; its certificates are at least as large for the same
cost per model. Both certify each prediction from its votes alone
(``poisonlab.certify.certificates``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin

from poisonlab.certify.certificates import (
    UNITS,
    dpa_radius,
    finite_aggregation_radius,
    rows_radius,
    vote_counts,
)
from poisonlab.certify.partition import buckets, content_order, spread
from poisonlab.seeding import derive_seed

_ABSTAIN = -1


class PartitionAggregation(ClassifierMixin, BaseEstimator):
    """A vote over base models, each trained on the rows a feature hash sends to its buckets.

    Parameters
    ----------
    base : name of the base model in ``poisonlab.models`` (built by ``make_model``).
    base_params : the base model's hyper-parameters.
    partitions : k, the number of partitions (DPA) or of bucket groups (finite aggregation).
    spread : d, the buckets each base model trains on; 1 is DPA, more is finite aggregation.
    random_state : the seed; base model i gets a seed derived from it and i alone.
    columns : the dataset's feature names, under which a user's base model sees its rows.

    A bucket holding one class predicts it; an empty one abstains (it votes for
    no class, and the certificates count it as a vote the attacker may take).
    ``predict_proba`` is the share of votes per class.
    """

    def __init__(
        self,
        base: str = "decision_tree",
        base_params: dict[str, Any] | None = None,
        partitions: int = 20,
        spread: int = 1,
        random_state: int = 0,
        columns: list[str] | None = None,
    ):
        self.base = base
        self.base_params = base_params
        self.partitions = partitions
        self.spread = spread
        self.random_state = random_state
        self.columns = columns

    def fit(self, X: np.ndarray, y: np.ndarray) -> PartitionAggregation:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        n_models = self.partitions * self.spread
        self.windows_ = spread(n_models, self.spread)
        bucket = buckets(X, n_models)
        order = content_order(X, codes, bucket)
        bounds = np.searchsorted(bucket[order], np.arange(n_models + 1))
        # Parameters were checked with the config: skip scikit-learn's check in each fit.
        with sklearn.config_context(skip_parameter_validation=True):
            self.estimators_ = [
                self.fit_base(model, *_rows(X, codes, order, bounds, window))
                for model, window in enumerate(self.windows_)
            ]
        return self

    def fit_base(self, model: int, X: np.ndarray, codes: np.ndarray) -> Any:
        """Base model number ``model`` fitted on its rows, given sorted by content.

        A class code where the rows hold one class, -1 (abstain) where they hold none.
        """
        from poisonlab.models import make_model

        present = np.unique(codes)
        if len(present) == 0:
            return _ABSTAIN
        if len(present) == 1:
            return int(present[0])
        seed = derive_seed(self.random_state, "partition", model)
        return make_model(self.base, self.base_params or {}, seed, self.columns).fit(X, codes)

    def base_predictions(self, X: np.ndarray) -> np.ndarray:
        """Each base model's class code per row (rows x models); -1 where it abstains."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty((len(X), len(self.estimators_)), dtype=np.int64)
        with sklearn.config_context(skip_parameter_validation=True):
            for i, estimator in enumerate(self.estimators_):
                if isinstance(estimator, int):
                    out[:, i] = estimator
                else:
                    out[:, i] = estimator.predict(X)
        return out

    def votes(self, X: np.ndarray) -> np.ndarray:
        """Vote counts per class (rows x classes)."""
        return vote_counts(self.base_predictions(X), len(self.classes_))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The share of the votes cast for each class (uniform where every model abstains)."""
        votes = self.votes(X).astype(np.float64)
        cast = votes.sum(axis=1, keepdims=True)
        uniform = np.full_like(votes, 1.0 / votes.shape[1])
        return np.divide(votes, cast, out=uniform, where=cast > 0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The class with the most votes; ties go to the smaller class index."""
        return self.classes_[np.argmax(self.votes(X), axis=1)]

    def certify(self, X: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Predictions and their certified radius in rows, per unit (``certificates.UNITS``)."""
        predictions = self.base_predictions(X)
        votes = vote_counts(predictions, len(self.classes_))
        if self.spread == 1:
            radius = dpa_radius(votes)
        else:
            radius = finite_aggregation_radius(predictions, len(self.classes_), self.windows_)
        predicted = self.classes_[np.argmax(votes, axis=1)]
        return predicted, {unit: rows_radius(radius, unit) for unit in UNITS}


def _rows(
    X: np.ndarray, codes: np.ndarray, order: np.ndarray, bounds: np.ndarray, window: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the buckets in ``window``, bucket by bucket, each sorted by content."""
    rows = np.concatenate([order[bounds[b] : bounds[b + 1]] for b in window])
    return X[rows], codes[rows]


def aggregate_model(
    section: dict[str, Any], random_state: int, columns: list[str] | None = None
) -> PartitionAggregation:
    """The unfitted certified model of a checked ``train.<name>`` section with ``aggregate``
    (``columns``: the feature names a user's base model sees)."""
    return PartitionAggregation(
        base=section["base"],
        base_params=section["base_params"],
        partitions=section["partitions"],
        spread=section["spread"] if section["aggregate"] == "finite_aggregation" else 1,
        random_state=random_state,
        columns=columns,
    )
