"""Finer units of work (poisonlab.units): the same bytes out whatever the fan-out, the
compiled shape within Vertex's fan-in limit, machines per step, one-line errors.

The byte-identity check runs the steps in this process, unit by unit as the pipeline
does (``steps.poison`` with the unit, ``fan_in.gather`` per level): the KFP runner
adds only orchestration, which tests/test_local_run.py covers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipelines.poisoning import compile_pipeline, pipeline_parameters
from poisonlab import plan, units
from poisonlab.config import load_config
from poisonlab.errors import PoisonlabError
from tests.conftest import ROOT, run_command
from tests.pipeline_steps import run_steps

IRIS = ROOT / "configs" / "iris.yaml"


@pytest.mark.slow
def test_summaries_are_byte_identical_whatever_the_fan_out(tmp_path):
    """Must-hold 1: Iris, 10 trials; level_attack with 3 trials per task splits each
    level into 2 attacks x 4 chunks (of 3, 3, 3 and 1 trials)."""
    # Two of the three models (random forests would triple the time, not the evidence).
    tracking = [
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "train.models=[logistic_regression, decision_tree]",
    ]
    default = load_config(IRIS, tracking)
    finer = load_config(
        IRIS, [*tracking, "pipeline.fan_out=level_attack", "pipeline.trials_per_task=3"]
    )
    assert default["trials"] == 10
    assert len(units.level_items(finer)) == 8
    one = run_steps(default, tmp_path / "level")
    other = run_steps(finer, tmp_path / "level_attack")
    for name in ("summary.csv", "detection.csv", "gate.csv"):
        assert (one / name).read_bytes() == (other / name).read_bytes(), name
    # Same experiment, so the same config hash; the poisoned sets' hashes in one order.
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (one, other)]
    assert manifests[0]["config_sha256"] == manifests[1]["config_sha256"]
    sets = [m["provenance"]["poisoned_sha256"] for m in manifests]
    assert json.dumps(sets[0]) == json.dumps(sets[1])


def test_certified_results_are_byte_identical_whatever_the_fan_out(tmp_path):
    given = [
        "trials=2",
        "poison.levels=[0.0, 0.1]",
        "validate.detectors=[zscore]",
        "train.models=[certified_tree]",
        "train.certified_tree={aggregate: dpa, base: decision_tree, partitions: 5}",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    one = run_steps(load_config(None, given), tmp_path / "level")
    finer = [*given, "pipeline.fan_out=level_attack", "pipeline.trials_per_task=1"]
    other = run_steps(load_config(None, finer), tmp_path / "level_attack")
    for name in ("summary.csv", "detection.csv", "certified.csv"):
        assert (one / name).read_bytes() == (other / name).read_bytes(), name


def test_units_cover_every_level_attack_and_trial_once():
    config = load_config(
        None,
        [
            "trials=7",
            "poison.attacks=[label_flip, feature_noise, label_flip_targeted]",
            "pipeline.fan_out=level_attack",
            "pipeline.trials_per_task=3",
        ],
    )
    covered = [
        (u.level, attack, trial)
        for u in units.units(config)
        for attack in u.attacks
        for trial in u.trials
    ]
    wanted = [
        (level, attack, trial)
        for level in config["poison"]["levels"]
        for attack in config["poison"]["attacks"]
        for trial in range(7)
    ]
    assert sorted(covered) == sorted(wanted)
    assert len(covered) == len(set(covered))
    shape = units.shape(config)
    assert shape.units_per_level == 3 * 3  # attacks x chunks of 3, 3 and 1 trials
    assert shape.tasks == 3 + 4 * (9 * 4 + 2)


def _compiled(tmp_path: Path, overrides: list[str]) -> tuple[dict, dict]:
    config = load_config(None, overrides)
    path = tmp_path / "pipeline.yaml"
    compile_pipeline(str(path), "example.com/poisonlab:1", config)
    return config, yaml.safe_load(path.read_text())


def _collected(spec: dict) -> list[tuple[str, str, str]]:
    """Every artifact-list input a task takes: (dag, task, input)."""
    dags = {"root": spec["root"]["dag"]}
    dags.update({n: c["dag"] for n, c in spec["components"].items() if "dag" in c})
    found = []
    for dag_name, dag in dags.items():
        for task_name, task in dag["tasks"].items():
            component = spec["components"][task["componentRef"]["name"]]
            inputs = component.get("inputDefinitions", {}).get("artifacts", {})
            for name, definition in inputs.items():
                if definition.get("isArtifactList"):
                    found.append((dag_name, task_name, name))
    return found


def test_thirty_levels_by_four_attacks_compile_within_the_fan_in_limit(tmp_path):
    """Must-hold 2 (compile side): 120 units; the report collects 30 artifacts (one per
    level) and each level's gather 4 (one per attack), never the 120."""
    levels = [round(i / 100, 2) for i in range(30)]
    config, spec = _compiled(
        tmp_path,
        [
            f"poison.levels={levels}",
            "poison.attacks=[label_flip, feature_noise, label_flip_targeted, label_flip_margin]",
            "pipeline.fan_out=level_attack",
            "trials=1",
        ],
    )
    assert len(units.units(config)) == 120
    # Who collects what: report and mirror the level loop's gather outputs, gather the
    # unit loop's evaluate outputs; the loop items are parameters.
    collected = {(task, name) for _, task, name in _collected(spec)}
    assert collected == {
        ("report", "level_results"),
        ("mirror", "level_results"),
        ("gather", "unit_results"),
    }
    root = spec["root"]["dag"]["tasks"]
    levels_loop = next(t for t in root.values() if "parameterIterator" in t)
    assert levels_loop["parameterIterator"]["items"]["inputParameter"].endswith("poison_levels")
    level_dag = spec["components"][levels_loop["componentRef"]["name"]]["dag"]["tasks"]
    assert {"units", "gather"} <= set(level_dag)
    unit_loop = next(t for t in level_dag.values() if "parameterIterator" in t)
    unit_dag = spec["components"][unit_loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(unit_dag) == set(units.UNIT_STEPS)
    parameters = pipeline_parameters(config)
    fan_in = units.shape(config).largest_fan_in
    assert len(parameters["poison_levels"]) == 30 and len(parameters["units"]) == 4
    assert fan_in == 30 <= units.VERTEX_FAN_IN_LIMIT


def test_resources_and_parallelism_land_in_the_compiled_yaml(tmp_path):
    """Must-hold 3 (compile side): train and validate's CPU and memory, request and
    limit, on their tasks only; the loop's parallelism."""
    _, spec = _compiled(
        tmp_path,
        [
            "vertex.resources={train: {cpu: 16, memory: 64G}, validate: {cpu: 8, memory: 32G}}",
            "vertex.parallelism=8",
        ],
    )
    executors = spec["deploymentSpec"]["executors"]
    resources = {
        name.removeprefix("exec-"): e["container"].get("resources") for name, e in executors.items()
    }
    assert resources["train"] == {
        "cpuLimit": 16.0,
        "cpuRequest": 16.0,
        "memoryLimit": 64.0,
        "memoryRequest": 64.0,
        "resourceCpuLimit": "16",
        "resourceCpuRequest": "16",
        "resourceMemoryLimit": "64G",
        "resourceMemoryRequest": "64G",
    }
    assert resources["validate"]["resourceCpuLimit"] == "8"
    assert resources["validate"]["resourceMemoryLimit"] == "32G"
    assert all(resources[s] is None for s in ("load", "poison", "evaluate", "report", "mirror"))
    loop = next(t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t)
    assert loop["iteratorPolicy"] == {"parallelismLimit": 8}


def test_default_and_accelerator_settings_and_nested_parallelism(tmp_path):
    config, spec = _compiled(
        tmp_path,
        [
            "vertex.resources={default: {cpu: 2, memory: 8G}, evaluate: {accelerator_type: "
            "NVIDIA_L4, accelerator_count: 2}}",
            "vertex.parallelism=8",
            "pipeline.fan_out=level_attack",
        ],
    )
    executors = spec["deploymentSpec"]["executors"]
    evaluate = executors["exec-evaluate"]["container"]["resources"]
    assert evaluate["resourceCpuLimit"] == "2" and evaluate["resourceMemoryLimit"] == "8G"
    assert evaluate["accelerator"]["resourceType"] == "NVIDIA_L4"
    assert evaluate["accelerator"]["resourceCount"] == "2"
    assert executors["exec-load"]["container"]["resources"]["resourceCpuLimit"] == "2"
    # 2 attacks per level: 4 levels at once x 2 units each = the cap of 8.
    assert units.loop_parallelism(config) == (4, 2)
    root = spec["root"]["dag"]["tasks"]
    outer = next(t for t in root.values() if "parameterIterator" in t)
    inner = next(
        t
        for t in spec["components"][outer["componentRef"]["name"]]["dag"]["tasks"].values()
        if "parameterIterator" in t
    )
    assert (
        outer["iteratorPolicy"]["parallelismLimit"] * inner["iteratorPolicy"]["parallelismLimit"]
        == 8
    )


@pytest.mark.parametrize(
    ("override", "field"),
    [
        (
            "vertex.resources={trian: {cpu: 4}}",
            'vertex.resources.trian is not a step of the pipeline; did you mean "train"?',
        ),
        ("vertex.resources={train: {memory: 16Gi}}", "vertex.resources.train.memory = '16Gi'"),
        (
            "vertex.resources={train: {memory: 1000G}}",
            "vertex.resources.train.memory = '1000G' is more",
        ),
        (
            "vertex.resources={default: {cpu: 128}}",
            "vertex.resources.default.cpu = 128 is more CPUs",
        ),
        (
            "vertex.resources={train: {cpus: 4}}",
            'vertex.resources.train.cpus is not a known key; did you mean "cpu"?',
        ),
        (
            "vertex.resources={train: {accelerator_type: T4}}",
            "vertex.resources.train.accelerator_type = 'T4'",
        ),
        ("vertex.parallelism=0", "vertex.parallelism = 0"),
        ("pipeline.fan_out=attack", "pipeline.fan_out = 'attack' is not an option"),
        (
            "pipeline.trials_per_task=3",
            "pipeline.trials_per_task needs pipeline.fan_out: level_attack",
        ),
    ],
)
def test_bad_settings_fail_in_one_line_naming_the_field(override, field):
    with pytest.raises(PoisonlabError) as error:
        load_config(None, [override])
    message = str(error.value)
    assert field in message and "\n" not in message


def test_more_units_per_level_than_vertex_collects_is_refused():
    config = load_config(
        None, ["trials=100", "pipeline.fan_out=level_attack", "pipeline.trials_per_task=1"]
    )
    with pytest.raises(
        PoisonlabError, match=r"trials_per_task = 1 makes 200 units per level.*at least 2"
    ):
        units.check_fan_in(config)
    levels = load_config(None, [f"poison.levels={[i / 200 for i in range(101)]}"])
    with pytest.raises(PoisonlabError, match="poison.levels has 101 levels"):
        units.check_fan_in(levels)


# --- the command line --------------------------------------------------------------------

VERTEX = ["--project", "demo-proj", "--pipeline-root", "gs://demo-bucket/root"]
SIZED = [
    "--set",
    "vertex.resources={train: {cpu: 16, memory: 64G}, validate: {cpu: 8, memory: 32G}}",
    "--set",
    "vertex.parallelism=8",
]


def test_dry_run_carries_and_prints_the_machines_and_the_plan(capsys):
    """Must-hold 3 (command side): the request's pipeline spec has the settings; the
    dry run prints them with the run's tasks and longest chain. In process (as
    tests/test_vertex.py's submissions), no credentials needed."""
    import submit

    assert submit.main(["--dry-run", *VERTEX, *SIZED]) == 0
    captured = capsys.readouterr()
    spec = json.loads(captured.out)["pipelineSpec"]
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert (train["resourceCpuLimit"], train["resourceMemoryLimit"]) == ("16", "64G")
    assert "plan: train runs with cpu 16, memory 64G" in captured.err
    assert "plan: validate runs with cpu 8, memory 32G" in captured.err
    assert "plan: at most 8 units at once (vertex.parallelism)" in captured.err
    assert "plan: 19 tasks; longest chain 7 tasks" in captured.err


def test_a_misspelt_step_is_refused_in_one_line():
    import submit

    with pytest.raises(PoisonlabError) as error:
        submit.main(["--dry-run", *VERTEX, "--set", "vertex.resources={trainn: {cpu: 4}}"])
    assert "vertex.resources.trainn" in str(error.value) and "\n" not in str(error.value)


def test_the_run_page_is_the_parent_runs_own():
    from poisonlab.mirror import run_page

    assert (
        run_page("sqlite:///m.db", "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    )
    assert (
        run_page("https://u:p@mlflow.example.com/", "3", "abc")
        == "https://***@mlflow.example.com/#/experiments/3/runs/abc"
    )


@pytest.mark.slow
def test_level_attack_runs_on_the_local_runner(tmp_path):
    """Must-hold 2 (run side), kept tiny: one level, two attacks, one trial, one model and
    detector. Every task the plan counts runs; the results equal the default fan-out's
    (in process); the last line is the MLflow run's page."""
    overrides = [
        "trials=1",
        "poison.levels=[0.2]",
        "train.models=[logistic_regression]",
        "validate.detectors=[zscore]",
        "mlflow.log_models=false",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    finer = [*overrides, "pipeline.fan_out=level_attack"]
    out = tmp_path / "out"
    result = run_command(
        "submit.py", "--local", *[a for o in finer for a in ("--set", o)], "--output-dir", str(out)
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    config = load_config(None, finer)
    done = (out / "pipeline.log").read_text().count("' finished with status SUCCESS")
    assert done - 1 == units.shape(config).tasks == 3 + 1 * (2 * 4 + 2)  # -1: the pipeline's
    expected = run_steps(load_config(None, overrides), tmp_path / "in_process")
    for name in ("summary.csv", "detection.csv"):
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name
    last = result.stdout.strip().splitlines()[-1]
    assert "/#/experiments/" in last and "/runs/" in last


# --- the plan's arithmetic (the pilot itself: benchmarks/plan_accuracy.py) -----------------


def _pilot(config: dict, n_rows: int, exponent: float) -> plan.Pilot:
    """A pilot whose every step costs rows**exponent / 1000 CPU-seconds at each size."""
    pilot = plan.Pilot(n_rows, (1000, 4000))
    keys = [("load", ""), ("gather", ""), ("report", ""), ("mirror", "")]
    keys += [(s, a) for s in units.UNIT_STEPS for a in config["poison"]["attacks"]]
    for key in keys:
        pilot.steps[key] = tuple(plan.Measured(n**exponent / 1000, n / 100) for n in (1000, 4000))
    pilot.starts = {step: plan.Measured(1.0, 100.0) for step in units.STEPS}
    return pilot


def test_the_estimate_follows_the_measured_growth_and_multiplies_out():
    config = load_config(None, ["trials=4"])
    grown = plan.extrapolate(plan.Measured(1.0, 10), plan.Measured(16.0, 40), 1000, 4000, 40_000)
    assert grown.cpu == pytest.approx(16.0 * 10**2)  # quadratic: x10 rows, x100 time
    assert grown.peak_mb == pytest.approx(400.0)  # linear memory
    one = plan.estimate(config, _pilot(config, 40_000, 1.0))
    train = next(s for s in one.steps if s.step == "train")
    # 4 levels x (2 attacks x 4 trials x 40 s at 40k rows + 1 s start) per level task.
    assert train.tasks == 4 and train.cpu_total == pytest.approx(4 * (2 * 4 * 40.0 + 1.0))
    finer = load_config(None, ["trials=4", "pipeline.fan_out=level_attack"])
    two = plan.estimate(finer, _pilot(finer, 40_000, 1.0))
    train_finer = next(s for s in two.steps if s.step == "train")
    # The same work in twice the tasks: only the starts are added.
    assert train_finer.tasks == 8
    assert train_finer.cpu_total - train.cpu_total == pytest.approx(4 * 1.0)
    assert two.wall_seconds < one.wall_seconds  # the units of a level side by side
    lines = plan.estimate_lines(finer, _pilot(finer, 40_000, 1.0), two)
    assert any("vCPU-hours" in line for line in lines)


def test_a_failed_unit_fails_its_level_only(tmp_path, monkeypatch):
    from poisonlab.failures import FAIL_LEVELS_ENV

    monkeypatch.setenv(FAIL_LEVELS_ENV, "0.2")
    config = load_config(
        None,
        [
            "trials=1",
            "poison.levels=[0.0, 0.2]",
            "train.models=[logistic_regression]",
            "validate.detectors=[zscore]",
            "pipeline.fan_out=level_attack",
        ],
    )
    results = run_steps(config, tmp_path / "run")
    manifest = json.loads((results / "manifest.json").read_text())
    [failed] = manifest["provenance"]["failed_levels"]
    assert failed["level"] == 0.2 and failed["step"] == "poison"
    summary = (results / "summary.csv").read_text()
    assert "\n0,label_flip," in summary and "\n0.2," not in summary


def test_plan_runs_nothing_so_it_refuses_run_flags():
    import submit

    for flag in ("--local", "--wait"):
        with pytest.raises(PoisonlabError, match=f"--plan runs nothing; drop {flag}"):
            submit.main(["--plan", flag])
