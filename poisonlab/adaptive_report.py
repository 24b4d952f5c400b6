"""The report's answer against both attackers: the one who does not know the gate and
the one who does.

- ``gate_table``: per gate and level, the share of poison each attack's rows the
  gate catches at its calibrated threshold (recall, ``validate.fpr``), beside the
  headline metric of the model trained on what the gate let through, with no
  defence, and clean. Attacks are marked naive or adaptive (``minmax`` and every
  gate-aware attack, ``attacks.adaptive``).
- ``worst_case``: the verdict per model is the worst case over the attacks run
  (the attacker picks the attack): at each level the attack whose undefended
  mean is lowest, with its interval.
- ``defence_harm``: a sentence wherever training on a gate's kept rows makes a
  model worse than no defence, judged by the paired (same trial) difference's
  95% interval lying below zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from poisonlab.experiment import NO_DEFENSE
from poisonlab.findings import format_level

ADAPTIVE_ATTACKS = ("minmax",)


def attack_kind(name: str, config: dict[str, Any]) -> str:
    """``adaptive`` for ``minmax`` and gate-aware attacks, else ``naive``."""
    from poisonlab.attacks.adaptive import attack_kind as section_kind

    if name in ADAPTIVE_ATTACKS or section_kind(name, config["poison"].get(name)) is not None:
        return "adaptive"
    return "naive"


def _cell(mean: float, low: float, high: float) -> str:
    if mean != mean:
        return ""
    return f"{mean:.3f}" if low != low else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def gate_table(
    summary: pd.DataFrame, detection: pd.DataFrame, config: dict[str, Any], metric: str
) -> pd.DataFrame:
    """One row per gate, poison level (above 0), attack and model: the poison caught and
    the headline metric defended, undefended and clean."""
    recall = detection[detection["metric"] == "recall"]
    scores = summary[summary["metric"] == metric]
    clean = scores[(scores["poison_level"] == 0.0) & (scores["defense"] == NO_DEFENSE)]
    rows = []
    for _, r in recall[recall["poison_level"] > 0].iterrows():
        level, attack, gate = r["poison_level"], r["attack"], r["detector"]
        here = scores[(scores["poison_level"] == level) & (scores["attack"] == attack)]
        for model in config["train"]["models"]:
            defended = here[(here["model"] == model) & (here["defense"] == gate)]
            undefended = here[(here["model"] == model) & (here["defense"] == NO_DEFENSE)]
            base = clean[(clean["attack"] == attack) & (clean["model"] == model)]
            if defended.empty or undefended.empty:
                continue
            d, u = defended.iloc[0], undefended.iloc[0]
            rows.append(
                {
                    "gate": gate,
                    "poison_level": level,
                    "attack": attack,
                    "attacker": attack_kind(attack, config),
                    "caught": _cell(r["mean"], r["ci_low"], r["ci_high"]),
                    "model": model,
                    f"{metric} (gate)": _cell(d["mean"], d["ci_low"], d["ci_high"]),
                    f"{metric} (none)": _cell(u["mean"], u["ci_low"], u["ci_high"]),
                    f"{metric} (clean)": (
                        _cell(*base.iloc[0][["mean", "ci_low", "ci_high"]]) if len(base) else ""
                    ),
                }
            )
    return pd.DataFrame(rows)


def worst_case(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per model and poison level above 0: the attack with the lowest undefended mean
    ``metric`` (the attacker's pick), its mean and 95% interval."""
    scores = summary[
        (summary["metric"] == metric)
        & (summary["defense"] == NO_DEFENSE)
        & (summary["poison_level"] > 0)
    ]
    rows = []
    for (model, level), frame in scores.groupby(["model", "poison_level"], sort=False):
        worst = frame.loc[frame["mean"].idxmin()]
        rows.append(
            {
                "model": model,
                "poison_level": level,
                "worst_attack": worst["attack"],
                metric: _cell(worst["mean"], worst["ci_low"], worst["ci_high"]),
                "attacks_run": len(frame),
            }
        )
    return pd.DataFrame(rows)


def defence_harm(records: pd.DataFrame, metric: str) -> list[str]:
    """Sentences where a defence lowers ``metric`` against no defence: the paired
    (per trial) difference's 95% Student-t interval lies below zero."""
    from poisonlab.stats import mean_ci

    scores = records[(records["metric"] == metric) & (records["detector"] == "")]
    scores = scores[scores["poison_level"] > 0]
    keys = ["poison_level", "attack", "model", "trial"]
    none = scores[scores["defense"] == NO_DEFENSE][[*keys, "value"]]
    defended = scores[scores["defense"] != NO_DEFENSE].merge(
        none.rename(columns={"value": "none"}), on=keys
    )
    sentences = []
    groups = defended.groupby(["poison_level", "attack", "model", "defense"], sort=False)
    for (level, attack, model, defense), frame in groups:
        mean, low, high, n = mean_ci((frame["value"] - frame["none"]).to_numpy())
        # Tied trials measure no spread: a zero-width interval is no finding.
        if n >= 2 and low < high < 0:
            sentences.append(
                f"At {format_level(level)} {attack}, the {defense} defence lowers {model}'s "
                f"{metric} by {-mean:.3f} (95% CI {-high:.3f} to {-low:.3f}, {n} paired "
                "trials) against training on every row: the rows it removed helped more "
                "than the poison it removed hurt."
            )
    return sentences


@dataclass
class AdaptiveResults:
    """The naive-versus-adaptive table, the worst-case verdict and the harm sentences."""

    gates: pd.DataFrame
    worst: pd.DataFrame
    harm: list[str] = field(default_factory=list)

    def verdicts(self, metric: str) -> list[str]:
        """One sentence per model: its worst case at the highest level run."""
        sentences = []
        if self.worst.empty:  # no level above 0 stands (every poisoned level failed)
            return sentences
        for model, frame in self.worst.groupby("model", sort=False):
            top = frame.loc[frame["poison_level"].idxmax()]
            sentences.append(
                f"Worst case for {model} at {format_level(top['poison_level'])} poison, over "
                f"the {top['attacks_run']} attacks run: {top['worst_attack']}, {metric} "
                f"{top[metric]}."
            )
        return sentences


def adaptive_results(
    records: pd.DataFrame,
    summary: pd.DataFrame,
    detection: pd.DataFrame,
    config: dict[str, Any],
    metric: str,
) -> AdaptiveResults:
    return AdaptiveResults(
        gate_table(summary, detection, config, metric),
        worst_case(summary, metric),
        defence_harm(records, metric),
    )


NOTE = (
    "Each gate's share of every attack's poison caught at its calibrated threshold "
    "(validate.fpr of the trial's clean training rows flagged), with the headline metric of "
    "the model trained on what the gate let through, with no defence, and clean (level 0). "
    "Adaptive attackers know the gate: minmax places rows inside what a sanitizer accepts; a "
    "gate-aware attack moves the rows the named gates flag. A gate is only as good as its "
    "row against the adaptive attacker."
)
