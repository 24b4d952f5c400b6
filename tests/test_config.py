"""Config loading, overrides and validation: every bad value gives one line naming the field."""

from __future__ import annotations

import pytest

from poisonlab.config import DEFAULTS, apply_overrides, config_hash, load_config, validate_config
from poisonlab.errors import PoisonlabError
from tests.conftest import ROOT


def test_defaults_fill_every_key_and_each_registered_parameter_section():
    config = validate_config({})
    assert set(config) == set(DEFAULTS)
    assert config["poison"]["levels"] == [0.0, 0.05, 0.10, 0.50]
    assert config["train"]["decision_tree"]["max_depth"] == 3
    assert "magnitude" in config["poison"]["feature_noise"]


def test_shipped_config_is_the_default_experiment():
    assert load_config(ROOT / "configs" / "iris.yaml") == validate_config({})


def test_set_overrides_parse_values_as_yaml():
    config = load_config(
        None, ["trials=3", "poison.levels=[0, 0.2]", "train.decision_tree.max_depth=5"]
    )
    assert config["trials"] == 3
    assert config["poison"]["levels"] == [0.0, 0.2]
    assert config["train"]["decision_tree"]["max_depth"] == 5


def test_overrides_leave_the_input_untouched():
    raw = {"trials": 4}
    apply_overrides(raw, ["trials=2"])
    assert raw == {"trials": 4}


@pytest.mark.parametrize(
    ("overrides", "field", "hint"),
    [
        (["poison.levels=[0.1, 1.5]"], "poison.levels[1]", "[0, 1)"),
        (["poison.levels=[]"], "poison.levels", "at least one level"),
        (["train.models=[logistic_regresion]"], "train.models[0]", '"logistic_regression"'),
        (["poison.attacks=[label_flop]"], "poison.attacks[0]", '"label_flip"'),
        (["validate.detectors=[knnn]"], "validate.detectors[0]", '"knn"'),
        (["trials=0"], "trials", "at least 1"),
        (["trials=2.5"], "trials", "whole number"),
        (["dataset.test_size=1.2"], "dataset.test_size", "(0, 1)"),
        (["seeed=3"], "seeed", '"seed"'),
        (["train.decision_tree.max_dept=2"], "train.decision_tree.max_dept", '"max_depth"'),
        (["train.decision_tree.max_depth=-1"], "train.decision_tree", "max_depth"),
        # Ensembles are check-fitted with two members: a bad size is still caught.
        (["train.random_forest.n_estimators=0"], "train.random_forest", "n_estimators"),
        (
            ["train.models=[gradient_boosting]", "train.gradient_boosting.max_iter=-1"],
            "train.gradient_boosting",
            "max_iter",
        ),
    ],
)
def test_bad_values_name_the_field_and_the_fix(overrides, field, hint):
    with pytest.raises(PoisonlabError) as caught:
        load_config(None, overrides)
    message = str(caught.value)
    assert field in message and hint in message
    assert "\n" not in message


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("poison:\n  levels: [0.1, 0.2\ntrials: 3\n")
    with pytest.raises(PoisonlabError, match="malformed YAML at line"):
        load_config(path)


def test_config_hash_ignores_where_results_go():
    a = load_config(None, ["mlflow.tracking_uri=http://a:5000"])
    b = load_config(None, ["mlflow.tracking_uri=http://b:5000"])
    c = load_config(None, ["seed=7"])
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_the_pipeline_parameter_must_be_the_complete_checked_config(tmp_path):
    """Tasks after load read the parameter unchecked, so load refuses one that is not complete."""
    import json

    from poisonlab import steps
    from poisonlab.config import canonical_json

    text = canonical_json(validate_config({}))
    paths = (str(tmp_path / "data"), str(tmp_path / "splits"))
    assert steps.load(text, *paths)["n_rows"] == 150
    partial = json.loads(text)
    del partial["validate"]["knn"]["k"]
    with pytest.raises(PoisonlabError, match=r"has no validate\.knn\.k; pass the complete config"):
        steps.load(json.dumps(partial), *paths)
    with pytest.raises(PoisonlabError, match=r"has no dataset"):
        steps.load(json.dumps({"trials": 3}), *paths)


@pytest.mark.parametrize(
    "uri, message",
    [
        ("sqlite:mlflow.db", "is not a SQLite URI MLflow reads; write sqlite:///mlflow.db"),
        ("http:///mlflow", "names no host"),
        ("ftp://host/mlflow", "has scheme 'ftp', which MLflow cannot track to"),
        ("file:///tmp/mlruns", "is a file store, which MLflow 3 no longer writes to"),
    ],
)
def test_a_tracking_uri_mlflow_would_refuse_fails_before_the_run(uri, message, monkeypatch):
    """MLflow refuses these only when the mirror opens the store, after every level ran."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(PoisonlabError, match=f"^mlflow.tracking_uri: '{uri}' {message}"):
        validate_config({"mlflow": {"tracking_uri": uri}})
    for fine in ("sqlite:///mlflow.db", "sqlite:////tmp/m.db", "http://127.0.0.1:5000"):
        validate_config({"mlflow": {"tracking_uri": fine}})


def test_a_name_mlflow_would_refuse_fails_before_the_run():
    """A model named "lr+scaled" ran, then its mirror failed on the metric key
    accuracy_label_flip_lr+scaled_level0 and said to mirror again later (which fails
    again): the name is refused with the config instead."""
    section = {"estimator": "sklearn.linear_model:LogisticRegression"}
    with pytest.raises(PoisonlabError) as error:
        validate_config({"train": {"models": ["lr+scaled"], "lr+scaled": section}})
    assert str(error.value) == (
        'config: train.models[0] "lr+scaled" holds characters MLflow refuses in metric '
        "names; name it with letters, digits, '_', '-', '.' and spaces only"
    )
    validate_config({"train": {"models": ["lr scaled-2"], "lr scaled-2": section}})
