"""The classifiers under test, built from their name and config hyper-parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from poisonlab.errors import PoisonlabError


@dataclass(frozen=True)
class ModelSpec:
    """An estimator class, its config defaults, and whether it needs scaled features."""

    estimator: type[BaseEstimator]
    defaults: dict[str, Any]
    scaled: bool


MODELS: dict[str, ModelSpec] = {
    "logistic_regression": ModelSpec(LogisticRegression, {"C": 1.0, "max_iter": 1000}, True),
    "decision_tree": ModelSpec(
        DecisionTreeClassifier, {"max_depth": 3, "min_samples_leaf": 1, "criterion": "gini"}, False
    ),
    "random_forest": ModelSpec(
        RandomForestClassifier,
        {"n_estimators": 50, "max_depth": None, "min_samples_leaf": 1},
        False,
    ),
    "svm": ModelSpec(SVC, {"C": 1.0, "kernel": "rbf", "gamma": "scale"}, True),
    "knn": ModelSpec(KNeighborsClassifier, {"n_neighbors": 5, "weights": "uniform"}, True),
    "gradient_boosting": ModelSpec(
        HistGradientBoostingClassifier,
        {"max_iter": 100, "learning_rate": 0.1, "max_depth": None},
        False,
    ),
}


def make_model(name: str, params: dict[str, Any], random_state: int) -> BaseEstimator:
    """An unfitted estimator; scaled models get a StandardScaler in front."""
    spec = MODELS[name]
    estimator = spec.estimator(**params)
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=random_state)
    return make_pipeline(StandardScaler(), estimator) if spec.scaled else estimator


def fit_model(
    name: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray, random_state: int
) -> BaseEstimator:
    """Fit a model; with fewer than two classes left, predict the one there is.

    The hyper-parameters were checked once, with the config (``check_model_params``),
    so scikit-learn's per-fit parameter validation is skipped: a level fits
    hundreds of small models, where it costs a third of a logistic regression's fit.
    """
    if len(np.unique(y)) < 2:
        return DummyClassifier(strategy="most_frequent").fit(X, y)
    with sklearn.config_context(skip_parameter_validation=True):
        return make_model(name, params, random_state).fit(X, y)


def class_scores(estimator: BaseEstimator, X: np.ndarray, n_classes: int) -> np.ndarray | None:
    """Per-row scores of every class of the dataset, for ranking metrics (ROC-AUC).

    From ``predict_proba`` where the estimator has it, else ``decision_function``
    (a binary one's single column scores its second class; the first gets its
    negation); None with neither. Columns follow the dataset's class codes; a
    class the estimator never saw gets a constant 0 column (ranks nothing).
    """
    if hasattr(estimator, "predict_proba"):
        values = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    elif hasattr(estimator, "decision_function"):
        values = np.asarray(estimator.decision_function(X), dtype=np.float64)
        if values.ndim == 1:
            values = np.column_stack([-values, values])
    else:
        return None
    scores = np.zeros((len(X), n_classes))
    classes = np.asarray(getattr(estimator, "classes_", np.arange(values.shape[1])), dtype=np.int64)
    scores[:, classes] = values
    return scores


def check_model_params(name: str, params: dict[str, Any]) -> None:
    """Fit on a tiny dataset so that scikit-learn checks every hyper-parameter value now."""
    X = np.array([[0.0, 0.0], [0.1, 0.2], [1.0, 1.0], [1.1, 0.9], [2.0, 2.1], [2.1, 1.9]])
    y = np.array([0, 0, 1, 1, 2, 2])
    small = {**params}
    if name == "knn" and isinstance(small.get("n_neighbors"), int):
        small["n_neighbors"] = min(small["n_neighbors"], 2)
    try:
        make_model(name, small, random_state=0).fit(X, y)
    except (ValueError, TypeError) as error:
        first = str(error).splitlines()[0]
        raise PoisonlabError(
            f"config: train.{name} has an invalid hyper-parameter: {first}"
        ) from None
