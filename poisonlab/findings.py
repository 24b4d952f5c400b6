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


def _loss_sentence(summary: pd.DataFrame, attack: str, metric: str) -> str | None:
    """The model hurt most at the attack's highest level, and the defence that helps it most."""
    accuracy = summary[(summary["metric"] == metric) & (summary["attack"] == attack)]
    levels = sorted(set(accuracy["poison_level"]))
    if len(levels) < 2:
        return None
    low, high = levels[0], levels[-1]
    undefended = accuracy[accuracy["defense"] == NO_DEFENSE].set_index(["poison_level", "model"])
    models = list(dict.fromkeys(undefended.index.get_level_values("model")))
    losses = {
        m: undefended.loc[(low, m), "mean"] - undefended.loc[(high, m), "mean"]
        for m in models
        if (low, m) in undefended.index and (high, m) in undefended.index
    }
    if not losses:
        return None
    model = max(losses, key=lambda m: losses[m])
    loss = losses[model]
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
        sentence += (
            f"; training only on the rows the {best['defense']} detector kept "
            f"wins back {share} of them{interval}"
        )
    elif not defended.empty:
        # recovery_summary gave no row: the loss's own interval reaches zero.
        sentence += (
            "; over these trials the loss is not distinguishable from zero (its 95% "
            "interval reaches it), so there is no loss to recover and no recovery is given"
        )
    return sentence + "."


def _breakdown_sentence(
    points: pd.DataFrame, attack: str, drop: float, metric: str = "accuracy"
) -> str | None:
    rows = points[points["attack"] == attack]
    broken = rows.dropna(subset=["breakdown_level"])
    if rows.empty:
        return None
    if broken.empty:
        return f"Under {attack} no model falls {drop * 100:.0f} points below its clean {metric}."
    first = broken.loc[broken["breakdown_level"].idxmin()]
    return (
        f"Under {attack}, {first['model']} breaks down first: {drop * 100:.0f} points under its "
        f"clean {metric} at {format_level(first['breakdown_level'])} poison "
        f"({len(broken)} of {len(rows)} models break down within the levels run)."
    )


def _detection_sentence(detection: pd.DataFrame, attack: str) -> str | None:
    """The detector with the best F1 at the attack's highest level."""
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
    return (
        f"At {high:.0%} {attack}, {best['detector']} finds the poisoned rows best "
        f"(F1 {best['mean']:.2f}{', ' + detail if detail else ''})."
    )


def findings(
    summary: pd.DataFrame,
    detection: pd.DataFrame,
    points: pd.DataFrame,
    drop: float,
    metric: str = "accuracy",
) -> list[str]:
    """Short sentences written from the numbers, a few per attack, in the headline ``metric``."""
    sentences = []
    for attack in dict.fromkeys(summary["attack"]):
        for sentence in (
            _loss_sentence(summary, attack, metric),
            _breakdown_sentence(points, attack, drop, metric),
            _detection_sentence(detection, attack),
        ):
            if sentence:
                sentences.append(sentence)
    return sentences


BREAKDOWN_CI_COLUMNS = ["attack", "model", "ci_low", "ci_high", "n_boot", "never_share"]


def breakdown_intervals(
    records: pd.DataFrame, drop: float, seed: int, n_boot: int = 1000, metric: str = "accuracy"
) -> pd.DataFrame:
    """A 95% bootstrap interval of each breakdown point, resampling trials.

    Per attack and model, trials are drawn with replacement (the same trials at
    every level, since a trial's levels are paired), the mean accuracy per level
    recomputed and its breakdown level found as ``breakdown_level`` does (on
    ``metric``, the report's headline metric). The
    interval is the 2.5th to 97.5th percentile, a resample that never breaks
    down counting as beyond the highest level; ``never_share`` is their share,
    and an end beyond the highest level is NaN ("none within the levels run").
    """
    from poisonlab.seeding import derive_rng

    accuracy = records[(records["metric"] == metric) & (records["defense"] == NO_DEFENSE)]
    rows = []
    for (attack, model), frame in accuracy.groupby(["attack", "model"], sort=False):
        table = frame.pivot_table(index="trial", columns="poison_level", values="value")
        table = table.dropna()
        if table.shape[1] < 2 or len(table) < 2:
            rows.append((attack, model, math.nan, math.nan, 0, math.nan))
            continue
        levels = table.columns.to_numpy(dtype=float)
        values = table.to_numpy()
        rng = derive_rng(seed, "breakdown", attack, model)
        draws = rng.integers(0, len(values), size=(n_boot, len(values)))
        means = values[draws].mean(axis=1)  # n_boot x levels
        points = np.array([breakdown_level(levels, m, drop) for m in means])
        beyond = levels[-1] + 1.0  # stands for "never", above every level
        low, high = np.percentile(np.where(np.isnan(points), beyond, points), [2.5, 97.5])
        low, high = (float(v) if v <= levels[-1] else math.nan for v in (low, high))
        rows.append((attack, model, low, high, n_boot, float(np.isnan(points).mean())))
    return pd.DataFrame(rows, columns=BREAKDOWN_CI_COLUMNS)


def format_interval(low: float, high: float) -> str:
    """A breakdown interval as percentages; an end beyond the levels run as "none"."""
    if math.isnan(low):
        return "none within the levels run"
    return f"{low:.1%} to {'beyond the levels run' if math.isnan(high) else f'{high:.1%}'}"
