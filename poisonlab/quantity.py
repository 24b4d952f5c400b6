"""Data quality versus quantity: how many poisoned training rows match a number of clean ones.

For every poison level, models are trained on growing training sets drawn
from a dataset large enough for it (a ``synthetic:`` table by default), each
poisoned at that level, and scored on a clean held-out test split. The
answer, per model and level, is the training-set size at which the poisoned
curve reaches the accuracy that ``quantity.reference`` clean rows give.

Training sets of one trial are nested (each size extends the smaller one), so
a curve differs between sizes by added rows only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from poisonlab.attacks import apply_attack
from poisonlab.data import Dataset, load_dataset, split_masks
from poisonlab.errors import PoisonlabError
from poisonlab.metrics import METRIC_BOUNDS, classification_metrics
from poisonlab.seeding import derive_rng, derive_seed
from poisonlab.stats import mean_ci

QUANTITY_FILE = "quantity.csv"
RECORD_COLUMNS = ["poison_level", "trial", "n_train", "model", "metric", "value"]
QUANTITY_COLUMNS = ["poison_level", "n_train", "model", "metric", "mean", "ci_low", "ci_high", "n"]


def quantity_dataset(config: dict[str, Any]) -> Dataset:
    """The dataset the experiment draws from: a ``synthetic:`` table or any dataset source."""
    return load_dataset(config["quantity"]["source"])[0]


def quantity_level(config: dict[str, Any], level: float) -> pd.DataFrame:
    """Records (``RECORD_COLUMNS``) of one poison level: every trial, size and model."""
    from poisonlab.models import fit_model  # scikit-learn: the report imports this module too

    settings = config["quantity"]
    seed, attack = config["seed"], settings["attack"]
    dataset = quantity_dataset(config)
    masks = split_masks(
        dataset.y, config["dataset"]["test_size"], derive_seed(seed, "quantity"), settings["trials"]
    )
    n_pool = int((~masks[0]).sum())
    if max(settings["sizes"]) > n_pool:
        raise PoisonlabError(
            f"config: quantity.sizes goes up to {max(settings['sizes'])} but "
            f"{settings['source']} leaves {n_pool} training rows; use smaller sizes "
            "or a larger quantity.source"
        )
    rows = []
    for trial, test in enumerate(masks):
        order = derive_rng(seed, "quantity", "order", trial).permutation(np.flatnonzero(~test))
        for n_train in settings["sizes"]:
            chosen = order[:n_train]
            poisoned = apply_attack(
                attack,
                dataset.X[chosen],
                dataset.y[chosen],
                level,
                rng=derive_rng(seed, "quantity", "poison", trial, n_train, attack),
                n_classes=dataset.n_classes,
                params=config["poison"][attack],
                class_names=dataset.class_names,
                feature_names=dataset.feature_names,
            )
            for model in config["train"]["models"]:
                estimator = fit_model(
                    model,
                    config["train"][model],
                    poisoned.X,
                    poisoned.y,
                    derive_seed(seed, "quantity", "model", trial, model),
                    dataset.feature_names,
                )
                scores = classification_metrics(
                    dataset.y[test], estimator.predict(dataset.X[test]), dataset.n_classes
                )
                for metric, value in scores.items():
                    rows.append((level, trial, n_train, model, metric, value))
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def empty_records() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "poison_level": pd.Series(dtype="float64"),
            "trial": pd.Series(dtype="int64"),
            "n_train": pd.Series(dtype="int64"),
            "model": pd.Series(dtype="str"),
            "metric": pd.Series(dtype="str"),
            "value": pd.Series(dtype="float64"),
        }
    )


def summarize_quantity(records: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """quantity.csv: mean and 95% CI over trials per level, size, model and metric (no
    interval where every trial tied: ``stats.mean_ci``)."""
    rows = []
    for (level, n_train, model, metric), frame in records.groupby(
        ["poison_level", "n_train", "model", "metric"], sort=False
    ):
        bounds = METRIC_BOUNDS.get(metric)
        mean, low, high, n = mean_ci(frame["value"].to_numpy(), bounds=bounds, empty_if_tied=True)
        rows.append((level, int(n_train), model, metric, mean, low, high, n))
    summary = pd.DataFrame(rows, columns=QUANTITY_COLUMNS)
    model_rank = {m: i for i, m in enumerate(config["train"]["models"])}
    order = pd.DataFrame(
        {
            "poison_level": summary["poison_level"],
            "model": summary["model"].map(model_rank),
            "metric": summary["metric"],
            "n_train": summary["n_train"],
        }
    ).sort_values(["poison_level", "model", "metric", "n_train"], kind="stable")
    return summary.loc[order.index].reset_index(drop=True)


def rows_to_match(sizes: np.ndarray, accuracy: np.ndarray, target: float) -> float:
    """Smallest training-set size whose mean accuracy reaches ``target``.

    Linear between measured sizes; ``sizes[0]`` if the first size already
    reaches it, NaN if no measured size does.
    """
    for i, value in enumerate(accuracy):
        if value >= target:
            if i == 0:
                return float(sizes[0])
            before = accuracy[i - 1]
            return float(
                sizes[i - 1] + (target - before) / (value - before) * (sizes[i] - sizes[i - 1])
            )
    return math.nan


def quantity_answers(
    summary: pd.DataFrame, reference: int, attack: str, metric: str = "accuracy"
) -> list[str]:
    """One sentence per model: poisoned rows needed to match ``reference`` clean rows.

    In ``metric``, the report's headline metric (accuracy where the experiment did
    not record it: ``roc_auc``). No size is given at a level where the poisoned
    score at ``reference`` rows has a 95% interval reaching the clean score: poisoning
    cost nothing measurable there, and a size "needed" would be a ratio of noise.
    """
    if metric not in set(summary["metric"]):
        metric = "accuracy"
    accuracy = summary[summary["metric"] == metric]
    levels = sorted(set(accuracy["poison_level"]))
    if not levels or levels[0] != 0.0:
        return ["The quantity experiment needs poison level 0 (clean data) to compare against."]
    sentences = []
    for model, frame in accuracy.groupby("model", sort=False):
        clean = frame[(frame["poison_level"] == 0.0) & (frame["n_train"] == reference)]
        if clean.empty:
            continue
        target = float(clean["mean"].iloc[0])
        parts = []
        for level in levels[1:]:
            curve = frame[frame["poison_level"] == level].sort_values("n_train")
            sizes, means = curve["n_train"].to_numpy(), curve["mean"].to_numpy()
            same = curve[curve["n_train"] == reference]
            if not same.empty and same["ci_high"].iloc[0] >= target:
                row = same.iloc[0]
                parts.append(
                    f"at {level:.0%} {attack} {reference} rows score {row['mean']:.3f} (95% CI "
                    f"{row['ci_low']:.3f} to {row['ci_high']:.3f}), not distinguishable from "
                    "clean, so no size is given"
                )
                continue
            needed = rows_to_match(sizes, means, target)
            if math.isnan(needed):
                parts.append(
                    f"at {level:.0%} {attack} no size up to {sizes.max()} rows reaches it "
                    f"(best {means.max():.3f})"
                )
            elif needed <= sizes[0] and means[0] >= target:
                parts.append(f"at {level:.0%} {attack} {sizes[0]} rows already do")
            else:
                parts.append(
                    f"at {level:.0%} {attack} it takes about {needed:.0f} rows "
                    f"({needed / reference:.1f}x as many)"
                )
        sentences.append(
            f"{model}: {reference} clean rows give {metric} {target:.3f}; " + "; ".join(parts) + "."
        )
    return sentences
