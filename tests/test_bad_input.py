"""Bad input fails fast, as a user meets it: one line naming the field and the fix, exit 2.

Every case of the corpus (tests/corpus/cases.yaml) goes through the real command line,
``python submit.py --local --config <case> --output-dir D``. The checks run before the
pipeline starts, so each case costs one interpreter start, not a pipeline run.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from poisonlab.config import validate_config
from poisonlab.data import frame_to_dataset, load_configured
from poisonlab.errors import PoisonlabError
from poisonlab.preflight import check_experiment
from tests.conftest import ROOT, run_command

CORPUS = ROOT / "tests" / "corpus"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_corpus_table_is_complete():
    """Every case names an existing config and one expected line; names are unique."""
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert (ROOT / case["config"]).is_file(), case["name"]
        assert case["error"].startswith("error: ") and "\n" not in case["error"]
    # The list: each kind of broken input has at least one case.
    for name in (
        "missing_file",
        "empty_file",
        "no_label_column",
        "misspelled_label_column",
        "single_class",
        "missing_values",
        "text_features",
        "duplicated_columns",
        "level_one",
        "unknown_attack",
        "unknown_detector",
        "unknown_model",
        "zero_trials",
        "test_size_one",
        "class_would_vanish",
        "malformed_yaml",
        "unknown_key",
        "gs_missing_bucket",
        "gs_missing_object",
    ):
        assert name in names


@pytest.fixture(scope="module")
def storage_emulator() -> Iterator[dict[str, str]]:
    """gcp-storage-emulator in this process, holding one empty bucket ``poisonlab-corpus``."""
    from gcp_storage_emulator.server import create_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="poisonlab-corpus")
    server.start()
    try:
        yield {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def corpus_runs(storage_emulator, tmp_path_factory) -> dict[str, tuple]:
    """Every case through the command line, two at a time (each is one interpreter start).

    Returns, by case name, the finished process and its output directory; the input
    files' digests before and after all runs are under the key ``None``.
    """
    base = tmp_path_factory.mktemp("corpus")
    before = _digests(CORPUS)

    def run(case: dict):
        output = base / case["name"] / "out"
        env = storage_emulator if case.get("emulator") else None
        result = run_command(
            "submit.py",
            "--local",
            "--config",
            case["config"],
            "--output-dir",
            str(output),
            env=env,
        )
        return case["name"], (result, output)

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(pool.map(run, CASES))
    runs[None] = (before, _digests(CORPUS))
    return runs


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_corpus_case_fails_fast_with_its_line(case: dict, corpus_runs):
    result, output = corpus_runs[case["name"]]
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [case["error"]]
    assert "Traceback" not in result.stdout + result.stderr
    # Nothing was started: no output directory, so nothing that looks like results.
    assert not output.exists()


def test_corpus_inputs_are_unchanged(corpus_runs):
    before, after = corpus_runs[None]
    assert len(before) > 20 and after == before


# --- the options that turn a rejected table into a usable one ---------------------------


def _config(source: str, **dataset) -> dict:
    return validate_config({"dataset": {"source": source, **dataset}, "trials": 1})


def test_impute_fills_missing_values_without_touching_the_file():
    path = CORPUS / "data" / "missing_values.csv"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    raw = pd.read_csv(path)
    for method in ("mean", "median", "most_frequent"):
        dataset, _ = load_configured(
            _config(str(path), label_column="species", impute=method)["dataset"]
        )
        assert np.isfinite(dataset.X).all() and len(dataset.y) == len(raw)
    dataset, _ = load_configured(
        _config(str(path), label_column="species", impute="mean")["dataset"]
    )
    column = dataset.feature_names.index("sepal_width")
    assert dataset.X[3, column] == pytest.approx(raw["sepal_width"].mean())
    dropped, _ = load_configured(
        _config(str(path), label_column="species", impute="drop_rows")["dataset"]
    )
    assert len(dropped.y) == len(raw) - 3
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_encode_turns_text_columns_into_numbers():
    path = CORPUS / "data" / "text_features.csv"
    onehot, _ = load_configured(
        _config(str(path), label_column="species", encode="onehot")["dataset"]
    )
    assert onehot.feature_names[:3] == ["sepal_length", "colour=blue", "colour=white"]
    assert "site=north" in onehot.feature_names and "site" not in onehot.feature_names
    assert set(np.unique(onehot.X[:, 1])) == {0.0, 1.0}
    ordinal, _ = load_configured(
        _config(str(path), label_column="species", encode="ordinal")["dataset"]
    )
    assert ordinal.feature_names[1] == "colour"
    assert sorted(np.unique(ordinal.X[:, 1])) == [0.0, 1.0]


def test_string_labels_any_label_column_csv_and_parquet_agree():
    csv, csv_hash = load_configured(
        _config(str(CORPUS / "data" / "flowers.csv"), label_column="species")["dataset"]
    )
    parquet, parquet_hash = load_configured(
        _config(str(CORPUS / "data" / "flowers.parquet"), label_column="species")["dataset"]
    )
    assert csv.class_names == parquet.class_names == ["setosa", "versicolor", "virginica"]
    np.testing.assert_array_equal(csv.X, parquet.X)
    np.testing.assert_array_equal(csv.y, parquet.y)
    assert csv_hash != parquet_hash  # the hash is of the input bytes, which differ


def test_whole_number_labels_keep_their_names():
    frame = pd.DataFrame({"a": [0.1, 0.2, 0.3, 0.4], "grade": [3.0, 1.0, 3.0, 1.0]})
    dataset = frame_to_dataset(frame, "grade", "t.csv")
    assert dataset.class_names == ["1", "3"]


def test_a_class_that_survives_poisoning_passes_the_check():
    config = validate_config(
        {
            "dataset": {
                "source": str(CORPUS / "data" / "rare_class.csv"),
                "label_column": "outcome",
            },
            "poison": {"levels": [0.0, 0.9], "attacks": ["label_flip"]},
            "trials": 1,
            "seed": 94,
        }
    )
    check_experiment(config)  # another seed flips a different set of rows: no class vanishes
    config["seed"] = 93
    with pytest.raises(PoisonlabError, match=r"poison.levels\[1\]: 0.9 leaves class 'common'"):
        check_experiment(config)


def test_errors_are_one_line_even_from_multi_line_messages(capsys):
    from poisonlab.errors import run_cli

    def main():
        raise PoisonlabError("first part\nsecond part")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: first part second part\n"
