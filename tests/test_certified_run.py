"""A certified model through the pipeline's steps: certified.csv, the report's section, MLflow.

The steps are the functions the KFP components call, run in this process on
files as the components run them (the local runner adds only orchestration).
"""

from __future__ import annotations

import pandas as pd
import pytest

from poisonlab.config import load_config
from tests.pipeline_steps import run_steps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("certified_run")
    config = load_config(
        None,
        [
            "trials=2",
            "poison.levels=[0.0, 0.1]",
            "poison.attacks=[label_flip, feature_noise]",
            "validate.detectors=[zscore]",
            "train.models=[logistic_regression, certified_tree, knn]",
            "train.certified_tree={aggregate: dpa, base: decision_tree, partitions: 20}",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "mlflow.log_models=false",
        ],
    )
    return run_steps(config, tmp_path / "run", "certified-run")


def test_certified_csv_has_the_designed_columns_and_every_unit(results):
    table = pd.read_csv(results / "certified.csv")
    assert list(table.columns) == [
        "poison_level",
        "attack",
        "model",
        "unit",
        "radius",
        "certified_accuracy",
        "ci_low",
        "ci_high",
        "n",
    ]
    tree = table[table["model"] == "certified_tree"]
    assert set(tree["unit"]) == {"added_or_removed", "modified", "label_flips"}
    # A scaled kNN is certified against relabelling only; logistic regression not at all.
    assert set(table.loc[table["model"] == "knn", "unit"]) == {"label_flips"}
    assert "logistic_regression" not in set(table["model"])
    summary = pd.read_csv(results / "summary.csv")
    for (level, attack, model), curve in table.groupby(["poison_level", "attack", "model"]):
        radius_0 = curve[curve["radius"] == 0]["certified_accuracy"]
        accuracy = summary[
            (summary["poison_level"] == level)
            & (summary["attack"] == attack)
            & (summary["model"] == model)
            & (summary["defense"] == "none")
            & (summary["metric"] == "accuracy")
        ]["mean"]
        assert radius_0.to_numpy() == pytest.approx(accuracy.iloc[0], abs=1e-6)  # r=0: accuracy
        for _, unit in curve.groupby("unit"):
            assert unit["certified_accuracy"].is_monotonic_decreasing


def test_the_report_brackets_each_certified_model_and_checks_it(results):
    report = (results / "report.md").read_text()
    section = report.split("## Certified robustness", 1)[1].split("## ", 1)[0]
    assert "certified_tree: provably unaffected by up to" in section
    assert "certified_tree under label_flip: measured accuracy at least" in section
    assert "holds (2 of 2 level-trial pairs" in section
    assert "Certified robustness" in (results / "report.html").read_text()


def test_the_mirror_logs_certified_csv_and_the_level_0_headline(results):
    from mlflow.tracking import MlflowClient

    from poisonlab.mirror import mirror_results

    done = mirror_results(results)
    config = load_config(None, [])
    client = MlflowClient(
        pd.read_json(results / "manifest.json", typ="series")["config"]["mlflow"]["tracking_uri"]
    )
    parent = client.get_run(done.parent_run_id)
    assert "certified.csv" in {f.path for f in client.list_artifacts(done.parent_run_id)}
    assert parent.data.metrics["certified_accuracy_certified_tree_label_flips_r0"] > 0.5
    assert config["trials"] == 10  # the defaults were not touched
