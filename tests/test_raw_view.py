"""The raw and encoded views of a table (poisonlab.table): the user's code gets the rows a
real source sends, built-ins an encoding fitted on each training split, and attacks give
raw rows back. On real tables with text categories and gaps (tests/data/credit_data.csv,
tests/data/chile.csv), with a team's own pipeline and gates from tests/usercode."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "usercode"))

from poisonlab import experiment  # noqa: E402
from poisonlab.config import load_config, validate_config  # noqa: E402
from poisonlab.data import load_table, split_masks  # noqa: E402
from poisonlab.errors import PoisonlabError  # noqa: E402
from poisonlab.preflight import check_experiment  # noqa: E402

CREDIT = {
    "source": str(ROOT / "tests" / "data" / "credit_data.csv"),
    "label_column": "Status",
    "drop_columns": ["rownames"],
    "impute": None,
    "encode": None,
}
TEAM_CONFIG = ROOT / "configs" / "credit_team.yaml"


def _credit():
    table, _ = load_table(CREDIT)
    return table


def test_the_raw_view_keeps_the_tables_columns_dtypes_gaps_and_labels():
    table = _credit()
    assert "rownames" not in table.columns and "Status" not in table.columns
    assert str(table.features["Age"].dtype) == "int64"
    assert table.features["Income"].isna().sum() == 41  # gaps kept, not filled
    assert table.features["Home"].isna().sum() == 6
    assert sorted(set(table.labels(table.y))) == ["bad", "good"]
    encoding, X = table.encoded()
    assert X.shape == (400, len(table.feature_names)) and np.isfinite(X).all()
    info = encoding.columns_info(X)
    homes = [i for i, name in enumerate(info.names) if name.startswith("Home=")]
    assert any(list(group) == homes for group in info.groups)
    assert info.integer[info.names.index("Age")] and not info.integer[info.names.index("Income")]


def test_decoded_feature_noise_rows_are_rows_a_source_could_send():
    """Integers stay whole and typed, a one-hot group one seen category, gaps stay gaps,
    rows the attack left alone are the table's own."""
    from poisonlab.attacks import feature_noise

    table = _credit()
    rows = table.features.iloc[:300].reset_index(drop=True)
    encoding = table.schema.fit(rows)
    poisoned = feature_noise(
        encoding.transform(rows), table.y[:300], 0.2, rng=np.random.default_rng(0), n_classes=2
    )
    raw = encoding.decode(poisoned.X, rows)
    assert list(raw.dtypes.astype(str)) == table.schema.dtypes
    assert raw[~poisoned.mask].equals(rows[~poisoned.mask])
    changed = raw[poisoned.mask]
    assert (changed["Age"] != rows["Age"][poisoned.mask]).all()  # moved, in whole years
    for column in ("Home", "Marital", "Records", "Job"):
        assert set(changed[column].dropna()) <= set(encoding.seen[column])
    gaps = rows.isna().to_numpy()[poisoned.mask]
    assert np.array_equal(changed.isna().to_numpy(), gaps)


def test_a_category_first_seen_in_the_test_split_is_encoded_not_a_crash():
    from poisonlab.models import TableEncoder

    table = _credit()
    train = table.features[table.features["Home"] != "other"]
    encoder = TableEncoder(table.schema.to_json()).fit(train)
    test = table.features[table.features["Home"] == "other"]
    X = encoder.transform(test)
    names = table.feature_names
    assert (X[:, names.index("Home=other")] == 0).all()  # unseen: the group stays zero
    assert np.isfinite(X).all()


def test_a_poisoned_split_is_stored_raw_with_its_dtypes_and_mask(tmp_path):
    table = _credit()
    config = validate_config(
        {"trials": 1, "poison": {"levels": [0.1], "attacks": ["feature_noise", "missing_values"]}}
    )
    masks = split_masks(table.y, 0.2, 0, 1)
    sets = list(experiment.poison_level(table, masks, config, 0.1))
    path = tmp_path / "poisoned.parquet"
    experiment.write_poisoned(sets, table, path)
    back = {s.attack: s.data for s in experiment.read_poisoned(path)}
    for s in sets:
        assert back[s.attack].X.equals(s.data.X)
        assert np.array_equal(back[s.attack].mask, s.data.mask)
    blanked = back["missing_values"]
    before = table.features[~masks[0]].reset_index(drop=True)
    added = blanked.X.isna().to_numpy() & ~before.isna().to_numpy()
    # Integer columns hold no gap (kept): nearly every blanked row has a gap elsewhere.
    assert added[blanked.mask].any(axis=1).mean() > 0.9 and not added[~blanked.mask].any()
    assert str(blanked.X["Age"].dtype) == "int64"


def test_the_team_pipeline_and_gates_on_their_raw_rows():
    """Must hold 1-3 on credit_data with the team's module (configs/credit_team.yaml)."""
    config = load_config(TEAM_CONFIG, ["trials=2", "validate.detectors=[contract, source]"])
    check_experiment(config)
    summary, detection, _ = experiment.run_experiment(config)

    def accuracy(model):
        rows = summary[
            (summary["model"] == model)
            & (summary["poison_level"] == 0.0)
            & (summary["defense"] == "none")
            & (summary["metric"] == "accuracy")
        ]
        return float(rows["mean"].iloc[0])

    def found(detector, level, attack, metric):
        rows = detection[
            (detection["detector"] == detector)
            & (detection["poison_level"] == level)
            & (detection["attack"] == attack)
            & (detection["metric"] == metric)
        ]
        return float(rows["mean"].iloc[0])

    assert abs(accuracy("team") - accuracy("logistic_regression")) <= 0.02
    assert found("contract", 0.0, "label_flip", "flag_rate") <= 0.01
    assert found("contract", 0.1, "feature_noise", "recall") >= 0.9
    for attack in ("label_flip", "feature_noise_inrange", "label_flip_margin", "subpopulation"):
        assert found("source", 0.1, attack, "flag_rate") == 0.0
    assert found("source", 0.1, "feature_noise", "precision") in (0.0, 1.0)
    # Blanked cells fail the contract only where it says "never empty" (Records): poisoned
    # rows alone are flagged.
    assert found("contract", 0.1, "missing_values", "precision") == 1.0


def test_user_code_alone_needs_no_encode_or_impute_and_a_built_in_is_named():
    raw = load_config(TEAM_CONFIG)
    raw["dataset"]["encode"] = raw["dataset"]["impute"] = None
    raw["train"]["models"] = ["team"]
    raw["validate"]["detectors"] = ["contract", "source"]
    config = validate_config(raw)
    check_experiment(config)  # no error: the team's code takes the raw rows
    with pytest.raises(PoisonlabError, match=r"dataset\.impute: train\.models: logistic_regr"):
        check_experiment(
            validate_config(
                {**raw, "train": {**raw["train"], "models": ["team", "logistic_regression"]}}
            )
        )
    encoded = {**raw["train"]["team"], "input": "encoded"}
    with pytest.raises(PoisonlabError, match=r"dataset\.impute: train\.models: team needs"):
        check_experiment(validate_config({**raw, "train": {**raw["train"], "team": encoded}}))


def test_input_encoded_gives_a_user_model_the_encoded_view_under_its_names():
    from poisonlab.models import NamedColumns, make_model
    from poisonlab.table import table_view

    table = _credit()
    section = {"estimator": "sklearn.linear_model:LogisticRegression", "input": "encoded"}
    model = make_model("lr", section, 0, table_view(table))
    named = model.named_steps["model"].named_steps["columns"]
    assert isinstance(named, NamedColumns)
    assert named.columns == table.feature_names
    fitted = model.fit(table.features, table.y)
    assert set(fitted.predict(table.features)) <= {0, 1}
    with pytest.raises(PoisonlabError, match=r"train\.lr\.input = 'both' is unknown"):
        validate_config({"train": {"models": ["lr"], "lr": {**section, "input": "both"}}})


def test_a_schema_gate_sees_raw_rows_with_the_label_as_in_the_table():
    from poisonlab.detectors.user import run_gate
    from poisonlab.experiment import table_names

    table = _credit()
    found = run_gate(
        "contract", {"schema": "credit_team:SCHEMA"}, table.features, table.y, table_names(table)
    )
    assert not found.flags.any()
    broken = table.features.copy()
    broken.loc[3, "Home"] = "castle"
    found = run_gate(
        "contract", {"schema": "credit_team:SCHEMA"}, broken, table.y, table_names(table)
    )
    assert found.flags.tolist() == [i == 3 for i in range(len(broken))]


def test_whole_number_labels_reach_user_code_as_numbers():
    from poisonlab.models import make_model
    from poisonlab.table import table_view

    table, _ = load_table(
        {**CREDIT, "source": str(ROOT / "tests" / "data" / "mtcars.csv"), "label_column": "cyl"}
    )
    assert table.label_numeric
    model = make_model(
        "lr", {"estimator": "sklearn.linear_model:LogisticRegression"}, 0, table_view(table)
    ).fit(table.features, table.y)
    assert sorted(model.model_.classes_.tolist()) == [4, 6, 8]
    assert isinstance(pd.Series(model.predict(table.features)).iloc[0], np.integer)


@pytest.mark.slow
def test_a_team_runs_its_own_code_on_its_raw_table_end_to_end(tmp_path):
    """Must hold 4, as a new user runs it: the team's pipeline and gates alone on a table
    with text columns and gaps, no dataset.encode or dataset.impute, on the local runner;
    the poisoned splits stored raw, the manifest naming raw columns and encoded features."""
    import json
    import os

    from conftest import run_command, set_args

    output = tmp_path / "out"
    usercode = os.pathsep.join([str(ROOT / "tests" / "usercode"), os.environ.get("PYTHONPATH", "")])
    result = run_command(
        "submit.py",
        "--local",
        "--config",
        str(TEAM_CONFIG),
        *set_args(
            "dataset.encode=null",
            "dataset.impute=null",
            "train.models=[team]",
            "validate.detectors=[contract, source]",
            "poison.attacks=[label_flip, feature_noise]",
            "trials=2",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            "mlflow.log_models=false",
        ),
        "--output-dir",
        str(output),
        "--keep-artifacts",
        env={"PYTHONPATH": usercode},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    detection = pd.read_csv(output / "detection.csv").set_index(
        ["poison_level", "attack", "detector", "metric"]
    )["mean"]
    assert detection[(0.0, "label_flip", "contract", "flag_rate")] == 0.0
    assert detection[(0.1, "feature_noise", "contract", "recall")] >= 0.9
    assert detection[(0.1, "feature_noise", "source", "flag_rate")] == 0.0
    summary = pd.read_csv(output / "summary.csv")
    assert set(summary["model"]) == {"team"}
    provenance = json.loads((output / "manifest.json").read_text())["provenance"]
    assert {"name": "Age", "dtype": "int64"} in provenance["raw_columns"]
    assert "Home=owner" in provenance["feature_names"]
    [stored] = sorted(output.glob("artifacts/*/for-loop-*-iteration-1/poison/poisoned*"))
    sets = list(experiment.read_poisoned(stored))
    assert str(sets[0].data.X["Age"].dtype) == "int64" and sets[0].data.X["Income"].isna().any()
