"""How long the MLflow mirror takes: first mirror, re-mirror, with and without models.

    python benchmarks/mirror.py [--config configs/iris.yaml] [--set k=v ...]
                                [--tracking-uri URI]

Runs the experiment in this process once, writes its results directory, then
mirrors it into a fresh tracking store (a new SQLite file unless --tracking-uri
is given) and prints a table of seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from poisonlab import experiment, steps  # noqa: E402
from poisonlab.config import canonical_json, load_config  # noqa: E402
from poisonlab.mirror import mirror_results  # noqa: E402
from poisonlab.report import write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/iris.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tracking-uri", help="default: a new SQLite file")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uri = args.tracking_uri or f"sqlite:///{work / 'mlflow.db'}"
        provenance = steps.load(
            canonical_json(config), str(work / "data.parquet"), str(work / "splits.parquet")
        )
        _, _, records = experiment.run_experiment(config)
        rows = []
        for models in (False, True):
            results = work / f"results-{models}"
            results.mkdir()
            write_results(records, config, provenance, results, f"bench-{time.time_ns()}")
            for attempt in ("first", "again"):
                started = time.perf_counter()
                result = mirror_results(
                    results, uri, data_path=work / "data.parquet", log_models=models
                )
                seconds = time.perf_counter() - started
                rows.append((models, attempt, result.children, result.new_models, seconds))
    print(f"tracking store: {'SQLite file' if not args.tracking_uri else args.tracking_uri}")
    print(f"{'models':>6} {'mirror':>6} {'children':>8} {'new models':>10} {'seconds':>8}")
    for models, attempt, children, new_models, seconds in rows:
        print(f"{str(models):>6} {attempt:>6} {children:>8} {new_models:>10} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
