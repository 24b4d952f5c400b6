from kfp.dsl import Dataset, Input, Metrics, Model, Output


def evaluate(
    config: str,
    level: float,
    data: Input[Dataset],
    splits: Input[Dataset],
    poisoned: Input[Dataset],
    detections: Input[Dataset],
    models: Input[Model],
    records: Output[Dataset],
    metrics: Output[Metrics],
):
    """Score the models on the clean test set and the detectors against the true mask."""
    from poisonlab import steps

    headline = steps.evaluate(
        config,
        level,
        data.path,
        splits.path,
        poisoned.path,
        detections.path,
        models.path,
        records.path,
    )
    metrics.log_metric("poison_level", level)
    for name, value in headline.items():
        metrics.log_metric(name, value)
