"""Submit the compiled pipeline to Vertex AI Pipelines."""

import json
import tempfile
from pathlib import Path

from pipelines.poisoning import PIPELINE_NAME, resolve_image
from poisonlab.config import canonical_json
from poisonlab.errors import PoisonlabError


def build_job(config: dict, template_path: str):
    """A ``PipelineJob`` for ``config``; building it sends nothing."""
    import google.auth.credentials
    from google.cloud import aiplatform

    vertex = config["vertex"]
    if not vertex["pipeline_root"] or not vertex["pipeline_root"].startswith("gs://"):
        raise PoisonlabError(
            "vertex.pipeline_root must be a gs:// URI; pass --pipeline-root gs://bucket/root"
        )
    return aiplatform.PipelineJob(
        display_name=PIPELINE_NAME,
        template_path=template_path,
        pipeline_root=vertex["pipeline_root"],
        parameter_values={
            "config": canonical_json(config),
            "poison_levels": config["poison"]["levels"],
        },
        project=vertex["project"],
        location=vertex["region"],
        credentials=google.auth.credentials.AnonymousCredentials(),
    )


def submit_to_vertex(config: dict, dry_run: bool = False) -> int:
    from compile import compile_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        template = str(Path(tmp) / "pipeline.yaml")
        compile_pipeline(template, resolve_image(config["vertex"]["image"]))
        job = build_job(config, template)
        if dry_run:
            print(json.dumps(job.to_dict(), indent=2, sort_keys=True))
            return 0
        raise PoisonlabError("submitting to Vertex AI is not available yet; use --dry-run")
