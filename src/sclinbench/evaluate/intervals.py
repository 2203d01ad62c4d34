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
  unit once and recomputes every split from it (:class:`RepeatedHoldoutScope`); ``n_test_cells``
  counts distinct cells.
- **Controls**: a shuffled-label control has ``repeats`` permutations per fold; its estimate is the
  mean over repeats (each repeat a full set of out-of-fold predictions), its spread over repeats is
  reported beside it, and in each bootstrap draw it is the mean over repeats on the same units.

Confusion-matrix metrics are recomputed per draw from per-unit confusion counts (a draw is a
vector of unit multiplicities ``w``; the draw's confusion matrix is ``w @ counts``), AUROC from
per-unit pair counts (``w^T A w`` over the ``U x U`` matrix ``A`` of positive-over-negative pairs,
for up to :data:`PAIR_MATRIX_MAX_UNITS` units) or by re-weighting the sorted scores (more units)
-- never by calling scikit-learn once per draw. When the units are cells and there are more than
:data:`DIRECT_MAX_CELLS`, the cells are resampled in :data:`CELL_BLOCKS` seeded random blocks: for
independent cells this has the variance of the cell bootstrap (the interval text says so) and keeps
a 100,000-cell task at seconds.
"""

from __future__ import annotations

import logging
import time
import warnings
import zlib
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError
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
    confusion_metrics,
    encode,
    label_index,
    n_fallback,
    score_rows,
)
from sclinbench.evaluate.splits import REPEATED_SPLITS
from sclinbench.workflow.contracts import PAIRED_COLUMNS, SCORE_PREFIX, SUMMARY_COLUMNS, is_diagonal

log = logging.getLogger(__name__)

PAIR_MATRIX_MAX_UNITS = 256     # AUROC per draw via U x U pair counts up to this many units
DIRECT_MAX_CELLS = 2000         # cells as units: each cell its own unit up to this many ...
CELL_BLOCKS = 256               # ... beyond, random blocks of cells (same variance for independent cells)
_CHUNK_ELEMENTS = 4_000_000     # draws x units generated at a time
POOLED_METRICS = CONFUSION_METRICS + ("auroc_ovr",)
#: Metrics compared pair-wise (paired differences), per task kind.
PAIRED_METRICS = {"novel_type": ("novelty_auroc", "macro_f1")}
DEFAULT_PAIRED = ("macro_f1", "auroc_ovr")
#: Group of the pooled figure shown beside a donor split's headline (the mean over held-out units).
POOLED_GROUP = "pooled over donors"
#: Splits whose headline is the mean over the held-out units (donors, or folds holding out donors
#: of every class), with a Student-t interval (:mod:`sclinbench.evaluate.few_units`).
UNIT_MEAN_SPLITS = ("donor", "leave_one_donor_out", "donor_pseudobulk")


# --------------------------------------------------------------------------- draws

def unit_draws(n_units: int, n_boot: int, rng: np.random.Generator):
    """Yield blocks of bootstrap draws: ``(b, n_units)`` multiplicities, each row summing to ``n_units``."""
    chunk = max(1, min(n_boot, _CHUNK_ELEMENTS // max(n_units, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n_units, size=(b, n_units))
        flat = (idx + (np.arange(b) * n_units)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n_units).reshape(b, n_units).astype(np.float32)
        done += b


def key_rng(seed: int, *key) -> np.random.Generator:
    """A generator that depends on ``seed`` and a key only (adding a pipeline changes no draw)."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(map(str, key)).encode())])


def percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(d, [alpha, 1 - alpha])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- weighted AUROC

@dataclass
class _AucClass:
    """One class of one pipeline-repeat: what a weighted AUROC needs."""
    pair: np.ndarray | None = None      # U x U positive-over-negative pair counts (few units)
    pos: np.ndarray | None = None       # U positives per unit
    neg: np.ndarray | None = None       # U negatives per unit
    order: np.ndarray | None = None     # row order by score (many units)
    codes: np.ndarray | None = None     # unit of each sorted row
    is_pos: np.ndarray | None = None    # sorted rows: positive?
    starts: np.ndarray | None = None    # first sorted row of each tie block


def _auc_class(s: np.ndarray, positive: np.ndarray, codes: np.ndarray, n_units: int) -> _AucClass:
    if n_units <= PAIR_MATRIX_MAX_UNITS:
        # pair[d, e] = sum over positives i of unit d and negatives j of unit e of [s_j < s_i] + [s_j = s_i] / 2
        sp_, up = s[positive], codes[positive]
        by_score = np.argsort(sp_, kind="mergesort")     # sorted queries search faster
        sp_, up = sp_[by_score], up[by_score]
        pair = np.zeros((n_units, n_units))
        neg_s, neg_u = s[~positive], codes[~positive]
        order = np.argsort(neg_u, kind="mergesort")
        neg_s, neg_u = neg_s[order], neg_u[order]
        bounds = np.searchsorted(neg_u, np.arange(n_units + 1))
        for e in range(n_units):
            ne = np.sort(neg_s[bounds[e]:bounds[e + 1]])
            if ne.size == 0:
                continue
            left = np.searchsorted(ne, sp_, "left")
            below = 0.5 * (left + np.searchsorted(ne, sp_, "right"))
            pair[:, e] = np.bincount(up, weights=below, minlength=n_units)
        return _AucClass(pair=pair, pos=np.bincount(up, minlength=n_units).astype(float),
                         neg=np.bincount(codes[~positive], minlength=n_units).astype(float))
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    return _AucClass(order=order, codes=codes[order], is_pos=positive[order], starts=starts)


def _auc_draws(c: _AucClass, W: np.ndarray) -> np.ndarray:
    """AUROC of one class under unit multiplicities ``W`` (b x U); NaN without both outcomes."""
    if c.pair is not None:
        num = ((W @ c.pair) * W).sum(axis=1)
        den = (W @ c.pos) * (W @ c.neg)
    else:
        Wr = W[:, c.codes]
        Wp = np.where(c.is_pos, Wr, 0.0)
        Wn = Wr - Wp
        P, N = Wp.sum(axis=1), Wn.sum(axis=1)
        den = P * N
        if c.starts.size == 1:                     # one score for every cell: 0.5 by definition
            num = 0.5 * den
        elif c.starts.size == c.codes.size:        # no ties: negatives below each positive
            num = (Wp * np.cumsum(Wn, axis=1)).sum(axis=1)
        else:
            Pb = np.add.reduceat(Wp, c.starts, axis=1)
            Nb = np.add.reduceat(Wn, c.starts, axis=1)
            num = (Pb * (np.cumsum(Nb, axis=1) - 0.5 * Nb)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


# --------------------------------------------------------------------------- pooled scopes

@dataclass
class _Member:
    """One pipeline-repeat of a pooled scope, rows aligned with the scope's units."""
    pipeline: str
    repeat: int
    counts: sp.csr_matrix                      # U x (L+1)^2 confusion counts per unit
    auc: list[_AucClass] = field(default_factory=list)


def _unit_codes(df: pd.DataFrame, units: str) -> tuple[np.ndarray, list[str]]:
    if units == "fold":  # a fold's held-out donors, named "d1+d5"
        folds = df["fold"].astype(int).to_numpy()
        names, codes = np.unique(folds, return_inverse=True)
        held = df.groupby(folds)["donor_id"].agg(lambda d: "+".join(sorted(pd.unique(d.astype(str)))))
        return codes, [str(held[n]) for n in names]
    if units == "cell":
        keys = (df["fold"].astype(str) + "\x1f" + df["cell_id"].astype(str)).to_numpy()
    else:
        keys = df["donor_id"].astype(str).to_numpy()
    names, codes = np.unique(keys, return_inverse=True)
    return codes, [n.split("\x1f")[-1] for n in names]


def real_donors(df: pd.DataFrame) -> int:
    if "donor_id" not in df.columns:
        return 0
    d = df["donor_id"].astype(str)
    return int(d[~d.isin(["unknown", "", "nan"])].nunique())


class PooledScope:
    """Metrics recomputed from pooled out-of-fold predictions, per bootstrap draw of units.

    Parameters
    ----------
    rows
        Predictions of every pipeline (and repeat) for the scope's test cells; every pipeline-repeat
        must have the same ``(fold, cell_id)`` rows.
    units
        ``"donor"`` (resample donors; every row needs a real ``donor_id``) or ``"cell"``.
    mode
        Label set of the macro averages (:func:`sclinbench.evaluate.metrics.confusion_metrics`).
    where
        Name used in messages.
    """

    pooled = True

    def __init__(self, rows: pd.DataFrame, units: str, mode: str = "union", where: str = ""):
        rows = _with_repeat(rows)
        self.mode, self.unit = mode, units
        members = list(rows.groupby(["pipeline", "repeat"], sort=True))
        if not members:
            raise SclinbenchError(f"{where}: no predictions to score")
        ref = members[0][1].sort_values(["fold", "cell_id"], kind="mergesort")
        self.codes, self.unit_names = _unit_codes(ref, units)
        self.n_units = self.n_reported = len(self.unit_names)
        self.note = ""
        if units == "cell" and self.n_units > DIRECT_MAX_CELLS:
            self.codes = np.random.default_rng(0).permutation(self.n_units) % CELL_BLOCKS
            self.note = (f", cells resampled in {CELL_BLOCKS} seeded random blocks of about "
                         f"{self.n_units // CELL_BLOCKS} cells")
            self.n_units = CELL_BLOCKS
            self.unit_names = [f"block {i}" for i in range(CELL_BLOCKS)]
        self.labels = label_index(rows["y_true"]) if mode == "truth" else label_index(rows["y_true"], rows["y_pred"])
        L = len(self.labels)
        auc_labels = set(rows["y_true"].astype(str)) & set(self.labels)
        key = ref[["fold", "cell_id"]].to_numpy()
        self.members: list[_Member] = []
        for (pipeline, repeat), df in members:
            df = df.sort_values(["fold", "cell_id"], kind="mergesort")
            if len(df) != len(ref) or not (df[["fold", "cell_id"]].to_numpy() == key).all():
                raise SclinbenchError(
                    f"{where}: pipeline '{pipeline}' (repeat {repeat}) has predictions for other test cells "
                    f"than '{members[0][0][0]}'; the predictions files are stale: delete them and re-run"
                )
            t = encode(df["y_true"].to_numpy(str), self.labels)
            p = encode(df["y_pred"].to_numpy(str), self.labels)
            k = L + 1
            counts = sp.csr_matrix((np.ones(len(df)), (self.codes, t * k + p)), shape=(self.n_units, k * k))
            counts.sum_duplicates()
            member = _Member(str(pipeline), int(repeat), counts)
            y = df["y_true"].to_numpy(str)
            for col in sorted(c for c in df.columns if c.startswith(SCORE_PREFIX)):
                label = col[len(SCORE_PREFIX):]
                if label not in auc_labels:
                    continue
                s = df[col].to_numpy(float)
                ok = np.isfinite(s)
                positive = y[ok] == label
                if not ok.any() or positive.all() or not positive.any():
                    continue
                member.auc.append(_auc_class(s[ok], positive, self.codes[ok], self.n_units))
            self.members.append(member)

    def metrics(self, W: np.ndarray) -> dict[tuple[str, int], dict[str, np.ndarray]]:
        """Every pooled metric of every pipeline-repeat for unit multiplicities ``W`` (b x U)."""
        out = {}
        k = len(self.labels) + 1
        for m in self.members:
            C = np.asarray((m.counts.T @ W.T).T).reshape(W.shape[0], k, k)
            values = confusion_metrics(C, self.mode)
            if m.auc:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # draws without both outcomes: NaN
                    values["auroc_ovr"] = np.nanmean(np.vstack([_auc_draws(c, W) for c in m.auc]), axis=0)
            else:
                values["auroc_ovr"] = np.full(W.shape[0], np.nan)
            out[(m.pipeline, m.repeat)] = values
        return out


class RepeatedHoldoutScope:
    """The mean over repeated hold-out splits of each split's metric, per bootstrap draw of units.

    A ``stratified_holdout`` split (:func:`sclinbench.evaluate.splits.stratified_holdout`) tests a cell in
    several splits, so pooling its predictions would count that cell once per split as if it were
    that many independent units. Here each split keeps its own confusion counts and AUROC inputs,
    indexed by one shared set of units (``cell_id`` or ``donor_id``, the same unit in every split):
    a draw gives every unit one multiplicity, each split's metric is recomputed from its test rows
    weighted by it, and the draw's value is the mean over the splits -- the paper's statistic (the
    mean of the per-split scores), with an interval that resamples each distinct unit once. More than
    :data:`DIRECT_MAX_CELLS` cells are resampled in :data:`CELL_BLOCKS` seeded random blocks (a cell
    in the same block in every split), as in :class:`PooledScope`. Per-split values are the per-fold
    rows of ``metrics.tsv``.

    Parameters are those of :class:`PooledScope`; macro averages run over the labels true or
    predicted in each split (scikit-learn's default per split).
    """

    pooled = False

    def __init__(self, rows: pd.DataFrame, units: str, where: str = ""):
        rows = _with_repeat(rows)
        self.mode, self.unit = "union", units
        members = list(rows.groupby(["pipeline", "repeat"], sort=True))
        if not members:
            raise SclinbenchError(f"{where}: no predictions to score")
        column = "cell_id" if units == "cell" else "donor_id"
        names, codes = np.unique(rows[column].astype(str).to_numpy(), return_inverse=True)
        unit_of = pd.Series(codes, index=rows.index)
        self.unit_names = list(names)
        self.n_units = self.n_reported = len(names)
        block = np.arange(self.n_units)
        self.folds = sorted(pd.unique(rows["fold"]))
        self.note = (f", each of the {len(self.folds)} hold-out splits scored on its own resampled test "
                     f"rows, then averaged over the splits (a {units} tested in several splits is one unit)")
        if units == "cell" and self.n_units > DIRECT_MAX_CELLS:
            block = np.random.default_rng(0).permutation(self.n_units) % CELL_BLOCKS
            self.note += (f"; cells resampled in {CELL_BLOCKS} seeded random blocks of about "
                          f"{self.n_units // CELL_BLOCKS} cells")
            self.n_units = CELL_BLOCKS
            self.unit_names = [f"block {i}" for i in range(CELL_BLOCKS)]
        self.labels = label_index(rows["y_true"], rows["y_pred"])
        self.auc_labels = sorted(set(rows["y_true"].astype(str)) & set(self.labels))
        k = len(self.labels) + 1
        ref_pipeline = members[0][0][0]
        ref_keys = {}
        self.members: list[dict] = []
        for (pipeline, repeat), df in members:
            per_fold = []
            for fold in self.folds:
                part = df[df["fold"] == fold].sort_values("cell_id", kind="mergesort")
                keys = part["cell_id"].to_numpy(str)
                if fold not in ref_keys:
                    ref_keys[fold] = keys
                elif len(keys) != len(ref_keys[fold]) or not (keys == ref_keys[fold]).all():
                    raise SclinbenchError(
                        f"{where}: pipeline '{pipeline}' (repeat {repeat}) has predictions for other test cells "
                        f"of split {fold} than '{ref_pipeline}'; the predictions files are stale: delete them "
                        f"and re-run")
                u = block[unit_of.loc[part.index].to_numpy()]
                t = encode(part["y_true"].to_numpy(str), self.labels)
                p = encode(part["y_pred"].to_numpy(str), self.labels)
                counts = sp.csr_matrix((np.ones(len(part)), (u, t * k + p)), shape=(self.n_units, k * k))
                counts.sum_duplicates()
                scores = {c[len(SCORE_PREFIX):]: part[c].to_numpy(float) for c in part.columns
                          if c.startswith(SCORE_PREFIX) and c[len(SCORE_PREFIX):] in self.auc_labels}
                per_fold.append({"counts": counts, "units": u, "y": part["y_true"].to_numpy(str), "scores": scores})
            self.members.append({"pipeline": str(pipeline), "repeat": int(repeat), "folds": per_fold})

    def _auroc(self, fold: dict, W: np.ndarray) -> np.ndarray:
        """Mean one-vs-rest AUROC of one split under ``W``; the inputs of each class are built here
        and dropped after use (a stored U x U pair matrix per class, split and pipeline adds up)."""
        values = []
        for label, s in fold["scores"].items():
            ok = np.isfinite(s)
            positive = fold["y"][ok] == label
            if not ok.any() or positive.all() or not positive.any():
                continue
            values.append(_auc_draws(_auc_class(s[ok], positive, fold["units"][ok], self.n_units), W))
        if not values:
            return np.full(W.shape[0], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # draws without both outcomes: NaN
            return np.nanmean(np.vstack(values), axis=0)

    def metrics(self, W: np.ndarray) -> dict[tuple[str, int], dict[str, np.ndarray]]:
        """Every metric of every pipeline-repeat (mean over the splits) for unit multiplicities ``W``."""
        out = {}
        k = len(self.labels) + 1
        for m in self.members:
            per_split: dict[str, list[np.ndarray]] = {}
            for fold in m["folds"]:
                C = np.asarray((fold["counts"].T @ W.T).T).reshape(W.shape[0], k, k)
                values = confusion_metrics(C, self.mode)
                values["auroc_ovr"] = self._auroc(fold, W)
                for metric, v in values.items():
                    per_split.setdefault(metric, []).append(v)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a draw leaving a split one class: NaN
                out[(m["pipeline"], m["repeat"])] = {metric: np.nanmean(np.vstack(v), axis=0)
                                                     for metric, v in per_split.items()}
        return out


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
