"""Intervals for the mean over a few held-out units (donors, folds, species pairs, held-out types).

A donor-held-out split of 4 donors has 4 numbers, one per held-out unit; the reported score is
their mean. The percentile bootstrap over 4 units cannot cover at its nominal rate (it draws one
of only 35 distinct resamples and ignores the t-distribution's wider tails), and puts the estimate
at the edge of its own interval when the scores are near 1. Here the interval is a Student-t
interval over the per-unit values, computed on the logit scale (delta method: the standard error
of the mean divided by ``m (1 - m)``) and mapped back, so it stays inside [0, 1] and is asymmetric
near the bounds. :func:`coverage_table` (``benchmarks/bench_few_units.py``) measures its coverage
on a simulation where the true value is known, beside the percentile bootstrap, BCa and the plain
t-interval; the figures are in ``docs/statistics.md``.

Shuffled-label controls have ``repeats`` label permutations; :func:`unit_mean_interval` adds the
variance over permutations of the mean over units (``extra_var``), so the control's interval
includes what a new permutation would score, not only the spread of the units.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

#: Scales :func:`t_interval` can work on.
SCALES = ("logit", "identity")
#: The scale the score stage uses (chosen by :func:`coverage_table`, see docs/statistics.md).
DEFAULT_SCALE = "logit"
_EPS = 1e-9


def _logit(p):
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def t_interval(mean: float, se: float, n: int, level: float = 0.95, scale: str = DEFAULT_SCALE,
               bounded: bool = True) -> tuple[float, float]:
    """``mean +- t_{n-1} * se``, on the logit scale when ``scale="logit"`` and ``bounded``.

    ``bounded=False`` (differences of two scores) uses the identity scale, clipped to [-1, 1]. An estimate at a
    bound (0 or 1) or without spread gives ``(mean, mean)``. NaN when ``n < 2``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if n < 2 or not np.isfinite(mean) or not np.isfinite(se):
        return float("nan"), float("nan")
    q = float(stats.t.ppf(0.5 + level / 2, n - 1))
    if se <= 0:
        return float(mean), float(mean)
    if scale == "logit" and bounded:
        if mean <= 0 or mean >= 1:
            return float(mean), float(mean)
        centre, half = _logit(mean), q * se / (mean * (1 - mean))
        return float(_expit(centre - half)), float(_expit(centre + half))
    lo, hi = mean - q * se, mean + q * se
    bound = (0.0, 1.0) if bounded else (-1.0, 1.0)   # a difference of two scores lies in [-1, 1]
    return float(max(lo, bound[0])), float(min(hi, bound[1]))


def unit_mean_interval(values: np.ndarray, level: float = 0.95, scale: str = DEFAULT_SCALE,
                       bounded: bool = True, extra_var: float = 0.0) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the mean over units of ``values`` (NaN units left out).

    ``extra_var`` adds a variance to that of the mean (a shuffled control's variance over label
    permutations). Fewer than 2 finite values: no interval (the caller also refuses < 3 units).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size < 2:
        return mean, float("nan"), float("nan")
    se = float(np.sqrt(v.var(ddof=1) / v.size + max(extra_var, 0.0)))
    lo, hi = t_interval(mean, se, v.size, level, scale, bounded)
    return mean, lo, hi


def repeat_variance(per_repeat_units: np.ndarray) -> float:
    """Variance over repeats (rows) of the mean over units (columns): the permutation variance of a
    shuffled control's score; 0 for one repeat."""
    a = np.asarray(per_repeat_units, dtype=float)
    if a.ndim != 2 or a.shape[0] < 2:
        return 0.0
    with np.errstate(invalid="ignore"):
        means = np.nanmean(a, axis=1)
    means = means[np.isfinite(means)]
    return float(means.var(ddof=1)) if means.size > 1 else 0.0


# --------------------------------------------------------------------------- simulation

def simulate_units(rng: np.random.Generator, n_units: int, true_mean: float, concentration: float = 20.0,
                   cells: int = 200) -> np.ndarray:
    """Per-unit scores of one simulated study: each unit's own accuracy ``p_u ~ Beta`` with mean
    ``true_mean`` (donors differ), observed as ``Binomial(cells, p_u) / cells``. The true value of
    the mean over units is ``true_mean``."""
    a, b = true_mean * concentration, (1 - true_mean) * concentration
    p = rng.beta(a, b, size=n_units)
    return rng.binomial(cells, p) / cells


def _percentile(v, level, rng, n_boot):
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    means = v[idx].mean(axis=1)
    return tuple(np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def _bca(v, level, rng, n_boot):
    if np.ptp(v) == 0:
        return float(v[0]), float(v[0])
    res = stats.bootstrap((v,), np.mean, confidence_level=level, n_resamples=n_boot, method="BCa",
                          random_state=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


METHODS = {
    "percentile bootstrap": lambda v, level, rng, n_boot: _percentile(v, level, rng, n_boot),
    "BCa bootstrap": lambda v, level, rng, n_boot: _bca(v, level, rng, n_boot),
    "t": lambda v, level, rng, n_boot: unit_mean_interval(v, level, "identity")[1:],
    "t, logit scale": lambda v, level, rng, n_boot: unit_mean_interval(v, level, "logit")[1:],
}


def coverage_table(n_units=(3, 4, 6, 10, 24), true_means=(0.5, 0.8, 0.95), n_sim: int = 1000,
                   level: float = 0.95, n_boot: int = 1000, seed: int = 0, concentration: float = 20.0,
                   cells: int = 200, methods=tuple(METHODS)) -> list[dict]:
    """Coverage of each interval method for the mean over ``n`` units (:func:`simulate_units`):
    the share of ``n_sim`` simulated studies whose interval contains the true value, and the
    median width. Rows ``n_units, true_mean, method, coverage, median_width``."""
    rows = []
    for n in n_units:
        for mu in true_means:
            rng = np.random.default_rng([seed, n, int(round(mu * 1000))])
            studies = [simulate_units(rng, n, mu, concentration, cells) for _ in range(n_sim)]
            for name in methods:
                hit, widths = 0, []
                boot_rng = np.random.default_rng([seed, n, int(round(mu * 1000)), 1])
                for v in studies:
                    lo, hi = METHODS[name](v, level, boot_rng, n_boot)
                    hit += bool(lo <= mu <= hi)
                    widths.append(hi - lo)
                rows.append({"n_units": n, "true_mean": mu, "method": name, "coverage": hit / n_sim,
                             "median_width": float(np.median(widths))})
    return rows


# --------------------------------------------------------------------------- scopes: means over units

class MeanScope:
    """The mean over units of per-unit values (species pairs, held-out types, species, held-out
    donors or folds of a donor split), with Student-t intervals (:mod:`sclinbench.evaluate.few_units`)."""

    pooled = False
    t_interval = True

    def __init__(self, values: pd.DataFrame, unit: str):
        """``values``: columns ``pipeline, repeat, unit, metric, value``."""
        self.unit = unit
        self.unit_names = sorted(pd.unique(values["unit"]))
        self.n_units = self.n_reported = len(self.unit_names)
        self.note = ""
        self.table = {}
        for (pipeline, repeat, metric), df in values.groupby(["pipeline", "repeat", "metric"], sort=True):
            v = df.set_index("unit")["value"].reindex(self.unit_names).to_numpy(float)
            self.table.setdefault((str(pipeline), int(repeat)), {})[metric] = v

    def metrics(self, W: np.ndarray) -> dict[tuple[str, int], dict[str, np.ndarray]]:
        out = {}
        for key, per_metric in self.table.items():
            values = {}
            for metric, v in per_metric.items():
                ok = np.isfinite(v)
                with np.errstate(invalid="ignore", divide="ignore"):
                    values[metric] = np.where((W[:, ok]).sum(1) > 0,
                                              (W[:, ok] @ v[ok]) / np.maximum(W[:, ok].sum(1), 1e-300), np.nan)
            out[key] = values
        return out


def held_out_unit(preds: pd.DataFrame) -> str | None:
    """The unit a donor split holds out: ``"donor"`` when every donor's test cells hold >= 2 true
    classes (each donor has a score of its own), else ``"fold"`` when every fold's do (donor-level
    labels such as disease state: a fold holds out donors of every class,
    :func:`sclinbench.evaluate.splits.class_balanced_donor_folds`), else None (folds of one class, e.g.
    predictions of one donor per fold: only the pooled figure has a macro score)."""
    first = preds[["pipeline", "repeat"]].drop_duplicates().iloc[0]
    ref = preds[(preds["pipeline"] == first["pipeline"]) & (preds["repeat"] == first["repeat"])]
    if (ref.groupby(ref["donor_id"].astype(str))["y_true"].nunique() >= 2).all():
        return "donor"
    if (ref.groupby("fold")["y_true"].nunique() >= 2).all():
        return "fold"
    return None


def unit_mean_scope(pooled) -> MeanScope:
    """The mean over a pooled scope's (:class:`sclinbench.evaluate.scopes.PooledScope`) units of each
    unit's own score (every metric recomputed from that unit's predictions alone), as a
    :class:`MeanScope`."""
    single = pooled.metrics(np.eye(pooled.n_units))
    rows = [(p, r, name, metric, float(v))
            for (p, r), values in single.items() for metric, vec in values.items()
            for name, v in zip(pooled.unit_names, vec)]
    return MeanScope(pd.DataFrame(rows, columns=["pipeline", "repeat", "unit", "metric", "value"]), pooled.unit)


# --------------------------------------------------------------------------- summary rows of a mean scope

#: Fewer units than this: no interval (the per-unit values instead).
MIN_UNITS = 3
TOO_FEW = "too few units for an interval"
#: Said of a shuffled control's interval (t path; the bootstrap path says its own).
PERMUTATION_NOTE = "; the shuffled control's interval adds the variance over its label permutations"


def _per_unit(table: dict, pipeline: str, metric: str) -> tuple[np.ndarray, float, int] | None:
    """Per-unit values of one pipeline (mean over its repeats), the permutation variance, repeats."""
    reps = [v[metric] for (p, _), v in sorted(table.items()) if p == pipeline and metric in v]
    if not reps:
        return None
    A = np.vstack(reps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a unit without a value in every repeat
        per_unit = np.nanmean(A, axis=0) if len(reps) > 1 else A[0]
    return per_unit, repeat_variance(A), len(reps)


def mean_scope_rows(scope, metrics, level: float, group: str, paired, interval: str,
                    point: dict, by_pipeline) -> tuple[list[dict], list[dict]]:
    """Summary and paired rows of a mean-over-units scope (``scope.table``: ``(pipeline, repeat) ->
    metric -> per-unit values``), with Student-t intervals on the logit scale (:func:`unit_mean_interval`)
    over the units with a value, and the per-unit values listed in ``unit_values``."""
    table = scope.table
    pipelines = sorted({p for p, _ in table})
    rows, pair_rows = [], []
    for metric in metrics:
        est = by_pipeline(point, metric)
        for p in pipelines:
            got = _per_unit(table, p, metric)
            if p not in est or got is None:
                continue
            per_unit, extra, n_rep = got
            n = int(np.isfinite(per_unit).sum())
            lo = hi = float("nan")
            if n >= MIN_UNITS:
                _, lo, hi = unit_mean_interval(per_unit, level, extra_var=extra)
            reps = np.array([point[(q, r)][metric][0] for q, r in sorted(point) if q == p and metric in point[(q, r)]])
            text = interval if n >= MIN_UNITS else f"{TOO_FEW} ({n} {scope.unit if n == 1 else _plural(scope.unit)})"
            if n_rep > 1 and n >= MIN_UNITS:
                text += PERMUTATION_NOTE
            rows.append({"pipeline": p, "group": group, "metric": metric, "value": float(est[p][0]),
                         "ci_low": lo, "ci_high": hi, "n_units": n, "unit": scope.unit, "interval": text,
                         "unit_values": "; ".join(f"{u}: {'–' if not np.isfinite(v) else f'{v:.3f}'}"
                                                  for u, v in zip(scope.unit_names, per_unit)),
                         "n_repeats": len(reps),
                         "repeat_sd": float(np.std(reps, ddof=1)) if len(reps) > 1 else np.nan,
                         "repeat_min": float(np.min(reps)) if len(reps) > 1 else np.nan,
                         "repeat_max": float(np.max(reps)) if len(reps) > 1 else np.nan})
    for metric in paired:
        est = by_pipeline(point, metric)
        present = [p for p in pipelines if p in est]
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                ga, gb = _per_unit(table, a, metric), _per_unit(table, b, metric)
                if ga is None or gb is None:
                    continue
                d = ga[0] - gb[0]
                n = int(np.isfinite(d).sum())
                diff = float(est[a][0] - est[b][0])
                if n >= MIN_UNITS:
                    _, lo, hi = unit_mean_interval(d, level, bounded=False, extra_var=ga[1] + gb[1])
                    verdict = (f"{a} better" if lo > 0 else f"{b} better" if hi < 0 else "no clear difference") \
                        if np.isfinite(lo) else "no interval"
                    text = interval + (PERMUTATION_NOTE if max(ga[2], gb[2]) > 1 else "")
                else:
                    lo = hi = float("nan")
                    verdict, text = TOO_FEW, f"{TOO_FEW} ({n} {_plural(scope.unit)})"
                pair_rows.append({"group": group, "a": a, "b": b, "metric": metric, "difference": diff,
                                  "ci_low": lo, "ci_high": hi, "n_units": n, "unit": scope.unit,
                                  "interval": text, "verdict": verdict})
    return rows, pair_rows


def _plural(unit: str) -> str:
    return unit if unit.endswith("species") else unit + "s"
