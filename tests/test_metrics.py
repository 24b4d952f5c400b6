"""ROC-AUC from ranks: scikit-learn's numbers, without its per-call input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from poisonlab.metrics import average_ranks, binary_roc_auc, detection_metrics, roc_auc

# scikit-learn integrates the ROC curve with the trapezoid rule, which rounds at each
# step; the rank sum is exact. They agree to the last bit or two.
ROUNDING = 1e-15


def _scores(rng: np.random.Generator, shape, tied: bool) -> np.ndarray:
    """Random scores; ``tied`` ones take a few values only, so most rows share one."""
    return rng.integers(0, 4, shape) / 3 if tied else rng.random(shape)


def test_average_ranks_are_scipys():
    rng = np.random.default_rng(0)
    for tied in (False, True):
        values = _scores(rng, 40, tied)
        assert np.array_equal(average_ranks(values), rankdata(values))


def test_binary_roc_auc_equals_scikit_learns_with_and_without_ties():
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(2, 50))
        positive = rng.random(n) < rng.uniform(0.1, 0.9)
        positive[:2] = [True, False]  # both kinds present
        scores = _scores(rng, n, tied=trial % 2 == 1)
        expected = roc_auc_score(positive, scores)
        assert math.isclose(binary_roc_auc(positive, scores), expected, abs_tol=ROUNDING)


def test_multiclass_roc_auc_is_scikit_learns_one_vs_rest_macro_mean():
    rng = np.random.default_rng(2)
    for trial in range(50):
        y = rng.integers(0, 3, 30)
        y[:3] = [0, 1, 2]
        scores = _scores(rng, (30, 3), tied=trial % 2 == 1) + 1e-3
        probabilities = scores / scores.sum(axis=1, keepdims=True)
        expected = roc_auc_score(y, probabilities, multi_class="ovr", average="macro")
        assert math.isclose(roc_auc(y, probabilities), expected, abs_tol=ROUNDING)


def test_a_class_missing_from_the_test_split_is_left_out_of_the_mean():
    rng = np.random.default_rng(3)
    y = rng.choice([0, 2, 3], 40)  # class 1 never in the test split
    scores = rng.random((40, 4))
    expected = np.mean([roc_auc_score(y == c, scores[:, c]) for c in (0, 2, 3)])
    assert math.isclose(roc_auc(y, scores), expected, abs_tol=ROUNDING)


def test_binary_roc_auc_ranks_the_second_class_score():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 25)
    y[:2] = [0, 1]
    scores = rng.random((25, 2))
    expected = roc_auc_score(y, scores[:, 1])
    assert math.isclose(roc_auc(y, scores), expected, abs_tol=ROUNDING)


def test_roc_auc_is_nan_with_one_class_and_refuses_scores_that_are_not_finite():
    assert math.isnan(roc_auc(np.ones(6, dtype=int), np.random.default_rng(5).random((6, 3))))
    with pytest.raises(ValueError, match="positive and negative"):
        binary_roc_auc(np.ones(4, bool), np.arange(4.0))
    with pytest.raises(ValueError, match="NaN or infinity"):
        binary_roc_auc(np.array([True, False, False]), np.array([0.5, np.nan, 0.1]))


def test_detection_roc_auc_equals_scikit_learns():
    rng = np.random.default_rng(6)
    mask = rng.random(60) < 0.2
    mask[:2] = [True, False]
    scores = np.round(rng.random(60), 1)  # ties, as a range check's scores have
    found = detection_metrics(mask, scores, scores > 0.5)
    assert math.isclose(found["roc_auc"], roc_auc_score(mask, scores), abs_tol=ROUNDING)
