"""Machines per pipeline step on Vertex AI: ``vertex.resources``, checked before anything
is built.

::

    vertex:
      resources:
        default: {cpu: 4, memory: 16G}
        train: {cpu: 16, memory: 64G}
        evaluate: {cpu: 8, memory: 32G, accelerator_type: NVIDIA_L4, accelerator_count: 1}

A step's settings are ``default``'s overlaid with its own. Each becomes the task's
CPU and memory request and limit (the same value: Vertex picks the machine from
them) and, where given, its accelerator type and count
(``pipelines.poisoning``). The rules are Vertex AI Pipelines' (its "machine
configuration for a pipeline step" page): CPU a whole number of CPUs or
millicores (``500m``), at most 96; memory a whole number with K, M or G, at most
624G; accelerator types as google-cloud-aiplatform lists them. Without
settings a step runs on Vertex's default machine, e2-standard-4 (4 CPUs, 16 GB).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from poisonlab.errors import PoisonlabError
from poisonlab.units import STEPS

DEFAULT = "default"
KEYS = ("cpu", "memory", "accelerator_type", "accelerator_count")
MAX_CPU = 96
MAX_MEMORY_GB = 624
# Vertex's default machine for a pipeline step (e2-standard-4).
DEFAULT_MACHINE = {"cpu": 4.0, "memory_gb": 16.0}
_MEMORY = re.compile(r"([1-9][0-9]*)([KMG]?)")
_MEMORY_UNIT = {"": 1e-9, "K": 1e-6, "M": 1e-3, "G": 1.0}
_CPU = re.compile(r"([1-9][0-9]*)(m?)")
# google.cloud.aiplatform_v1.types.AcceleratorType (google-cloud-aiplatform 2.7.0).
ACCELERATORS = (
    "NVIDIA_TESLA_K80",
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P4",
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_L4",
    "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB",
    "NVIDIA_B200",
    "NVIDIA_GB200",
    "NVIDIA_RTX_PRO_6000",
    "TPU_V2",
    "TPU_V3",
    "TPU_V4_POD",
    "TPU_V5_LITEPOD",
)


def _fail(field: str, problem: str, fix: str) -> PoisonlabError:
    return PoisonlabError(f"config: {field} {problem}; {fix}")


def cpu_count(value: Any, field: str) -> float:
    """CPUs as a number: ``4``, ``"4"`` or ``"500m"``; refused past a Vertex machine's 96."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = _CPU.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise _fail(
            field,
            f"= {value!r} is not a CPU count Vertex takes",
            "give whole CPUs (4) or millicores (500m)",
        )
    cpus = int(match[1]) / (1000 if match[2] else 1)
    if cpus > MAX_CPU:
        raise _fail(
            field,
            f"= {value!r} is more CPUs than a Vertex machine offers",
            f"use at most {MAX_CPU}",
        )
    return cpus


def memory_gb(value: Any, field: str) -> float:
    """Memory in GB from Vertex's form: a whole number with K, M or G (``16G``)."""
    match = _MEMORY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _fail(
            field,
            f"= {value!r} is not a memory size Vertex takes",
            "write a whole number with K, M or G, e.g. 16G (not 16Gi or 1.5G)",
        )
    gb = int(match[1]) * _MEMORY_UNIT[match[2]]
    if gb > MAX_MEMORY_GB:
        raise _fail(
            field,
            f"= {value!r} is more than a Vertex machine offers",
            f"use at most {MAX_MEMORY_GB}G",
        )
    return gb


def check_resources(resources: Any) -> dict[str, dict[str, Any]]:
    """``vertex.resources`` in checked form: ``{step or default: {key: value}}``, values as
    given (strings for KFP). One line naming the field for anything Vertex would refuse."""
    if resources is None:
        return {}
    if not isinstance(resources, dict):
        raise _fail(
            "vertex.resources",
            f"= {resources!r} is not a mapping",
            "write e.g. {default: {cpu: 4, memory: 16G}}",
        )
    checked = {}
    for step, settings in resources.items():
        field = f"vertex.resources.{step}"
        if step != DEFAULT and step not in STEPS:
            close = difflib.get_close_matches(str(step), [DEFAULT, *STEPS], n=1)
            hint = (
                f'did you mean "{close[0]}"?'
                if close
                else f"name one of: {DEFAULT}, {', '.join(STEPS)}"
            )
            raise _fail(field, "is not a step of the pipeline", hint)
        if not isinstance(settings, dict):
            raise _fail(
                field, f"= {settings!r} is not a mapping", "write e.g. {cpu: 8, memory: 32G}"
            )
        for key in settings:
            if key not in KEYS:
                close = difflib.get_close_matches(str(key), KEYS, n=1)
                hint = f'did you mean "{close[0]}"?' if close else f"use {', '.join(KEYS)}"
                raise _fail(f"{field}.{key}", "is not a known key", hint)
        one = {}
        if settings.get("cpu") is not None:
            cpu_count(settings["cpu"], f"{field}.cpu")
            one["cpu"] = str(settings["cpu"])
        if settings.get("memory") is not None:
            memory_gb(settings["memory"], f"{field}.memory")
            one["memory"] = settings["memory"]
        kind, count = settings.get("accelerator_type"), settings.get("accelerator_count")
        if kind is not None:
            if kind not in ACCELERATORS:
                close = difflib.get_close_matches(str(kind), ACCELERATORS, n=1)
                hint = (
                    f'did you mean "{close[0]}"?'
                    if close
                    else f"choose from: {', '.join(ACCELERATORS)}"
                )
                raise _fail(
                    f"{field}.accelerator_type", f"= {kind!r} is not a Vertex accelerator", hint
                )
            one["accelerator_type"] = kind
            count = 1 if count is None else count
        if count is not None:
            if kind is None:
                raise _fail(
                    f"{field}.accelerator_count",
                    "is given without accelerator_type",
                    "name the type too",
                )
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise _fail(
                    f"{field}.accelerator_count",
                    f"= {count!r} is not a whole number >= 1",
                    "give e.g. 1",
                )
            one["accelerator_count"] = count
        checked[str(step)] = one
    return checked


def step_resources(resources: dict[str, dict[str, Any]], step: str) -> dict[str, Any]:
    """What ``step`` asks for: ``default``'s settings overlaid with its own (checked form)."""
    return {**resources.get(DEFAULT, {}), **resources.get(step, {})}


def machine(resources: dict[str, dict[str, Any]], step: str) -> dict[str, float]:
    """CPUs and GB of memory ``step`` runs with on Vertex: its settings, else the default
    machine's."""
    asked = step_resources(resources, step)
    return {
        "cpu": cpu_count(asked["cpu"], step) if "cpu" in asked else DEFAULT_MACHINE["cpu"],
        "memory_gb": memory_gb(asked["memory"], step)
        if "memory" in asked
        else DEFAULT_MACHINE["memory_gb"],
    }
