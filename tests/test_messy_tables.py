"""Warehouse exports as users bring them (tests/data/README.md): keys of several shapes,
text columns of a value per row, mostly empty columns, repeated rows, labels written
several ways, a class too small to test, other separators. Each either loads as the
user means it, or gives one line naming the field and the fix, or a warning line."""

from __future__ import annotations

import gzip
import hashlib
import io
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from poisonlab.config import validate_config
from poisonlab.data import (
    frame_to_dataset,
    has_key_name,
    load_dataset,
    looks_like_row_id,
    missing_markers,
    numbers_as_text,
    read_frame,
    split_masks,
    table_warnings,
)
from poisonlab.errors import PoisonlabError
from poisonlab.metrics import headline_metric
from poisonlab.preflight import untested_class_warnings

DATA = ROOT / "tests" / "data"
PENGUINS_RAW = str(DATA / "penguins_raw.csv")
AFFAIRS = str(DATA / "affairs.csv")
MTCARS = str(DATA / "mtcars.csv")


def _settings(source: str, label: str, **dataset) -> dict:
    return validate_config({"dataset": {"source": source, "label_column": label, **dataset}})[
        "dataset"
    ]


def _penguins(tmp_path, edit, name: str = "penguins.csv") -> str:
    """The real penguins table, changed by ``edit``, as a user's CSV in ``tmp_path``."""
    frame = pd.read_csv(PENGUINS_RAW)
    path = tmp_path / name
    edit(frame).to_csv(path, index=False)
    return str(path)


# --- keys -----------------------------------------------------------------------------


def test_integer_keys_out_of_order_are_found_by_their_name():
    """Affairs' rownames are unique keys 4..9029, not in file order: warned. Its
    whole-number features (age, education) are not keys and not warned about."""
    frame, _ = read_frame(AFFAIRS)
    assert not frame["rownames"].is_monotonic_increasing
    (warning,) = table_warnings(frame, _settings(AFFAIRS, "children", encode="onehot"))
    assert "'rownames' looks like a row identifier" in warning
    renamed = frame["rownames"].rename("visits")  # the same numbers under a feature's name
    assert not looks_like_row_id(renamed)


@pytest.mark.parametrize(
    ("name", "is_key"),
    [("customer_id", True), ("CustomerID", True), ("Order Key", True), ("userId", True)]
    + [("UUID", True), ("Individual ID", True), ("idea", False), ("width", False)]
    + [("Sample Number", False), ("paid", False)],
)
def test_key_names(name, is_key):
    assert has_key_name(name) is is_key


def test_a_text_key_names_drop_columns_as_the_fix():
    """mtcars' row names are car names: the error says where to leave them out."""
    with pytest.raises(PoisonlabError, match=r"\['rownames'\].*add them to dataset\.drop_columns"):
        load_dataset(MTCARS, "cyl")
    dataset, _ = load_dataset(MTCARS, "cyl", drop_columns=["rownames"])
    assert dataset.class_names == ["4", "6", "8"]


# --- text and missing values ----------------------------------------------------------


def test_near_unique_text_dates_and_mostly_empty_columns_are_warned_about():
    """penguins_raw: 'Individual ID' has 190 values in 344 rows, 'Date Egg' 50 dates,
    'Comments' is empty in 290; the islands, the sexes with gaps and the constant
    'Region' are ordinary."""
    frame, _ = read_frame(PENGUINS_RAW)
    settings = _settings(
        PENGUINS_RAW, "Species", drop_columns=["rownames"], impute="median", encode="onehot"
    )
    found = table_warnings(frame, settings)
    assert len(found) == 3
    assert "'Individual ID' has 190 distinct values in 344 rows" in found[0]
    assert "'Date Egg' holds dates, which encoding treats as 50 unrelated values" in found[1]
    assert "'Comments' is empty in 290 of 344 rows" in found[2]
    assert all("add it to dataset.drop_columns" in line for line in found)


def test_one_hot_of_many_values_is_quiet_and_exact():
    """One 0/1 column per value, in place, without a pandas warning per value."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset, _ = load_dataset(
            PENGUINS_RAW, "Species", drop_columns=["rownames"], impute="median", encode="onehot"
        )
    frame = pd.read_csv(PENGUINS_RAW)
    names = dataset.feature_names
    ids = [n for n in names if n.startswith("Individual ID=")]
    assert len(ids) == frame["Individual ID"].nunique()
    column = names.index("Island=Biscoe")
    assert names[column - 1] == "Region=Anvers" and names[column + 2] == "Island=Torgersen"
    assert dataset.X[:, column].sum() == (frame["Island"] == "Biscoe").sum()
    assert dataset.class_names[0] == "Adelie Penguin (Pygoscelis adeliae)"


def test_a_column_empty_in_every_row_names_drop_columns(tmp_path):
    source = _penguins(tmp_path, lambda f: f.assign(**{"Delta 15 N (o/oo)": np.nan}))
    with pytest.raises(PoisonlabError) as error:
        load_dataset(source, "Species", drop_columns=["rownames"], impute="median")
    assert str(error.value) == (
        f"dataset.source: columns ['Delta 15 N (o/oo)'] of {source} are empty in every row; "
        "add them to dataset.drop_columns"
    )


# --- rows and labels ------------------------------------------------------------------


def test_repeated_rows_are_counted_in_a_warning(tmp_path):
    source = _penguins(tmp_path, lambda f: pd.concat([f, f.iloc[10:40]]))
    frame, _ = read_frame(source)
    settings = _settings(
        source, "Species", drop_columns=["rownames", "Individual ID", "Comments", "Date Egg"]
    )
    (warning,) = table_warnings(frame, settings)
    assert warning.startswith("dataset: 30 rows repeat another row exactly;")
    assert table_warnings(read_frame(PENGUINS_RAW)[0], settings) == []


def test_labels_with_stray_spaces_are_one_class_and_case_variants_are_warned(tmp_path):
    def relabel(frame: pd.DataFrame) -> pd.DataFrame:
        species = frame["Species"].str.split().str[0]
        species[::7] = species[::7] + " "
        species[3] = "ADELIE"
        return frame.assign(Species=species)

    source = _penguins(tmp_path, relabel)
    settings = _settings(source, "Species", drop_columns=["rownames", "Individual ID"])
    frame, _ = read_frame(source)
    dataset = frame_to_dataset(frame, "Species", source, "median", "onehot", ["rownames"])
    assert dataset.class_names == ["ADELIE", "Adelie", "Chinstrap", "Gentoo"]
    case = [w for w in table_warnings(frame, settings) if "differ only in case" in w]
    assert case == [
        "dataset.label_column: classes ['ADELIE', 'Adelie'] of 'Species' differ only in case, "
        "so they count as different classes; write each class one way in the file"
    ]


def test_a_class_too_small_to_split_is_named():
    """mtcars by carburettors: one car has 6."""
    dataset, _ = load_dataset(MTCARS, "carb", drop_columns=["rownames"])
    assert np.bincount(dataset.y)[dataset.class_names.index("6")] == 1
    with pytest.raises(PoisonlabError, match=r"^dataset\.label_column: class '6' has 1 row"):
        split_masks(dataset.y, 0.2, 42, 2, dataset.class_names)


def test_a_class_too_small_to_test_is_warned_about(tmp_path):
    """Three rows of a fourth class: the stratified split trains on all three, so no
    test score measures it, and the warning says so."""
    source = _penguins(tmp_path, lambda f: f.assign(Species=["Hybrid"] * 3 + list(f.Species[3:])))
    dataset, _ = load_dataset(
        source, "Species", drop_columns=["rownames"], impute="median", encode="ordinal"
    )
    hybrid = dataset.class_names.index("Hybrid")
    masks = split_masks(dataset.y, 0.2, 42, 2, dataset.class_names)
    assert not (dataset.y[masks.any(axis=0)] == hybrid).any()
    (warning,) = untested_class_warnings(dataset, masks)
    assert warning.startswith(
        "dataset.label_column: class 'Hybrid' has 3 rows, too few for a test row in 2 of 2 trials"
    )
    assert untested_class_warnings(dataset, split_masks(dataset.y, 0.5, 42, 2)) == []


# --- other separators -----------------------------------------------------------------


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_file_not_separated_by_commas_says_so(tmp_path, separator):
    path = tmp_path / "penguins.csv"
    pd.read_csv(PENGUINS_RAW).to_csv(path, sep=separator, index=False)
    with pytest.raises(PoisonlabError) as error:
        read_frame(str(path))
    assert f"separates its header with {separator!r}, not commas" in str(error.value)


# --- Parquet's own dtypes -------------------------------------------------------------


def test_parquet_nullable_and_categorical_columns_load_like_csv(tmp_path):
    """Int64 and boolean columns with gaps take a median fill (they refused a fractional
    one: a TypeError from pandas), categoricals encode: the same numbers as float64."""
    frame = pd.read_csv(PENGUINS_RAW, usecols=["Species", "Island", "Flipper Length (mm)", "Sex"])
    frame["male"] = frame.pop("Sex").map({"MALE": True, "FEMALE": False})
    typed = frame.astype({"Flipper Length (mm)": "Int64", "male": "boolean", "Island": "category"})
    assert typed["male"].isna().sum() == 11 and typed["Flipper Length (mm)"].isna().sum() == 2
    path = tmp_path / "penguins.parquet"
    typed.to_parquet(path)
    plain = tmp_path / "penguins.csv"
    frame.assign(male=frame["male"].astype(float)).to_csv(plain, index=False)
    for method in ("median", "mean", "most_frequent"):
        got, _ = load_dataset(str(path), "Species", impute=method, encode="onehot")
        want, _ = load_dataset(str(plain), "Species", impute=method, encode="onehot")
        assert got.feature_names == want.feature_names
        np.testing.assert_array_equal(got.X, want.X)


def test_a_label_taken_by_default_is_said_and_its_gaps_point_at_label_column():
    """penguins_raw's last column is 'Comments': taken as the label when none is set."""
    with pytest.raises(PoisonlabError, match=r"290 missing labels; set dataset\.label_column"):
        load_dataset(PENGUINS_RAW, drop_columns=["rownames"], impute="median", encode="onehot")
    frame, _ = read_frame(AFFAIRS)
    (warning, _) = table_warnings(frame, _settings(AFFAIRS, None, encode="onehot"))
    assert warning.startswith("dataset.label_column is not set, so the last column, 'rating'")
    iris, _ = read_frame("sklearn:iris")  # its label is "target": no warning
    assert table_warnings(iris, validate_config({})["dataset"]) == []


# --- the headline metric --------------------------------------------------------------


def test_auto_metric_weighs_the_smallest_class_against_an_equal_share():
    """Digits' ten even classes (about 10% each) are not imbalanced; mtcars by
    carburettors (one car of 32 in a class, 6 classes) is; two classes keep 20%."""
    digits, _ = load_dataset("sklearn:digits")
    metric, why = headline_metric("auto", np.bincount(digits.y).tolist())
    assert metric == "accuracy" and "40% of an equal share among 10 classes" in why
    cars, _ = load_dataset(MTCARS, "carb", drop_columns=["rownames"])
    metric, why = headline_metric("auto", np.bincount(cars.y).tolist())
    assert metric == "balanced_accuracy"
    assert why.startswith("report.metric auto: the smallest class holds 3.1% of the rows")
    assert headline_metric("auto", [79, 21])[0] == "accuracy"
    assert headline_metric("auto", [81, 19])[0] == "balanced_accuracy"


# --- the warnings reach the report ----------------------------------------------------


def test_the_load_step_keeps_the_warnings_and_the_report_shows_them(tmp_path):
    """What submit.py printed before the run is in the provenance and the report."""
    from poisonlab import steps
    from poisonlab.config import canonical_json
    from poisonlab.report import Report

    config = validate_config(
        {
            "dataset": {
                "source": PENGUINS_RAW,
                "label_column": "Species",
                "drop_columns": ["rownames"],
                "impute": "median",
                "encode": "onehot",
            },
            "trials": 2,
        }
    )
    provenance = steps.load(
        canonical_json(config), str(tmp_path / "data.parquet"), str(tmp_path / "splits.parquet")
    )
    frame, _ = read_frame(PENGUINS_RAW)
    assert provenance["data_warnings"] == table_warnings(frame, config["dataset"])
    assert len(provenance["data_warnings"]) == 3
    summary = pd.DataFrame(
        [(level, "label_flip", "decision_tree", "none", "accuracy", 0.9) for level in (0.0, 0.1)],
        columns=["poison_level", "attack", "model", "defense", "metric", "mean"],
    ).assign(ci_low=0.8, ci_high=1.0, n=2)
    detection = pd.DataFrame(
        columns=["poison_level", "attack", "detector", "metric", "mean", "ci_low", "ci_high", "n"]
    )
    markdown = Report(summary, detection, config, provenance).markdown()
    for warning in provenance["data_warnings"]:
        assert f"- Data warning: {warning}" in markdown


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_file_not_in_utf8_says_so(tmp_path, encoding):
    path = tmp_path / "penguins.csv"
    frame = pd.read_csv(PENGUINS_RAW).rename(columns={"Island": "Île"})
    frame.to_csv(path, index=False, encoding=encoding)
    with pytest.raises(PoisonlabError) as error:
        read_frame(str(path))
    assert str(error.value).startswith(f"dataset.source: {path} is not UTF-8 text (it holds byte")
    assert str(error.value).endswith("save it as UTF-8 CSV, or as Parquet")


def test_a_gzipped_csv_reads_as_its_csv(tmp_path):
    """A warehouse's ``.csv.gz`` export: the same table; the hash is of the file's bytes."""
    path = tmp_path / "affairs.csv.gz"
    raw = (DATA / "affairs.csv").read_bytes()
    path.write_bytes(gzip.compress(raw, mtime=0))
    frame, digest = read_frame(str(path))
    pd.testing.assert_frame_equal(frame, read_frame(AFFAIRS)[0])
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(PoisonlabError, match="is a damaged gzip file"):
        read_frame(str(path))


def test_no_detector_is_said_to_find_rows_it_does_not_find():
    """mpg by maker with zscore alone: a range check finds no label flips (F1 0)."""
    from poisonlab.findings import findings

    detection = pd.DataFrame(
        [(0.1, "label_flip", "zscore", m, 0.0) for m in ("f1", "precision", "recall")],
        columns=["poison_level", "attack", "detector", "metric", "mean"],
    )
    summary = pd.DataFrame(
        [(level, "label_flip", "random_forest", "none", "accuracy", 0.9) for level in (0, 0.1)],
        columns=["poison_level", "attack", "model", "defense", "metric", "mean"],
    )
    points = pd.DataFrame(columns=["attack", "model", "breakdown_level"])
    sentence = findings(summary, detection, points, 0.1)[-1]
    assert (
        sentence == "At 10% label_flip no detector finds the poisoned rows (best F1 0.00, zscore)."
    )


def test_a_number_column_with_a_missing_marker_is_an_error_not_categories(tmp_path):
    """Body masses written '?' where unknown: with encode set, every mass had become a
    0/1 column of its own; now the marker is named with the fix."""

    def mark(frame: pd.DataFrame) -> pd.DataFrame:
        masses = frame["Body Mass (g)"]
        return frame.assign(**{"Body Mass (g)": masses.map(lambda v: "?" if v != v else int(v))})

    source = _penguins(tmp_path, mark)
    with pytest.raises(PoisonlabError) as error:
        load_dataset(source, "Species", drop_columns=["rownames"], impute="median", encode="onehot")
    assert str(error.value) == (
        f"dataset.source: column 'Body Mass (g)' of {source} holds numbers but also ['?']; "
        "write those as empty cells (missing values, which dataset.impute fills), or add "
        "the column to dataset.drop_columns"
    )
    # Text of its own kind, with numbers among the values, is left to dataset.encode.
    assert missing_markers(pd.Series(["2", "3", "4", "5", "auto(l5)", "manual(m5)"])) == []


def test_numbers_written_with_commas_are_an_error_not_categories():
    """'5,100' (thousands separators) or '5,1' (a decimal comma) read as text: with encode
    set, every number had become a category, and without it the advice was to encode or
    drop a measurement. Digits alone, codes and categoricals stay text to encode."""
    assert numbers_as_text(pd.Series(["1,234", "999", "12,345.5", None])) == "1,234"
    assert numbers_as_text(pd.Series(["5,1", "4,9"])) == "5,1"
    assert numbers_as_text(pd.Series(["1", "7", "3"])) is None  # integer-coded categories
    assert numbers_as_text(pd.Series(["0,5", "1,25"])) == "0,5"
    assert numbers_as_text(pd.Series(["5,1", "4,9"], dtype="category")) is None
    assert numbers_as_text(pd.Series(["1,2,3", "4,5,6"])) is None
    frame = pd.DataFrame({"mass": ["1,200", "950", "2,310", "1,005"], "kind": list("abab")})
    with pytest.raises(PoisonlabError, match=r"^dataset.source: column 'mass' of t.csv holds"):
        frame_to_dataset(frame, "kind", "t.csv", encode="onehot")


def test_the_default_label_warning_counts_classes_as_the_run_does():
    """'yes' and 'yes ' are one class in the run, so the warning counts 2, not 4."""
    frame = pd.DataFrame({"x": range(12), "answer": ["yes", "yes ", "no", " no"] * 3})
    settings = {"source": "t.csv", "label_column": None, "drop_columns": []}
    (warning,) = [w for w in table_warnings(frame, settings) if "label_column is not" in w]
    assert "the last column, 'answer' (2 classes), is the label" in warning


def test_a_feature_named_like_a_stored_column_is_an_error():
    """A feature column '_label' collided with the labels the steps store beside the
    table: the raw view's file could not be read back (the run failed in its poison
    step), and the encoded view's file held the class codes as that feature."""
    frame = pd.DataFrame({"_label": [0.1, 0.2, 0.3, 0.4], "x": [1, 2, 3, 4], "kind": list("abab")})
    with pytest.raises(PoisonlabError) as error:
        frame_to_dataset(frame, "kind", "t.csv")
    assert str(error.value) == (
        "dataset.source: column '_label' of t.csv has a name poisonlab keeps for the labels "
        "it stores with the table; rename it, or add it to dataset.drop_columns"
    )
    kept = frame_to_dataset(frame, "kind", "t.csv", drop_columns=["_label"])  # the fix works
    assert kept.feature_names == ["x"]


def test_a_source_under_the_home_folder_written_with_a_tilde_is_read(tmp_path, monkeypatch):
    """``source: ~/data.csv`` in a YAML config: no shell expands the ~, and the file that
    was there was said not to exist."""
    monkeypatch.setenv("HOME", str(tmp_path))
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "kind": list("abab")}).to_csv(
        tmp_path / "data.csv", index=False
    )
    frame, _ = read_frame("~/data.csv")
    assert list(frame.columns) == ["x", "kind"]


def test_missing_text_labels_say_which_words_pandas_reads_as_missing():
    """A region 'NA' (North America) is read as missing: the error said only to drop
    those rows, a third of the table here."""
    frame = pd.read_csv(io.StringIO("x,region\n1,NA\n2,EU\n3,NA\n4,EU\n5,AS\n6,AS\n"))
    with pytest.raises(PoisonlabError) as error:
        frame_to_dataset(frame, "region", "t.csv")
    assert str(error.value) == (
        "dataset.label_column: 'region' of t.csv has 2 missing labels; drop those rows (labels "
        "are never imputed); a class written NA, N/A, None or null reads as missing: rename it"
    )


def test_values_too_large_for_the_models_are_an_error_not_failed_or_chance_fits():
    """Finite float64 values of 1e300: every built-in model's fit failed (trees overflow
    float32, the scaler's variance overflows to NaN); at 1e160 a scaled logistic regression
    trained at chance without failing."""
    frame = pd.DataFrame(
        {"x": [1e300, -2e300, 3e300, 4e300], "y": [1.0, 2, 3, 4], "k": list("abab")}
    )
    with pytest.raises(PoisonlabError) as error:
        frame_to_dataset(frame, "k", "t.csv")
    assert str(error.value) == (
        "dataset.source: columns ['x'] of t.csv hold values over 3.4e+38 in size, which the "
        "models cannot compute with; rescale them (other units, or a log)"
    )
    frame_to_dataset(frame.assign(x=frame["x"] / 1e270), "k", "t.csv")  # 1e30 is fine
