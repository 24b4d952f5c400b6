"""The report's figures, each returned as an inline <img> (base64 PNG) or None if no data.

PNGs are written without a timestamp or software tag, so the same numbers
give the same bytes. Every plot reads the long summary tables and draws one
line or cell per name it finds there: new attacks, models, detectors and
defences appear without changes here.

Figures are built on ``matplotlib.figure.Figure`` without pyplot (no global
figure registry, nothing to close) and laid out with fixed margins in inches
(``_panels``) rather than constrained layout: constrained layout measures every
tick label and title in an extra draw of each figure, over a third of the
report's plotting time, while these figures' decorations are known in advance.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from poisonlab.experiment import NO_DEFENSE
from poisonlab.findings import undefended_accuracy

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DPI = 90
_LINE_STYLES = ["-", "--", ":", "-."]


def inline_png(figure: Figure, alt: str) -> str:
    """A figure as an <img> with a data: URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img class="plot" alt="{alt}" src="data:image/png;base64,{encoded}">'


def _names(frame: pd.DataFrame, column: str) -> list[str]:
    """Names in order of first appearance (the summaries keep config order)."""
    return list(dict.fromkeys(frame[column]))


def _colors(names: list[str]) -> dict[str, str]:
    """A colour per name, the same in every panel of a figure (a panel may lack some names)."""
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def _text_width(texts: Iterable[str], fontsize: float | str) -> float:
    """Width in inches of the widest line of ``texts`` at ``fontsize`` (points or a name such
    as "large", matplotlib's default for titles), as Agg draws it."""
    renderer = RendererAgg(1, 1, DPI)
    font = FontProperties(size=fontsize)
    lines = [line for text in texts for line in str(text).split("\n")]
    widths = [renderer.get_text_width_height_descent(line, font, ismath=False)[0] for line in lines]
    return max(widths, default=0.0) / DPI


def _panels(
    n_rows: int,
    n_cols: int,
    width: float,
    height: float,
    *,
    left: float = 0.68,
    right: float = 0.1,
    bottom: float = 0.5,
    top: float = 0.3,
    wgap: float = 0.2,
    hgap: float = 0.55,
    sharex: bool = False,
    sharey: bool = False,
) -> tuple[Figure, np.ndarray]:
    """A figure of ``n_rows`` x ``n_cols`` panels, each ``width`` x ``height`` inches.

    Margins (``left`` ... ``top``) and the gaps between panels are in inches and
    hold the tick labels, axis labels and titles: the defaults fit numeric y ticks
    with an axis label, x ticks with an axis label and a one-line title; callers
    whose labels are names pass margins measured with ``_text_width``.
    """
    size = (
        left + n_cols * width + (n_cols - 1) * wgap + right,
        bottom + n_rows * height + (n_rows - 1) * hgap + top,
    )
    figure = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(figure)  # draws the PNG; lets tests measure the drawn figure
    figure.subplots_adjust(
        left=left / size[0],
        right=1 - right / size[0],
        bottom=bottom / size[1],
        top=1 - top / size[1],
        wspace=wgap / width,
        hspace=hgap / height,
    )
    axes = figure.subplots(n_rows, n_cols, squeeze=False, sharex=sharex, sharey=sharey)
    return figure, axes


def _legend(ax: Axes, axes: np.ndarray, fontsize: float) -> None:
    """A legend on ``ax`` of every labelled line in ``axes``, each label once.

    Gathered from all panels, not ``ax``'s own: the panel holding the legend may
    show fewer lines than others, or none.
    """
    entries: dict[str, object] = {}
    for panel in axes.flat:
        for handle, label in zip(*panel.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        ax.legend(list(entries.values()), list(entries), fontsize=fontsize)


def _band(
    ax, frame: pd.DataFrame, x: str, label: str, style: str = "-", color=None, clip: bool = True
) -> None:
    """Mean line with its 95% CI band (no band where the CI is undefined).

    With ``clip`` the band stays within [0, 1], where scores live: with few
    trials a Student-t interval can reach far beyond.
    """
    xs, mean = frame[x].to_numpy(), frame["mean"].to_numpy()
    (line,) = ax.plot(xs, mean, marker="o", markersize=3, linestyle=style, label=label, color=color)
    low, high = frame["ci_low"].to_numpy(), frame["ci_high"].to_numpy()
    if clip:
        low, high = low.clip(0.0, 1.0), high.clip(0.0, 1.0)
    ax.fill_between(xs, low, high, alpha=0.18, linewidth=0, color=line.get_color())


def _curves(
    rows: pd.DataFrame, panel: str, line: str, x: str, label, ylabel: str = "accuracy"
) -> tuple:
    """A panel per name in column ``panel``, a line with its CI band per value of ``line``."""
    names = _names(rows, panel)
    colors = _colors(_names(rows, line))
    width = max(3.2, _text_width(names, "large") + 0.1)
    figure, axes = _panels(1, len(names), width, 2.15, sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        for key, frame in rows[rows[panel] == name].groupby(line, sort=False):
            _band(ax, frame, x, label(key), color=colors[key])
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{ylabel} (clean test set)")
    _legend(axes[0][-1], axes, 7)
    return figure, axes


def accuracy_plot(summary: pd.DataFrame, metric: str = "accuracy") -> str | None:
    """``metric`` against poison level, a panel per attack, a line per model, 95% CI bands."""
    rows = undefended_accuracy(summary, metric)
    if rows.empty:
        return None
    figure, axes = _curves(rows, "attack", "model", "poison_level", str, metric)
    for ax in axes[0]:
        ax.set_xlabel("poison level")
    return inline_png(figure, f"{metric} against poison level")


def defence_plot(summary: pd.DataFrame, metric: str = "accuracy") -> str | None:
    """``metric`` against level for each defence: a panel per attack (rows) and model (columns)."""
    rows = summary[summary["metric"] == metric].sort_values("poison_level", kind="stable")
    if rows.empty or (metric != "recovery" and set(rows["defense"]) <= {NO_DEFENSE}):
        return None
    attacks, models = _names(rows, "attack"), _names(rows, "model")
    colors = _colors(_names(rows, "defense"))
    titles = [f"{attack} / {model}" for attack in attacks for model in models]
    width = max(2.75, _text_width(titles, 9) + 0.1)
    # One level axis for all panels: a panel with one point or none still spans every level.
    figure, axes = _panels(len(attacks), len(models), width, 1.9, sharex=True, sharey=True)
    for i, attack in enumerate(attacks):
        for j, model in enumerate(models):
            ax = axes[i][j]
            cell = rows[(rows["attack"] == attack) & (rows["model"] == model)]
            for defense, frame in cell.groupby("defense", sort=False):
                style = ":" if defense == NO_DEFENSE else "-"
                label = "no defence" if defense == NO_DEFENSE else defense
                color = colors[defense]
                _band(ax, frame, "poison_level", label, style, color, clip=metric != "recovery")
            if not ax.lines:  # recovery where no loss was measurable or nothing was fitted
                ax.text(
                    0.5,
                    0.5,
                    "no ratio here:\nsee the defence table",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=8,
                    color="0.4",
                )
            ax.set_title(f"{attack} / {model}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(axis="x", labelbottom=True)  # every row keeps its level numbers
            if i == len(attacks) - 1:
                ax.set_xlabel("poison level")
        axes[i][0].set_ylabel(metric)
    _legend(axes[0][-1], axes, 7)
    return inline_png(figure, f"{metric} per defence")


def detection_plot(detection: pd.DataFrame) -> str | None:
    """Precision, recall and F1 against level, a panel per detector, a line style per attack."""
    metrics = ["precision", "recall", "f1"]
    rows = detection[detection["metric"].isin(metrics)].sort_values("poison_level", kind="stable")
    if rows.empty:
        return None
    detectors, attacks = _names(rows, "detector"), _names(rows, "attack")
    colors = dict(zip(metrics, ["tab:blue", "tab:orange", "tab:green"], strict=True))
    width = max(3.2, _text_width(detectors, "large") + 0.1)
    figure, axes = _panels(1, len(detectors), width, 2.15, sharey=True)
    for ax, detector in zip(axes[0], detectors, strict=True):
        for k, attack in enumerate(attacks):
            for metric in metrics:
                frame = rows[
                    (rows["detector"] == detector)
                    & (rows["attack"] == attack)
                    & (rows["metric"] == metric)
                ]
                if not frame.empty:
                    style = _LINE_STYLES[k % len(_LINE_STYLES)]
                    _band(ax, frame, "poison_level", f"{metric}, {attack}", style, colors[metric])
        ax.set_title(detector)
        ax.set_xlabel("poison level")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("score against the true mask")
    _legend(axes[0][-1], axes, 6)
    return inline_png(figure, "detection precision, recall and F1")


def heatmap_plot(summary: pd.DataFrame, metric: str = "accuracy") -> str | None:
    """Mean ``metric`` by model (rows) and level (columns), a panel per attack."""
    rows = undefended_accuracy(summary, metric)
    if rows.empty:
        return None
    attacks = _names(rows, "attack")
    levels = sorted(set(rows["poison_level"]))
    models = _names(rows, "model")
    width = max(0.8 * len(levels) + 0.2, _text_width(attacks, "large") + 0.1)
    left = _text_width(models, "medium") + 0.2  # model names as y tick labels
    height = 0.45 * len(models) + 0.45
    figure, axes = _panels(1, len(attacks), width, height, left=left, sharey=True)
    low = max(0.0, float(rows["mean"].min()) - 0.05)
    for ax, attack in zip(axes[0], attacks, strict=True):
        grid = (
            rows[rows["attack"] == attack]
            .pivot_table(index="model", columns="poison_level", values="mean", sort=False)
            .reindex(index=models, columns=levels)
        )
        ax.imshow(grid.to_numpy(), cmap="RdYlGn", vmin=low, vmax=1.0, aspect="auto")
        for (r, c), value in np.ndenumerate(grid.to_numpy()):
            if not np.isnan(value):
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(levels)), [f"{level:g}" for level in levels])
        ax.set_yticks(range(len(models)), models)
        ax.set_xlabel("poison level")
        ax.set_title(attack)
    return inline_png(figure, f"{metric} heatmap by model and poison level")


def confusion_plot(confusion: pd.DataFrame, worst: dict[str, float]) -> str | None:
    """Confusion matrices (summed over trials, no defence) at level 0 and each attack's worst level.

    A row per model; the first column is the lowest level (the clean case), then
    one column per attack at its worst level.
    """
    rows = confusion[confusion["defense"] == NO_DEFENSE]
    if rows.empty or not worst:
        return None
    models = _names(rows, "model")
    classes = _names(rows, "true")
    first_attack = next(iter(worst))
    lowest = float(rows["poison_level"].min())
    columns = [(first_attack, lowest, f"level {lowest:g} (clean)")] + [
        (attack, level, f"{attack} at {level:g} (worst)") for attack, level in worst.items()
    ]
    titles = [f"{model}\n{title}" for model in models for _, _, title in columns]
    size = 0.35 * len(classes) + 1.0
    shown = classes if len(classes) <= 12 else []  # class names as tick labels
    figure, axes = _panels(
        len(models),
        len(columns),
        max(size, _text_width(titles, 8) + 0.1),
        size,
        left=_text_width(shown, 7) + 0.4,
        bottom=0.45,
        top=0.45,
        wgap=0.25,
        hgap=0.45,
    )
    for i, model in enumerate(models):
        for j, (attack, level, title) in enumerate(columns):
            ax = axes[i][j]
            cell = rows[
                (rows["model"] == model)
                & (rows["attack"] == attack)
                & (rows["poison_level"] == level)
            ]
            matrix = (
                cell.pivot_table(index="true", columns="predicted", values="count", aggfunc="sum")
                .reindex(index=classes, columns=classes)
                .fillna(0)
                .to_numpy()
            )
            ax.imshow(matrix, cmap="Blues")
            if len(classes) <= 12:
                dark = matrix.max() / 2 if matrix.max() > 0 else 1.0
                for (r, c), value in np.ndenumerate(matrix):
                    color = "white" if value > dark else "black"
                    ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=7, color=color)
            ticks = range(len(classes)) if len(classes) <= 12 else []
            ax.set_xticks(ticks, classes if i == len(models) - 1 and ticks else [], fontsize=7)
            ax.set_yticks(ticks, classes if j == 0 and ticks else [], fontsize=7)
            ax.set_title(f"{model}\n{title}", fontsize=8)
            if j == 0:
                ax.set_ylabel("true")
            if i == len(models) - 1:
                ax.set_xlabel("predicted")
    return inline_png(figure, "confusion matrices")


def quantity_plot(quantity: pd.DataFrame) -> str | None:
    """Accuracy against training-set size, a panel per model, a line per poison level."""
    rows = quantity[quantity["metric"] == "accuracy"].sort_values("n_train", kind="stable")
    if rows.empty:
        return None
    figure, axes = _curves(rows, "model", "poison_level", "n_train", lambda v: f"poison {v:g}")
    sizes = sorted(set(rows["n_train"]))
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("training rows")
    return inline_png(figure, "accuracy against training-set size")


def certified_plot(curves: pd.DataFrame, points: pd.DataFrame) -> str | None:
    """A panel per certified model: level-0 certified accuracy against poisoned rows, a line per
    unit, beside the accuracy measured under each attack at the rows it poisoned.

    The certified curve is a floor for every attacker of its unit; the measured
    points are what the attacks run achieved: the truth lies between.
    """
    if curves.empty:
        return None
    models = _names(curves, "model")
    width = max(3.5, _text_width(models, "large") + 0.1)
    # top: the secondary axis's ticks and label, then the title above them
    figure, axes = _panels(1, len(models), width, 2.1, top=0.8, sharey=True)
    colors = {"label_flips": "tab:blue", "modified": "tab:orange", "added_or_removed": "tab:green"}
    for ax, model in zip(axes[0], models, strict=True):
        for unit, frame in curves[curves["model"] == model].groupby("unit", sort=False):
            frame = frame.rename(columns={"certified_accuracy": "mean"})
            _band(ax, frame, "radius", f"certified, {unit}", "-", colors.get(unit))
        measured = points[points["model"] == model]
        for k, (attack, frame) in enumerate(measured.groupby("attack", sort=False)):
            style = _LINE_STYLES[(k + 1) % len(_LINE_STYLES)]
            color = colors.get(frame["unit"].iloc[0], "gray")
            ax.errorbar(
                frame["rows"],
                frame["mean"],
                yerr=[
                    (frame["mean"] - frame["ci_low"]).fillna(0.0),
                    (frame["ci_high"] - frame["mean"]).fillna(0.0),
                ],
                marker="s",
                markersize=4,
                linestyle=style,
                color=color,
                alpha=0.7,
                label=f"measured, {attack}",
            )
        n_train = float(measured.loc[measured["poison_level"] == 0.0, "n_train"].mean())
        if n_train > 0:
            top = ax.secondary_xaxis(
                "top",
                functions=(lambda x, n=n_train: 100 * x / n, lambda p, n=n_train: p * n / 100),
            )
            top.set_xlabel("% of training rows", fontsize=8)
        ax.set_title(model)
        ax.set_xlabel("poisoned training rows")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)  # each panel its own: models certify different units
    axes[0][0].set_ylabel("accuracy (clean test set)")
    return inline_png(figure, "certified accuracy beside measured accuracy")
