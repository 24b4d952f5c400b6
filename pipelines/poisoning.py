"""The poisoning sweep: load, then per poison level poison -> validate -> train -> evaluate,
then a fan-in to report and mirror. With ``pipeline.fan_out: level_attack`` the chain runs
per unit of a level (poisonlab.units) in a loop nested in the levels' loop, and a gather
per level collects a level's units.

Components are built for one container image, chosen at compile time, and
install nothing when a task starts: the image holds poisonlab and kfp.
"""

import os
from typing import NamedTuple

from kfp import compiler, dsl

from components.evaluate import evaluate
from components.gather import gather
from components.load import load
from components.mirror import mirror
from components.poison import poison
from components.report import report
from components.train import train
from components.units import units
from components.validate import validate
from poisonlab.config import canonical_json, validate_config
from poisonlab.data import INPUT_SHA256_ENV
from poisonlab.resources import step_resources
from poisonlab.units import level_items, loop_parallelism, nested

PIPELINE_NAME = "poisonlab-sweep"
IMAGE_ENV = "POISONLAB_IMAGE"
DEFAULT_IMAGE = "us-central1-docker.pkg.dev/poisonlab/poisonlab/poisonlab:0.1.0"
RETRIES = 2


# The results directory, and whether the mirror got it into MLflow (a failed mirror does
# not fail the run; the caller warns and says how to mirror later).
class PipelineOutputs(NamedTuple):
    results: dsl.Artifact
    mirror_status: dict


def resolve_image(config_image: str | None = None) -> str:
    """The image: the config's ``vertex.image``, else $POISONLAB_IMAGE, else the default."""
    return config_image or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def pipeline_parameters(config: dict) -> dict:
    """The pipeline's parameters for ``config``: the whole config as JSON, the levels to
    fan out over, and (``pipeline.fan_out: level_attack``) a level's units."""
    parameters = {"config": canonical_json(config), "poison_levels": config["poison"]["levels"]}
    if nested(config):
        parameters["units"] = level_items(config)
    return parameters


def _sized(task, step: str, resources: dict):
    """``task`` with the CPU, memory and accelerator ``vertex.resources`` gives ``step``
    (request and limit alike; poisonlab.resources checked them)."""
    asked = step_resources(resources, step)
    if "cpu" in asked:
        task.set_cpu_request(asked["cpu"]).set_cpu_limit(asked["cpu"])
    if "memory" in asked:
        task.set_memory_request(asked["memory"]).set_memory_limit(asked["memory"])
    if "accelerator_type" in asked:
        task.set_accelerator_type(asked["accelerator_type"])
        task.set_accelerator_limit(asked["accelerator_count"])
    return task


def build_pipeline(
    image: str, input_sha256: str = "", config: dict | None = None, parallelism: int | None = None
):
    """The pipeline function, with every component running on ``image``.

    ``input_sha256``, the dataset's content hash, goes to the load task's environment
    (``INPUT_SHA256_ENV``): a cached local run then keys load by the data's content,
    not only by its path.

    ``config`` shapes the pipeline (none: the defaults): ``pipeline.fan_out``
    (poisonlab.units: one loop over levels, or a loop over each level's units nested
    in it, with a gather per level), ``vertex.resources`` (CPU, memory and
    accelerators per step) and ``vertex.parallelism`` (the loops' caps; ``parallelism``
    instead where given: the local runner's 2).
    """
    config = config or validate_config({})
    resources = config["vertex"]["resources"] or {}
    level_cap, unit_cap = loop_parallelism(config, parallelism)

    def on_image(func):
        return dsl.component(func, base_image=image, install_kfp_package=False)

    load_op, poison_op, validate_op, train_op, evaluate_op, report_op, mirror_op = map(
        on_image, (load, poison, validate, train, evaluate, report, mirror)
    )
    units_op, gather_op = on_image(units), on_image(gather)

    def unit_chain(config_json, level, loaded, unit=None):
        """poison -> validate -> train -> evaluate of one unit (or of a whole level)."""
        extra = {} if unit is None else {"unit": unit}
        # Retries: a preempted VM or a passing network error is worth another go.
        poisoned = _sized(
            poison_op(
                config=config_json,
                level=level,
                data=loaded.outputs["data"],
                splits=loaded.outputs["splits"],
                **extra,
            ),
            "poison",
            resources,
        )
        validated = _sized(
            validate_op(
                config=config_json,
                poisoned=poisoned.outputs["poisoned"],
                data=loaded.outputs["data"],
                splits=loaded.outputs["splits"],
            ),
            "validate",
            resources,
        )
        trained = _sized(
            train_op(
                config=config_json,
                poisoned=poisoned.outputs["poisoned"],
                detections=validated.outputs["detections"],
            ),
            "train",
            resources,
        )
        evaluated = _sized(
            evaluate_op(
                config=config_json,
                level=level,
                data=loaded.outputs["data"],
                splits=loaded.outputs["splits"],
                poisoned=poisoned.outputs["poisoned"],
                detections=validated.outputs["detections"],
                models=trained.outputs["models"],
                **extra,
            ),
            "evaluate",
            resources,
        )
        for task, name in zip(
            (poisoned, validated, trained, evaluated),
            ("poison", "validate", "train", "evaluate"),
            strict=True,
        ):
            task.set_display_name(name).set_retry(RETRIES)
        return evaluated

    def sweep(config_json, poison_levels, loaded, unit_items):
        """The loops; returns the task whose ``level_results`` the report collects."""
        with dsl.ParallelFor(poison_levels, name="poison-levels", parallelism=level_cap) as level:
            if unit_items is None:
                return unit_chain(config_json, level, loaded)
            level_units = _sized(units_op(level=level, items=unit_items), "units", resources)
            level_units.set_display_name("units")
            with dsl.ParallelFor(level_units.output, name="units", parallelism=unit_cap) as unit:
                evaluated = unit_chain(config_json, unit.level, loaded, unit)
            # One artifact per level: Vertex refuses a fan-in of more than 100.
            return _sized(
                gather_op(
                    config=config_json,
                    level=level,
                    unit_results=dsl.Collected(evaluated.outputs["level_results"]),
                ),
                "gather",
                resources,
            ).set_display_name("gather")

    def finish(config_json, loaded, per_level) -> PipelineOutputs:
        run_key = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        reported = _sized(
            report_op(
                config=config_json,
                run_key=run_key,
                # One artifact per level: Vertex refuses a fan-in of more than 100.
                level_results=dsl.Collected(per_level.outputs["level_results"]),
                data=loaded.outputs["data"],
            ),
            "report",
            resources,
        ).set_display_name("report")
        # Never fails (its status is an output), so nothing to retry; never cached: the
        # tracking server's state is not an input.
        mirrored = (
            _sized(
                mirror_op(
                    run_key=run_key,
                    job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                    task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
                    results=reported.outputs["results"],
                    data=loaded.outputs["data"],
                    level_results=dsl.Collected(per_level.outputs["level_results"]),
                ),
                "mirror",
                resources,
            )
            .set_display_name("mirror to MLflow")
            .set_caching_options(False)
        )
        return PipelineOutputs(results=reported.outputs["results"], mirror_status=mirrored.output)

    def start(config_json):
        # load may read gs://, where a passing network error is worth a retry.
        loaded = _sized(load_op(config=config_json), "load", resources)
        loaded.set_display_name("load dataset").set_retry(RETRIES)
        if input_sha256:
            loaded.set_env_variable(INPUT_SHA256_ENV, input_sha256)
        return loaded

    description = (
        "How much data poisoning a training pipeline takes, and whether data validation catches it."
    )
    if nested(config):

        @dsl.pipeline(name=PIPELINE_NAME, description=description)
        def poisoning_pipeline(config: str, poison_levels: list, units: list) -> PipelineOutputs:
            loaded = start(config)
            return finish(config, loaded, sweep(config, poison_levels, loaded, units))

    else:

        @dsl.pipeline(name=PIPELINE_NAME, description=description)
        def poisoning_pipeline(config: str, poison_levels: list) -> PipelineOutputs:
            loaded = start(config)
            return finish(config, loaded, sweep(config, poison_levels, loaded, None))

    return poisoning_pipeline


def compile_pipeline(output: str, image: str, config: dict | None = None) -> None:
    """Write the pipeline, every component on ``image``, shaped and sized by ``config``
    (``build_pipeline``), as KFP/Vertex YAML to ``output``."""
    compiler.Compiler().compile(build_pipeline(image, config=config), package_path=output)
