"""What one bootstrap draw resamples: the units a split holds out, and the scores of a draw.

A scope holds one dataset x task's pooled predictions grouped into units (held-out donors, cells or
blocks of cells, species pairs, held-out types): :class:`PooledScope` (every test cell once) and
:class:`RepeatedHoldoutScope` (repeated hold-outs: each distinct unit resampled once, every split
recomputed from it). :mod:`sclinbench.evaluate.intervals` turns their draws into summary rows.

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

import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.metrics import (
    _with_repeat,
    confusion_metrics,
    encode,
    label_index,
)
from sclinbench.workflow.contracts import SCORE_PREFIX

PAIR_MATRIX_MAX_UNITS = 256     # AUROC per draw via U x U pair counts up to this many units
DIRECT_MAX_CELLS = 2000         # cells as units: each cell its own unit up to this many ...
CELL_BLOCKS = 256               # ... beyond, random blocks of cells (same variance for independent cells)
_CHUNK_ELEMENTS = 4_000_000     # draws x units generated at a time


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
