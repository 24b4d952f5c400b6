"""The poisoning sweep: load, then per poison level poison -> validate -> train -> evaluate,
then a fan-in to report and mirror.

Components are built for one container image, chosen at compile time, and
install nothing when a task starts: the image holds poisonlab and kfp.
"""

import os
from typing import NamedTuple

from kfp import compiler, dsl

from components.evaluate import evaluate
from components.load import load
from components.mirror import mirror
from components.poison import poison
from components.report import report
from components.train import train
from components.validate import validate
from poisonlab.data import INPUT_SHA256_ENV

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


def build_pipeline(image: str, input_sha256: str = ""):
    """The pipeline function, with every component running on ``image``.

    ``input_sha256``, the dataset's content hash, goes to the load task's environment
    (``INPUT_SHA256_ENV``): a cached local run then keys load by the data's content,
    not only by its path.
    """

    def on_image(func):
        return dsl.component(func, base_image=image, install_kfp_package=False)

    load_op, poison_op, validate_op, train_op, evaluate_op, report_op, mirror_op = map(
        on_image, (load, poison, validate, train, evaluate, report, mirror)
    )

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="How much data poisoning a training pipeline takes, and whether "
        "data validation catches it.",
    )
    def poisoning_pipeline(config: str, poison_levels: list) -> PipelineOutputs:
        run_key = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        # load may read gs://, where a passing network error is worth a retry.
        loaded = load_op(config=config).set_display_name("load dataset").set_retry(RETRIES)
        if input_sha256:
            loaded.set_env_variable(INPUT_SHA256_ENV, input_sha256)
        with dsl.ParallelFor(poison_levels, name="poison-levels") as level:
            poisoned = (
                poison_op(
                    config=config,
                    level=level,
                    data=loaded.outputs["data"],
                    splits=loaded.outputs["splits"],
                )
                .set_display_name("poison")
                .set_retry(RETRIES)
            )
            validated = (
                validate_op(
                    config=config,
                    poisoned=poisoned.outputs["poisoned"],
                    data=loaded.outputs["data"],
                    splits=loaded.outputs["splits"],
                )
                .set_display_name("validate")
                .set_retry(RETRIES)
            )
            trained = (
                train_op(
                    config=config,
                    poisoned=poisoned.outputs["poisoned"],
                    detections=validated.outputs["detections"],
                )
                .set_display_name("train")
                .set_retry(RETRIES)
            )
            evaluated = (
                evaluate_op(
                    config=config,
                    level=level,
                    data=loaded.outputs["data"],
                    splits=loaded.outputs["splits"],
                    poisoned=poisoned.outputs["poisoned"],
                    detections=validated.outputs["detections"],
                    models=trained.outputs["models"],
                )
                .set_display_name("evaluate")
                .set_retry(RETRIES)
            )
        reported = report_op(
            config=config,
            run_key=run_key,
            # One artifact per level: Vertex refuses a fan-in of more than 100.
            level_results=dsl.Collected(evaluated.outputs["level_results"]),
            data=loaded.outputs["data"],
        ).set_display_name("report")
        # Never fails (its status is an output), so nothing to retry; never cached: the
        # tracking server's state is not an input.
        mirrored = (
            mirror_op(
                run_key=run_key,
                job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
                results=reported.outputs["results"],
                data=loaded.outputs["data"],
                level_results=dsl.Collected(evaluated.outputs["level_results"]),
            )
            .set_display_name("mirror to MLflow")
            .set_caching_options(False)
        )
        return PipelineOutputs(results=reported.outputs["results"], mirror_status=mirrored.output)

    return poisoning_pipeline


def compile_pipeline(output: str, image: str) -> None:
    """Write the pipeline, every component on ``image``, as KFP/Vertex YAML to ``output``."""
    compiler.Compiler().compile(build_pipeline(image), package_path=output)
