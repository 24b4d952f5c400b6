"""Detection benchmark: every detector beside cleanlab's confident learning at its defaults.

On the same poisoned data (label_flip at 0.1 and 0.3 on Iris, Wine and Breast
Cancer, or the real tables of tests/data: credit_data, caravan, pd_speech; the
pipeline's splits and attack), it measures each detector's F1
against the true mask and prints it beside the baseline: cleanlab's
``find_label_issues`` with every default, fed 5-fold out-of-sample predicted
probabilities of a standardized LogisticRegression (cleanlab's own
``estimate_cv_predicted_probabilities``). Then the ensemble defence's recovery
on Iris and its flag rate on clean Iris (``run_experiment``, as the pipeline
computes them), and the feature checks' flag rates on every clean table.

    PYTHONPATH=. python benchmarks/detection.py [--trials 20] [--datasets iris wine ...]
    PYTHONPATH=. python benchmarks/detection.py --trials 10 --datasets credit_data caravan pd_speech
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
import pandas as pd
from cleanlab.count import estimate_cv_predicted_probabilities
from cleanlab.filter import find_label_issues
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from poisonlab.attacks import apply_attack
from poisonlab.config import validate_config
from poisonlab.data import Dataset, load_dataset, split_masks
from poisonlab.detectors import DETECTORS, run_detector
from poisonlab.experiment import run_experiment
from poisonlab.metrics import detection_metrics
from poisonlab.seeding import derive_rng, derive_seed

BASELINE = "cleanlab"
SEED = 42
# Real tables shipped for the tests (tests/data/README.md): file, label column.
REAL_TABLES = {
    "credit_data": ("tests/data/credit_data.csv", "Status"),
    "caravan": ("tests/data/caravan.csv", "Purchase"),
    "pd_speech": ("tests/data/pd_speech.csv", "class"),
}


def load(name: str) -> Dataset:
    """A bundled scikit-learn dataset, or a real table without its ID column."""
    if name not in REAL_TABLES:
        return load_dataset(f"sklearn:{name}", None)[0]
    path, label = REAL_TABLES[name]
    return load_dataset(path, label, impute="median", encode="onehot", drop_columns=["rownames"])[0]


def clean_flag_rates(datasets: list[str]) -> pd.DataFrame:
    """Share of each whole clean table the feature checks flag (their false-flag rate)."""
    rows = []
    for name in datasets:
        dataset = load(name)
        rates = {}
        for detector in ("zscore", "iqr", "ensemble"):
            found = run_detector(
                detector,
                dataset.X,
                dataset.y,
                seed=SEED,
                n_classes=dataset.n_classes,
                params=DETECTORS[detector].defaults,
            )
            rates[detector] = float(found.flags.mean())
        rows.append({"dataset": name, "features": dataset.X.shape[1], **rates})
    return pd.DataFrame(rows)


def baseline_flags(X: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """cleanlab at its defaults on 5-fold out-of-sample probabilities of a scaled LR."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    # Single-threaded BLAS, as run_detector runs every detector: same footing for timings.
    with threadpool_limits(limits=1, user_api="blas"):
        probabilities = estimate_cv_predicted_probabilities(
            X, y, clf=model, cv_n_folds=5, seed=seed
        )
        return find_label_issues(y, probabilities)


def measure(datasets: list[str], levels: list[float], trials: int) -> pd.DataFrame:
    """One row per dataset x level x trial x detector: F1 and seconds."""
    rows = []
    for name in datasets:
        dataset = load(name)
        masks = split_masks(dataset.y, 0.2, SEED, trials)
        for level in levels:
            for trial in range(trials):
                train = ~masks[trial]
                poisoned = apply_attack(
                    "label_flip",
                    dataset.X[train],
                    dataset.y[train],
                    level,
                    rng=derive_rng(SEED, "poison", trial, "label_flip"),
                    n_classes=dataset.n_classes,
                    params={},
                )
                X, y, mask = poisoned.X, poisoned.y, poisoned.mask
                start = time.perf_counter()
                flags = baseline_flags(X, y, seed=derive_seed(SEED, "baseline", trial))
                f1 = detection_metrics(mask, np.zeros(len(y)), flags)["f1"]
                rows.append((name, level, trial, BASELINE, f1, time.perf_counter() - start))
                for detector, spec in DETECTORS.items():
                    start = time.perf_counter()
                    found = run_detector(
                        detector,
                        X,
                        y,
                        seed=derive_seed(SEED, "detect", trial, "label_flip", detector),
                        n_classes=dataset.n_classes,
                        params=spec.defaults,
                    )
                    f1 = detection_metrics(mask, found.scores, found.flags)["f1"]
                    rows.append((name, level, trial, detector, f1, time.perf_counter() - start))
    return pd.DataFrame(rows, columns=["dataset", "level", "trial", "detector", "f1", "seconds"])


def f1_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean F1 per dataset, level and detector, beside the baseline's, and the difference."""
    means = results.groupby(["dataset", "level", "detector"], sort=False)["f1"].mean()
    table = means.unstack("detector")
    wide = pd.DataFrame(index=table.index)
    wide[BASELINE] = table[BASELINE]
    for detector in DETECTORS:
        wide[detector] = table[detector]
    wide["ensemble - cleanlab"] = table["ensemble"] - table[BASELINE]
    return wide.reset_index()


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (for the README), floats to 3 decimals."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
    lines.append("|" + "---|" * len(frame.columns))
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def defence_check(trials: int) -> dict[str, float]:
    """Iris, label_flip 0.3, logistic_regression: ensemble recovery and level-0 flag rate."""
    config = validate_config(
        {
            "poison": {"levels": [0.0, 0.3], "attacks": ["label_flip"]},
            "validate": {"detectors": ["ensemble"]},
            "train": {"models": ["logistic_regression"]},
            "trials": trials,
            "seed": SEED,
        }
    )
    summary, detection, _ = run_experiment(config)

    def pick(frame: pd.DataFrame, **where: object) -> pd.Series:
        for key, value in where.items():
            frame = frame[frame[key] == value]
        return frame.iloc[0]

    recovery = pick(summary, poison_level=0.3, defense="ensemble", metric="recovery")
    clean = pick(summary, poison_level=0.0, defense="none", metric="accuracy")
    poisoned = pick(summary, poison_level=0.3, defense="none", metric="accuracy")
    defended = pick(summary, poison_level=0.3, defense="ensemble", metric="accuracy")
    flag_rate = pick(detection, poison_level=0.0, detector="ensemble", metric="flag_rate")
    return {
        "recovery_mean": recovery["mean"],
        "recovery_ci_low": recovery["ci_low"],
        "recovery_ci_high": recovery["ci_high"],
        "recovery_n": recovery["n"],
        "accuracy_clean": clean["mean"],
        "accuracy_poisoned": poisoned["mean"],
        "accuracy_defended": defended["mean"],
        "level0_flag_rate": flag_rate["mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--datasets", nargs="+", default=["iris", "wine", "breast_cancer"])
    parser.add_argument("--levels", nargs="+", type=float, default=[0.1, 0.3])
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    print(
        f"machine: {platform.processor() or platform.machine()}, {platform.system()}, "
        f"Python {platform.python_version()}"
    )
    started = time.perf_counter()
    results = measure(args.datasets, args.levels, args.trials)
    table = f1_table(results)
    print(f"\nMean F1 against the true mask, label_flip, {args.trials} trials\n")
    print(markdown(table))
    seconds = results.groupby("detector", sort=False)["seconds"].mean() * 1000
    print("\nMean milliseconds per call:", ", ".join(f"{d} {v:.0f}" for d, v in seconds.items()))
    against_member = table["ensemble"] - table["confident_learning"]
    print(
        f"\nIssue 15 must-hold 4 (ensemble F1 >= confident_learning's): smallest margin "
        f"{against_member.min():+.3f} -> {'holds' if against_member.min() >= 0 else 'FAILS'}"
    )
    rates = clean_flag_rates(args.datasets)
    print("\nShare of each clean table flagged (false-flag rate at level 0)\n")
    print(markdown(rates))
    worst = table["ensemble - cleanlab"].min()
    print(
        f"\nMust-hold 1 (ensemble beats cleanlab by >= 0.05 everywhere): smallest margin "
        f"{worst:+.3f} -> {'holds' if worst >= 0.05 else 'FAILS'}"
    )
    check = defence_check(max(10, min(args.trials, 20)))
    print(
        f"Must-hold 2 (Iris, label_flip 0.3, logistic_regression): accuracy clean "
        f"{check['accuracy_clean']:.3f}, poisoned {check['accuracy_poisoned']:.3f}, ensemble "
        f"defence {check['accuracy_defended']:.3f}; mean recovery {check['recovery_mean']:.3f} "
        f"[{check['recovery_ci_low']:.3f}, {check['recovery_ci_high']:.3f}] over "
        f"{check['recovery_n']:.0f} trials -> "
        f"{'holds' if check['recovery_mean'] >= 0.8 else 'FAILS'}"
    )
    print(
        f"Must-hold 3 (Iris level 0): ensemble flags {check['level0_flag_rate']:.2%} of training "
        f"rows -> {'holds' if check['level0_flag_rate'] <= 0.05 else 'FAILS'}"
    )
    print(f"\nTotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
