"""End to end on the KFP local runner, as a user runs it: `python submit.py --local ...`."""

from __future__ import annotations

import pandas as pd

from poisonlab.config import load_config
from poisonlab.experiment import DETECTION_COLUMNS, SUMMARY_COLUMNS, defenses, run_experiment
from tests.conftest import ROOT, SMALL_RUN, run_command, set_args


def test_local_run_writes_every_result(small_run):
    for name in ("summary.csv", "detection.csv", "report.html", "manifest.json"):
        assert (small_run / name).stat().st_size > 0, name
    assert not [p for p in small_run.iterdir() if p.name.startswith(".poisonlab-")]


def test_summary_covers_every_level_attack_model_and_defense(small_run):
    config = load_config(ROOT / "configs" / "iris.yaml", SMALL_RUN)
    summary = pd.read_csv(small_run / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    accuracy = summary[summary["metric"] == "accuracy"]
    combos = set(accuracy[["poison_level", "attack", "model", "defense"]].itertuples(index=False))
    for level in config["poison"]["levels"]:
        for attack in config["poison"]["attacks"]:
            for model in config["train"]["models"]:
                for defense in defenses(config):
                    assert (level, attack, model, defense) in combos
    assert accuracy["mean"].between(0, 1).all()
    clean = accuracy[(accuracy["poison_level"] == 0) & (accuracy["defense"] == "none")]
    assert (clean["mean"] >= 0.85).all()


def test_detection_is_scored_for_every_poisoned_level(small_run):
    config = load_config(ROOT / "configs" / "iris.yaml", SMALL_RUN)
    detection = pd.read_csv(small_run / "detection.csv")
    assert list(detection.columns) == DETECTION_COLUMNS
    poisoned = detection[detection["poison_level"] > 0]
    for attack in config["poison"]["attacks"]:
        for detector in config["validate"]["detectors"]:
            rows = poisoned[(poisoned["attack"] == attack) & (poisoned["detector"] == detector)]
            assert {"precision", "recall", "f1"} <= set(rows["metric"]), (attack, detector)


def test_pipeline_matches_the_in_process_experiment(small_run):
    config = load_config(ROOT / "configs" / "iris.yaml", SMALL_RUN)
    summary, _, _ = run_experiment(config)
    piped = pd.read_csv(small_run / "summary.csv")
    assert len(piped) == len(summary)
    assert (piped["mean"] - summary["mean"]).abs().max() < 1e-5


def test_bad_config_exits_with_one_line_before_running(tmp_path):
    for override, field in (
        ("poison.levels=[0.1, 1.5]", "poison.levels[1]"),
        ("train.models=[random_forrest]", "train.models[0]"),
    ):
        result = run_command(
            "submit.py", "--local", *set_args(override), "--output-dir", str(tmp_path / "out")
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and field in lines[0], result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "out").exists()


def test_every_finished_task_gets_a_console_line_when_two_share_a_log_line():
    """Loop iterations print from parallel threads; two messages can land on one line."""
    import io

    from pipelines.local import _ProgressLog

    console = io.StringIO()
    progress = _ProgressLog(io.StringIO(), console)
    progress.write("Task 'train' finished with status SUCCESS")
    progress.write("Task 'evaluate' finished with status \x1b[92mSUCCESS\x1b[0m\n")
    tasks = [line.split()[2] for line in console.getvalue().splitlines()]
    assert tasks == ["train", "evaluate"]


def test_a_task_that_finishes_after_another_tasks_logger_reset_still_gets_its_line(tmp_path):
    """kfp sets up and resets the root logger around each task; with tasks in parallel a
    reset can come while another task still runs, whose "finished" line then vanished."""
    import contextlib
    import io
    import logging

    from kfp.local.logging_utils import local_logger_context

    from pipelines.local import _quiet_runner

    console = io.StringIO()
    with contextlib.redirect_stdout(console), _quiet_runner(tmp_path / "pipeline.log"):
        with local_logger_context():  # another task's, set up and reset
            pass
        logging.info("Task 'evaluate' finished with status SUCCESS")
    assert "evaluate   success" in console.getvalue()
    assert "finished with status SUCCESS" in (tmp_path / "pipeline.log").read_text()
