"""Compile the poisoning pipeline to YAML for Vertex AI Pipelines or Kubeflow Pipelines.

    python compile.py [--output pipeline.yaml] [--config configs/iris.yaml] [--image IMAGE]

The image every component runs in: --image, else the config's vertex.image,
else $POISONLAB_IMAGE, else the default. The config also shapes the pipeline
(pipeline.fan_out) and sizes its steps (vertex.resources, vertex.parallelism).
"""

from __future__ import annotations

from pipelines.poisoning import compile_pipeline, resolve_image
from pipelines.vertex import check_image
from poisonlab.config import load_config
from poisonlab.errors import CommandParser, run_cli
from poisonlab.paths import check_output_file


def main() -> int:
    parser = CommandParser(prog="python compile.py", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="pipeline.yaml", help="where to write the YAML")
    parser.add_argument("--config", help="a config whose vertex.image to use")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--image", help="the container image for every component")
    args = parser.parse_args()
    check_output_file(args.output, "--output")
    config = load_config(args.config, args.set)
    # Checked here too: a template with a malformed image fails only when its tasks start.
    image = check_image(args.image or resolve_image(config["vertex"]["image"]), required=False)
    compile_pipeline(args.output, image, config)
    print(f"wrote {args.output} (image {image})")
    return 0


if __name__ == "__main__":
    run_cli(main)
