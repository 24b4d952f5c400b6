"""The poisoning sweep: load, then per poison level poison -> validate -> train -> evaluate,
then a fan-in to report and mirror.

Components are built for one container image, chosen at compile time, and
install nothing when a task starts: the image holds poisonlab and kfp.
"""

import os

from kfp import dsl

from components.evaluate import evaluate
from components.load import load
from components.mirror import mirror
from components.poison import poison
from components.report import report
from components.train import train
from components.validate import validate

PIPELINE_NAME = "poisonlab-sweep"
IMAGE_ENV = "POISONLAB_IMAGE"
DEFAULT_IMAGE = "us-central1-docker.pkg.dev/poisonlab/poisonlab/poisonlab:0.1.0"
RETRIES = 2


def resolve_image(config_image: str | None = None) -> str:
    """The image: the config's ``vertex.image``, else $POISONLAB_IMAGE, else the default."""
    return config_image or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def build_pipeline(image: str):
    """The pipeline function, with every component running on ``image``."""

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
    def poisoning_pipeline(config: str, poison_levels: list) -> dsl.Artifact:
        run_key = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        loaded = load_op(config=config).set_display_name("load dataset")
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
                validate_op(config=config, poisoned=poisoned.outputs["poisoned"])
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
            records=dsl.Collected(evaluated.outputs["records"]),
            confusion_counts=dsl.Collected(evaluated.outputs["confusion_counts"]),
            quantity_records=dsl.Collected(evaluated.outputs["quantity_records"]),
            data=loaded.outputs["data"],
        ).set_display_name("report")
        mirror_op(
            config=config, run_key=run_key, results=reported.outputs["results"]
        ).set_display_name("mirror to MLflow").set_caching_options(False)
        return reported.outputs["results"]

    return poisoning_pipeline
