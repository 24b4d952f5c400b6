"""Experiment configuration: defaults, YAML loading, ``--set`` overrides, validation.

A config is a plain dict (JSON-serialisable, so it can be a pipeline parameter).
``validate_config`` fills in every default and checks every value, raising a
PoisonlabError that names the field and the fix. Components call it again on
the config they receive, so a hand-edited pipeline parameter is checked too.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from poisonlab.errors import PoisonlabError

DEFAULTS: dict[str, Any] = {
    "dataset": {
        "source": "sklearn:iris",
        "label_column": None,
        "test_size": 0.2,
        "impute": None,
        "encode": None,
        # Columns left out before anything else (row identifiers, leaks); never the label.
        "drop_columns": [],
        # Which rows each trial tests on (poisonlab.splits): random (stratified), or whole
        # groups of a column held out, or the latest rows by a time column.
        "split": {"by": "random", "column": None, "feature": False},
    },
    "poison": {"levels": [0.0, 0.05, 0.10, 0.50], "attacks": ["label_flip", "feature_noise"]},
    "validate": {
        "detectors": ["knn", "zscore"],
        # Calibrated gates (poisonlab.detectors.calibration): every detector with scores
        # flags the rows scoring above what flags this share of the trial's clean
        # training split; null keeps each detector's own threshold.
        "fpr": 0.05,
        # The validation gate (poisonlab.gate): detector null means the first listed.
        "gate": {"detector": None, "max_flag_rate": 0.1, "max_class_shift": 0.1},
    },
    "train": {"models": ["logistic_regression", "decision_tree", "random_forest"]},
    "trials": 10,
    "seed": 42,
    # breakdown point: the level where mean accuracy falls this far under level 0
    # metric: the headline metric (findings, breakdown, heatmap, printed table, MLflow);
    # auto: balanced_accuracy when the smallest class holds under 20% of rows, else accuracy
    "report": {"breakdown_drop": 0.10, "metric": "auto"},
    # quality versus quantity (off by default: it trains many more models)
    "quantity": {
        "enabled": False,
        "source": "synthetic:rows=2000,features=5,classes=3,informative=5",
        "sizes": [25, 50, 100, 200, 400, 800],
        "reference": 100,
        "attack": "label_flip",
        "trials": 5,
    },
    "mlflow": {
        "tracking_uri": "sqlite:///mlflow.db",
        "experiment": "data-poisoning",
        # Secret Manager version holding a token for the mirror task on Vertex (a name, not
        # the token), e.g. projects/P/secrets/mlflow-token/versions/latest.
        "token_secret": None,
        # One representative model per child run (about 1 s each; re-mirrors skip them).
        "log_models": True,
    },
    "vertex": {
        "project": None,
        "region": "us-central1",
        "pipeline_root": None,
        "service_account": None,
        "image": None,
        "experiment": None,
        # Checked by pipelines.vertex.check_vertex before a job is built.
        "network": None,
        "labels": None,
        "enable_caching": None,
        "display_name": None,
        "job_id": None,
        # Machines per step and how many units run at once (poisonlab.resources, .units).
        "resources": None,
        "parallelism": None,
    },
    # How the work is split into tasks (poisonlab.units): one per level, or per level and
    # attack, optionally per chunk of trials_per_task trials.
    "pipeline": {"fan_out": "level", "trials_per_task": None},
}

# How ``dataset.impute`` fills missing feature values and ``dataset.encode`` turns
# text feature columns into numbers; null (the default) rejects such columns.
IMPUTE_METHODS = ("mean", "median", "most_frequent", "drop_rows")
ENCODE_METHODS = ("onehot", "ordinal")
# What ``report.metric`` may name (``poisonlab.metrics.headline_metric`` resolves auto).
REPORT_METRICS = ("auto", "accuracy", "balanced_accuracy", "f1_macro", "roc_auc")

# Sections whose extra keys name a registered attack, detector or model and hold
# its parameters, e.g. ``poison.feature_noise: {magnitude: 5}``.
_PARAMETER_SECTIONS = {"poison": "attack", "validate": "detector", "train": "model"}


def _registry(kind: str) -> dict[str, dict[str, Any]]:
    """Default parameters of every registered attack, detector or model, by name."""
    # Imported here: those modules import scikit-learn, which config users may not need.
    if kind == "attack":
        from poisonlab.attacks import ATTACKS

        return {name: spec.defaults for name, spec in ATTACKS.items()}
    if kind == "detector":
        from poisonlab.detectors import DETECTORS

        return {name: spec.defaults for name, spec in DETECTORS.items()}
    from poisonlab.models import MODELS

    return {name: spec.defaults for name, spec in MODELS.items()}


def _did_you_mean(word: str, choices: list[str], otherwise: str = "") -> str:
    """The closest choice, else the list of choices and ``otherwise`` (another way out)."""
    close = difflib.get_close_matches(word, choices, n=1)
    return (
        f'did you mean "{close[0]}"?' if close else f"choose from: {', '.join(choices)}{otherwise}"
    )


def _fail(field: str, problem: str, fix: str) -> PoisonlabError:
    return PoisonlabError(f"config: {field} {problem}; {fix}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_type(field: str, value: Any, default: Any, allow_none: bool = False) -> None:
    """Check a leaf value against the type of its default."""
    if default is None or (value is None and allow_none):
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        wanted = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        wanted = "a whole number"
    elif isinstance(default, float):
        ok = _is_number(value) and math.isfinite(value)
        wanted = "a number"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        wanted = "a string"
    elif isinstance(default, list):
        ok = isinstance(value, list)
        wanted = "a list, e.g. [a, b]"
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
        wanted = "a mapping"
    else:
        return
    if not ok:
        raise _fail(field, f"= {value!r} has the wrong type", f"give {wanted}")


def _merge(defaults: dict[str, Any], given: Any, path: str) -> dict[str, Any]:
    """Defaults overlaid with ``given``; an unknown key is an error with a hint.

    In the poison, validate and train sections a key may also name a registered
    attack, detector or model; its value holds that one's parameters.
    """
    section = path.rstrip(".")
    if not isinstance(given, dict):
        raise _fail(section or "config", f"= {given!r} is not a mapping", "write key: value lines")
    registered = _registry(_PARAMETER_SECTIONS[section]) if section in _PARAMETER_SECTIONS else {}
    own = _own_sections(section, given, {*defaults, *registered})
    for key in given:
        if not isinstance(key, str) or (
            key not in defaults and key not in registered and key not in own
        ):
            own_hint = _OWN_HINT.get(section, "").replace("NAME", str(key))
            hint = _did_you_mean(str(key), sorted({*defaults, *registered}), own_hint)
            raise _fail(f"{path}{key}", "is not a known key", hint)
    merged: dict[str, Any] = {}
    for key, default in defaults.items():
        if isinstance(default, dict):
            merged[key] = _merge(default, given.get(key, {}), f"{path}{key}.")
        elif key not in given:
            merged[key] = copy.deepcopy(default)
        else:
            _check_type(f"{path}{key}", given[key], default, allow_none=f"{path}{key}" in _NULLABLE)
            merged[key] = given[key]
    for name, parameters in registered.items():
        accepted = _estimator_params(name) if section == "train" else ()
        merged[name] = _merge_parameters(parameters, given.get(name), f"{path}{name}", accepted)
    merged.update(own)
    return merged


# Keys whose default is a number but which null switches off.
_NULLABLE = {"validate.fpr"}


# How to name the user's own model or gate, for the error on an unknown name.
_OWN_HINT = {
    "poison": " (a gate-aware attack: a section NAME: {base: <attack>, evade: [<gate>], "
    "rounds: 5})",
    "train": ' (a model of your own: a section NAME: {estimator: "module:attribute"})',
    "validate": ' (a gate of your own: a section NAME: {detector: "module:function"} '
    'or {schema: "module:schema"})',
}


def _own_sections(
    section: str, given: dict[str, Any], known: set[str]
) -> dict[str, dict[str, Any]]:
    """The sections of ``train`` or ``validate`` that name the user's own model or gate
    (recognised by their key, e.g. ``estimator``), copied as given: their other keys are
    the user code's keyword arguments, checked when it is imported."""
    if section not in _OWN_HINT:
        return {}
    from poisonlab.attacks.adaptive import attack_kind
    from poisonlab.detectors import detector_kind
    from poisonlab.models import model_kind

    kind = {"train": model_kind, "validate": detector_kind, "poison": attack_kind}[section]
    return {
        key: copy.deepcopy(value)
        for key, value in given.items()
        if isinstance(key, str) and key not in known and kind(key, value) is not None
    }


def _estimator_params(name: str) -> tuple[str, ...]:
    """Every parameter a built-in model's scikit-learn estimator takes (``get_params``),
    but ``random_state``, which every trial sets from the seed."""
    from poisonlab.models import estimator_params

    return estimator_params(name)


def _merge_parameters(
    defaults: dict[str, Any], given: Any, field: str, accepted: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Parameters of one attack, detector or model: known names, default types.

    ``accepted`` names the other parameters it takes (a built-in model's estimator's):
    their values are checked by the estimator (``models.check_model_params``).
    """
    if given is None:
        return copy.deepcopy(defaults)
    if not isinstance(given, dict):
        raise _fail(field, f"= {given!r} is not a mapping", "write its parameters as key: value")
    merged = copy.deepcopy(defaults)
    for key, value in given.items():
        if key in accepted:
            merged[key] = value
            continue
        if key == "random_state" and accepted:
            raise _fail(
                f"{field}.{key}", "is set for every trial from seed", "drop it, or change seed"
            )
        if key not in defaults:
            known = sorted({*defaults, *accepted})
            hint = _did_you_mean(str(key), known) if known else "it takes none"
            raise _fail(f"{field}.{key}", "is not a parameter it takes", hint)
        # None is allowed: several estimator parameters use it (max_depth: null).
        _check_type(f"{field}.{key}", value, defaults[key], allow_none=True)
        merged[key] = value
    return merged


def _named_sections(merged: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The sections of a merged ``train`` or ``validate`` a name may list: the built-ins'
    and the user's own."""
    return {key: value for key, value in merged.items() if key not in defaults}


def _check_names(
    field: str, names: Any, known: dict[str, Any], allow_empty: bool, own_hint: str = ""
) -> None:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(field, f"= {names!r} is not a list of names", "write e.g. [a, b]")
    if not names and not allow_empty:
        raise _fail(field, "is empty", f"choose from: {', '.join(sorted(known))}")
    for i, name in enumerate(names):
        if name not in known:
            hint = _did_you_mean(name, sorted(known), own_hint.replace("NAME", name))
            raise _fail(f"{field}[{i}]", f'"{name}" is unknown', hint)
    if len(set(names)) != len(names):
        raise _fail(field, f"= {names} names one twice", "list each once")
    for i, name in enumerate(names):
        # Names become MLflow metric keys (accuracy_<attack>_<model>_level0.1), which MLflow
        # refuses with other characters: at the mirror, after the whole run.
        if not _NAME.fullmatch(name):
            raise _fail(
                f"{field}[{i}]",
                f'"{name}" holds characters MLflow refuses in metric names',
                "name it with letters, digits, '_', '-', '.' and spaces only",
            )


# What MLflow takes in a metric or param key, less '/' and ':' (names also name files).
_NAME = re.compile(r"[\w.\- ]+")


def _check_levels(levels: list[Any]) -> None:
    field = "poison.levels"
    if not levels:
        raise _fail(field, "is empty", "give at least one level, e.g. [0.0, 0.1]")
    for i, level in enumerate(levels):
        if not _is_number(level) or not 0.0 <= level < 1.0:
            raise _fail(
                f"{field}[{i}]", f"= {level!r} is outside [0, 1)", "use a fraction such as 0.1"
            )
    if len(set(levels)) != len(levels):
        raise _fail(field, f"= {levels} repeats a level", "list each level once")


def _check_gate(validate: dict[str, Any]) -> None:
    fpr = validate["fpr"]
    if fpr is not None:
        if not 0.0 < fpr < 1.0:
            raise _fail(
                "validate.fpr",
                f"= {fpr} is outside (0, 1)",
                "use e.g. 0.05, or null to keep each detector's own threshold",
            )
        validate["fpr"] = float(fpr)
    gate = validate["gate"]
    detector = gate["detector"]
    if detector is not None and detector not in validate["detectors"]:
        listed = ", ".join(validate["detectors"]) or "none"
        raise _fail(
            "validate.gate.detector",
            f"= {detector!r} is not in validate.detectors ({listed})",
            "name a listed detector, or null for the first",
        )
    for key in ("max_flag_rate", "max_class_shift"):
        value = gate[key]
        if not 0.0 <= value <= 1.0:
            raise _fail(f"validate.gate.{key}", f"= {value} is outside [0, 1]", "use e.g. 0.1")
        gate[key] = float(value)


def _check_report(report: dict[str, Any]) -> None:
    drop = report["breakdown_drop"]
    if not 0.0 < drop < 1.0:
        raise _fail("report.breakdown_drop", f"= {drop} is outside (0, 1)", "use e.g. 0.10")
    report["breakdown_drop"] = float(drop)
    if report["metric"] not in REPORT_METRICS:
        raise _fail(
            "report.metric",
            f"= {report['metric']!r} is not an option",
            _did_you_mean(str(report["metric"]), list(REPORT_METRICS)),
        )


def _check_quantity(quantity: dict[str, Any], test_size: float) -> None:
    sizes = quantity["sizes"]
    if not sizes or not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
        raise _fail("quantity.sizes", f"= {sizes!r} is not a list of row counts", "e.g. [50, 100]")
    if sizes != sorted(set(sizes)) or sizes[0] < 10:
        raise _fail(
            "quantity.sizes", f"= {sizes} is not increasing from at least 10", "e.g. [50, 100, 200]"
        )
    if quantity["reference"] not in sizes:
        raise _fail(
            "quantity.reference", f"= {quantity['reference']} is not in quantity.sizes", "pick one"
        )
    attacks = _registry("attack")
    if quantity["attack"] not in attacks:
        raise _fail(
            "quantity.attack",
            f'"{quantity["attack"]}" is unknown',
            _did_you_mean(quantity["attack"], sorted(attacks)),
        )
    if quantity["trials"] < 1:
        raise _fail("quantity.trials", f"= {quantity['trials']} is below 1", "use at least 1")
    if not quantity["source"]:
        raise _fail("quantity.source", "is empty", "give a synthetic: table or a dataset source")
    if quantity["source"].startswith("synthetic:"):
        from poisonlab.synthetic import parse_synthetic

        try:
            rows = parse_synthetic(quantity["source"])["rows"]
        except PoisonlabError as error:
            raise PoisonlabError(
                str(error).replace("dataset.source", "config: quantity.source", 1)
            ) from None

        n_train = rows - math.ceil(test_size * rows)
        if sizes[-1] > n_train:
            raise _fail(
                "quantity.sizes",
                f"goes up to {sizes[-1]} but {rows} synthetic rows leave {n_train} for training",
                "use smaller sizes or more rows in quantity.source",
            )


def _check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
    """``value`` is null or one of ``choices``."""
    if value is not None and value not in choices:
        hint = _did_you_mean(str(value), list(choices))
        raise _fail(field, f"= {value!r} is not an option", f"{hint} (or null to reject)")


def _check_drop_columns(columns: list[Any]) -> None:
    """Column names, each once (checked against the file's columns when it is read)."""
    for i, name in enumerate(columns):
        if not isinstance(name, str) or not name:
            raise _fail(
                f"dataset.drop_columns[{i}]",
                f"= {name!r} is not a column name",
                'quote it, e.g. "id"',
            )
    if len(set(columns)) != len(columns):
        raise _fail("dataset.drop_columns", f"= {columns} names one twice", "list each once")


def redact_uri(uri: str) -> str:
    """``uri`` with any ``user:password@`` replaced by ``***@``, safe to print."""
    parts = urlsplit(uri)
    if parts.username is None:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[-1]))


# Stores MLflow tracks to: a server, SQLite, another database (``postgresql+psycopg://``).
_TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str, field: str = "mlflow.tracking_uri") -> str:
    """Refuse a tracking URI with ``user:password@`` (the config travels in the pipeline
    spec), and one MLflow would refuse only at the mirror, after the whole run: a file
    store (a path or ``file:``, refused by MLflow 3 unless ``MLFLOW_ALLOW_FILE_STORE``), a
    SQLite URI without its three slashes, a server without a host, another scheme."""
    parts = urlsplit(uri)
    if parts.username is not None:
        raise PoisonlabError(
            f"{field}: {redact_uri(uri)} carries credentials; drop them from the URI and set "
            "MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) "
            "in the environment"
        )
    scheme = parts.scheme.lower().split("+")[0]
    if uri in ("databricks", "databricks-uc", "uc"):  # MLflow's names for those services
        return uri
    usable = "use sqlite:///mlflow.db, or a server: http://host:5000"
    if scheme in ("", "file"):
        if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1"):
            return uri
        raise PoisonlabError(
            f"{field}: {uri!r} is a file store, which MLflow 3 no longer writes to (maintenance "
            f"mode); {usable} (or set MLFLOW_ALLOW_FILE_STORE=true)"
        )
    if scheme == "sqlite" and not uri.lower().split(":", 1)[1].startswith("///"):
        raise PoisonlabError(
            f"{field}: {uri!r} is not a SQLite URI MLflow reads; write sqlite:///mlflow.db "
            "(relative) or sqlite:////absolute/path/mlflow.db"
        )
    if scheme in ("http", "https") and not parts.hostname:
        raise PoisonlabError(f"{field}: {uri!r} names no host; write e.g. http://host:5000")
    if scheme not in _TRACKING_SCHEMES and scheme not in ("databricks-uc", "uc"):
        raise PoisonlabError(
            f"{field}: {uri!r} has scheme {parts.scheme!r}, which MLflow cannot track to; "
            f"{usable}, or a database (postgresql://, mysql://, mssql://)"
        )
    return uri


# A certified model's section (poisonlab.certify): train.<name>: {aggregate: dpa, ...}.
AGGREGATES = ("dpa", "finite_aggregation")
_CERTIFIED_KEYS = ("aggregate", "base", "partitions", "spread", "base_params")
_DEFAULT_SPREAD = {"dpa": 1, "finite_aggregation": 4}


def check_certified(name: str, section: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    """A certified model's section in checked form: every key filled in, every value valid.

    ``train`` is the checked train section: the base model's parameters default to it.
    """
    field = f"train.{name}"
    models = _registry("model")
    if name in models:
        raise _fail(field, "is a built-in model's name", "give the certified model its own name")
    for key in section:
        if key not in _CERTIFIED_KEYS:
            raise _fail(
                f"{field}.{key}", "is not a known key", _did_you_mean(key, [*_CERTIFIED_KEYS])
            )
    aggregate = section["aggregate"]
    if aggregate not in AGGREGATES:
        raise _fail(
            f"{field}.aggregate", f"= {aggregate!r} is unknown", "choose dpa or finite_aggregation"
        )
    from poisonlab.models import USER, model_kind

    own = sorted(key for key, value in train.items() if model_kind(key, value) == USER)
    base = section.get("base")
    if base not in models and base not in own:
        known = sorted([*models, *own])
        hint = _did_you_mean(str(base), known) if base else "name one, e.g. decision_tree"
        raise _fail(f"{field}.base", f"= {base!r} is not a model", hint)
    partitions = section.get("partitions", 20)
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 2:
        raise _fail(
            f"{field}.partitions", f"= {partitions!r} is below 2", "give 2 or more, e.g. 20"
        )
    spread = section.get("spread")
    spread = _DEFAULT_SPREAD[aggregate] if spread is None else spread
    if not isinstance(spread, int) or isinstance(spread, bool) or spread < 1:
        raise _fail(f"{field}.spread", f"= {spread!r} is below 1", "give 1 or more, e.g. 4")
    if aggregate == "dpa" and spread != 1:
        raise _fail(f"{field}.spread", f"= {spread} is for finite_aggregation", "drop it for dpa")
    given = section.get("base_params")
    if given is not None and base in own:
        raise _fail(
            f"{field}.base_params",
            f"is for a built-in base, and {base} is your own model",
            f"give its arguments in its own section train.{base}",
        )
    params = (
        copy.deepcopy(train[base])
        if given is None
        else _merge_parameters(models[base], given, f"{field}.base_params", _estimator_params(base))
    )
    return {
        "aggregate": aggregate,
        "base": base,
        "partitions": partitions,
        "spread": spread,
        "base_params": params,
    }


def expand_level_grid(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with a ``poison.levels`` grid ``{start, stop, num}`` written out as its list.

    num evenly spaced levels from start to stop, both included, rounded to 10 decimals
    (so 0.15 is 0.15, not 0.15000000000000002).
    """
    poison = raw.get("poison")
    levels = poison.get("levels") if isinstance(poison, dict) else None
    if not isinstance(levels, dict):
        return raw
    field = "poison.levels"
    for key in levels:
        if key not in ("start", "stop", "num"):
            raise _fail(f"{field}.{key}", "is not a known key", "a grid takes start, stop and num")
    for key in ("start", "stop", "num"):
        if key not in levels:
            raise _fail(field, f"has no {key}", "write e.g. {start: 0.0, stop: 0.5, num: 11}")
    start, stop, num = levels["start"], levels["stop"], levels["num"]
    for key, value in (("start", start), ("stop", stop)):
        if not _is_number(value) or not 0.0 <= value < 1.0:
            raise _fail(f"{field}.{key}", f"= {value!r} is outside [0, 1)", "use a fraction")
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise _fail(f"{field}.num", f"= {num!r} is below 1", "give the number of levels, e.g. 11")
    if stop < start or (num > 1 and stop == start):
        raise _fail(f"{field}.stop", f"= {stop} is not above start ({start})", "swap them")
    step = (stop - start) / (num - 1) if num > 1 else 0.0
    grid = [round(start + i * step, 10) for i in range(num)]
    return {**raw, "poison": {**poison, "levels": grid}}


def validate_config(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Return a complete, checked config: every default filled in, every value valid."""
    config = _merge(DEFAULTS, expand_level_grid(raw or {}), "")
    from poisonlab.models import CERTIFIED, model_kind

    certified = [name for name, s in config["train"].items() if model_kind(name, s) == CERTIFIED]
    for name in certified:
        config["train"][name] = check_certified(name, config["train"][name], config["train"])

    _check_levels(config["poison"]["levels"])
    config["poison"]["levels"] = [float(level) for level in config["poison"]["levels"]]
    _check_names(
        "poison.attacks",
        config["poison"]["attacks"],
        {**_registry("attack"), **_named_sections(config["poison"], DEFAULTS["poison"])},
        False,
        _OWN_HINT["poison"],
    )
    _check_names(
        "validate.detectors",
        config["validate"]["detectors"],
        _named_sections(config["validate"], DEFAULTS["validate"]),
        True,
        _OWN_HINT["validate"],
    )
    _check_names(
        "train.models",
        config["train"]["models"],
        _named_sections(config["train"], DEFAULTS["train"]),
        False,
        _OWN_HINT["train"],
    )

    _check_gate(config["validate"])

    test_size = config["dataset"]["test_size"]
    if not 0.0 < test_size < 1.0:
        raise _fail("dataset.test_size", f"= {test_size} is outside (0, 1)", "use e.g. 0.2")
    config["dataset"]["test_size"] = float(test_size)
    _check_choice("dataset.impute", config["dataset"]["impute"], IMPUTE_METHODS)
    _check_choice("dataset.encode", config["dataset"]["encode"], ENCODE_METHODS)
    if not isinstance(config["dataset"]["label_column"], str | None):
        raise _fail(
            "dataset.label_column",
            f"= {config['dataset']['label_column']!r} is not a column name",
            'quote it, e.g. "species"',
        )
    _check_drop_columns(config["dataset"]["drop_columns"])
    from poisonlab.splits import check_split_config

    check_split_config(config["dataset"]["split"])
    if not isinstance(config["dataset"]["source"], str):
        raise _fail(
            "dataset.source", f"= {config['dataset']['source']!r} is not a string", "quote it"
        )
    if not config["dataset"]["source"]:
        raise _fail("dataset.source", "is empty", "give sklearn:iris, a CSV/Parquet path or gs://")
    if config["trials"] < 1:
        raise _fail("trials", f"= {config['trials']} is below 1", "run at least 1 trial")
    if config["seed"] < 0:
        raise _fail("seed", f"= {config['seed']} is negative", "use a whole number >= 0")
    check_tracking_uri(config["mlflow"]["tracking_uri"])
    secret = config["mlflow"]["token_secret"]
    if secret is not None and not re.fullmatch(
        r"projects/[^/]+/secrets/[^/]+/versions/[^/]+", secret
    ):
        raise _fail(
            "mlflow.token_secret",
            f"= {secret!r} is not a Secret Manager version name",
            "give projects/<project>/secrets/<name>/versions/latest (the name, never the token)",
        )

    _check_report(config["report"])
    from poisonlab.resources import check_resources
    from poisonlab.units import check_pipeline

    check_pipeline(config)
    config["vertex"]["resources"] = check_resources(config["vertex"]["resources"])
    _check_quantity(config["quantity"], config["dataset"]["test_size"])

    from poisonlab.attacks import check_attack_params
    from poisonlab.attacks.adaptive import attack_kind, check_adaptive
    from poisonlab.detectors import check_detector_params, check_gate
    from poisonlab.models import check_model_params

    for name, section in config["poison"].items():  # gate-aware attacks, listed or not
        if attack_kind(name, section) is not None:
            config["poison"][name] = check_adaptive(name, section, config)
    for name in config["poison"]["attacks"]:
        if attack_kind(name, config["poison"][name]) is None:
            check_attack_params(name, config["poison"][name])
    for name in config["validate"]["detectors"]:
        if name not in _registry("detector"):
            check_gate(name, config["validate"][name])  # the user's: it imports, of its kind
            continue
        problem = check_detector_params(name, config["validate"][name])
        if problem:
            raise PoisonlabError(f"config: validate.{name}.{problem}")

    for name in config["train"]["models"]:
        if name in certified:
            section = config["train"][name]
            check_model_params(section["base"], section["base_params"])
        else:
            check_model_params(name, config["train"][name])
    return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into its key path and its YAML-parsed value."""
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key.strip()):
        raise PoisonlabError(f"--set {text!r} is not key=value; write e.g. --set trials=3")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise PoisonlabError(
            f"--set {key}: {value!r} is not a valid value; quote strings, write lists as [a, b]"
        ) from None
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with every ``key=value`` override applied."""
    result = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for depth, key in enumerate(path[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                field = ".".join(path[: depth + 1])
                raise PoisonlabError(f"--set {text}: {field} is not a mapping; set {field}=... ")
            node = child
        node[path[-1]] = value
    return result


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise PoisonlabError(f"--config {path}: no such file; give the path of a YAML config")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "it is not valid YAML"
        raise PoisonlabError(
            f"--config {path}: malformed YAML{where}: {problem}; fix the syntax there"
        ) from None
    except UnicodeDecodeError:
        raise PoisonlabError(f"--config {path}: not a text file; give a YAML config") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PoisonlabError(f"--config {path}: the top level must be a mapping of keys")
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Read, override and validate a config; with no path, start from the defaults."""
    raw = read_config_file(path) if path else {}
    return validate_config(apply_overrides(raw, overrides or []))


def config_from_json(text: str) -> dict[str, Any]:
    """The validated config from its JSON text (how it travels as a pipeline parameter)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise PoisonlabError(
            f"config: the pipeline parameter is not valid JSON ({error})"
        ) from None
    return validate_config(raw)


def check_complete(config: dict[str, Any], given: dict[str, Any], prefix: str = "") -> None:
    """Raise unless ``given`` already holds every key and value of the checked ``config``.

    The pipeline's tasks after ``load`` read the ``config`` parameter without checking
    it again, so ``load`` makes sure it is complete: what poisonlab itself sends.
    """
    for key, value in config.items():
        field = f"{prefix}{key}"
        if not isinstance(given, dict) or key not in given:
            raise PoisonlabError(
                f"config: the pipeline parameter has no {field}; pass the complete config, "
                "as python submit.py --dry-run prints it"
            )
        if isinstance(value, dict):
            check_complete(value, given[key], f"{field}.")
        elif value != given[key]:
            raise PoisonlabError(
                f"config: the pipeline parameter's {field} = {given[key]!r} is not in checked "
                f"form ({value!r}); pass the complete config, as python submit.py --dry-run "
                "prints it"
            )


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the experiment part of a config (where results go is left out)."""
    # How the work is split into tasks (pipeline) does not change the results either.
    experiment = {k: v for k, v in config.items() if k not in ("mlflow", "vertex", "pipeline")}
    return hashlib.sha256(canonical_json(experiment).encode()).hexdigest()
