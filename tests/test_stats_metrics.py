"""Confidence intervals and scores."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from poisonlab.metrics import classification_metrics, detection_metrics
from poisonlab.stats import mean_ci


def test_mean_ci_is_the_student_t_interval():
    values = np.array([0.9, 0.8, 1.0, 0.85])
    mean, low, high, n = mean_ci(values)
    expected = stats.t.interval(0.95, 3, loc=values.mean(), scale=stats.sem(values))
    assert n == 4 and math.isclose(mean, values.mean())
    assert math.isclose(low, expected[0]) and math.isclose(high, expected[1])


def test_mean_ci_of_one_value_has_no_interval():
    mean, low, high, n = mean_ci(np.array([0.7]))
    assert (mean, n) == (0.7, 1) and math.isnan(low) and math.isnan(high)


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
