"""The stronger attacks against the ones they must beat, in one process.

    PYTHONPATH=$PWD python benchmarks/strong_attacks.py [--trials 10]

1. logistic_regression's mean accuracy at level 0.1 under label_flip,
   label_flip_margin and label_flip_greedy on Iris, wine and breast_cancer.
2. subpopulation at level 0.1 on Iris: the drop in subpopulation_accuracy
   against the drop in overall accuracy, per model.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from poisonlab.config import load_config
from poisonlab.experiment import run_experiment


def _summary(trials: int, *overrides: str) -> tuple[pd.DataFrame, float]:
    started = time.monotonic()
    config = load_config(None, [f"trials={trials}", "validate.detectors=[]", *overrides])
    summary, _, _ = run_experiment(config)
    return summary[summary["defense"] == "none"], time.monotonic() - started


def label_flips(trials: int) -> pd.DataFrame:
    rows = []
    for source in ("iris", "wine", "breast_cancer"):
        summary, seconds = _summary(
            trials,
            f"dataset.source=sklearn:{source}",
            "poison.levels=[0.0, 0.1]",
            "poison.attacks=[label_flip, label_flip_margin, label_flip_greedy]",
            "train.models=[logistic_regression]",
        )
        accuracy = summary[summary["metric"] == "accuracy"]
        row = {
            "dataset": source,
            "clean": accuracy[accuracy["poison_level"] == 0.0]["mean"].iloc[0],
        }
        for attack, frame in accuracy[accuracy["poison_level"] == 0.1].groupby(
            "attack", sort=False
        ):
            value = frame.iloc[0]
            row[attack] = f"{value['mean']:.3f} [{value['ci_low']:.3f}, {value['ci_high']:.3f}]"
        row["seconds"] = round(seconds, 1)
        rows.append(row)
    return pd.DataFrame(rows)


def subpopulation(trials: int) -> pd.DataFrame:
    summary, _ = _summary(
        trials,
        "poison.levels=[0.0, 0.1]",
        "poison.attacks=[subpopulation]",
        "train.models=[logistic_regression, decision_tree, random_forest]",
    )
    table = summary.pivot_table(index=["model", "metric"], columns="poison_level", values="mean")
    table = table.loc[(slice(None), ["accuracy", "subpopulation_accuracy"]), :]
    table["drop"] = table[0.0] - table[0.1]
    drops = table["drop"].unstack("metric")
    drops["ratio"] = drops["subpopulation_accuracy"] / drops["accuracy"]
    return drops.round(3).reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    trials = parser.parse_args().trials
    pd.set_option("display.width", 200)
    print(f"\n1. logistic_regression accuracy at label-flip level 0.1 ({trials} trials, 95% CI)")
    print(label_flips(trials).to_markdown(index=False))
    print(f"\n2. subpopulation at level 0.1 on Iris: accuracy drops ({trials} trials)")
    print(subpopulation(trials).to_markdown(index=False))


if __name__ == "__main__":
    main()
