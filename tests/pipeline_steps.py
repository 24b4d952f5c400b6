"""The pipeline's steps run in this process, as the components call them: what tests
check the results of without the KFP runner's orchestration (tests/test_local_run.py
covers that)."""

from __future__ import annotations

from pathlib import Path

from poisonlab import fan_in, steps, units
from poisonlab.config import canonical_json


def run_steps(config: dict, base: Path, run_key: str = "run") -> Path:
    """Every step for ``config``, unit by unit as the pipeline runs them (``fan_in.gather``
    per level under ``pipeline.fan_out: level_attack``), in the new folder ``base``;
    return the results folder."""
    text = canonical_json(config)
    base.mkdir(parents=True)
    data, splits = str(base / "data"), str(base / "splits")
    steps.load(text, data, splits)
    level_dirs = []
    for i, level in enumerate(config["poison"]["levels"]):
        unit_dirs = []
        for j, item in enumerate(units.with_level(level, units.level_items(config))):
            unit = item if units.nested(config) else None
            p, d, m, out = (str(base / f"{name}-{i}-{j}") for name in "pdmo")
            steps.poison(text, level, data, splits, p, unit)
            steps.validate(text, p, d, data, splits)
            steps.train(text, p, d, m)
            steps.evaluate(text, level, data, splits, p, d, m, out, unit)
            unit_dirs.append(out)
        if units.nested(config):
            level_dir = str(base / f"level-{i}")
            fan_in.gather(text, level, unit_dirs, level_dir)
            level_dirs.append(level_dir)
        else:
            level_dirs.extend(unit_dirs)
    steps.report(text, level_dirs, data, str(base / "results"), run_key)
    return base / "results"
