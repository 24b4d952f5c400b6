"""The registry of attacks by config name, and how the config's parameters reach them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from poisonlab.attacks.base import Attack, Poisoned
from poisonlab.attacks.feature import (
    backdoor,
    check_backdoor,
    check_jitter,
    check_magnitude,
    check_sampling,
    check_share,
    feature_noise,
    feature_noise_inrange,
    injection,
    missing_values,
)
from poisonlab.attacks.influence import check_greedy, label_flip_greedy
from poisonlab.attacks.label import (
    check_margin,
    check_targeted,
    label_flip,
    label_flip_margin,
    label_flip_targeted,
)
from poisonlab.attacks.minmax import check_minmax, minmax
from poisonlab.attacks.subpopulation import check_subpopulation, subpopulation
from poisonlab.errors import PoisonlabError

ATTACKS: dict[str, Attack] = {
    "label_flip": Attack(label_flip, {}, unit="label_flips"),
    "feature_noise": Attack(feature_noise, {"magnitude": 3.0}, check_magnitude),
    "label_flip_targeted": Attack(
        label_flip_targeted,
        {"source_class": None, "target_class": None},
        check_targeted,
        class_params=("source_class", "target_class"),
        level_note="level = fraction of the source class's training rows flipped to the target",
        unit="label_flips",
    ),
    "label_flip_margin": Attack(label_flip_margin, {"C": 1.0}, check_margin, unit="label_flips"),
    "label_flip_greedy": Attack(
        label_flip_greedy, {"C": 1.0, "batch": 0.02}, check_greedy, unit="label_flips"
    ),
    "subpopulation": Attack(
        subpopulation,
        {"clusters": 8, "min_share": 0.1},
        check_subpopulation,
        level_note="level = fraction of training rows, all relabelled inside one feature cluster",
        unit="label_flips",
    ),
    "feature_noise_inrange": Attack(feature_noise_inrange, {"sampling": "uniform"}, check_sampling),
    "injection": Attack(
        injection,
        {"jitter": 0.05},
        check_jitter,
        level_note="level = rows added, as a fraction of the training rows (none changed)",
        unit="added_or_removed",
    ),
    "backdoor": Attack(
        backdoor,
        {"target_class": None, "features": None, "n_features": 2, "quantile": 0.05, "values": None},
        check_backdoor,
        class_params=("target_class",),
        feature_params=("features",),
        level_note="level = fraction of training rows, taken from classes other than the target",
        encoded_columns=True,
    ),
    "minmax": Attack(
        minmax,
        {"surrogate": "logistic_regression", "batches": 10, "quantile": 0.95, "cluster": 12},
        check_minmax,
        level_note="level = rows added, as a fraction of the training rows (none changed)",
        unit="added_or_removed",
        encoded_columns=True,
    ),
    # Blanks cells of the raw rows (a table's raw view, the pipeline's); the built-ins
    # then need dataset.impute (preflight.numbers_needed).
    "missing_values": Attack(missing_values, {"share": 0.3}, check_share),
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
    the dataset: call it as soon as the dataset is known, before poisoning. A
    gate-aware attack (``attacks.adaptive``) gets its base's parameters resolved,
    its gates' sections and ``validate.fpr``.
    """
    from poisonlab.attacks.adaptive import BASE, adaptive_params

    params = {}
    for name in config["poison"]["attacks"]:
        section = config["poison"][name]
        if name not in ATTACKS:
            base = section[BASE]
            resolved = resolve_params(
                base, config["poison"][base], class_names=class_names, feature_names=feature_names
            )
            params[name] = adaptive_params(name, config, resolved)
            continue
        params[name] = resolve_params(
            name, section, class_names=class_names, feature_names=feature_names
        )
    return params


def attack_spec(name: str, config: dict[str, Any]) -> Attack:
    """The registry entry describing a configured attack: a built-in's, or for a
    gate-aware attack its base's (``attacks.adaptive.adaptive_spec``)."""
    if name in ATTACKS:
        return ATTACKS[name]
    from poisonlab.attacks.adaptive import BASE, adaptive_spec

    return adaptive_spec(ATTACKS[config["poison"][name][BASE]])


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
    label_name: str = "target",
    columns: Any = None,
    decode: Any = None,
    view: Any = None,
) -> Poisoned:
    """Run the attack called ``name`` with its config parameters.

    Class and feature parameters may be names when ``class_names`` and
    ``feature_names`` are given, otherwise indices only. A name that is not a
    built-in is a gate-aware attack, ``params`` from ``dataset_attack_params``.
    ``columns`` (``poisonlab.table.EncodedColumns``: what the encoding of ``X`` is)
    reaches the attacks that ask for it (``Attack.encoded_columns``). ``decode`` (encoded
    rows to the table's raw rows) and ``view`` (its ``TableView``) reach a gate-aware
    attack, whose raw-view user gates judge decoded rows.
    """
    if name not in ATTACKS:
        from poisonlab.attacks.adaptive import gate_aware

        return gate_aware(
            X,
            y,
            level,
            rng=rng,
            n_classes=n_classes,
            feature_names=feature_names,
            class_names=class_names,
            label_name=label_name,
            columns=columns,
            decode=decode,
            view=view,
            **params,
        )
    resolved = resolve_params(name, params, class_names=class_names, feature_names=feature_names)
    if ATTACKS[name].encoded_columns:
        resolved["columns"] = columns
    return ATTACKS[name].poison(X, y, level, rng=rng, n_classes=n_classes, **resolved)
