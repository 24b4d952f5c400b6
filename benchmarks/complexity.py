"""How each attack and detector grows with the number of rows, in one process.

    python benchmarks/complexity.py [--rows 10000 100000] [--features 20]

Times every registered attack (level 0.1) and detector, with its default
parameters, on seeded synthetic tables (3 classes) of each size, and prints the
seconds and the growth exponent between consecutive sizes: log(t2 / t1) / log(n2 / n1),
1 for linear time, 2 for quadratic. Sub-quadratic means an exponent clearly below 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poisonlab.attacks import ATTACKS, apply_attack  # noqa: E402
from poisonlab.data import load_dataset  # noqa: E402
from poisonlab.detectors import DETECTORS, run_detector  # noqa: E402
from poisonlab.seeding import derive_rng  # noqa: E402

LEVEL = 0.1


def seconds(run) -> float:
    """The shortest of up to 5 runs, stopping once a second has been spent."""
    times: list[float] = []
    while len(times) < 5 and sum(times) < 1.0:
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def time_all(rows: int, features: int) -> dict[str, float]:
    """Seconds per attack and detector on a table of ``rows`` rows."""
    source = f"synthetic:rows={rows},features={features},classes=3"
    dataset, _ = load_dataset(source)
    X, y, k = dataset.X, dataset.y, dataset.n_classes
    times = {}
    for name, attack in ATTACKS.items():
        rng = derive_rng(0, "complexity", name)
        times[f"attack {name}"] = seconds(
            lambda name=name, attack=attack, rng=rng: apply_attack(
                name, X, y, LEVEL, rng=rng, n_classes=k, params=attack.defaults
            )
        )
    for name, detector in DETECTORS.items():
        times[f"detector {name}"] = seconds(
            lambda name=name, detector=detector: run_detector(
                name, X, y, seed=0, n_classes=k, params=detector.defaults
            )
        )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--features", type=int, default=20)
    args = parser.parse_args()
    results = {}
    for rows in args.rows:
        results[rows] = time_all(rows, args.features)
        print(f"{rows} rows: {sum(results[rows].values()):.0f} s", flush=True)
    sizes = list(results)
    pairs = list(zip(sizes, sizes[1:], strict=False))
    header = [f"{n} rows (s)" for n in sizes] + [f"exponent {a}->{b}" for a, b in pairs]
    print(f"\n{args.features} features, 3 classes, level {LEVEL}, default parameters")
    print("| | " + " | ".join(header) + " |")
    print("|---|" + "---:|" * len(header))
    for name in results[sizes[0]]:
        cells = [f"{results[n][name]:.2f}" for n in sizes]
        cells += [
            f"{math.log(results[b][name] / results[a][name]) / math.log(b / a):.2f}"
            for a, b in pairs
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
