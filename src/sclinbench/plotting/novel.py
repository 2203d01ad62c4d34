"""Novel-type detection: the novelty ROC of held-out cell types and the detection panels."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sclinbench.errors import SclinbenchError
from sclinbench.plotting.styling import (
    DOUBLE_COLUMN,
    _colors,
    _new_figure,
    _upper_limit,
    control_styles,
    placeholder_figure,
    style,
)
from sclinbench.workflow import contracts


def novelty_roc(predictions: pd.DataFrame) -> pd.DataFrame:
    """ROC curve points of novelty detection per pipeline, pooled over folds and held-out types.

    The novelty score is the negated confidence (``-score``): a cell the model is unsure about is
    called novel. Cells without a score count as most novel (as in :mod:`sclinbench.evaluate.metrics`).
    The reported novelty AUROC is the score stage's (``results/summary.tsv``), not this curve's area.

    Returns
    -------
    Columns ``pipeline, fpr, tpr`` (one row per curve point).
    """
    from sklearn.metrics import roc_curve

    missing = [c for c in ("pipeline", "score", "novel") if c not in predictions.columns]
    if missing:
        raise SclinbenchError(f"predictions: missing column(s) {', '.join(missing)}; novel-type "
                              "figures need the predictions of a novel_type task")
    rows = []
    for p, df in predictions.groupby("pipeline", sort=True):
        novel = df["novel"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
        if novel.all() or not novel.any():
            continue
        conf = pd.to_numeric(df["score"], errors="coerce").to_numpy(float)
        ok = np.isfinite(conf)
        # unscored cells are the most novel: one step above the highest finite novelty score
        top = -conf[ok].min() + 1.0 if ok.any() else 1.0
        novelty = np.where(ok, -conf, top)
        fpr, tpr, _ = roc_curve(novel, novelty)
        rows.append(pd.DataFrame({"pipeline": p, "fpr": fpr, "tpr": tpr}))
    if not rows:
        return pd.DataFrame(columns=["pipeline", "fpr", "tpr"])
    return pd.concat(rows, ignore_index=True)


def _novel_tasks(predictions: Mapping, metrics: pd.DataFrame | None, summary: pd.DataFrame | None) -> list:
    """(dataset, task) of every novel-type task the inputs have, in name order."""
    keys = set(k for k in predictions if k is not None)
    for table in (summary, metrics):
        if table is not None and len(table):
            rows = table[table["kind"] == "novel_type"]
            keys |= set(zip(rows["dataset"], rows["task"]))
    return sorted(keys)


def novel_type_detection(predictions: Mapping[tuple[str, str], pd.DataFrame] | pd.DataFrame | None = None,
                         metrics: pd.DataFrame | None = None, summary: pd.DataFrame | None = None,
                         colors: Mapping[str, str] | None = None,
                         controls: Mapping[str, dict] | None = None) -> Figure:
    """Novel cell-type detection, one row per dataset x novel-type task.

    Left: ROC curves of novelty detection, pooled over folds and held-out types, from the per-cell
    predictions (the legend gives each pipeline's novelty AUROC as the tables report it:
    ``results/summary.tsv``, the mean over held-out types). Right: novelty AUROC per held-out type
    (``results/metrics.tsv``: a novel-type fold holds out one type), every repeat of a shuffled
    control drawn as its own cross.

    Parameters
    ----------
    predictions
        ``(dataset, task) -> `` per-cell predictions of that novel-type task (columns ``pipeline,
        score, novel``), e.g. :func:`sclinbench.workflow.contracts.read_predictions` of ``results/predictions/dataset~D/task~T/*.parquet``; a single
        DataFrame is the predictions of the only novel-type task. Optional.
    metrics, summary
        The run's per-fold scores and summary (optional; without them the panels say what is missing).
    colors, controls
        Pipeline -> colour; :func:`control_styles` (default: those of ``summary`` or ``metrics``).
    """
    if isinstance(predictions, pd.DataFrame):
        predictions = {None: predictions}
    predictions = dict(predictions or {})
    if metrics is not None and len(metrics):
        metrics = contracts.check_metrics(metrics)
    if summary is not None and len(summary):
        summary = contracts.check_summary(summary)
    tasks = _novel_tasks(predictions, metrics, summary)
    if None in predictions and len(tasks) <= 1:  # one unnamed predictions table: that task's
        predictions[tasks[0] if tasks else (None, None)] = predictions.pop(None)
        tasks = tasks or [(None, None)]
    predictions.pop(None, None)
    if not tasks:
        return placeholder_figure("Novel cell-type detection",
                                  "No novel-type results in this run: add a task with kind: "
                                  "novel_type (one cell type held out of training at a time).")
    if controls is None:
        controls = control_styles(summary if summary is not None and len(summary) else metrics)
    names = set()
    for df in predictions.values():
        names |= set(pd.unique(df["pipeline"]))
    for table in (metrics, summary):
        if table is not None and len(table):
            names |= set(table.loc[table["kind"] == "novel_type", "pipeline"])
    cols = _colors(colors, names, controls)
    with style():
        fig = _new_figure(DOUBLE_COLUMN, 0.5 + 3.6 * len(tasks))
        axes = fig.subplots(len(tasks), 2, width_ratios=[1, 1.7], squeeze=False)
        for row, ((d, t), (ax_roc, ax_auc)) in enumerate(zip(tasks, axes)):
            _novel_roc_panel(ax_roc, predictions.get((d, t)), summary, d, t, cols, controls)
            _novel_type_panel(ax_auc, metrics, d, t, cols, controls, legend=row == 0)
            if d is not None:
                ax_roc.set_title(f"{d} · {t}\nROC, pooled over folds and held-out types", fontsize=7)
    return fig


def _novel_roc_panel(ax, predictions, summary, dataset, task, cols, controls) -> None:
    roc = novelty_roc(predictions) if predictions is not None and len(predictions) else None
    if roc is not None and len(roc):
        table = {}
        if summary is not None and len(summary):
            s = summary[(summary["dataset"] == dataset) & (summary["task"] == task) & (summary["group"] == "")
                        & (summary["metric"] == "novelty_auroc")]
            table = dict(zip(s["pipeline"], s["value"]))
        order = sorted(pd.unique(roc["pipeline"]), key=lambda p: (p in controls, -table.get(p, -1.0), p))
        for p in order:
            c = roc[roc["pipeline"] == p]
            value = table.get(p)
            label = p if value is None or not np.isfinite(value) else f"{p}  {value:.2f}"
            ax.plot(c["fpr"], c["tpr"], color=cols.get(p), linestyle=controls.get(p, {}).get("linestyle", "-"),
                    linewidth=1.1, label=label)
        ax.plot([0, 1], [0, 1], color="#BBBBBB", linewidth=0.6, linestyle="-", zorder=0)
        # below the axes: inside, any corner hides a curve (controls run along the diagonal)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), fontsize=5.5, handlelength=2.0,
                  borderaxespad=0, labelspacing=0.25, ncols=1, frameon=False, title_fontsize=5.5,
                  title="novelty AUROC (tables: mean over held-out types)" if table else None)
    else:
        ax.text(0.5, 0.5, "per-cell predictions not supplied\n(ROC needs the predictions files)",
                ha="center", va="center", fontsize=6.5, color="#555555", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_box_aspect(1)
    ax.set_xlabel("false positive rate (known cells called novel)", fontsize=6)
    ax.set_ylabel("true positive rate\n(novel cells found)")
    ax.set_title("ROC, pooled over folds\nand held-out types", fontsize=7)


def _novel_type_panel(ax, metrics, dataset, task, cols, controls, legend: bool) -> None:
    m = None
    if metrics is not None and len(metrics):
        m = metrics[(metrics["kind"] == "novel_type") & (metrics["metric"] == "novelty_auroc")]
        if dataset is not None:
            m = m[(m["dataset"] == dataset) & (m["task"] == task)]
        elif m["dataset"].nunique() > 1:  # an unnamed task: the per-type panel of the first
            first = m.iloc[0]
            m = m[(m["dataset"] == first["dataset"]) & (m["task"] == first["task"])]
    if m is None or m.empty:
        ax.text(0.5, 0.5, "no novelty_auroc in the metrics table", ha="center", va="center",
                fontsize=6.5, color="#555555", transform=ax.transAxes)
    else:
        cats = sorted(pd.unique(m["group"]))
        pipes = sorted(pd.unique(m["pipeline"]), key=lambda p: (p in controls, p))
        step = 0.7 / max(len(pipes), 1)
        x_of = {c: i for i, c in enumerate(cats)}
        for k, p in enumerate(pipes):
            q = m[m["pipeline"] == p]
            xs = q["group"].map(x_of).to_numpy(float) - 0.35 + step * (k + 0.5)
            is_control = p in controls
            label = p + (" (each repeat)" if is_control and q["repeat"].nunique() > 1 else "")
            if is_control:
                marker = controls[p].get("marker", "x")
                hollow = {"facecolors": "none", "edgecolors": cols.get(p)} if marker in ("s", "^") \
                    else {"color": cols.get(p)}  # open shapes; line markers (x, +) take the colour
                ax.scatter(xs, q["value"], marker=marker, s=12, zorder=3, label=label, linewidths=0.8, **hollow)
            else:
                ax.scatter(xs, q["value"], color=cols.get(p), marker="o", s=14, zorder=3, label=label,
                           linewidths=0)
        ax.axhline(0.5, color="#999999", linewidth=0.6, linestyle="-", zorder=0)
        ax.text(len(cats) - 0.45, 0.5, "chance", fontsize=6, color="#777777", ha="left", va="center",
                clip_on=False)
        ax.set_xticks(range(len(cats)), cats, rotation=35 if len(cats) > 4 else 0,
                      ha="right" if len(cats) > 4 else "center", rotation_mode="anchor", fontsize=6)
        ax.set_xlim(-0.5, len(cats) - 0.5)
        _upper_limit(ax, "y")
        if legend:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=6)
        ax.yaxis.grid(True, linewidth=0.3, color="#DDDDDD", zorder=0)
        ax.set_axisbelow(True)
    ax.set_ylabel("novelty AUROC\n(one fold per held-out type)")
    ax.set_title("Per held-out type (absent from training)", fontsize=7)
