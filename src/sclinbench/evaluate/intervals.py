"""Pooled out-of-fold scores, intervals that resample what the split holds out, paired differences.

The score stage has the predictions of every pipeline of one dataset x task; this module turns
them into the numbers the tables report (``results/scores/.../task~T.summary.tsv`` and
``.paired.tsv``):

- **Point estimates** are computed from the pooled out-of-fold predictions (every test cell once),
  not averaged over folds: a fold whose test set holds one class has no macro F1, and a
  leave-one-donor-out fold holds one sample.
- **Intervals** are percentile bootstraps over the *units the split holds out*: held-out donors for
  donor splits (the metric is recomputed from the pooled predictions of the resampled donors),
  cells -- or donors, when the dataset has at least 3 real donors -- for stratified cell-level
  splits, species pairs for cross-species transfer, held-out types for novel-type tasks. With fewer
  than 3 units there is no interval: the per-unit values are printed with "too few units for an
  interval".
- **Paired differences** resample both pipelines with the same draws (the same units in every draw
  for every pipeline), so ``a - b`` has its own interval.
- **Repeated hold-outs** (``split: stratified_holdout``, a cell tested in several splits): the
  estimate is the mean over the splits of each split's metric, and a draw resamples each distinct
  unit once and recomputes every split from it (:class:`~sclinbench.evaluate.scopes.RepeatedHoldoutScope`); ``n_test_cells``
  counts distinct cells.
- **Controls**: a shuffled-label control has ``repeats`` permutations per fold; its estimate is the
  mean over repeats (each repeat a full set of out-of-fold predictions), its spread over repeats is
  reported beside it, and in each bootstrap draw it is the mean over repeats on the same units.

How a draw resamples the units and rescores them: :mod:`sclinbench.evaluate.scopes`.
"""

from __future__ import annotations

import logging
import time
import warnings
from itertools import combinations

import numpy as np
import pandas as pd

from sclinbench.evaluate.few_units import (
    MIN_UNITS,
    TOO_FEW,
    MeanScope,
    held_out_unit,
    mean_scope_rows,
    unit_mean_scope,
)
from sclinbench.evaluate.metrics import (
    CONFUSION_METRICS,
    COUNT_METRICS,
    _in_training,
    _with_repeat,
    n_fallback,
    score_rows,
)
from sclinbench.evaluate.scopes import (
    PooledScope,
    RepeatedHoldoutScope,
    key_rng,
    percentile_interval,
    real_donors,
    unit_draws,
)
from sclinbench.evaluate.splits import REPEATED_SPLITS
from sclinbench.workflow.contracts import PAIRED_COLUMNS, SUMMARY_COLUMNS, is_diagonal

log = logging.getLogger(__name__)

POOLED_METRICS = CONFUSION_METRICS + ("auroc_ovr",)
#: Metrics compared pair-wise (paired differences), per task kind.
PAIRED_METRICS = {"novel_type": ("novelty_auroc", "macro_f1")}
DEFAULT_PAIRED = ("macro_f1", "auroc_ovr")
#: Group of the pooled figure shown beside a donor split's headline (the mean over held-out units).
POOLED_GROUP = "pooled over donors"
#: Splits whose headline is the mean over the held-out units (donors, or folds holding out donors
#: of every class), with a Student-t interval (:mod:`sclinbench.evaluate.few_units`).
UNIT_MEAN_SPLITS = ("donor", "leave_one_donor_out", "donor_pseudobulk")



# --------------------------------------------------------------------------- summaries

def _by_pipeline(per_member: dict, metric: str, picks: dict | None = None) -> dict[str, np.ndarray]:
    """Average over the repeats of each pipeline: pipeline -> (repeats x b) -> b; with ``picks``
    (pipeline -> one repeat index per draw) each draw takes that repeat instead, so the draws of a
    shuffled control carry the variance over its label permutations."""
    grouped: dict[str, list[np.ndarray]] = {}
    for (pipeline, _), values in sorted(per_member.items()):
        if metric in values:
            grouped.setdefault(pipeline, []).append(values[metric])
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for p, v in grouped.items():
            if len(v) == 1:
                out[p] = v[0]
            elif picks is not None and p in picks:
                A = np.vstack(v)
                out[p] = A[picks[p][: A.shape[1]], np.arange(A.shape[1])]
            else:
                out[p] = np.nanmean(np.vstack(v), axis=0)
    return out


def plural(unit: str) -> str:
    return unit if unit.endswith("species") else unit + "s"


def _interval_text(scope, n_boot: int, level: float) -> str:
    if scope.n_units < MIN_UNITS:
        return f"{TOO_FEW} ({scope.n_units} {scope.unit if scope.n_units == 1 else plural(scope.unit)})"
    if getattr(scope, "t_interval", False):
        what = (" (each fold holds out donors of every class)" if scope.unit == "fold" else "")
        return (f"{int(round(level * 100))}% Student-t interval on the logit scale over {scope.n_reported} "
                f"{plural(scope.unit)}{what}: the mean of the per-{scope.unit} scores (listed in unit_values)"
                f"{scope.note}")
    how = ", metric recomputed from the pooled out-of-fold predictions" if scope.pooled else ""
    return (f"{int(round(level * 100))}% percentile bootstrap over {scope.n_reported} {plural(scope.unit)} "
            f"({n_boot} draws, seeded){how}{scope.note}")


REPEAT_DRAW_NOTE = "; each draw of the shuffled control takes one of its label permutations at random"


def resample(scope, metrics: list[str], n_boot: int, level: float, rng: np.random.Generator,
             group: str, paired: list[str], repeat_key: tuple = (0,)):
    """Summary rows and paired-difference rows of one scope.

    Means over units (``scope.t_interval``) get Student-t intervals over the per-unit values
    (:func:`sclinbench.evaluate.few_units.mean_scope_rows`); pooled scopes the percentile bootstrap over
    units, where each draw of a pipeline with several repeats (a shuffled control) takes one repeat
    at random (seeded by ``repeat_key`` and the pipeline), so its interval includes the variance
    over label permutations.
    """
    ones = np.ones((1, scope.n_units))
    point = scope.metrics(ones)
    if getattr(scope, "t_interval", False):
        return mean_scope_rows(scope, metrics, level, group, paired, _interval_text(scope, n_boot, level),
                               point, _by_pipeline)
    members = sorted(point)
    pipelines = sorted({p for p, _ in members})
    enough = scope.n_units >= MIN_UNITS
    n_rep = {p: sum(1 for q, _ in members if q == p) for p in pipelines}
    picks = {p: key_rng(*repeat_key, "repeat", p).integers(0, n, size=n_boot) for p, n in n_rep.items() if n > 1}
    draws: dict[str, dict[str, list[np.ndarray]]] = {m: {p: [] for p in pipelines} for m in metrics}
    if enough:
        done = 0
        for W in unit_draws(scope.n_units, n_boot, rng):
            values = scope.metrics(W)
            block = {p: idx[done:done + W.shape[0]] for p, idx in picks.items()}
            for metric in metrics:
                for p, d in _by_pipeline(values, metric, block).items():
                    draws[metric][p].append(d)
            done += W.shape[0]
        draws = {m: {p: np.concatenate(v) for p, v in per.items() if v} for m, per in draws.items()}
        single = None
    else:
        single = scope.metrics(np.eye(scope.n_units))  # each unit alone: printed instead of a CI
    interval = _interval_text(scope, n_boot, level)
    rows = []
    for metric in metrics:
        est = _by_pipeline(point, metric)
        for p in pipelines:
            if p not in est:
                continue
            reps = np.array([point[(q, r)][metric][0] for q, r in members if q == p and metric in point[(q, r)]])
            lo, hi = percentile_interval(draws[metric][p], level) if enough and p in draws[metric] else (np.nan, np.nan)
            unit_values = ""
            if single is not None:
                per_unit = _by_pipeline(single, metric).get(p, np.array([]))
                unit_values = "; ".join(f"{n}: {'–' if not np.isfinite(v) else f'{v:.3f}'}"
                                        for n, v in zip(scope.unit_names, per_unit))
            rows.append({"pipeline": p, "group": group, "metric": metric, "value": float(est[p][0]),
                         "ci_low": lo, "ci_high": hi, "n_units": scope.n_reported, "unit": scope.unit,
                         "interval": interval + (REPEAT_DRAW_NOTE if enough and len(reps) > 1 else ""),
                         "unit_values": unit_values, "n_repeats": len(reps),
                         "repeat_sd": float(np.std(reps, ddof=1)) if len(reps) > 1 else np.nan,
                         "repeat_min": float(np.min(reps)) if len(reps) > 1 else np.nan,
                         "repeat_max": float(np.max(reps)) if len(reps) > 1 else np.nan})
    pair_rows = []
    for metric in paired:
        est = _by_pipeline(point, metric)
        for a, b in combinations([p for p in pipelines if p in est], 2):
            diff = float(est[a][0] - est[b][0])
            if enough and a in draws.get(metric, {}) and b in draws.get(metric, {}):
                lo, hi = percentile_interval(draws[metric][a] - draws[metric][b], level)
                verdict = (f"{a} better" if lo > 0 else f"{b} better" if hi < 0 else "no clear difference") \
                    if np.isfinite(lo) else "no interval"
            else:
                lo = hi = np.nan
                verdict = TOO_FEW
            note = REPEAT_DRAW_NOTE if enough and (a in picks or b in picks) else ""
            pair_rows.append({"group": group, "a": a, "b": b, "metric": metric, "difference": diff,
                              "ci_low": lo, "ci_high": hi, "n_units": scope.n_reported, "unit": scope.unit,
                              "interval": interval + note, "verdict": verdict})
    return rows, pair_rows


def _point_rows(values: pd.DataFrame, group: str, unit: str) -> list[dict]:
    """Count metrics (no interval): summed per pipeline over the scope (mean over repeats)."""
    rows = []
    for (p, metric), df in values.groupby(["pipeline", "metric"], sort=True):
        v = df.groupby("repeat")["value"].sum().mean()
        rows.append({"pipeline": p, "group": group, "metric": metric, "value": float(v), "ci_low": np.nan,
                     "ci_high": np.nan, "n_units": np.nan, "unit": unit, "interval": "count (no interval)",
                     "unit_values": "", "n_repeats": int(df["repeat"].nunique()), "repeat_sd": np.nan,
                     "repeat_min": np.nan, "repeat_max": np.nan})
    return rows


def _units_for(rows: pd.DataFrame, split: str) -> str:
    if split in ("donor", "leave_one_donor_out", "donor_pseudobulk"):
        return "donor"
    return "donor" if real_donors(rows) >= MIN_UNITS else "cell"


def summarize_predictions(predictions: pd.DataFrame, task: dict, n_boot: int = 2000, level: float = 0.95,
                          seed: int = 0, key: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summary rows (pooled scores with intervals) and paired differences of one dataset x task.

    Parameters
    ----------
    predictions
        Every pipeline's predictions of the task (:func:`sclinbench.tasks.evaluate` output).
    task
        The task spec (``kind``, ``split``).
    n_boot, level, seed
        Bootstrap draws, interval coverage, seed; ``key`` (e.g. ``"dataset/task"``) enters the seed
        of the draws, which depend on the units only (every pipeline sees the same draws).

    Returns
    -------
    ``(summary, paired)`` with :data:`SUMMARY_COLUMNS` and :data:`PAIRED_COLUMNS`. ``group`` is
    ``""`` for the task's headline scope; cross-species tasks add ``"same-species"`` (mean of the
    within-species cross-validations), ``"incl. same-species"`` (mean over every pair, diagonal
    included -- the paper's average), ``"a->b"`` / ``"a->a"`` per pair and ``"a->*"`` /
    ``"a->* incl. same-species"`` per training species.
    """
    preds = _with_repeat(predictions)
    kind, split = task["kind"], task["split"]
    paired = list(PAIRED_METRICS.get(kind, DEFAULT_PAIRED))
    summary, pairs = [], []

    def run(scope, metrics, group, paired_metrics=()):
        t0 = time.perf_counter()
        rng = key_rng(seed, key, group)
        s, p = resample(scope, list(metrics), n_boot, level, rng, group, list(paired_metrics),
                        repeat_key=(seed, key, group))
        summary.extend(s)
        pairs.extend(p)
        log.info("%s, %s: %d %s, %d pipeline-repeats, %s in %.1f s", key or "scores", group or "headline",
                 scope.n_reported, plural(scope.unit), len(getattr(scope, "members", None) or scope.table),
                 f"{n_boot} draws" if scope.n_units >= MIN_UNITS else "no interval", time.perf_counter() - t0)

    if kind == "novel_type":
        per_type = _unit_values(preds, kind)
        metric_names = sorted(set(per_type["metric"]) - set(COUNT_METRICS))
        run(MeanScope(per_type[per_type.metric.isin(metric_names)], "held-out type"), metric_names, "", paired)
        summary.extend(_point_rows(per_type[per_type.metric.isin(["n_test_cells", "n_unassigned", "n_fallback"])],
                                   "", "held-out type"))
    elif kind == "cross_species":
        _cross_species(preds, split, run, summary)
    elif split in REPEATED_SPLITS:
        units = _units_for(preds, split)
        run(RepeatedHoldoutScope(preds, units, key or "predictions"), POOLED_METRICS, "", paired)
        distinct = preds.groupby(["pipeline", "repeat"])["cell_id"].nunique().rename("value").reset_index()
        summary.extend(_point_rows(distinct.assign(metric="n_test_cells"), "", units))
    elif split in UNIT_MEAN_SPLITS:
        where = key or "predictions"
        units = "donor"
        pooled = PooledScope(preds, "donor", "union", where)
        unit = held_out_unit(preds)
        if unit is None:  # single-class folds (one donor of a donor-level label each): pooled only
            run(pooled, POOLED_METRICS, "", paired)
        else:
            run(unit_mean_scope(pooled if unit == "donor" else PooledScope(preds, unit, "union", where)),
                POOLED_METRICS, "", paired)
            run(pooled, POOLED_METRICS, POOLED_GROUP, paired)
        _count_rows(preds, units, summary)
    else:
        units = _units_for(preds, split)
        where = key or "predictions"
        run(PooledScope(preds, units, "union", where), POOLED_METRICS, "", paired)
        _count_rows(preds, units, summary)
    return (pd.DataFrame(summary, columns=SUMMARY_COLUMNS), pd.DataFrame(pairs, columns=PAIRED_COLUMNS))


def _count_rows(preds: pd.DataFrame, units: str, summary: list) -> None:
    """``n_test_cells`` and ``n_fallback`` per pipeline (counts, no interval)."""
    counts = preds.groupby(["pipeline", "repeat"]).size().rename("value").reset_index()
    summary.extend(_point_rows(counts.assign(metric="n_test_cells"), "", units))
    classes = preds.groupby(["pipeline", "repeat"])["y_true"].nunique().rename("value").reset_index()
    summary.extend(_point_rows(classes.assign(metric="n_classes"), "", units))
    fallback = [(p, r, "n_fallback", n_fallback(df)) for (p, r), df in preds.groupby(["pipeline", "repeat"])]
    summary.extend(_point_rows(pd.DataFrame(fallback, columns=["pipeline", "repeat", "metric", "value"]), "",
                               units))


def _unit_values(preds: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Per-fold scores of each group as ``pipeline, repeat, unit, metric, value``."""
    rows = []
    for (p, r, g), df in preds.groupby(["pipeline", "repeat", "group"], sort=True):
        for metric, value in score_rows(df, kind, str(g)).items():
            rows.append((p, int(r), str(g), metric, value))
    return pd.DataFrame(rows, columns=["pipeline", "repeat", "unit", "metric", "value"])


def _cross_species(preds: pd.DataFrame, split: str, run, summary: list) -> None:
    """Per-pair pooled scopes, then means over pairs / species (see :func:`summarize_predictions`)."""
    groups = sorted(pd.unique(preds["group"].astype(str)))
    per_repeat = []

    def points(scope, group, rename=None, also_all_labels=False):
        for (p, r), values in scope.metrics(np.ones((1, scope.n_units))).items():
            for m, v in values.items():
                if rename is not None and m not in rename:
                    continue
                per_repeat.append((p, r, group, (rename or {}).get(m, m), float(v[0])))
            if also_all_labels:  # within a species every target label is a training label
                per_repeat.append((p, r, group, "macro_f1_all_target_labels", float(values["macro_f1"][0])))

    for g in groups:
        rows = preds[preds["group"] == g]
        units = "donor" if real_donors(rows) >= MIN_UNITS else "cell"
        if is_diagonal(g):
            scope = PooledScope(rows, units, "union", f"pair {g}")
            run(scope, POOLED_METRICS, g)
            points(scope, g, also_all_labels=True)
            continue
        shared = rows[_in_training(rows)]
        if len(shared):
            scope = PooledScope(shared, units, "truth", f"pair {g}")
            run(scope, POOLED_METRICS, g)
            points(scope, g)
        everything = PooledScope(rows, units, "truth", f"pair {g} (all target labels)")
        n_before = len(summary)
        run(everything, ["macro_f1"], g)
        for row in summary[n_before:]:
            row["metric"] = "macro_f1_all_target_labels"
        points(everything, g, {"macro_f1": "macro_f1_all_target_labels"})
        counts = []
        for (p, r), df in rows.groupby(["pipeline", "repeat"]):
            counts += [(p, r, "n_test_cells", len(df)), (p, r, "n_fallback", n_fallback(df)),
                       (p, r, "n_cells_unseen_label", int((~_in_training(df)).sum()))]
        summary.extend(_point_rows(pd.DataFrame(counts, columns=["pipeline", "repeat", "metric", "value"]),
                                   g, units))
    values = pd.DataFrame(per_repeat, columns=["pipeline", "repeat", "unit", "metric", "value"])
    off = [g for g in groups if not is_diagonal(g)]
    diag = [g for g in groups if is_diagonal(g)]
    metrics = [m for m in POOLED_METRICS + ("macro_f1_all_target_labels",) if m in set(values["metric"])]
    paired = list(DEFAULT_PAIRED)
    if off:
        run(MeanScope(values[values.unit.isin(off)], "species pair"), metrics, "", paired)
    if diag:
        same = values[values.unit.isin(diag)].assign(unit=lambda d: d["unit"].str.split("->").str[0])
        run(MeanScope(same, "species"), [m for m in metrics if m != "macro_f1_all_target_labels"],
            "same-species", paired)
        if off:
            run(MeanScope(values, "species pair"), metrics, "incl. same-species", paired)
    for a in sorted({g.split("->")[0] for g in groups}):
        mine = values[values.unit.str.startswith(f"{a}->")]
        others = mine[~mine.unit.map(is_diagonal)]
        if len(others):
            run(MeanScope(others, "target species"), metrics, f"{a}->*")
        if len(mine) > len(others) and len(others):
            run(MeanScope(mine, "target species"), metrics, f"{a}->* incl. same-species")
