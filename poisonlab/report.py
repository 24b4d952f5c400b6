"""The results of a run: summary.csv, detection.csv, manifest.json, report.html and report.md.

The report is one self-contained HTML file a person reads in a minute: findings
in words first, then the breakdown points, then the plots (inline PNGs) and
tables, then the provenance. Nothing is loaded from elsewhere. report.md holds
the same findings and tables for the Vertex console and MLflow.
With the quality-versus-quantity experiment on, quantity.csv is written too.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from poisonlab.config import canonical_json, config_hash
from poisonlab.experiment import (
    DEFENCE_COST,
    DETECTOR_FAILED,
    FAILED,
    NO_DEFENSE,
    RECOVERY,
    UNFITTED,
    summarize,
    write_csv,
)
from poisonlab.findings import (
    breakdown_intervals,
    breakdown_points,
    findings,
    format_interval,
    format_level,
    paired_losses,
    worst_levels,
)
from poisonlab.gate import gate_detector, gate_table
from poisonlab.quantity import QUANTITY_FILE, quantity_answers, summarize_quantity
from poisonlab.result_files import (
    DETECTION_FILE,
    GATE_FILE,
    MANIFEST_FILE,
    MARKDOWN_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
)
from poisonlab.splits import split_sentence

if TYPE_CHECKING:
    from poisonlab.certify.evaluation import CertifiedResults


def headline(config: dict[str, Any], provenance: dict) -> tuple[str, str]:
    """The run's headline metric and why (``metrics.headline_metric``, from report.metric
    and the loaded dataset's class counts)."""
    from poisonlab.metrics import headline_metric

    counts = provenance.get("class_counts")
    if counts is None and config["report"]["metric"] == "auto":
        return "accuracy", "report.metric auto: the class counts are not recorded"
    return headline_metric(config["report"]["metric"], counts or [])


def accuracy_table(summary: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean ``metric`` without defence: one row per attack and model, one column per level."""
    rows = summary[(summary["metric"] == metric) & (summary["defense"] == NO_DEFENSE)]
    table = rows.pivot_table(
        index=["attack", "model"], columns="poison_level", values="mean", sort=False
    )
    table.columns = [f"{level:g}" for level in table.columns]
    return table.reset_index()


def breakdown_table(
    points: pd.DataFrame, intervals: pd.DataFrame | None = None, metric: str = "accuracy"
) -> pd.DataFrame:
    """The breakdown points as the report shows them; with ``intervals``
    (``findings.breakdown_intervals``) their 95% interval too."""
    table = pd.DataFrame(
        {
            "attack": points["attack"],
            "model": points["model"],
            f"clean {metric}": points["clean_accuracy"].map("{:.3f}".format),
            "threshold": points["threshold"].map("{:.3f}".format),
            "breakdown point": points["breakdown_level"].map(format_level),
        }
    )
    if intervals is not None and not intervals.empty:
        found = points[["attack", "model"]].merge(intervals, on=["attack", "model"], how="left")
        table["95% CI (Student-t over trials)"] = [
            format_interval(low, high, n, bool(tied))
            for low, high, n, tied in zip(
                found["ci_low"],
                found["ci_high"],
                found["n"],
                found["tied"].astype("boolean").fillna(False),
                strict=True,
            )
        ]
    return table


def detection_table(detection: pd.DataFrame) -> pd.DataFrame:
    """Mean detection scores: one row per level, attack and detector."""
    shown = [m for m in ("precision", "recall", "f1", "flag_rate") if m in set(detection["metric"])]
    view = detection[detection["metric"].isin(shown)]
    if view.empty:
        return pd.DataFrame()
    table = view.pivot_table(
        index=["poison_level", "attack", "detector"], columns="metric", values="mean", sort=False
    )
    table = table[shown]
    table.columns.name = None
    return table.reset_index()


def _interval(row: pd.Series, digits: int = 3) -> str:
    mean = f"{row['mean']:.{digits}f}"
    if math.isnan(row["ci_low"]):
        return mean
    return f"{mean} [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"


def defence_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per attack, model and defence: its cost at level 0 and its recovery at each level.

    Cost: the headline metric lost to the clean rows it removed (``defence_cost``).
    Recovery: the share of the loss to poisoning it wins back, with Fieller's
    interval; "no measurable loss" where poisoning cost nothing measurable (the loss's
    interval reaches 0), "not fitted" where it kept too little in every trial,
    "detector failed" where its detector failed in every trial.
    """
    defended = summary[summary["defense"] != NO_DEFENSE]
    if defended.empty:
        return pd.DataFrame()
    levels = sorted(level for level in set(summary["poison_level"]) if level > 0)
    rows = []
    for (attack, model, defense), frame in defended.groupby(
        ["attack", "model", "defense"], sort=False
    ):
        by = {(r["poison_level"], r["metric"]): r for _, r in frame.iterrows()}
        cost = by.get((0.0, DEFENCE_COST))
        row = {
            "attack": attack,
            "model": model,
            "defence": defense,
            "cost at level 0": _interval(cost) if cost is not None else "",
        }
        if cost is None and (0.0, DETECTOR_FAILED) in by:
            row["cost at level 0"] = "detector failed"
        for level in levels:
            if (level, RECOVERY) in by:
                cell = _interval(by[(level, RECOVERY)], 2)
            elif (level, "accuracy") not in by and (
                (level, UNFITTED) in by or (level, FAILED) in by
            ):
                cell = "not fitted"
            elif (level, "accuracy") not in by and (level, DETECTOR_FAILED) in by:
                cell = "detector failed"
            else:
                cell = "no measurable loss"
            row[f"recovery at {level:g}"] = cell
        rows.append(row)
    return pd.DataFrame(rows)


def few_trials_note(trials: int) -> str:
    """A sentence on how wide intervals over few trials are, and why (empty from 5 trials)."""
    if trials >= 5:
        return ""
    if trials < 2:
        return " With 1 trial there is no spread to measure: no number here has an interval."
    from scipy.special import stdtrit

    t = float(stdtrit(trials - 1, 0.975))
    return (
        f" With {trials} trials every interval is wide: a 95% Student-t interval reaches "
        f"{t:.1f} standard errors each side of the mean ({stdtrit(9, 0.975):.1f} with 10 "
        "trials); an interval left empty means the trials that measured it tied or only "
        "one did, which measures no spread."
    )


def unfitted_notes(summary: pd.DataFrame, detection: pd.DataFrame, trials: int) -> list[str]:
    """A sentence per level, attack and defence that kept too little to train on."""
    rows = summary[summary["metric"] == UNFITTED]
    rates = detection[detection["metric"] == "flag_rate"].set_index(
        ["poison_level", "attack", "detector"]
    )["mean"]
    notes = []
    for (level, attack, defense), frame in rows.groupby(
        ["poison_level", "attack", "defense"], sort=False
    ):
        rate = rates.get((level, attack, defense), math.nan)
        removed = f"removed {rate:.0%} of the training rows and " if rate == rate else ""
        notes.append(
            f"At level {level:g} under {attack}, the {defense} defence {removed}left fewer "
            f"than two classes or too few rows in {int(frame['n'].max())} of {trials} trials: "
            f"models trained on its kept rows have no metrics there; every other result stands."
        )
    return notes


def failed_fit_notes(provenance: dict, trials: int) -> list[str]:
    """A sentence per level, attack and model whose fit raised on some split, with the
    first error: that model has no metrics there, the rest of the level stands."""
    fits = pd.DataFrame(provenance.get("failed_fits") or [])
    notes = []
    if fits.empty:
        return notes
    for (level, attack, model), frame in fits.groupby(["level", "attack", "model"], sort=False):
        notes.append(
            f"At level {level:g} under {attack}, model {model} failed (its fit or "
            "prediction raised) in "
            f"{frame['trial'].nunique()} of {trials} trials: {frame['error'].iloc[0]}. It has "
            "no metrics there (its breakdown point is over the other levels); every other "
            "result stands."
        )
    return notes


def failed_attack_notes(provenance: dict, trials: int) -> list[str]:
    """A sentence per level and attack that raised on some trial's split, with the first
    error: that attack has no results there, so a worst case over the attacks run is over
    the others; every other attack stands."""
    found = pd.DataFrame(provenance.get("failed_attacks") or [])
    notes = []
    if found.empty:
        return notes
    for (level, attack), frame in found.groupby(["level", "attack"], sort=False):
        notes.append(
            f"At level {level:g}, attack {attack} failed (it raised) in "
            f"{frame['trial'].nunique()} of {trials} trials: {frame['error'].iloc[0]}. It has "
            "no results there, and no worst case there counts it; every other attack stands."
        )
    return notes


def failed_detection_notes(provenance: dict, config: dict[str, Any]) -> list[str]:
    """A sentence per detector that raised on some split, with where and its first error:
    there it has no detection metrics and its defence was not trained; the other detectors
    and models stand. One sentence, not one per level, for a gate that fails everywhere."""
    found = pd.DataFrame(provenance.get("failed_detections") or [])
    if found.empty:
        return []
    stood = len(config["poison"]["levels"]) - len(provenance.get("failed_levels") or [])
    splits = stood * len(config["poison"]["attacks"]) * config["trials"]
    notes = []
    for detector, frame in found.groupby("detector", sort=False):
        levels = ", ".join(f"{level:g}" for level in dict.fromkeys(frame["level"]))
        attacks = ", ".join(dict.fromkeys(frame["attack"]))
        gated = " and the gate fails, not evaluated" if detector == gate_detector(config) else ""
        notes.append(
            f"Detector {detector} failed on {len(frame)} of its {splits} training splits "
            f"(levels {levels}; {attacks}); first error: {frame['error'].iloc[0]}. Where it "
            f"failed it has no detection metrics, its defence was not trained{gated}; every "
            "other result stands."
        )
    return notes


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, na_rep="")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-style Markdown table; floats to three decimals."""

    def cell(value: Any) -> str:
        if value is None:  # a gate without a flag rate, as in the HTML table
            return ""
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.3f}"
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *body])


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}
td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4} img{max-width:100%} code{background:#f4f4f4;padding:1px 4px}
.findings li{margin:0.3em 0} .note{color:#555;font-size:13px}
.warning{color:#8a5300;font-size:13px}
"""


class Report:
    """Every number and sentence of a report, rendered as HTML or Markdown."""

    def __init__(
        self,
        summary: pd.DataFrame,
        detection: pd.DataFrame,
        config: dict[str, Any],
        provenance: dict,
        confusion: pd.DataFrame | None = None,
        quantity: pd.DataFrame | None = None,
        gate: pd.DataFrame | None = None,
        certified: CertifiedResults | None = None,
        breakdown_ci: pd.DataFrame | None = None,
        losses: pd.DataFrame | None = None,
        adaptive: Any = None,
    ):
        self.summary, self.detection = summary, detection
        # Naive versus adaptive attackers (poisonlab.adaptive_report.AdaptiveResults).
        self.adaptive = adaptive
        self.certified = certified
        self.breakdown_ci = breakdown_ci
        self.gate = gate if gate is not None else pd.DataFrame()
        self.config, self.provenance = config, provenance
        self.confusion = confusion if confusion is not None else pd.DataFrame()
        self.quantity = quantity if quantity is not None and not quantity.empty else None
        self.drop = config["report"]["breakdown_drop"]
        self.metric, self.metric_reason = headline(config, provenance)
        self.points = breakdown_points(summary, self.drop, self.metric)
        from poisonlab.metrics import majority_score

        floor = majority_score(self.metric, provenance.get("class_counts"))
        from poisonlab.models import reweighable_models

        self.findings = findings(
            summary,
            detection,
            self.points,
            self.drop,
            self.metric,
            losses,
            breakdown_ci,
            floor,
            reweighable_models(config["train"]),
        )
        if adaptive is not None:
            self.findings += [*adaptive.verdicts(self.metric), *adaptive.harm]
        self.unfitted = [
            *unfitted_notes(summary, detection, config["trials"]),
            *failed_attack_notes(provenance, config["trials"]),
            *failed_fit_notes(provenance, config["trials"]),
            *failed_detection_notes(provenance, config),
        ]
        self.defences = defence_table(summary)
        q = config["quantity"]
        self.quantity_answers = (
            quantity_answers(self.quantity, q["reference"], q["attack"], self.metric)
            if self.quantity is not None
            else []
        )

    def _intro(self) -> str:
        p = self.provenance
        return (
            f"Dataset {p['source']}: {p['n_rows']} rows, {p['n_features']} features, "
            f"classes {', '.join(p['class_names'])}. {self.config['trials']} trials, "
            f"seed {self.config['seed']}; intervals are 95% CIs over trials; scores are on "
            f"a clean held-out test set. Headline metric: {self.metric} "
            f"({self.metric_reason}).{few_trials_note(self.config['trials'])} "
            f"{split_sentence(p.get('split'))}"
        )

    def _defence_note(self) -> str:
        return (
            f"In {self.metric}. Cost: what training on a defence's kept rows loses at level 0, "
            "where there is nothing to defend against (clean minus defended, paired by "
            "trial; negative is a gain). Recovery: mean(defended - poisoned) / mean(clean - "
            "poisoned) over paired trials, with Fieller's 95% interval (Student-t, valid with few "
            "trials); "
            "1 wins back the whole loss, 0 nothing. 'no measurable loss': poisoning cost nothing "
            "measurable there (the loss's own 95% interval reaches 0), so there was no loss "
            "to recover and no ratio is given."
        )

    def _breakdown_note(self) -> str:
        return (
            f"Breakdown point: the smallest poison level at which mean {self.metric} falls more "
            "than "
            f"{self.drop * 100:g} points below its value at the lowest level run "
            "(linear between levels); none if it never does. Its 95% interval runs from "
            "the level where the upper end of the paired loss's Student-t interval first "
            "passes that drop to the level where its lower end does: valid with 2 trials, "
            "and wide with few."
        )

    def _data_notes(self) -> list[str]:
        """What the table held that could mislead (``preflight.data_warnings``), as
        submit.py warned before the run: a reader of the report sees it too."""
        return [f"Data warning: {w}" for w in self.provenance.get("data_warnings", [])]

    def _level_notes(self) -> list[str]:
        """What the level means for attacks where it is not a share of all training rows."""
        from poisonlab.attacks import attack_spec

        return [
            f"{name}: {attack_spec(name, self.config).level_note}"
            for name in self.config["poison"]["attacks"]
            if attack_spec(name, self.config).level_note
        ]

    def _gate_view(self) -> pd.DataFrame:
        """The validation gate's verdict per level and attack."""
        if self.gate.empty:
            return self.gate
        columns = ["poison_level", "attack", "detector", "flag_rate", "class_shift", "verdict"]
        if self.gate.get("reason", pd.Series(dtype=str)).fillna("").astype(bool).any():
            columns.append("reason")  # a gate that could not be evaluated says why
        return self.gate[[c for c in columns if c in self.gate.columns]]

    def _hashes(self) -> list[tuple[str, str]]:
        p = self.provenance
        rows = [("config SHA-256", config_hash(self.config)), ("input SHA-256", p["input_sha256"])]
        if "data_sha256" in p:
            rows.append(("data SHA-256", p["data_sha256"]))
        return rows

    _CERTIFIED_NOTE = (
        "Certified accuracy: the share of clean test rows predicted correctly by the model "
        "trained on clean data whose prediction provably survives any poisoning of that many "
        "training rows (partition aggregation or kNN certificates; lines with 95% CI bands). "
        "Markers: accuracy measured under each attack run, at the rows it poisoned. The "
        "certified curve is a floor for every attacker, the measured points what the attacks "
        "run achieved: the truth lies between."
    )

    def _certified_note(self) -> str:
        """The certified section's note; with another headline metric, why accuracy here."""
        if self.metric == "accuracy":
            return self._CERTIFIED_NOTE
        return (
            f"{self._CERTIFIED_NOTE} Certificates count test rows, so this section is in "
            f"accuracy, not the headline {self.metric}: with a rare class most certified rows "
            "are the largest class's, and a model that always predicts it is certified on "
            "all of them."
        )

    def _certified_check(self) -> list[str]:
        """The certificate against measurements, trial by trial, in words."""
        lines = []
        for row in self.certified.check.itertuples(index=False):
            held = row.pairs - row.violations
            verdict = "holds" if row.violations == 0 else f"FAILS in {row.violations}"
            lines.append(
                f"{row.model} under {row.attack}: measured accuracy at least the level-0 "
                f"certified accuracy at the rows poisoned ({row.unit}) {verdict} "
                f"({held} of {row.pairs} level-trial pairs; smallest margin {row.min_slack:.3f})."
            )
        return lines

    def _certified_html(self) -> list[str]:
        if self.certified is None or self.certified.table.empty:
            return []
        from poisonlab.plots import certified_plot

        esc = html.escape
        return [
            "<h2>Certified robustness</h2>",
            f"<p class='note'>{esc(self._certified_note())}</p>",
            "<ul class='findings'>",
            *(f"<li>{esc(s)}</li>" for s in self.certified.sentences),
            *(f"<li>{esc(s)}</li>" for s in self._certified_check()),
            "</ul>",
            certified_plot(self.certified.curves, self.certified.points) or "",
        ]

    def _certified_markdown(self) -> list[str]:
        if self.certified is None or self.certified.table.empty:
            return []
        lines = ["## Certified robustness", "", self._certified_note(), ""]
        lines += [f"- {s}" for s in [*self.certified.sentences, *self._certified_check()]]
        return [*lines, ""]

    def html(self) -> str:
        from poisonlab import plots

        worst = worst_levels(self.summary, self.metric)
        metric = self.metric
        sections = [
            (f"{metric} against poison level", plots.accuracy_plot(self.summary, metric)),
            (f"{metric} by model and poison level", plots.heatmap_plot(self.summary, metric)),
            (f"{metric} per defence", plots.defence_plot(self.summary, metric)),
            ("Recovery per defence", plots.defence_plot(self.summary, "recovery")),
            ("Detection against the true poisoned rows", plots.detection_plot(self.detection)),
            (
                "Confusion matrices at the clean and the worst level",
                plots.confusion_plot(self.confusion, worst) if not self.confusion.empty else None,
            ),
        ]
        esc = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            "<title>poisonlab report</title>",
            f"<style>{_STYLE}</style></head><body>",
            "<h1>Data-poisoning report</h1>",
            failed_levels_html(self.provenance),
            f"<p>{esc(self._intro())}</p>",
            *(f"<p class='warning'>{esc(note)}</p>" for note in self._data_notes()),
            *(f"<p class='note'>{esc(note)}</p>" for note in self._level_notes()),
            "<h2>Findings</h2><ul class='findings'>",
            *(f"<li>{esc(s)}</li>" for s in [*self.findings, *self.unfitted]),
            "</ul>",
            "<h2>Breakdown point</h2>",
            f"<p class='note'>{esc(self._breakdown_note())}</p>",
            _html_table(breakdown_table(self.points, self.breakdown_ci, metric)).replace(
                "<table", "<table id='breakdown'", 1
            ),
            *self._certified_html(),
        ]
        if self.adaptive is not None and not self.adaptive.gates.empty:
            from poisonlab.adaptive_report import NOTE

            parts += [
                "<h2>Naive versus adaptive attackers</h2>",
                f"<p class='note'>{esc(NOTE)}</p>",
                _html_table(self.adaptive.gates).replace("<table", "<table id='adaptive'", 1),
                _html_table(self.adaptive.worst).replace("<table", "<table id='worst'", 1),
            ]
        if not self.defences.empty:
            parts += [
                "<h2>What each defence costs and wins back</h2>",
                f"<p class='note'>{esc(self._defence_note())}</p>",
                _html_table(self.defences).replace("<table", "<table id='defences'", 1),
            ]
        for title, image in sections:
            if image:
                parts += [f"<h2>{esc(title)}</h2>", image]
            if title == sections[0][0]:
                parts.append(_html_table(accuracy_table(self.summary, metric)))
            if title.startswith("Detection"):
                parts.append(_html_table(detection_table(self.detection)))
                if not self.gate.empty:
                    parts += [
                        "<h2>Validation gate</h2>",
                        "<p class='note'>Pass or fail per level and attack: the gate's "
                        "detector flag rate and the shift in class proportions against "
                        "their configured limits (validate.gate).</p>",
                        _html_table(self._gate_view()).replace("<table", "<table id='gate'", 1),
                    ]
        if self.quantity is not None:
            from poisonlab.plots import quantity_plot

            q = self.config["quantity"]
            parts += [
                "<h2>Data quality versus quantity</h2>",
                f"<p class='note'>Training sets of growing size from {esc(q['source'])}, "
                f"poisoned with {esc(q['attack'])} at each level; {q['trials']} trials.</p>",
                "<ul class='findings'>",
                *(f"<li>{esc(s)}</li>" for s in self.quantity_answers),
                "</ul>",
                quantity_plot(self.quantity) or "",
            ]
        parts += [
            "<h2>Provenance</h2><p>",
            "<br>".join(f"{name} <code>{value}</code>" for name, value in self._hashes()),
            "</p>",
            hashes_html(self.provenance),
            columns_html(self.provenance),
            "<details><summary>Config</summary>",
            f"<pre>{esc(json.dumps(self.config, indent=2, sort_keys=True))}</pre></details>",
            "</body></html>",
        ]
        return "\n".join(parts)

    def markdown(self) -> str:
        lines = ["# Data-poisoning report", "", *failed_levels_markdown(self.provenance)]
        lines += [self._intro(), ""]
        lines += [f"- {note}" for note in [*self._data_notes(), *self._level_notes()]]
        lines += ["", "## Findings", ""]
        lines += [f"- {s}" for s in [*self.findings, *self.unfitted]]
        lines += ["", "## Breakdown point", "", self._breakdown_note(), ""]
        lines += [markdown_table(breakdown_table(self.points, self.breakdown_ci, self.metric)), ""]
        lines += self._certified_markdown()
        if self.adaptive is not None and not self.adaptive.gates.empty:
            from poisonlab.adaptive_report import NOTE

            lines += ["## Naive versus adaptive attackers", "", NOTE, ""]
            lines += [markdown_table(self.adaptive.gates), "", "Worst case per model:", ""]
            lines += [markdown_table(self.adaptive.worst), ""]
        if not self.defences.empty:
            lines += ["## What each defence costs and wins back", "", self._defence_note(), ""]
            lines += [markdown_table(self.defences), ""]
        lines += [
            f"## Mean {self.metric} (no defence)",
            "",
            markdown_table(accuracy_table(self.summary, self.metric)),
        ]
        if not self.gate.empty:
            lines += ["", "## Validation gate", "", markdown_table(self._gate_view())]
        if self.quantity_answers:
            lines += ["", "## Data quality versus quantity", ""]
            lines += [f"- {s}" for s in self.quantity_answers]
        lines += ["", "## Provenance", ""]
        lines += [f"- {name}: `{value}`" for name, value in self._hashes()]
        lines += [f"- {line}" for line in columns_lines(self.provenance)]
        return "\n".join(lines) + "\n"


def render_html(
    summary: pd.DataFrame, detection: pd.DataFrame, config: dict[str, Any], provenance: dict
) -> str:
    """report.html from the summary tables alone (no confusion matrices, no quantity)."""
    return Report(summary, detection, config, provenance).html()


def write_results(
    records: pd.DataFrame,
    config: dict[str, Any],
    provenance: dict,
    results_dir: str | Path,
    run_key: str,
    confusion: pd.DataFrame | None = None,
    quantity_records: pd.DataFrame | None = None,
    certified_records: pd.DataFrame | None = None,
) -> None:
    """Write summary.csv, detection.csv, gate.csv, report.html, report.md and manifest.json.

    ``confusion`` (from ``experiment.confusion_level``) adds confusion matrices;
    non-empty ``quantity_records`` add quantity.csv and its section; non-empty
    ``certified_records`` (``certify.evaluation.certified_records``) add certified.csv
    and the certified section.
    """
    results_dir = Path(results_dir)
    metric, reason = headline(config, provenance)
    summary, detection = summarize(records, config, metric)
    write_csv(summary, results_dir / SUMMARY_FILE)
    write_csv(detection, results_dir / DETECTION_FILE)
    gate = gate_table(records, config)
    write_csv(gate, results_dir / GATE_FILE)
    quantity = None
    if quantity_records is not None and not quantity_records.empty:
        quantity = summarize_quantity(quantity_records, config)
        write_csv(quantity, results_dir / QUANTITY_FILE)
    certified = None
    if certified_records is not None and not certified_records.empty:
        from poisonlab.certify.evaluation import CERTIFIED_FILE, certified_results

        certified = certified_results(certified_records, records, summary, config)
        write_csv(certified.table, results_dir / CERTIFIED_FILE)
    drop = config["report"]["breakdown_drop"]
    model_records = records[records["detector"] == ""]
    losses = paired_losses(model_records, metric)
    intervals = breakdown_intervals(losses, drop)
    from poisonlab.adaptive_report import adaptive_results

    adaptive = adaptive_results(records, summary, detection, config, metric)
    report = Report(
        summary,
        detection,
        config,
        provenance,
        confusion,
        quantity,
        gate,
        certified,
        intervals,
        losses,
        adaptive,
    )
    (results_dir / REPORT_FILE).write_text(report.html(), encoding="utf-8")
    (results_dir / MARKDOWN_FILE).write_text(report.markdown(), encoding="utf-8")
    manifest = {
        "run_key": run_key,
        "config": config,
        "config_sha256": config_hash(config),
        "provenance": provenance,
        # What the findings, tables, printed table and MLflow headline metrics use.
        "headline_metric": {"metric": metric, "reason": reason},
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


def failed_levels_markdown(provenance: dict) -> list[str]:
    """The lines of ``failed_levels_html``'s warning in Markdown (none if no level failed)."""
    failed = provenance.get("failed_levels") or []
    if not failed:
        return []
    return [
        f"**{len(failed)} poison level(s) failed**; their rows are missing from every table "
        "below, the other levels are complete.",
        "",
        *(f"- level {f['level']:g}: {f['step']} failed: `{f['error']}`" for f in failed),
        "",
    ]


def columns_lines(provenance: dict) -> list[str]:
    """What user code and built-ins saw: the table's own columns with their dtypes (the
    raw view) and the encoded feature names (the built-ins' view)."""
    raw = provenance.get("raw_columns")
    if not raw:
        return []
    columns = ", ".join(f"{c['name']} ({c['dtype']})" for c in raw)
    label = provenance.get("label_column")
    return [
        f"raw columns (your models and gates): {columns}" + (f"; label {label}" if label else ""),
        f"encoded features (built-ins): {', '.join(provenance.get('feature_names', []))}",
    ]


def columns_html(provenance: dict) -> str:
    """``columns_lines`` as a collapsed section of the report."""
    lines = columns_lines(provenance)
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<details><summary>Columns: raw and encoded</summary><ul>{items}</ul></details>"


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
