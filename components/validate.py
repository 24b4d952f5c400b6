from kfp.dsl import Dataset, Input, Output


def validate(config: str, poisoned: Input[Dataset], detections: Output[Dataset]):
    """Run the data-validation detectors on every poisoned training set."""
    from poisonlab import steps

    steps.validate(config, poisoned.path, detections.path)
