"""Fit every pipeline on the training cells of each fold and predict every test cell: one engine.

One call evaluates all pipelines of one dataset x task that share a job (in the workflow: the
pipelines with the same representation). The engine reads the dataset in blocks of cells
(:mod:`sclinbench.evaluate.blocks`): a file larger than memory in blocks read from disk
(:func:`evaluate_file` from :data:`~sclinbench.workflow.resources.STREAM_FROM_NNZ` stored counts),
an AnnData in memory as ONE block (:func:`evaluate`). The same passes run either way, so there is
one code path to change and test (tests/test_streamed.py compares block sizes: the same rows,
labels and scores to float64 rounding, since class means and HVG statistics are summed block by
block). Each group of pipelines with identical preprocessing (everything but the model) gets a
plan (:mod:`sclinbench.evaluate.plans`): summed class means (training-free models on all genes),
summed HVG statistics (Pearson-residual HVG + fitted steps), or, for what needs every cell at once,
the whole dataset in memory (a one-block source; a file is then read whole). Adding a model to a
preprocessing costs only the model fit.

Nothing fitted sees a test cell: each fold's sums, preprocessing and models come from its
training cells only; the test cells are transformed and scored.

Stateless per-cell transforms are computed ONCE per dataset, not per fold: ``rankz`` and
library-size normalization to a fixed ``target_sum`` (+ ``log1p`` / ``sqrt``) compute every cell
from its own counts alone (:meth:`RepresentationTransformer.is_stateless`), so the representation
of each block is computed once and each fold takes its rows -- no test cell informs anything a
training cell gets, and the predictions are identical to computing it per fold
(``share_stateless=False``; tests/test_evaluate.py compares the two). Everything fitted stays per
fold on the training cells: the median target sum, HVG selection, Pearson-residual gene fractions,
scaling, PCA, ANOVA and the models. Not shared: donor pseudobulk tasks (counts are summed per donor
BEFORE the transform) and imported embeddings (no transform).

Memory: the counts are never copied whole. A file source holds one block of counts at a time (and
the blocks' representation between its first and last pass when it fits ``hold_bytes``); in
memory, the representation of all cells is computed once and shared by every plan, and the counts
are released (``release_counts``) once no pass reads them. Every test cell of the split table
appears exactly once per fold, pipeline and repeat in the output, rows ordered by fold,
preprocessing, pipeline and repeat; a cell a model cannot score gets the explicit prediction
``"unassigned"`` (which every metric counts as wrong).

Controls: a shuffled-label pipeline (``control: shuffled``) is fitted ``repeats`` times per fold,
each time on its own permutation of the training labels (seed from seed, fold and repeat,
:func:`sclinbench.evaluate.models.control_seed`); label-dependent preprocessing (ANOVA feature
selection) is then fitted on the same permuted labels, so the control never sees the real labels.
Models of :data:`sclinbench.evaluate.models.CONSTANT_SCORE_MODELS` (majority class) write one
constant score for every class and cell.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.data.obs import task_label
from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.blocks import BLOCK_VALUES, FileBlocks, Fold, MemoryBlocks
from sclinbench.evaluate.pipeline import build_preprocessing
from sclinbench.evaluate.plans import (
    HVG,
    VIEWS,
    WHOLE,
    HvgFold,
    PerFold,
    SharedFold,
    ViewTarget,
    fold_frames,
    plan_of,
    repeats_of,
    takes_row_views,
)
from sclinbench.evaluate.predictions import assemble
from sclinbench.evaluate.splits import iter_folds
from sclinbench.represent.offset import OffsetCSR
from sclinbench.represent.select import training_sums
from sclinbench.workflow.resources import STREAM_FROM_NNZ, STREAMED_HOLD_BYTES, streamed_held_bytes

log = logging.getLogger(__name__)


def input_matrix(adata, spec, dataset: str = "dataset"):
    """The matrix a pipeline (:class:`~sclinbench.evaluate.spec.PipelineSpec`) starts from: raw counts (``X``)
    or an imported embedding (``obsm``)."""
    rep = spec.representation
    if rep["name"] != "embedding":
        return adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    key = rep.get("obsm_key")
    if key not in adata.obsm:
        raise SclinbenchError(
            f"embedding '{key}' is not in obsm of dataset '{dataset}' (obsm keys: "
            f"{', '.join(adata.obsm.keys()) or 'none'}); set representation.obsm_key to one of them"
        )
    return np.asarray(adata.obsm[key], dtype=np.float32)


def pseudobulk(X, y: np.ndarray, donors: np.ndarray):
    """Sum counts (or average embeddings) per donor; returns (matrix, labels, donor ids)."""
    uniq, inverse = np.unique(donors, return_inverse=True)
    indicator = sp.csr_matrix((np.ones(len(donors), dtype=np.float32), (inverse, np.arange(len(donors)))),
                              shape=(len(uniq), len(donors)))
    if sp.issparse(X):
        summed = sp.csr_matrix(indicator @ X)
    else:
        sizes = np.asarray(indicator.sum(axis=1)).ravel()
        summed = np.asarray(indicator @ X) / sizes[:, None]
    labels = pd.Series(y).groupby(inverse).agg(lambda s: s.iloc[0]).to_numpy()
    return summed, labels, uniq


def group_pipelines(pipelines: dict) -> tuple[dict, dict[str, list[str]]]:
    """``(name -> PipelineSpec, preprocessing key -> names)``: pipelines with the same
    :attr:`~sclinbench.evaluate.spec.PipelineSpec.preprocessing_key` share one fitted preprocessing per fold.
    Mappings (a caller outside the workflow) are made specs by :func:`sclinbench.evaluate.spec.parse_pipelines`."""
    from sclinbench.evaluate.spec import parse_pipelines

    normal = parse_pipelines(pipelines)
    by_signature: dict[str, list[str]] = {}
    for name, spec in normal.items():
        by_signature.setdefault(spec.preprocessing_key, []).append(name)
    return normal, by_signature


def why_not_streamed(pipelines: dict, split_kind: str) -> str | None:
    """``None`` if these pipelines can be evaluated from blocks of a file, else why every cell is
    needed at once (:func:`~sclinbench.evaluate.plans.plan_of`)."""
    normal, by_signature = group_pipelines(pipelines)
    for names in by_signature.values():
        plan, why = plan_of(names, normal, split_kind)
        if plan == WHOLE:
            return why
    return None


def evaluate(adata, splits: pd.DataFrame, pipelines: dict, task: dict, seed: int = 0,
             dataset: str = "dataset", share_stateless: bool = True, release_counts: bool = False) -> pd.DataFrame:
    """Predictions of every pipeline for every test cell of every fold; the dataset in memory is one block.

    Parameters
    ----------
    adata
        Standardized dataset (raw counts in ``X``).
    splits
        The task's split table (:func:`sclinbench.evaluate.splits.make_splits`).
    pipelines
        ``name -> PipelineSpec`` (:func:`sclinbench.evaluate.spec.parse_pipelines`).
    task
        The task spec (``kind``, ``split``, ``label``...).
    share_stateless
        Compute stateless representations once for all cells (default) instead of once per fold
        (``False``): the same predictions, computed faster (see the module docstring).
    release_counts
        The caller hands ``adata`` over: its counts are dropped (``adata.X = None``) once no pass
        or fold reads them (every pipeline on a stateless representation whose fit reads the
        number of genes only; see ``RepresentationTransformer.fit_reads_counts``). The same
        predictions, with the counts' values freed early (the rankz matrix shares their indices).

    Returns
    -------
    DataFrame with :data:`PREDICTION_COLUMNS` and one ``s:<label>`` column of class scores per
    label (NaN where the fold's model lacks the label). ``repeat`` numbers the label permutations
    of a shuffled-label control (0 for every other pipeline); ``donor_id`` is the cell's donor (the
    sample itself for pseudobulk rows); ``label_in_training`` says whether the cell's true label
    is among the training labels of its fold (False for cells of a label the training species
    lacks, and for the held-out type of a novel-type fold); ``fallback`` whether the model scored
    the cell with its fallback model (a ``leiden_logreg`` cell whose cluster has no model; False
    for every other model).
    """
    return _evaluate(MemoryBlocks(adata), splits, pipelines, task, seed, dataset, math.inf,
                     share_stateless=share_stateless, release_counts=release_counts)


def evaluate_file(path, splits: pd.DataFrame, pipelines: dict, task: dict, seed: int = 0,
                  dataset: str = "dataset", stream_from_nnz: int = STREAM_FROM_NNZ,
                  block_values: int = BLOCK_VALUES) -> pd.DataFrame:
    """:func:`evaluate` of the standardized h5ad ``path``: read in blocks from the file when it
    holds at least ``stream_from_nnz`` stored counts and its pipelines allow it, else read whole."""
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


def evaluate_streamed(path, splits: pd.DataFrame, pipelines: dict, task: dict, seed: int = 0,
                      dataset: str = "dataset", block_values: int = BLOCK_VALUES,
                      hold_bytes: int = STREAMED_HOLD_BYTES) -> pd.DataFrame:
    """:func:`evaluate` of the standardized h5ad ``path``, its counts read in blocks of about
    ``block_values`` stored counts. Same arguments and the same table (rows in the same order).
    The blocks' representation computed in the first pass is held for the last one when it takes
    at most ``hold_bytes`` (:func:`sclinbench.workflow.resources.streamed_held_bytes`), else
    recomputed there from another read."""
    reason = why_not_streamed(pipelines, str(splits["split_kind"].iloc[0]))
    if reason is not None:
        raise SclinbenchError(f"dataset '{dataset}' cannot be evaluated in blocks: {reason}")
    blocks = FileBlocks(path, block_values)
    try:
        return _evaluate(blocks, splits, pipelines, task, seed, dataset, hold_bytes)
    finally:
        blocks.close()


class _Job:
    """What every plan of one evaluation reads: labels, donors, folds, pipeline groups, row order."""

    def __init__(self, blocks, splits, pipelines, task, seed, dataset, share_stateless):
        obs = blocks.obs
        label = task_label(task)
        if label not in obs.columns:
            raise SclinbenchError(f"dataset '{dataset}' has no obs column '{label}' (task label)")
        self.seed, self.dataset, self.share_stateless = seed, dataset, share_stateless
        self.split_kind = str(splits["split_kind"].iloc[0])
        # fixed-width strings: np.unique / isin / searchsorted of every fit are ~10x faster than on objects
        self.y_all = np.asarray(obs[label].astype(str).to_numpy(), dtype=str)
        self.donors_all = (obs["donor_id"].astype(str).to_numpy() if "donor_id" in obs.columns
                           else np.full(len(obs), "unknown", dtype=object))
        self.normal, self.by_signature = group_pipelines(pipelines)
        self.folds = [Fold(fold, groups, tr, te, obs.index, dataset) for fold, groups, tr, te in iter_folds(splits)]
        self.plans = {sig: plan_of(names, self.normal, self.split_kind, share_stateless)[0]
                      for sig, names in self.by_signature.items()}
        # (fold, signature, name, repeat) -> row block of the output: fold, preprocessing, pipeline, repeat
        self.order = {(k, sig, name, repeat): i for i, (k, sig, name, repeat) in enumerate(
            (k, sig, name, repeat) for k in range(len(self.folds)) for sig in self.by_signature
            for name, repeat in self.members(sig))}
        self.frames: dict[int, pd.DataFrame] = {}

    def sigs(self, plan) -> list[str]:
        return [sig for sig, p in self.plans.items() if p == plan]

    def spec(self, sig):
        """The spec of the first pipeline of preprocessing key ``sig`` (its preprocessing is theirs)."""
        return self.normal[self.by_signature[sig][0]]

    def members(self, sig) -> list[tuple[str, int]]:
        """``(pipeline, repeat)`` of every fit of preprocessing key ``sig``, in output order."""
        return [(name, repeat) for name in self.by_signature[sig] for repeat in repeats_of(self.normal[name])]

    def keys(self, k, sig) -> list[int]:
        """Output positions of the fits of ``sig`` on fold ``k`` (in :meth:`members` order)."""
        return [self.order[(k, sig, name, repeat)] for name, repeat in self.members(sig)]


def _evaluate(blocks, splits, pipelines, task, seed, dataset, hold_bytes, share_stateless=True,
              release_counts=False) -> pd.DataFrame:
    job = _Job(blocks, splits, pipelines, task, seed, dataset, share_stateless)
    whole = job.sigs(WHOLE)
    if whole and not isinstance(blocks, MemoryBlocks):
        raise AssertionError("a plan that needs every cell at once was given blocks of a file")
    log.info("%s: %d cells x %d genes in %d block(s), %d folds, %d pipeline(s)", dataset, blocks.n_obs,
             blocks.n_vars, blocks.n_blocks, len(job.folds), len(job.normal))
    if job.sigs(VIEWS) or job.sigs(HVG):
        # with WHOLE plans, the counts stay until their shared representations are computed
        _block_passes(job, blocks, hold_bytes, release_counts and not whole)
    if whole:
        _whole_folds(job, blocks, whole, release_counts)
    return assemble([job.frames[i] for i in sorted(job.frames)])


def _representation(job, sig):
    return build_preprocessing(job.spec(sig), job.seed).steps[0][1]


def _block_passes(job, blocks, hold_bytes, release: bool) -> None:
    """The VIEWS and HVG plans: pass 1 (library sizes, HVG gene sums, class means), passes 2 and 3
    (residual means and variances, HVG only), the last pass (test cells of the class-mean models;
    the selected genes of all cells), then the HVG plans' folds."""
    n, g, seed = blocks.n_obs, blocks.n_vars, job.seed
    view_sigs, hvg_sigs = job.sigs(VIEWS), job.sigs(HVG)
    reps = {sig: _representation(job, sig) for sig in view_sigs + hvg_sigs}
    views = {sig: [ViewTarget(key, fold, name, repeat, job.normal[name], seed, job.y_all, n, g)
                   for k, fold in enumerate(job.folds)
                   for key, (name, repeat) in zip(job.keys(k, sig), job.members(sig))]
             for sig in view_sigs}
    hvgs = {sig: [HvgFold(fold, reps[sig].hvg, g) for fold in job.folds] for sig in hvg_sigs}
    cache = blocks.cache  # in memory: the representations of all cells, shared with the WHOLE plans

    def represented(X, sigs):
        """The block's representation for each signature, computed once per representation."""
        out = {}
        for sig in sigs:
            key = job.spec(sig).representation_key
            if key not in out:
                if cache is not None and key in cache:
                    out[key] = cache[key]
                else:
                    t0 = time.perf_counter()
                    out[key] = reps[sig].represent_all(X)
                    if cache is not None:
                        cache[key] = out[key]
                        log.info("representation %s of all %d cells computed once for all folds in %.1f s",
                                 reps[sig].name, n, time.perf_counter() - t0)
        return {sig: out[job.spec(sig).representation_key] for sig in sigs}

    # the last pass needs the representations of every signature: held from pass 1 if they fit
    last_sigs = view_sigs + hvg_sigs
    if cache is not None:
        held = []
    else:
        n_reps = len({job.spec(sig).representation_key for sig in last_sigs})
        need = streamed_held_bytes(blocks.nnz, n, n_reps)
        held = [] if need <= hold_bytes else None
        log.info("%s: the representation of the blocks (%.2f GiB estimated, %.2f allowed) is %s", job.dataset,
                 need / 2**30, hold_bytes / 2**30,
                 "held for the last pass" if held is not None else "recomputed in the last pass")

    # pass 1: library sizes and HVG gene sums; class means of the training-free models
    lib_all = np.zeros(n)
    for start, stop, X in blocks:
        if hvgs:
            lib_all[start:stop] = training_sums(X)[1]
            for fs in hvgs.values():
                for f in fs:
                    f.add_gene_sums(start, stop, X)
        Zs = represented(X, last_sigs if held is not None else view_sigs)
        for sig in views:
            for t in views[sig]:
                t.add_block(start, stop, Zs[sig])
        if held is not None:
            held.append((start, stop, Zs))
        del Zs
    # the class-mean models are fitted where they first predict (ViewTarget.predict_block): with one
    # block each is fitted, scored, written to its rows and dropped in turn
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
    del lib_all
    X = None  # the loops' last block (in memory: the counts themselves) is not held past here
    if release:
        blocks.release()
    # last pass: test cells of the training-free models; the union of the folds' genes (HVG)
    one_block = blocks.n_blocks == 1 and held is not None
    union = {sig: (np.arange(g) if one_block else np.unique(np.concatenate([f.genes for f in fs])))
             for sig, fs in hvgs.items()}
    kept = {sig: [] for sig in hvgs}
    if held is not None:
        held.reverse()
        last = (held.pop() for _ in range(len(held)))  # each block's representation freed once used
    else:
        last = ((start, stop, represented(X, last_sigs)) for start, stop, X in blocks)
    for start, stop, Zs in last:
        if one_block:
            _views_by_fold(job, views, Zs)
        else:
            for sig, targets in views.items():
                for t in targets:
                    t.predict_block(start, stop, Zs[sig])
        for sig in hvgs:
            Z = Zs[sig]
            if one_block:  # the representation of all cells itself: each fold takes its genes
                kept[sig].append(Z)
            else:
                kept[sig].append(Z.select_columns(union[sig]) if isinstance(Z, OffsetCSR) else Z[:, union[sig]])
        del Zs
    for targets in views.values():
        for t in targets:
            if t.order not in job.frames:
                job.frames[t.order] = t.frame(job.y_all, job.donors_all, job.split_kind)
    for sig in hvg_sigs:
        parts = kept.pop(sig)
        if len(parts) == 1:
            shared = parts[0]
        else:
            shared = OffsetCSR.vstack(parts) if isinstance(parts[0], OffsetCSR) else sp.vstack(parts, format="csr")
            log.info("%s: %d of %d genes kept for %d cells (%d stored values): the union of the folds' HVGs",
                     job.dataset, union[sig].size, g, n, shared.nnz)
        del parts
        names = job.by_signature[sig]
        for k, (fold, f) in enumerate(zip(job.folds, hvgs[sig])):
            t0 = time.perf_counter()
            fitted = SharedFold(job.normal[names[0]], seed, None, shared, fold.itrain, fold.itest, views=False,
                                genes=np.searchsorted(union[sig], f.genes))
            out = fold_frames(fitted, names, job.normal, seed, fold.fold, job.y_all[fold.itrain],
                              job.y_all[fold.itest], fold.test_ids, fold.groups, job.donors_all[fold.itest],
                              job.split_kind)
            job.frames.update(zip(job.keys(k, sig), out))
            del fitted
            log.info("fold %d/%d (%s) done in %.1f s", k + 1, len(job.folds), ", ".join(names),
                     time.perf_counter() - t0)
        del shared


def _views_by_fold(job, views, Zs) -> None:
    """One block: the class-mean models fold by fold, each fitted, scored, written and dropped in
    turn, with the fold's progress in the log."""
    if not views:
        return
    n_folds = len(job.folds)
    for k, fold in enumerate(job.folds, start=1):
        t0 = time.perf_counter()
        mine = [(sig, t) for sig, targets in views.items() for t in targets if t.fold is fold]
        log.info("starting fold %d/%d: %d train, %d test cells, %d class-mean fit(s)", k, n_folds,
                 fold.itrain.size, fold.itest.size, len(mine))
        for sig, t in mine:
            t.predict_block(0, job.y_all.size, Zs[sig])
            job.frames[t.order] = t.frame(job.y_all, job.donors_all, job.split_kind)
        log.info("fold %d/%d done in %.1f s", k, n_folds, time.perf_counter() - t0)


def _shared_key(job, sig) -> str | None:
    """The representation key a WHOLE plan shares across folds (stateless), else ``None`` (per fold)."""
    spec = job.spec(sig)
    if not job.share_stateless or job.split_kind == "donor_pseudobulk" or spec.representation["name"] == "embedding":
        return None
    if not _representation(job, sig).is_stateless():
        return None
    return spec.representation_key


def _whole_reads_counts(job, whole) -> bool:
    """Does a fold of a WHOLE plan read its input (counts, or an embedding) after the shared
    representations are computed? Yes unless it starts from a shared stateless representation
    whose fit reads the number of genes only (embeddings and pseudobulk never share one)."""
    return any(_shared_key(job, sig) is None or _representation(job, sig).fit_reads_counts() for sig in whole)


def _whole_folds(job, blocks, whole, release_counts) -> None:
    """The WHOLE plans, fold by fold, on the dataset in memory (one block)."""
    adata, seed = blocks.adata, job.seed
    shared_of = {}
    for sig in whole:
        key = _shared_key(job, sig)
        if key is None:
            continue
        if key not in blocks.cache:
            t0 = time.perf_counter()
            blocks.cache[key] = _representation(job, sig).represent_all(blocks.counts)
            log.info("representation %s of all %d cells computed once for all folds in %.1f s",
                     job.spec(sig).representation["name"], blocks.n_obs, time.perf_counter() - t0)
        shared_of[sig] = key
    if release_counts and not _whole_reads_counts(job, whole) and adata.X is not None:
        blocks.release()
    inputs = {sig: (input_matrix(adata, job.spec(sig), job.dataset)
                    if adata.X is not None or job.spec(sig).representation["name"] == "embedding" else None)
              for sig in whole}
    n_folds = len(job.folds)
    for k, fold in enumerate(job.folds, start=1):
        t0 = time.perf_counter()
        itrain, itest = fold.itrain, fold.itest
        log.info("starting fold %d/%d: %d train, %d test cells, %d pipeline(s)", k, n_folds, len(itrain),
                 len(itest), sum(len(job.by_signature[sig]) for sig in whole))
        for sig in whole:
            names = job.by_signature[sig]
            X = inputs[sig]
            ytr, yte = job.y_all[itrain], job.y_all[itest]
            cell_ids, groups, donors = fold.test_ids, fold.groups, job.donors_all[itest]
            if sig in shared_of:
                fitted = SharedFold(job.normal[names[0]], seed, X, blocks.cache[shared_of[sig]], itrain, itest,
                                    views=all(takes_row_views(job.normal[n]) for n in names))
            else:
                Xtr, Xte = X[itrain], X[itest]
                if job.split_kind == "donor_pseudobulk":
                    Xtr, ytr, _ = pseudobulk(Xtr, ytr, job.donors_all[itrain])
                    Xte, yte, cell_ids = pseudobulk(Xte, yte, job.donors_all[itest])
                    groups = donors = np.asarray(cell_ids)
                fitted = PerFold(job.normal[names[0]], seed, Xtr, Xte)
            out = fold_frames(fitted, names, job.normal, seed, fold.fold, ytr, yte, cell_ids, groups, donors,
                              job.split_kind)
            job.frames.update(zip(job.keys(k - 1, sig), out))
            del fitted
        log.info("fold %d/%d done in %.1f s", k, n_folds, time.perf_counter() - t0)

