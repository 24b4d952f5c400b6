"""Confidence intervals and scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from poisonlab.metrics import classification_metrics, detection_metrics
from poisonlab.stats import mean_ci


def test_mean_ci_is_the_student_t_interval():
    values = np.array([0.9, 0.8, 1.0, 0.85])
    mean, low, high, n = mean_ci(values)
    expected = stats.t.interval(0.95, 3, loc=values.mean(), scale=stats.sem(values))
    assert n == 4 and math.isclose(mean, values.mean())
    assert (low, high) == expected


def test_mean_ci_of_one_value_has_no_interval():
    mean, low, high, n = mean_ci(np.array([0.7]))
    assert (mean, n) == (0.7, 1) and math.isnan(low) and math.isnan(high)


def test_tied_trials_leave_the_interval_empty_where_asked():
    """Three trials of 74 right out of 80: their spread is unmeasured, not zero."""
    tied = np.array([0.925, 0.925, 0.925])
    mean, low, high, n = mean_ci(tied)
    assert high - low < 1e-9  # what a t interval gives: certainty from three trials
    mean, low, high, n = mean_ci(tied, empty_if_tied=True)
    assert mean == pytest.approx(0.925) and n == 3 and math.isnan(low) and math.isnan(high)
    assert not math.isnan(mean_ci(np.array([0.925, 0.9]), empty_if_tied=True)[1])


def test_detection_metrics_against_the_mask():
    mask = np.array([True, True, False, False, False])
    flags = np.array([True, False, True, False, False])
    scores = np.array([0.9, 0.4, 0.5, 0.1, 0.2])
    m = detection_metrics(mask, scores, flags)
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["flag_rate"] == 0.4
    assert math.isclose(m["roc_auc"], 5 / 6)


def test_detection_metrics_at_level_zero_keep_only_the_flag_rate():
    m = detection_metrics(np.zeros(4, bool), np.zeros(4), np.array([1, 0, 0, 0], bool))
    assert m == {"flag_rate": 0.25}


def test_classification_metrics_count_every_class():
    m = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), 3)
    assert m["accuracy"] == 0.75
    assert 0 < m["f1_macro"] < 1


def test_counted_scores_equal_scikit_learns():
    """Counted with numpy for speed: the same numbers as scikit-learn's, to the bit,
    including classes never seen or never predicted, and flags that find nothing."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    for n_classes, n in [(2, 7), (3, 30), (5, 12), (4, 1)]:
        for _ in range(50):
            y_true = rng.integers(0, n_classes - 1, n)  # the last class never present
            y_pred = rng.integers(0, n_classes, n)
            m = classification_metrics(y_true, y_pred, n_classes)
            expected = f1_score(y_true, y_pred, average="macro", zero_division=0)
            assert m["f1_macro"] == expected and m["accuracy"] == np.mean(y_true == y_pred)
    for _ in range(200):
        mask = rng.random(20) < 0.3
        mask[0] = True  # at least one poisoned row: otherwise only the flag rate
        flags = rng.random(20) < rng.random()
        m = detection_metrics(mask, rng.random(20), flags)
        expected = precision_recall_fscore_support(mask, flags, average="binary", zero_division=0)
        assert (m["precision"], m["recall"], m["f1"]) == tuple(expected[:3])


def test_balanced_accuracy_and_roc_auc_match_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.svm import LinearSVC

    from poisonlab.metrics import roc_auc
    from poisonlab.models import class_scores

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    for n_classes in (2, 3):
        y = (X[:, 0] > 0).astype(int) + (n_classes == 3) * (X[:, 1] > 1)
        model = LogisticRegression().fit(X[:80], y[:80])
        predicted = model.predict(X[80:])
        scores = classification_metrics(y[80:], predicted, n_classes)
        assert math.isclose(scores["balanced_accuracy"], balanced_accuracy_score(y[80:], predicted))
        probabilities = model.predict_proba(X[80:])
        expected = (
            roc_auc_score(y[80:], probabilities[:, 1])
            if n_classes == 2
            else roc_auc_score(y[80:], probabilities, multi_class="ovr", average="macro")
        )
        assert math.isclose(roc_auc(y[80:], class_scores(model, X[80:], n_classes)), expected)
    # decision_function only (a linear SVM): the binary margin ranks like the positive class.
    y = (X[:, 0] > 0).astype(int)
    svm = LinearSVC().fit(X[:80], y[:80])
    margin = roc_auc_score(y[80:], svm.decision_function(X[80:]))
    assert math.isclose(roc_auc(y[80:], class_scores(svm, X[80:], 2)), margin)
    # One class in the test split: nothing to rank.
    assert math.isnan(roc_auc(np.zeros(5, dtype=int), np.zeros((5, 2))))


def test_macro_f1_leaves_out_a_class_the_split_lacks_and_no_model_predicts():
    """Three classes, the rare one absent from this split and never predicted: the mean F1
    of the two present (scoring the absent one 0 would cut it by a third)."""
    y_true = np.array([0, 0, 0, 1, 1, 1])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    scores = classification_metrics(y_true, predicted, 3)
    assert scores["f1_macro"] == pytest.approx((0.8 + 6 / 7) / 2)
    # Predicted though absent: it counts, with F1 0.
    predicted[0] = 2
    assert classification_metrics(y_true, predicted, 3)["f1_macro"] < (2 / 3 + 6 / 7) / 2


def test_balanced_accuracy_of_a_split_with_one_class_is_undefined_not_accuracy():
    """A test split with no row of the rare class: scikit-learn gives the one class's
    recall (here 0.9, the accuracy); that is not balanced accuracy."""
    y_true = np.zeros(10, dtype=int)
    predicted = np.array([0] * 9 + [1])
    scores = classification_metrics(y_true, predicted, 2)
    assert scores["accuracy"] == 0.9 and math.isnan(scores["balanced_accuracy"])


def test_majority_predictor_scores_high_accuracy_but_half_balanced_accuracy():
    y_true = np.array([0] * 19 + [1])
    scores = classification_metrics(y_true, np.zeros(20, dtype=int), 2)
    assert scores["accuracy"] == 0.95 and scores["balanced_accuracy"] == 0.5


def test_ratio_of_means_interval_is_wider_than_two_trials_show():
    """Two trials: a bootstrap can only span their own ratios (0.5 and 0.73); Fieller's
    interval, exact for normal pairs at any n, reaches well past them."""
    from poisonlab.stats import ratio_of_means_ci

    won, lost = np.array([0.2, 0.3]), np.array([0.4, 0.41])
    ratio, low, high, n = ratio_of_means_ci(won, lost)
    assert ratio == won.mean() / lost.mean() and n == 2
    assert low < 0.4 and high > 0.9


def test_ratio_of_means_interval_covers_the_true_ratio_95_percent_at_three_trials():
    from poisonlab.stats import ratio_of_means_ci

    rng = np.random.default_rng(0)
    won = rng.normal(0.3, 0.1, size=(2000, 3))
    lost = rng.normal(0.5, 0.05, size=(2000, 3))
    intervals = np.array([ratio_of_means_ci(w, d)[1:3] for w, d in zip(won, lost, strict=True)])
    covered = (intervals[:, 0] <= 0.6) & (intervals[:, 1] >= 0.6)
    assert 0.93 < covered.mean() < 0.97


def test_ratio_of_means_has_no_bounds_where_the_denominator_is_within_noise_of_zero():
    from poisonlab.stats import ratio_of_means_ci

    ratio, low, high, n = ratio_of_means_ci(np.array([0.1, 0.0, 0.05]), np.array([0.3, -0.1, 0.1]))
    assert ratio == pytest.approx(0.05 / 0.1) and math.isnan(low) and math.isnan(high) and n == 3
    # Tied trials (each won 1 of 2 lost rows back): the spread is unmeasured, not zero.
    ratio, low, high, n = ratio_of_means_ci(np.full(3, 0.05), np.full(3, 0.1))
    assert ratio == pytest.approx(0.5) and math.isnan(low) and math.isnan(high)


def test_an_interval_is_cut_to_the_range_its_quantity_cannot_leave():
    """Two trials near perfect accuracy: the t interval reaches past 1; cut, it stops at 1
    and keeps its other end and the mean."""
    from poisonlab.stats import mean_ci

    values = np.array([0.97, 1.0])
    mean, low, high, n = mean_ci(values)
    assert high > 1.0  # what a t interval gives here
    cut = mean_ci(values, bounds=(0.0, 1.0))
    assert cut == (mean, low, 1.0, n)
    assert mean_ci(np.array([0.0, 0.04]), bounds=(0.0, 1.0))[1] == 0.0


def test_summary_intervals_stay_in_each_metrics_range():
    """Two trials of a tree on Iris: accuracies near 1, flag rates near 0."""
    from poisonlab.config import load_config
    from poisonlab.experiment import run_experiment
    from poisonlab.metrics import METRIC_BOUNDS

    overrides = ["trials=2", "poison.levels=[0.0,0.1]", "train.models=[decision_tree]"]
    summary, detection, _ = run_experiment(load_config(None, overrides))
    for table in (summary, detection):
        for metric, rows in table.groupby("metric"):
            if metric in METRIC_BOUNDS:
                low, high = METRIC_BOUNDS[metric]
                assert (rows["ci_low"].dropna() >= low).all(), metric
                assert (rows["ci_high"].dropna() <= high).all(), metric


def test_majority_score_is_what_always_predicting_the_largest_class_scores():
    from poisonlab.metrics import majority_score, roc_auc

    y_true = np.array([0] * 15 + [1] * 4 + [2])
    always = classification_metrics(y_true, np.zeros(20, dtype=int), 3)
    for metric in ("accuracy", "balanced_accuracy", "f1_macro"):
        assert majority_score(metric, [15, 4, 1]) == pytest.approx(always[metric]), metric
    constant = np.tile([1.0, 0.0, 0.0], (20, 1))
    assert majority_score("roc_auc", [15, 4, 1]) == roc_auc(y_true, constant)
    assert majority_score("accuracy", None) is None
