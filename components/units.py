def units(level: float, items: list) -> list:
    """The units of this poison level (``pipeline.fan_out: level_attack``): ``items``, the
    attacks and trials of each, with the level added, for the loop over a level's units.

    A task, not a computed list, because the KFP local runner passes an inner loop's
    tasks the inner item in place of the outer loop's (kfp 2.17.0): the level must come
    inside the unit.
    """
    from poisonlab.units import with_level

    return with_level(level, items)
