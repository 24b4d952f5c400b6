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
    confusion_logistic_regression: Output[ClassificationMetrics],
    confusion_decision_tree: Output[ClassificationMetrics],
    confusion_random_forest: Output[ClassificationMetrics],
    confusion_svm: Output[ClassificationMetrics],
    confusion_knn: Output[ClassificationMetrics],
    confusion_gradient_boosting: Output[ClassificationMetrics],
):
    """Score the models on the clean test set and the detectors against the true mask.

    ``level_results`` holds the level's records, confusion counts and quantity
    records: one artifact per level for the report's fan-in.

    The Vertex console shows ``metrics`` (mean accuracy per attack and model) and
    one confusion matrix per registered model (summed over trials and attacks,
    no defence); a model not in this run leaves its matrix empty.
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
    )
    metrics.log_metric("poison_level", level)
    for name, value in headline.items():
        metrics.log_metric(name, value)
    slots = {
        "logistic_regression": confusion_logistic_regression,
        "decision_tree": confusion_decision_tree,
        "random_forest": confusion_random_forest,
        "svm": confusion_svm,
        "knn": confusion_knn,
        "gradient_boosting": confusion_gradient_boosting,
    }
    for model, (classes, matrix) in steps.confusion_matrices(level_results.path).items():
        if model in slots:
            slots[model].log_confusion_matrix(classes, matrix)
            slots[model].metadata["poison_level"] = level
