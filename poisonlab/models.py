"""The classifiers under test, built from their name and config section.

One registry for every kind of model. A name in ``train.models`` is a built-in
(``MODELS``: its section holds hyper-parameters) or names a section whose key
says what it is (``model_kind``): ``estimator: "module:attribute"`` is the
user's own class or factory, called with the section's other keys. Every
kind is built by ``make_model``, the one place a model comes from.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone, is_classifier
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.metaestimators import available_if

from poisonlab.errors import PoisonlabError
from poisonlab.table import Encoding, Schema, TableView
from poisonlab.usercode import (
    call_user_code,
    code_kwargs,
    import_reference,
    one_line,
    section_input,
)


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


@functools.cache
def estimator_params(name: str) -> tuple[str, ...]:
    """The parameters a built-in model takes: every one of its scikit-learn estimator's
    (``get_params``), but ``random_state``, which each trial sets from the seed."""
    return tuple(
        sorted(key for key in MODELS[name].estimator().get_params() if key != "random_state")
    )


def reweighable_models(train: dict[str, Any]) -> tuple[str, ...]:
    """The configured built-in models that take ``class_weight`` and were given none
    (``train``, a checked config's section): those a rare class may be weighed up in."""
    return tuple(
        name
        for name in train["models"]
        if name in MODELS
        and "class_weight" in estimator_params(name)
        and train[name].get("class_weight") is None
    )


BUILTIN = "builtin"
USER = "user"
CERTIFIED = "certified"
# A section that is not a built-in's is recognised by the key that says what it is.
SECTION_KINDS = {"estimator": USER, "aggregate": CERTIFIED}


def model_kind(name: str, section: Any) -> str | None:
    """``builtin``, the kind its section's key names (``SECTION_KINDS``), or None."""
    if name in MODELS:
        return BUILTIN
    if isinstance(section, dict):
        return next((kind for key, kind in SECTION_KINDS.items() if key in section), None)
    return None


def make_model(
    name: str,
    params: dict[str, Any],
    random_state: int,
    columns: list[str] | TableView | None = None,
) -> BaseEstimator:
    """An unfitted estimator for model ``name`` from its config section ``params``.

    Built-ins get their hyper-parameters, and scaled ones a StandardScaler in
    front; a user model is built by ``user_model`` (``columns``, the dataset's
    feature names, are for it); a certified model (its section has ``aggregate``)
    is a ``PartitionAggregation`` around its base model, which is built here in
    turn. Every ``random_state`` is set, so that fits are reproducible.

    With ``columns`` a ``TableView`` (the raw view of a table) the model takes raw
    rows: a built-in or certified model behind a ``TableEncoder`` (the encoded view,
    fitted on the rows it is trained on), a user model as it is (``TableLabels``:
    fitted on the table's own labels), or, with ``input: encoded`` in its section,
    behind a ``TableEncoder`` and ``NamedColumns``.
    """
    if isinstance(columns, TableView):
        return _on_raw_rows(name, params, random_state, columns)
    kind = model_kind(name, params)
    if kind == USER:
        return user_model(name, params, random_state, columns)
    if kind == CERTIFIED:
        from poisonlab.certify.aggregate import aggregate_model

        return aggregate_model(params, random_state, columns)
    spec = MODELS[name]
    estimator = spec.estimator(**params)
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=random_state)
    return make_pipeline(StandardScaler(), estimator) if spec.scaled else estimator


def _on_raw_rows(
    name: str, params: dict[str, Any], random_state: int, view: TableView
) -> BaseEstimator:
    """``make_model`` for a model given the table's raw rows."""
    encoder = ("encode", TableEncoder(view.schema.to_json()))
    names = list(view.schema.feature_names)
    if model_kind(name, params) == USER:
        if section_input(params, f"train.{name}") == "raw":
            return TableLabels(user_model(name, params, random_state), list(view.labels))
        return Pipeline([encoder, ("model", user_model(name, params, random_state, names))])
    model = make_model(name, params, random_state, names)
    steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
    return Pipeline([encoder, *steps])


def takes_raw_rows(estimator: Any) -> bool:
    """Whether a fitted model takes the table's raw rows (``make_model`` with a TableView)."""
    if isinstance(estimator, TableLabels):
        return True
    return isinstance(estimator, Pipeline) and isinstance(estimator.steps[0][1], TableEncoder)


def past_encoder(estimator: Any, X: Any) -> tuple[Any, Any]:
    """A raw-view model's estimator after its ``TableEncoder``, and ``X`` encoded by it
    (for what looks inside a model: certificates); others as they are."""
    if isinstance(estimator, Pipeline) and isinstance(estimator.steps[0][1], TableEncoder):
        X = estimator.steps[0][1].transform(X)
        rest = estimator.steps[1:]
        return (rest[0][1] if len(rest) == 1 else Pipeline(rest)), X
    return estimator, X


def user_model(
    name: str, section: dict[str, Any], random_state: int, columns: list[str] | None = None
) -> BaseEstimator:
    """The user's estimator: ``section["estimator"]`` called with the section's other keys,
    or, where it names an estimator instance, a clone of it with them set.

    Cloned, so every fit starts unfitted even if the factory hands out one shared
    instance; every ``random_state`` (a Pipeline's steps' too) is set. With
    ``columns`` it is the last step of a Pipeline whose first (``NamedColumns``)
    turns the feature array into a DataFrame under those names, as a team's
    pipeline selecting columns by name expects.
    """
    field = f"train.{name}.estimator"
    reference = section["estimator"]
    factory = import_reference(reference, field)
    kwargs = code_kwargs(section, "estimator")
    if isinstance(factory, BaseEstimator):  # an instance: its parameters, then the section's
        estimator = call_user_code(
            clone(factory).set_params, f"config: {field}", reference, **kwargs
        )
    elif callable(factory):
        estimator = call_user_code(factory, f"config: {field}", reference, **kwargs)
    else:
        raise PoisonlabError(
            f"config: {field} = {reference!r} is a {type(factory).__name__}, not a class or "
            "factory, nor an estimator; name one that gives a scikit-learn classifier"
        )
    try:
        estimator = clone(estimator)
    except (TypeError, RuntimeError) as error:
        raise PoisonlabError(
            f"config: {field} = {reference!r} gives a {type(estimator).__name__}, which "
            f"scikit-learn cannot clone ({' '.join(str(error).split())[:200]}); return a "
            "scikit-learn-compatible classifier (get_params, fit, predict)"
        ) from None
    seeded = {key: random_state for key in estimator.get_params() if _is_random_state(key)}
    estimator.set_params(**seeded)
    if columns is None:
        return estimator
    return Pipeline([("columns", NamedColumns(list(columns))), ("model", estimator)])


class NamedColumns(TransformerMixin, BaseEstimator):
    """Feature rows as a pandas DataFrame under the dataset's feature names.

    Every model here is fitted and asked for predictions on float arrays; in front
    of a user's model, this step turns them into the table a team's pipeline
    expects (a ``ColumnTransformer`` selecting columns by name). A DataFrame given
    to it (an MLflow input example) has its columns picked by name.
    """

    def __init__(self, columns: list[str] | None = None):
        self.columns = columns

    def fit(self, X: Any, y: Any = None) -> NamedColumns:
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X[list(self.columns)]
        return pd.DataFrame(np.asarray(X), columns=list(self.columns))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.columns, dtype=object)


class TableEncoder(TransformerMixin, BaseEstimator):
    """A model's first step: raw rows in, the encoded matrix out, fitted on its training rows.

    ``schema`` is a ``Schema.to_json()``: plain data, so skops can store the step.
    An array given to it is read as rows of the raw columns in order.
    """

    def __init__(self, schema: dict[str, Any] | None = None):
        self.schema = schema

    def _rows(self, X: Any) -> pd.DataFrame:
        columns = self.schema["columns"]
        if isinstance(X, pd.DataFrame):
            # Selecting columns copies the frame: only where they differ (a reordered input).
            return X if list(X.columns) == columns else X[columns]
        return pd.DataFrame(np.asarray(X), columns=columns)

    def fit(self, X: Any, y: Any = None) -> TableEncoder:
        encoding = Schema.from_json(self.schema).fit(self._rows(X))
        self.fills_ = list(encoding.fills)
        self.seen_ = dict(encoding.seen)
        return self

    def transform(self, X: Any) -> np.ndarray:
        encoding = Encoding(Schema.from_json(self.schema), self.fills_, self.seen_)
        return encoding.transform(self._rows(X))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(Schema.from_json(self.schema).feature_names, dtype=object)


def _has(method: str):
    return lambda self: hasattr(self.model, method)


class TableLabels(ClassifierMixin, BaseEstimator):
    """A user's model fitted on the table's own labels; class codes outside.

    poisonlab counts classes by code; the team's model is fitted with
    ``fit(X_raw, labels)`` and predicts labels, mapped back to codes here.
    ``classes_`` are the codes of the classes it was fitted on.
    """

    def __init__(self, model: Any = None, labels: list[Any] | None = None):
        self.model = model
        self.labels = labels

    def fit(self, X: Any, y: np.ndarray) -> TableLabels:
        values = np.asarray(self.labels, dtype=object)
        if all(isinstance(v, int) for v in self.labels):
            values = np.asarray(self.labels, dtype=np.int64)
        self.model_ = clone(self.model).fit(X, values[np.asarray(y)])
        codes = {label: code for code, label in enumerate(self.labels)}
        self.classes_ = np.array([codes[_plain(c)] for c in self.model_.classes_], dtype=np.int64)
        return self

    def predict(self, X: Any) -> np.ndarray:
        codes = {label: code for code, label in enumerate(self.labels)}
        predicted = np.asarray(self.model_.predict(X))
        return np.array([codes.get(_plain(v), -1) for v in predicted], dtype=np.int64)

    @available_if(_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        return self.model_.predict_proba(X)

    @available_if(_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        return self.model_.decision_function(X)


def _plain(value: Any) -> Any:
    """A label as a plain Python value (numpy's int64 and str_ as int and str)."""
    return value.item() if isinstance(value, np.generic) else value


def misspelt_keywords(name: str, section: dict[str, Any]) -> list[str]:
    """Warnings for a user model's keys that its class does not name but nearly does.

    A class taking ``**kwargs`` accepts any key: LightGBM passes one it does not
    know to its booster, which ignores it, so ``n_estimator: 20`` leaves 100 trees
    without a word. Only near misses of a named parameter are named here: other
    keys may be the library's own aliases (``min_data_in_leaf``).
    """
    factory = import_reference(section["estimator"], f"train.{name}.estimator")
    cls = type(factory) if isinstance(factory, BaseEstimator) else factory
    if not isinstance(cls, type):  # a factory function: Python checks its keywords
        return []
    parameters = inspect.signature(cls.__init__).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        return []
    named = [p.name for p in parameters if p.name != "self" and p.kind is not p.VAR_KEYWORD]
    warnings = []
    for key in section:
        if key in ("estimator", "input") or key in named:
            continue
        close = difflib.get_close_matches(key, named, n=1, cutoff=0.8)
        if close:
            warnings.append(
                f"train.{name}.{key} is not a parameter of {cls.__name__}, which passes it on "
                f"unchecked; did you mean {close[0]}?"
            )
    return warnings


def _is_random_state(param: str) -> bool:
    return param == "random_state" or param.endswith("__random_state")


def user_model_params(name: str, section: dict[str, Any] | None) -> dict[str, str]:
    """A user model's import path and keyword arguments as MLflow params,
    ``{"estimator": "mod:f", "estimator.C": "2.0"}``; empty for a built-in, whose
    name says what it is."""
    if model_kind(name, section) != USER:
        return {}
    params = {"estimator": section["estimator"]}
    for key, value in section.items():
        if key not in ("estimator", "input"):
            params[f"estimator.{key}"] = value if isinstance(value, str) else json.dumps(value)
    return params


def fit_model(
    name: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    random_state: int,
    columns: list[str] | None = None,
) -> BaseEstimator:
    """Fit a model; with fewer than two classes left, predict the one there is.

    ``columns``, the dataset's feature names, are what a user's model sees its
    features under (``user_model``).

    The hyper-parameters were checked once, with the config (``check_model_params``),
    so scikit-learn's per-fit parameter validation is skipped: a level fits
    hundreds of small models, where it costs a third of a logistic regression's fit.
    """
    if len(np.unique(y)) < 2:
        return DummyClassifier(strategy="most_frequent").fit(X, y)
    with sklearn_checks(X):
        return make_model(name, params, random_state, columns).fit(X, y)


def sklearn_checks(X: np.ndarray) -> contextlib.AbstractContextManager:
    """scikit-learn's configuration for fitting on, or predicting, ``X`` here.

    Parameter validation is off: the hyper-parameters were checked once, with
    the config (``check_model_params``). The finiteness check is off where ``X``
    is checked here to be finite (``is_finite``): a random forest repeats it for
    each of its trees, an eighth of a small forest's fit. Only checks are
    skipped, so the fitted model and its predictions are the same.
    """
    return sklearn.config_context(skip_parameter_validation=True, assume_finite=is_finite(X))


# Trees compute in float32: a larger float64 value would become infinite there.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_finite(X: np.ndarray) -> bool:
    """Whether every value of ``X`` is a number that stays finite in float32 too."""
    if isinstance(X, pd.DataFrame):  # raw rows: finite where every column is numbers
        if not all(pd.api.types.is_numeric_dtype(t) for t in X.dtypes):
            return False
        X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.number):
        return False
    if X.size == 0:
        return True
    # The extremes, not abs(X): no copy of a large table. NaN compares False.
    return bool(X.min() >= -_FLOAT32_MAX and X.max() <= _FLOAT32_MAX)


@functools.cache
def _thread_pools():
    """The BLAS and OpenMP libraries this process has loaded, found once: finding them
    scans every loaded library (5 to 10 ms), more than a small detector's work. A
    library first loaded later (by a user's code) is not limited."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> contextlib.AbstractContextManager:
    """BLAS (NumPy's and SciPy's OpenBLAS) on one thread, for a level's fits and
    predictions and every detector call; the previous limits come back on exit.

    Each is small, and the pipeline already runs levels side by side, one per
    core: BLAS threads on top only compete for the cores. Measured on 2 busy
    cores, a logistic regression's fit on Iris took 16 to 25 ms on one thread
    against 51 to 250 ms on two, and k-fold detectors spent 10x the CPU time
    waking threads.
    """
    return _thread_pools().limit(limits=1, user_api="blas")


def predict_classes(estimator: BaseEstimator, X: np.ndarray) -> np.ndarray:
    """The estimator's predicted class codes for the rows of ``X``."""
    with sklearn_checks(X):
        return np.asarray(estimator.predict(X))


def class_scores(estimator: BaseEstimator, X: np.ndarray, n_classes: int) -> np.ndarray | None:
    """Per-row scores of every class of the dataset, for ranking metrics (ROC-AUC).

    From ``predict_proba`` where the estimator has it, else ``decision_function``
    (a binary one's single column scores its second class; the first gets its
    negation); None with neither. Columns follow the dataset's class codes; a
    class the estimator never saw gets a constant 0 column (ranks nothing).
    """
    if hasattr(estimator, "predict_proba"):
        with sklearn_checks(X):
            values = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    elif hasattr(estimator, "decision_function"):
        with sklearn_checks(X):
            values = np.asarray(estimator.decision_function(X), dtype=np.float64)
        if values.ndim == 1:
            values = np.column_stack([-values, values])
    else:
        return None
    scores = np.zeros((len(X), n_classes))
    classes = np.asarray(getattr(estimator, "classes_", np.arange(values.shape[1])), dtype=np.int64)
    scores[:, classes] = values
    return scores


# A tiny table every model must fit: three classes, two rows each.
_TINY_X = np.array([[0.0, 0.0], [0.1, 0.2], [1.0, 1.0], [1.1, 0.9], [2.0, 2.1], [2.1, 1.9]])
_TINY_Y = np.array([0, 0, 1, 1, 2, 2])
# Capped for that fit, which still validates them: kNN needs no more neighbours than
# rows, and an ensemble of two is as good a check as one of 100 (whose fit took 0.1 s
# of the checks in submit.py, and again in the load task).
_TINY_CAPS = {
    "knn": ("n_neighbors", 2),
    "random_forest": ("n_estimators", 2),
    "gradient_boosting": ("max_iter", 2),
}


def check_model_params(name: str, params: dict[str, Any]) -> None:
    """Fit on a tiny dataset so that scikit-learn checks every hyper-parameter value now.

    A user model is built and checked to be a classifier here; it is fitted on
    rows of the real dataset by ``check_user_model``, before anything runs.
    """
    if model_kind(name, params) == USER:
        section_input(params, f"train.{name}")
        _check_classifier(name, params, make_model(name, params, random_state=0))
        return
    if isinstance(params.get("class_weight"), dict):
        # Keys would have to be poisonlab's class codes, and JSON turns them into text.
        raise PoisonlabError(
            f"config: train.{name}.class_weight as a mapping of classes is not supported; "
            "give balanced (each class weighed by its rarity)"
        )
    small = {**params}
    if name in _TINY_CAPS:
        key, cap = _TINY_CAPS[name]
        if isinstance(small.get(key), int):
            small[key] = min(small[key], cap)
    try:
        make_model(name, small, random_state=0).fit(_TINY_X, _TINY_Y)
    except (ValueError, TypeError) as error:
        first = str(error).splitlines()[0]
        raise PoisonlabError(
            f"config: train.{name} has an invalid hyper-parameter: {first}"
        ) from None


def _check_classifier(name: str, section: dict[str, Any], estimator: Any) -> None:
    """A classifier: fit and predict, and predict_proba or decision_function for scores."""
    field = f"train.{name}.estimator"
    missing = [method for method in ("fit", "predict") if not hasattr(estimator, method)]
    scores = hasattr(estimator, "predict_proba") or hasattr(estimator, "decision_function")
    if (
        missing
        or not scores
        or (isinstance(estimator, BaseEstimator) and not is_classifier(estimator))
    ):
        raise PoisonlabError(
            f"config: {field} = {section['estimator']!r} gives a {type(estimator).__name__}, "
            "which is not a classifier; return a scikit-learn classifier (fit, predict, and "
            "predict_proba or decision_function), e.g. a Pipeline ending in one"
        )


def check_user_model(
    name: str,
    section: dict[str, Any],
    X: np.ndarray | pd.DataFrame,
    y: np.ndarray,
    columns: list[str] | TableView,
) -> None:
    """Fit a user model on a few rows of the real data and predict them: the right number
    of predictions, each one of the classes it was fitted on. Raises a PoisonlabError
    naming ``train.<name>.estimator`` otherwise.

    scikit-learn checks the model's parameters here (a run skips that check), so a
    bad value is named now. A fit that fails over a column also lists the columns
    the model sees, which ``dataset.encode`` may have renamed.
    """
    field = f"train.{name}.estimator"
    reference = section["estimator"]
    model = make_model(name, section, 0, columns)
    try:
        fitted = call_user_code(model.fit, f"config: {field}", reference, X, y)
    except PoisonlabError as error:
        if "column" not in str(error.__cause__).lower():
            raise
        raw = isinstance(columns, TableView) and section_input(section, f"train.{name}") == "raw"
        if isinstance(columns, TableView):
            columns = columns.schema.columns if raw else columns.feature_names
        shown = ", ".join(columns[:12]) + (f", ... ({len(columns)})" if len(columns) > 12 else "")
        fix = "select among them"
        if raw:
            fix += " (the table's own columns, after dataset.drop_columns)"
        elif any("=" in column for column in columns):  # dataset.encode's one-hot column=value
            fix += (
                ", or set dataset.encode: ordinal to keep each text column under its own "
                "name (as codes 0..k-1)"
            )
        raise PoisonlabError(
            f"config: {field}: {reference} raised {one_line(error.__cause__)}; it is given a "
            f"DataFrame of the columns {shown}: {fix}"
        ) from None
    predicted = np.asarray(call_user_code(fitted.predict, f"config: {field}", reference, X))
    if predicted.shape != y.shape or not np.isin(predicted, y).all():
        raise PoisonlabError(
            f"config: {field} = {reference!r} predicted {predicted.shape} values for "
            f"{len(y)} rows, not one known class per row; return a classifier"
        )
