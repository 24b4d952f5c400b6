from kfp.dsl import Dataset, Input, Metrics, Output


def validate(
    config: str,
    poisoned: Input[Dataset],
    data: Input[Dataset],
    splits: Input[Dataset],
    detections: Output[Dataset],
    gate: Output[Metrics],
) -> str:
    """Run the data-validation detectors on every poisoned training set.

    Returns the level's validation-gate verdict, "pass" or "fail" (fail if any
    attack fails); the per-attack checks are in the ``gate`` metrics.
    """
    from poisonlab import steps

    # The clean splits calibrate the detectors' thresholds (validate.fpr).
    verdicts = steps.validate(config, poisoned.path, detections.path, data.path, splits.path)
    detections.metadata["gate"] = verdicts
    for attack, verdict in verdicts.items():
        gate.log_metric(f"gate_pass_{attack}", float(verdict["verdict"] == "pass"))
        gate.log_metric(f"gate_pass_share_{attack}", verdict["pass_share"])
        gate.log_metric(f"class_shift_{attack}", verdict["class_shift"])
        if verdict["flag_rate"] is not None:
            gate.log_metric(f"flag_rate_{verdict['detector']}_{attack}", verdict["flag_rate"])
    # No verdicts: the level failed before the gate could look at it.
    passed = verdicts and all(v["verdict"] == "pass" for v in verdicts.values())
    return "pass" if passed else "fail"
