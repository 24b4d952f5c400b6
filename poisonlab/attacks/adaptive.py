"""Any attack made gate-aware: an attacker who has read the gate's code.

An attack section ``poison.<name>: {base: <attack>, evade: [<gate>...], rounds: N}``
runs the base attack, then for up to N rounds runs the named gates on the
poisoned split, calibrated as the run calibrates them (``validate.fpr``: the
threshold that flags that share of the same clean training split, which the
attacker, like the defender, can compute), and moves every poisoned row a gate
flags halfway towards a row the gates accept: a clean row of the same (poisoned)
label, drawn at random. Rows no gate flags stay where they are, so the budget,
the rows poisoned, stays the same, and the poison keeps as much of its effect as
getting past the gates allows. This is the adaptive evaluation Carlini and
Wagner ask of detectors ("Adversarial Examples Are Not Easily Detected:
Bypassing Ten Detection Methods", AISec 2017), applied to data poisoning as in
Koh, Steinhardt and Liang, "Stronger data poisoning attacks break data
sanitization defenses", Machine Learning 111, 2022.

A gate in ``evade`` is a built-in detector's name, the name of a gate section of
``validate`` (the user's function or pandera schema), or a ``module:function``
reference called like a user gate. Each gate sees the rows the run's validate step
gives it: built-ins and ``input: encoded`` gates the encoded matrix the attack works
in; a user gate on the raw view (the default) the poisoned matrix decoded back to the
table's raw rows (``decode``), labels as in the table, on the clean split too. An
attack that needs a gate calls the detectors' registry
(``poisonlab.detectors.run_detector``); detectors never call attacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from poisonlab.attacks.base import Attack, Poisoned
from poisonlab.config import _fail
from poisonlab.errors import PoisonlabError

BASE, EVADE, ROUNDS = "base", "evade", "rounds"
ADAPTIVE_KEYS = (BASE, EVADE, ROUNDS)
DEFAULT_ROUNDS = 5


def attack_kind(name: str, section: Any) -> str | None:
    """``adaptive`` for a gate-aware attack's section (it has a ``base`` key), else None."""
    from poisonlab.attacks.registry import ATTACKS

    if name not in ATTACKS and isinstance(section, dict) and BASE in section:
        return "adaptive"
    return None


def gate_section(gate: str, validate: dict[str, Any]) -> dict[str, Any]:
    """The config section a gate in ``evade`` runs with: a built-in's parameters, the
    user's section of that name, or ``{detector: gate}`` for a module:function."""
    from poisonlab.detectors import DETECTORS

    if gate in DETECTORS or isinstance(validate.get(gate), dict):
        return validate[gate]
    return {"detector": gate}


def check_adaptive(name: str, section: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A gate-aware attack's section in checked form (every key filled in), or a
    PoisonlabError naming the field and the fix."""
    from poisonlab.attacks.registry import ATTACKS
    from poisonlab.detectors import DETECTORS, check_gate, detector_kind

    field = f"poison.{name}"
    for key in section:
        if key not in ADAPTIVE_KEYS:
            raise _fail(f"{field}.{key}", "is not a known key", f"use {', '.join(ADAPTIVE_KEYS)}")
    base = section[BASE]
    if base not in ATTACKS:
        raise _fail(
            f"{field}.base",
            f"= {base!r} is not a built-in attack",
            f"choose from: {', '.join(ATTACKS)}",
        )
    evade = section.get(EVADE)
    if not isinstance(evade, list) or not evade or not all(isinstance(g, str) for g in evade):
        raise _fail(
            f"{field}.evade",
            f"= {evade!r} is not a list of gates",
            "write e.g. [zscore], or name a validate section or module:function",
        )
    validate = config["validate"]
    for i, gate in enumerate(evade):
        if gate in DETECTORS or detector_kind(gate, validate.get(gate)) is not None:
            continue
        if ":" in gate:
            check_gate(gate, {"detector": gate})
            continue
        raise _fail(
            f"{field}.evade[{i}]",
            f"= {gate!r} is not a detector",
            f"name a built-in ({', '.join(DETECTORS)}), a validate section of your own, or "
            "module:function",
        )
    rounds = section.get(ROUNDS, DEFAULT_ROUNDS)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise _fail(f"{field}.rounds", f"= {rounds!r} is below 1", "give 1 or more, e.g. 5")
    return {BASE: base, EVADE: list(evade), ROUNDS: rounds}


def adaptive_spec(base: Attack) -> Attack:
    """The registry entry a gate-aware attack is described by: its base's, except that
    moving rows changes features (``modified``) unless the base adds rows."""
    unit = base.unit if base.unit == "added_or_removed" else "modified"
    return replace(base, unit=unit, check=None, class_params=(), feature_params=())


def _gate_flags(
    gates: list[tuple[str, dict[str, Any]]],
    X: np.ndarray,
    y: np.ndarray,
    thresholds: dict[str, float | None],
    *,
    seed: int,
    n_classes: int,
    names: Any,
    raw: Any = None,
) -> np.ndarray:
    """The rows any gate flags, each at its clean-calibrated threshold where it has one.

    ``raw``: ``(decode, raw_names, raw_gates)`` when some gates take the raw rows."""
    from poisonlab.detectors import run_detector

    flagged = np.zeros(len(y), dtype=bool)
    rows = None
    for name, section in gates:
        view, view_names = X, names
        if raw is not None and name in raw[2]:
            rows = raw[0](X) if rows is None else rows  # decoded once for every raw gate
            view, view_names = rows, raw[1]
        found = run_detector(
            name, view, y, seed=seed, n_classes=n_classes, params=section, names=view_names
        )
        threshold = thresholds[name]
        flagged |= found.scores > threshold if threshold is not None else found.flags
    return flagged


def gate_aware(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    base: str,
    base_params: dict[str, Any],
    gates: list[tuple[str, dict[str, Any]]],
    rounds: int = DEFAULT_ROUNDS,
    fpr: float | None = 0.05,
    feature_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    label_name: str = "target",
    columns: Any = None,
    decode: Callable[[np.ndarray], Any] | None = None,
    view: Any = None,
) -> Poisoned:
    """The base attack, then up to ``rounds`` rounds moving the poisoned rows the
    ``gates`` flag halfway towards an accepted clean row of their label (module
    docstring). ``info["evaded"]`` is the share of poisoned rows no gate flags at the
    end; ``info["rounds_run"]`` how many rounds moved rows.

    ``decode`` (encoded rows of this split, clean or poisoned, to the table's raw rows)
    and ``view`` (``poisonlab.table.TableView``) come with a table: user gates that
    take the raw view then judge decoded rows, as in the run's validate step."""
    from poisonlab.attacks.registry import ATTACKS
    from poisonlab.detectors import DETECTORS, TableNames, run_detector
    from poisonlab.detectors.calibration import clean_threshold
    from poisonlab.detectors.user import wants_encoded

    base_rng, move_rng, gate_rng = rng.spawn(3)
    spec = ATTACKS[base]
    extra = {"columns": columns} if spec.encoded_columns else {}
    poisoned = spec.poison(X, y, level, rng=base_rng, n_classes=n_classes, **base_params, **extra)
    mask = poisoned.mask
    if not mask.any():
        return poisoned
    names = None
    if feature_names is not None and class_names is not None:
        names = TableNames(list(feature_names), list(class_names), label_name)
    raw = None
    if decode is not None and names is not None:
        raw_gates = {
            g for g, section in gates if g not in DETECTORS and not wants_encoded(g, section)
        }
        if raw_gates:
            raw_names = replace(names, view=view)  # training_table keeps the raw columns
            raw = (decode, raw_names, raw_gates)
    seed = int(gate_rng.integers(0, 2**31 - 1))
    thresholds: dict[str, float | None] = {}
    clean_rows_raw = decode(X) if raw is not None else None
    for name, section in gates:  # calibrated on the clean split, as the run calibrates
        in_raw = raw is not None and name in raw[2]
        clean = run_detector(
            name,
            clean_rows_raw if in_raw else X,
            y,
            seed=seed,
            n_classes=n_classes,
            params=section,
            names=raw[1] if in_raw else names,
        )
        thresholds[name] = (
            clean_threshold(clean.scores, fpr) if fpr is not None and clean.scored else None
        )
    X_new, y_new = poisoned.X.copy(), poisoned.y
    clean_rows = np.flatnonzero(~mask)
    rounds_run = 0
    flagged = _gate_flags(
        gates, X_new, y_new, thresholds, seed=seed, n_classes=n_classes, names=names, raw=raw
    )
    for _ in range(rounds):
        caught = np.flatnonzero(flagged & mask)
        if len(caught) == 0:
            break
        rounds_run += 1
        accepted = clean_rows[~flagged[clean_rows]]
        for label in np.unique(y_new[caught]):  # vectorized per label: 3000 rows, not a loop
            rows = caught[y_new[caught] == label]
            pool = accepted[y_new[accepted] == label]
            pool = pool if len(pool) else accepted if len(accepted) else clean_rows
            targets = X_new[pool[move_rng.integers(len(pool), size=len(rows))]]
            X_new[rows] = X_new[rows] + 0.5 * (targets - X_new[rows])
        flagged = _gate_flags(
            gates, X_new, y_new, thresholds, seed=seed, n_classes=n_classes, names=names, raw=raw
        )
    info = {
        **poisoned.info,
        "base": base,
        "rounds_run": rounds_run,
        "evaded": float(1.0 - (flagged & mask).sum() / mask.sum()),
    }
    return Poisoned(X_new, y_new.copy(), mask, info)


def adaptive_params(
    name: str,
    config: dict[str, Any],
    base_params: dict[str, Any],
) -> dict[str, Any]:
    """What ``gate_aware`` takes from a checked config besides the data."""
    section = config["poison"][name]
    if not isinstance(section, dict) or BASE not in section:
        raise PoisonlabError(f"config: poison.{name} is not a gate-aware attack's section")
    return {
        "base": section[BASE],
        "base_params": base_params,
        "gates": [(gate, gate_section(gate, config["validate"])) for gate in section[EVADE]],
        "rounds": section[ROUNDS],
        "fpr": config["validate"].get("fpr"),
    }
