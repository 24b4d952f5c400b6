"""Where the commands write is checked before anything runs: a results directory that is
a file, or a YAML path in a missing directory, gives one line and exit 2, not a
traceback after the data was read (or, with --wait, after a Vertex job finished)."""

from __future__ import annotations

from pathlib import Path

import pytest

from poisonlab.errors import PoisonlabError
from poisonlab.paths import check_output_dir, check_output_file
from tests.conftest import run_command


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_output_dir_that_is_a_file(tmp_path: Path):
    taken = tmp_path / "results"
    taken.write_text("not a directory", encoding="utf-8")
    line = _one_error_line(run_command("submit.py", "--local", "--output-dir", str(taken)))
    assert line == (
        f"error: --output-dir {taken} is a file, not a directory; give a directory "
        "(created if missing)"
    )
    assert taken.read_text(encoding="utf-8") == "not a directory"


def test_compile_output_in_a_missing_directory(tmp_path: Path):
    target = tmp_path / "missing" / "pipeline.yaml"
    line = _one_error_line(run_command("compile.py", "--output", str(target)))
    assert line.startswith(f"error: --output {target}: the directory {target.parent} does not")
    assert not target.parent.exists()
    line = _one_error_line(run_command("compile.py", "--output", str(tmp_path)))
    assert line.startswith(f"error: --output {tmp_path} is a directory; give a file path")


def test_checks_in_process(tmp_path: Path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    check_output_dir(tmp_path / "new" / "deeper", "--output-dir")  # made later, with parents
    check_output_file(tmp_path / "pipeline.yaml", "--output")
    with pytest.raises(PoisonlabError, match="is a file, so no directory can be made"):
        check_output_dir(tmp_path / "file" / "sub", "--output-dir")
    assert not (tmp_path / "new").exists()  # a check makes nothing


def test_a_results_directory_used_again_keeps_no_earlier_optional_results(tmp_path: Path):
    """A run with a certified model, then one without, into the same --output-dir: the
    first run's certified.csv must not pass for the second's."""
    from pipelines.local import copy_results

    output = tmp_path / "out"
    output.mkdir()
    for name in ("summary.csv", "certified.csv", "quantity.csv", "notes.txt"):
        (output / name).write_text("earlier run", encoding="utf-8")
    results = tmp_path / "results"
    results.mkdir()
    (results / "summary.csv").write_text("this run", encoding="utf-8")
    (results / "quantity.csv").write_text("this run", encoding="utf-8")
    copy_results(results, output)
    assert not (output / "certified.csv").exists()
    assert (output / "quantity.csv").read_text(encoding="utf-8") == "this run"
    assert (output / "summary.csv").read_text(encoding="utf-8") == "this run"
    assert (output / "notes.txt").read_text(encoding="utf-8") == "earlier run"  # not ours


def test_the_plan_leaves_nothing_in_the_working_directory(tmp_path: Path, monkeypatch):
    """--plan "runs nothing", yet its pilot's MLflow mirror put a SQLite store's artifacts
    (reports, models: about 29 MB for a 5,000-row table) in ./mlruns of the user's
    directory, kept after the pilot's own folder was deleted."""
    from poisonlab import plan
    from poisonlab.config import validate_config

    # The real pilot on one small sample, without timing each step's interpreter start.
    monkeypatch.setattr(plan, "task_start", lambda step: plan.Measured(0.0, 0.0))
    monkeypatch.setattr(plan, "pilot_sizes", lambda n_rows: (60,))
    here = tmp_path / "project"
    here.mkdir()
    monkeypatch.chdir(here)
    config = validate_config(
        {
            "trials": 1,
            "poison": {"levels": [0.0, 0.1], "attacks": ["label_flip"]},
            "validate": {"detectors": ["zscore"]},
            "train": {"models": ["logistic_regression"]},
            "mlflow": {"log_models": False},
        }
    )
    pilot = plan.run_pilot(config)
    assert ("mirror", "") in pilot.steps  # the mirror ran, and measured
    assert list(here.iterdir()) == []


def test_a_token_secret_that_cannot_be_read_stops_a_local_run_before_it_starts(
    tmp_path: Path, monkeypatch
):
    """mlflow.token_secret without Google credentials: the whole local run ran, then its
    mirror failed, and the warning said to mirror again once the server was up."""
    import submit

    for name in ("MLFLOW_TRACKING_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login here
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # nor a metadata server to ask
    secret = "projects/p/secrets/mlflow-token/versions/latest"
    output = tmp_path / "out"
    with pytest.raises(PoisonlabError) as error:
        submit.main(
            ["--local", "--set", f"mlflow.token_secret={secret}", "--output-dir", str(output)]
        )
    assert str(error.value) == (
        f"mlflow.token_secret: no Google credentials found to read {secret}; run "
        "`gcloud auth application-default login`, or set MLFLOW_TRACKING_TOKEN"
    )
    assert not output.exists()


def test_a_mistyped_option_is_one_line_with_a_did_you_mean():
    """argparse printed its whole usage block (12 lines) above the error."""
    import submit

    with pytest.raises(PoisonlabError) as error:
        submit.main(["--local", "--ouput-dir", "x"])
    assert str(error.value) == (
        "--ouput-dir is not an option of python submit.py; did you mean --output-dir?"
    )
    with pytest.raises(PoisonlabError, match="^--resume is not an option .* again with --cache"):
        submit.main(["--local", "--resume"])
    with pytest.raises(PoisonlabError, match="^argument --output-dir: expected one argument"):
        submit.main(["--output-dir"])


def test_compile_checks_the_image_it_writes_into_the_pipeline(tmp_path: Path):
    target = tmp_path / "pipeline.yaml"
    line = _one_error_line(run_command("compile.py", "--output", str(target), "--image", "a b"))
    assert line.startswith("error: vertex.image = 'a b' is not valid")
    assert not target.exists()


def test_a_local_file_for_a_kubeflow_cluster_is_not_said_to_be_for_vertex(tmp_path: Path):
    import submit

    data = tmp_path / "data.csv"
    data.write_text("x,k\n1,a\n2,b\n", encoding="utf-8")
    with pytest.raises(PoisonlabError) as error:
        submit.main(
            ["--kfp-host", "http://127.0.0.1:1", "--dry-run", "--set", f"dataset.source={data}"]
        )
    assert "pipeline tasks on Vertex AI or a Kubeflow cluster cannot read" in str(error.value)
    assert data.read_text(encoding="utf-8") == "x,k\n1,a\n2,b\n"
