"""Certified accuracy of a run: per level, trial, attack and certified model, and certified.csv.

For every model that can certify its predictions (a ``PartitionAggregation``,
or a k-nearest-neighbour model with uniform weights) and is trained without
defence, each clean test row gets a radius per unit; the certified accuracy
at radius r is the share of test rows predicted correctly with a radius of at
least r. Certificates of the models trained at level 0 are the headline: they
bound what any attacker of that size can do. ``check_measured`` sets them
against the accuracy measured under each attack, trial by trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from poisonlab.certify.certificates import UNITS, certified_accuracy, knn_radius, vote_counts

CERTIFIED_FILE = "certified.csv"
RECORD_COLUMNS = [
    "poison_level",
    "trial",
    "attack",
    "model",
    "n_train",
    "n_poisoned",
    "unit",
    "radius",
    "certified_accuracy",
]
CERTIFIED_COLUMNS = [
    "poison_level",
    "attack",
    "model",
    "unit",
    "radius",
    "certified_accuracy",
    "ci_low",
    "ci_high",
    "n",
]
CHECK_COLUMNS = ["attack", "model", "unit", "pairs", "violations", "min_slack"]


def _knn_certificate(estimator: Any, X: np.ndarray) -> tuple[np.ndarray, dict] | None:
    """Predictions and kNN certificates of a uniform-weight kNN (alone or after a scaler)."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline

    steps = estimator.steps if isinstance(estimator, Pipeline) else [("knn", estimator)]
    while isinstance(steps[-1][1], Pipeline):  # a user's pipeline, after models.NamedColumns
        steps = [*steps[:-1], *steps[-1][1].steps]
    knn = steps[-1][1]
    if not isinstance(knn, KNeighborsClassifier) or knn.weights != "uniform":
        return None
    for _, step in steps[:-1]:
        X = step.transform(X)
    neighbours = knn.kneighbors(X, return_distance=False)
    votes = vote_counts(knn._y[neighbours], len(knn.classes_))
    predicted = knn.classes_[np.argmax(votes, axis=1)]
    radius = knn_radius(votes)
    # A scaler fitted on the training rows moves when rows are added or changed: only
    # relabelling leaves it, and the neighbours, where they were.
    units = ("label_flips",) if len(steps) > 1 else UNITS
    return predicted, {unit: radius for unit in units}


def certify_model(estimator: Any, X: np.ndarray) -> tuple[np.ndarray, dict] | None:
    """Predictions and certified radius per unit, or None for a model that cannot certify.

    A model of the raw view is looked at past its ``TableEncoder`` (``models.past_encoder``):
    the certificate is of the model on the encoded rows.
    """
    from poisonlab.models import past_encoder

    estimator, X = past_encoder(estimator, X)
    if hasattr(estimator, "certify"):
        return estimator.certify(X)
    return _knn_certificate(estimator, X)


def certified_records(
    models: dict[tuple[int, str, str, str], Any],
    X: np.ndarray,
    y: np.ndarray,
    test_masks: np.ndarray,
    poisoned_rows: dict[tuple[int, str], tuple[int, int]],
    level: float,
) -> pd.DataFrame:
    """Certified accuracy per trial, attack, certifying model (no defence), unit and radius.

    ``models`` are keyed (trial, attack, model, defense) as ``experiment.train_level``
    makes them; ``poisoned_rows[(trial, attack)]`` is (training rows, poisoned rows).
    Radii run from 0 to the largest certified for a correct prediction.
    """
    from poisonlab.experiment import NO_DEFENSE

    rows = []
    for (trial, attack, model, defense), estimator in models.items():
        if defense != NO_DEFENSE:
            continue
        test = test_masks[trial]
        try:
            certified = certify_model(estimator, X[test])
        except Exception as error:  # a user's base model raised: it fails alone
            from poisonlab.experiment import failed_prediction

            models[(trial, attack, model, defense)] = failed_prediction(
                (trial, attack, model, defense), "certifying", error
            )
            continue
        if certified is None:
            continue
        predicted, radii = certified
        correct = predicted == y[test]
        n_train, n_poisoned = poisoned_rows[(trial, attack)]
        for unit, radius in radii.items():
            top = int(radius[correct].max()) if correct.any() else 0
            curve = certified_accuracy(correct, radius, top)
            for r, share in enumerate(curve):
                rows.append((level, trial, attack, model, n_train, n_poisoned, unit, r, share))
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _filled(records: pd.DataFrame) -> pd.DataFrame:
    """Every trial's curve over the same radii: beyond a trial's largest radius, 0."""
    keys = ["poison_level", "attack", "model", "unit"]
    parts = []
    for _, frame in records.groupby(keys, sort=False):
        radii = np.arange(frame["radius"].max() + 1)
        table = frame.pivot_table(
            index="trial", columns="radius", values="certified_accuracy", aggfunc="first"
        )
        table = table.reindex(columns=radii, fill_value=0.0).fillna(0.0)
        first = frame.iloc[0]
        long = table.stack().rename("certified_accuracy").reset_index()
        for key in keys:
            long[key] = first[key]
        parts.append(long)
    return pd.concat(parts, ignore_index=True)


def summarize_certified(records: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """certified.csv: mean certified accuracy over trials with its 95% CI, per radius (none
    where the trials tied: ``stats.mean_ci``)."""
    from poisonlab.metrics import METRIC_BOUNDS
    from poisonlab.stats import mean_ci

    if records.empty:
        return pd.DataFrame(columns=CERTIFIED_COLUMNS)
    keys = ["poison_level", "attack", "model", "unit", "radius"]
    rows = []
    for group, frame in _filled(records).groupby(keys, sort=False):
        values = frame["certified_accuracy"].to_numpy()
        bounds = METRIC_BOUNDS["certified_accuracy"]
        rows.append((*group, *mean_ci(values, bounds=bounds, empty_if_tied=True)))
    table = pd.DataFrame(rows, columns=CERTIFIED_COLUMNS)
    attacks = {a: i for i, a in enumerate(config["poison"]["attacks"])}
    models = {m: i for i, m in enumerate(config["train"]["models"])}
    units = {u: i for i, u in enumerate(UNITS)}
    ranks = pd.DataFrame(
        {
            "poison_level": table["poison_level"],
            "attack": table["attack"].map(attacks),
            "model": table["model"].map(models),
            "unit": table["unit"].map(units),
            "radius": table["radius"],
        }
    )
    order = ranks.sort_values(list(ranks.columns), kind="stable").index
    return table.loc[order].reset_index(drop=True)


def check_measured(
    certified: pd.DataFrame, records: pd.DataFrame, attack_units: dict[str, str]
) -> pd.DataFrame:
    """Measured accuracy under each attack against the level-0 certificate, trial by trial.

    ``certified`` holds certified records (``certified_records``), ``records`` the
    run's per-trial records (``experiment.RECORD_COLUMNS``).

    For every level, trial, attack and certified model: the accuracy measured
    after poisoning m rows must be at least the level-0 certified accuracy at
    radius m in the attack's unit (``attack_units``). One row per attack and
    model: pairs checked, violations, and the smallest margin (measured minus
    certified).
    """
    if certified.empty:
        return pd.DataFrame(columns=CHECK_COLUMNS)
    from poisonlab.experiment import NO_DEFENSE

    clean = certified[certified["poison_level"] == 0.0]
    accuracy = records[(records["metric"] == "accuracy") & (records["defense"] == NO_DEFENSE)]
    rows = []
    for (attack, model), levels in certified.groupby(["attack", "model"], sort=False):
        unit = attack_units.get(attack)
        bound = clean[(clean["attack"] == attack) & (clean["model"] == model)]
        bound = bound[bound["unit"] == unit].set_index(["trial", "radius"])["certified_accuracy"]
        if bound.empty:
            continue
        # Level 0 compares the accuracy with itself (radius 0): left out.
        poisoned = levels[(levels["unit"] == unit) & (levels["poison_level"] > 0.0)]
        poisoned = poisoned.drop_duplicates(["poison_level", "trial"])
        measured = accuracy[(accuracy["attack"] == attack) & (accuracy["model"] == model)]
        paired = poisoned.merge(
            measured[["poison_level", "trial", "value"]], on=["poison_level", "trial"]
        )
        slack = [
            value - bound.get((trial, m), 0.0)
            for trial, m, value in paired[["trial", "n_poisoned", "value"]].itertuples(False)
        ]
        if slack:
            violations = int(np.sum(np.array(slack) < -1e-12))
            rows.append((attack, model, unit, len(slack), violations, float(min(slack))))
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


UNIT_WORDS = {
    "added_or_removed": "added or removed rows",
    "modified": "modified rows",
    "label_flips": "relabelled rows",
}


def clean_curves(certified: pd.DataFrame) -> pd.DataFrame:
    """The headline: level-0 certified accuracy per model, unit and radius (from certified.csv).

    At level 0 every attack leaves the data clean, so the first attack's curve is every one's.
    """
    clean = certified[certified["poison_level"] == 0.0]
    if clean.empty:
        return clean
    first = clean["attack"].iloc[0]
    return clean[clean["attack"] == first].drop(columns=["poison_level", "attack"])


def measured_points(
    records: pd.DataFrame, summary: pd.DataFrame, attack_units: dict[str, str]
) -> pd.DataFrame:
    """Measured accuracy of each certified model under each attack, at the rows poisoned.

    ``records`` are certified records (for the mean number of poisoned rows per
    level), ``summary`` the summary table (mean accuracy without defence, 95% CI).
    """
    from poisonlab.experiment import NO_DEFENSE

    rows = (
        records.groupby(["poison_level", "attack", "model"], sort=False)
        .agg(rows=("n_poisoned", "mean"), n_train=("n_train", "mean"))
        .reset_index()
    )
    accuracy = summary[(summary["metric"] == "accuracy") & (summary["defense"] == NO_DEFENSE)]
    points = rows.merge(
        accuracy[["poison_level", "attack", "model", "mean", "ci_low", "ci_high"]],
        on=["poison_level", "attack", "model"],
    )
    points["unit"] = points["attack"].map(attack_units)
    return points.sort_values(["model", "attack", "poison_level"], kind="stable")


def certified_sentences(curves: pd.DataFrame, points: pd.DataFrame, drop: float) -> list[str]:
    """One sentence per certified model and unit an attack ran in: the bracket in words.

    The provable part: the most rows r at which at least half the test rows are
    still certified correct. The measured part: the fewest rows at which an
    attack of that unit brought mean accuracy more than ``drop`` below clean.
    """
    sentences = []
    for (model, unit), curve in curves.groupby(["model", "unit"], sort=False):
        attacks = points[(points["model"] == model) & (points["unit"] == unit)]
        if attacks.empty:
            continue
        n_train = float(attacks.loc[attacks["poison_level"] == 0.0, "n_train"].mean())
        if not n_train > 0:
            n_train = float(attacks["n_train"].min())
        held = curve[curve["certified_accuracy"] >= 0.5]
        if held.empty:
            share = float(curve["certified_accuracy"].iloc[0])
            provable = (
                f"{model}: fewer than half its test rows are certified even at 0 "
                f"{UNIT_WORDS[unit]} ({share:.0%})"
            )
        elif int(held.iloc[-1]["radius"]) == 0:
            # Radius 0 certifies nothing: the share is the clean accuracy. "Provably
            # unaffected by up to 0 rows on 67% of test rows" read as a guarantee.
            beyond = curve[curve["radius"] > 0]
            share = float(beyond["certified_accuracy"].iloc[0]) if len(beyond) else 0.0
            provable = (
                f"{model}: fewer than half its test rows are certified against even one of "
                f"the {UNIT_WORDS[unit]} ({share:.0%}; "
                f"{float(held.iloc[-1]['certified_accuracy']):.0%} are right at 0, its accuracy)"
            )
        else:
            top = held.iloc[-1]
            radius = int(top["radius"])
            provable = (
                f"{model}: provably unaffected by up to {radius} {UNIT_WORDS[unit]} "
                f"({radius / n_train:.1%} of training rows) on {top['certified_accuracy']:.0%} "
                "of test rows"
            )
        broke = []
        for attack, frame in attacks.groupby("attack", sort=False):
            frame = frame.sort_values("poison_level")
            clean = frame["mean"].iloc[0]
            fallen = frame[frame["mean"] < clean - drop]
            if not fallen.empty and frame["poison_level"].iloc[0] == 0.0:
                broke.append((float(fallen["rows"].iloc[0]), attack))
        if broke:
            rows, attack = min(broke)
            measured = (
                f"the strongest attack run, {attack}, broke it at {rows:.0f} rows "
                f"({rows / n_train:.1%}; accuracy more than {drop * 100:g} points below clean)"
            )
        else:
            most = float(attacks["rows"].max())
            names = ", ".join(dict.fromkeys(attacks["attack"]))
            measured = (
                f"no attack run ({names}) broke it, up to {most:.0f} rows ({most / n_train:.1%})"
            )
        sentences.append(f"{provable}; {measured}.")
    return sentences


@dataclass(frozen=True)
class CertifiedResults:
    """What the report shows of certified models: certified.csv and the bracket around it."""

    table: pd.DataFrame  # certified.csv
    curves: pd.DataFrame  # clean_curves
    points: pd.DataFrame  # measured_points
    check: pd.DataFrame  # check_measured
    sentences: list[str]


def certified_results(
    certified: pd.DataFrame, records: pd.DataFrame, summary: pd.DataFrame, config: dict[str, Any]
) -> CertifiedResults:
    """certified.csv, its level-0 curves, the measured points, the soundness check, sentences."""
    from poisonlab.attacks import attack_spec

    units = {name: attack_spec(name, config).unit for name in config["poison"]["attacks"]}
    table = summarize_certified(certified, config)
    curves = clean_curves(table)
    points = measured_points(certified, summary, units)
    sentences = certified_sentences(curves, points, config["report"]["breakdown_drop"])
    return CertifiedResults(
        table, curves, points, check_measured(certified, records, units), sentences
    )
