from kfp.dsl import Dataset, Input, Output


def poison(
    config: str,
    level: float,
    data: Input[Dataset],
    splits: Input[Dataset],
    poisoned: Output[Dataset],
):
    """Poison each trial's training split at this level with every configured attack."""
    from poisonlab import steps

    hashes = steps.poison(config, level, data.path, splits.path, poisoned.path)
    poisoned.metadata.update({"poison_level": level, "sha256": hashes})
