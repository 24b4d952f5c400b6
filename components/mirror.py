from kfp.dsl import Artifact, Dataset, Input, Model


def mirror(
    run_key: str,
    job_id: str,
    task_name: str,
    results: Input[Artifact],
    data: Input[Dataset],
    models: Input[Model],
) -> dict:
    """Mirror the run's results into MLflow. Never fails the run: returns the mirror's status.

    Credentials reach this task only through its environment (MLflow's token or user
    variables), never through a parameter.
    """
    from poisonlab.mirror import job_tags, mirror_status

    tags = job_tags(run_key, job_id, task_name)
    status = mirror_status(results.path, tags=tags, data_path=data.path, models_path=models.path)
    print(f"mirror: {status['message']}")
    return status
