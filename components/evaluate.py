from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate(
    config: str,
    level: float,
    data: Input[Dataset],
    splits: Input[Dataset],
    poisoned: Input[Dataset],
    detections: Input[Dataset],
    models: Input[Model],
    level_results: Output[Dataset],
    metrics: Output[Metrics],
    confusion_1: Output[ClassificationMetrics],
    confusion_2: Output[ClassificationMetrics],
    confusion_3: Output[ClassificationMetrics],
    confusion_4: Output[ClassificationMetrics],
    confusion_5: Output[ClassificationMetrics],
    confusion_6: Output[ClassificationMetrics],
    confusion_7: Output[ClassificationMetrics],
    confusion_8: Output[ClassificationMetrics],
    unit: dict = {},  # noqa: B006 (KFP's default; never mutated)
):
    """Score the models on the clean test set and the detectors against the true mask.

    ``level_results`` holds the level's records, confusion counts and quantity
    records: one artifact per level for the report's fan-in.

    The Vertex console shows ``metrics`` (mean accuracy per attack and model) and
    a confusion matrix per model (summed over trials and attacks, no defence) in
    ``confusion_1`` to ``confusion_8``, in ``train.models`` order, each naming its
    model in its metadata. KFP fixes a component's outputs when it is compiled,
    so the slots are numbered, not named after models: any model list fits, and
    models past the eighth have their matrices in the report only.
    """
    from poisonlab import steps

    headline = steps.evaluate(
        config,
        level,
        data.path,
        splits.path,
        poisoned.path,
        detections.path,
        models.path,
        level_results.path,
        unit,
    )
    metrics.log_metric("poison_level", level)
    for name, value in headline.items():
        metrics.log_metric(name, value)
    slots = [confusion_1, confusion_2, confusion_3, confusion_4]
    slots += [confusion_5, confusion_6, confusion_7, confusion_8]
    matrices = steps.confusion_matrices(level_results.path)
    # Fewer models than slots leave the rest empty; more, and the last have none.
    for slot, (model, (classes, matrix)) in zip(slots, matrices.items(), strict=False):
        slot.log_confusion_matrix(classes, matrix)
        slot.metadata.update({"model": model, "poison_level": level})
    if len(matrices) > len(slots):
        print(
            f"evaluate: models past the {len(slots)}th have their confusion matrices in the report"
        )
