"""The report: breakdown points, findings, plots, self-containment, reproducibility,
Vertex-native outputs in the compiled YAML, and the quality-versus-quantity experiment."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_command, set_args

from poisonlab import experiment, quantity
from poisonlab.config import validate_config
from poisonlab.data import load_dataset, split_masks
from poisonlab.errors import PoisonlabError
from poisonlab.findings import breakdown_level, breakdown_points, findings, worst_levels
from poisonlab.report import Report, write_results
from poisonlab.result_files import MARKDOWN_FILE, REPORT_FILE


class _Resources(HTMLParser):
    """Every URL-bearing attribute and every <img> of a page."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.images = 0
        self.tables: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.images += tag == "img"
        if tag == "table":
            self.tables.append(attrs.get("id") or "")
        for name in ("src", "href", "srcset", "poster", "data", "action"):
            if attrs.get(name):
                self.urls.append(attrs[name])


def inspect_html(text: str) -> _Resources:
    parser = _Resources()
    parser.feed(text)
    return parser


def assert_self_contained(text: str) -> _Resources:
    page = inspect_html(text)
    assert all(url.startswith("data:") for url in page.urls), [u[:60] for u in page.urls]
    # No http(s) anywhere outside data: URIs (which are base64, so cannot hold "://").
    without_data = re.sub(r"data:[^\"']*", "", text)
    assert not re.search(r"https?://", without_data)
    assert "@import" not in text and "url(" not in text
    return page


# --- breakdown points -------------------------------------------------------------------


def test_breakdown_level_interpolates_between_levels():
    levels = np.array([0.0, 0.1, 0.5])
    # threshold 0.85 is crossed between 0.1 (0.90) and 0.5 (0.55): 0.1 + 0.05/0.35 * 0.4
    assert breakdown_level(levels, np.array([0.95, 0.90, 0.55]), 0.10) == pytest.approx(
        0.1 + 0.05 / 0.35 * 0.4
    )
    assert breakdown_level(levels, np.array([0.95, 0.80, 0.55]), 0.10) == pytest.approx(
        0.1 * 0.10 / 0.15
    )
    assert math.isnan(breakdown_level(levels, np.array([0.95, 0.94, 0.86]), 0.10))
    # a larger allowed drop moves the point later
    assert math.isnan(breakdown_level(levels, np.array([0.95, 0.90, 0.55]), 0.5))


def _summary(attacks=("label_flip",), extra_metric: str | None = None) -> pd.DataFrame:
    """A small summary table like summary.csv, with known accuracies."""
    rows = []
    curves = {"logistic_regression": [0.95, 0.90, 0.55], "decision_tree": [0.90, 0.89, 0.88]}
    for attack in attacks:
        for model, curve in curves.items():
            for level, acc in zip([0.0, 0.1, 0.5], curve, strict=True):
                for defense, value in (("none", acc), ("knn", min(1.0, acc + 0.2))):
                    rows.append((level, attack, model, defense, "accuracy", value))
                    rows.append((level, attack, model, defense, "f1_macro", value - 0.01))
                    if extra_metric and defense != "none":
                        rows.append((level, attack, model, defense, extra_metric, 0.5 + level))
    frame = pd.DataFrame(
        rows, columns=["poison_level", "attack", "model", "defense", "metric", "mean"]
    )
    frame["ci_low"], frame["ci_high"], frame["n"] = frame["mean"] - 0.02, frame["mean"] + 0.02, 5
    return frame


def _detection(attacks=("label_flip",), detectors=("knn", "zscore")) -> pd.DataFrame:
    rows = []
    for attack in attacks:
        for detector in detectors:
            rows.append((0.0, attack, detector, "flag_rate", 0.03))
            for level in (0.1, 0.5):
                for metric, value in (("precision", 0.8), ("recall", 0.6), ("f1", 0.69)):
                    rows.append(
                        (level, attack, detector, metric, value - 0.1 * (detector == "zscore"))
                    )
    frame = pd.DataFrame(rows, columns=["poison_level", "attack", "detector", "metric", "mean"])
    frame["ci_low"], frame["ci_high"], frame["n"] = frame["mean"] - 0.05, frame["mean"] + 0.05, 5
    return frame


def test_breakdown_points_per_model_and_attack():
    points = breakdown_points(_summary(("label_flip", "feature_noise")), 0.10)
    assert len(points) == 4
    lr = points[(points["model"] == "logistic_regression") & (points["attack"] == "feature_noise")]
    assert lr["breakdown_level"].iloc[0] == pytest.approx(0.1 + 0.05 / 0.35 * 0.4)
    dt = points[points["model"] == "decision_tree"]
    assert dt["breakdown_level"].isna().all()


def test_findings_are_written_from_the_numbers():
    summary, detection = _summary(), _detection()
    recovery = (0.5, "label_flip", "logistic_regression", "knn", "recovery", 0.5, 0.3, 0.7, 5)
    with_recovery = pd.concat([summary, pd.DataFrame([recovery], columns=summary.columns)])
    sentences = findings(with_recovery, detection, breakdown_points(summary, 0.1), 0.1)
    text = " ".join(sentences)
    # logistic_regression loses 0.95 - 0.55 = 40 points; knn wins back half of them
    assert "logistic_regression loses 40 points at 50% label_flip" in text
    assert "wins back 50% of them, 95% CI 30% to 70%" in text
    # Without a recovery row the loss was not distinguishable from zero: no share is given.
    plain = " ".join(findings(summary, detection, breakdown_points(summary, 0.1), 0.1))
    assert "wins back" not in plain and "no recovery is given" in plain
    assert "logistic_regression breaks down first" in text and "15.7%" in text
    assert "knn finds the poisoned rows best (F1 0.69" in text
    assert worst_levels(summary) == {"label_flip": 0.5}


def test_few_trials_are_said_to_give_wide_intervals():
    from poisonlab.report import few_trials_note

    assert "12.7 standard errors" in few_trials_note(2)
    assert "no spread to measure" in few_trials_note(1)
    assert few_trials_note(10) == ""


# --- the HTML and Markdown report --------------------------------------------------------

SMALL_SYNTHETIC = "synthetic:rows=300,features=5,classes=3,informative=5"

PROVENANCE = {
    "source": "sklearn:iris",
    "input_sha256": "a" * 64,
    "data_sha256": "b" * 64,
    "n_rows": 150,
    "n_features": 4,
    "class_names": ["setosa", "versicolor", "virginica"],
}


def test_report_is_self_contained_and_robust_to_new_names():
    """A new attack, detector and a ``recovery`` metric appear without code changes."""
    summary = _summary(("label_flip", "brand_new_attack"), extra_metric="recovery")
    detection = _detection(("label_flip", "brand_new_attack"), ("knn", "new_detector"))
    report = Report(summary, detection, validate_config({}), PROVENANCE)
    text = report.html()
    page = assert_self_contained(text)
    assert page.images >= 5  # accuracy, heatmap, defence accuracy, recovery, detection
    assert "breakdown" in page.tables
    assert "Recovery per defence" in text
    assert "brand_new_attack" in text and "new_detector" in text
    assert "a" * 64 in text and "b" * 64 in text  # input and data hashes
    markdown = report.markdown()
    assert "| label_flip | logistic_regression | 0.950 | 0.850 | 15.7% |" in markdown
    assert "| label_flip | decision_tree | 0.900 | 0.800 | none |" in markdown


def _small_results(tmp_path: Path, with_quantity: bool) -> tuple[Path, dict]:
    """Run a tiny experiment in process and write its results (with confusion matrices)."""
    config = validate_config(
        {
            "trials": 2,
            "poison": {"levels": [0.0, 0.3]},
            "train": {"models": ["logistic_regression", "decision_tree"]},
            "quantity": {
                "enabled": with_quantity,
                "sizes": [20, 40, 80],
                "reference": 40,
                "trials": 2,
                "source": SMALL_SYNTHETIC,
            },
        }
    )
    dataset, _ = load_dataset("sklearn:iris")
    masks = split_masks(dataset.y, 0.2, config["seed"], config["trials"])
    records, confusion, counts = [], [], []
    for level in config["poison"]["levels"]:
        sets = list(experiment.poison_level(dataset, masks, config, level))
        detections = experiment.detect_level(sets, config, dataset.n_classes)
        models = experiment.train_level(sets, detections, config)
        predictions = experiment.predict_level(models, dataset, masks)
        records.append(
            experiment.evaluate_level(models, dataset, masks, sets, detections, level, predictions)
        )
        confusion.append(experiment.confusion_level(predictions, dataset, masks, level))
        if with_quantity:
            counts.append(quantity.quantity_level(config, level))
    quantity_records = pd.concat(counts) if counts else None
    out = tmp_path / ("q" if with_quantity else "plain")
    out.mkdir()
    snapshots = []
    for _ in range(2):  # twice: the second write must give the same bytes
        write_results(
            pd.concat(records),
            config,
            PROVENANCE,
            out,
            "key",
            pd.concat(confusion),
            quantity_records,
        )
        snapshots.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    return out, {"config": config, "snapshots": snapshots, "confusion": pd.concat(confusion)}


@pytest.fixture(scope="module")
def plain_results(tmp_path_factory) -> tuple[Path, dict]:
    return _small_results(tmp_path_factory.mktemp("report"), with_quantity=False)


def test_confusion_counts_cover_every_test_row(plain_results):
    _, info = plain_results
    confusion = info["confusion"]
    per_matrix = confusion.groupby(["poison_level", "attack", "model", "defense"])["count"].sum()
    # 2 trials x 30 test rows of Iris in every matrix
    assert set(per_matrix) == {60}
    assert set(confusion["true"]) == {"setosa", "versicolor", "virginica"}


def test_written_report_has_plots_tables_and_same_bytes_twice(plain_results):
    out, info = plain_results
    text = (out / REPORT_FILE).read_text()
    page = assert_self_contained(text)
    assert page.images >= 4
    assert "breakdown" in page.tables
    assert "Confusion matrices" in text
    assert (out / MARKDOWN_FILE).read_text().startswith("# Data-poisoning report")
    # The same config and records give byte-identical files.
    first, second = info["snapshots"]
    assert set(first) >= {"summary.csv", "detection.csv", REPORT_FILE, MARKDOWN_FILE}
    assert first == second
    assert not (out / quantity.QUANTITY_FILE).exists()


# --- quality versus quantity -------------------------------------------------------------


def test_rows_to_match_interpolates():
    sizes = np.array([50, 100, 200])
    assert quantity.rows_to_match(sizes, np.array([0.7, 0.8, 0.9]), 0.85) == pytest.approx(150)
    assert quantity.rows_to_match(sizes, np.array([0.7, 0.8, 0.9]), 0.6) == 50
    assert math.isnan(quantity.rows_to_match(sizes, np.array([0.7, 0.8, 0.9]), 0.95))


def test_quantity_gives_no_size_where_poisoning_cost_nothing_measurable():
    """At 40 reference rows: clean balanced accuracy 0.9; poisoned 0.7 [0.65, 0.75] needs
    more rows, poisoned 0.88 [0.80, 0.96] is noise and gets no ratio."""

    def summary(poisoned: list[tuple[float, float, float]]) -> pd.DataFrame:
        clean = [(0.8, 0.75, 0.85), (0.9, 0.85, 0.95), (0.95, 0.9, 1.0)]
        rows = [
            (level, size, "m", "balanced_accuracy", *values, 3)
            for level, curve in ((0.0, clean), (0.3, poisoned))
            for size, values in zip([20, 40, 80], curve, strict=True)
        ]
        return pd.DataFrame(rows, columns=quantity.QUANTITY_COLUMNS)

    lower = [(0.6, 0.55, 0.65), (0.7, 0.65, 0.75), (0.95, 0.9, 1.0)]
    (answer,) = quantity.quantity_answers(summary(lower), 40, "label_flip", "balanced_accuracy")
    assert "give balanced_accuracy 0.900" in answer and "it takes about 72 rows" in answer
    noise = [(0.6, 0.55, 0.65), (0.88, 0.8, 0.96), (0.95, 0.9, 1.0)]
    (answer,) = quantity.quantity_answers(summary(noise), 40, "label_flip", "balanced_accuracy")
    assert "not distinguishable from clean, so no size is given" in answer
    assert "takes about" not in answer


def test_quantity_writes_csv_and_the_report_answers_with_numbers(tmp_path):
    out, info = _small_results(tmp_path, with_quantity=True)
    table = pd.read_csv(out / quantity.QUANTITY_FILE)
    assert list(table.columns) == quantity.QUANTITY_COLUMNS
    assert set(table["n_train"]) == {20, 40, 80}
    assert set(table["poison_level"]) == {0.0, 0.3}
    assert (table["n"] == 2).all()
    text = (out / REPORT_FILE).read_text()
    assert_self_contained(text)
    answer = re.search(
        r"logistic_regression: 40 clean rows give accuracy (0\.\d{3}); at 30% label_flip "
        r"(it takes about (\d+) rows|no size up to 80 rows reaches it|20 rows already do"
        r"|40 rows score 0\.\d{3} \(95% CI .*?\), not distinguishable from clean)",
        text,
    )
    assert answer, text[text.find("quality versus quantity") :][:2000]
    clean = table[
        (table["poison_level"] == 0.0)
        & (table["n_train"] == 40)
        & (table["model"] == "logistic_regression")
        & (table["metric"] == "accuracy")
    ]["mean"].iloc[0]
    assert float(answer.group(1)) == pytest.approx(clean, abs=5e-4)
    assert "Data quality versus quantity" in (out / MARKDOWN_FILE).read_text()


def test_quantity_records_are_reproducible():
    config = validate_config(
        {
            "train": {"models": ["decision_tree"]},
            "quantity": {
                "sizes": [20, 40],
                "reference": 20,
                "trials": 2,
                "source": SMALL_SYNTHETIC,
            },
        }
    )
    first, second = (quantity.quantity_level(config, 0.2) for _ in range(2))
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == 2 * 2 * 1 * 3  # trials x sizes x models x metrics


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"quantity": {"attack": "lbl_flip"}}, "quantity.attack"),
        ({"quantity": {"sizes": [100, 50]}}, "quantity.sizes"),
        ({"quantity": {"reference": 7}}, "quantity.reference"),
        ({"quantity": {"sizes": [50, 5000], "reference": 50}}, "quantity.sizes"),
        ({"quantity": {"enabled": "yes"}}, "quantity.enabled"),
        ({"quantity": {"source": "synthetic:rows=2000,colour=3"}}, "quantity.source"),
        ({"report": {"breakdown_drop": 1.5}}, "report.breakdown_drop"),
    ],
)
def test_bad_report_and_quantity_settings_name_the_field(raw, field):
    with pytest.raises(PoisonlabError, match=re.escape(f"config: {field}")):
        validate_config(raw)


# --- Vertex-native outputs in the compiled pipeline ---------------------------------------


def test_compiled_yaml_has_metrics_confusion_html_and_markdown_outputs(tmp_path):
    path = tmp_path / "pipeline.yaml"
    result = run_command("compile.py", "--output", str(path))
    assert result.returncode == 0, result.stderr
    spec = yaml.safe_load(path.read_text())
    outputs = {
        name: {
            key: a["artifactType"]["schemaTitle"]
            for key, a in c["outputDefinitions"]["artifacts"].items()
        }
        for name, c in spec["components"].items()
        if "outputDefinitions" in c and "artifacts" in c["outputDefinitions"]
    }
    evaluate = outputs["comp-evaluate"]
    assert evaluate["metrics"] == "system.Metrics"
    confusion = {k for k, v in evaluate.items() if v == "system.ClassificationMetrics"}
    # Numbered slots, filled in train.models order: any model list, built-in or the user's.
    assert confusion == {f"confusion_{i}" for i in range(1, 9)}
    assert outputs["comp-report"]["report_html"] == "system.HTML"
    assert outputs["comp-report"]["report_summary"] == "system.Markdown"


# --- the small end-to-end run shared with other tests --------------------------------------


def test_pipeline_report_is_self_contained_with_plots_and_breakdown(small_run):
    text = (small_run / REPORT_FILE).read_text()
    page = assert_self_contained(text)
    assert page.images >= 4
    assert "breakdown" in page.tables
    assert "Confusion matrices" in text
    assert "## Breakdown point" in (small_run / MARKDOWN_FILE).read_text()


@pytest.mark.slow
def test_pipeline_with_quantity_on_writes_quantity_csv(tmp_path):
    output = tmp_path / "out"
    result = run_command(
        "submit.py",
        "--local",
        *set_args(
            "trials=2",
            "poison.levels=[0.0,0.3]",
            "train.models=[logistic_regression]",
            "quantity.enabled=true",
            "quantity.sizes=[20,40,80]",
            "quantity.reference=40",
            "quantity.trials=2",
            f"quantity.source={SMALL_SYNTHETIC}",
            f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        ),
        "--output-dir",
        str(output),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = pd.read_csv(output / quantity.QUANTITY_FILE)
    assert set(table["n_train"]) == {20, 40, 80}
    assert re.search(
        r"40 clean rows give accuracy 0\.\d{3}; at 30% label_flip",
        (output / REPORT_FILE).read_text(),
    )


def test_a_defence_whose_detector_failed_says_so_not_blank_or_no_loss():
    from poisonlab.report import defence_table

    rows = [
        (level, "label_flip", "lr", defense, metric, 1.0, 1.0, 1.0, 2)
        for level in (0.0, 0.1)
        for defense, metric in (("none", "accuracy"), ("bad", experiment.DETECTOR_FAILED))
    ]
    summary = pd.DataFrame(rows, columns=experiment.SUMMARY_COLUMNS)
    [row] = defence_table(summary).to_dict("records")
    assert row["cost at level 0"] == "detector failed"
    assert row["recovery at 0.1"] == "detector failed"
