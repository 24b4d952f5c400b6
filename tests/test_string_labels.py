"""A user's own CSV: string class labels in a column not called ``target``, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import run_command, set_args

CLASSES = ["setosa", "versicolor", "virginica"]


def test_csv_with_string_labels_runs_end_to_end_and_keeps_class_names(tmp_path: Path):
    output = tmp_path / "out"
    result = run_command(
        "submit.py",
        "--local",
        *set_args(
            "dataset.source=tests/corpus/data/flowers.csv",
            "dataset.label_column=species",
            "poison.levels=[0.2]",
            "poison.attacks=[label_flip]",
            "train.models=[logistic_regression]",
            "trials=2",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        ),
        "--output-dir",
        str(output),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = pd.read_csv(output / "summary.csv")
    assert set(summary["poison_level"]) == {0.2}
    assert summary["mean"].notna().all()
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["provenance"]["class_names"] == CLASSES
    report = (output / "report.html").read_text()
    for name in CLASSES:
        assert name in report
