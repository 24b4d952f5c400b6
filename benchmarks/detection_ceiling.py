"""Detection against its ceiling: the built-ins beside an oracle at 1% and 5% FPR.

The oracle knows the clean labels: its score for a row is one minus the
out-of-fold probability of the row's *given* label under models fitted on the
clean labels (a standardized logistic regression and extra trees, averaged;
5 folds). No detector that sees only the poisoned labels should beat it by
much, so recall is reported beside the oracle's and as a ratio to it. Every
threshold is set on the trial's clean training rows (``detectors.calibration``),
as ``validate.fpr`` sets them: the oracle's from its scores of the clean labels,
each detector's from its run on the clean split. label_flip at 0.1 and 0.3, the
pipeline's splits and seeds. Beside each detector's recall: the share of the poisoned
split's clean rows its threshold really flags, and its recall at a threshold set on those
rows ("own scale": what its ranking allows, were its scale not moved by the noise).

    PYTHONPATH=$PWD python benchmarks/detection_ceiling.py [--trials 5]
        [--datasets iris wine breast_cancer credit_data affairs caravan]
        [--detectors knn ensemble confident_learning trim ensemble:by_class=true]
        [--csv path/to/table.csv LABEL [ID_COLUMN]]

A detector written ``name:param=value,...`` runs with those parameters over its
defaults (``ensemble:by_class=true`` is the ensemble with its scores read
per class, off by default). ``--csv`` adds a binary or multiclass table of your own, by its label
column (and an ID column to drop).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier

from poisonlab.attacks import apply_attack
from poisonlab.data import Dataset, load_dataset, split_masks
from poisonlab.detectors import DETECTORS, out_of_sample_probabilities, run_detector
from poisonlab.detectors.calibration import REPORTED_FPRS, clean_threshold
from poisonlab.detectors.label_quality import _logistic
from poisonlab.models import one_blas_thread
from poisonlab.seeding import derive_rng, derive_seed

SEED = 42
REAL_TABLES = {
    "credit_data": ("tests/data/credit_data.csv", "Status", "rownames"),
    "affairs": ("tests/data/affairs.csv", "children", "rownames"),
    "caravan": ("tests/data/caravan.csv", "Purchase", "rownames"),
}


def load(name: str) -> Dataset:
    if "::" in name:  # --csv: "path::label::id"
        path, label, *key = name.split("::")
        return load_dataset(path, label, impute="median", encode="onehot", drop_columns=key)[0]
    if name not in REAL_TABLES:
        return load_dataset(f"sklearn:{name}", None)[0]
    path, label, key = REAL_TABLES[name]
    return load_dataset(path, label, impute="median", encode="onehot", drop_columns=[key])[0]


def oracle_probabilities(X: np.ndarray, y_clean: np.ndarray, n_classes: int, seed: int):
    """Out-of-fold class probabilities from models fitted on the clean labels."""
    members = [
        _logistic(),
        ExtraTreesClassifier(n_estimators=100, min_samples_leaf=3, random_state=seed, n_jobs=1),
    ]
    return np.mean(
        [
            out_of_sample_probabilities(m, X, y_clean, n_classes, n_splits=5, seed=seed)
            for m in members
        ],
        axis=0,
    )


def detector_spec(spec: str) -> tuple[str, dict]:
    """``name`` or ``name:param=value,...``: the detector and its parameters over its defaults."""
    name, _, rest = spec.partition(":")
    params = dict(DETECTORS[name].defaults)
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        lowered = value.lower()
        params[key] = (
            lowered == "true" if lowered in ("true", "false") else type(params.get(key, 0.0))(value)
        )
    return name, params


def recall_at(scores, mask, clean_scores) -> dict[float, tuple[float, float, float]]:
    """Per FPR: recall, the share of the poisoned split's clean rows flagged (the
    false-positive rate the threshold really has there), and the recall at the threshold
    that flags exactly that share of the poisoned split's own clean rows (what the
    ranking alone allows: the gap to the first is the cost of a scale that moved)."""
    found = {}
    for f in REPORTED_FPRS:
        threshold = clean_threshold(clean_scores, f)
        own = clean_threshold(scores[~mask], f)
        found[f] = (
            float(np.mean(scores[mask] > threshold)),
            float(np.mean(scores[~mask] > threshold)),
            float(np.mean(scores[mask] > own)),
        )
    return found


def run(
    datasets: list[str], detectors: list[str], trials: int, levels: list[float]
) -> pd.DataFrame:
    rows = []
    for name in datasets:
        data = load(name)
        k = data.n_classes
        masks = split_masks(data.y, 0.2, SEED, trials)
        for trial in range(trials):
            train = ~masks[trial]
            X, y = data.X[train], data.y[train]
            n = len(y)
            proba = oracle_probabilities(X, y, k, derive_seed(SEED, "oracle", trial))
            oracle_clean = 1.0 - proba[np.arange(n), y]
            clean = {
                d: run_detector(
                    detector_spec(d)[0],
                    X,
                    y,
                    seed=derive_seed(SEED, "clean", trial, d),
                    n_classes=k,
                    params=detector_spec(d)[1],
                ).scores
                for d in detectors
            }
            for level in levels:
                p = apply_attack(
                    "label_flip",
                    X,
                    y,
                    level,
                    rng=derive_rng(SEED, "poison", trial, "label_flip"),
                    n_classes=k,
                    params={},
                )
                found = {"oracle": recall_at(1.0 - proba[np.arange(n), p.y], p.mask, oracle_clean)}
                for d in detectors:
                    scores = run_detector(
                        detector_spec(d)[0],
                        p.X,
                        p.y,
                        seed=derive_seed(SEED, "detect", trial, d),
                        n_classes=k,
                        params=detector_spec(d)[1],
                    ).scores
                    found[d] = recall_at(scores, p.mask, clean[d])
                for d, by_fpr in found.items():
                    for fpr, measured in by_fpr.items():
                        rows.append((name, level, fpr, d, trial, *measured))
    columns = ["dataset", "level", "fpr", "detector", "trial", "recall", "clean_flagged", "own"]
    return pd.DataFrame(rows, columns=columns)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument(
        "--datasets",
        nargs="*",
        default=["iris", "wine", "breast_cancer", "credit_data", "affairs", "caravan"],
    )
    parser.add_argument(
        "--detectors", nargs="+", default=["knn", "confident_learning", "ensemble", "trim"]
    )
    parser.add_argument("--levels", nargs="+", type=float, default=[0.1, 0.3])
    parser.add_argument("--csv", nargs="+", action="append", default=[], metavar="PATH LABEL [ID]")
    args = parser.parse_args()
    args.datasets += ["::".join(given) for given in args.csv]
    warnings.filterwarnings("ignore")
    with one_blas_thread():
        frame = run(args.datasets, args.detectors, args.trials, args.levels)
    table = frame.groupby(["dataset", "level", "fpr", "detector"], sort=False)["recall"].mean()
    table = table.unstack("detector")
    order = ["oracle", *args.detectors]
    table = table[order]
    for d in args.detectors:  # no ratio to an oracle that itself catches almost nothing
        table[f"{d}/oracle"] = (table[d] / table["oracle"]).where(table["oracle"] >= 0.1)
    flagged = frame.groupby(["dataset", "level", "fpr", "detector"], sort=False)["clean_flagged"]
    flagged = flagged.mean().unstack("detector")[order]
    table = table.join(flagged.add_suffix(" clean flagged"))
    own = frame[frame["detector"] != "oracle"].groupby(
        ["dataset", "level", "fpr", "detector"], sort=False
    )["own"]
    table = table.join(own.mean().unstack("detector")[args.detectors].add_suffix(" own scale"))
    pd.set_option("display.width", 250)
    print(f"label_flip recall at the clean-calibrated threshold, mean of {args.trials} trials")
    print("(no ratio where the oracle catches under 0.1: the table hides flips from anyone)")
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
