"""dataset.split (random, group, time), built-in models' parameters, and models that fail
when they predict, on real tables (tests/data/README.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from poisonlab.config import validate_config
from poisonlab.data import read_configured, split_masks
from poisonlab.errors import PoisonlabError
from poisonlab.experiment import SUMMARY_COLUMNS, run_experiment
from poisonlab.findings import _floor_sentences
from poisonlab.preflight import check_experiment, data_warnings, trial_splits
from poisonlab.splits import group_masks, split_sentence, time_masks
from tests.conftest import ROOT
from tests.pipeline_steps import run_steps

USERCODE = ROOT / "tests" / "usercode"
sys.path.insert(0, str(USERCODE))

PANEL = str(ROOT / "tests/data/psid7682.csv")  # 595 people x 7 years, `id`, `year`
WEEKS = str(ROOT / "tests/data/cormorants.csv")  # nests watched over 13 weeks
RARE = str(ROOT / "tests/data/badhealth.csv")  # `badh`: 10% in bad health


def _config(source: str, label: str, split: dict | None = None, **extra) -> dict:
    raw = {
        "dataset": {"source": source, "label_column": label, "encode": "onehot"},
        "poison": {"levels": [0.0], "attacks": ["label_flip"]},
        "validate": {"detectors": []},
        "train": {"models": ["logistic_regression"]},
        "trials": 2,
        "mlflow": {"log_models": False},
    }
    if split is not None:
        raw["dataset"]["split"] = split
    for key, value in extra.items():  # a section's keys added to (or set over) the above
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return validate_config(raw)


def _level0(summary: pd.DataFrame, model: str, metric: str = "balanced_accuracy") -> float:
    rows = summary[(summary["model"] == model) & (summary["metric"] == metric)]
    return float(rows[rows["defense"] == "none"]["mean"].iloc[0])


# --- the splits themselves ---------------------------------------------------------------


def test_without_a_split_the_masks_are_todays_stratified_split():
    config = _config(PANEL, "union", trials=3)
    _, dataset, _ = read_configured(config["dataset"])
    assert dataset.split_values is None
    expected = split_masks(dataset.y, 0.2, 42, 3, dataset.class_names)
    assert np.array_equal(trial_splits(dataset, config), expected)


def test_a_group_split_keeps_every_group_on_one_side_and_draws_anew_each_trial():
    config = _config(PANEL, "union", {"by": "group", "column": "id"}, trials=3)
    _, dataset, _ = read_configured(config["dataset"])
    assert "id" not in dataset.feature_names  # the split column is no feature by default
    masks = trial_splits(dataset, config)
    people = dataset.split_values
    for test in masks:
        assert not set(people[test]) & set(people[~test])
        assert 0.15 < test.mean() < 0.25  # 1 of 5 folds of people for test_size 0.2
        # Stratified as groups allow: the test share of union members near the table's.
        assert abs(dataset.y[test].mean() - dataset.y.mean()) < 0.03
    assert not np.array_equal(masks[0], masks[1])
    assert np.array_equal(masks, trial_splits(dataset, config))  # same seed, same split
    # The split travels in the pipeline's config parameter, which keys --cache and Vertex.
    from pipelines.vertex import parameter_values

    assert (
        '"split":{"by":"group","column":"id","feature":false}'
        in (parameter_values(config)["config"])
    )


def test_many_groups_are_shuffled_whole_into_test_up_to_its_share():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 6000, 30000)  # past MANY_GROUPS: no stratifying search
    y = (rng.random(30000) < 0.1).astype(int)
    masks = group_masks(y, groups, 0.2, 42, 2)
    for test in masks:
        assert not set(groups[test]) & set(groups[~test])
        assert abs(test.mean() - 0.2) < 0.001
        assert abs(y[test].mean() - y.mean()) < 0.01
    assert not np.array_equal(masks[0], masks[1])


def test_a_time_split_tests_on_the_latest_rows_with_ties_together():
    times = np.array([3, 1, 2, 2, 5, 4, 5, 1, 3, 4])
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 1, 0])
    masks = time_masks(y, times, 0.3, 2)
    assert np.array_equal(masks[0], masks[1])  # every trial shares it
    assert masks[0].sum() == 2 and set(times[masks[0]]) == {5}  # 2 or 4 rows for 3: the later cut
    masks = time_masks(y, times, 0.35, 1)
    assert set(times[masks[0]]) == {4, 5}  # 4 rows: both 4s with the 5s
    dates = np.array([f"2021-01-0{d}" for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 9)], dtype=object)
    assert set(dates[time_masks(y, dates, 0.2, 1)[0]]) == {"2021-01-09"}


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (
            {"by": "grop", "column": "id"},
            "dataset.split.by = 'grop' is not a kind of split; did you mean \"group\"?",
        ),
        ({"by": "group"}, "dataset.split.column is not set, and a split by group needs one"),
        (
            {"by": "random", "column": "id"},
            "dataset.split.column = 'id' is for a split by group or time",
        ),
        (
            {"by": "group", "colum": "id"},
            'dataset.split.colum is not a known key; did you mean "column"?',
        ),
    ],
)
def test_bad_split_settings_are_one_line_errors(split, message):
    with pytest.raises(PoisonlabError) as error:
        _config(PANEL, "union", split)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"by": "group", "column": "idd"}, "dataset.split.column: 'idd' is not a column of"),
        ({"by": "group", "column": "union"}, "dataset.split.column: 'union' is the label column"),
        ({"by": "time", "column": "occupation"}, "neither a number nor a date"),
        ({"by": "time", "column": "gender", "feature": True}, "neither a number nor a date"),
    ],
)
def test_a_split_column_the_table_cannot_split_by_is_refused_in_one_line(split, message):
    with pytest.raises(PoisonlabError, match=message) as error:
        check_experiment(_config(PANEL, "union", split))
    assert "\n" not in str(error.value)


def test_a_class_inside_one_group_cannot_reach_test_and_is_refused():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    groups = np.array(["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"])
    with pytest.raises(PoisonlabError, match=r"class 'rare' is in one group of 'shop' \('e'\)"):
        group_masks(y, groups, 0.2, 42, 1, ["x", "y", "rare"], "shop")


# --- must hold 1: a panel's people held out ---------------------------------------------


_RF = {"train": {"models": ["random_forest"]}, "trials": 3}


def test_holding_out_people_matches_scikit_learn_and_is_well_below_a_row_split():
    """PSID 1976-82: a random forest told union members from others. With people held
    out it scores what scikit-learn's GroupShuffleSplit gives outside poisonlab, and well
    below a row split, where the same people sit in train and test."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupShuffleSplit

    # rownames numbers the rows person by person: a feature would name the person.
    people = {"drop_columns": ["rownames"]}
    grouped = _config(PANEL, "union", {"by": "group", "column": "id"}, dataset=people, **_RF)
    # The same features (the id dropped too): only the split differs.
    rows = _config(PANEL, "union", dataset={"drop_columns": ["rownames", "id"]}, **_RF)
    by_group = _level0(run_experiment(grouped)[0], "random_forest")
    by_row = _level0(run_experiment(rows)[0], "random_forest")

    table = pd.read_csv(PANEL)
    y = table["union"].to_numpy()
    X = pd.get_dummies(table.drop(columns=["union", "id", "rownames"]), dtype=float).to_numpy()
    outside = []
    for seed in range(10):
        train, test = next(
            GroupShuffleSplit(1, test_size=0.2, random_state=seed).split(X, y, table["id"])
        )
        forest = RandomForestClassifier(50, random_state=seed).fit(X[train], y[train])
        outside.append(balanced_accuracy_score(y[test], forest.predict(X[test])))
    assert abs(by_group - np.mean(outside)) <= 0.03, (by_group, np.mean(outside))
    assert by_row - by_group >= 0.08, (by_row, by_group)


def test_a_repeated_entity_id_gets_a_warning_naming_the_split_to_use():
    config = _config(PANEL, "union")
    frame, dataset, _ = read_configured(config["dataset"])
    warnings = data_warnings(frame, dataset, trial_splits(dataset, config), config["dataset"])
    [line] = [w for w in warnings if "'id'" in w]
    assert 'set dataset.split={by: group, column: "id"}' in line and "595 values" in line
    assert any('dataset.split={by: time, column: "year"}' in w for w in warnings)
    # Split by the id, neither is said again, and the id is no feature to warn about.
    config = _config(PANEL, "union", {"by": "group", "column": "id"})
    frame, dataset, _ = read_configured(config["dataset"])
    warnings = data_warnings(frame, dataset, trial_splits(dataset, config), config["dataset"])
    assert not [w for w in warnings if "'id'" in w or "'year'" in w]


# --- must hold 2: a time split, checked by the user's own model ---------------------------


def test_a_time_split_never_tests_on_weeks_before_training_and_says_so(tmp_path: Path):
    import split_models

    config = _config(
        WEEKS,
        "nest",
        {"by": "time", "column": "week", "feature": True},
        dataset={"drop_columns": ["rownames"], "impute": "most_frequent"},
        train={
            "models": ["watcher", "logistic_regression"],
            "watcher": {"estimator": "split_models:WeekWatcher"},
        },
        poison={"levels": [0.0, 0.2]},
    )
    split_models.WEEKS_SEEN.clear()
    results = run_steps(config, tmp_path / "run")
    assert split_models.WEEKS_SEEN  # predictions were watched
    assert all(earliest >= latest for latest, earliest in split_models.WEEKS_SEEN)
    summary = pd.read_csv(results / "summary.csv")
    assert "failed" not in set(summary["metric"])
    split = json.loads((results / "manifest.json").read_text())["provenance"]["split"]
    assert split["by"] == "time" and split["column"] == "week"
    first = split["trials"][0]
    assert first["test_time"][0] >= first["train_time"][1]
    assert first == {**split["trials"][1], "trial": 0}  # shared by every trial
    report = (results / "report.md").read_text()
    assert "Test split: by time on 'week'" in report
    assert "trials vary only the poisoning and the models" in report


# --- must hold 4: any parameter of a built-in model ---------------------------------------


def test_class_weight_lifts_logistic_regression_on_a_rare_class():
    """badhealth: 112 of 1127 people in bad health. Weighing them up lifts balanced
    accuracy by more than 0.1."""
    kept = {"drop_columns": ["rownames"]}
    plain = _config(RARE, "badh", dataset=kept, trials=5)
    weighted = _config(
        RARE,
        "badh",
        dataset=kept,
        trials=5,
        train={"logistic_regression": {"class_weight": "balanced"}},
    )
    before = _level0(run_experiment(plain)[0], "logistic_regression")
    after = _level0(run_experiment(weighted)[0], "logistic_regression")
    assert after - before >= 0.1, (before, after)


def test_a_misspelt_estimator_parameter_is_refused_with_the_right_name():
    with pytest.raises(PoisonlabError) as error:
        validate_config({"train": {"random_forest": {"n_estimater": 50}}})
    assert str(error.value) == (
        "config: train.random_forest.n_estimater is not a parameter it takes; did you mean "
        '"n_estimators"?'
    )
    config = validate_config({"train": {"random_forest": {"class_weight": "balanced_subsample"}}})
    assert config["train"]["random_forest"]["class_weight"] == "balanced_subsample"
    with pytest.raises(PoisonlabError, match=r"train\.svm\.random_state is set for every trial"):
        validate_config({"train": {"svm": {"random_state": 1}}})
    with pytest.raises(PoisonlabError, match=r"class_weight as a mapping of classes is not"):
        validate_config({"train": {"decision_tree": {"class_weight": {0: 1, 1: 5}}}})


def test_a_model_at_the_majority_floor_under_balanced_accuracy_is_told_of_class_weights():
    summary = pd.DataFrame(
        [
            (
                0.0,
                "label_flip",
                "logistic_regression",
                "none",
                "balanced_accuracy",
                0.5,
                0.49,
                0.51,
                3,
            )
        ],
        columns=SUMMARY_COLUMNS,
    )
    [told] = _floor_sentences(summary, "balanced_accuracy", 0.5, ("logistic_regression",))
    assert "train.logistic_regression: {class_weight: balanced}" in told
    [plain] = _floor_sentences(summary, "balanced_accuracy", 0.5, ())
    assert "class_weight" not in plain
    from poisonlab.models import reweighable_models

    train = {"models": ["logistic_regression", "knn", "random_forest"]}
    train["random_forest"] = {"class_weight": "balanced"}
    assert reweighable_models(validate_config({"train": train})["train"]) == (
        "logistic_regression",  # knn takes no class_weight; the forest has one
    )


# --- must hold 5: a model whose predict raises fails alone --------------------------------


def test_a_model_whose_predict_raises_on_the_test_split_fails_alone(tmp_path: Path, capsys):
    import submit

    config = _config(
        RARE,
        "badh",
        dataset={"drop_columns": ["rownames"]},
        train={
            "models": ["lookup", "logistic_regression"],
            "lookup": {"estimator": "split_models:Lookup"},
        },
        validate={"detectors": ["knn"]},
    )
    check_experiment(config)  # it predicts its own rows, so the check before the run passes
    results = run_steps(config, tmp_path / "run")
    summary = pd.read_csv(results / "summary.csv")
    lookup = summary[summary["model"] == "lookup"]
    assert set(lookup["metric"]) == {"failed"}
    assert set(lookup["defense"]) == {"none", "knn"}  # its defended fits failed there too
    assert "accuracy" in set(summary[summary["model"] == "logistic_regression"]["metric"])
    capsys.readouterr()
    assert submit.report_failed_levels(results) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: model lookup failed at poison level 0 under label_flip")
    assert "predict on trial 0's test split" in line and "KeyError" in line
    assert (
        "model lookup failed (its fit or prediction raised)" in (results / "report.md").read_text()
    )


def test_the_report_says_the_split_kind():
    record = {
        "by": "group",
        "column": "id",
        "feature": False,
        "trials": [
            {"trial": 0, "train_rows": 80, "test_rows": 20, "train_groups": 8, "test_groups": 2}
        ],
    }
    assert split_sentence(record).startswith("Test split: by group of 'id' ('id' is not a feature)")
    assert "random" in split_sentence(None)


def test_few_unlike_groups_are_not_the_same_test_groups_in_every_trial():
    """modeldata hpc_data's 14 protocols each hold a different class mix: scikit-learn's
    StratifiedGroupKFold shuffles only groups of equal class spread, so every seed gave
    one partition, and every trial tested on the same 2 protocols (C and J), while the
    report said each trial held out its own."""
    rng = np.random.default_rng(0)
    sizes = [30, 45, 60, 75, 90, 105, 120, 135, 150, 165]
    groups = np.repeat(np.arange(10), sizes)
    # Group g's share of class 1 rises with g: no two groups alike.
    y = np.concatenate([(rng.random(n) < (g + 1) / 12).astype(int) for g, n in enumerate(sizes)])
    masks = group_masks(y, groups, 0.2, 42, 5)
    tested = [frozenset(np.unique(groups[test])) for test in masks]
    assert len(set(tested)) == 5  # five trials, five different sets of groups
    assert set().union(*tested) == set(range(10))  # k / m trials test every group once
    for test in masks:
        assert not set(groups[test]) & set(groups[~test])
    from poisonlab.splits import split_record

    record = split_record({"by": "group", "column": "shop", "feature": False}, groups, masks)
    sentence = split_sentence(record)
    sizes_held = sorted({int(test.sum()) for test in masks})
    assert f"({sizes_held[0]} to {sizes_held[-1]} rows)" in sentence


def test_timestamps_with_an_offset_order_rows_and_a_mix_names_the_odd_value():
    """An export's ISO 8601 timestamps with an offset ('2020-03-10T10:00:00Z', as in
    medicaldata covid_testing written out by a warehouse) raised pandas' TypeError
    "Cannot use .astype to convert from timezone-aware dtype" as a traceback."""
    from poisonlab.splits import time_keys

    naive = np.array(["2020-03-10", "2020-03-09", "2020-03-11T08:00:00"], dtype=object)
    aware = np.array(
        ["2020-03-10T10:00:00Z", "2020-03-09T23:00:00-01:00", "2020-03-11T08:00:00+00:00"],
        dtype=object,
    )
    assert list(np.argsort(time_keys(aware))) == list(np.argsort(time_keys(naive))) == [1, 0, 2]
    stamps = pd.Series(pd.to_datetime(aware[[0, 2]], format="ISO8601", utc=True))
    assert time_keys(stamps.to_numpy())[0] < time_keys(stamps.to_numpy())[1]
    assert time_keys(stamps.dt.tz_convert("Europe/Paris")).tolist() == time_keys(stamps).tolist()
    # A column mixing ISO dates with another format quotes a value it cannot read.
    with pytest.raises(PoisonlabError, match=r"'when' holds '03/09/2020', neither"):
        time_keys(np.array(["2020-03-10", "03/09/2020"], dtype=object), "when")


def test_a_date_column_of_a_file_sorted_by_date_is_not_called_an_entity_id():
    """covid_testing sorted by day: each date's rows sit in one block, as a panel's
    person's do, and the date (kept or dropped) was called "the id of an entity with
    several rows" with the advice to split by group on it."""
    from poisonlab.splits import split_warnings

    days = pd.date_range("2020-03-01", periods=40, freq="D")
    frame = pd.DataFrame(
        {
            "test_date": np.repeat(days.strftime("%Y-%m-%d"), 5),
            "stamp": np.repeat(days.strftime("%Y-%m-%dT10:00:00Z"), 5),
            "when": np.repeat(days, 5),
            "person": np.repeat(np.arange(40), 5),
            "result": np.tile([0, 1, 0, 1, 1], 40),
        }
    )
    found = split_warnings(frame, {"drop_columns": ["test_date"]}, "result")
    assert len(found) == 1 and "'person' looks like the id of an entity" in found[0]
