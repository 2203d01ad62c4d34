"""What the controls say, written from the numbers: chance, novelty above the shuffled control,
and the per-unit view of donor splits (``results/README.md``).

Every sentence here is generated from ``summary.tsv`` / ``paired.tsv``: a control is said to be
below (or above) chance only when its interval lies below (above) the chance level, never by rule.
Chance: AUROC and novelty AUROC 0.5; balanced accuracy 0.5 for two-class tasks (the score stage's
``n_classes`` count; with more classes, or without the count, no balanced-accuracy statement).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from sclinbench.report.markdown import METRIC_LABELS, format_ci, format_row, to_markdown
from sclinbench.report.selection import controls_of, paired_difference, tasks_of

#: Metrics whose chance level is known, and how it is found.
CHANCE_METRICS = ("balanced_accuracy", "auroc_ovr", "novelty_auroc")
AT_CHANCE, BELOW, ABOVE, NO_INTERVAL = "contains chance", "below chance", "above chance", "no interval"


def chance_level(summary: pd.DataFrame, dataset: str, task: str, pipeline: str, metric: str) -> float:
    """0.5 for AUROCs and for the balanced accuracy of two-class tasks (``n_classes`` 2); NaN for
    the balanced accuracy of more classes, whose chance level under a mean over held-out units
    depends on the classes each unit holds (a donor without some types), so it is not stated."""
    if metric != "balanced_accuracy":
        return 0.5
    k = summary[(summary["dataset"] == dataset) & (summary["task"] == task) & (summary["pipeline"] == pipeline)
                & (summary["metric"] == "n_classes") & (summary["group"] == "")]["value"]
    return 0.5 if len(k) and float(k.iloc[0]) == 2 else float("nan")


def control_chance(summary: pd.DataFrame) -> pd.DataFrame:
    """Every control x task x chance metric at the task's headline group: value, interval, chance,
    and ``verdict`` (:data:`AT_CHANCE`, :data:`BELOW`, :data:`ABOVE`, :data:`NO_INTERVAL`)."""
    rows = []
    controls = set(controls_of(summary))
    for t in tasks_of(summary).itertuples(index=False):
        here = summary[(summary["dataset"] == t.dataset) & (summary["task"] == t.task) & (summary["group"] == t.group)
                       & summary["pipeline"].isin(controls) & summary["metric"].isin(CHANCE_METRICS)]
        for r in here.itertuples(index=False):
            chance = chance_level(summary, t.dataset, t.task, r.pipeline, r.metric)
            if not np.isfinite(chance) or not np.isfinite(r.value):
                continue
            lo, hi = float(r.ci_low), float(r.ci_high)
            if not (np.isfinite(lo) and np.isfinite(hi)):
                verdict = NO_INTERVAL
            elif hi < chance - 1e-12:
                verdict = BELOW
            elif lo > chance + 1e-12:
                verdict = ABOVE
            else:
                verdict = AT_CHANCE
            rows.append({"dataset": t.dataset, "task": t.task, "split": t.split_kind, "control": r.pipeline,
                         "metric": r.metric, "value": float(r.value), "ci_low": lo, "ci_high": hi,
                         "n_units": r.n_units, "unit_values": r.unit_values, "chance": chance, "verdict": verdict})
    return pd.DataFrame(rows, columns=["dataset", "task", "split", "control", "metric", "value", "ci_low", "ci_high",
                                       "n_units", "unit_values", "chance", "verdict"])


def controls_paragraph(summary: pd.DataFrame) -> str:
    """One paragraph on the controls against chance, written from their numbers."""
    c = control_chance(summary)
    if c.empty:
        return "No control was scored against a known chance level in this run.\n"
    off = c[c["verdict"].isin([BELOW, ABOVE])]
    untested = c[c["verdict"] == NO_INTERVAL]
    n_at = int((c["verdict"] == AT_CHANCE).sum())
    text = [f"**Controls against chance** (AUROC and novelty AUROC 0.5; balanced accuracy of two-class tasks "
            f"0.5): {n_at} of {len(c)} control "
            "scores have an interval that contains chance."]
    if len(off):
        text.append(" Outside it: " + "; ".join(
            f"{r.dataset} / {r.task} ({r.split}): {r.control} {METRIC_LABELS.get(r.metric, r.metric)} "
            f"{format_ci(r.value, r.ci_low, r.ci_high)} is {r.verdict} ({r.chance:.3f})"
            for r in off.itertuples(index=False))
            + ". A control away from chance makes its task's comparison with the control easy (below) or "
              "hard (above): read those tasks with that in mind.")
    else:
        text.append(" No control is below or above chance beyond its interval.")
    if len(untested):
        text.append(" Without an interval (fewer than 3 units, so not tested against chance): " + "; ".join(
            f"{r.dataset} / {r.task}: {r.control} {METRIC_LABELS.get(r.metric, r.metric)} {r.value:.3f}"
            for r in untested.itertuples(index=False)) + ".")
    return "".join(text) + "\n"


def novelty_over_control(summary: pd.DataFrame, paired: pd.DataFrame) -> pd.DataFrame:
    """Per novel-type task and method: its novelty AUROC, the best control's (the shuffled-label
    control scores plain distance from the training cells) and the paired difference with its
    interval."""
    rows = []
    for t in tasks_of(summary).itertuples(index=False):
        if t.kind != "novel_type":
            continue
        here = summary[(summary["dataset"] == t.dataset) & (summary["task"] == t.task) & (summary["group"] == t.group)
                       & (summary["metric"] == "novelty_auroc") & summary["value"].notna()]
        ctrl = here[here["role"] == "control"].sort_values(["value", "pipeline"], ascending=[False, True]).head(1)
        if ctrl.empty:
            continue
        c = ctrl.iloc[0]
        for r in here[here["role"] == "method"].sort_values(["value", "pipeline"], ascending=[False, True]).itertuples(index=False):
            d = paired_difference(paired, t.dataset, t.task, t.group, "novelty_auroc", r.pipeline, c["pipeline"])
            lo, hi = (d["ci_low"], d["ci_high"]) if d else (np.nan, np.nan)
            verdict = ("above the control" if lo > 0 else "not above the control") if np.isfinite(lo) else NO_INTERVAL
            rows.append({"dataset": t.dataset, "task": t.task, "pipeline": r.pipeline,
                         "novelty AUROC": format_row(r._asdict()), "control": c["pipeline"],
                         "control novelty AUROC": format_row(c.to_dict()),
                         "above control": format_ci(d["difference"], lo, hi) if d else "–", "verdict": verdict})
    return pd.DataFrame(rows, columns=["dataset", "task", "pipeline", "novelty AUROC", "control",
                                       "control novelty AUROC", "above control", "verdict"])


def per_unit_view(summary: pd.DataFrame, pipelines: Iterable[str] | None = None) -> str:
    """Markdown: for each donor-split task, the headline metric per held-out unit (donor, or fold of
    donors of every class) of each pipeline, with the mean [interval] and the pooled figure beside."""
    from sclinbench.evaluate.intervals import POOLED_GROUP

    parts = []
    for t in tasks_of(summary).itertuples(index=False):
        s = summary[(summary["dataset"] == t.dataset) & (summary["task"] == t.task) & (summary["metric"] == t.metric)]
        head, pooled = s[s["group"] == t.group], s[s["group"] == POOLED_GROUP]
        if pooled.empty or head.empty:
            continue
        keep = head if pipelines is None else head[head["pipeline"].isin(set(pipelines)) | (head["role"] == "control")]
        table = []
        for r in keep.sort_values(["role", "value"], ascending=[False, False]).itertuples(index=False):
            p = pooled[pooled["pipeline"] == r.pipeline]
            row = {"pipeline": r.pipeline, f"mean over {r.unit}s": format_row(r._asdict()),
                   "pooled over donors (beside)": format_row(p.iloc[0].to_dict()) if len(p) else "–"}
            for item in str(r.unit_values or "").split("; "):
                if ": " in item:
                    name, value = item.rsplit(": ", 1)
                    row[name] = value
            table.append(row)
        unit = head["unit"].iloc[0]
        parts.append(f"\n### {t.dataset} — {t.task} ({t.split_kind}): {METRIC_LABELS.get(t.metric, t.metric)} "
                     f"per held-out {unit}\n")
        parts.append(to_markdown(pd.DataFrame(table)))
    return "\n".join(parts)
