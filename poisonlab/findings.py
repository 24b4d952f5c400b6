"""Numbers a reader wants first: breakdown points, worst levels, and findings in words.

Everything here reads the summary tables (summary.csv, detection.csv) and
nothing else, so it works for any attacks, models, detectors and metrics that
appear there.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from poisonlab.experiment import NO_DEFENSE, RECOVERY

BREAKDOWN_COLUMNS = ["attack", "model", "clean_accuracy", "threshold", "breakdown_level"]


def undefended_accuracy(summary: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """``metric`` rows (the headline metric) of models trained on all (poisoned) rows,
    sorted by level."""
    rows = summary[(summary["metric"] == metric) & (summary["defense"] == NO_DEFENSE)]
    return rows.sort_values("poison_level", kind="stable")


def breakdown_level(levels: np.ndarray, accuracy: np.ndarray, drop: float) -> float:
    """Smallest level at which mean accuracy falls below ``accuracy[0] - drop``.

    ``levels`` ascend and start at the clean baseline. Between two measured
    levels the crossing is interpolated linearly; NaN when accuracy never falls
    that far.
    """
    threshold = accuracy[0] - drop
    for i in range(1, len(levels)):
        if accuracy[i] < threshold:
            before, after = accuracy[i - 1], accuracy[i]
            share = (before - threshold) / (before - after)
            return float(levels[i - 1] + share * (levels[i] - levels[i - 1]))
    return math.nan


def breakdown_points(summary: pd.DataFrame, drop: float, metric: str = "accuracy") -> pd.DataFrame:
    """One row per attack and model: baseline ``metric``, threshold and breakdown level."""
    rows = []
    accuracy = undefended_accuracy(summary, metric)
    for (attack, model), frame in accuracy.groupby(["attack", "model"], sort=False):
        levels = frame["poison_level"].to_numpy(dtype=float)
        means = frame["mean"].to_numpy(dtype=float)
        point = breakdown_level(levels, means, drop)
        rows.append((attack, model, means[0], means[0] - drop, point))
    return pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)


def format_level(level: float) -> str:
    """A poison level as a percentage; NaN (never broke down) as "none"."""
    return "none" if math.isnan(level) else f"{level:.1%}"


def worst_levels(summary: pd.DataFrame, metric: str = "accuracy") -> dict[str, float]:
    """Per attack, the level with the lowest ``metric`` averaged over models."""
    accuracy = undefended_accuracy(summary, metric)
    means = accuracy.groupby(["attack", "poison_level"], sort=False)["mean"].mean()
    return {attack: float(means[attack].idxmin()) for attack in dict.fromkeys(accuracy["attack"])}


def _floor_sentences(
    summary: pd.DataFrame, metric: str, floor: float | None, reweighable: tuple[str, ...] = ()
) -> list[str]:
    """A sentence per model whose clean ``metric`` is not distinguishable from ``floor``
    (``metrics.majority_score``): it learnt little that poisoning could take away, so
    its losses and breakdown point are no finding (common with a rare class). Where the
    metric is balanced accuracy (a rare class) and the model is in ``reweighable``, the
    sentence says how a team would weigh the rare class up: ``class_weight: balanced``."""
    rows = undefended_accuracy(summary, metric)
    if floor is None or rows.empty:
        return []
    clean = rows[rows["poison_level"] == rows["poison_level"].min()].drop_duplicates("model")
    sentences = []
    for row in clean.itertuples(index=False):
        measured = row.ci_low == row.ci_low  # not NaN
        if (row.ci_low if measured else row.mean) > floor:
            continue
        how = (
            f"{row.mean:.3f} (95% CI {row.ci_low:.3f} to {row.ci_high:.3f}), is not "
            "distinguishable from"
            if measured
            else f"{row.mean:.3f}, is no better than"
        )
        weigh = (
            f" Weighing the rare class up may help: train.{row.model}: {{class_weight: balanced}}."
            if metric == "balanced_accuracy" and row.model in reweighable
            else ""
        )
        sentences.append(
            f"{row.model}'s clean {metric}, {how} the {floor:.3f} of always predicting the "
            "largest class: it learnt little that poisoning could take away, so its losses "
            f"and breakdown point below say little.{weigh}"
        )
    return sentences


def _loss_sentence(
    summary: pd.DataFrame, attack: str, metric: str, losses: pd.DataFrame | None = None
) -> str | None:
    """The model hurt most at the attack's highest level, and the defence that helps it most.

    With ``losses`` (``paired_losses``) the loss's 95% interval is given, and a loss
    whose interval reaches zero, or that one trial measured, is said not to be a
    finding.
    """
    accuracy = summary[(summary["metric"] == metric) & (summary["attack"] == attack)]
    levels = sorted(set(accuracy["poison_level"]))
    if len(levels) < 2:
        return None
    low, high = levels[0], levels[-1]
    undefended = accuracy[accuracy["defense"] == NO_DEFENSE].set_index(["poison_level", "model"])
    models = list(dict.fromkeys(undefended.index.get_level_values("model")))
    lost = {
        m: undefended.loc[(low, m), "mean"] - undefended.loc[(high, m), "mean"]
        for m in models
        if (low, m) in undefended.index and (high, m) in undefended.index
    }
    if not lost:
        return None
    model = max(lost, key=lambda m: lost[m])
    loss = lost[model]
    clean, poisoned = undefended.loc[(low, model), "mean"], undefended.loc[(high, model), "mean"]
    if loss < 0.01:
        return (
            f"At {high:.0%} {attack} no model loses a point of {metric} "
            f"(largest loss: {model}, {loss * 100:.1f} points)."
        )
    sentence = (
        f"{model} loses {loss * 100:.0f} points at {high:.0%} {attack} "
        f"({metric} {clean:.3f} to {poisoned:.3f})"
    )
    measured = _loss_interval(losses, attack, model, high)
    if measured is not None:
        low_end, high_end, n = measured
        if n < 2:
            sentence += ", in a single trial: with no spread to measure, this is not a finding"
        elif low_end <= 0:
            sentence += (
                f", but over these {n} trials the loss is not distinguishable from zero "
                f"(95% interval {low_end * 100:.0f} to {high_end * 100:.0f} points)"
            )
        elif low_end == high_end:  # every trial lost the same: the spread is unmeasured
            sentence += f", the same loss in each of the {n} trials (so no interval)"
        else:
            sentence += f", 95% interval {low_end * 100:.0f} to {high_end * 100:.0f} points"
    recovered = summary[
        (summary["metric"] == RECOVERY)
        & (summary["attack"] == attack)
        & (summary["poison_level"] == high)
        & (summary["model"] == model)
    ]
    defended = accuracy[
        (accuracy["poison_level"] == high)
        & (accuracy["model"] == model)
        & (accuracy["defense"] != NO_DEFENSE)
    ]
    if not recovered.empty:
        best = recovered.loc[recovered["mean"].idxmax()]
        won_back = best["mean"]
        share = "all" if won_back >= 1 else f"{max(won_back, 0.0):.0%}"
        interval = (
            f", 95% CI {best['ci_low']:.0%} to {best['ci_high']:.0%}"
            if best["ci_low"] == best["ci_low"]
            else ""
        )
        if best["ci_high"] < 0:  # the whole interval below zero: it lowers the metric more
            sentence += (
                f"; training only on the rows the {best['defense']} detector kept wins back "
                f"none of them and lowers {metric} further ({won_back:.0%} of the loss{interval})"
            )
        else:
            if best["ci_low"] <= 0:  # Fieller's interval: it may win back nothing
                interval += ", which reaches zero: over these trials it may win back nothing"
            sentence += (
                f"; training only on the rows the {best['defense']} detector kept "
                f"wins back {share} of them{interval}"
            )
    elif not defended.empty and measured is not None:
        if measured[2] < 2 or measured[0] <= 0:  # else no level 0 to pair with (recovery)
            sentence += ", so there is no loss to recover and no recovery is given"
    elif not defended.empty:
        # recovery_summary gave no row: the loss's own interval reaches zero.
        sentence += (
            "; over these trials the loss is not distinguishable from zero (its 95% "
            "interval reaches it), so there is no loss to recover and no recovery is given"
        )
    return sentence + "."


def _loss_interval(
    losses: pd.DataFrame | None, attack: str, model: str, level: float
) -> tuple[float, float, int] | None:
    """(ci_low, ci_high, n) of ``paired_losses``'s row, None without one."""
    if losses is None:
        return None
    row = losses[
        (losses["attack"] == attack)
        & (losses["model"] == model)
        & (losses["poison_level"] == level)
    ]
    if row.empty:
        return None
    return float(row["ci_low"].iloc[0]), float(row["ci_high"].iloc[0]), int(row["n"].iloc[0])


def _breakdown_sentence(
    points: pd.DataFrame,
    attack: str,
    drop: float,
    metric: str = "accuracy",
    intervals: pd.DataFrame | None = None,
) -> str | None:
    rows = points[points["attack"] == attack]
    broken = rows.dropna(subset=["breakdown_level"])
    if rows.empty:
        return None
    if broken.empty:
        return f"Under {attack} no model falls {drop * 100:.0f} points below its clean {metric}."
    first = broken.loc[broken["breakdown_level"].idxmin()]
    interval = ""
    if intervals is not None:
        found = intervals[(intervals["attack"] == attack) & (intervals["model"] == first["model"])]
        if not found.empty:
            ci = found.iloc[0]
            if ci["n"] < 2:
                interval = ", from one trial with no interval"
            elif ci.get("tied", False):
                interval = f", with no interval (the {ci['n']} trials lost the same there)"
            else:
                interval = f", 95% interval {format_interval(ci['ci_low'], ci['ci_high'])}"
    return (
        f"Under {attack}, {first['model']} breaks down first: {drop * 100:.0f} points under its "
        f"clean {metric} at {format_level(first['breakdown_level'])} poison{interval} "
        f"({len(broken)} of {len(rows)} models break down within the levels run)."
    )


def _detection_sentence(detection: pd.DataFrame, attack: str) -> str | None:
    """The detector with the best F1 at the attack's highest level; the others whose mean
    F1 lies within its 95% interval are named too, as not distinguishable from it."""
    rows = detection[detection["attack"] == attack]
    f1 = rows[rows["metric"] == "f1"]
    if f1.empty:
        return None
    high = f1["poison_level"].max()
    at_high = f1[f1["poison_level"] == high]
    best = at_high.loc[at_high["mean"].idxmax()]
    if round(best["mean"], 2) == 0:
        # "finds best" would be false: none finds any (a range check on label flips).
        return (
            f"At {high:.0%} {attack} no detector finds the poisoned rows "
            f"(best F1 0.00, {best['detector']})."
        )
    other = rows[(rows["poison_level"] == high) & (rows["detector"] == best["detector"])]
    values = dict(zip(other["metric"], other["mean"], strict=True))
    detail = ", ".join(
        f"{name} {values[name]:.2f}" for name in ("precision", "recall") if name in values
    )
    sentence = (
        f"At {high:.0%} {attack}, {best['detector']} finds the poisoned rows best "
        f"(F1 {best['mean']:.2f}{', ' + detail if detail else ''})"
    )
    low = best.get("ci_low", math.nan)
    others = at_high[at_high["detector"] != best["detector"]]
    close = others[(others["mean"] >= low) | (others["mean"] == best["mean"])]
    if not close.empty:
        # A narrow interval shown to 2 places reads "(0.65 to 0.65)", as if it had no
        # width (lending_club, knn against the ensemble): then 3 places.
        places = 3 if low == low and f"{low:.2f}" == f"{best['ci_high']:.2f}" else 2
        named = ", ".join(
            f"{d} ({m:.{places}f})" for d, m in zip(close["detector"], close["mean"], strict=True)
        )
        within = f"lies within its 95% interval ({low:.{places}f} to {best['ci_high']:.{places}f})"
        sentence += (
            f", but the F1 of {named} {within if low == low else 'is the same'}: over "
            f"{int(best['n'])} trials the ranking is not a finding"
        )
    return sentence + "."


def findings(
    summary: pd.DataFrame,
    detection: pd.DataFrame,
    points: pd.DataFrame,
    drop: float,
    metric: str = "accuracy",
    losses: pd.DataFrame | None = None,
    intervals: pd.DataFrame | None = None,
    floor: float | None = None,
    reweighable: tuple[str, ...] = (),
) -> list[str]:
    """Short sentences written from the numbers, a few per attack, in the headline ``metric``.

    ``losses`` (``paired_losses``) and ``intervals`` (``breakdown_intervals``), from the
    per-trial records, add each number's 95% interval and say where it is no finding;
    ``floor`` (``metrics.majority_score``) names the models that score no better than
    always predicting the largest class; those in ``reweighable`` (built-ins that take
    ``class_weight`` and were given none) are told how to weigh the rare class up.
    """
    sentences = _floor_sentences(summary, metric, floor, reweighable)
    if undefended_accuracy(summary, metric).empty and (summary["defense"] == NO_DEFENSE).any():
        # balanced_accuracy and roc_auc need two classes in a test split (metrics).
        sentences.append(
            f"No trial measured {metric}: no test split held two classes, so the tables of "
            f"{metric} below are empty; raise dataset.test_size, or add rows of the rare class."
        )
    for attack in dict.fromkeys(summary["attack"]):
        for sentence in (
            _loss_sentence(summary, attack, metric, losses),
            _breakdown_sentence(points, attack, drop, metric, intervals),
            _detection_sentence(detection, attack),
        ):
            if sentence:
                sentences.append(sentence)
    return sentences


LOSS_COLUMNS = ["attack", "model", "poison_level", "mean", "ci_low", "ci_high", "n"]


def paired_losses(records: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per attack, model and level, the ``metric`` lost against the lowest level run, with
    its 95% Student-t interval over trials (``stats.mean_ci``).

    Paired by trial (a trial's levels share its test split), so the split's own
    difficulty cancels out: each trial's undefended score at the lowest level
    minus its score at the level. Valid with 2 trials (wide then: t = 12.7).
    """
    from poisonlab.metrics import METRIC_BOUNDS
    from poisonlab.stats import mean_ci

    # A difference of two values in [lo, hi] lies in [lo - hi, hi - lo].
    lo, hi = METRIC_BOUNDS.get(metric, (-math.inf, math.inf))
    bounds = (lo - hi, hi - lo)
    scores = records[(records["metric"] == metric) & (records["defense"] == NO_DEFENSE)]
    rows = []
    for (attack, model), frame in scores.groupby(["attack", "model"], sort=False):
        table = frame.pivot_table(index="trial", columns="poison_level", values="value")
        first = table.iloc[:, 0]
        for level in table.columns:
            loss = (first - table[level]).dropna().to_numpy()
            rows.append((attack, model, float(level), *mean_ci(loss, bounds=bounds)))
    return pd.DataFrame(rows, columns=LOSS_COLUMNS)


BREAKDOWN_CI_COLUMNS = ["attack", "model", "ci_low", "ci_high", "n", "tied"]


def breakdown_intervals(losses: pd.DataFrame, drop: float) -> pd.DataFrame:
    """A 95% interval of each breakdown point, from the paired losses' t intervals.

    ``losses`` is ``paired_losses``. The breakdown point is where the mean loss
    first passes ``drop``; the interval runs from where the upper end of the
    loss's 95% interval first passes it (the earliest level the data cannot rule
    out) to where the lower end does (the level by which it has surely passed),
    each found as ``breakdown_level`` finds the point. This inverts a test at
    each level, as an inverse-prediction (calibration) interval does (Draper and
    Smith, "Applied Regression Analysis", 3rd ed., 1998, ch. 3, inverse
    regression), and is valid with 2 trials, where a bootstrap over trials only
    spans what the 2 trials show. The intervals are pointwise, not simultaneous
    over levels. ``ci_low`` NaN: even the upper ends never pass ``drop`` (none
    within the levels run); ``ci_high`` NaN: the lower ends never do (beyond
    the levels run). With fewer than 2 trials (``n``) there is no interval.

    ``tied``: a level up to where an end passes ``drop`` lost the same in every
    trial, so its loss's interval has no width: its spread is unmeasured, not zero
    (as ``stats.mean_ci``'s ``empty_if_tied`` says), and an end read from it would
    claim a certainty the trials cannot show (a breakdown point of 2.2% with
    "95% interval 2.3% to 2.3%" on a 9-row test split). Such an interval is NaN.
    """
    rows = []
    for (attack, model), frame in losses.groupby(["attack", "model"], sort=False):
        levels = frame["poison_level"].to_numpy(dtype=float)
        n = int(frame["n"].min())
        if len(levels) < 2 or n < 2:
            rows.append((attack, model, math.nan, math.nan, n, False))
            continue
        upper = frame["ci_high"].to_numpy(dtype=float)
        lower = frame["ci_low"].to_numpy(dtype=float)
        # The lowest level's loss is 0 in every trial by construction, a known value.
        tied = np.r_[False, upper[1:] == lower[1:]]
        if tied[: _passing(upper, drop) + 1].any() or tied[: _passing(lower, drop) + 1].any():
            rows.append((attack, model, math.nan, math.nan, n, True))
            continue
        # breakdown_level reads a score that starts at the baseline: the negated loss.
        low = breakdown_level(levels, -upper, drop)
        high = breakdown_level(levels, -lower, drop)
        rows.append((attack, model, low, high, n, False))
    return pd.DataFrame(rows, columns=BREAKDOWN_CI_COLUMNS)


def _passing(loss: np.ndarray, drop: float) -> int:
    """Index of the first level whose ``loss`` passes ``drop`` above the lowest level's
    (as ``breakdown_level`` reads it), else the last level's."""
    passed = np.flatnonzero(loss[1:] > loss[0] + drop)
    return int(passed[0]) + 1 if len(passed) else len(loss) - 1


def format_interval(low: float, high: float, n: int = 2, tied: bool = False) -> str:
    """A breakdown interval as percentages; an end beyond the levels run as "none";
    with fewer than 2 trials, or trials that tied where it is read, why there is none."""
    if n < 2:
        return f"none ({n} trial: no spread to measure)"
    if tied:
        return f"none (the {n} trials lost the same there: no spread to measure)"
    if math.isnan(low):
        return "none within the levels run"
    return f"{low:.1%} to {'beyond the levels run' if math.isnan(high) else f'{high:.1%}'}"
