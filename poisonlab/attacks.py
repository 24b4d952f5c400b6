"""Poisoning attacks on a training split.

Every attack takes the clean training rows and a poison level and returns the
poisoned rows with the ground-truth mask of the rows it changed or added. The
mask is for scoring only: detectors never see it. The test split never reaches
an attack.

Rows are chosen from one permutation drawn from ``rng``, so with the same
generator a higher level poisons a superset of a lower level's rows: levels of
one trial compare paired. Anything an attack fits or draws that does not depend
on the level (a surrogate model, a trigger) is the same at every level.

Parameters that name a class or a feature accept a name or a 0-based index;
``apply_attack`` resolves them against the dataset before the attack runs.

scikit-learn is imported only by the attacks that fit or score a model, so a
poison task running the others starts without it (about 2 s less per task).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonlab.config import _fail
from poisonlab.errors import PoisonlabError

# At most this many folds for the cross-validated surrogate of label_flip_targeted.
_CV_FOLDS = 5


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
    training rows changed".
    """

    poison: Callable[..., Poisoned]
    defaults: dict[str, Any]
    check: Callable[[str, dict[str, Any]], None] | None = None
    class_params: tuple[str, ...] = ()
    feature_params: tuple[str, ...] = ()
    level_note: str = ""


def n_poisoned(level: float, n_rows: int) -> int:
    """round(level x n_rows), halves rounded up."""
    return int(np.floor(level * n_rows + 0.5))


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def stamp_trigger(X: np.ndarray, features: Sequence[int], values: Sequence[float]) -> np.ndarray:
    """A copy of ``X`` with each of ``features`` set to its trigger value."""
    stamped = np.array(X, dtype=np.float64, copy=True)
    stamped[:, list(features)] = np.asarray(values, dtype=np.float64)
    return stamped


def surrogate_proba(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    C: float = 1.0,
    cv_seed: int | None = None,
) -> np.ndarray:
    """Class probabilities (n x n_classes) from a standardized logistic regression.

    With ``cv_seed`` the probabilities are cross-validated (each row scored by a
    model that did not see it; stratified folds, at most 5); otherwise in-sample.
    Classes absent from ``y`` get probability 0. With a single class present,
    every row gets probability 1 for its own label.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from poisonlab.models import make_model

    present, counts = np.unique(y, return_counts=True)
    proba = np.zeros((len(y), n_classes))
    if len(present) < 2:
        proba[np.arange(len(y)), y] = 1.0
        return proba
    model = make_model("logistic_regression", {"C": C, "max_iter": 1000}, random_state=0)
    folds = min(_CV_FOLDS, int(counts.min()))
    if cv_seed is not None and folds >= 2:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cv_seed)
        proba[:, present] = cross_val_predict(model, X, y, cv=splitter, method="predict_proba")
    else:
        proba[:, present] = model.fit(X, y).predict_proba(X)
    return proba


# --- the attacks -----------------------------------------------------------------------


def label_flip(
    X: np.ndarray, y: np.ndarray, level: float, *, rng: np.random.Generator, n_classes: int
) -> Poisoned:
    """Give round(level x n) rows, chosen uniformly, a label drawn uniformly from the others."""
    n = len(y)
    order = rng.permutation(n)
    shifts = rng.integers(1, n_classes, size=n)
    k = n_poisoned(level, n)
    rows = order[:k]
    y_poisoned = y.copy()
    y_poisoned[rows] = (y[rows] + shifts[:k]) % n_classes
    return Poisoned(X.copy(), y_poisoned, _mask(n, rows))


def feature_noise(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    magnitude: float = 3.0,
) -> Poisoned:
    """Replace the features of round(level x n) rows with out-of-distribution values.

    Each value lies beyond the feature's observed training range, above or below
    it at random, by between 0.5 and ``magnitude`` times the range.
    """
    n = len(y)
    order_rng, value_rng = rng.spawn(2)
    k = n_poisoned(level, n)
    rows = order_rng.permutation(n)[:k]
    low, high = X.min(axis=0), X.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    draws = value_rng.uniform(size=(k, X.shape[1], 2))
    above = draws[..., 0] < 0.5
    distance = span * (0.5 + (magnitude - 0.5) * draws[..., 1])
    X_poisoned = X.copy()
    X_poisoned[rows] = np.where(above, high + distance, low - distance)
    return Poisoned(X_poisoned, y.copy(), _mask(n, rows))


def most_confused_pair(
    proba: np.ndarray, y: np.ndarray, source: int | None = None, target: int | None = None
) -> tuple[int, int]:
    """The (source, target) classes with the highest mean probability of target on source rows.

    ``proba`` should be cross-validated. A given ``source`` or ``target`` is kept
    and only the other is chosen. Ties go to the lower class index.
    """
    n_classes = proba.shape[1]
    confusion = np.full((n_classes, n_classes), -np.inf)
    for c in np.unique(y):
        confusion[c] = proba[y == c].mean(axis=0)
    np.fill_diagonal(confusion, -np.inf)
    if source is not None:
        confusion[np.arange(n_classes) != source] = -np.inf
    if target is not None:
        confusion[:, np.arange(n_classes) != target] = -np.inf
    if not np.isfinite(confusion).any():
        # The given class has no training rows: any other class will do.
        if source is not None:
            return source, target if target is not None else (source + 1) % n_classes
        return (target + 1) % n_classes, target  # type: ignore[operator]
    s, t = np.unravel_index(int(np.argmax(confusion)), confusion.shape)
    return int(s), int(t)


def label_flip_targeted(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    source_class: int | None = None,
    target_class: int | None = None,
) -> Poisoned:
    """Relabel round(level x n_source) rows of the source class, chosen uniformly, as the target.

    The level is the fraction of the *source class's* training rows. A class
    left unset is chosen from the training split alone: the pair a clean,
    cross-validated logistic regression confuses most (``most_confused_pair``).
    """
    order_rng, cv_rng = rng.spawn(2)
    n = len(y)
    source, target = source_class, target_class
    if source is None or target is None:
        cv_seed = int(cv_rng.integers(0, 2**31 - 1))
        proba = surrogate_proba(X, y, n_classes, cv_seed=cv_seed)
        source, target = most_confused_pair(proba, y, source, target)
    order = order_rng.permutation(n)
    candidates = order[y[order] == source]
    rows = candidates[: n_poisoned(level, len(candidates))]
    y_poisoned = y.copy()
    y_poisoned[rows] = target
    info = {"source_class": int(source), "target_class": int(target)}
    return Poisoned(X.copy(), y_poisoned, _mask(n, rows), info)


def label_flip_margin(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    C: float = 1.0,
) -> Poisoned:
    """Flip the round(level x n) labels a surrogate is surest of, each to its likeliest wrong class.

    The surrogate (standardized logistic regression, inverse regularization
    ``C``) is fitted once on the clean training split. Rows it classifies
    correctly come first, by decreasing probability of their true class; then
    the misclassified ones, likewise. Ties are broken by a random permutation.
    """
    n = len(y)
    proba = surrogate_proba(X, y, n_classes, C=C)
    own = proba[np.arange(n), y]
    correct = proba.argmax(axis=1) == y
    tiebreak = rng.permutation(n)
    # np.lexsort sorts by the last key first.
    ranking = np.lexsort((tiebreak, -own, ~correct))
    rows = ranking[: n_poisoned(level, n)]
    wrong = proba.copy()
    wrong[np.arange(n), y] = -np.inf
    y_poisoned = y.copy()
    y_poisoned[rows] = wrong[rows].argmax(axis=1)
    return Poisoned(X.copy(), y_poisoned, _mask(n, rows))


def feature_noise_inrange(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    sampling: str = "uniform",
) -> Poisoned:
    """Replace the features of round(level x n) rows with values inside the observed range.

    ``uniform``: each value uniform between the feature's training minimum and
    maximum. ``marginal``: each value copied from a random training row's value
    of that feature, so every feature's distribution is kept. Labels unchanged.
    """
    n, d = X.shape
    order_rng, value_rng = rng.spawn(2)
    rows = order_rng.permutation(n)[: n_poisoned(level, n)]
    # Drawn for every position of the permutation, so a lower level's rows get
    # the same values at a higher level.
    if sampling == "marginal":
        values = X[value_rng.integers(0, n, size=(n, d)), np.arange(d)]
    else:
        values = value_rng.uniform(X.min(axis=0), X.max(axis=0), size=(n, d))
    X_poisoned = X.copy()
    X_poisoned[rows] = values[: len(rows)]
    return Poisoned(X_poisoned, y.copy(), _mask(n, rows))


def injection(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    jitter: float = 0.05,
) -> Poisoned:
    """Append round(level x n) new rows: jittered copies of real rows with a wrong label.

    Each copies a distinct training row's features plus Gaussian noise of
    ``jitter`` x the feature's standard deviation, clipped to the observed
    range, and carries a label drawn uniformly from the other classes. The
    original rows are untouched; the mask marks the appended ones.
    """
    n, d = X.shape
    order = rng.permutation(n)
    shifts = rng.integers(1, n_classes, size=n)
    noise = rng.standard_normal(size=(n, d))
    k = n_poisoned(level, n)
    sources = order[:k]
    new_X = X[sources] + noise[:k] * jitter * X.std(axis=0)
    new_X = np.clip(new_X, X.min(axis=0), X.max(axis=0))
    new_y = (y[sources] + shifts[:k]) % n_classes
    mask = np.concatenate([np.zeros(n, dtype=bool), np.ones(k, dtype=bool)])
    info = {"n_added": k}
    return Poisoned(np.vstack([X, new_X]), np.concatenate([y, new_y]), mask, info)


def least_informative_features(X: np.ndarray, y: np.ndarray, count: int) -> list[int]:
    """The ``count`` features with the lowest ANOVA F score for the label (ties: lower index).

    A trigger on features the clean model hardly uses leaves clean accuracy alone.
    """
    from sklearn.feature_selection import f_classif

    if len(np.unique(y)) < 2:
        return list(range(min(count, X.shape[1])))
    with np.errstate(divide="ignore", invalid="ignore"):
        scores, _ = f_classif(X, y)
    # A constant feature scores NaN: it carries no information at all.
    scores = np.nan_to_num(scores, nan=-1.0, posinf=np.inf)
    return sorted(int(i) for i in np.argsort(scores, kind="stable")[:count])


def backdoor(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    target_class: int | None = None,
    features: list[int] | None = None,
    n_features: int = 2,
    quantile: float = 0.05,
    values: list[float] | None = None,
) -> Poisoned:
    """Stamp a trigger on round(level x n) rows of other classes and relabel them as the target.

    The trigger sets ``features`` (default: the ``n_features`` least
    class-informative ones) to ``values`` (default: each feature's ``quantile``
    on the training split: rare, yet inside the observed range). The target
    class defaults to the first class. Rows are chosen uniformly among those
    not already of the target class. The trigger goes into ``info`` so that
    evaluation can measure the attack success rate.
    """
    n = len(y)
    target = 0 if target_class is None else target_class
    chosen = features if features is not None else least_informative_features(X, y, n_features)
    if values is None:
        trigger = [float(np.quantile(X[:, f], quantile)) for f in chosen]
    elif len(values) == len(chosen):
        trigger = [float(v) for v in values]
    else:
        raise PoisonlabError(
            f"config: poison.backdoor.values has {len(values)} values for {len(chosen)} trigger "
            "features; give one value per feature"
        )
    order = rng.permutation(n)
    candidates = order[y[order] != target]
    rows = candidates[: n_poisoned(level, n)]
    X_poisoned = X.copy()
    X_poisoned[rows] = stamp_trigger(X[rows], chosen, trigger)
    y_poisoned = y.copy()
    y_poisoned[rows] = target
    info = {"trigger_features": [int(f) for f in chosen], "trigger_values": trigger}
    info["target_class"] = int(target)
    return Poisoned(X_poisoned, y_poisoned, _mask(n, rows), info)


# --- parameter checks (config time, before any job) -------------------------------------


def _check_number(
    field: str, value: Any, low: float, high: float | None = None, *, open_low: bool = False
) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (high is None or value <= high)
    if not ok:
        bracket = "(" if open_low else "["
        where = f"{bracket}{low}, {high}]" if high is not None else f"{bracket}{low}, inf)"
        raise _fail(field, f"= {value!r} is outside {where}", f"give a number in {where}")


def _check_column_ref(field: str, value: Any, what: str) -> None:
    """A class or feature: a non-empty name or an index >= 0 (None: chosen automatically)."""
    if value is None:
        return
    if isinstance(value, str) and value:
        return
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return
    raise _fail(field, f"= {value!r} is not a {what}", f"give a {what} name or a 0-based index")


def _check_magnitude(attack: str, params: dict[str, Any]) -> None:
    _check_number(f"poison.{attack}.magnitude", params["magnitude"], 0.5)


def _check_targeted(attack: str, params: dict[str, Any]) -> None:
    for key in ("source_class", "target_class"):
        _check_column_ref(f"poison.{attack}.{key}", params[key], "class")
    if params["source_class"] is not None and params["source_class"] == params["target_class"]:
        raise _fail(
            f"poison.{attack}.target_class",
            f"= {params['target_class']!r} equals source_class",
            "flip to a different class",
        )


def _check_margin(attack: str, params: dict[str, Any]) -> None:
    _check_number(f"poison.{attack}.C", params["C"], 0.0, open_low=True)


def _check_sampling(attack: str, params: dict[str, Any]) -> None:
    if params["sampling"] not in ("uniform", "marginal"):
        raise _fail(
            f"poison.{attack}.sampling",
            f"= {params['sampling']!r} is unknown",
            "choose from: uniform, marginal",
        )


def _check_jitter(attack: str, params: dict[str, Any]) -> None:
    _check_number(f"poison.{attack}.jitter", params["jitter"], 0.0)


def _check_backdoor(attack: str, params: dict[str, Any]) -> None:
    prefix = f"poison.{attack}"
    _check_column_ref(f"{prefix}.target_class", params["target_class"], "class")
    n_features = params["n_features"]
    if not isinstance(n_features, int) or isinstance(n_features, bool) or n_features < 1:
        raise _fail(f"{prefix}.n_features", f"= {n_features!r} is below 1", "give 1 or more")
    _check_number(f"{prefix}.quantile", params["quantile"], 0.0, 1.0)
    features = params["features"]
    if features is not None:
        if not isinstance(features, list) or not features:
            raise _fail(
                f"{prefix}.features",
                f"= {features!r} is not a list of features",
                "write e.g. [sepal width (cm)] or [1, 3], or null to choose automatically",
            )
        for i, feature in enumerate(features):
            _check_column_ref(f"{prefix}.features[{i}]", feature, "feature")
        if len(set(features)) != len(features):
            raise _fail(f"{prefix}.features", f"= {features} names one twice", "list each once")
    values = params["values"]
    if values is not None:
        wanted = len(features) if features is not None else n_features
        if not isinstance(values, list) or len(values) != wanted:
            raise _fail(
                f"{prefix}.values",
                f"= {values!r} is not a list of {wanted} numbers (one per trigger feature)",
                "give one value per feature, or null for each feature's quantile",
            )
        for i, value in enumerate(values):
            _check_number(f"{prefix}.values[{i}]", value, -math.inf)


ATTACKS: dict[str, Attack] = {
    "label_flip": Attack(label_flip, {}),
    "feature_noise": Attack(feature_noise, {"magnitude": 3.0}, _check_magnitude),
    "label_flip_targeted": Attack(
        label_flip_targeted,
        {"source_class": None, "target_class": None},
        _check_targeted,
        class_params=("source_class", "target_class"),
        level_note="level = fraction of the source class's training rows flipped to the target",
    ),
    "label_flip_margin": Attack(label_flip_margin, {"C": 1.0}, _check_margin),
    "feature_noise_inrange": Attack(
        feature_noise_inrange, {"sampling": "uniform"}, _check_sampling
    ),
    "injection": Attack(
        injection,
        {"jitter": 0.05},
        _check_jitter,
        level_note="level = rows added, as a fraction of the training rows (none changed)",
    ),
    "backdoor": Attack(
        backdoor,
        {"target_class": None, "features": None, "n_features": 2, "quantile": 0.05, "values": None},
        _check_backdoor,
        class_params=("target_class",),
        feature_params=("features",),
        level_note="level = fraction of training rows, taken from classes other than the target",
    ),
}


def check_attack_params(name: str, params: dict[str, Any]) -> None:
    """Check an attack's config parameters; raise a PoisonlabError naming the bad one."""
    check = ATTACKS[name].check
    if check is not None:
        check(name, params)


def _resolve(field: str, value: Any, names: Sequence[str] | None, what: str) -> int:
    """A name or index of a class or feature as an index into ``names``."""
    if isinstance(value, str):
        if names is not None and value in names:
            return list(names).index(value)
        known = ", ".join(names) if names is not None else "none known"
        raise PoisonlabError(
            f"config: {field} = {value!r} is not a {what} of the dataset; choose from: {known}"
        )
    if names is not None and value >= len(names):
        raise PoisonlabError(
            f"config: {field} = {value} is out of range; the dataset has {len(names)} {what}s "
            f"(0 to {len(names) - 1}): {', '.join(names)}"
        )
    return int(value)


def resolve_params(
    name: str,
    params: dict[str, Any],
    *,
    class_names: Sequence[str] | None,
    feature_names: Sequence[str] | None,
) -> dict[str, Any]:
    """An attack's parameters with class and feature names turned into indices."""
    spec = ATTACKS[name]
    resolved = dict(params)
    for key in spec.class_params:
        if resolved[key] is not None:
            resolved[key] = _resolve(f"poison.{name}.{key}", resolved[key], class_names, "class")
    for key in spec.feature_params:
        if resolved[key] is not None:
            resolved[key] = [
                _resolve(f"poison.{name}.{key}[{i}]", v, feature_names, "feature")
                for i, v in enumerate(resolved[key])
            ]
            if len(set(resolved[key])) != len(resolved[key]):
                raise PoisonlabError(
                    f"config: poison.{name}.{key} = {params[key]} names one feature twice; "
                    "list each once"
                )
    if len(spec.class_params) == 2:
        first, second = (resolved[key] for key in spec.class_params)
        if first is not None and first == second:
            raise PoisonlabError(
                f"config: poison.{name}.{spec.class_params[1]} names the same class as "
                f"{spec.class_params[0]}; flip to a different class"
            )
    return resolved


def dataset_attack_params(
    config: dict[str, Any], class_names: Sequence[str], feature_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Every configured attack's parameters, class and feature names resolved to indices.

    Raises a PoisonlabError naming the parameter if a name or index does not fit
    the dataset: call it as soon as the dataset is known, before poisoning.
    """
    return {
        name: resolve_params(
            name, config["poison"][name], class_names=class_names, feature_names=feature_names
        )
        for name in config["poison"]["attacks"]
    }


def apply_attack(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    params: dict[str, Any],
    class_names: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
) -> Poisoned:
    """Run the attack called ``name`` with its config parameters.

    Class and feature parameters may be names when ``class_names`` and
    ``feature_names`` are given, otherwise indices only.
    """
    resolved = resolve_params(name, params, class_names=class_names, feature_names=feature_names)
    return ATTACKS[name].poison(X, y, level, rng=rng, n_classes=n_classes, **resolved)
