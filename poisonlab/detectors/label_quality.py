"""Label quality: rows whose label a model that never saw them finds unlikely."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from poisonlab.detectors.base import Detection, nothing_flagged
from poisonlab.detectors.neighbours import reference_rows
from poisonlab.detectors.outliers import ranged_columns, robust_zscore, typical_distance
from poisonlab.seeding import derive_rng


def _logistic() -> BaseEstimator:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def out_of_sample_probabilities(
    estimator: BaseEstimator,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    n_splits: int,
    seed: int,
    fit_on: np.ndarray | None = None,
) -> np.ndarray:
    """Predicted class probabilities of every row from a model that never saw it.

    Stratified k-fold: one fit per fold, so the cost is k fits, not one per row.
    Only rows where ``fit_on`` is True (default all) are fitted on; every row is
    predicted. Columns are the dataset's classes, including any a fold did not
    see (0 there).
    """
    n = len(y)
    fit_on = np.ones(n, dtype=bool) if fit_on is None else fit_on
    probabilities = np.zeros((n, n_classes))
    counts = np.bincount(y, minlength=n_classes)
    smallest = int(counts[counts > 0].min())
    # Stratification needs every class in every fold: fewer folds for a rare
    # class, plain folds for a class of one row.
    splits = max(2, min(n_splits, smallest))
    if smallest >= 2:
        folds = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed).split(X, y)
    else:
        folds = _plain_folds(n, splits, seed)
    for train, held_out in folds:
        train = train[fit_on[train]]
        if len(train) == 0:
            probabilities[held_out] = 1.0 / n_classes
            continue
        if len(np.unique(y[train])) < 2:
            probabilities[held_out, y[train][0]] = 1.0
            continue
        model = at_most_neighbours(clone(estimator), len(train)).fit(X[train], y[train])
        probabilities[np.ix_(held_out, model.classes_)] = model.predict_proba(X[held_out])
    return probabilities


def at_most_neighbours(model: BaseEstimator, n_rows: int) -> BaseEstimator:
    """``model`` asking for at most ``n_rows`` neighbours (its own ``n_neighbors``, or a
    Pipeline step's): scikit-learn refuses more neighbours than fitted rows, which a fold
    of a small split meets (30 rows at 50% poison keep 9 after the ensemble's first round)."""
    fewer = {
        key: n_rows
        for key, value in model.get_params().items()
        if key.endswith("n_neighbors") and isinstance(value, int) and value > n_rows
    }
    return model.set_params(**fewer) if fewer else model


def _plain_folds(n: int, splits: int, seed: int):
    order = derive_rng(seed, "folds").permutation(n)
    for held_out in np.array_split(order, splits):
        yield np.setdiff1d(order, held_out), held_out


def confident_learning(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    n_splits: int = 5,
    filter_by: str = "prune_by_noise_rate",
) -> Detection:
    """cleanlab's ``find_label_issues`` on k-fold out-of-sample probabilities.

    The model is a standardized logistic regression; the score is one minus
    cleanlab's self-confidence label quality.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    n = len(y)
    if n < 2 * n_classes or len(np.unique(y)) < 2:
        return nothing_flagged(n)
    probabilities = out_of_sample_probabilities(
        _logistic(), X, y, n_classes, n_splits=n_splits, seed=seed
    )
    flags = find_label_issues(y, probabilities, filter_by=filter_by, n_jobs=1)
    scores = 1.0 - get_label_quality_scores(y, probabilities)
    return Detection(scores, np.asarray(flags, dtype=bool))


def pool_weights(likelihoods: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Weights of a linear opinion pool: the mixture of members that best predicts the labels.

    ``likelihoods[k, i]`` is member k's out-of-sample probability of row i's
    label. The weights maximise the mixture's likelihood, by EM for mixture
    proportions (Dempster, Laird and Rubin, 1977): each step gives every member
    its mean share of responsibility for the labels. A family that fits the
    table poorly (kNN on a near-linear credit score) then dilutes the others
    less; with members that fit equally the weights stay equal.
    """
    k = likelihoods.shape[0]
    weights = np.full(k, 1.0 / k)
    if likelihoods.shape[1] == 0:
        return weights
    for _ in range(iterations):
        joint = weights[:, None] * likelihoods
        total = joint.sum(axis=0)
        responsibility = np.divide(joint, total, out=np.full_like(joint, 1.0 / k), where=total > 0)
        weights = responsibility.mean(axis=1)
    return weights


def noise_corrected(
    probabilities: np.ndarray, y: np.ndarray, n_classes: int, learnt_from: np.ndarray
) -> np.ndarray:
    """Estimated clean-label posteriors from posteriors learnt on noisy labels.

    Under class-conditional label noise, p(noisy = i | x) = sum_j N[i, j] p(true = j | x),
    with N[i, j] = P(noisy = i | true = j) (Angluin and Laird, "Learning from noisy
    examples", Machine Learning 2, 1988; Natarajan et al., "Learning with Noisy
    Labels", NeurIPS 2013). N is estimated by confident learning (Northcutt, Jiang
    and Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR
    70, 2021: cleanlab's confident joint) on the rows the models learnt from
    (``learnt_from``): the noise they learnt, not what cleaning already removed. The
    relation is inverted row by row, unclipped (with two classes the map is monotone
    in a row's probability of its label, so the ranking is kept; clipping would tie
    rows at 0 and 1). Where N is near singular the probabilities are returned as are.
    """
    from cleanlab.count import compute_confident_joint, estimate_latent

    rows = learnt_from if learnt_from.sum() >= 2 * n_classes else np.ones(len(y), bool)
    if len(np.unique(y[rows])) < n_classes:
        return probabilities
    try:
        joint = compute_confident_joint(y[rows], probabilities[rows])
        _, noise, _ = estimate_latent(joint, y[rows])
    except Exception:  # cleanlab refuses degenerate inputs: nothing to correct with
        return probabilities
    noise = np.asarray(noise, dtype=np.float64)
    if noise.shape != (n_classes, n_classes) or np.linalg.cond(noise) > 1e6:
        return probabilities
    return np.linalg.solve(noise, probabilities.T).T


def class_relative_log_odds(
    quality: np.ndarray, y: np.ndarray, n_classes: int, rows: np.ndarray
) -> np.ndarray:
    """How much less likely each row's given label is than is usual for its class, in log-odds.

    ``logit(t_c) - logit(quality_i)`` for a row labelled c, where ``t_c`` is the mean
    probability of label c over the ``rows`` labelled c: confident learning's per-class
    threshold (Northcutt, Jiang and Chuang, "Confident Learning", JAIR 70, 2021, where a
    row's self-confidence is compared with its class's mean, not with one cut for all).
    Why: a rare class that the models never predict has every row at a label quality
    near 0; scored by ``1 - quality`` it fills the top of the clean split's scores (tied,
    in floating point, at 1), and a threshold that flags 1% of clean rows flags nothing.
    Read against its own class's mean it is ranked like any other class. Log-odds from
    ``log`` and ``log1p``, not ``1 - quality``, so qualities of 1e-20 and 1e-10 stay apart.
    """
    q = np.clip(quality, 1e-300, 1.0)
    logit = np.log(q) - np.log1p(-np.minimum(q, 1.0 - 1e-16))
    typical = np.zeros(n_classes)
    for c in range(n_classes):
        of_class = y == c
        chosen = of_class & rows if (of_class & rows).any() else of_class
        typical[c] = quality[chosen].mean() if chosen.any() else 0.5
    t = np.clip(typical, 1e-12, 1.0 - 1e-12)
    return (np.log(t) - np.log1p(-t))[y] - logit


def keep_likeliest(
    keep: np.ndarray, quality: np.ndarray, y: np.ndarray, at_least: int, eligible: np.ndarray
) -> np.ndarray:
    """The ``eligible`` rows of ``keep``, each class keeping at least ``at_least`` of its
    eligible rows: its likeliest.

    Why: a round of cleaning drops the rows whose label is below chance. On a rare,
    barely predictable class (caravan's 6% of buyers) that is every row of the class,
    even on clean data; the next round's models then never see the class, every row of
    it gets a label quality of exactly 0, and these tie at the top of the clean split's
    scores, so a threshold that flags 1% of clean rows flags nothing at any poison level.
    Keeping the class's ``at_least`` likeliest rows (one per fold) lets the models
    still learn where it lies. A class with fewer rows keeps them all.
    """
    keep = keep & eligible
    for c in np.unique(y):
        rows = np.flatnonzero((y == c) & eligible)
        wanted = min(at_least, len(rows))
        if keep[rows].sum() < wanted:
            keep[rows[np.argsort(-quality[rows], kind="stable")[:wanted]]] = True
    return keep


# Added to a feature outlier's score: above any label score (probabilities, log-odds
# clipped at 1e-9, or those centred and scaled), so a threshold set on clean rows flags it.
OUTLIER_RANK = 1e6


def _ensemble_members(seed: int) -> list[tuple[BaseEstimator, bool]]:
    """Three model families that err differently: linear, local, tree-based.

    Each with whether it is fitted on the reference rows only (``reference_rows``):
    the neighbour search and the trees, whose cost grows faster than the
    logistic regression's.
    (Gaussian naive Bayes was tried as a fourth: its independence assumption
    cost F1 on Breast Cancer's correlated features.)
    """
    return [
        (_logistic(), False),
        (
            make_pipeline(
                StandardScaler(),
                KNeighborsClassifier(n_neighbors=10, weights="distance"),
            ),
            True,
        ),
        (
            ExtraTreesClassifier(n_estimators=25, min_samples_leaf=3, random_state=seed, n_jobs=1),
            True,
        ),
    ]


def ensemble(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    n_classes: int,
    n_splits: int = 5,
    rounds: int = 2,
    filter_by: str = "prune_by_noise_rate",
    outlier_threshold: float = 3.5,
    max_reference: int = 20000,
    correct_noise: bool = False,
    normalise: bool = True,
    by_class: bool = False,
) -> Detection:
    """Label quality from several model families, cleaned in rounds, plus a feature-outlier check.

    1. Feature outliers: rows whose *median* robust z-score over features exceeds
       ``outlier_threshold``, i.e. most of their values are far out (one heavy
       tail is not enough, so skewed clean features are not thrown away, and
       the rate stays flat on wide tables: ``outliers.typical_distance``).
    2. Label quality: the mean out-of-sample probability of the given label under
       a logistic regression, a kNN and an extra-trees model.
       Averaging families whose errors differ calibrates better than any one.
    3. Rounds: after each round the models are refitted without the outliers and
       the rows whose label quality is below chance (1 / n_classes), so that
       poisoned labels stop teaching the models that judge them; every row is
       still scored out of sample. Each class keeps at least ``n_splits`` rows,
       its likeliest (``keep_likeliest``: a rare class is never dropped whole).
    4. Flags: cleanlab's ``find_label_issues`` on the last round's probabilities
       (confident learning estimates how many labels are wrong) and, with three
       or more classes, every label whose quality is below chance: on Wine and
       Iris cleanlab's count alone misses a third of the flips at 10%.

    5. One scale whatever the noise (``normalise``): models that learnt from noisy
       labels are less sure of every label, so heavy poisoning pulls every row's
       score towards chance and under a threshold set on clean data (at 30% flips on
       credit_data the calibrated ensemble caught 0.02 of the flips at 1% FPR, and
       flagged 0.1% of the clean rows). The score is read as log-odds, centred on
       the median and divided by the standard deviation of the rows the last models
       learnt from (the rows the detector accepts): a split whose models are less
       sure is read on the same scale as the clean split the threshold came from.
       A monotone map, so ROC-AUC and the ranking are unchanged. ``correct_noise``
       instead maps the pooled probabilities back to clean-label posteriors through
       the class-conditional noise matrix confident learning estimates
       (``noise_corrected``). Measured (benchmarks/detection_ceiling.py, 10 trials, 13
       tables; README) neither wins everywhere: the correction mends caravan at 30%
       flips (0.05 -> 0.20 at 1% FPR, oracle 0.28) but loses HMDA at 10% (0.51 ->
       0.27) and affairs at 30% (0.21 -> 0.11), so it is off.

    6. Per class (``by_class``, off by default): the label score is
       ``class_relative_log_odds`` (the label's log-odds against its class's mean among
       the rows the last models learnt from) and a round drops a row only below chance
       *and* below its class's mean. Measured before rounds kept each class's likeliest
       rows (benchmarks/detection_ceiling.py, 3 trials, recall at 1% FPR at flips 0.1 /
       0.3): caravan 0.00 / 0.00 -> 0.20 / 0.21 (oracle 0.23, but 9% of the clean rows
       past the threshold at 0.3), but affairs 0.24 / 0.28 -> 0.19 / 0.07, MASS Pima.te
       0.19 / 0.11 -> 0.12 / 0.02 and 1,200 rows of ISLR Default (3% class) 0.92 / 0.90
       -> 0.24 / 0.00; ``keep_likeliest`` mends caravan without that cost, so this stays
       off.

    7. Feature outliers rank first: a row far out over every column, or over the
       columns of more than two values (``outliers.ranged_columns``: what a one-hot
       table's decoded poison leaves in its numbers), scores ``OUTLIER_RANK`` plus the
       log of how far past ``outlier_threshold`` it lies, so a threshold set on clean
       rows flags it (clean tables hold at most 0.3% of such rows). Before, it scored
       z / (z + threshold), below the label scores of the clean split's top 5%, and the
       calibrated ensemble caught 0.00 of ``feature_noise`` at 5% on credit_data. The
       rows the models learn from and the detector's own flags keep the rule over every
       column (step 1), so the label scores are as before (excluding those rows from
       the fits moved credit_data's F1 under label_flip below confident learning's).

    Score: the larger of 1 - label quality and z / (z + threshold) (0.5 at the
    outlier threshold). Cost: rounds x 3 x n_splits fits. The kNN and extra-trees
    members are fitted on at most ``max_reference`` rows (``reference_rows``), so
    their fits are bounded and their predictions linear in n; on larger tables
    they learn from a seeded sample, traded for accuracy: on 3 classes, 20
    features and 10% label flips, F1 0.70 in 37 s with the trees on every row
    against 0.67 in 18 s sampled at 100k rows, 0.74 in 751 s against 0.66 in
    129 s at 1M (README, Performance and scale).
    """
    from cleanlab.filter import find_label_issues

    n = len(y)
    if n < 2 * n_classes or len(np.unique(y)) < 2:
        return nothing_flagged(n)
    z = robust_zscore(X)
    outlier = typical_distance(z)
    outliers = outlier > outlier_threshold
    # Far out where a range means something (outliers.ranged_columns): what a one-hot
    # table's decoded poison leaves in its numbers. Ranked first (step 7).
    far_out = np.maximum(typical_distance(z[:, ranged_columns(X)]), outlier)
    ranked = far_out > outlier_threshold
    keep = ~outliers
    members = _ensemble_members(seed)
    in_reference = np.zeros(n, dtype=bool)
    in_reference[reference_rows(n, max_reference, seed)] = True
    for _ in range(max(1, rounds)):
        each = np.stack(
            [
                out_of_sample_probabilities(
                    member,
                    X,
                    y,
                    n_classes,
                    n_splits=n_splits,
                    seed=seed,
                    fit_on=keep & in_reference if sampled else keep,
                )
                for member, sampled in members
            ]
        )
        weights = pool_weights(each[:, np.arange(n), y][:, keep])
        probabilities = np.tensordot(weights, each, axes=1)
        quality = probabilities[np.arange(n), y]
        below = quality < 1.0 / n_classes
        if by_class:  # and below its class's mean: a rare class is not dropped whole
            below &= class_relative_log_odds(quality, y, n_classes, ~outliers) > 0
        fitted_on, keep = keep, keep_likeliest(~below, quality, y, n_splits, eligible=~outliers)
    flags = np.asarray(find_label_issues(y, probabilities, filter_by=filter_by, n_jobs=1), bool)
    if n_classes > 2:
        # Below chance is below the decision boundary only with three or more
        # classes; with two, chance is the boundary, where clean rows sit too.
        flags |= quality < 1.0 / n_classes
    if correct_noise:  # the score only: the flags above are the detector's own
        corrected = noise_corrected(probabilities, y, n_classes, fitted_on)
        quality = corrected[np.arange(n), y]
    if by_class:  # log-odds against the label's own class (step 6)
        label = class_relative_log_odds(quality, y, n_classes, fitted_on)
        far = np.log(np.maximum(outlier, 1e-300) / outlier_threshold)
        logit = np.maximum(label, far)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logit, -700, 700)))
    else:
        scores = np.maximum(1.0 - quality, outlier / (outlier + outlier_threshold))
        logit = np.log(np.clip(scores, 1e-9, None)) - np.log(np.clip(1.0 - scores, 1e-9, None))
    if normalise:  # log-odds on the accepted rows' scale (step 5)
        accepted = fitted_on & np.isfinite(logit)
        if accepted.sum() >= 2:
            centre, spread = np.median(logit[accepted]), np.std(logit[accepted])
            scores = (logit - centre) / (spread if spread > 0 else 1.0)
    # A row far out in most features ranks above every label score (step 7).
    scores = np.where(ranked, OUTLIER_RANK + np.log(far_out / outlier_threshold), scores)
    return Detection(scores, flags | outliers)
