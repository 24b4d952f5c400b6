"""Attack strength on Iris, in one process: the attack suite's quality claims, as tables.

    PYTHONPATH=$PWD python benchmarks/attack_strength.py [--trials 10]

1. At level 0.2, logistic_regression's mean accuracy under ``label_flip_margin``
   against ``label_flip`` (the adversarial flip should hurt more).
2. ``backdoor`` at level 0.1 against 0: random_forest's attack success rate and
   clean accuracy (the trigger should work while clean accuracy holds).
3. Every attack at level 0.2: mean accuracy per model, and each detector's recall.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from poisonlab.attacks import ATTACKS
from poisonlab.config import load_config
from poisonlab.experiment import run_experiment

COLUMNS = ["poison_level", "attack", "model", "metric", "mean", "ci_low", "ci_high", "n"]


def run(trials: int, *overrides: str) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    started = time.monotonic()
    config = load_config("configs/iris.yaml", [f"trials={trials}", *overrides])
    summary, detection, _ = run_experiment(config)
    return summary[summary["defense"] == "none"], detection, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    trials = parser.parse_args().trials
    pd.set_option("display.width", 160)

    summary, _, seconds = run(
        trials,
        "poison.levels=[0.0,0.2]",
        "poison.attacks=[label_flip,label_flip_margin]",
        "train.models=[logistic_regression]",
        "validate.detectors=[]",
    )
    print(
        f"\n1. margin vs random label flip, logistic_regression ({trials} trials, {seconds:.0f} s)"
    )
    print(summary[summary["metric"] == "accuracy"][COLUMNS].to_string(index=False))

    summary, _, seconds = run(
        trials,
        "poison.levels=[0.0,0.1]",
        "poison.attacks=[backdoor]",
        "train.models=[random_forest]",
        "validate.detectors=[]",
    )
    print(f"\n2. backdoor, random_forest ({trials} trials, {seconds:.0f} s)")
    metrics = summary["metric"].isin(["accuracy", "attack_success_rate"])
    print(summary[metrics][COLUMNS].to_string(index=False))

    summary, detection, seconds = run(
        trials, "poison.levels=[0.2]", f"poison.attacks=[{','.join(ATTACKS)}]"
    )
    print(f"\n3. every attack at level 0.2 ({trials} trials, {seconds:.0f} s)")
    accuracy = summary[summary["metric"] == "accuracy"]
    print(accuracy.pivot(index="attack", columns="model", values="mean").round(3).to_string())
    recall = detection[detection["metric"] == "recall"]
    print("\ndetector recall of the poisoned rows:")
    print(recall.pivot(index="attack", columns="detector", values="mean").round(3).to_string())


if __name__ == "__main__":
    main()
