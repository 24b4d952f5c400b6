"""The report's figures: fixed margins that still hold every label, one legend for all panels."""

from __future__ import annotations

import itertools
import warnings

import pandas as pd
import pytest
from matplotlib.figure import Figure

from poisonlab import plots

# Names longer than the built-in ones: the margins and panel widths must grow to hold them.
ATTACKS = ["label_flip", "an_attack_with_a_rather_long_name"]
MODELS = ["logistic_regression", "a_user_pipeline_with_a_long_name"]
CLASSES = ["setosa", "a_class_with_a_long_name", "virginica"]
LEVELS = [0.0, 0.1, 0.5]


def _summary() -> pd.DataFrame:
    """Accuracy per level and defence; recovery in two of the four attack-model cells: the
    top-right recovery panel is empty, and zscore alone is first in its panel."""
    rows = []
    for attack, model, level in itertools.product(ATTACKS, MODELS, LEVELS):
        for defense, value in (("none", 0.95 - level), ("knn", 0.95 - level / 2)):
            rows.append((level, attack, model, defense, "accuracy", value))
        if (attack, model) == (ATTACKS[1], MODELS[1]) and level > 0:
            rows.append((level, attack, model, "knn", "recovery", 0.5))
        if (attack, model) in {(ATTACKS[0], MODELS[0]), (ATTACKS[1], MODELS[1])} and level > 0:
            rows.append((level, attack, model, "zscore", "recovery", -0.2))
    frame = pd.DataFrame(
        rows, columns=["poison_level", "attack", "model", "defense", "metric", "mean"]
    )
    frame["ci_low"], frame["ci_high"], frame["n"] = frame["mean"] - 0.05, frame["mean"] + 0.05, 5
    return frame


def _detection() -> pd.DataFrame:
    rows = [
        (level, attack, detector, metric, 0.7)
        for attack, detector, level in itertools.product(ATTACKS, ["knn", "zscore"], LEVELS[1:])
        for metric in ("precision", "recall", "f1")
    ]
    frame = pd.DataFrame(rows, columns=["poison_level", "attack", "detector", "metric", "mean"])
    frame["ci_low"], frame["ci_high"], frame["n"] = frame["mean"] - 0.1, frame["mean"] + 0.1, 5
    return frame


def _confusion() -> pd.DataFrame:
    rows = [
        (level, attack, model, "none", true, predicted, 10 if true == predicted else 2)
        for attack, model, level in itertools.product(ATTACKS, MODELS, LEVELS)
        for true, predicted in itertools.product(CLASSES, CLASSES)
    ]
    columns = ["poison_level", "attack", "model", "defense", "true", "predicted", "count"]
    return pd.DataFrame(rows, columns=columns)


@pytest.fixture(scope="module")
def figures() -> dict[str, Figure]:
    """Every report figure of the tables above, kept as it was saved; warnings are errors."""
    kept: dict[str, Figure] = {}
    real = plots.inline_png

    def keep(figure: Figure, alt: str) -> str:
        kept[alt] = figure
        return real(figure, alt)

    summary = _summary()
    plots.inline_png = keep
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert plots.accuracy_plot(summary)
            assert plots.heatmap_plot(summary)
            assert plots.defence_plot(summary)
            assert plots.defence_plot(summary, "recovery")
            assert plots.detection_plot(_detection())
            assert plots.confusion_plot(_confusion(), {attack: 0.5 for attack in ATTACKS})
    finally:
        plots.inline_png = real
    return kept


def test_every_label_is_inside_the_figure_and_clear_of_other_panels(figures):
    """What constrained layout guaranteed, with fixed margins: each panel's extent (its
    tick labels, axis labels, title and legend) lies inside the figure and overlaps no
    other panel's."""
    assert len(figures) == 6
    for alt, figure in figures.items():
        renderer = figure.canvas.get_renderer()
        page = figure.bbox
        boxes = [ax.get_tightbbox(renderer) for ax in figure.axes]
        for box in boxes:
            inside = box.x0 >= page.x0 - 1 and box.y0 >= page.y0 - 1
            assert inside and box.x1 <= page.x1 + 1 and box.y1 <= page.y1 + 1, (alt, box, page)
        for a, b in itertools.combinations(boxes, 2):
            overlap = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
            assert min(overlap) <= 1, (alt, a, b)


def test_one_legend_names_every_defence_in_one_colour_each(figures):
    """The legend sits on the top-right panel, which has no recovery here: its entries
    come from every panel, and each defence keeps its colour across panels."""
    figure = figures["recovery per defence"]
    top_right = figure.axes[len(MODELS) - 1]
    assert not top_right.lines
    legend = top_right.get_legend()
    assert sorted(text.get_text() for text in legend.get_texts()) == ["knn", "zscore"]
    assert "see the defence table" in " ".join(t.get_text() for t in top_right.texts)
    colours: dict[str, set] = {}
    for ax in figure.axes:
        for line in ax.lines:
            colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert colours.keys() == {"knn", "zscore"}
    assert all(len(found) == 1 for found in colours.values())
    assert colours["knn"] != colours["zscore"]
