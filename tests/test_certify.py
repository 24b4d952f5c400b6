"""Certified models (poisonlab.certify): exact partitions, sound certificates, the issue's numbers.

Soundness is tested against real attacks on real models: the strongest relabelling
a certificate allows never changes a prediction, and one row more can.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from poisonlab import experiment
from poisonlab.certify import (
    UNITS,
    buckets,
    certified_accuracy,
    finite_aggregation_radius,
    vote_counts,
    vote_gap,
)
from poisonlab.certify.aggregate import PartitionAggregation
from poisonlab.certify.evaluation import certified_records, check_measured
from poisonlab.certify.partition import content_order, spread
from poisonlab.config import load_config
from poisonlab.data import load_configured, split_masks
from poisonlab.errors import PoisonlabError
from poisonlab.models import fit_model

CERTIFIED_TREE = "train.certified_tree={aggregate: dpa, base: decision_tree, partitions: 20}"


def _config(*overrides: str) -> dict:
    return load_config(None, ["train.models=[certified_tree]", CERTIFIED_TREE, *overrides])


def _iris_split(trial: int = 0):
    config = _config()
    dataset, _ = load_configured(config["dataset"])
    test = split_masks(dataset.y, 0.2, 42, trial + 1)[trial]
    return config, dataset.X[~test], dataset.y[~test], dataset.X[test], dataset.y[test]


def _tree(X, y, partitions=20, spread_=1, seed=0) -> PartitionAggregation:
    params = {"max_depth": 3, "min_samples_leaf": 1, "criterion": "gini"}
    return PartitionAggregation("decision_tree", params, partitions, spread_, seed).fit(X, y)


# --- partitions are exact -------------------------------------------------------------


def test_row_order_never_matters_and_relabelling_moves_no_row():
    _, X, y, X_test, _ = _iris_split()
    model = _tree(X, y)
    order = np.random.default_rng(1).permutation(len(y))
    shuffled = _tree(X[order], y[order])
    assert np.array_equal(model.base_predictions(X_test), shuffled.base_predictions(X_test))
    flipped = y.copy()
    flipped[:5] = (y[:5] + 1) % 3
    assert np.array_equal(buckets(X, 20), buckets(X.copy(), 20))
    changed = set(buckets(X[:5], 20))
    before = model.base_predictions(X_test)
    after = _tree(X, flipped).base_predictions(X_test)
    differs = set(np.flatnonzero((before != after).any(axis=0)))
    assert differs <= changed  # only the partitions holding a relabelled row


def test_a_modified_row_changes_at_most_two_partitions():
    _, X, y, X_test, _ = _iris_split()
    before = _tree(X, y).base_predictions(X_test)
    for row in range(10):
        moved = X.copy()
        moved[row] = X[(row + 50) % len(X)] + 0.05
        after = _tree(moved, (y + (row % 2)) % 3).base_predictions(X_test)
        touched = {int(buckets(X[row : row + 1], 20)[0]), int(buckets(moved[row : row + 1], 20)[0])}
        labels = np.flatnonzero(y != (y + (row % 2)) % 3)
        touched |= set(buckets(X[labels], 20).tolist()) if len(labels) else set()
        differs = set(np.flatnonzero((before != after).any(axis=0)))
        assert differs <= touched


def test_a_partition_with_one_class_predicts_it_and_an_empty_one_abstains():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    model = _tree(X, y, partitions=50)
    predictions = model.base_predictions(np.array([[0.5]]))[0]
    assert (predictions == -1).sum() >= 46  # at most 4 partitions hold a row
    assert set(predictions[predictions >= 0]) <= {0, 1}
    assert model.predict_proba(np.array([[0.5]])).sum() == pytest.approx(1.0)


def test_votes_tie_to_the_smaller_class_and_the_gap_counts_the_tie_against_the_winner():
    votes = np.array([[3, 3, 0], [1, 4, 4], [5, 0, 1]])
    assert np.argmax(votes, axis=1).tolist() == [0, 1, 0]
    # winner 0 vs 1 (larger index): 3 - 3 = 0; winner 1 vs 2: 4 - 4 = 0; vs 0: 4 - 2 = 2.
    assert vote_gap(votes).tolist() == [0, 0, 4]


# --- certificates are sound -----------------------------------------------------------


def _flip_partition(model, X, y, x, winner, target):
    """Single relabelled rows of ``model``'s training set, each turning one partition that
    votes ``winner`` at ``x`` into one voting ``target`` (found by refitting that partition
    as ``fit`` does): a list of (row, label)."""
    part = buckets(X, model.partitions)
    votes_at_x = model.base_predictions(x[None, :])[0]
    found = []
    for p in np.flatnonzero(votes_at_x == winner):
        rows = np.flatnonzero(part == p)
        for row in rows:
            relabelled = y.copy()
            relabelled[row] = target
            order = rows[content_order(X[rows], relabelled[rows], np.zeros(len(rows)))]
            base = model.fit_base(int(p), X[order], relabelled[order])
            vote = base if isinstance(base, int) else base.predict(x[None, :])[0]
            if vote == target:
                found.append((int(row), int(target)))
                break
    return found


def test_the_strongest_relabelling_within_the_radius_never_changes_a_prediction():
    """For every certified test row: relabel one row in each of r partitions that voted for
    the prediction, chosen so that each partition then votes for the runner-up, and refit.
    r = radius never changes the prediction; r = radius + 1 does for most rows."""
    _, X, y, X_test, _ = _iris_split()
    X_test = X_test[::2]  # 15 test rows keep it quick
    model = _tree(X, y)
    predicted, radii = model.certify(X_test)
    votes = model.votes(X_test)
    within = beyond = tried = 0
    for i, x in enumerate(X_test):
        winner, radius = predicted[i], int(radii["label_flips"][i])
        others = votes[i] + (np.arange(3) < winner)
        others[winner] = -1
        runner_up = int(np.argmax(others))
        flips = _flip_partition(model, X, y, x, winner, runner_up)
        for r in (radius, radius + 1):
            if len(flips) < r:
                continue
            poisoned = y.copy()
            for row, label in flips[:r]:
                poisoned[row] = label
            changed = _tree(X, poisoned).predict(x[None, :])[0] != winner
            if r == radius:
                within += changed
            else:
                tried += 1
                beyond += changed
    print(f"beyond the radius: {beyond} of {tried} predictions changed")
    assert within == 0
    assert tried >= len(X_test) // 2 and beyond / tried > 0.5, (beyond, tried)


def _moved_rows(model, X, y, x, winner, target, count):
    """``count`` modified rows: each leaves a partition that voted ``winner`` at ``x`` and
    lands, relabelled ``target``, at (a hair from) ``x`` itself in another such partition."""
    part = buckets(X, model.partitions)
    voting = np.flatnonzero(model.base_predictions(x[None, :])[0] == winner)
    moves = []
    for j in range(count):
        source, landing = voting[2 * j], voting[2 * j + 1]
        row = np.flatnonzero(part == source)[0]
        step = 0
        while True:  # nudge the copy of x until its hash sends it to the landing partition
            moved = x + np.array([1e-9 * step, *np.zeros(len(x) - 1)])
            if buckets(moved[None, :], model.partitions)[0] == landing:
                break
            step += 1
        moves.append((row, moved, target))
    return moves


def test_the_strongest_row_moves_within_the_modified_radius_never_change_a_prediction():
    """For certified test rows: r modified rows, each taken out of one partition that voted
    for the prediction and put, relabelled as the runner-up, right at the test row in
    another; refit. r = the ``modified`` radius never changes the prediction; r + 1 does
    for a few (3 of 30: a row taken out seldom turns its partition, which the certificate
    must allow for)."""
    _, X, y, X_test, _ = _iris_split()
    model = _tree(X, y)
    predicted, radii = model.certify(X_test)
    votes = model.votes(X_test)
    tried = beyond = 0
    for i, x in enumerate(X_test):
        winner, radius = predicted[i], int(radii["modified"][i])
        others = votes[i] + (np.arange(3) < winner)
        others[winner] = -1
        runner_up = int(np.argmax(others))
        n_voting = int((model.base_predictions(x[None, :])[0] == winner).sum())
        for r in (radius, radius + 1):
            if r == 0 or 2 * r > n_voting:
                continue
            poisoned_X, poisoned_y = X.copy(), y.copy()
            for row, moved, label in _moved_rows(model, X, y, x, winner, runner_up, r):
                poisoned_X[row], poisoned_y[row] = moved, label
            changed = _tree(poisoned_X, poisoned_y).predict(x[None, :])[0] != winner
            if r == radius:
                assert not changed
                tried += 1
            else:
                beyond += changed
    assert tried >= 10 and beyond > 0


def test_finite_aggregation_radius_survives_every_attack_on_that_many_buckets():
    """Exhaustive: every set of r buckets, every model trained on them turned to any class."""
    rng = np.random.default_rng(0)
    n_models, d, n_classes = 8, 2, 3
    windows = spread(n_models, d)
    for _ in range(60):
        predictions = rng.choice([-1, 0, 0, 0, 1, 2], size=(1, n_models))
        votes = vote_counts(predictions, n_classes)
        winner = int(np.argmax(votes[0]))
        radius = int(finite_aggregation_radius(predictions, n_classes, windows)[0])
        for buckets_hit in itertools.combinations(range(n_models), radius):
            hit = {m for m in range(n_models) if set(windows[m]) & set(buckets_hit)}
            for target in range(n_classes):
                attacked = predictions.copy()
                attacked[0, sorted(hit)] = target
                assert int(np.argmax(vote_counts(attacked, n_classes)[0])) == winner


def test_finite_aggregation_with_spread_one_is_dpa():
    _, X, y, X_test, _ = _iris_split()
    model = _tree(X, y)
    predictions = model.base_predictions(X_test)
    fa = finite_aggregation_radius(predictions, 3, spread(20, 1))
    _, radii = model.certify(X_test)
    assert np.array_equal(fa, radii["added_or_removed"])
    assert np.array_equal(radii["modified"], radii["added_or_removed"] // 2)


def test_certified_accuracy_starts_at_the_accuracy_and_never_rises():
    correct = np.array([True, True, False, True])
    radius = np.array([3, 0, 5, 9])
    curve = certified_accuracy(correct, radius, 4)
    assert curve.tolist() == [0.75, 0.5, 0.5, 0.5, 0.25]


# --- the numbers (Must hold 1 and 2) --------------------------------------------


@pytest.mark.parametrize(
    ("source", "section", "flips", "floor", "trials"),
    [
        ("sklearn:iris", "{aggregate: dpa, base: decision_tree, partitions: 20}", 2, 0.70, 10),
        # 200 logistic regressions for 10 trials; the margin is wide (0.91 over 10 trials in
        # benchmarks/certified.py), so 4 trials prove the floor here.
        (
            "sklearn:breast_cancer",
            "{aggregate: dpa, base: logistic_regression, partitions: 20}",
            5,
            0.80,
            4,
        ),
    ],
)
def test_certified_accuracy_at_a_few_flipped_labels(source, section, flips, floor, trials):
    """Must hold 1: certified accuracy at 2 (Iris) and 5 (breast_cancer) flipped labels."""
    config = load_config(
        None,
        [f"dataset.source={source}", "train.models=[certified]", f"train.certified={section}"],
    )
    dataset, _ = load_configured(config["dataset"])
    masks = split_masks(dataset.y, 0.2, config["seed"], trials)
    shares = []
    for trial, test in enumerate(masks):
        section = config["train"]["certified"]
        model = fit_model("certified", section, dataset.X[~test], dataset.y[~test], trial)
        predicted, radii = model.certify(dataset.X[test])
        correct = predicted == dataset.y[test]
        shares.append(certified_accuracy(correct, radii["label_flips"], flips)[flips])
    assert np.mean(shares) >= floor, shares


def test_measured_accuracy_never_falls_below_the_clean_certificate_trial_by_trial():
    """Must hold 2, with the pipeline's own poison and train steps: label_flip against
    label_flips, feature_noise against modified, 5 trials, four levels (it holds by
    construction, so more trials add time, not proof)."""
    config = _config("trials=5", "poison.levels=[0.0, 0.05, 0.2, 0.5]", "validate.detectors=[]")
    dataset, _ = load_configured(config["dataset"])
    masks = split_masks(dataset.y, 0.2, config["seed"], 5)
    records, certified = [], []
    for level in config["poison"]["levels"]:
        sets = list(experiment.poison_level(dataset, masks, config, level))
        models = experiment.train_level(sets, {}, config)
        records.append(experiment.evaluate_level(models, dataset, masks, sets, {}, level))
        rows = {(s.trial, s.attack): (len(s.data.y), int(s.data.mask.sum())) for s in sets}
        certified.append(certified_records(models, dataset.X, dataset.y, masks, rows, level))
    import pandas as pd

    records, certified = pd.concat(records), pd.concat(certified)
    units = {"label_flip": "label_flips", "feature_noise": "modified"}
    check = check_measured(certified, records, units).set_index("attack")
    assert check.loc["label_flip", "pairs"] == 15 and check.loc["feature_noise", "pairs"] == 15
    assert check["violations"].sum() == 0, check
    # The check can fail: a measured accuracy one test row lower than the bound is caught.
    level_0 = certified[(certified["poison_level"] == 0.0) & (certified["radius"] == 0)]
    lowered = records.copy()
    first = (lowered["metric"] == "accuracy") & (lowered["poison_level"] == 0.05)
    lowered.loc[first, "value"] = level_0["certified_accuracy"].min() - 1.0
    assert check_measured(certified, lowered, units)["violations"].sum() > 0


# --- config ---------------------------------------------------------------------------


def test_a_certified_section_is_checked_and_filled_in():
    config = _config()
    section = config["train"]["certified_tree"]
    assert section == {
        "aggregate": "dpa",
        "base": "decision_tree",
        "partitions": 20,
        "spread": 1,
        "base_params": config["train"]["decision_tree"],
    }
    fa = load_config(
        None,
        [
            "train.models=[fa]",
            "train.fa={aggregate: finite_aggregation, base: knn, partitions: 5}",
        ],
    )
    assert fa["train"]["fa"]["spread"] == 4
    assert set(UNITS) == {"added_or_removed", "modified", "label_flips"}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.certified_tree.partitions=1", "train.certified_tree.partitions"),
        ("train.certified_tree.base=decision_tre", "train.certified_tree.base"),
        ("train.certified_tree.aggregate=bagging", "train.certified_tree.aggregate"),
        ("train.certified_tree.spread=3", "train.certified_tree.spread"),
        ("train.certified_tree.base_params={max_dept: 3}", "train.certified_tree.base_params"),
        ("poison.levels={start: 0.0, stop: 0.5}", "poison.levels"),
        ("poison.levels={start: 0.0, stop: 1.5, num: 3}", "poison.levels.stop"),
    ],
)
def test_bad_certified_sections_and_grids_name_the_field(override, field):
    with pytest.raises(PoisonlabError) as caught:
        _config(override)
    assert field in str(caught.value) and "\n" not in str(caught.value)


def test_a_level_grid_is_written_out_as_its_list():
    config = _config("poison.levels={start: 0.0, stop: 0.5, num: 11}")
    assert config["poison"]["levels"] == [round(0.05 * i, 10) for i in range(11)]
    assert load_config(None, ["train.models=[certified_tree]", CERTIFIED_TREE]) == _config()


def test_a_hundred_partitions_of_a_tree_fit_in_under_three_times_the_tree():
    """Must hold 5 on 100,000 rows x 20 features: each fit timed twice, the faster kept
    (the machine is shared); the full table is benchmarks/certified.py's."""
    import time

    from sklearn.datasets import make_classification

    from poisonlab.models import MODELS

    X, y = make_classification(100_000, 20, n_informative=10, random_state=0)
    params = MODELS["decision_tree"].defaults

    def fastest(fit) -> float:
        times = []
        for _ in range(2):
            started = time.perf_counter()
            fit()
            times.append(time.perf_counter() - started)
        return min(times)

    base = fastest(lambda: fit_model("decision_tree", params, X, y, 0))
    certified = fastest(lambda: PartitionAggregation("decision_tree", params, 100).fit(X, y))
    assert certified < 3 * base, (certified, base)


def test_a_certificate_of_zero_rows_is_not_stated_as_a_guarantee():
    """modeldata scat (110 rows, finite aggregation of 4 x 2 trees): half the test rows were
    right at radius 0 only, and the report read "provably unaffected by up to 0 added or
    removed rows (0.0% of training rows) on 67% of test rows"."""
    import pandas as pd

    from poisonlab.certify.evaluation import certified_sentences

    def curves(at_one: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "model": "cert",
                "unit": "added_or_removed",
                "radius": [0, 1, 2],
                "certified_accuracy": [0.67, at_one, 0.1],
            }
        )

    points = pd.DataFrame(
        {
            "model": "cert",
            "unit": "added_or_removed",
            "attack": "minmax",
            "poison_level": [0.0, 0.1],
            "rows": [0.0, 9.0],
            "n_train": 88.0,
            "mean": [0.67, 0.70],
        }
    )
    (none,) = certified_sentences(curves(0.3), points, 0.1)
    assert "provably" not in none
    assert none.startswith(
        "cert: fewer than half its test rows are certified against even one of the added or "
        "removed rows (30%; 67% are right at 0, its accuracy)"
    )
    (one,) = certified_sentences(curves(0.55), points, 0.1)
    assert one.startswith("cert: provably unaffected by up to 1 added or removed rows")
