"""Nested selection in the report: which candidate each outer fold chose, how often each won,
and the nested pipeline's score beside the best of its candidates (chosen on the evaluation
folds, so optimistic) -- read from the evaluate stage's ``.selection.tsv`` tables and the summary."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from sclinbench.evaluate.nested import SELECTION_COLUMNS, win_counts
from sclinbench.report.selection import headline_rows
from sclinbench.workflow.contracts import check_summary

#: The nested pipeline may trail the best single candidate by this much (macro F1) and still be
#: "as good": the price of choosing honestly.
TOLERANCE = 0.005


def read_selection(paths: Iterable, datasets: Iterable[str], tasks: Iterable[str]) -> pd.DataFrame:
    """The selection tables of a run, labelled by dataset and task."""
    frames = [pd.read_csv(p, sep="\t").assign(dataset=d, task=t) for p, d, t in zip(paths, datasets, tasks)]
    cols = ["dataset", "task", *SELECTION_COLUMNS]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)[cols]
    out["chosen"] = out["chosen"].astype(str).str.lower() == "true"
    return out


def nested_vs_candidates(summary: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x task x nested pipeline: its headline score and the best of its candidates
    (each scored on its own; the best picked on the evaluation folds), their difference and
    whether the nested pipeline is within :data:`TOLERANCE` of it."""
    cols = ["dataset", "task", "pipeline", "metric", "nested", "best_candidate", "best_candidate_value",
            "difference", "within_tolerance", "inner_splits", "best_control", "best_control_value"]
    if selection.empty:
        return pd.DataFrame(columns=cols)
    s = headline_rows(check_summary(summary))
    rows = []
    for (dataset, task, pipeline), sel in selection.groupby(["dataset", "task", "pipeline"], sort=True):
        here = s[(s["dataset"] == dataset) & (s["task"] == task)]
        mine = here.loc[here["pipeline"] == pipeline, "value"]
        cands = here[here["pipeline"].isin(set(sel["candidate"])) & here["value"].notna()]
        cands = cands.sort_values(["value", "pipeline"], ascending=[False, True])
        value = float(mine.iloc[0]) if len(mine) else np.nan
        best = cands.iloc[0] if len(cands) else None
        controls = here[(here["role"] == "control") & here["value"].notna()].sort_values(
            ["value", "pipeline"], ascending=[False, True])
        bval = float(best["value"]) if best is not None else np.nan
        diff = value - bval
        rows.append({"dataset": dataset, "task": task, "pipeline": pipeline,
                     "metric": here["metric"].iloc[0] if len(here) else "",
                     "nested": value, "best_candidate": "" if best is None else best["pipeline"],
                     "best_candidate_value": bval, "difference": diff,
                     "within_tolerance": bool(np.isfinite(diff) and diff >= -TOLERANCE),
                     "inner_splits": ", ".join(sorted(set(sel.loc[sel["chosen"], "inner_split"].astype(str)))),
                     "best_control": controls["pipeline"].iloc[0] if len(controls) else "",
                     "best_control_value": float(controls["value"].iloc[0]) if len(controls) else np.nan})
    return pd.DataFrame(rows, columns=cols)


def selection_markdown(selection: pd.DataFrame, summary: pd.DataFrame) -> str:
    """``tables/nested_selection.md``: per outer fold the winner with its inner score, how often
    each candidate won, and the nested score beside the best single candidate."""
    from sclinbench.report.markdown import to_markdown

    lines = ["# Nested selection: the candidate each outer fold chose\n",
             "In every outer fold the candidates were scored by an inner split of that fold's training "
             "cells only (`inner_split`: donors, stratified cells or species; `inner_score`: the pooled "
             "inner out-of-fold score); the winner was refitted on the whole training set and predicted "
             "the fold's test cells. No test cell took part in the choice, so the nested pipeline's "
             "score is honest. The best single candidate below was chosen on the evaluation folds "
             "(optimistic).\n"]
    if selection.empty:
        return "\n".join(lines + ["No nested pipeline in this run.\n"])
    chosen = selection[selection["chosen"]][["dataset", "task", "pipeline", "fold", "group", "inner_split",
                                             "inner_folds", "n_inner_units", "candidate", "metric", "inner_score"]]
    lines += ["## Winner per outer fold\n",
              to_markdown(chosen.assign(inner_score=chosen["inner_score"].map(lambda v: f"{v:.3f}")))]
    wins = win_counts(selection)
    lines += ["\n## How often each candidate won\n",
              to_markdown(wins.assign(mean_inner_score=wins["mean_inner_score"].map(lambda v: f"{v:.3f}")))]
    comp = nested_vs_candidates(summary, selection)
    lines += ["\n## Nested score beside the best single candidate\n",
              f"`within_tolerance`: the nested pipeline is at most {TOLERANCE} below the best candidate.\n",
              to_markdown(comp.assign(**{c: comp[c].map(lambda v: f"{v:.3f}") for c in
                                         ("nested", "best_candidate_value", "difference", "best_control_value")}))]
    return "\n".join(lines) + "\n"


def readme_lines(selection: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """The lines of ``results/README.md`` on nested selection: how often each candidate won."""
    if selection.empty:
        return []
    wins = win_counts(selection)
    comp = nested_vs_candidates(summary, selection).set_index(["dataset", "task", "pipeline"])
    out = ["\n## Nested selection (chosen inside the training data: honest)\n"]
    for (dataset, task, pipeline), w in wins.groupby(["dataset", "task", "pipeline"], sort=True):
        n = int(w["n_folds"].iloc[0])
        won = ", ".join(f"{r.candidate} {int(r.folds_won)} of {n}" for r in w.itertuples(index=False))
        c = comp.loc[(dataset, task, pipeline)]
        versus = (f"; scores {c['nested']:.3f} beside the best single candidate {c['best_candidate']} "
                  f"{c['best_candidate_value']:.3f} ({OPT_SHORT})" if np.isfinite(c["best_candidate_value"]) else "")
        out.append(f"- {dataset} / {task}, {pipeline}: won the outer folds {won}{versus}{shortfall(c, split_kind(summary, dataset, task))}.")
    out.append("\nPer fold, with each winner's inner score: `tables/nested_selection.md`.\n")
    return out


OPT_SHORT = "chosen on the evaluation folds"
#: Outer splits that hold out donors (their inner split should too).
_DONOR_SPLITS = ("donor", "leave_one_donor_out", "donor_pseudobulk")


def split_kind(summary: pd.DataFrame, dataset: str, task: str) -> str:
    """The outer split kind of a task in the summary ('' when absent)."""
    rows = summary.loc[(summary["dataset"] == dataset) & (summary["task"] == task), "split_kind"]
    return str(rows.iloc[0]) if len(rows) else ""


def shortfall(c: pd.Series, outer_split: str) -> str:
    """When the nested pipeline trails the best single candidate by more than :data:`TOLERANCE`:
    by how much, and the reasons the numbers show (empty otherwise). The reasons are read from the
    row (``nested_vs_candidates``): inner folds of cells under a donor split (fewer than 3 training
    donors per outer fold), and a best candidate no better than the best control (no signal to choose by)."""
    if c["within_tolerance"] or not np.isfinite(c["difference"]):
        return ""
    why = []
    if outer_split in _DONOR_SPLITS and "stratified" in str(c["inner_splits"]).split(", "):
        why.append("its inner folds held out cells, not donors (fewer than 3 training donors in an outer fold), "
                   "so it chose by how well cells of the training donors separate, which need not carry over to a "
                   "new donor")
    if np.isfinite(c["best_control_value"]) and c["best_candidate_value"] <= c["best_control_value"] + TOLERANCE:
        why.append(f"the best single candidate is no better than the control {c['best_control']} "
                   f"({c['best_control_value']:.3f}), so no candidate carries a signal to choose by")
    text = f"; {-c['difference']:.3f} below it, more than the {TOLERANCE} tolerance"
    return text + (": " + "; and ".join(why) if why else "")
