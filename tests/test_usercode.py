"""The user's own models and gates: named by import path, checked before anything runs,
measured like the built-ins. The user's code is tests/usercode/my_pipeline.py, reached
through PYTHONPATH as a new user's module would be."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_command, set_args

USERCODE = ROOT / "tests" / "usercode"
OWN_CONFIG = ROOT / "configs" / "own_code.yaml"
# The tasks of the local runner inherit this, as they would a user's PYTHONPATH.
USER_ENV = {"PYTHONPATH": os.pathsep.join([str(USERCODE), os.environ.get("PYTHONPATH", "")])}

sys.path.insert(0, str(USERCODE))  # for the in-process tests below

import submit  # noqa: E402
from poisonlab import experiment, steps  # noqa: E402
from poisonlab.config import canonical_json, validate_config  # noqa: E402
from poisonlab.data import load_dataset, split_masks  # noqa: E402
from poisonlab.detectors.user import TableNames, as_detection, run_gate  # noqa: E402
from poisonlab.errors import PoisonlabError, run_cli  # noqa: E402
from poisonlab.failures import read_failure  # noqa: E402
from poisonlab.models import make_model, user_model_params  # noqa: E402
from poisonlab.preflight import sample_rows  # noqa: E402
from poisonlab.usercode import import_reference, parse_reference, user_modules  # noqa: E402
from tests.pipeline_steps import run_steps  # noqa: E402

IRIS_NAMES = TableNames(
    ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
    ["setosa", "versicolor", "virginica"],
    "target",
)


def _own(models=None, detectors=None, **sections) -> dict:
    """A raw config with user sections: ``train.<name>`` or ``validate.<name>`` keyword
    arguments, as ``train__mine={...}``."""
    raw = {"train": {"models": models or ["logistic_regression"]}, "validate": {}}
    raw["validate"]["detectors"] = detectors or []
    for key, section in sections.items():
        part, name = key.split("__")
        raw[part][name] = section
    return raw


# --- references -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("my_pipeline:make_pipeline", ("my_pipeline", "make_pipeline")),
        ("my_pipeline.make_pipeline", ("my_pipeline", "make_pipeline")),
        ("sklearn.linear_model:LogisticRegression", ("sklearn.linear_model", "LogisticRegression")),
    ],
)
def test_both_reference_styles_parse(reference, expected):
    assert parse_reference(reference, "train.x.estimator") == expected


@pytest.mark.parametrize("reference", ["", "nodots", "a:b:c", "my pipeline:f", 3])
def test_a_reference_that_is_no_import_path_names_the_field(reference):
    with pytest.raises(PoisonlabError, match=r"config: train\.x\.estimator = .* import path"):
        parse_reference(reference, "train.x.estimator")


def test_a_misspelt_attribute_gets_a_suggestion():
    with pytest.raises(PoisonlabError, match='did you mean "make_pipeline"'):
        import_reference("my_pipeline:make_pipelin", "train.mine.estimator")


# --- models -----------------------------------------------------------------------------


def test_a_user_pipeline_is_a_fresh_clone_with_every_random_state_set():
    section = {"estimator": "my_pipeline:make_pipeline", "C": 0.5}
    first = make_model("mine", section, random_state=7)
    second = make_model("mine", section, random_state=7)
    assert first is not second
    assert first.get_params()["classify__C"] == 0.5  # the section's keywords reached it
    assert first.get_params()["classify__random_state"] == 7
    lgbm = make_model("lgbm", {"estimator": "lightgbm:LGBMClassifier"}, random_state=3)
    assert lgbm.get_params()["random_state"] == 3


@pytest.mark.parametrize(
    "section",
    [
        {
            "estimator": "lightgbm:LGBMClassifier",
            "n_estimators": 20,
            "subsample": 0.7,
            "subsample_freq": 1,
            "colsample_bytree": 0.7,
            "verbose": -1,
            "n_jobs": 1,
        },
        {"estimator": "sklearn.ensemble:RandomForestClassifier", "n_estimators": 10},
    ],
)
def test_user_models_fit_the_same_for_a_seed_and_differently_for_another(section):
    """Same config and seed, same model: the seed reaches the user's estimator."""
    from poisonlab.models import fit_model

    iris, _ = load_dataset("sklearn:iris")
    first, again, other = (
        fit_model("m", section, iris.X, iris.y, seed).predict_proba(iris.X) for seed in (1, 1, 2)
    )
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_user_models_and_gates_are_accepted_and_listed_by_module():
    config = validate_config(
        _own(
            ["mine", "lgbm"],
            ["my_schema", "my_gate"],
            train__mine={"estimator": "my_pipeline:make_pipeline", "C": 2.0},
            train__lgbm={"estimator": "lightgbm:LGBMClassifier", "verbose": -1},
            validate__my_schema={"schema": "my_pipeline:IRIS_SCHEMA"},
            validate__my_gate={"detector": "my_pipeline.far_from_class", "threshold": 5.0},
        )
    )
    assert config["train"]["mine"] == {"estimator": "my_pipeline:make_pipeline", "C": 2.0}
    assert user_modules(config) == {
        "my_pipeline": [
            "train.mine.estimator",
            "validate.my_schema.schema",
            "validate.my_gate.detector",
        ],
        "lightgbm": ["train.lgbm.estimator"],
    }
    assert user_model_params("mine", config["train"]["mine"]) == {
        "estimator": "my_pipeline:make_pipeline",
        "estimator.C": "2.0",
    }
    assert user_model_params("logistic_regression", config["train"]["logistic_regression"]) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_own(["mine"]), r'train\.models\[0\] "mine" is unknown; .*a section mine: \{estimator'),
        (
            _own(train__mine={"estimatr": "my_pipeline:make_pipeline"}),
            r"train\.mine is not a known key",
        ),
        (
            _own(["mine"], train__mine={"estimator": "numpy:pi"}),
            r"train\.mine\.estimator = .* not a class or factory",
        ),
        (
            _own(["mine"], train__mine={"estimator": "my_pipeline:make_pipeline", "Cee": 1}),
            r"train\.mine\.estimator: my_pipeline:make_pipeline raised TypeError",
        ),
        (
            _own(detectors=["g"], validate__g={"schema": "my_pipeline:make_pipeline"}),
            r"validate\.g\.schema = .* not a pandera schema",
        ),
        (
            _own(detectors=["g"], validate__g={"schema": "my_pipeline:IRIS_SCHEMA", "k": 1}),
            r"validate\.g\.k is not a key a schema gate takes",
        ),
    ],
)
def test_bad_user_sections_fail_in_one_line_naming_the_field(raw, message):
    with pytest.raises(PoisonlabError, match=message):
        validate_config(raw)


# --- gates ------------------------------------------------------------------------------


def test_schema_gate_counts_the_failed_checks_of_each_row():
    iris, _ = load_dataset("sklearn:iris")
    X, y = iris.X[:4].copy(), iris.y[:4]
    X[1, 0] = 99.0  # one range check fails
    X[2, :2] = -5.0  # two fail
    found = run_gate("s", {"schema": "my_pipeline:IRIS_SCHEMA"}, X, y, IRIS_NAMES)
    assert found.scores.tolist() == [0.0, 1.0, 2.0, 0.0]
    assert found.flags.tolist() == [False, True, True, False]


def test_schema_gate_that_does_not_describe_the_table_is_refused():
    names = TableNames(["a", "b", "c", "d"], IRIS_NAMES.classes, "target")
    with pytest.raises(PoisonlabError, match=r"validate\.s\.schema: .* as a whole"):
        run_gate(
            "s", {"schema": "my_pipeline:IRIS_SCHEMA"}, np.ones((3, 4)), np.zeros(3, int), names
        )


def test_gate_function_sees_named_frames_and_its_params():
    iris, _ = load_dataset("sklearn:iris")
    section = {"detector": "my_pipeline:far_from_class", "threshold": 0.0}
    found = run_gate("g", section, iris.X[:10], iris.y[:10], IRIS_NAMES)
    assert found.flags.dtype == bool and found.flags.any()  # threshold 0 reached it


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (np.zeros(3, dtype=bool), "shape"),
        (np.zeros(4), "float64 flags"),
        ((np.zeros(4), np.zeros(4, dtype=bool), 1), "3 values"),
        ((np.array([0, 1, np.nan, 0]), np.zeros(4, dtype=bool)), "finite"),
    ],
)
def test_gate_answers_outside_the_contract_are_one_line_errors(answer, problem):
    with pytest.raises(PoisonlabError, match=rf"validate\.g\.detector: m:f .*{problem}"):
        as_detection(answer, 4, "validate.g.detector", "m:f")


def test_an_attack_whose_gate_raises_fails_alone(tmp_path):
    """A gate-aware attack evading a user gate that raises on a real split fails alone, as
    a failing gate or model does: the level's other attack stands, and the run's
    manifest, report and MLflow tags name the failed attack with its one-line error."""
    config = validate_config(
        _own(validate__big={"detector": "my_pipeline:fails_on_large_tables"})
        | {
            "trials": 1,
            "poison": {
                "levels": [0.1],
                "attacks": ["label_flip", "quiet"],
                "quiet": {"base": "feature_noise", "evade": ["big"]},
            },
            "mlflow": {"log_models": False},
        }
    )
    results = run_steps(config, tmp_path / "run")
    provenance = json.loads((results / "manifest.json").read_text())["provenance"]
    [failed] = provenance["failed_attacks"]
    assert (failed["level"], failed["trial"], failed["attack"]) == (0.1, 0, "quiet")
    assert "more than 50 rows" in failed["error"] and "\n" not in failed["error"]
    summary = pd.read_csv(results / "summary.csv")
    assert set(summary.loc[summary["poison_level"] == 0.1, "attack"]) == {"label_flip"}
    assert (
        "At level 0.1, attack quiet failed (it raised) in 1 of 1 trials"
        in (results / "report.md").read_text()
    )
    assert submit.report_failed_levels(results) == 1


def test_a_gate_that_errors_fails_alone_and_fails_the_gate_in_one_line(tmp_path):
    """Past the check on a few rows, a gate raising on a real split fails alone: the
    validate step writes its detections (the gate's marked failed, in one line) and the
    level's gate verdict fails, not evaluated, rather than passing on a missing flag rate."""
    config = validate_config(
        _own(
            detectors=["big"],
            validate__big={"detector": "my_pipeline:fails_on_large_tables"},
        )
        | {"trials": 1, "poison": {"levels": [0.1], "attacks": ["label_flip"]}}
    )
    data, splits = tmp_path / "data.parquet", tmp_path / "splits.parquet"
    poisoned, detections = tmp_path / "poisoned.parquet", tmp_path / "detections.parquet"
    steps.load(canonical_json(config), str(data), str(splits))
    steps.poison(canonical_json(config), 0.1, str(data), str(splits), str(poisoned))
    verdict = steps.validate(
        canonical_json(config), str(poisoned), str(detections), str(data), str(splits)
    )["label_flip"]
    assert read_failure(detections) is None
    assert verdict["verdict"] == "fail" and verdict["flag_rate"] is None
    assert verdict["reason"].startswith("not evaluated: detector big failed in 1 of 1 trials")
    [failed] = experiment.failed_detections(experiment.read_detections(detections))
    assert failed["error"].startswith(
        "validate.big.detector: my_pipeline:fails_on_large_tables raised ValueError"
    )
    assert "\n" not in failed["error"]
    # The level's other steps run on, and the run's results name the failed gate.
    models, level_dir, results = (tmp_path / name for name in ("models.pkl", "level", "out"))
    steps.train(canonical_json(config), str(poisoned), str(detections), str(models))
    steps.evaluate(
        canonical_json(config),
        0.1,
        *map(str, (data, splits, poisoned, detections, models, level_dir)),
    )
    steps.report(canonical_json(config), [str(level_dir)], str(data), str(results), "t")
    provenance = json.loads((results / "manifest.json").read_text())["provenance"]
    assert provenance["failed_levels"] == []
    assert provenance["failed_detections"] == [{"level": 0.1, **failed}]
    assert (
        "Detector big failed on 1 of its 1 training splits" in (results / "report.md").read_text()
    )
    assert submit.report_failed_levels(results) == 1


def test_detect_level_scores_a_user_gate_with_the_built_ins():
    iris, _ = load_dataset("sklearn:iris")
    config = validate_config(
        _own(detectors=["zscore", "s"], validate__s={"schema": "my_pipeline:IRIS_SCHEMA"})
    )
    masks = np.zeros((1, len(iris.y)), dtype=bool)
    masks[0, ::5] = True
    sets = list(experiment.poison_level(iris, masks, {**config, "trials": 1}, 0.1))
    detections = experiment.detect_level(sets, config, 3, IRIS_NAMES)
    found = {key[2] for key in detections}
    assert found == {"zscore", "s"}


# --- the command line: refused before anything runs --------------------------------------


def _refused(capsys, *args: str) -> str:
    """Run ``python submit.py args`` in this process; its one stderr line, given exit 2."""
    with pytest.raises(SystemExit) as exited:
        run_cli(lambda: submit.main(list(args)))
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            '{estimator: "no_such_module:make"}',
            "train.mine.estimator = 'no_such_module:make': no module named "
            "'no_such_module'; install it",
        ),
        (
            '{estimator: "sklearn.linear_model:LinearRegression"}',
            "gives a LinearRegression, which is not a classifier",
        ),
    ],
)
def test_bad_model_references_exit_2_in_one_line_before_any_task(tmp_path, section, message):
    """Must hold 3, as a user runs it: a missing module, and a regressor."""
    output = tmp_path / "out"
    result = run_command(
        "submit.py",
        "--local",
        "--config",
        str(OWN_CONFIG),
        *set_args(f"train.mine={section}"),
        "--output-dir",
        str(output),
        env=USER_ENV,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config: ") and message in lines[0]
    assert not output.exists()  # the runner never started


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "train.mine.estimator=my_pipeline:make_pipelines",
            "train.mine.estimator = 'my_pipeline:make_pipelines': my_pipeline has no "
            "attribute 'make_pipelines'; did you mean \"make_pipeline\"?",
        ),
        (
            "validate.my_gate={detector: my_pipeline:wrong_shape}",
            "validate.my_gate.detector: my_pipeline:wrong_shape returned shape (14,) for 15 rows",
        ),
    ],
)
def test_bad_references_are_refused_before_any_task(tmp_path, capsys, override, message):
    """Must hold 3 (in this process, to spare a start-up): a missing attribute; a gate
    tried on a few rows of the data, which returns the wrong shape."""
    output = tmp_path / "out"
    args = ["--local", "--config", str(OWN_CONFIG), "--set", override, "--output-dir", str(output)]
    assert message in _refused(capsys, *args)
    assert not output.exists()


def test_dry_run_names_the_modules_the_image_must_provide(capsys):
    """Must hold 4."""
    args = ["--dry-run", "--config", str(OWN_CONFIG), "--pipeline-root", "gs://demo-bucket/root"]
    assert submit.main(args) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # the request body, as before
    note = next(line for line in captured.err.splitlines() if "image must provide" in line)
    assert "my_pipeline (train.mine.estimator, validate.my_schema.schema" in note
    assert "lightgbm (train.lgbm.estimator)" in note


# --- end to end ---------------------------------------------------------------------------


@pytest.mark.slow
def test_own_pipeline_and_gates_run_end_to_end(tmp_path):
    """Must hold 1 and 2: Iris with the user's Pipeline, LightGBM, a schema and a function."""
    output = tmp_path / "out"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_command(
        "submit.py",
        "--local",
        "--config",
        str(OWN_CONFIG),
        *set_args("trials=2", f"mlflow.tracking_uri={tracking}", "mlflow.log_models=false"),
        "--output-dir",
        str(output),
        "--keep-artifacts",
        env=USER_ENV,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = pd.read_csv(output / "summary.csv")
    detection = pd.read_csv(output / "detection.csv")
    defenses = {"none", "knn", "my_schema", "my_gate"}
    for model in ("mine", "lgbm"):
        rows = summary[(summary["model"] == model) & (summary["metric"] == "accuracy")]
        assert set(rows["defense"]) == defenses
        assert rows["mean"].between(0, 1).all()
    assert {"my_schema", "my_gate"} <= set(detection["detector"])

    def schema(level, attack, metric):
        rows = detection[
            (detection["detector"] == "my_schema")
            & (detection["poison_level"] == level)
            & (detection["attack"] == attack)
            & (detection["metric"] == metric)
        ]
        return float(rows["mean"].iloc[0])

    # A range check catches out-of-range features and is blind to flipped labels.
    assert schema(0.1, "feature_noise", "recall") >= 0.9
    assert schema(0.1, "label_flip", "recall") <= 0.1
    assert schema(0.0, "label_flip", "flag_rate") <= 0.05
    assert schema(0.0, "feature_noise", "flag_rate") <= 0.05

    # The console's confusion matrices: numbered slots in train.models order, any model.
    evaluated = sorted(output.glob("artifacts/*/for-loop-*/evaluate/executor_output.json"))
    assert len(evaluated) == 2  # one per level
    for executor_output in evaluated:
        artifacts = json.loads(executor_output.read_text())["artifacts"]
        slots = [artifacts[f"confusion_{i}"]["artifacts"][0]["metadata"] for i in range(1, 5)]
        assert [slot.get("model") for slot in slots] == [
            "logistic_regression",
            "mine",
            "lgbm",
            None,
        ]
        assert all("confusionMatrix" in slot for slot in slots[:3])

    import mlflow

    mlflow.set_tracking_uri(tracking)
    runs = mlflow.search_runs(
        experiment_names=["data-poisoning"], filter_string="params.model = 'lgbm'"
    )
    assert len(runs) == 2 * 2 * len(defenses)
    assert set(runs["params.estimator"]) == {"lightgbm:LGBMClassifier"}
    assert set(runs["params.estimator.n_estimators"]) == {"30"}


# --- a certified model around the user's model ---------------------------------------------


def test_a_certified_model_wraps_the_users_pipeline():
    """``base`` may name the user's own model: its section becomes the base's parameters,
    each partition fits the user's Pipeline, and the image must provide its module."""
    raw = _own(
        ["cert"],
        train__mine={"estimator": "my_pipeline:make_pipeline", "C": 2.0},
        train__cert={"aggregate": "dpa", "base": "mine", "partitions": 3},
    )
    config = validate_config(raw)
    assert config["train"]["cert"]["base_params"]["estimator"] == "my_pipeline:make_pipeline"
    assert user_modules(config) == {"my_pipeline": ["train.cert.base_params.estimator"]}
    iris, _ = load_dataset("sklearn:iris")
    model = make_model("cert", config["train"]["cert"], random_state=0).fit(iris.X, iris.y)
    assert len(model.estimators_) == 3
    assert all(type(m).__name__ == "Pipeline" for m in model.estimators_)
    assert (model.predict(iris.X) == iris.y).mean() > 0.8
    with pytest.raises(PoisonlabError, match=r"train\.cert\.base_params"):
        validate_config(
            _own(
                ["cert"],
                train__mine={"estimator": "my_pipeline:make_pipeline"},
                train__cert={"aggregate": "dpa", "base": "mine", "base_params": {"C": 1.0}},
            )
        )


# --- a team's own pipeline on a real table ----------------------------------------------

CREDIT = str(ROOT / "tests" / "data" / "credit_data.csv")


def _credit(encode: str):
    """credit_data as a run loads it: ID dropped, gaps filled, text columns encoded."""
    dataset, _ = load_dataset(
        CREDIT, "Status", impute="most_frequent", encode=encode, drop_columns=["rownames"]
    )
    return dataset


def test_a_pipeline_selecting_columns_by_name_is_given_the_datasets_columns():
    """A ColumnTransformer by name works: the model sees a DataFrame under the dataset's
    feature names (text columns under their own names with encode: ordinal), and a
    DataFrame with those columns in another order (an MLflow input) predicts the same."""
    from poisonlab.models import check_user_model, fit_model, predict_classes

    credit = _credit("ordinal")
    section = {"estimator": "my_pipeline:credit_pipeline", "C": 0.5}
    rows = sample_rows(credit.y)
    check_user_model("team", section, credit.X[rows], credit.y[rows], credit.feature_names)
    fitted = fit_model("team", section, credit.X, credit.y, 0, credit.feature_names)
    by_name = fitted.named_steps["model"].named_steps["columns"]
    assert list(by_name.feature_names_in_) == credit.feature_names
    shuffled = pd.DataFrame(credit.X, columns=credit.feature_names).iloc[:, ::-1]
    assert np.array_equal(fitted.predict(shuffled), predict_classes(fitted, credit.X))


def test_columns_a_pipeline_names_but_the_table_lacks_are_one_line_naming_the_fix():
    """With one-hot encoding the text columns are Home=owner, ...: the check says so."""
    from poisonlab.models import check_user_model

    credit = _credit("onehot")
    rows = sample_rows(credit.y)
    with pytest.raises(PoisonlabError) as refused:
        check_user_model(
            "team",
            {"estimator": "my_pipeline:credit_pipeline"},
            credit.X[rows],
            credit.y[rows],
            credit.feature_names,
        )
    message = str(refused.value)
    assert message.startswith("config: train.team.estimator: my_pipeline:credit_pipeline raised")
    assert "Home=owner" in message and "dataset.encode: ordinal" in message
    assert "\n" not in message


def test_an_estimator_instance_is_cloned_with_the_sections_keys_set():
    from my_pipeline import IRIS_MODEL

    section = {"estimator": "my_pipeline:IRIS_MODEL", "classify__C": 0.25}
    model = make_model("mine", section, random_state=5)
    assert model.get_params()["classify__C"] == 0.25
    assert model.get_params()["classify__random_state"] == 5
    assert IRIS_MODEL.get_params()["classify__C"] == 1.0  # the user's object is not changed


def test_the_check_names_a_bad_parameter_value_of_a_user_model():
    """A run skips scikit-learn's parameter check; the check before it does not."""
    from poisonlab.models import check_user_model

    iris, _ = load_dataset("sklearn:iris")
    rows = sample_rows(iris.y)
    section = {"estimator": "sklearn.linear_model:LogisticRegression", "C": "big"}
    with pytest.raises(PoisonlabError, match=r"train\.lr\.estimator: .*'C' parameter"):
        check_user_model("lr", section, iris.X[rows], iris.y[rows], iris.feature_names)


def test_a_schema_checking_a_type_the_table_lacks_is_refused_not_every_row_flagged():
    iris, _ = load_dataset("sklearn:iris")
    with pytest.raises(
        PoisonlabError, match=r"column 'target' is \w+, checked for dtype\('int64'\)"
    ):
        run_gate("s", {"schema": "my_pipeline:NUMBERED_SPECIES"}, iris.X, iris.y, IRIS_NAMES)


def test_a_model_failing_on_a_poisoned_split_fails_alone_with_a_one_line_reason():
    """Clean Iris training splits hold as many rows of each class; flipped labels do not.
    The failing model gets a ``failed`` record and a note naming it and the split; the
    other model of the level keeps its metrics."""
    from poisonlab.report import failed_fit_notes

    iris, _ = load_dataset("sklearn:iris")
    config = validate_config(
        _own(
            models=["even", "logistic_regression"],
            train__even={"estimator": "my_pipeline:FailsOnUnevenClasses"},
        )
        | {"trials": 1, "poison": {"levels": [0.0, 0.1], "attacks": ["label_flip"]}}
    )
    masks = split_masks(iris.y, 0.2, 0, 1)
    clean = list(experiment.poison_level(iris, masks, config, 0.0))
    assert experiment.failed_fits(experiment.train_level(clean, {}, config)) == []
    flipped = list(experiment.poison_level(iris, masks, config, 0.1))
    models = experiment.train_level(flipped, {}, config, iris.feature_names)
    error = (
        "train.even: fitting trial 0's label_flip set (defence none) raised "
        "FloatingPointError: the solver diverged"
    )
    failed = experiment.failed_fits(models)
    assert failed == [
        {"trial": 0, "attack": "label_flip", "model": "even", "defense": "none", "error": error}
    ]
    records = experiment.evaluate_level(models, iris, masks, flipped, {}, 0.1)
    by_model = records[records["detector"] == ""].groupby("model")["metric"].apply(set)
    assert by_model["even"] == {experiment.FAILED}
    assert "accuracy" in by_model["logistic_regression"]
    [note] = failed_fit_notes({"failed_fits": [{"level": 0.1, **f} for f in failed]}, 1)
    assert note.startswith(
        f"At level 0.1 under label_flip, model even failed (its fit or prediction raised) "
        f"in 1 of 1 trials: {error}."
    )


def test_a_gate_failing_on_a_poisoned_split_fails_alone_with_a_one_line_reason(tmp_path):
    """Flipped labels leave Iris's classes uneven, and the gate raises there. It gets a
    ``failed`` record (no precision or recall invented), its defence is not trained, and
    the built-in detector and the models of the level keep their results, through the
    detections file the validate step writes and the train and evaluate steps read."""
    from poisonlab.detectors import Detection
    from poisonlab.report import failed_detection_notes

    iris, _ = load_dataset("sklearn:iris")
    config = validate_config(
        _own(
            detectors=["uneven", "zscore"],
            validate__uneven={"detector": "my_pipeline:fails_on_uneven_classes"},
        )
        | {"trials": 1, "poison": {"levels": [0.1], "attacks": ["label_flip"]}}
    )
    masks = split_masks(iris.y, 0.2, 0, 1)
    flipped = list(experiment.poison_level(iris, masks, config, 0.1))
    path = tmp_path / "detections.parquet"
    experiment.write_detections(experiment.detect_level(flipped, config, 3, IRIS_NAMES), path)
    detections = experiment.read_detections(path)
    error = (
        "validate.uneven.detector: my_pipeline:fails_on_uneven_classes raised "
        "ZeroDivisionError: the classes are uneven"
    )
    [failed] = experiment.failed_detections(detections)
    assert failed["detector"] == "uneven" and failed["error"].startswith(error)
    assert failed["error"].endswith("(on trial 0's label_flip set)")
    assert isinstance(detections[(0, "label_flip", "zscore")], Detection)
    models = experiment.train_level(flipped, detections, config, iris.feature_names)
    assert (
        models[(0, "label_flip", "logistic_regression", "uneven")]
        == detections[(0, "label_flip", "uneven")]
    )
    records = experiment.evaluate_level(models, iris, masks, flipped, detections, 0.1)
    detected = records[records["detector"] != ""].groupby("detector")["metric"].apply(set)
    assert detected["uneven"] == {experiment.FAILED}
    assert {"precision", "recall", "flag_rate"} <= detected["zscore"]
    trained = records[records["detector"] == ""].groupby("defense")["metric"].apply(set)
    assert trained["uneven"] == {experiment.DETECTOR_FAILED}
    assert "accuracy" in trained["none"] and "accuracy" in trained["zscore"]
    provenance = {"failed_detections": [{"level": 0.1, **failed}], "failed_levels": []}
    [note] = failed_detection_notes(provenance, config)
    assert note.startswith("Detector uneven failed on 1 of its 1 training splits (levels 0.1; ")
    assert error in note and "the gate fails, not evaluated" in note  # uneven is the gate's


def test_the_gate_fails_a_level_where_its_detector_failed_not_passes_it():
    """A missing flag rate is no flag rate of 0: the verdict says why it fails."""
    from poisonlab.gate import verdicts

    config = validate_config(_own(detectors=["zscore"]))
    checks = pd.DataFrame(
        {
            "poison_level": 0.1,
            "attack": "label_flip",
            "trial": [0, 1],
            "flag_rate": [0.0, np.nan],  # trial 1: zscore raised
            "class_shift": 0.0,
        }
    )
    [row] = verdicts(checks, config).to_dict("records")
    assert row["verdict"] == "fail" and row["pass_share"] == 0.5
    assert row["reason"].startswith("not evaluated: detector zscore failed in 1 of 2 trials")
    ran = verdicts(checks.assign(flag_rate=0.0), config).iloc[0]
    assert ran["verdict"] == "pass" and ran["reason"] == ""


def test_the_command_names_a_failed_detector_once_and_exits_1(tmp_path, capsys):
    found = {"level": 0.1, "attack": "label_flip", "detector": "uneven"}
    failed = [{**found, "trial": t, "error": f"validate.uneven: trial {t}"} for t in (0, 1)]
    manifest = {"provenance": {"failed_levels": [], "failed_fits": [], "failed_detections": failed}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert submit.report_failed_levels(tmp_path) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: detector uneven failed at poison level 0.1 under label_flip")
    assert "(validate.uneven: trial 0)" in line


def test_a_users_scikit_learn_pipeline_is_stored_with_skops_not_pickle(tmp_path):
    """Its NamedColumns step is a trusted type, so skops stores it (no pickle), and the
    model loaded back predicts from a DataFrame of the feature columns."""
    import mlflow.sklearn

    from poisonlab.model_folders import example_rows, save_model_folder
    from poisonlab.models import fit_model

    iris, _ = load_dataset("sklearn:iris")
    fitted = fit_model(
        "mine", {"estimator": "my_pipeline:make_pipeline"}, iris.X, iris.y, 0, iris.feature_names
    )
    folder = tmp_path / "model"
    assert save_model_folder(fitted, example_rows(iris), folder, (0.0, "a", "mine", "none")) == (
        "skops"
    )
    loaded = mlflow.sklearn.load_model(str(folder))
    frame = pd.DataFrame(iris.X, columns=iris.feature_names)
    assert np.array_equal(loaded.predict(frame), fitted.predict(iris.X))


def test_code_needing_more_rows_than_the_check_sample_is_tried_on_the_whole_table():
    """Early stopping holds out 10% of the rows, fewer than 3 classes of Iris's 15-row
    sample: refusing it would be wrong, as the run fits it on 120 rows."""
    from poisonlab.preflight import check_user_code

    iris, _ = load_dataset("sklearn:iris")
    section = {
        "estimator": "sklearn.ensemble:HistGradientBoostingClassifier",
        "early_stopping": True,
        "max_iter": 5,
    }
    config = validate_config(_own(models=["early"], train__early=section))
    check_user_code(iris, config)  # no error
    broken = validate_config(
        _own(detectors=["g"], validate__g={"detector": "my_pipeline:wrong_shape"})
    )
    with pytest.raises(PoisonlabError, match=r"returned shape \(14,\) for 15 rows"):
        check_user_code(iris, broken)  # still refused, with the sample's error


def test_a_users_knn_pipeline_keeps_its_knn_certificate():
    """Its Pipeline sits behind NamedColumns: the certificate looks inside it."""
    from poisonlab.certify.evaluation import certify_model
    from poisonlab.models import fit_model

    iris, _ = load_dataset("sklearn:iris")
    section = {"estimator": "my_pipeline:scaled_knn"}
    fitted = fit_model("near", section, iris.X, iris.y, 0, iris.feature_names)
    predicted, _ = certify_model(fitted, iris.X[:10])
    assert np.array_equal(predicted, fitted.predict(iris.X[:10]))


def test_the_user_base_model_of_a_certified_model_meets_the_data_before_the_run():
    from poisonlab.preflight import check_user_code

    iris, _ = load_dataset("sklearn:iris")
    config = validate_config(
        _own(
            models=["cert"],
            train__cert={"aggregate": "dpa", "base": "mine", "partitions": 5},
            train__mine={"estimator": "my_pipeline:credit_pipeline"},
        )
    )
    with pytest.raises(PoisonlabError) as refused:
        check_user_code(iris, config)
    message = str(refused.value)
    assert message.startswith("config: train.mine.estimator: my_pipeline:credit_pipeline raised")
    assert message.endswith("petal width (cm): select among them")  # no text columns here


def test_a_gates_series_is_read_by_its_index_not_its_position():
    """A Series built class by class (pd.concat over groups) is out of row order."""
    out_of_order = pd.Series([True, False, False], index=[2, 0, 1])
    scores = pd.Series([3.0, 1.0, 2.0], index=[2, 0, 1])
    found = as_detection((scores, out_of_order), 3, "validate.g.detector", "m:f")
    assert found.flags.tolist() == [False, False, True]
    assert found.scores.tolist() == [1.0, 2.0, 3.0]
    foreign = pd.Series([True, False, False], index=[10, 11, 12])
    with pytest.raises(PoisonlabError, match=r"validate\.g\.detector: m:f .*index is not"):
        as_detection(foreign, 3, "validate.g.detector", "m:f")


def test_the_command_names_a_failed_fit_once_and_exits_1(tmp_path, capsys):
    fit = {"level": 0.1, "attack": "label_flip", "model": "even", "defense": "none"}
    fits = [{**fit, "trial": trial, "error": f"train.even: trial {trial}"} for trial in (0, 1)]
    manifest = {"provenance": {"failed_levels": [], "failed_fits": fits}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert submit.report_failed_levels(tmp_path) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: model even failed at poison level 0.1 under label_flip")
    assert "(train.even: trial 0)" in line


def test_a_near_miss_of_a_parameter_a_kwargs_class_would_swallow_is_warned():
    """LightGBM takes any key and ignores one it does not know: n_estimator left 100 trees."""
    from poisonlab.models import misspelt_keywords

    lgbm = {"estimator": "lightgbm:LGBMClassifier", "n_estimator": 20, "min_data_in_leaf": 5}
    assert misspelt_keywords("lgbm", lgbm) == [
        "train.lgbm.n_estimator is not a parameter of LGBMClassifier, which passes it on "
        "unchecked; did you mean n_estimators?"
    ]
    named = {"estimator": "sklearn.linear_model:LogisticRegression", "C": 2.0}
    assert misspelt_keywords("lr", named) == []  # no **kwargs: scikit-learn refuses a typo


def test_a_stock_model_choking_on_raw_text_is_told_of_the_encoded_view():
    """A stock forest or LGBMClassifier on a raw export raises numpy's "could not convert
    string to float: 'rent'"; "fix it, or the config's keyword arguments" sent a new user to
    their code, when `input: encoded` is the one-key fix."""
    from poisonlab.preflight import check_experiment

    def config(forest: dict) -> dict:
        return validate_config(
            {
                "dataset": {
                    "source": CREDIT,
                    "label_column": "Status",
                    "drop_columns": ["rownames"],
                    "impute": "most_frequent",
                    "encode": "onehot",
                },
                "poison": {"levels": [0.0, 0.1], "attacks": ["label_flip"]},
                "validate": {"detectors": ["zscore"]},
                "train": {"models": ["forest"], "forest": forest},
                "trials": 1,
            }
        )

    stock = {"estimator": "sklearn.ensemble:RandomForestClassifier", "n_estimators": 5}
    with pytest.raises(PoisonlabError) as refused:
        check_experiment(config(stock))
    message = str(refused.value)
    assert "could not convert string to float" in message and "\n" not in message
    assert "raw rows, with text in Home, Marital, Records, Job and gaps in Home" in message
    assert "set train.forest.input: encoded" in message
    check_experiment(config({**stock, "input": "encoded"}))
    # An error that is not about the view keeps its plain fix.
    with pytest.raises(PoisonlabError, match=r"must be an int.*; fix it, or the config's"):
        check_experiment(config({**stock, "input": "encoded", "max_depth": -3}))
