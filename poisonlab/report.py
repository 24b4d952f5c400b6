"""The results of a run: summary.csv, detection.csv, manifest.json and report.html.

The report is one self-contained HTML file: plots are inline PNGs, styles are
inline, nothing is loaded from elsewhere.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a pipeline task
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from poisonlab.config import canonical_json, config_hash  # noqa: E402
from poisonlab.experiment import NO_DEFENSE, summarize, write_csv  # noqa: E402
from poisonlab.gate import gate_table  # noqa: E402

SUMMARY_FILE = "summary.csv"
DETECTION_FILE = "detection.csv"
GATE_FILE = "gate.csv"
REPORT_FILE = "report.html"
MANIFEST_FILE = "manifest.json"


def _png(figure: plt.Figure) -> str:
    """A figure as an inline <img>; fixed metadata keeps the bytes reproducible."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def accuracy_plot(summary: pd.DataFrame) -> str:
    """Accuracy against poison level, one panel per attack, one line per model, 95% CI bands."""
    rows = summary[(summary["metric"] == "accuracy") & (summary["defense"] == NO_DEFENSE)]
    attacks = list(dict.fromkeys(rows["attack"]))
    figure, axes = plt.subplots(
        1, len(attacks), figsize=(4.2 * len(attacks), 3.4), squeeze=False, sharey=True
    )
    for ax, attack in zip(axes[0], attacks, strict=True):
        for model, frame in rows[rows["attack"] == attack].groupby("model", sort=False):
            ax.plot(frame["poison_level"], frame["mean"], marker="o", label=model)
            ax.fill_between(
                frame["poison_level"], frame["ci_low"], frame["ci_high"], alpha=0.2, linewidth=0
            )
        ax.set_title(attack)
        ax.set_xlabel("poison level")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy on the clean test set")
    axes[0][-1].legend(fontsize=8)
    return _png(figure)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, na_rep="")


def accuracy_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy without defence: one row per attack and model, one column per level."""
    rows = summary[(summary["metric"] == "accuracy") & (summary["defense"] == NO_DEFENSE)]
    table = rows.pivot_table(
        index=["attack", "model"], columns="poison_level", values="mean", sort=False
    )
    table.columns = [f"{level:g}" for level in table.columns]
    return table.reset_index()


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}
td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4} img{max-width:100%} code{background:#f4f4f4;padding:1px 4px}
"""


def render_html(
    summary: pd.DataFrame, detection: pd.DataFrame, config: dict[str, Any], provenance: dict
) -> str:
    detection_view = detection[detection["metric"].isin(["precision", "recall", "f1", "flag_rate"])]
    detection_view = detection_view.pivot_table(
        index=["poison_level", "attack", "detector"], columns="metric", values="mean", sort=False
    ).reset_index()
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>poisonlab report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Data-poisoning report</h1>",
        failed_levels_html(provenance),
        f"<p>Dataset <code>{html.escape(provenance['source'])}</code>: "
        f"{provenance['n_rows']} rows, {provenance['n_features']} features, classes "
        f"{html.escape(', '.join(provenance['class_names']))}. "
        f"{config['trials']} trials, seed {config['seed']}; intervals are 95% CIs over trials.</p>",
        "<h2>Accuracy on the clean test set</h2>",
        accuracy_plot(summary),
        _table(accuracy_table(summary)),
        "<h2>Detection against the true poisoned rows</h2>",
        _table(detection_view),
        "<h2>Provenance</h2>",
        f"<p>Input SHA-256 <code>{provenance['input_sha256']}</code>, "
        f"config SHA-256 <code>{config_hash(config)}</code>.</p>",
        hashes_html(provenance),
        f"<pre>{html.escape(json.dumps(config, indent=2, sort_keys=True))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_results(
    records: pd.DataFrame,
    config: dict[str, Any],
    provenance: dict,
    results_dir: str | Path,
    run_key: str,
) -> None:
    """Write summary.csv, detection.csv, gate.csv, report.html and manifest.json."""
    results_dir = Path(results_dir)
    summary, detection = summarize(records, config)
    write_csv(summary, results_dir / SUMMARY_FILE)
    write_csv(detection, results_dir / DETECTION_FILE)
    write_csv(gate_table(records, config), results_dir / GATE_FILE)
    (results_dir / REPORT_FILE).write_text(
        render_html(summary, detection, config, provenance), encoding="utf-8"
    )
    manifest = {
        "run_key": run_key,
        "config": config,
        "config_sha256": config_hash(config),
        "provenance": provenance,
    }
    (results_dir / MANIFEST_FILE).write_text(canonical_json(manifest) + "\n", encoding="utf-8")


def failed_levels_html(provenance: dict) -> str:
    """A warning naming every poison level whose tasks failed (empty if none did)."""
    failed = provenance.get("failed_levels") or []
    if not failed:
        return ""
    items = "".join(
        f"<li>level {f['level']:g}: {html.escape(f['step'])} failed: "
        f"<code>{html.escape(f['error'])}</code></li>"
        for f in failed
    )
    return (
        "<div class='failed' style='border:2px solid #c00;padding:0.5em 1em'>"
        f"<strong>{len(failed)} poison level(s) failed</strong>; their rows are missing "
        f"from every table below, the other levels are complete.<ul>{items}</ul></div>"
    )


def hashes_html(provenance: dict) -> str:
    """SHA-256 of each trial's train and test split and of every poisoned variant."""
    rows = [
        ("input file", "", provenance["input_sha256"]),
        ("dataset (parsed values)", "", provenance.get("data_sha256", "")),
    ]
    for trial, split in provenance.get("split_sha256", {}).items():
        rows += [("train split", f"trial {trial}", split["train"])]
        rows += [("test split", f"trial {trial}", split["test"])]
    for level, variants in provenance.get("poisoned_sha256", {}).items():
        for key, digest in variants.items():
            rows.append((f"poisoned, level {level}", key.replace("/", " / "), digest))
    body = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td><code>{c}</code></td></tr>"
        for a, b, c in rows
    )
    return (
        f"<details><summary>SHA-256 of the input, every split and every poisoned variant "
        f"({len(rows)})</summary><table><tr><th>data</th><th>which</th><th>SHA-256</th></tr>"
        f"{body}</table></details>"
    )
