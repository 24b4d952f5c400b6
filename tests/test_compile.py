"""The compiled pipeline: a valid PipelineSpec, the loop over levels, the image, no pip install."""

from __future__ import annotations

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.conftest import run_command


def _compile(tmp_path, *args, env=None):
    output = tmp_path / "p.yaml"
    result = run_command("compile.py", "--output", str(output), *args, env=env)
    assert result.returncode == 0, result.stderr
    text = output.read_text()
    return text, json_format.ParseDict(yaml.safe_load(text), pipeline_spec_pb2.PipelineSpec())


def test_compiled_yaml_parses_as_a_pipeline_spec_with_the_loop(tmp_path):
    text, spec = _compile(tmp_path)
    assert spec.pipeline_info.name == "poisonlab-sweep"
    loops = [
        task
        for task in spec.root.dag.tasks.values()
        if task.parameter_iterator.items.input_parameter
    ]
    assert len(loops) == 1
    assert loops[0].parameter_iterator.items.input_parameter.endswith("poison_levels")
    loop_dag = spec.components[loops[0].component_ref.name].dag
    assert {"poison", "validate", "train", "evaluate"} <= set(loop_dag.tasks)
    assert {"load", "report", "mirror"} <= set(spec.root.dag.tasks)
    assert "pip install" not in text


def test_image_comes_from_the_flag_the_config_or_the_environment(tmp_path):
    def executors(text):
        return yaml.safe_load(text)["deploymentSpec"]["executors"].values()

    text, _ = _compile(tmp_path, env={"POISONLAB_IMAGE": "example.com/env:1"})
    assert {e["container"]["image"] for e in executors(text)} == {"example.com/env:1"}
    text, _ = _compile(
        tmp_path,
        "--set",
        "vertex.image=example.com/config:2",
        env={"POISONLAB_IMAGE": "example.com/env:1"},
    )
    assert {e["container"]["image"] for e in executors(text)} == {"example.com/config:2"}
    text, _ = _compile(tmp_path, "--image", "example.com/flag:3")
    assert {e["container"]["image"] for e in executors(text)} == {"example.com/flag:3"}


def test_the_report_fans_in_one_artifact_per_level(tmp_path):
    """Vertex refuses a fan-in of more than 100 artifacts: at 48 levels it must stay under."""
    from benchmarks.dag import VERTEX_FAN_IN_LIMIT, dag_shape

    text, _ = _compile(tmp_path)
    shape = dag_shape(yaml.safe_load(text))
    assert shape["collected_per_level"] == 1
    assert shape["collected_per_level"] * 48 < VERTEX_FAN_IN_LIMIT
    # The critical path does not grow with the levels: they run side by side.
    assert shape["critical_path"] == 7
