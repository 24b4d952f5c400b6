from kfp.dsl import Artifact, Input


def mirror(config: str, run_key: str, results: Input[Artifact]) -> str:
    """Mirror the run's results into MLflow; returns the parent run id."""
    from poisonlab.mirror import mirror_results

    return mirror_results(results.path, tags={"kfp.pipeline_job": run_key})
