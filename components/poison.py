from kfp.dsl import Dataset, Input, Output


def poison(
    config: str,
    level: float,
    data: Input[Dataset],
    splits: Input[Dataset],
    poisoned: Output[Dataset],
    unit: dict = {},  # noqa: B006 (KFP's default; never mutated)
):
    """Poison each trial's training split at this level with every configured attack
    (with ``unit``, a loop item of poisonlab.units: its attacks and trials only)."""
    from poisonlab import steps

    hashes = steps.poison(config, level, data.path, splits.path, poisoned.path, unit)
    poisoned.metadata.update({"poison_level": level, "sha256": hashes})
