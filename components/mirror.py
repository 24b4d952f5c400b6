from kfp.dsl import Artifact, Dataset, Input


def mirror(
    run_key: str,
    job_id: str,
    task_name: str,
    results: Input[Artifact],
    data: Input[Dataset],
    level_results: Input[list[Dataset]],
) -> dict:
    """Mirror the run's results into MLflow. Never fails the run: returns the mirror's status.

    ``level_results``: every level's ``evaluate`` output, which holds trial 0's models.
    Credentials reach this task only through its environment (MLflow's token or user
    variables), never through a parameter.
    """
    from poisonlab.mirror import job_tags, mirror_status
    from poisonlab.steps import level_model_files

    tags = job_tags(run_key, job_id, task_name)
    models = level_model_files([level.path for level in level_results])
    status = mirror_status(results.path, tags=tags, data_path=data.path, models_paths=models)
    print(f"mirror: {status['message']}")
    return status
