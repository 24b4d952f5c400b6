from kfp.dsl import Dataset, Input, Model, Output


def train(
    config: str,
    poisoned: Input[Dataset],
    detections: Input[Dataset],
    models: Output[Model],
):
    """Fit every model on the poisoned data and on the rows each detector kept."""
    from poisonlab import steps

    steps.train(config, poisoned.path, detections.path, models.path)
