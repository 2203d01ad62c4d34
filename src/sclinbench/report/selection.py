"""What the tables and figures show, read from the score stage's ``results/summary.tsv``.

Nothing here computes a score: it selects rows. Each task's headline (its metric and group),
the pipelines declared before the run, the best linear pipeline of the grid (chosen on the
evaluation folds: optimistic, and said so), the best control, whether the best beats it beyond the
interval of their paired difference (``results/paired.tsv``), and the cross-species views (pairs,
the matrix of one pipeline, the averages over target species). Controls and methods are told apart
by the ``role`` column, model families by ``family``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from sclinbench.errors import SclinbenchError
from sclinbench.workflow.contracts import LABEL_COLUMNS, check_summary, parse_species_pair

OPTIMISTIC = "chosen on the evaluation folds: optimistic"
NO_SIGNAL = "no signal over control"
SIGNAL = "beats the best control"
UNTESTED = "not testable: too few units"
SCOPE_LABELS = {"": "", "same-species": "same-species cross-validation",
                "incl. same-species": "all pairs incl. same-species"}


def headline_metric(kind: str) -> str:
    """The metric that ranks pipelines of a task kind (novel types: novelty AUROC)."""
    return "novelty_auroc" if kind == "novel_type" else "macro_f1"


def headline_group(kind: str, protocol: str = "strict") -> str:
    """The summary group of a task's headline: cross-species tasks of the paper's protocol average
    every pair including the same-species one (as Souza & Mehta); everything else group ``""``."""
    return "incl. same-species" if kind == "cross_species" and protocol == "paper" else ""


def tasks_of(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x task: kind, split, protocol, headline metric and group."""
    t = summary[LABEL_COLUMNS].drop_duplicates().sort_values(["dataset", "task"]).reset_index(drop=True)
    t["metric"] = [headline_metric(k) for k in t["kind"]]
    t["group"] = [headline_group(k, p) for k, p in zip(t["kind"], t["protocol"])]
    return t


def headline_rows(summary: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Each task's headline rows (its headline group; its headline metric unless ``metric``)."""
    t = tasks_of(summary)
    if metric is not None:
        t["metric"] = metric
    keys = LABEL_COLUMNS + ["group", "metric"]
    return summary.merge(t[keys], on=keys, how="inner")


def summary_view(summary: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Summary rows at each task's headline group in the figure-friendly form
    (``mean`` = value, ``n`` = units), every metric."""
    s = check_summary(summary)
    if group is None:
        t = tasks_of(s)[LABEL_COLUMNS + ["group"]]
        s = s.merge(t, on=LABEL_COLUMNS + ["group"], how="inner")
    else:
        s = s[s["group"] == group]
    s = s[s["interval"] != "count (no interval)"]
    return s.rename(columns={"value": "mean", "n_units": "n"}).reset_index(drop=True)


def controls_of(summary: pd.DataFrame) -> list[str]:
    """The pipelines of a summary with ``role: control``, sorted by name."""
    return sorted(pd.unique(summary.loc[summary["role"] == "control", "pipeline"]))


def _pick_best(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows[rows["value"].notna()].sort_values(["dataset", "task", "value", "pipeline"],
                                                   ascending=[True, True, False, True])
    return rows.groupby(["dataset", "task"], sort=True).head(1).reset_index(drop=True)


def best_of_grid(summary: pd.DataFrame, family: str | None = "linear", metric: str | None = None,
                 exclude_representations: Iterable[str] = ("embedding", "nested")) -> pd.DataFrame:
    """The best method pipeline of a family per dataset x task (never a control), by the headline
    metric of the task's headline group. It is chosen on the evaluation folds, which makes its
    score optimistic: rows carry ``selection`` saying so.

    ``family=None`` takes every family; kNN (``nonlinear``) is never the best of ``linear``. A
    nested pipeline (representation ``nested``) is no pipeline of the grid: it chose inside the
    training data and is shown when declared, never as the best of the grid.
    """
    s = headline_rows(check_summary(summary), metric)
    s = s[(s["role"] == "method") & ~s["representation"].isin(list(exclude_representations))]
    if family is not None:
        s = s[s["family"] == family]
    best = _pick_best(s)
    best["selection"] = OPTIMISTIC
    return best


def best_control(summary: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The control with the highest headline score per dataset x task."""
    s = headline_rows(check_summary(summary), metric)
    return _pick_best(s[s["role"] == "control"])


def paired_difference(paired: pd.DataFrame, dataset: str, task: str, group: str, metric: str,
                      a: str, b: str) -> dict | None:
    """``a - b`` from the paired table (stored once per unordered pair), or None."""
    p = paired[(paired["dataset"] == dataset) & (paired["task"] == task) & (paired["group"] == group)
               & (paired["metric"] == metric)]
    hit = p[(p["a"] == a) & (p["b"] == b)]
    sign = 1.0
    if hit.empty:
        hit, sign = p[(p["a"] == b) & (p["b"] == a)], -1.0
    if hit.empty:
        return None
    r = hit.iloc[0]
    lo, hi = (r["ci_low"], r["ci_high"]) if sign > 0 else (-r["ci_high"], -r["ci_low"])
    return {"difference": sign * r["difference"], "ci_low": lo, "ci_high": hi, "n_units": r["n_units"],
            "unit": r["unit"], "interval": r["interval"]}


def signal_over_control(summary: pd.DataFrame, paired: pd.DataFrame, family: str | None = "linear") -> pd.DataFrame:
    """Per dataset x task: does the best method beat the best control beyond the interval of their
    paired (same-draw) difference? ``signal`` is :data:`SIGNAL`, :data:`NO_SIGNAL` or
    :data:`UNTESTED` (fewer than 3 units)."""
    best, ctrl = best_of_grid(summary, family), best_control(summary)
    rows = []
    for r in best.itertuples(index=False):
        c = ctrl[(ctrl["dataset"] == r.dataset) & (ctrl["task"] == r.task)]
        if c.empty:
            continue
        c = c.iloc[0]
        d = paired_difference(paired, r.dataset, r.task, r.group, r.metric, r.pipeline, c["pipeline"])
        if d is None or not np.isfinite(d["ci_low"]):
            verdict = UNTESTED
        else:
            verdict = SIGNAL if d["ci_low"] > 0 else NO_SIGNAL
        rows.append({"dataset": r.dataset, "task": r.task, "metric": r.metric, "group": r.group,
                     "best": r.pipeline, "control": c["pipeline"],
                     "difference": np.nan if d is None else d["difference"],
                     "ci_low": np.nan if d is None else d["ci_low"],
                     "ci_high": np.nan if d is None else d["ci_high"], "signal": verdict})
    cols = ["dataset", "task", "metric", "group", "best", "control", "difference", "ci_low", "ci_high", "signal"]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- cross-species

def _pair_groups(groups: pd.Series) -> np.ndarray:
    return groups.str.fullmatch(r"[^>*]+->[^>*]+").to_numpy(bool)


def cross_species_pairs(summary: pd.DataFrame, metric: str = "macro_f1") -> pd.DataFrame:
    """Per pipeline and ordered species pair: the pooled score with its interval (over the target's
    donors or cells); the diagonal is the within-species cross-validation.

    Returns
    -------
    Columns ``dataset, task, protocol, pipeline, role, family, representation, model,
    training_species, target_species, same_species, metric, mean, ci_low, ci_high, n, unit``.
    """
    s = check_summary(summary)
    s = s[(s["kind"] == "cross_species") & (s["metric"] == metric)]
    s = s[_pair_groups(s["group"])]
    cols = ["dataset", "task", "protocol", "pipeline", "role", "family", "representation", "model",
            "training_species", "target_species", "same_species", "metric", "mean", "ci_low", "ci_high", "n",
            "unit"]
    if s.empty:
        return pd.DataFrame(columns=cols)
    pairs = [parse_species_pair(g, where="summary table") for g in s["group"]]
    s = s.assign(training_species=[a for a, _ in pairs], target_species=[b for _, b in pairs],
                 same_species=[a == b for a, b in pairs])
    return s.rename(columns={"value": "mean", "n_units": "n"})[cols].reset_index(drop=True)


def _only(values, what: str, hint: str) -> str:
    values = list(pd.unique(pd.Series(values)))
    if len(values) != 1:
        raise SclinbenchError(f"cross-species results: {len(values)} {what} ({', '.join(map(str, values))}); "
                              f"{hint}")
    return values[0]


def cross_species_matrix(summary: pd.DataFrame, pipeline: str, metric: str = "macro_f1",
                         dataset: str | None = None, task: str | None = None,
                         species_order: Iterable[str] | None = None) -> pd.DataFrame:
    """Training species (rows) x target species (columns) matrix of one pipeline's score.

    The diagonal is the within-species cross-validation; the off-diagonal cells are transfers
    (scored over the labels both species share). Missing pairs are NaN.
    """
    pairs = cross_species_pairs(summary, metric)
    if dataset is not None:
        pairs = pairs[pairs["dataset"] == dataset]
    if task is not None:
        pairs = pairs[pairs["task"] == task]
    pairs = pairs[pairs["pipeline"] == pipeline]
    if pairs.empty:
        raise SclinbenchError(f"cross-species results: no {metric!r} rows for pipeline {pipeline!r}"
                              f"{'' if dataset is None else ' on dataset ' + repr(dataset)}; "
                              "check the pipeline name and that a cross_species task ran")
    _only(pairs["dataset"], "datasets", "pass dataset=")
    _only(pairs["task"], "tasks", "pass task=")
    if species_order is None:
        species_order = sorted(pd.unique(pd.concat([pairs["training_species"], pairs["target_species"]])))
    order = list(species_order)
    mat = pairs.pivot(index="training_species", columns="target_species", values="mean")
    mat = mat.reindex(index=[s for s in order if s in mat.index], columns=[s for s in order if s in mat.columns])
    mat.index.name, mat.columns.name = "training species", "target species"
    return mat


def cross_species_average(summary: pd.DataFrame, include_diagonal: bool = False,
                          metric: str = "macro_f1") -> pd.DataFrame:
    """Mean score over target species, per training species and pipeline (score stage rows
    ``a->*`` and ``a->* incl. same-species``; interval over target species, none from < 3).

    Returns
    -------
    Columns ``dataset, task, kind, protocol, pipeline, role, family, representation, model,
    training_species, metric, includes_diagonal, mean, ci_low, ci_high, n, interval`` where
    ``metric`` is ``"<metric>_mean_over_targets"`` and ``n`` the number of target species.
    """
    s = check_summary(summary)
    suffix = "->* incl. same-species" if include_diagonal else "->*"
    s = s[(s["kind"] == "cross_species") & (s["metric"] == metric) & s["group"].str.endswith(suffix)]
    if not include_diagonal:
        s = s[~s["group"].str.contains("incl.")]
    cols = ["dataset", "task", "kind", "protocol", "pipeline", "role", "family", "representation", "model",
            "training_species", "metric", "includes_diagonal", "mean", "ci_low", "ci_high", "n", "interval"]
    if s.empty:
        return pd.DataFrame(columns=cols)
    s = s.assign(training_species=s["group"].str.slice(0, -len(suffix)), metric=f"{metric}_mean_over_targets",
                 includes_diagonal=bool(include_diagonal))
    return s.rename(columns={"value": "mean", "n_units": "n"})[cols].reset_index(drop=True)
