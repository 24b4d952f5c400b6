"""minmax and the gate-aware wrapper at scale: 100k rows x 20 features, level 0.03.

Prints each attack's time beside one fit of its surrogate (standardized logistic
regression on the same rows), and the ratio; the issue's bound is 30.

    PYTHONPATH=$PWD python benchmarks/adaptive.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import time

from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from poisonlab.attacks import apply_attack
from poisonlab.config import validate_config
from poisonlab.models import one_blas_thread
from poisonlab.seeding import derive_rng


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--level", type=float, default=0.03)
    args = parser.parse_args()
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
