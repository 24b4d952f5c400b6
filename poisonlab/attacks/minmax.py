"""``minmax``: poison rows placed where a linear surrogate loses most, inside what a
sanitizing gate accepts.

After Steinhardt, Koh and Liang, "Certified Defenses for Data Poisoning
Attacks", NeurIPS 2017 (the min-max attack: alternately fit the model on clean
plus poison, then add the feasible point of highest loss), and Koh, Steinhardt
and Liang, "Stronger data poisoning attacks break data sanitization defenses",
Machine Learning 111, 2022 (the feasible set of a sphere and slab sanitizer,
and the finding that concentrated poison, many rows at a few points, walks
through defences that look at a row's neighbourhood or label quality).

The feasible set of a poison row of class c is what a sanitizer tuned on the
clean training split accepts, and what a real source could send:

- the sphere: standardized distance to class c's clean centroid at most the
  ``quantile`` of class c's clean rows' distances;
- the slab: the distance along the line between class c's centroid and the
  other classes' at most the same quantile of class c's clean rows;
- each feature within its clean training range; integer columns integer; each
  one-hot group one-hot (``encoding_constraints``).

Rows come in ``batches``: each batch is placed at one point. Per class, a few
feasible candidates (the point of highest loss under the current surrogate, by
projected gradient ascent from the centroid; the sphere's boundary along the
surrogate's weight direction and its negation; clean rows of the other classes
that sit inside the class's sphere and slab, relabelled); each is tried by a
one-step look-ahead, refitting the surrogate (standardized logistic regression
or linear SVM, warm-started, identical rows as sample weights) on clean plus
poison so far plus the batch there, and the batch goes where the refit's loss
on the clean rows is highest: the min-max objective is the clean loss, not the
poison point's own (Koh et al. 2022). A point of at most ``NEIGHBOURS`` rows (a
small table at a low level) cannot fill its own neighbourhood, so it goes only
where a kNN gate, a label-quality gate and a feature-outlier check tuned on the
clean rows accept it (``accepted_scores``, ``disputed``; the class's most central
clean row is then a candidate too). Cost: on a table of more than
``fit_rows`` rows the surrogate is fitted on that many rows drawn at random, so
the look-ahead refits together cost a fraction of one full fit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.attacks.base import Poisoned, check_number, n_poisoned
from poisonlab.config import _fail

if TYPE_CHECKING:
    from poisonlab.table import EncodedColumns

SURROGATES = ("logistic_regression", "linear_svm")


@dataclass(frozen=True)
class Encoding:
    """Per encoded column: the clean range, whether it is whole-numbered, and the
    one-hot groups (arrays of column indices) whose values are 0/1 summing to one."""

    low: np.ndarray
    high: np.ndarray
    integer: np.ndarray
    groups: list[np.ndarray]


def encoding_constraints(X: np.ndarray, columns: EncodedColumns | None = None) -> Encoding:
    """What a real source could send, from the clean encoded rows and what their
    encoding is (``columns``, ``poisonlab.table.EncodedColumns``: its one-hot groups
    and integer columns).

    Without ``columns``, no one-hot groups. A column is integer where every clean value
    is a whole number, or where ``columns`` says it is.
    """
    X = np.asarray(X, dtype=np.float64)
    d = X.shape[1]
    groups = [np.asarray(g) for g in columns.groups if len(g) >= 2] if columns else []
    in_group = np.zeros(d, dtype=bool)
    for group in groups:
        in_group[group] = True
    # Whole-numbered wherever every clean value is (a column read as float because it
    # had missing cells is still integer at the source), and where the encoding says so.
    integer = np.all(np.round(X) == X, axis=0) if len(X) else np.zeros(d, bool)
    if columns is not None:
        integer = (integer | np.asarray(columns.integer, dtype=bool)) & ~in_group
    return Encoding(X.min(axis=0), X.max(axis=0), integer, groups)


def discretize(x: np.ndarray, encoding: Encoding) -> np.ndarray:
    """``x`` clipped to the clean range, integer columns rounded, each one-hot group's
    largest value set to 1 and the rest to 0."""
    x = np.clip(x, encoding.low, encoding.high)
    x = np.where(encoding.integer, np.round(x), x)
    for columns in encoding.groups:
        hot = columns[np.argmax(x[columns])]
        x[columns] = 0.0
        x[hot] = 1.0
    return x


@dataclass(frozen=True)
class Region:
    """Class c's sphere and slab, in standardized units."""

    centre: np.ndarray
    radius: float
    direction: np.ndarray
    width: float
    anchor: np.ndarray  # a clean row of the class inside both: the fallback point

    def holds(self, z: np.ndarray) -> bool:
        gap = z - self.centre
        return bool(
            np.linalg.norm(gap) <= self.radius + 1e-9
            and abs(gap @ self.direction) <= self.width + 1e-9
        )

    def project(self, z: np.ndarray) -> np.ndarray:
        gap = z - self.centre
        along = gap @ self.direction
        if abs(along) > self.width:
            gap = gap - (along - np.sign(along) * self.width) * self.direction
        norm = np.linalg.norm(gap)
        if norm > self.radius:
            gap = gap * (self.radius / norm)
        return self.centre + gap


def class_regions(Z: np.ndarray, y: np.ndarray, n_classes: int, quantile: float) -> list:
    """Each class's sphere and slab (``Region``) from its clean standardized rows;
    None for a class without rows."""
    regions: list[Region | None] = []
    for c in range(n_classes):
        rows = Z[y == c]
        if len(rows) == 0:
            regions.append(None)
            continue
        centre = rows.mean(axis=0)
        others = Z[y != c]
        towards = (others.mean(axis=0) - centre) if len(others) else np.zeros(Z.shape[1])
        norm = np.linalg.norm(towards)
        direction = towards / norm if norm > 0 else np.zeros(Z.shape[1])
        distance = np.linalg.norm(rows - centre, axis=1)
        along = np.abs((rows - centre) @ direction)
        radius, width = float(np.quantile(distance, quantile)), float(np.quantile(along, quantile))
        inside = (distance <= radius) & (along <= width)
        anchor = rows[np.flatnonzero(inside)[np.argmin(distance[inside])]]
        regions.append(Region(centre, radius, direction, width, anchor))
    return regions


def _surrogate(kind: str, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if kind == "linear_svm":
        return LinearSVC(C=1.0, random_state=seed, max_iter=2000)
    return LogisticRegression(C=1.0, max_iter=500, warm_start=True, random_state=seed)


def _scores_and_grad(model: Any, z: np.ndarray, c: int, n_classes: int, kind: str):
    """The loss of label ``c`` at ``z`` and its gradient in ``z``.

    Logistic: cross-entropy; SVM: the one-vs-rest hinge losses scikit-learn's
    LinearSVC minimises. Two classes are written as two logits (0 and w.z + b).
    """
    c = int(np.searchsorted(model.classes_, c))  # a position among the classes it saw
    W, b = np.asarray(model.coef_), np.asarray(model.intercept_)
    if W.shape[0] == 1:
        W, b = np.vstack([np.zeros_like(W[0]), W[0]]), np.array([0.0, b[0]])
        if kind == "linear_svm":  # binary hinge: one margin, signs by class
            f = W[1] @ z + b[1]
            sign = 1.0 if c == 1 else -1.0
            active = 1.0 - sign * f > 0
            return max(0.0, 1.0 - sign * f), (-sign * W[1] if active else np.zeros_like(z))
    logits = W @ z + b
    if kind == "linear_svm":
        target = np.where(np.arange(len(logits)) == c, 1.0, -1.0)
        margins = 1.0 - target * logits
        active = margins > 0
        return float(margins[active].sum()), -(target[active] @ W[active])
    logits = logits - logits.max()
    p = np.exp(logits) / np.exp(logits).sum()
    return float(-np.log(max(p[c], 1e-300))), W.T @ (p - np.eye(len(p))[c])


def row_losses(model: Any, Z: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """The surrogate's loss on each row (cross-entropy, or the hinge losses LinearSVC
    minimises)."""
    y = np.searchsorted(model.classes_, y)  # positions among the classes it saw
    scores = model.decision_function(Z)
    if scores.ndim == 1:
        scores = np.column_stack([np.zeros_like(scores), scores])
    if kind == "linear_svm":
        target = np.where(np.arange(scores.shape[1])[None, :] == y[:, None], 1.0, -1.0)
        if scores.shape[1] == 2:  # binary: one margin
            return np.maximum(0, 1 - target[:, 1] * scores[:, 1])
        return np.maximum(0, 1 - target * scores).sum(axis=1)
    scores = scores - scores.max(axis=1, keepdims=True)
    log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y]


def clean_loss(model: Any, Z: np.ndarray, y: np.ndarray, kind: str) -> float:
    """The surrogate's mean loss on the clean rows: what the attacker raises."""
    return float(row_losses(model, Z, y, kind).mean())


# The built-in knn gate's k: a point's rows are judged by their k nearest rows.
NEIGHBOURS = 10


def disagreement(
    Z: np.ndarray, y: np.ndarray, z: np.ndarray, c: int, copies: int, k: int = NEIGHBOURS
) -> float:
    """The share of the ``k`` nearest rows of one of ``copies`` identical rows at ``z``,
    labelled ``c``, that carry another label: what a kNN gate scores it (``Z``, ``y``:
    the rows beside it, clean and poison so far). Its own other copies come first, so a
    point of more than ``k`` rows scores 0."""
    others = k - min(copies - 1, k)
    if others == 0:
        return 0.0
    nearest = np.argpartition(np.linalg.norm(Z - z, axis=1), others - 1)[:others]
    return float(np.sum(y[nearest] != c)) / k


@dataclass(frozen=True)
class Accepted:
    """The worst scores gates tuned to flag 1 - ``quantile`` of the clean rows accept
    (``detectors.calibration.clean_threshold`` of the clean rows' own scores): kNN
    disagreement (a neighbour gate), loss under the clean surrogate (a label-quality
    gate whose models side with the clean fit), and the median robust z-score over
    features (the feature-outlier check of the ensemble, ``detectors.outliers``)."""

    share: float
    loss: float
    outlier: float


def accepted_scores(
    model: Any, Z: np.ndarray, y: np.ndarray, kind: str, quantile: float, k: int = NEIGHBOURS
) -> Accepted:
    """``Accepted`` from the clean (standardized) rows ``Z`` and the clean surrogate."""
    from poisonlab.detectors.calibration import clean_threshold
    from poisonlab.detectors.neighbours import neighbour_indices
    from poisonlab.detectors.outliers import robust_zscore, typical_distance

    neighbours = neighbour_indices(Z, k, seed=0, max_reference=len(Z))
    scores = (y[neighbours] != y[:, None]).mean(axis=1)
    losses = row_losses(model, Z, y, kind)
    share = 1.0 - quantile
    return Accepted(
        clean_threshold(scores, share),
        clean_threshold(losses, share),
        clean_threshold(typical_distance(robust_zscore(Z)), share),
    )


def disputed(
    clean_model: Any,
    accepted: Accepted,
    Z: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    c: int,
    copies: int,
    kind: str,
) -> float:
    """How far a point of ``copies`` rows at ``z`` labelled ``c`` lies past what the
    gates of ``accepted_scores`` accept, beside the rows ``Z``, ``y``: the sum of its
    scores' excesses over theirs (0: accepted)."""
    from poisonlab.detectors.outliers import robust_zscore, typical_distance

    own = row_losses(clean_model, z[None, :], np.array([c]), kind)[0]
    outlier = typical_distance(robust_zscore(np.vstack([Z, z])))[-1]
    return (
        max(disagreement(Z, y, z, c, copies) - accepted.share, 0.0)
        + max(own - accepted.loss, 0.0)
        + max(float(outlier) - accepted.outlier, 0.0)
    )


def towards(
    target: np.ndarray, region: Region, encoding: Encoding, mean: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """The feasible row (raw encoded units) nearest ``target`` on the segment from the
    class's anchor row: the largest step of 40 whose discretized row stays in the
    sphere and slab. Scanned, not bisected, since rounding makes feasibility jump
    along the segment; the anchor itself (a clean row of the class) if none does."""
    anchor = region.anchor * scale + mean
    for alpha in np.linspace(1.0, 0.0, 41)[:-1]:
        x = discretize(anchor + alpha * (target - anchor), encoding)
        if region.holds((x - mean) / scale):
            return x
    return discretize(anchor.copy(), encoding)


def worst_point(
    model: Any,
    region: Region,
    c: int,
    n_classes: int,
    kind: str,
    encoding: Encoding,
    mean: np.ndarray,
    scale: np.ndarray,
    steps: int = 40,
) -> tuple[np.ndarray, float]:
    """The feasible row of class ``c`` (raw encoded units) of highest loss, and its loss.

    Projected gradient ascent from the centroid (steps of a tenth of the radius,
    projected on the sphere, slab and range after each), then discretized and
    pulled back towards the class's anchor row where rounding left the sphere or
    slab (``towards``), so the result is always feasible.
    """
    z = region.centre.copy()
    low, high = (encoding.low - mean) / scale, (encoding.high - mean) / scale
    step = 0.1 * max(region.radius, 1e-6)
    for _ in range(steps):
        _, gradient = _scores_and_grad(model, z, c, n_classes, kind)
        norm = np.linalg.norm(gradient)
        if norm == 0:
            break
        z = z + step * gradient / norm
        for _ in range(3):  # alternating projections onto the intersection
            z = np.clip(region.project(z), low, high)
    best = towards(z * scale + mean, region, encoding, mean, scale)
    loss, _ = _scores_and_grad(model, (best - mean) / scale, c, n_classes, kind)
    return best, loss


def candidates(
    model: Any,
    region: Region,
    c: int,
    n_classes: int,
    kind: str,
    encoding: Encoding,
    mean: np.ndarray,
    scale: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    y: np.ndarray,
    relabelled: tuple[float, ...] = (0.0, 0.05, 0.1, 0.25, 0.5),
) -> list[np.ndarray]:
    """Feasible rows of class ``c`` (raw encoded units) worth a look-ahead refit.

    The point's own loss does not say how far it moves the model (Koh, Steinhardt
    and Liang 2022 judge a poison point by the clean loss after refit), so several
    kinds of point are tried:

    - the feasible point of highest loss (``worst_point``);
    - the sphere's boundary along the surrogate's weight direction and its
      negation, pulled back into the feasible set (``towards``);
    - clean rows of other classes that lie inside class ``c``'s sphere and slab,
      relabelled ``c``: rows a real source sends, on the far side of the
      boundary; ranked by their loss under ``c``, those at the ``relabelled``
      shares of the ranking (0: the highest loss).
    """
    found = [worst_point(model, region, c, n_classes, kind, encoding, mean, scale)[0]]
    W = np.asarray(model.coef_)
    w = W[min(int(np.searchsorted(model.classes_, c)), len(W) - 1)]
    if np.linalg.norm(w) > 0:
        for sign in (1.0, -1.0):
            z = region.project(region.centre + sign * region.radius * w / np.linalg.norm(w))
            found.append(towards(z * scale + mean, region, encoding, mean, scale))
    others = np.flatnonzero(y != c)
    gap = Z[others] - region.centre
    inside = others[
        (np.linalg.norm(gap, axis=1) <= region.radius)
        & (np.abs(gap @ region.direction) <= region.width)
    ]
    if len(inside) and relabelled:
        losses = np.array([_scores_and_grad(model, Z[i], c, n_classes, kind)[0] for i in inside])
        order = inside[np.argsort(-losses, kind="stable")]
        picks = {min(int(q * len(order)), len(order) - 1) for q in relabelled}
        found.extend(X[order[i]].copy() for i in sorted(picks))
    unique = []
    for x in found:
        if not any(np.array_equal(x, u) for u in unique):
            unique.append(x)
    return unique


def minmax(
    X: np.ndarray,
    y: np.ndarray,
    level: float,
    *,
    rng: np.random.Generator,
    n_classes: int,
    surrogate: str = "logistic_regression",
    batches: int = 10,
    quantile: float = 0.95,
    cluster: int = 12,
    columns: EncodedColumns | None = None,
    fit_rows: int = 4000,
) -> Poisoned:
    """Append round(level x n) rows, in ``batches``, each batch at the feasible point and
    class whose look-ahead refit loses most on the clean rows (module docstring).

    Every point carries at least ``cluster`` rows (fewer points when the level is
    low), so the poison is concentrated as in Koh et al.: a row's nearest
    neighbours are its own cluster.
    ``columns`` (what the encoding is) let ``encoding_constraints`` keep one-hot
    groups one-hot and integer columns integer. Every appended row is inside its
    class's sphere and slab at ``quantile`` and in the clean range, so a gate tuned
    to flag fewer than 1 - ``quantile`` of clean rows by distance alone accepts it.
    The surrogate is fitted on at most ``fit_rows`` clean rows drawn at random
    (each weighing n / ``fit_rows``), so the look-ahead refits cost a fraction of one
    fit on a large table. The mask marks the appended rows.
    """
    n, d = X.shape
    k = n_poisoned(level, n)
    mask = np.concatenate([np.zeros(n, dtype=bool), np.ones(k, dtype=bool)])
    if k == 0 or len(np.unique(y)) < 2:
        return Poisoned(X.copy(), y.copy(), mask[:n], {"n_added": 0})
    encoding = encoding_constraints(X, columns)
    mean = X.mean(axis=0)
    scale = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    Z = (X - mean) / scale
    regions = class_regions(Z, y, n_classes, quantile)
    seed = int(rng.integers(0, 2**31 - 1))
    # The surrogate's rows: all of a small table, a random share of a large one.
    rows = np.arange(n) if n <= fit_rows else np.sort(rng.choice(n, fit_rows, replace=False))
    Zs, ys, unit = Z[rows], y[rows], n / len(rows)
    model = _surrogate(surrogate, seed).fit(Zs, ys, sample_weight=np.full(len(rows), unit))
    # At least ``cluster`` rows at every point: more than a neighbour search's k, so a
    # poison row's nearest neighbours are its own cluster, labelled alike.
    n_points = max(1, min(batches, k // max(cluster, 1)))
    sizes = np.diff(np.linspace(0, k, n_points + 1).round().astype(int))
    points, labels, weights = [], [], []
    clean_model, accepted = model, None  # what gates accept: for small points only
    for size in sizes:
        # Candidates of every class; the batch goes to the one whose refit loses most on
        # the clean rows (a one-step look-ahead: the min-max objective is the clean loss).
        # A point of too few rows to be its own neighbourhood (a small table at a low
        # level) must also pass what kNN, label-quality and feature-outlier gates tuned
        # on the clean rows accept (its neighbours and the clean fit agree with its
        # label, its values are not far out); failing that, the least disputed candidate.
        small = size <= NEIGHBOURS
        Z_near, y_near = Zs, ys  # the rows a small point's neighbours are drawn from
        if small:
            if accepted is None:
                accepted = accepted_scores(clean_model, Zs, ys, surrogate, quantile)
            placed = np.repeat(np.array(points).reshape(-1, d), weights, axis=0)
            Z_near = np.vstack([Zs, (placed - mean) / scale])
            y_near = np.concatenate([ys, np.repeat(np.array(labels, dtype=ys.dtype), weights)])
        best = None
        for c, region in enumerate(regions):
            if region is None or c not in model.classes_:
                continue
            found = candidates(
                model, region, c, n_classes, surrogate, encoding, mean, scale, X[rows], Zs, ys
            )
            if small:  # a clean row of the class near its centre: the safe fallback
                found.append(discretize(region.anchor * scale + mean, encoding))
            for x in found:
                # A point of more rows than a gate's k vouches for itself.
                past = (
                    disputed(
                        clean_model,
                        accepted,
                        Z_near,
                        y_near,
                        (x - mean) / scale,
                        c,
                        size,
                        surrogate,
                    )
                    if small
                    else 0.0
                )
                Z_all = np.vstack([Zs, (np.array([*points, x]) - mean) / scale])
                y_all = np.concatenate([ys, [*labels, c]])
                w_all = np.concatenate([np.full(len(rows), unit), [*weights, size]])
                refit = copy.deepcopy(model).fit(Z_all, y_all, sample_weight=w_all)  # warm
                damage = clean_loss(refit, Zs, ys, surrogate)
                if best is None or (-past, damage) > (-best[4], best[2]):
                    best = (x, c, damage, refit, past)
        x, c, _, model, _ = best
        points.append(x)
        labels.append(c)
        weights.append(size)
    new_X = np.repeat(np.array(points), sizes, axis=0)
    new_y = np.repeat(np.array(labels, dtype=y.dtype), sizes)
    info = {"n_added": int(k), "points": len(points)}
    return Poisoned(np.vstack([X, new_X]), np.concatenate([y, new_y]), mask, info)


def check_minmax(attack: str, params: dict[str, Any]) -> None:
    prefix = f"poison.{attack}"
    if params["surrogate"] not in SURROGATES:
        raise _fail(
            f"{prefix}.surrogate",
            f"= {params['surrogate']!r} is unknown",
            f"choose from: {', '.join(SURROGATES)}",
        )
    batches = params["batches"]
    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 1:
        raise _fail(f"{prefix}.batches", f"= {batches!r} is below 1", "give e.g. 10")
    cluster = params["cluster"]
    if not isinstance(cluster, int) or isinstance(cluster, bool) or cluster < 1:
        raise _fail(f"{prefix}.cluster", f"= {cluster!r} is below 1", "give e.g. 12")
    check_number(f"{prefix}.quantile", params["quantile"], 0.0, 1.0, open_low=True)
