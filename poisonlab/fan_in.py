"""A level's units put back together: the ``gather`` step of ``pipeline.fan_out: level_attack``.

Each unit's ``evaluate`` wrote a level directory for its own attacks and trials
(``steps.evaluate``); ``gather`` writes the one directory the level would have
had with ``fan_out: level``, so the report, the mirror and ``fetch-results`` see one
run as before, and the report still collects one artifact per level (Vertex refuses
a fan-in of more than 100). Rows go in one canonical order (trial, then attack in
config order), and confusion counts are summed over the units' trials, so the
summaries are byte-identical whatever the fan-out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from poisonlab import experiment, units
from poisonlab.failures import read_failure, write_failure
from poisonlab.steps import (
    CERTIFIED_RECORDS_FILE,
    CONFUSION_FILE,
    MODELS_FILE,
    QUANTITY_RECORDS_FILE,
    RECORDS_FILE,
    _attach,
    _attached,
)

_FILES = (RECORDS_FILE, CONFUSION_FILE, QUANTITY_RECORDS_FILE, MODELS_FILE, CERTIFIED_RECORDS_FILE)


def _ordered(frame: pd.DataFrame, rank: dict[str, int]) -> pd.DataFrame:
    """Rows by trial, then attack in config order; the order within each kept (stable)."""
    if frame.empty or "trial" not in frame:
        return frame.reset_index(drop=True)
    keys = pd.DataFrame({"trial": frame["trial"], "attack": frame["attack"].map(rank)})
    return frame.loc[keys.sort_values(["trial", "attack"], kind="stable").index].reset_index(
        drop=True
    )


def _set_key(key: str, rank: dict[str, int]) -> tuple[int, int]:
    trial, attack = key.split("/", 1)
    return int(trial), rank[attack]


def gather(config_json: str, level: float, unit_dirs: list[str], level_dir: str) -> None:
    """Merge the units' directories of ``level`` into ``level_dir`` (the ``gather`` step;
    a step module of its own, beside ``poisonlab.steps`` whose file names it shares).

    A unit that failed fails its level (as a failed step does with ``fan_out:
    level``): the report lists the level as failed, with the failure's error, and the
    other levels stand.
    """
    config = json.loads(config_json)  # checked by load, as every step after it
    out = Path(level_dir)
    out.mkdir(parents=True, exist_ok=True)
    dirs = [Path(d) for d in unit_dirs]
    failure = next((f for f in (read_failure(d / RECORDS_FILE) for d in dirs) if f), None)
    if failure is not None:
        for name in _FILES:
            write_failure(out / name, {**failure, "level": level})
        return
    rank = units.order_key(config)
    records = _ordered(experiment.read_records([d / RECORDS_FILE for d in dirs]), rank)
    experiment.write_records(records, out / RECORDS_FILE)
    metas = [_attached(d / RECORDS_FILE) for d in dirs]
    hashes = {k: v for meta in metas for k, v in meta["poisoned_sha256"].items()}

    def by_set(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda r: (r["trial"], rank[r["attack"]]))

    _attach(
        out / RECORDS_FILE,
        {
            "poison_level": level,
            "poisoned_sha256": {
                k: hashes[k] for k in sorted(hashes, key=lambda k: _set_key(k, rank))
            },
            "failed_fits": by_set([f for meta in metas for f in meta["failed_fits"]]),
            "failed_detections": by_set([f for meta in metas for f in meta["failed_detections"]]),
            "failed_attacks": by_set([f for meta in metas for f in meta.get("failed_attacks", [])]),
        },
    )
    # Counts summed over trials per attack, model and defence, as one task would have.
    confusion = experiment.read_records([d / CONFUSION_FILE for d in dirs])
    keys = [c for c in experiment.CONFUSION_COLUMNS if c != "count"]
    confusion = confusion.groupby(keys, sort=False, as_index=False)["count"].sum()
    confusion[experiment.CONFUSION_COLUMNS].to_parquet(out / CONFUSION_FILE, index=False)
    # The level's first unit ran the quantity records (units.first_of_level).
    shutil.copyfile(dirs[0] / QUANTITY_RECORDS_FILE, out / QUANTITY_RECORDS_FILE)
    models = {}
    for d in dirs:
        models.update(experiment.read_models(d / MODELS_FILE))
    ordered = sorted(models, key=lambda k: (k[0], rank[k[1]]))
    experiment.write_models({k: models[k] for k in ordered}, out / MODELS_FILE)
    certified = [pd.read_parquet(d / CERTIFIED_RECORDS_FILE) for d in dirs]
    kept = [frame for frame in certified if not frame.empty]
    merged = _ordered(pd.concat(kept, ignore_index=True), rank) if kept else certified[0]
    merged.to_parquet(out / CERTIFIED_RECORDS_FILE, index=False)
