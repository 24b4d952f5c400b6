"""Same config and seed, same bytes: two end-to-end runs through the local runner agree."""

from __future__ import annotations

import json

from tests.conftest import ROOT, SMALL_RUN


def test_two_runs_give_identical_summary_and_detection_bytes(small_run, rerun_with_credentials):
    for name in ("summary.csv", "detection.csv"):
        first = (small_run / name).read_bytes()
        second = (rerun_with_credentials / name).read_bytes()
        assert len(first) > 200, name
        assert first == second, name


def test_two_runs_record_the_same_provenance(small_run, rerun_with_credentials):
    first = json.loads((small_run / "manifest.json").read_text())
    second = json.loads((rerun_with_credentials / "manifest.json").read_text())
    assert first["provenance"] == second["provenance"]
    assert first["config_sha256"] == second["config_sha256"]


def test_the_small_config_is_what_both_runs_used(small_run):
    from poisonlab.config import config_hash, load_config

    config = load_config(ROOT / "configs" / "iris.yaml", SMALL_RUN)
    manifest = json.loads((small_run / "manifest.json").read_text())
    assert manifest["config_sha256"] == config_hash(config)


def test_provenance_hashes_input_splits_and_every_poisoned_variant(small_run):
    """The manifest and the report carry SHA-256s that match the data recomputed here."""
    from poisonlab.config import load_config
    from poisonlab.data import load_table, split_masks
    from poisonlab.experiment import poison_level
    from poisonlab.table import rows_hash  # of the raw rows, as the run stores them

    config = load_config(ROOT / "configs" / "iris.yaml", SMALL_RUN)
    provenance = json.loads((small_run / "manifest.json").read_text())["provenance"]
    dataset, input_hash = load_table(config["dataset"])
    masks = split_masks(dataset.y, 0.2, config["seed"], config["trials"])
    assert provenance["input_sha256"] == input_hash
    assert provenance["failed_levels"] == []
    for trial, mask in enumerate(masks):
        split = provenance["split_sha256"][str(trial)]
        assert split["train"] == rows_hash(dataset.X[~mask], dataset.y[~mask])
        assert split["test"] == rows_hash(dataset.X[mask], dataset.y[mask])
    report = (small_run / "report.html").read_text()
    for level in config["poison"]["levels"]:
        variants = provenance["poisoned_sha256"][f"{level:g}"]
        for s in poison_level(dataset, masks, config, level):
            digest = rows_hash(s.data.X, s.data.y)
            assert variants[f"{s.trial}/{s.attack}"] == digest
            assert digest in report
    assert input_hash in report
