"""The units of work: which poison level, attacks and trials one pipeline task runs.

Defined once, here, and used by the pipeline (what its loops iterate over and how many
tasks a run makes), by the steps (``poison`` runs a unit's attacks and trials, the
rest follow its file) and by the fan-in (``fan_in.gather`` puts a level's units back
together in one canonical order).

``pipeline.fan_out``:

- ``level`` (the default): one unit per poison level, every attack and trial in it;
  one loop over the levels, as before.
- ``level_attack``: one unit per (level, attack), and with ``pipeline.trials_per_task:
  N`` one per (level, attack, chunk of N trials). The pipeline then nests two loops:
  over levels, and inside each over that level's units; a ``gather`` task per level
  collects its units into the one artifact the report collects per level. So no task
  collects more than max(levels, units per level) artifacts, each checked here to be
  within Vertex's limit of 100.

Every random draw derives from the seed and the trial, attack and level it is for
(``poisonlab.seeding``), never from which units share a task, so a unit's results
are the same whatever the fan-out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from poisonlab.errors import PoisonlabError

FAN_OUTS = ("level", "level_attack")
# Vertex AI fails a task that collects more than this many artifacts (a dsl.Collected).
VERTEX_FAN_IN_LIMIT = 100

# The pipeline's steps (component names) as pipelines/poisoning.py runs them; what
# ``vertex.resources`` may name. ``units`` and ``gather`` run only with level_attack.
STEPS = ("load", "units", "poison", "validate", "train", "evaluate", "gather", "report", "mirror")
UNIT_STEPS = ("poison", "validate", "train", "evaluate")  # once per unit, in a chain
NESTED_STEPS = ("units", "gather")  # once per level, with level_attack only
RUN_STEPS = ("load", "report", "mirror")  # once per run


@dataclass(frozen=True)
class Unit:
    """One task's share of a level: these attacks, these trials (config order)."""

    level: float
    attacks: tuple[str, ...]
    trials: tuple[int, ...]

    def item(self) -> dict[str, Any]:
        """The unit as a loop item (JSON: what a component receives)."""
        return {"level": self.level, "attacks": list(self.attacks), "trials": list(self.trials)}


def nested(config: dict[str, Any]) -> bool:
    """Whether the pipeline nests a loop of units inside the loop of levels."""
    return config["pipeline"]["fan_out"] != "level"


def _trial_chunks(config: dict[str, Any]) -> list[tuple[int, ...]]:
    trials = list(range(config["trials"]))
    size = config["pipeline"]["trials_per_task"] or len(trials)
    return [tuple(trials[i : i + size]) for i in range(0, len(trials), size)]


def level_items(config: dict[str, Any]) -> list[dict[str, Any]]:
    """A level's units without their level: the same for every level (the pipeline's
    ``units`` parameter). One unit of everything with ``fan_out: level``."""
    attacks = config["poison"]["attacks"]
    if not nested(config):
        return [{"attacks": list(attacks), "trials": list(range(config["trials"]))}]
    return [
        {"attacks": [attack], "trials": list(chunk)}
        for attack in attacks
        for chunk in _trial_chunks(config)
    ]


def with_level(level: float, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` (``level_items``) as the units of ``level``: what the ``units`` task returns."""
    return [{"level": level, **item} for item in items]


def units(config: dict[str, Any]) -> list[Unit]:
    """Every unit of a run, level by level."""
    return [
        resolve(config, level, item)
        for level in config["poison"]["levels"]
        for item in level_items(config)
    ]


def resolve(config: dict[str, Any], level: float, item: dict[str, Any] | None) -> Unit:
    """The unit a task was given: ``item`` from the loop, or none (``{}``) for all of
    ``level``. Loop items come back from JSON with trials as floats; config order kept."""
    attacks = config["poison"]["attacks"]
    if not item:
        return Unit(float(level), tuple(attacks), tuple(range(config["trials"])))
    chosen = set(item["attacks"])
    trials = sorted({int(t) for t in item["trials"]})
    unknown = chosen - set(attacks)
    if unknown or not trials or trials[-1] >= config["trials"]:
        raise PoisonlabError(
            f"unit {item} does not fit the config (attacks {attacks}, {config['trials']} trials); "
            "pass the units python submit.py --dry-run prints with the same config"
        )
    return Unit(float(level), tuple(a for a in attacks if a in chosen), tuple(trials))


def first_of_level(config: dict[str, Any], unit: Unit) -> bool:
    """Whether ``unit`` is its level's first: the one that also runs the level's
    once-per-level work (the quality-versus-quantity records)."""
    first = level_items(config)[0]
    return list(unit.attacks) == first["attacks"] and list(unit.trials) == first["trials"]


def order_key(config: dict[str, Any]) -> dict[str, int]:
    """Rank of each attack in config order: the canonical order a level's units merge in."""
    return {attack: i for i, attack in enumerate(config["poison"]["attacks"])}


@dataclass(frozen=True)
class Shape:
    """How many tasks a run makes and how they chain."""

    levels: int
    units_per_level: int
    tasks: int
    longest_chain: int
    largest_fan_in: int
    concurrent_units: int | None  # vertex.parallelism as the loops apply it; None: no cap


def shape(config: dict[str, Any]) -> Shape:
    """The run's tasks: load, then per unit poison -> validate -> train -> evaluate (with
    level_attack, a ``units`` task before and a ``gather`` task after each level's
    units), then report and mirror. Mirrors pipelines/poisoning.py (tests compare)."""
    levels = len(config["poison"]["levels"])
    per_level = len(level_items(config))
    extra = len(NESTED_STEPS) if nested(config) else 0
    tasks = len(RUN_STEPS) + levels * (per_level * len(UNIT_STEPS) + extra)
    chain = len(RUN_STEPS) + len(UNIT_STEPS) + extra
    fan_in = max(levels, per_level) if nested(config) else levels
    outer, inner = loop_parallelism(config)
    cap = None if outer is None else outer * (inner or 1) if nested(config) else outer
    return Shape(levels, per_level, tasks, chain, fan_in, cap)


def loop_parallelism(
    config: dict[str, Any], cap: int | None = None
) -> tuple[int | None, int | None]:
    """``vertex.parallelism`` P (or ``cap``) as (levels at once, units of a level at once).

    With one loop, P levels at once. Nested, the product stays within P: as many
    whole levels as fit (P // units per level, at least 1), and within a level at
    most min(P, units per level) units.
    """
    cap = cap or config["vertex"].get("parallelism")
    if cap is None:
        return None, None
    if not nested(config):
        return cap, None
    per_level = len(level_items(config))
    return max(1, cap // per_level), min(cap, per_level)


def check_pipeline(config: dict[str, Any]) -> None:
    """``pipeline.fan_out``, ``pipeline.trials_per_task`` and ``vertex.parallelism``; one
    line naming the field."""
    section = config["pipeline"]
    fan_out = section["fan_out"]
    if fan_out not in FAN_OUTS:
        raise PoisonlabError(
            f"config: pipeline.fan_out = {fan_out!r} is not an option; choose "
            f"{' or '.join(FAN_OUTS)}"
        )
    chunk = section["trials_per_task"]
    if chunk is not None:
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise PoisonlabError(
                f"config: pipeline.trials_per_task = {chunk!r} is not a whole number >= 1; "
                "give e.g. 3, or null for every trial in one task"
            )
        if fan_out == "level":
            raise PoisonlabError(
                "config: pipeline.trials_per_task needs pipeline.fan_out: level_attack; "
                "set it, or leave trials_per_task null"
            )
    cap = config["vertex"].get("parallelism")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise PoisonlabError(
            f"config: vertex.parallelism = {cap!r} is not a whole number >= 1; give e.g. 8, "
            "or null for no cap"
        )


def check_fan_in(config: dict[str, Any]) -> None:
    """That no task collects more artifacts than Vertex allows (checked before a Vertex
    job is built; the local runner and a KFP cluster have no such limit)."""
    levels = len(config["poison"]["levels"])
    if levels > VERTEX_FAN_IN_LIMIT:
        raise PoisonlabError(
            f"config: poison.levels has {levels} levels; the report collects one artifact "
            f"per level and Vertex refuses more than {VERTEX_FAN_IN_LIMIT}: run at most "
            f"{VERTEX_FAN_IN_LIMIT} levels per run"
        )
    per_level = len(level_items(config))
    if per_level > VERTEX_FAN_IN_LIMIT:
        chunks = max(1, VERTEX_FAN_IN_LIMIT // len(config["poison"]["attacks"]))
        least = math.ceil(config["trials"] / chunks)
        chunk = config["pipeline"]["trials_per_task"]
        raise PoisonlabError(
            f"config: pipeline.trials_per_task = {chunk} makes {per_level} units per level; "
            f"a level's gather collects at most {VERTEX_FAN_IN_LIMIT}: use at least {least}"
        )
