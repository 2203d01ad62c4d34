"""The tables of a run (``results/tables/*.tsv`` + ``.md``), from the score stage's tables.

:func:`write_tables` writes every stem of :data:`sclinbench.workflow.contracts.TABLES` and one
``task~<task>`` table per task: the headline (declared pipelines beside the best linear pipeline of
the grid, the controls and "signal over control"), every summary, the best of the grid,
cross-species matrices, averages and unseen labels, the published comparison and the paired
differences. Every Markdown file states its interval method in one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from sclinbench.evaluate.intervals import POOLED_GROUP
from sclinbench.report.markdown import (
    METHOD_NOTE,
    METRIC_LABELS,
    SCORE_METRICS,
    format_ci,
    format_row,
    interval_line,
    score_label,
    to_markdown,
    write_text,
)
from sclinbench.report.published import (
    PUBLISHED,
    REFERENCE_COLUMNS,
    published_table,
    published_wide,
)
from sclinbench.report.selection import (
    NO_SIGNAL,
    OPTIMISTIC,
    SCOPE_LABELS,
    SIGNAL,
    UNTESTED,
    best_of_grid,
    controls_of,
    cross_species_average,
    cross_species_matrix,
    cross_species_pairs,
    paired_difference,
    tasks_of,
)
from sclinbench.workflow.contracts import DEFAULT_DECLARED, TABLES, check_summary, task_table_stem
from sclinbench.workflow.io import write_table


def _metric_wide(rows: pd.DataFrame, metrics: Iterable[str] = SCORE_METRICS, kind: str = "",
                 group: str = "") -> pd.DataFrame:
    """Pipelines as rows, one "value [CI]" column per score metric present."""
    present = [m for m in metrics if m in set(rows["metric"])]
    s = rows[rows["metric"].isin(present)]
    base = ["pipeline", "role", "family", "representation", "model"]
    if s.empty:
        return pd.DataFrame(columns=base)
    s = s.assign(text=[format_row(r) for r in s.to_dict("records")])
    wide = s.pivot_table(index=base, columns="metric", values="text", aggfunc="first").reset_index()
    wide = wide[base + present].rename(columns={m: METRIC_LABELS.get(m, m) for m in present})
    main = s[s["metric"] == present[0]].set_index("pipeline")["value"]
    wide["_role"] = (wide["role"] == "control").astype(int)
    wide["_score"] = -wide["pipeline"].map(main).fillna(-np.inf)
    wide = wide.sort_values(["_role", "_score", "pipeline"]).drop(columns=["_role", "_score"])
    wide.columns.name = None
    return wide.reset_index(drop=True)


def _task_markdown(summary: pd.DataFrame, title: str, level: float = 0.95, n_boot: int | None = None) -> str:
    parts = [f"# {title}\n", METHOD_NOTE + "\n", interval_line(level, n_boot) + "\n"]
    if summary.empty:
        parts.append("\nNo rows for this table in this run.\n")
        return "\n".join(parts)
    for r in tasks_of(summary).itertuples(index=False):
        s = summary[(summary["dataset"] == r.dataset) & (summary["task"] == r.task)]
        groups = [""] + (["same-species", "incl. same-species"] if r.kind == "cross_species" else
                         [POOLED_GROUP] if (s["group"] == POOLED_GROUP).any() else [])
        for g in groups:
            part = s[(s["group"] == g) & (s["interval"] != "count (no interval)")]
            if part.empty:
                continue
            interval = "; ".join(pd.unique(part["interval"]))
            scope = f" — {SCOPE_LABELS.get(g, g)}" if g else (" — transfer pairs (excl. same-species)"
                                                              if r.kind == "cross_species" else
                                                              " — mean over held-out units"
                                                              if (s["group"] == POOLED_GROUP).any() else "")
            parts.append(f"\n## {r.dataset} — {r.task} ({r.split_kind}, protocol: {r.protocol}){scope}\n")
            parts.append(f"Interval: {interval}.\n")
            parts.append(to_markdown(_metric_wide(part, kind=r.kind, group=g)))
            note = _fallback_note(s[s["group"] == g])
            if note:
                parts.append(note)
    return "\n".join(parts)


def _fallback_note(rows: pd.DataFrame) -> str:
    """The pipelines of one table that scored test cells with a fallback model (``n_fallback``),
    as one line; "" when none did."""
    counts = rows[rows["metric"].isin(["n_fallback", "n_test_cells"])]
    wide = counts.pivot_table(index="pipeline", columns="metric", values="value", aggfunc="first")
    if "n_fallback" not in wide.columns or not (wide["n_fallback"] > 0).any():
        return ""
    used = wide[wide["n_fallback"] > 0]
    total = used["n_test_cells"] if "n_test_cells" in used.columns else pd.Series(np.nan, index=used.index)
    items = [f"{p} {int(n)} of {int(t)}" if np.isfinite(t) else f"{p} {int(n)}"
             for p, n, t in zip(used.index, used["n_fallback"], total)]
    return ("\nTest cells scored by the fallback model on all training cells (their Leiden cluster had "
            "no model of its own; none dropped; `n_fallback` in summary.tsv): " + "; ".join(items) + ".\n")


def headline_table(summary: pd.DataFrame, paired: pd.DataFrame,
                   declared: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per dataset x task: the declared pipelines, the best linear pipeline of the grid
    (chosen on the evaluation folds: optimistic), every control, and whether the best beats the
    best control beyond the interval of their paired difference.

    Cross-species tasks get two rows, like beside like: the strict average over transfer pairs and
    the paper's average over every pair including the same-species one (``protocol`` column); the
    task's own protocol comes first.
    """
    s = check_summary(summary)
    declared = list(DEFAULT_DECLARED if declared is None else declared)
    controls = controls_of(s)
    rows = []
    for t in tasks_of(s).itertuples(index=False):
        views = [(t.group, t.protocol)]
        if t.kind == "cross_species":
            other = ("", "strict") if t.group else ("incl. same-species", "paper")
            views.append(other)
        task_rows = s[(s["dataset"] == t.dataset) & (s["task"] == t.task) & (s["metric"] == t.metric)]
        for group, protocol in views:
            here = task_rows[task_rows["group"] == group]
            if here.empty:
                continue

            ctrl = here[(here["role"] == "control") & here["value"].notna()].sort_values(
                ["value", "pipeline"], ascending=[False, True]).head(1)

            def cell(name, here=here, group=group, ctrl=ctrl, t=t):
                x = here[here["pipeline"] == name]
                if not len(x):
                    return "not run"
                text = format_row(x.iloc[0].to_dict())
                if t.kind == "novel_type" and len(ctrl) and x.iloc[0]["role"] == "method":
                    # novelty is read above the best control (shuffled labels score distance alone)
                    d = paired_difference(paired, t.dataset, t.task, group, t.metric, name, ctrl.iloc[0]["pipeline"])
                    if d is not None:
                        text += (f"; above {ctrl.iloc[0]['pipeline']}: "
                                 f"{format_ci(d['difference'], d['ci_low'], d['ci_high'], d['n_units'])}")
                return text

            row = {"dataset": t.dataset, "task": t.task, "protocol": protocol, "split": t.split_kind,
                   "score": score_label(t.metric, t.kind, group)}
            for name in declared:
                row[f"{name} (declared)"] = cell(name)
            methods = here[(here["role"] == "method") & (here["family"] == "linear")
                           & ~here["representation"].isin(["embedding", "nested"]) & here["value"].notna()]
            best = methods.sort_values(["value", "pipeline"], ascending=[False, True]).head(1)
            row["best linear of the grid (" + OPTIMISTIC + ")"] = (
                f"{best.iloc[0]['pipeline']}: {cell(best.iloc[0]['pipeline'])}" if len(best) else "–")
            for c in controls:
                row[c] = cell(c)
            verdict = "–"
            if len(best) and len(ctrl):
                d = paired_difference(paired, t.dataset, t.task, group, t.metric, best.iloc[0]["pipeline"],
                                      ctrl.iloc[0]["pipeline"])
                if d is None or not np.isfinite(d["ci_low"]):
                    verdict = UNTESTED
                else:
                    flag = SIGNAL if d["ci_low"] > 0 else NO_SIGNAL
                    verdict = (f"{flag} ({best.iloc[0]['pipeline']} − {ctrl.iloc[0]['pipeline']}: "
                               f"{format_ci(d['difference'], d['ci_low'], d['ci_high'])})")
            row["signal over control"] = verdict
            units = here["n_units"].dropna()
            row["n (unit)"] = f"{int(units.max())} ({here['unit'].iloc[0]})" if len(units) else "–"
            rows.append(row)
    return pd.DataFrame(rows)


def paired_view(paired: pd.DataFrame, summary: pd.DataFrame, declared: Iterable[str] | None = None,
                max_all_pairs: int = 8) -> pd.DataFrame:
    """The paired differences worth reading: every pair of method pipelines when a task has at most
    ``max_all_pairs`` of them, else every declared pipeline against every other; and every method
    against every control. Headline metric and group of each task."""
    declared = set(DEFAULT_DECLARED if declared is None else declared)
    if paired.empty:
        return paired.copy()
    s = check_summary(summary)
    out = []
    for t in tasks_of(s).itertuples(index=False):
        p = paired[(paired["dataset"] == t.dataset) & (paired["task"] == t.task) & (paired["group"] == t.group)
                   & (paired["metric"] == t.metric)]
        role = s[(s["dataset"] == t.dataset) & (s["task"] == t.task)].drop_duplicates("pipeline") \
            .set_index("pipeline")["role"]
        methods = {q for q, r in role.items() if r == "method"}
        keep = []
        for r in p.itertuples(index=False):
            ra, rb = role.get(r.a, "method"), role.get(r.b, "method")
            if ra == rb == "control":
                continue
            if ra == rb == "method" and len(methods) > max_all_pairs and not ({r.a, r.b} & declared):
                continue
            row = r._asdict()
            # read as "method - control" and "declared - other"
            if (ra == "control" and rb == "method") or (r.b in declared and r.a not in declared):
                row.update(a=r.b, b=r.a, difference=-r.difference, ci_low=-r.ci_high, ci_high=-r.ci_low,
                           verdict=r.verdict)
            keep.append(row)
        out.extend(keep)
    return pd.DataFrame(out, columns=paired.columns)


def write_tables(metrics: pd.DataFrame, summary: pd.DataFrame, paired: pd.DataFrame,
                 reference: pd.DataFrame | None, outdir: str | os.PathLike, tasks: Iterable[str] | None = None,
                 unseen: pd.DataFrame | None = None, declared: Iterable[str] | None = None,
                 level: float = 0.95, n_boot: int | None = None,
                 dataset_aliases: Mapping[str, str] | None = None,
                 counts: Mapping[str, str] | None = None,
                 selection: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write the tables (TSV + Markdown) into ``outdir`` (atomically) from the score stage's tables.

    ``counts``: our dataset name -> the matrix its raw counts were read from
    (:func:`sclinbench.data.manifest.entry_counts`), shown in the published comparison.

    Files (always written, possibly with no rows, so the workflow's outputs are static):
    ``headline``, ``summary``, ``task~<task>``, ``best_linear``, ``cross_species_pairs``,
    ``cross_species_average``, ``cross_species_unseen``, ``published_comparison``,
    ``paired_comparison``; with ``selection`` (a run with nested pipelines) also
    ``nested_selection``. Every Markdown file states its interval method in one line.
    """
    outdir = Path(outdir)
    s = check_summary(summary)
    written: dict[str, Path] = {}
    iline = interval_line(level, n_boot) + "\n"

    def emit(stem: str, table: pd.DataFrame, markdown: str) -> None:
        write_table(table, outdir / f"{stem}.tsv")
        write_text(markdown, outdir / f"{stem}.md")
        written[stem] = outdir / f"{stem}.tsv"

    head = headline_table(s, paired, declared)
    emit("headline", head, "# Headline: declared pipelines beside the best of the grid\n\n"
         + iline + "\nThe best of the grid is " + OPTIMISTIC + " (it was picked on the folds it is "
         "scored on). 'signal over control' uses the paired difference (same bootstrap draws) between "
         "the best linear pipeline and the best control.\n\n"
         + (to_markdown(head) if len(head) else "No method pipeline was scored in this run.\n"))

    emit("summary", s, _task_markdown(s, "All tasks: summary", level, n_boot))
    task_names = list(tasks) if tasks is not None else list(pd.unique(s["task"]))
    for task in task_names:
        part = s[s["task"] == task]
        emit(task_table_stem(task), part, _task_markdown(part, f"Task {task}", level, n_boot))

    best = best_of_grid(s, "linear")
    best_md = best.assign(score=[score_label(m, k, g) for m, k, g in zip(best["metric"], best["kind"], best["group"])],
                          value_ci=[format_row(r) for r in best.to_dict("records")])
    emit("best_linear", best,
         "# Best linear pipeline of the grid per dataset and task\n\n"
         f"Every row is {OPTIMISTIC}: the pipeline was picked on the folds it is scored on. Only the "
         "linear family (logistic regression, linear SVM, ridge, LDA, centroid) is eligible: never kNN, a "
         "control or a foundation-model embedding. Novel-type tasks rank by novelty AUROC.\n\n" + iline + "\n"
         + to_markdown(best_md[["dataset", "task", "protocol", "split_kind", "pipeline", "family", "score",
                                "value_ci", "n_units", "unit"]].rename(columns={"value_ci": "value [CI]"})))

    metric = "macro_f1"
    pairs = cross_species_pairs(s, metric)
    pair_md = ["# Cross-species transfer: training species (rows) x target species (columns)\n",
               f"{score_label(metric, 'cross_species', 'a->b')}: transfer pairs (trained on every cell of "
               "the training species) scored over the labels both species share. The diagonal (marked *) "
               "is the same-species cross-validation, not a transfer. The TSV also has the interval of "
               "every pair (over the target's donors, or cells) and `macro_f1_all_target_labels`.\n", iline]
    all_pairs = pd.concat([pairs, cross_species_pairs(s, "macro_f1_all_target_labels")], ignore_index=True)
    for (dataset, task, pipeline), _p in pairs.groupby(["dataset", "task", "pipeline"], sort=True):
        mat = cross_species_matrix(s, pipeline, metric, dataset=dataset, task=task)
        shown = mat.apply(lambda col, mat=mat: [("–" if not np.isfinite(v) else f"{v:.3f}*" if r == col.name else f"{v:.3f}")
                                       for r, v in zip(mat.index, col)])
        pair_md.append(f"\n## {dataset} — {task} — {pipeline}\n")
        pair_md.append(to_markdown(shown.reset_index()))
    if pairs.empty:
        pair_md.append("\nNo cross-species task in this run.\n")
    emit("cross_species_pairs", all_pairs, "\n".join(pair_md))

    avg = pd.concat([cross_species_average(s, False, metric), cross_species_average(s, True, metric)],
                    ignore_index=True)
    avg_md = ["# Cross-species: mean over target species per training species\n",
              f"{score_label(metric, 'cross_species', 'a->b')}. Default rows leave the same-species score "
              "out; rows that include it (as the paper's averages do) are labelled. Interval over target "
              "species (none from fewer than 3).\n", iline]
    if len(avg):
        a = avg.assign(value=[format_row(r) for r in avg.to_dict("records")],
                       column=[f"{p} ({'incl.' if d else 'excl.'} same-species)"
                               for p, d in zip(avg["pipeline"], avg["includes_diagonal"])])
        for (dataset, task), t in a.groupby(["dataset", "task"], sort=True):
            wide = t.pivot_table(index="training_species", columns="column", values="value", aggfunc="first")
            order_cols = sorted(wide.columns, key=lambda c: ("incl." in c, c))
            wide = wide.reindex(columns=order_cols).reset_index()
            wide.columns.name = None
            avg_md.append(f"\n## {dataset} — {task}\n")
            avg_md.append(to_markdown(wide.rename(columns={"training_species": "training species"})))
    else:
        avg_md.append("\nNo cross-species task in this run.\n")
    emit("cross_species_average", avg, "\n".join(avg_md))

    u = unseen if unseen is not None else pd.DataFrame(columns=["dataset", "task", "pipeline", "group", "y_true",
                                                                "y_pred", "n"])
    if len(u) and "kind" in u.columns:
        u = u[u["kind"] == "cross_species"]
    if len(u) and "repeat" in u.columns:
        u = u[u["repeat"].astype(str) == "0"]
    u_md = ["# Cross-species: cells whose label the training species lacks\n",
            "They are never part of the headline score (which covers the shared labels). Per pipeline "
            "and pair: how many there are and what they were called (first repeat of a shuffled control).\n",
            iline.replace("Intervals:", "No intervals here (counts); elsewhere: intervals:")]
    if len(u):
        for (dataset, task, pipeline), t in u.groupby(["dataset", "task", "pipeline"], sort=True):
            u_md.append(f"\n## {dataset} — {task} — {pipeline}\n")
            u_md.append(to_markdown(t[["group", "y_true", "y_pred", "n"]].rename(
                columns={"group": "pair", "y_true": "true label", "y_pred": "called"})))
    else:
        u_md.append("\nNo cross-species cell had a label its training species lacks.\n")
    emit("cross_species_unseen", u, "\n".join(u_md))

    ref = reference if reference is not None else pd.DataFrame(columns=list(REFERENCE_COLUMNS))
    pub = published_table(ref, avg, dataset_aliases=dataset_aliases, counts=counts)
    pub_md = ["# Published foundation-model numbers beside ours\n",
              "Every column says its source: `published` (copied from the paper's figure, about "
              "+-0.01) or `computed here` (this run), and whether the same-species score is inside "
              "the average. Published averages do not say whether they include it (`unknown`); which "
              "label set they score over is not stated either (ours: the shared labels). "
              "`counts` names the matrix the numbers were computed from: ours as read by this run "
              "(registry `counts:`), published ones as their source states it (`not stated` when it "
              "does not).\n", iline]
    if len(pub):
        pub_md.append(to_markdown(published_wide(pub, control_pipelines=controls_of(s))))
        cites = pub.loc[pub["source"] == PUBLISHED, ["model", "citation"]].drop_duplicates()
        if len(cites):
            pub_md.append("\nSources:\n")
            pub_md.extend(f"- {mod}: {cit}" for mod, cit in zip(cites["model"], cites["citation"]))
        if not (pub["source"] == PUBLISHED).any():
            pub_md.append("\nNo published numbers match the datasets of this run"
                          f" ({', '.join(sorted(set(pub['dataset'])))}).\n")
    else:
        pub_md.append("\nNo cross-species results in this run, so nothing to compare.\n")
    emit("published_comparison", pub, "\n".join(pub_md) + "\n")

    view = paired_view(paired, s, declared)
    paired_md = ["# Paired comparisons on identical folds and identical bootstrap draws\n",
                 "Difference a − b of each task's headline score, with the interval of the difference "
                 "(both pipelines resampled with the same draws of the held-out units). Every pair of "
                 "method pipelines (or, in a large grid, every declared pipeline against the others) and "
                 "every method against every control. All pairs and metrics: `results/paired.tsv`.\n", iline]
    if len(view):
        shown = view.assign(difference=[format_ci(d, lo, hi, n) for d, lo, hi, n in
                                        zip(view["difference"], view["ci_low"], view["ci_high"], view["n_units"])])
        paired_md.append(to_markdown(shown[["dataset", "task", "group", "metric", "a", "b", "difference", "verdict",
                                            "n_units", "unit"]]))
    else:
        paired_md.append("\nNo pair of pipelines to compare in this run.\n")
    emit("paired_comparison", view, "\n".join(paired_md) + "\n")
    if selection is not None:
        from sclinbench.report.nested import selection_markdown

        emit("nested_selection", selection, selection_markdown(selection, s))
    assert set(TABLES) <= set(written), "write_tables writes every stem of contracts.TABLES"
    return written
