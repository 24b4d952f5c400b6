"""The user's own code, named in the config by import path: parse, import, say what is wrong.

A config names a model factory, a detector function or a pandera schema of the
user's as ``"module:attribute"`` (entry-point style) or ``"module.attribute"``
(Hydra's ``_target_`` style). Importing it runs that module's code: a config that
names code runs it, so run only configs whose code you trust.

Where it is imported: on the KFP local runner the tasks import what the submitting
environment imports (an installed package, or ``PYTHONPATH``); on Vertex AI and
Kubeflow the image must hold it (``user_modules`` names what it needs).
"""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Any

from poisonlab.errors import PoisonlabError

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

# The keys of a config section that hold a reference to the user's code, by section:
# train.<name>: {estimator: ...}; validate.<name>: {detector: ...} or {schema: ...}.
REFERENCE_KEYS = {"train": ("estimator",), "validate": ("detector", "schema")}


def parse_reference(reference: Any, field: str) -> tuple[str, str]:
    """``"pkg.mod:obj"`` or ``"pkg.mod.obj"`` -> ``("pkg.mod", "obj")``.

    With a colon, what follows it may be a dotted path inside the module
    (``mod:Class.factory``); without one, the last dotted part is the attribute.
    """
    if isinstance(reference, str) and ":" in reference:
        module, _, attribute = reference.partition(":")
    elif isinstance(reference, str):
        module, _, attribute = reference.rpartition(".")
    else:
        module = attribute = ""
    if not (_DOTTED.fullmatch(module) and _DOTTED.fullmatch(attribute)):
        raise PoisonlabError(
            f"config: {field} = {reference!r} is not an import path; "
            'write "module:attribute" (or "module.attribute"), e.g. "my_models:make_pipeline"'
        )
    return module, attribute


def import_reference(reference: Any, field: str) -> Any:
    """The object ``reference`` names, imported; a PoisonlabError naming ``field`` if it
    cannot be: no such module, an error while importing it, or no such attribute."""
    module_name, attribute = parse_reference(reference, field)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or module_name
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise PoisonlabError(
                f"config: {field} = {reference!r}: no module named {missing!r}; install it, "
                "or put the directory holding it on PYTHONPATH"
            ) from None
        raise PoisonlabError(
            f"config: {field} = {reference!r}: importing {module_name} needs module "
            f"{missing!r}, which is not installed; install it"
        ) from None
    except Exception as error:  # the user's module failed while importing: say so, in one line
        raise PoisonlabError(
            f"config: {field} = {reference!r}: importing {module_name} raised "
            f"{one_line(error)}; fix that module"
        ) from None
    found: Any = module
    for depth, part in enumerate(attribute.split(".")):
        if not hasattr(found, part):
            owner = ".".join([module_name, *attribute.split(".")[:depth]])
            public = [name for name in dir(found) if not name.startswith("_")]
            close = difflib.get_close_matches(part, public, n=1)
            hint = f'did you mean "{close[0]}"?' if close else "check the name"
            raise PoisonlabError(
                f"config: {field} = {reference!r}: {owner} has no attribute {part!r}; {hint}"
            )
        found = getattr(found, part)
    return found


def user_references(config: dict[str, Any]) -> dict[str, str]:
    """Every reference to user code in a checked config, by field, in config order:
    ``{"train.mine.estimator": "my_models:make_pipeline", ...}``."""
    listed = {"train": config["train"]["models"], "validate": config["validate"]["detectors"]}
    found = {}
    for section, names in listed.items():
        for name in names:
            params = config[section].get(name) or {}
            for key in REFERENCE_KEYS[section]:
                if key in params:
                    found[f"{section}.{name}.{key}"] = params[key]
            # A certified model around a user model carries that model's section.
            base = params.get("base_params") if section == "train" else None
            if isinstance(base, dict) and "estimator" in base:
                found[f"train.{name}.base_params.estimator"] = base["estimator"]
    return found


def user_modules(config: dict[str, Any]) -> dict[str, list[str]]:
    """The modules a checked config's user code lives in, each with the fields naming it:
    what an image must provide for the pipeline's tasks to import them."""
    modules: dict[str, list[str]] = {}
    for field, reference in user_references(config).items():
        module, _ = parse_reference(reference, field)
        modules.setdefault(module, []).append(field)
    return modules


def call_user_code(function: Any, field: str, reference: str, *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``; whatever it raises becomes one line naming ``field``."""
    try:
        return function(*args, **kwargs)
    except PoisonlabError:
        raise
    except Exception as error:  # the user's code: any error, reported as one line
        raise PoisonlabError(f"{field}: {reference} raised {one_line(error)}; {FIX}") from error


# How a user-code error ends when nothing more is known of why it raised.
FIX = "fix it, or the config's keyword arguments for it"


def raw_rows_fix(error: PoisonlabError, X: Any, field: str) -> PoisonlabError:
    """``error`` (``call_user_code``'s) with its fix naming ``<field>.input: encoded`` when
    the code raised on raw rows that hold text or gaps.

    Code written for numbers (a stock ``LGBMClassifier``, a forest, ``IsolationForest``)
    fails on the table's own columns with a numpy or pandas message ("could not convert
    string to float: 'female'") that says nothing of the view it was given, and "fix it"
    sends a new user to their code when the one-key fix is the encoded view. Any other
    error, or rows of numbers without gaps, keeps its message.
    """
    import pandas as pd

    message = str(error)
    if not isinstance(X, pd.DataFrame) or not message.endswith(FIX):
        return error
    text = [str(c) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    gaps = [str(c) for c in X.columns if X[c].isna().any()]
    if not text and not gaps:
        return error

    def listed(columns: list[str]) -> str:
        return ", ".join(columns[:4]) + (f" (+{len(columns) - 4})" if len(columns) > 4 else "")

    given = " and ".join(
        part
        for part in (text and f"text in {listed(text)}", gaps and f"gaps in {listed(gaps)}")
        if part
    )
    return PoisonlabError(
        f"{message.removesuffix(FIX)}it is given the table's raw rows, with {given}: if it "
        f"needs numbers, set {field}.input: encoded (the matrix the built-ins get, after "
        "dataset.encode and dataset.impute) or put an encoder in front of it in a Pipeline; "
        f"else {FIX}"
    )


def one_line(error: BaseException) -> str:
    """An exception as ``Type: message`` on one line, at most 300 characters of message."""
    message = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# A user section's key choosing the view its code gets: the table's raw rows (the
# default) or the encoded matrix under its feature names (``poisonlab.table``).
INPUT_KEY = "input"
INPUTS = ("raw", "encoded")


def section_input(section: dict[str, Any], field: str) -> str:
    """``raw`` or ``encoded``: the view a user model's or gate's section asks for."""
    value = section.get(INPUT_KEY, "raw")
    if value not in INPUTS:
        raise PoisonlabError(
            f"config: {field}.{INPUT_KEY} = {value!r} is unknown; choose raw (the table's own "
            "columns, the default) or encoded (the matrix the built-ins get)"
        )
    return value


def code_kwargs(section: dict[str, Any], reference_key: str) -> dict[str, Any]:
    """A user section's keyword arguments for its code: every key but the reference and
    ``input``."""
    return {k: v for k, v in section.items() if k not in (reference_key, INPUT_KEY)}
