"""How every number of the report is written: values with intervals, Markdown tables, labels.

One convention for every table (and the results README): ``value [low, high]`` with the interval
method stated once per table (:func:`interval_line`); no interval from fewer than 3 units (the
value, the per-unit values and "too few units for an interval" instead); missing numbers as ``–``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from sclinbench.evaluate.intervals import MIN_UNITS, TOO_FEW
from sclinbench.workflow.io import atomic_path

#: Classification scores in display order; other metrics (counts such as ``n_test_cells``) are
#: in the TSV tables but left out of the Markdown views.
SCORE_METRICS = ("macro_f1", "novelty_auroc", "balanced_accuracy", "accuracy", "macro_precision",
                 "macro_recall", "auroc_ovr", "macro_f1_all_target_labels", "known_accuracy")
METRIC_LABELS = {
    "macro_f1": "macro F1", "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy",
    "macro_precision": "macro precision", "macro_recall": "macro recall",
    "auroc_ovr": "AUROC (macro one-vs-rest)",
    "macro_f1_all_target_labels": "macro F1 over all target labels",
    "novelty_auroc": "novelty AUROC", "known_accuracy": "accuracy on known types",
}

def format_ci(mean: float, lo: float, hi: float, n: int | None = None, digits: int = 3,
              unit_values: str = "") -> str:
    """``"0.812 [0.801, 0.823]"``; without an interval (fewer than 3 units) the value, the per-unit
    values and ``"too few units for an interval"``; missing reads ``"–"``."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if n is not None and np.isfinite(n) and int(n) < MIN_UNITS or not (np.isfinite(lo) and np.isfinite(hi)):
        detail = f"{unit_values}; " if unit_values else ""
        count = f"n={int(n)}; " if n is not None and np.isfinite(n) else ""
        return f"{mean:.{digits}f} ({detail}{count}{TOO_FEW})"
    if hi - lo < 0.5 * 10 ** -digits:  # e.g. 8 of 8 donors right: a [1.000, 1.000] interval would read as certainty
        count = f" of the {int(n)} units" if n is not None and np.isfinite(n) else ""
        return f"{mean:.{digits}f} (every resample{count} gives {lo:.{digits}f}: no spread to show)"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def format_row(r, digits: int = 3) -> str:
    """A summary row as text: value [interval], and the spread over repeats of a shuffled control."""
    get = r.get if isinstance(r, Mapping) else (lambda k, d=None: getattr(r, k, d))
    value = get("value", get("mean"))
    n = get("n_units", get("n"))
    text = format_ci(value, get("ci_low"), get("ci_high"), n, digits, get("unit_values", "") or "")
    reps = get("n_repeats", 1)
    if reps is not None and np.isfinite(reps) and reps > 1 and np.isfinite(get("repeat_min", np.nan)):
        text += (f"; {int(reps)} repeats {get('repeat_min'):.{digits}f}–{get('repeat_max'):.{digits}f} "
                 f"(sd {get('repeat_sd'):.{digits}f})")
    return text


def to_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (floats to ``digits`` decimals, NaN as ``–``)."""
    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "–" if not np.isfinite(v) else f"{v:.{digits}f}"
        if v is None or v is pd.NA:
            return "–"
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_text(text: str, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def interval_line(level: float = 0.95, n_boot: int | None = None) -> str:
    """The one line every table states about its intervals."""
    draws = f", {n_boot} draws" if n_boot else ""
    pct = int(round(level * 100))
    return (f"Intervals: means over a few units (held-out donors or folds of a donor split, species pairs, "
            f"held-out types) have a {pct}% Student-t interval on the logit scale over the per-unit scores "
            "(docs/statistics.md: its coverage); pooled figures a percentile bootstrap "
            f"(seeded{draws}) over the units the split holds out, named per row (the metric recomputed from "
            "the resampled units' pooled out-of-fold predictions; cells, or donors when there are >= 3, of a "
            "stratified cross-validation; the same for repeated hold-outs, each distinct unit drawn once and "
            "the score the mean over the splits). A shuffled control's interval includes the variance over its "
            "label permutations. Fewer than 3 units: the per-unit values and 'too few units for an interval'.")


def score_label(metric: str, kind: str, group: str = "") -> str:
    """What a number is: the metric and, for cross-species rows, which pairs and labels it covers."""
    label = METRIC_LABELS.get(metric, metric)
    if kind != "cross_species":
        return label
    if metric == "macro_f1_all_target_labels":
        labels = ""
    elif metric in ("macro_f1", "macro_precision", "macro_recall", "accuracy", "balanced_accuracy", "auroc_ovr"):
        labels = ", shared labels"
    else:
        labels = ""
    scope = {"": "transfer pairs, excl. same-species", "same-species": "same-species cross-validation",
             "incl. same-species": "all pairs incl. same-species (paper's average)"}.get(
        group, "per species pair" if "->" in group else group)
    return f"{label} ({scope}{labels})"

METHOD_NOTE = (
    "Scores are computed from the pooled out-of-fold predictions (every test cell once; a fold whose "
    "test set holds one class has no macro F1 of its own). Cross-species tasks: transfer pairs train "
    "on every cell of the training species and are scored over the labels both species share "
    "(`macro_f1_all_target_labels` counts every target label); the same-species cross-validation is "
    "reported apart. Controls: majority class (constant scores, AUROC 0.5 by definition) and shuffled "
    "training labels (a new permutation per fold, repeated; mean over repeats, their range and sd beside). "
    "Donor-held-out splits: the score is the mean over the held-out units -- donors, or, for a "
    "donor-level label such as disease state, folds that each hold out donors of every class -- with the "
    "figure of the pooled predictions beside it ('pooled over donors'). "
    "'embedding' pipelines classify a user-supplied foundation-model embedding with a linear model "
    "fitted here (computed here, not published numbers)."
)
