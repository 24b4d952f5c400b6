"""Submit the same compiled pipeline to a self-hosted Kubeflow Pipelines cluster.

    python submit.py --kfp-host https://kfp.example.com [--kfp-namespace NS] [--wait]

The KFP API is reached with ``kfp.Client``. A bearer token, if the cluster needs
one, comes from the environment (``POISONLAB_KFP_TOKEN``), never from the config.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from poisonlab.errors import PoisonlabError

TOKEN_ENV = "POISONLAB_KFP_TOKEN"
# How long --wait waits for a run, in seconds.
WAIT_TIMEOUT = 7 * 24 * 3600
_DONE_OK = "SUCCEEDED"


def check_host(host: str) -> str:
    """An http(s) URL of the KFP API, without a trailing slash."""
    parsed = urlparse(host)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise PoisonlabError(
            f"--kfp-host {host!r} is not an http(s) URL; write e.g. http://localhost:8080"
        )
    return host.rstrip("/")


def _client(host: str, namespace: str | None):
    import kfp

    return kfp.Client(
        host=host, namespace=namespace or "kubeflow", existing_token=os.environ.get(TOKEN_ENV)
    )


def _api_error(host: str, error: Exception) -> PoisonlabError:
    """One line for a failed call to the KFP API."""
    status = getattr(error, "status", None)
    if status in (401, 403):
        return PoisonlabError(
            f"--kfp-host {host}: access denied (HTTP {status}); set {TOKEN_ENV} to a valid token"
        )
    if status:
        reason = getattr(error, "reason", "") or ""
        return PoisonlabError(f"--kfp-host {host}: the KFP API answered HTTP {status} {reason}")
    return PoisonlabError(
        f"--kfp-host {host}: cannot reach the KFP API ({type(error).__name__}); check the URL "
        "and that it is reachable (e.g. kubectl port-forward svc/ml-pipeline-ui 8080:80)"
    )


def submit_to_kfp(
    config: dict,
    host: str,
    *,
    namespace: str | None = None,
    template: str | None = None,
    dry_run: bool = False,
    wait: bool = False,
) -> int:
    """Check, compile (unless ``template``) and run the pipeline on a KFP cluster."""
    import urllib3.exceptions
    from kfp_server_api.exceptions import ApiException

    from pipelines.vertex import (
        check_dataset_source,
        check_image,
        check_no_secrets,
        check_template,
        parameter_values,
    )

    host = check_host(host)
    check_dataset_source(config["dataset"]["source"])
    check_no_secrets(config)
    vertex = config["vertex"]
    if template:
        template_path = check_template(template, config)
    else:
        image = check_image(vertex["image"], required=not dry_run)
    arguments = parameter_values(config)
    run_name = vertex["display_name"] or "poisonlab-sweep"
    experiment = vertex["experiment"] or config["mlflow"]["experiment"]
    if dry_run:
        print(
            json.dumps(
                {
                    "host": host,
                    "experiment": experiment,
                    "run_name": run_name,
                    "pipeline_root": vertex["pipeline_root"],
                    "enable_caching": vertex["enable_caching"],
                    "arguments": arguments,
                },
                indent=2,
                sort_keys=True,
            )
        )
        print("dry run: nothing was sent", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if not template:
            from pipelines.poisoning import compile_pipeline

            template_path = str(Path(tmp) / "pipeline.yaml")
            compile_pipeline(template_path, image, config)
        try:
            client = _client(host, namespace)
            result = client.create_run_from_pipeline_package(
                template_path,
                arguments=arguments,
                run_name=run_name,
                experiment_name=experiment,
                namespace=namespace,
                pipeline_root=vertex["pipeline_root"],
                enable_caching=vertex["enable_caching"],
            )
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise _api_error(host, error) from None
    link = f"{host}/#/runs/details/{result.run_id}"
    print(f"submitted KFP run {result.run_id} to {host}")
    print(f"  run page: {link}")
    if not wait:
        return 0
    try:
        run = result.wait_for_run_completion(WAIT_TIMEOUT)
    except (ApiException, urllib3.exceptions.HTTPError) as error:
        raise _api_error(host, error) from None
    state = str(run.state)
    print(f"final state: {state}")
    print(f"  run page: {link}")
    return 0 if state == _DONE_OK else 1
