from kfp.dsl import Dataset, Input, Output


def gather(
    config: str,
    level: float,
    unit_results: Input[list[Dataset]],
    level_results: Output[Dataset],
):
    """Fan-in of one level's units into the one artifact the report collects per level."""
    from poisonlab import fan_in

    fan_in.gather(config, level, [unit.path for unit in unit_results], level_results.path)
