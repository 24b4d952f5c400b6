"""Fitting and scoring with scikit-learn's checks skipped only where they cannot fail."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from poisonlab.models import MODELS, class_scores, fit_model, is_finite, predict_classes


def test_is_finite_means_finite_in_float32_too():
    X = np.arange(12.0).reshape(4, 3)
    assert is_finite(X) and is_finite(X.astype(np.int64))
    for bad in (
        np.nan,
        np.inf,
        -np.inf,
        1e39,
        -1e39,
    ):  # 1e39 overflows float32, where trees compute
        changed = X.copy()
        changed[2, 1] = bad
        assert not is_finite(changed), bad
    assert not is_finite(np.array([["a", "b"]], dtype=object))


def test_a_forest_fitted_here_is_scikit_learns_forest():
    X, y = load_iris(return_X_y=True)
    params = MODELS["random_forest"].defaults | {"n_estimators": 5}
    ours = fit_model("random_forest", params, X, y, random_state=7)
    plain = RandomForestClassifier(**params, random_state=7).fit(X, y)
    assert np.array_equal(predict_classes(ours, X), plain.predict(X))
    assert np.array_equal(class_scores(ours, X, 3), plain.predict_proba(X))


@pytest.mark.parametrize("bad", [np.inf, 1e39])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_values_scikit_learn_refuses_are_still_refused(bad):
    """1e39 is finite in float64, but not in the float32 trees compute in."""
    X, y = load_iris(return_X_y=True)
    params = MODELS["random_forest"].defaults | {"n_estimators": 5}
    wrong = X.copy()
    wrong[3, 0] = bad
    with pytest.raises(ValueError, match="infinity"):
        fit_model("random_forest", params, wrong, y, random_state=0)
    fitted = fit_model("random_forest", params, X, y, random_state=0)
    with pytest.raises(ValueError, match="infinity"):
        predict_classes(fitted, wrong)
    with pytest.raises(ValueError, match="infinity"):
        class_scores(fitted, wrong, 3)


def test_one_blas_thread_limits_blas_and_gives_the_same_fit():
    from threadpoolctl import threadpool_info

    from poisonlab.models import one_blas_thread

    X, y = load_iris(return_X_y=True)
    params = MODELS["logistic_regression"].defaults
    before = fit_model("logistic_regression", params, X, y, random_state=0)
    with one_blas_thread():
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        inside = fit_model("logistic_regression", params, X, y, random_state=0)
    assert blas and set(blas) == {1}
    assert np.array_equal(before.predict_proba(X), inside.predict_proba(X))
