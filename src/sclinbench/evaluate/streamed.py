"""Evaluation of a dataset read from its h5ad in blocks of cells: datasets larger than memory.

:func:`evaluate_file` is what the workflow's evaluate step calls. A dataset with fewer than
:data:`~sclinbench.workflow.resources.STREAM_FROM_NNZ` stored counts is read whole and evaluated by
:func:`sclinbench.evaluate.engine.evaluate`; a larger one whose pipelines can be streamed
(:func:`why_not_streamed` is ``None``) goes to :func:`evaluate_streamed`, which holds one block of
counts at a time and gives the same predictions (tests/test_streamed.py compares the two; class
means and HVG statistics are summed block by block, so the numbers agree to float64 rounding).

What can be streamed: pipelines of a stateless representation (``rankz``; ``log1p`` / ``sqrt`` to
a fixed ``target_sum``: every cell computed from its own counts, so a block's representation is
the rows of the representation of all cells) followed by

- a training-free model on all genes (``centroid``, ``majority``, their shuffled-label
  controls): every fold's and every repeat's class means are summed over the blocks in one pass
  (only the training cells of the fold enter them), then a second pass scores the test cells of
  each block;
- Pearson-residual HVG selection (``features: {method: hvg}``, the default flavour) and fitted
  steps (scale, PCA, any model): the statistics of :func:`~sclinbench.represent.select.
  pearson_residual_variances` over every fold's training cells are summed over the blocks (three
  passes: gene sums and library sizes, residual means, residual variances), then one pass keeps
  the representation of the union of the folds' genes for all cells, and each fold goes on
  exactly as in memory (:func:`sclinbench.evaluate.engine.fold_frames`) on its own genes.

Nothing fitted sees a test cell: the sums of a fold are over its training cells only.
Memory: one block of counts and its representation, a few arrays per cell and fold, the class
means (folds x repeats x classes x genes) and, with HVG, the selected genes of all cells.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import clone

from sclinbench.data.obs import task_label
from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.engine import (
    _indexer,
    _predict,
    _SharedFold,
    _takes_row_views,
    assemble,
    evaluate,
    fold_frames,
    group_pipelines,
    prediction_frame,
    repeats_of,
)
from sclinbench.evaluate.models import (
    CONSTANT_SCORE_MODELS,
    CentroidClassifier,
    ShuffledLabels,
    control_seed,
)
from sclinbench.evaluate.pipeline import build_classifier, build_preprocessing
from sclinbench.evaluate.splits import iter_folds
from sclinbench.represent.offset import OffsetCSR, RowSubset, row_blocks
from sclinbench.represent.select import (
    HVG_FLAVORS,
    residual_stored_sums,
    residual_zero_sums,
    top_variable,
    training_sums,
)
from sclinbench.workflow.contracts import UNASSIGNED
from sclinbench.workflow.resources import STREAM_FROM_NNZ, STREAMED_HOLD_BYTES, streamed_held_bytes

log = logging.getLogger(__name__)

#: stored counts per block (data + indices 8 B each, the block's representation 4 B: ~1.5 GiB)
BLOCK_VALUES = 1 << 27
#: the HVG flavour whose statistics add up over blocks of cells
STREAMED_HVG_FLAVOR = HVG_FLAVORS[0]


def why_not_streamed(pipelines: dict, split_kind: str) -> str | None:
    """``None`` if :func:`evaluate_streamed` can evaluate these pipelines, else the reason."""
    if split_kind == "donor_pseudobulk":
        return "donor pseudobulk tasks sum the counts of each donor first"
    normal, by_signature = group_pipelines(pipelines)
    for names in by_signature.values():
        spec = normal[names[0]]
        rep = build_preprocessing(spec).steps[0][1]
        if spec.representation["name"] == "embedding" or not rep.is_stateless():
            return (f"pipeline '{names[0]}': representation {spec.representation['name']} is fitted on the "
                    "training cells (or an embedding)")
        if rep.hvg is None and not all(_takes_row_views(normal[n]) for n in names):
            return f"pipeline '{names[0]}': fitted steps on all genes need the representation of all cells"
        if rep.hvg is not None and rep.hvg_flavor != STREAMED_HVG_FLAVOR:
            return f"pipeline '{names[0]}': hvg flavor {rep.hvg_flavor} runs scanpy on the training cells"
        if spec.features["method"] == "anova":
            return f"pipeline '{names[0]}': anova needs the representation of all cells"
    return None


def evaluate_file(path, splits: pd.DataFrame, pipelines: dict, task: dict, seed: int = 0,
                  dataset: str = "dataset", stream_from_nnz: int = STREAM_FROM_NNZ,
                  block_values: int = BLOCK_VALUES) -> pd.DataFrame:
    """:func:`~sclinbench.evaluate.engine.evaluate` of the standardized h5ad ``path``: streamed in blocks
    when it holds at least ``stream_from_nnz`` stored counts and its pipelines allow it."""
    import anndata as ad

    from sclinbench.data.h5ad import h5ad_shape

    shape = h5ad_shape(path)
    if shape is not None and shape[2] >= stream_from_nnz:
        reason = why_not_streamed(pipelines, str(splits["split_kind"].iloc[0]))
        if reason is None:
            log.info("%s: %d cells, %d stored counts: evaluated in blocks of cells read from the file",
                     dataset, shape[0], shape[2])
            return evaluate_streamed(path, splits, pipelines, task, seed=seed, dataset=dataset,
                                     block_values=block_values)
        log.info("%s: %d stored counts, read whole: %s", dataset, shape[2], reason)
    # the file's own AnnData, handed over: its counts are freed when no fold needs them
    return evaluate(ad.read_h5ad(path), splits, pipelines, task, seed=seed, dataset=dataset, release_counts=True)


class _Blocks:
    """The CSR counts ``X`` of an h5ad, read in consecutive blocks of cells, one pass at a time."""

    def __init__(self, path, block_values: int):
        from sclinbench.data.h5ad import h5ad_counts_group

        opened = h5ad_counts_group(path)
        if opened is None:
            raise SclinbenchError(f"{path}: X is not a CSR matrix of an h5ad; it cannot be read in blocks")
        self.file, self.group = opened
        self.n_obs, self.n_vars = (int(v) for v in self.group.attrs["shape"])
        self.indptr = self.group["indptr"][:].astype(np.int64)
        self.ranges = list(row_blocks(self.indptr, int(block_values)))
        self.passes = 0
        self._scratch = None  # (keep the buffers after the pass?) for the next pass, see scratch()
        self._buffers = None

    def scratch(self, keep: bool = False) -> _Blocks:
        """The next pass reads every block into the same two buffers (the caller keeps nothing of a
        block after the next one is read): the same values, without the first-touch page faults
        of fresh arrays (~1.3 s per GiB on this machine). ``keep``: the buffers stay for the pass
        after it, else they are freed at its end."""
        self._scratch = bool(keep)
        return self

    def _read(self, name, lo, hi, k):
        ds = self.group[name]
        if self._scratch is None:
            return ds[lo:hi]
        if self._buffers is None:
            size = max((h - low for _, _, low, h in self.ranges), default=0)
            self._buffers = [np.empty(size, dtype=self.group[n].dtype) for n in ("data", "indices")]
        out = self._buffers[k][:hi - lo]
        if hi > lo:
            ds.read_direct(out, np.s_[lo:hi])
        return out

    def __iter__(self):
        """``(start, stop, counts of cells start:stop)`` for every block; logs the pass's time."""
        self.passes += 1
        t0 = time.perf_counter()
        try:
            yield from self._pass(t0)
        finally:
            if not self._scratch:
                self._buffers = None
            self._scratch = None

    def _pass(self, t0):
        for b, (start, stop, lo, hi) in enumerate(self.ranges, start=1):
            X = sp.csr_matrix((self._read("data", lo, hi, 0), self._read("indices", lo, hi, 1),
                               self.indptr[start:stop + 1] - lo), shape=(stop - start, self.n_vars))
            yield start, stop, X
            if b % 10 == 0 or b == len(self.ranges):
                log.info("pass %d: %d/%d blocks (%d cells) in %.1f s", self.passes, b, len(self.ranges),
                         stop, time.perf_counter() - t0)

    def obs(self) -> pd.DataFrame:
        from anndata.io import read_elem

        return read_elem(self.file["obs"])


class _Fold:
    """One fold of the split table, as positions of cells in the file."""

    def __init__(self, fold, groups, train_ids, test_ids, obs_names, dataset):
        self.fold, self.groups = fold, groups
        self.test_ids = test_ids
        self.itrain = _indexer(obs_names, train_ids, dataset)
        self.itest = _indexer(obs_names, test_ids, dataset)
        self.test_pos = np.full(len(obs_names), -1, dtype=np.int64)  # cell -> its row among the test cells
        self.test_pos[self.itest] = np.arange(self.itest.size)
        self.is_train = np.zeros(len(obs_names), dtype=bool)
        self.is_train[self.itrain] = True

    def train_rows(self, start, stop) -> np.ndarray:
        return np.flatnonzero(self.is_train[start:stop])

    def test_rows(self, start, stop) -> tuple[np.ndarray, np.ndarray]:
        """Block rows of this fold's test cells and their rows among the test cells."""
        local = np.flatnonzero(self.test_pos[start:stop] >= 0)
        return local, self.test_pos[start + local]


class _ViewTarget:
    """One training-free model of one fold (a pipeline, a repeat), fitted from summed class means."""

    def __init__(self, k, fold: _Fold, name, repeat, spec, seed, y_all, n_obs, n_genes):
        self.order = k
        self.fold, self.name, self.repeat, self.spec = fold, name, repeat, spec
        self.model = build_classifier(spec, seed)
        ytr = y_all[fold.itrain]
        self.inner = self.model
        if spec.control == "shuffled":  # as ShuffledLabels.fit: the labels of a seeded permutation
            draw = control_seed(seed, fold.fold, repeat)
            self.model.set_params(random_state=draw)
            self.model.permutation_ = np.random.default_rng(draw).permutation(ytr.shape[0])
            ytr = ytr[self.model.permutation_]
            self.inner = clone(self.model.estimator)
        self.code = None
        if isinstance(self.inner, CentroidClassifier):
            rows, codes = self.inner.training_codes(ytr)
            self.code = np.full(n_obs, -1, dtype=np.int32)
            self.code[fold.itrain[rows]] = codes
            self.weight = 1.0 / self.inner.class_counts_.astype(np.float64)
            self.means = np.zeros((self.inner.classes_.size, n_genes))
        else:  # majority: the training labels only (an empty matrix of the right shape)
            self.inner.fit(sp.csr_matrix((ytr.shape[0], n_genes), dtype=np.float32), ytr)
        self.n_genes = n_genes
        self.results = None

    def add_block(self, start, stop, Z):
        """Add the block's training cells (representation ``Z`` of cells start:stop) to the means."""
        if self.code is None:
            return
        code = self.code[start:stop]
        local = np.flatnonzero(code >= 0)
        if not local.size:
            return
        c = code[local]
        V = sp.csr_matrix((self.weight[c], (c, np.arange(local.size))), shape=(self.means.shape[0], local.size))
        self.means += RowSubset(Z, local).rdot(V)

    def finish_fit(self):
        if self.code is not None:
            self.inner.fit_class_means(self.means, self.n_genes)
            self.code = self.means = None
        if isinstance(self.model, ShuffledLabels):
            self.model.n_features_in_ = self.n_genes
            self.model.estimator_ = self.inner

    def predict_block(self, start, stop, Z):
        local, dest = self.fold.test_rows(start, stop)
        if not local.size:
            return
        y_pred, conf, scores, classes = _predict(self.model, RowSubset(Z, local))
        if self.results is None:
            n = self.fold.itest.size
            self.results = (np.full(n, UNASSIGNED, dtype=object), np.full(n, np.nan),
                            np.full((n, scores.shape[1]), np.nan), classes)
        self.results[0][dest], self.results[1][dest], self.results[2][dest] = y_pred, conf, scores

    def frame(self, y_all, donors_all, split_kind) -> pd.DataFrame:
        fold = self.fold
        ytr, yte = y_all[fold.itrain], y_all[fold.itest]
        if self.results is None:  # a fold without test cells
            classes = np.asarray(self.model.classes_).astype(str)
            self.results = (np.empty(0, dtype=object), np.empty(0), np.empty((0, classes.size)), classes)
        y_pred, conf, scores, classes = self.results
        if self.spec.model["name"] in CONSTANT_SCORE_MODELS:
            scores, conf = np.zeros_like(scores), np.zeros_like(conf)
        return prediction_frame(fold.test_ids, fold.fold, fold.groups, self.name, self.repeat,
                                donors_all[fold.itest], yte, y_pred.astype(str), conf, scores, classes,
                                split_kind, np.isin(yte, np.unique(ytr)))


class _HvgFold:
    """The Pearson-residual HVG statistics of one fold's training cells, summed over blocks."""

    def __init__(self, fold: _Fold, n_top: int, n_genes: int, theta: float = 100.0):
        self.fold, self.n_top, self.theta = fold, int(n_top), theta
        self.gene_sums = np.zeros(n_genes)
        self.sums = self.sq = self.mean = None
        self.genes = None

    def add_gene_sums(self, start, stop, X):
        self.gene_sums += training_sums(X, self.fold.train_rows(start, stop))[0]

    def start(self, lib_all) -> bool:
        """After the gene sums: ``True`` if the residual passes are needed (else ``genes`` is set)."""
        self.expressed = np.flatnonzero(self.gene_sums > 0)
        if self.n_top >= self.expressed.size:
            if self.n_top > self.expressed.size:
                log.warning("hvg: n_top=%d >= %d genes with training counts; keeping all %d",
                            self.n_top, self.expressed.size, self.expressed.size)
            self.genes = self.expressed
            return False
        self.n = self.fold.itrain.size
        self.total = float(self.gene_sums.sum())
        self.clip = float(np.sqrt(self.n))
        self.lib_all = lib_all
        self.sums = residual_zero_sums(lib_all[self.fold.itrain], self.gene_sums, self.total, self.theta,
                                       self.clip)
        return True

    def _stored(self, start, stop, X, mean=None):
        rows = self.fold.train_rows(start, stop)
        return residual_stored_sums(X, rows, self.lib_all[start + rows], self.gene_sums, self.total,
                                    self.theta, self.clip, mean)

    def add_means(self, start, stop, X):
        self.sums += self._stored(start, stop, X)

    def start_squares(self):
        self.mean = self.sums / self.n
        self.sq = residual_zero_sums(self.lib_all[self.fold.itrain], self.gene_sums, self.total, self.theta,
                                     self.clip, self.mean)

    def add_squares(self, start, stop, X):
        self.sq += self._stored(start, stop, X, self.mean)

    def finish(self):
        var = self.sq / self.n
        var[self.gene_sums == 0] = 0.0
        self.genes = top_variable(var, self.expressed, self.n_top)
        self.sums = self.sq = self.mean = self.lib_all = None


def evaluate_streamed(path, splits: pd.DataFrame, pipelines: dict, task: dict, seed: int = 0,
                      dataset: str = "dataset", block_values: int = BLOCK_VALUES,
                      hold_bytes: int = STREAMED_HOLD_BYTES) -> pd.DataFrame:
    """:func:`sclinbench.evaluate.engine.evaluate` of the standardized h5ad ``path``, its counts read in
    blocks of about ``block_values`` stored counts (see the module docstring). Same arguments and
    the same table (rows in the same order). The blocks' representation computed in the first
    pass is held for the last one when it takes at most ``hold_bytes``
    (:func:`sclinbench.workflow.resources.streamed_held_bytes`), else recomputed there from a second read."""
    split_kind = str(splits["split_kind"].iloc[0])
    reason = why_not_streamed(pipelines, split_kind)
    if reason is not None:
        raise SclinbenchError(f"dataset '{dataset}' cannot be evaluated in blocks: {reason}")
    blocks = _Blocks(path, block_values)
    try:
        return _evaluate_blocks(blocks, splits, pipelines, task, seed, dataset, split_kind, hold_bytes)
    finally:
        blocks.file.close()


def _evaluate_blocks(blocks: _Blocks, splits, pipelines, task, seed, dataset, split_kind, hold_bytes):
    obs = blocks.obs()
    label = task_label(task)
    if label not in obs.columns:
        raise SclinbenchError(f"dataset '{dataset}' has no obs column '{label}' (task label)")
    # fixed-width strings: np.unique / isin / searchsorted of every fit are ~10x faster than on objects
    y_all = np.asarray(obs[label].astype(str).to_numpy(), dtype=str)
    donors_all = (obs["donor_id"].astype(str).to_numpy() if "donor_id" in obs.columns
                  else np.full(len(obs), "unknown", dtype=object))
    normal, by_signature = group_pipelines(pipelines)
    folds = [_Fold(fold, groups, tr, te, obs.index, dataset) for fold, groups, tr, te in iter_folds(splits)]
    n, g = blocks.n_obs, blocks.n_vars
    log.info("%s: %d cells x %d genes in %d blocks, %d folds, %d pipeline(s)", dataset, n, g,
             len(blocks.ranges), len(folds), len(pipelines))

    reps, views, hvgs = {}, {}, {}  # by signature: representation, view targets, HVG folds
    order = {}  # (fold, signature, name, repeat) -> position in the in-memory evaluate's output
    for k in range(len(folds)):
        for s, names in enumerate(by_signature.values()):
            for name in names:
                for repeat in repeats_of(normal[name]):
                    order[(k, s, name, repeat)] = len(order)
    for s, (sig, names) in enumerate(by_signature.items()):
        reps[sig] = build_preprocessing(normal[names[0]], seed).steps[0][1]
        if reps[sig].hvg is None:
            views[sig] = [_ViewTarget(order[(k, s, name, repeat)], fold, name, repeat, normal[name], seed, y_all,
                                      n, g)
                          for k, fold in enumerate(folds) for name in names for repeat in repeats_of(normal[name])]
        else:
            hvgs[sig] = [_HvgFold(fold, reps[sig].hvg, g) for fold in folds]

    rep_keys = {sig: normal[names[0]].representation_key for sig, names in by_signature.items()}

    def represented(X, sigs):
        """The block's representation for each signature, computed once per representation."""
        out = {}
        for sig in sigs:
            if rep_keys[sig] not in out:
                out[rep_keys[sig]] = reps[sig].represent_all(X)
        return {sig: out[rep_keys[sig]] for sig in sigs}

    # the last pass needs the representations of every signature: held from pass 1 if they fit
    last_sigs = [*views, *hvgs]
    n_reps = len({rep_keys[sig] for sig in last_sigs})
    need = streamed_held_bytes(int(blocks.indptr[-1]), n, n_reps)
    held = [] if need <= hold_bytes else None
    if held is not None:
        log.info("%s: the representation of the blocks (%.2f GiB estimated, %.2f allowed) is held for the "
                 "last pass", dataset, need / 2**30, hold_bytes / 2**30)
    else:
        log.info("%s: the representation of the blocks is recomputed in the last pass (holding it would take "
                 "%.2f GiB estimated, %.2f allowed)", dataset, need / 2**30, hold_bytes / 2**30)

    # pass 1: library sizes and HVG gene sums; class means of the training-free models
    lib_all = np.zeros(n)
    for start, stop, X in blocks:
        if hvgs:
            lib_all[start:stop] = training_sums(X)[1]
            for fs in hvgs.values():
                for f in fs:
                    f.add_gene_sums(start, stop, X)
        Zs = represented(X, last_sigs if held is not None else views)
        for sig in views:
            for t in views[sig]:
                t.add_block(start, stop, Zs[sig])
        if held is not None:
            held.append((start, stop, Zs))
        del Zs
    for targets in views.values():
        for t in targets:
            t.finish_fit()
    # passes 2 and 3: residual means and variances of the folds' training cells (HVG)
    pending = [f for fs in hvgs.values() for f in fs if f.start(lib_all)]
    if pending:
        for start, stop, X in blocks.scratch(keep=True):  # nothing of a block is kept in passes 2 and 3
            for f in pending:
                f.add_means(start, stop, X)
        for f in pending:
            f.start_squares()
        for start, stop, X in blocks.scratch():
            for f in pending:
                f.add_squares(start, stop, X)
        for f in pending:
            f.finish()
    # last pass: test cells of the training-free models; the union of the folds' genes (HVG)
    union = {sig: np.unique(np.concatenate([f.genes for f in fs])) for sig, fs in hvgs.items()}
    kept = {sig: [] for sig in hvgs}
    if held is not None:
        held.reverse()
        last = (held.pop() for _ in range(len(held)))  # each block's representation freed once used
    else:
        last = ((start, stop, represented(X, last_sigs)) for start, stop, X in blocks)
    for start, stop, Zs in last:
        for sig, targets in views.items():
            for t in targets:
                t.predict_block(start, stop, Zs[sig])
        for sig in hvgs:
            Z = Zs[sig]
            kept[sig].append(Z.select_columns(union[sig]) if isinstance(Z, OffsetCSR) else Z[:, union[sig]])
        del Zs
    del lib_all

    frames: dict[int, pd.DataFrame] = {}
    for targets in views.values():
        for t in targets:
            frames[t.order] = t.frame(y_all, donors_all, split_kind)
    for s, (sig, names) in enumerate(by_signature.items()):
        if sig not in hvgs:
            continue
        parts = kept.pop(sig)
        shared = OffsetCSR.vstack(parts) if isinstance(parts[0], OffsetCSR) else sp.vstack(parts, format="csr")
        del parts
        log.info("%s: %d of %d genes kept for %d cells (%d stored values): the union of the folds' HVGs",
                 dataset, union[sig].size, g, n, shared.nnz)
        for k, (fold, f) in enumerate(zip(folds, hvgs[sig])):
            t0 = time.perf_counter()
            fitted = _SharedFold(normal[names[0]], seed, None, shared, fold.itrain, fold.itest, views=False,
                                 genes=np.searchsorted(union[sig], f.genes))
            ytr, yte = y_all[fold.itrain], y_all[fold.itest]
            out = fold_frames(fitted, names, normal, seed, fold.fold, ytr, yte, fold.test_ids, fold.groups,
                              donors_all[fold.itest], split_kind)
            keys = [order[(k, s, name, repeat)] for name in names for repeat in repeats_of(normal[name])]
            frames.update(zip(keys, out))
            del fitted
            log.info("fold %d/%d (%s) done in %.1f s", k + 1, len(folds), ", ".join(names),
                     time.perf_counter() - t0)
        del shared
    return assemble([frames[i] for i in sorted(frames)])
