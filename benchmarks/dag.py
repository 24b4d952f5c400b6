"""How the compiled pipeline grows with the number of poison levels.

    python benchmarks/dag.py [--levels 4 16 48]

Reads the compiled YAML (the DAG does not depend on the levels, which are a runtime
parameter) and, for each number of levels L, prints the number of tasks a run
executes, the length of its critical path (the longest chain of dependent tasks,
with every loop iteration running in parallel), and the number of artifacts fanned
in to a single task (Vertex AI refuses more than 100).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import cache
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.poisoning import compile_pipeline, resolve_image  # noqa: E402

VERTEX_FAN_IN_LIMIT = 100


def _longest_chain(spec: dict, component: str) -> int:
    """Executed tasks on the longest dependency chain through a component.

    A container task counts 1; a DAG (the pipeline, a loop body) counts its longest
    chain, and a loop counts as one iteration because iterations run in parallel.
    """
    if "dag" not in spec["components"].get(component, {}) and component != "root":
        return 1
    tasks = (spec["root"] if component == "root" else spec["components"][component])["dag"]["tasks"]

    @cache
    def finish(name: str) -> int:
        own = _longest_chain(spec, tasks[name]["componentRef"]["name"])
        return own + max((finish(dep) for dep in tasks[name].get("dependentTasks", [])), default=0)

    return max(finish(name) for name in tasks)


def dag_shape(spec: dict) -> dict[str, int]:
    """Tasks outside and inside the loop, critical path, artifacts one task collects per level."""
    root = spec["root"]["dag"]["tasks"]
    loops = [name for name, task in root.items() if "parameterIterator" in task]
    assert len(loops) == 1, "expected one ParallelFor over the poison levels"
    loop = root[loops[0]]
    # Vertex's limit is per fan-in: what one task collects from the loop (report and
    # mirror each collect the levels' results).
    collected = max(
        sum(
            source.get("taskOutputArtifact", {}).get("producerTask") == loops[0]
            for source in task.get("inputs", {}).get("artifacts", {}).values()
        )
        for task in root.values()
    )
    return {
        "outside_loop": len(root) - 1,
        "in_loop": len(spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]),
        "critical_path": _longest_chain(spec, "root"),
        "collected_per_level": collected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[4, 16, 48])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pipeline.yaml"
        compile_pipeline(str(path), resolve_image())
        shape = dag_shape(yaml.safe_load(path.read_text()))
    print("| levels | tasks run | critical path (tasks) | artifacts fanned in | Vertex limit |")
    print("|---:|---:|---:|---:|---:|")
    for levels in args.levels:
        tasks = shape["outside_loop"] + shape["in_loop"] * levels
        fan_in = shape["collected_per_level"] * levels
        print(
            f"| {levels} | {tasks} | {shape['critical_path']} | {fan_in} | {VERTEX_FAN_IN_LIMIT} |"
        )


if __name__ == "__main__":
    main()
