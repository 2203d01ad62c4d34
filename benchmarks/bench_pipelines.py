"""Performance benchmark: streamed ``rankz`` + centroid classifier vs the scanpy standard pipeline.

Run ``python benchmarks/bench_pipelines.py`` (``--help`` for options). It PRINTS a table (and optionally
writes ``--json``); it is a measurement script, never a timed test.

What is measured
----------------
Data
    A seeded synthetic count matrix (:class:`SyntheticSpec`, :func:`generate_block`): ``n_types``
    cell types (lineages x subtypes) with distinct expression programs, per-cell library sizes
    (log-normal), shared per-cell programs (e.g. cycling / stress) and ambient RNA mixed into
    every cell, and UMIs drawn from the resulting multinomial. Cells come in blocks of
    ``chunk_cells``; each block is split into a training part (first ``1 - test_fraction``) and a
    test part, each generated from its own seed, so any block can be produced alone and 1M cells
    never have to be in memory at once.
Pipelines (each in a fresh process, so peaks do not mix)
    ``ours``    :func:`~sclinbench.represent.rankz` -> :class:`~sclinbench.models.CentroidClassifier`,
                streamed: one block is loaded at a time and ``rankz`` runs on slices of
                ``rankz_cells`` cells; fitting needs only the per-class sums of the rankz rows
                (:class:`CentroidAccumulator`), prediction goes slice by slice.
    ``scanpy``  the standard scanpy recipe on the whole matrix in memory:
                ``normalize_total(1e4)`` -> ``log1p`` -> ``highly_variable_genes(n_top_genes=2000)``
                (fitted on the training cells) -> ``scale(max_value=10)`` (training mean / std, applied
                to the test cells) -> ``pca(n_comps=50)`` (training cells; test cells projected on the
                training loadings and mean) -> ``build_model("logreg")`` (the package's logistic
                regression: L2, lbfgs, ``class_weight="balanced"``, ``max_iter=1000``).
Time
    Wall-clock seconds per step (``time.perf_counter``) and the CPU time of all threads
    (``time.process_time``). Producing the data ("load") is reported
    but not part of the total: it stands in for reading the counts from disk. Each worker first runs
    its pipeline once on a small data set (not reported) so imports and numba compilation are
    not timed.
Memory
    Peak resident set size per step. Before each step the kernel's RSS high-water mark is reset
    (``echo 5 > /proc/self/clear_refs``) and ``VmHWM`` is read from ``/proc/self/status`` after it:
    an exact per-step peak of the whole process (Python, libraries and the data held at that
    moment included). Where the reset is not permitted, a thread samples ``/proc/self/statm``
    every 5 ms instead (short spikes can then be missed); the method used is printed. The
    pipeline's peak is the largest step peak, data loading included.
Threads
    BLAS / OpenMP pools limited with ``threadpoolctl`` to ``--threads`` (numba likewise); the BLAS
    library, its kernel ("architecture") and ``OPENBLAS_CORETYPE`` are printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import platform
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError

#: Pipelines of the benchmark, in the order they are run and printed.
PIPELINES = ("ours", "scanpy")

#: Steps of each pipeline, in order ("load" is reported but not timed into the total).
STEPS = {
    "ours": ("load", "rankz", "fit", "predict"),
    "scanpy": ("load", "normalize_total", "log1p", "hvg", "scale", "pca", "fit", "predict"),
}

#: Memory kept free when deciding whether the scanpy pipeline fits (bytes).
MEMORY_HEADROOM = 3 * 2**30

#: Foundation-model embedding throughput used for comparison, with its basis. No GPU number for
#: cell-embedding inference was found published by the model authors (searched: scGPT, Geneformer,
#: UCE, TranscriptFormer docs, papers and issue trackers); the two entries below are (1) the one
#: reported measurement found and (2) an explicit compute-based assumption.
FOUNDATION_MODEL_THROUGHPUT = (
    {
        "model": "UCE, 4-layer",
        "cells_per_s": 12_000 / 648.0,
        "hardware": "Apple M1 Max laptop",
        "basis": "measured by a user: 10k-PBMC example, 480 batches x 25 cells in 10 min 48 s "
                 "(github.com/snap-stanford/UCE issue #4, 2023-12-01); the 33-layer UCE used in "
                 "benchmarks is ~8x deeper",
    },
    {
        "model": "TranscriptFormer TF-Sapiens",
        "cells_per_s": 0.4 * 312e12 / (2 * 3.0e8 * 2048 + 4 * 12 * 2048**2 * 2048),
        "hardware": "1x NVIDIA A100 (assumed)",
        "basis": "ASSUMPTION, no published throughput found: ~3e8 transformer parameters and "
                 "12 layers x d=2048 (CZI model card), 2,048 gene tokens per cell -> ~1.6e12 "
                 "FLOP per cell forward; A100 bf16 peak 312 TFLOP/s at 40% utilisation",
    },
)


# --------------------------------------------------------------------------------------------------
# synthetic data
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the synthetic benchmark data.

    Parameters
    ----------
    n_cells
        Total cells (training + test).
    n_genes
        Genes.
    n_lineages, n_subtypes
        Cell types are ``n_lineages * n_subtypes`` (lineage programs are shared by the subtypes of
        a lineage, so subtypes are the hard distinctions).
    umis_per_cell
        Median library size (UMIs); about 3,000 UMIs give ~2,000 detected genes per cell with the
        default 20,000 genes.
    library_sigma
        Standard deviation of the log library size.
    lineage_genes, lineage_lfc
        Genes in each lineage program and their mean |log fold change| (70% up, 30% down).
    subtype_genes, subtype_lfc
        Genes in each subtype program and their mean log fold change (up).
    n_programs, program_genes
        Shared per-cell programs (cycling, stress, ...) mixed into every cell with a
        Beta(0.4, 12) weight each, and their size.
    ambient
        Mean fraction of each cell's UMIs drawn from the population-average profile.
    test_fraction
        Fraction of each block's cells that are test cells.
    chunk_cells
        Cells per generated block.
    seed
        Seed of everything.
    """

    n_cells: int
    n_genes: int = 20_000
    n_lineages: int = 5
    n_subtypes: int = 3
    umis_per_cell: float = 3_000.0
    library_sigma: float = 0.5
    lineage_genes: int = 300
    lineage_lfc: float = 1.5
    subtype_genes: int = 60
    subtype_lfc: float = 2.0
    n_programs: int = 3
    program_genes: int = 150
    ambient: float = 0.05
    test_fraction: float = 0.2
    chunk_cells: int = 20_000
    seed: int = 0

    def __post_init__(self):
        if self.n_cells < 2 or self.n_genes < 10:
            raise SclinbenchError(
                f"bench: need at least 2 cells and 10 genes, got n_cells={self.n_cells}, n_genes={self.n_genes}"
            )
        if not 0 < self.test_fraction < 1:
            raise SclinbenchError(f"bench: test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.chunk_cells < 2:
            raise SclinbenchError(f"bench: chunk_cells must be >= 2, got {self.chunk_cells}")
        if not 0 <= self.ambient < 0.5:
            raise SclinbenchError(f"bench: ambient must be in [0, 0.5), got {self.ambient}")
        if max(self.lineage_genes, self.subtype_genes, self.program_genes) > self.n_genes:
            raise SclinbenchError("bench: program sizes (lineage/subtype/program genes) exceed n_genes")

    @property
    def n_types(self) -> int:
        return self.n_lineages * self.n_subtypes

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n_cells / self.chunk_cells)

    def block_sizes(self, block: int) -> tuple[int, int]:
        """``(n_train, n_test)`` cells of block ``block``."""
        m = min(self.chunk_cells, self.n_cells - block * self.chunk_cells)
        n_test = int(round(m * self.test_fraction))
        n_test = min(max(n_test, 1), m - 1) if m >= 2 else 0
        return m - n_test, n_test

    def n_role(self, role: str) -> int:
        """Number of training or test cells over all blocks."""
        i = _role_index(role)
        return sum(self.block_sizes(b)[i] for b in range(self.n_blocks))

    def profile_key(self) -> tuple:
        """The fields that define the expression profiles (not the cell count or blocking)."""
        skip = {"n_cells", "test_fraction", "chunk_cells"}
        return tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in skip)


def _role_index(role: str) -> int:
    if role not in ("train", "test"):
        raise ValueError(f"role must be 'train' or 'test', got {role!r}")
    return 0 if role == "train" else 1


_TABLE_BITS = 20  # gene lookup tables of 2**20 slots: probabilities resolved to ~1e-6


@dataclasses.dataclass(frozen=True)
class _Profiles:
    type_names: np.ndarray  # (K,) str
    type_prob: np.ndarray  # (K,)
    library_factor: np.ndarray  # (K,)
    tables: np.ndarray  # (K + n_programs + 1) * 2**bits gene ids, flattened
    n_components: int


def _lookup_table(p: np.ndarray, bits: int, dtype) -> np.ndarray:
    """``2**bits`` slots holding gene ids in proportion to ``p`` (largest-remainder rounding).

    A uniform random slot is then a draw from the categorical distribution ``p`` (to ~2**-bits).
    """
    T = 1 << bits
    exact = p / p.sum() * T
    slots = np.floor(exact).astype(np.int64)
    rest = T - int(slots.sum())
    if rest > 0:
        slots[np.argsort(-(exact - slots), kind="stable")[:rest]] += 1
    return np.repeat(np.arange(p.shape[0], dtype=dtype), slots)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@lru_cache(maxsize=4)
def _profiles_cached(key: tuple) -> _Profiles:
    spec = SyntheticSpec(n_cells=2, **dict(key))
    rng = np.random.default_rng([spec.seed, 7919])
    G, L, S, K = spec.n_genes, spec.n_lineages, spec.n_subtypes, spec.n_types
    logp0 = rng.normal(0.0, 1.6, G)  # baseline expression: log-normal over genes
    lfc = np.zeros((K, G))
    for lin in range(L):
        genes = rng.choice(G, spec.lineage_genes, replace=False)
        sign = np.where(rng.random(genes.size) < 0.7, 1.0, -1.0)
        eff = sign * np.abs(rng.normal(spec.lineage_lfc, 0.4, genes.size))
        for sub in range(S):
            k = lin * S + sub
            lfc[k, genes] += eff
            sub_genes = rng.choice(G, spec.subtype_genes, replace=False)
            lfc[k, sub_genes] += np.abs(rng.normal(spec.subtype_lfc, 0.3, sub_genes.size))
    type_p = _softmax(logp0[None, :] + lfc)
    type_prob = 0.8 ** np.arange(K)
    type_prob = rng.permutation(type_prob / type_prob.sum())
    library_factor = np.exp(rng.normal(0.0, 0.25, K))
    components = list(type_p)
    for _ in range(spec.n_programs):
        genes = rng.choice(G, spec.program_genes, replace=False)
        p = np.zeros(G)
        p[genes] = _softmax(logp0[genes] + 1.0)
        components.append(p)
    components.append(type_prob @ type_p)  # ambient: population-average profile
    dtype = np.uint16 if G <= np.iinfo(np.uint16).max else np.uint32
    tables = np.concatenate([_lookup_table(p, _TABLE_BITS, dtype) for p in components])
    names = np.array([f"lineage{lin}_sub{sub}" for lin in range(L) for sub in range(S)])
    return _Profiles(names, type_prob, library_factor, tables, len(components))


def type_names(spec: SyntheticSpec) -> np.ndarray:
    """Cell-type labels of ``spec``, sorted as the classifiers sort them."""
    return np.sort(_profiles_cached(spec.profile_key()).type_names)


def generate_block(spec: SyntheticSpec, block: int, role: str, sub_block: int = 128):
    """Counts and labels of the training or test cells of one block.

    Parameters
    ----------
    spec
        Data parameters.
    block
        Block index, ``0 <= block < spec.n_blocks``.
    role
        ``"train"`` or ``"test"``.
    sub_block
        Cells counted together (memory of the counting buffer: ``sub_block * n_genes`` int64).

    Returns
    -------
    ``(X, y)``: CSR int32 counts (cells x genes, sorted indices) and an array of labels. The same
    ``(spec.seed, block, role)`` always gives the same cells.
    """
    if not 0 <= block < spec.n_blocks:
        raise ValueError(f"block {block} out of range 0..{spec.n_blocks - 1}")
    prof = _profiles_cached(spec.profile_key())
    m = spec.block_sizes(block)[_role_index(role)]
    G, K, P = spec.n_genes, spec.n_types, spec.n_programs
    rng = np.random.default_rng([spec.seed, block, _role_index(role)])
    codes = rng.choice(K, size=m, p=prof.type_prob)
    lib = rng.lognormal(np.log(spec.umis_per_cell), spec.library_sigma, m) * prof.library_factor[codes]
    lib = np.maximum(np.rint(lib), 50).astype(np.int64)
    # mixture weights: own type, shared programs, ambient
    prog = rng.beta(0.4, 12.0, size=(m, P))
    amb = rng.beta(2.0, 2.0 / max(spec.ambient, 1e-6) - 2.0, size=m) if spec.ambient > 0 else np.zeros(m)
    W = np.column_stack([np.ones(m), prog, amb])
    W[:, 0] = np.maximum(1.0 - prog.sum(axis=1) - amb, 0.3)
    W /= W.sum(axis=1, keepdims=True)
    comp_counts = rng.multinomial(lib, W)  # (m, P + 2), rows sum to lib
    comp_ids = np.empty((m, P + 2), dtype=np.int64)
    comp_ids[:, 0] = codes
    comp_ids[:, 1:] = K + np.arange(P + 1)
    comp_offsets = comp_ids << _TABLE_BITS
    T = 1 << _TABLE_BITS

    indices, data, row_nnz = [], [], []
    for a in range(0, m, sub_block):
        b = min(a + sub_block, m)
        cnt = comp_counts[a:b].ravel()
        slots = np.repeat(comp_offsets[a:b].ravel(), cnt)
        slots += rng.integers(0, T, size=slots.size, dtype=np.int64)
        keys = np.repeat(np.arange(b - a, dtype=np.int64) * G, lib[a:b])
        keys += prof.tables[slots]
        counts = np.bincount(keys, minlength=(b - a) * G)
        nz = np.flatnonzero(counts)
        indices.append((nz % G).astype(np.int32))
        data.append(counts[nz].astype(np.int32))
        row_nnz.append(np.bincount(nz // G, minlength=b - a))
    indptr = np.zeros(m + 1, dtype=np.int64)
    if m:
        np.cumsum(np.concatenate(row_nnz), out=indptr[1:])
    idx_dtype = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    X = sp.csr_matrix(
        (np.concatenate(data) if data else np.zeros(0, np.int32),
         np.concatenate(indices) if indices else np.zeros(0, np.int32),
         indptr.astype(idx_dtype)),
        shape=(m, G),
    )
    X.has_sorted_indices = True
    return X, prof.type_names[codes]


def iter_blocks(spec: SyntheticSpec, role: str):
    """Yield ``(X, y)`` for the training or test part of every block (see :func:`generate_block`)."""
    for block in range(spec.n_blocks):
        yield generate_block(spec, block, role)


# --------------------------------------------------------------------------------------------------
# time and peak memory per step
# --------------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the process's RSS high-water mark (VmHWM); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _RssSampler:
    """Thread that samples the RSS from ``/proc/self/statm`` every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def start(self) -> _RssSampler:
        self.peak = self._rss()
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._rss())


class StepRecorder:
    """Wall time and peak RSS of named steps; a step may run many times (summed / maxed).

    Attributes
    ----------
    steps : dict
        ``name -> {"time_s", "cpu_s", "peak_bytes", "calls"}`` in first-use order (``cpu_s``: CPU
        time of all threads of the process, ``time.process_time``).
    method : str
        How the peaks were measured.
    """

    def __init__(self):
        self.steps: dict[str, dict] = {}
        self.method = "VmHWM after resetting it through /proc/self/clear_refs"

    @contextmanager
    def step(self, name: str):
        reset = _reset_peak()
        sampler = None
        if not reset:
            self.method = "RSS sampled every 5 ms from /proc/self/statm"
            sampler = _RssSampler().start()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            peak = _status_kib("VmHWM") * 1024 if reset else sampler.stop()
            rec = self.steps.setdefault(name, {"time_s": 0.0, "cpu_s": 0.0, "peak_bytes": 0, "calls": 0})
            rec["time_s"] += dt
            rec["cpu_s"] += dc
            rec["peak_bytes"] = max(rec["peak_bytes"], peak)
            rec["calls"] += 1


# --------------------------------------------------------------------------------------------------
# pipelines
# --------------------------------------------------------------------------------------------------
class CentroidAccumulator:
    """Streaming fit of :class:`~sclinbench.models.CentroidClassifier`: per-class sums of rows.

    The centroid classifier needs only the class means of the training representation, so the
    training cells can be passed block by block (:meth:`partial_fit`) and dropped; memory stays at
    one block plus a ``k x n_features`` matrix.

    Attributes
    ----------
    class_sums_ : dict
        Label -> float64 row sum over the cells seen.
    class_counts_ : dict
        Label -> number of cells seen.
    """

    def __init__(self):
        self.class_sums_: dict = {}
        self.class_counts_: dict = {}

    def partial_fit(self, Z, y) -> CentroidAccumulator:
        """Add the rows of ``Z`` (CSR, :class:`~sclinbench.represent.OffsetCSR` or dense) with labels ``y``."""
        from sclinbench.represent import OffsetCSR

        y = np.asarray(y)
        if y.shape[0] != Z.shape[0]:
            raise ValueError(f"Z has {Z.shape[0]} rows but y has {y.shape[0]} labels")
        labels, codes = np.unique(y, return_inverse=True)
        A = sp.csr_matrix((np.ones(y.size), (codes, np.arange(y.size))), shape=(labels.size, y.size))
        if isinstance(Z, OffsetCSR):
            sums = Z.rdot(A)
        elif sp.issparse(Z):
            sums = np.asarray((A @ sp.csr_matrix(Z, dtype=np.float64)).toarray())
        else:
            sums = A @ np.asarray(Z, dtype=np.float64)
        counts = np.bincount(codes, minlength=labels.size)
        for lab, s, c in zip(labels, sums, counts):
            if lab in self.class_sums_:
                self.class_sums_[lab] += s
                self.class_counts_[lab] += int(c)
            else:
                self.class_sums_[lab] = np.array(s, dtype=np.float64)
                self.class_counts_[lab] = int(c)
        return self

    def to_classifier(self, min_class_size: int = 1):
        """A fitted :class:`~sclinbench.models.CentroidClassifier` with the accumulated class means.

        The classifier is fitted on the matrix of class means (one row per class), which gives the
        same profiles, least-squares operator and predictions as fitting it on all training rows;
        ``class_counts_`` is then set to the real numbers of cells.
        """
        from sclinbench.models import CentroidClassifier

        if not self.class_sums_:
            raise SclinbenchError("bench: no training cells were passed to the centroid accumulator")
        labels = np.array(sorted(self.class_sums_))
        counts = np.array([self.class_counts_[lab] for lab in labels])
        keep = counts >= min_class_size
        if not keep.any():
            raise SclinbenchError(f"bench: no class has >= {min_class_size} training cells")
        labels, counts = labels[keep], counts[keep]
        means = np.vstack([self.class_sums_[lab] / c for lab, c in zip(labels, counts)])
        clf = CentroidClassifier(min_class_size=1).fit(means, labels)
        clf.class_counts_ = counts
        return clf


def run_ours(spec: SyntheticSpec, rec: StepRecorder, seed: int = 0, rankz_cells: int = 1000):
    """Streamed ``rankz`` -> centroid classifier. Returns ``(y_true, y_pred)`` of the test cells.

    Each loaded block is processed in slices of ``rankz_cells`` cells: rankz is computed per cell,
    so slicing changes nothing in the result, but keeps every temporary array small (a 16k-cell
    block at once allocates ~2.5 GB of fresh temporaries, and page-faulting them in costs about as
    much CPU as the ranking itself). ``seed`` is unused (nothing here is random).
    """
    from sclinbench.represent import rankz

    if not (isinstance(rankz_cells, int) and rankz_cells >= 1):
        raise SclinbenchError(f"bench: rankz_cells must be an integer >= 1, got {rankz_cells!r}")
    acc = CentroidAccumulator()
    for block in range(spec.n_blocks):
        with rec.step("load"):
            X, y = generate_block(spec, block, "train")
        for a in range(0, X.shape[0], rankz_cells):
            with rec.step("rankz"):
                Z = rankz(X[a:a + rankz_cells])
            with rec.step("fit"):
                acc.partial_fit(Z, y[a:a + rankz_cells])
        del X, Z
    with rec.step("fit"):
        clf = acc.to_classifier()
    y_true, y_pred = [], []
    for block in range(spec.n_blocks):
        with rec.step("load"):
            X, y = generate_block(spec, block, "test")
        for a in range(0, X.shape[0], rankz_cells):
            with rec.step("rankz"):
                Z = rankz(X[a:a + rankz_cells])
            with rec.step("predict"):
                y_pred.append(clf.predict(Z))
        y_true.append(y)
        del X, Z
    return np.concatenate(y_true), np.concatenate(y_pred)


def run_scanpy(spec: SyntheticSpec, rec: StepRecorder, seed: int = 0, n_top_genes: int = 2000):
    """The scanpy standard recipe + logistic regression. Returns ``(y_true, y_pred)`` of the test cells."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    from sclinbench.models import build_model

    with rec.step("load"):
        parts, labels = [], []
        for role in ("train", "test"):
            for X, y in iter_blocks(spec, role):
                parts.append(X.astype(np.float32))
                labels.append(y)
                del X
        X = sp.vstack(parts, format="csr")
        del parts
        y_all = np.concatenate(labels)
        n_train = spec.n_role("train")
        adata = ad.AnnData(X=X, obs=pd.DataFrame(index=pd.RangeIndex(X.shape[0]).astype(str)))
        del X
    train_idx = np.arange(n_train)
    test_idx = np.arange(n_train, adata.n_obs)
    with rec.step("normalize_total"):
        sc.pp.normalize_total(adata, target_sum=1e4)
    with rec.step("log1p"):
        sc.pp.log1p(adata)
    with rec.step("hvg"):
        hv = sc.pp.highly_variable_genes(adata[train_idx], n_top_genes=n_top_genes, inplace=False)
        genes = np.flatnonzero(np.asarray(hv["highly_variable"], dtype=bool))
        train = adata[train_idx, genes].copy()
        test = adata[test_idx, genes].copy()
        del adata, hv
        gc.collect()
    with rec.step("scale"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="zero-centering a sparse array", category=UserWarning)
        sc.pp.scale(train, max_value=10)
        mean = np.asarray(train.var["mean"], dtype=np.float64)
        std = np.asarray(train.var["std"], dtype=np.float64)
        Xt = test.X.toarray() if sp.issparse(test.X) else np.array(test.X)
        del test
        Xt = Xt.astype(np.float64, copy=False)
        Xt -= mean
        Xt /= np.where(std > 0, std, 1.0)
        np.clip(Xt, -10, 10, out=Xt)
    with rec.step("pca"):
        sc.pp.pca(train, n_comps=50, random_state=seed)
        loadings = np.asarray(train.varm["PCs"], dtype=np.float64)
        center = np.asarray(train.X.mean(axis=0), dtype=np.float64).ravel()
        Xt -= center
        test_pcs = Xt @ loadings
        train_pcs = np.asarray(train.obsm["X_pca"])
        del Xt
    with rec.step("fit"):
        clf = build_model("logreg", {}, seed).fit(train_pcs, y_all[:n_train])
    with rec.step("predict"):
        y_pred = clf.predict(test_pcs)
    return y_all[n_train:], np.asarray(y_pred)


_RUNNERS = {"ours": run_ours, "scanpy": run_scanpy}


# --------------------------------------------------------------------------------------------------
# scanpy memory estimate
# --------------------------------------------------------------------------------------------------
def estimate_scanpy_peak_bytes(spec: SyntheticSpec, nnz_per_cell: float, n_top_genes: int = 2000) -> float:
    """Rough peak memory of :func:`run_scanpy` (bytes), to decide whether it can run at all.

    The whole float32 CSR matrix (8 bytes per stored value: data + int32 index) is held, and the
    highly-variable-gene step of the seurat flavor works on a copy of the training rows and on
    its ``expm1`` (two more copies of the training part), so the peak is about
    ``8 * nnz * (1 + 2 * train_fraction)`` plus the dense scaled training and test matrices
    (float32 / float64) over ``n_top_genes`` and ~0.4 GiB of libraries. The coefficients are
    checked against measured peaks: the report prints estimate and measurement side by side.
    """
    nnz = float(nnz_per_cell) * spec.n_cells
    train_frac = 1.0 - spec.test_fraction
    sparse = 8.0 * nnz * (1.0 + 2.0 * train_frac)
    dense = spec.n_cells * n_top_genes * (4.0 * train_frac + 8.0 * spec.test_fraction) * 2.0
    return 0.4 * 2**30 + max(sparse, 8.0 * nnz + dense)


def _expected_nnz_per_cell(spec: SyntheticSpec, n_probe: int = 500) -> float:
    """Mean stored values per cell, from a small probe of the same profiles."""
    probe = dataclasses.replace(spec, n_cells=n_probe, chunk_cells=n_probe, seed=spec.seed + 104729)
    X, _ = generate_block(probe, 0, "train")
    return X.nnz / max(X.shape[0], 1)


def memory_budget_bytes() -> int:
    """Memory the scanpy pipeline may use: MemAvailable minus :data:`MEMORY_HEADROOM`."""
    info = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            k, v = line.split(":", 1)
            info[k] = int(v.split()[0]) * 1024
    return max(int(info.get("MemAvailable", info.get("MemTotal", 0))) - MEMORY_HEADROOM, 0)


# --------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------
def _blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads", "threading_layer")
    return [{**{k: d.get(k) for k in keep}, "library": os.path.basename(d.get("filepath") or "")}
            for d in threadpool_info()]


def _limit_numba(threads: int) -> None:
    try:
        import numba
    except ImportError:
        return
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def run_pipeline(pipeline: str, spec: SyntheticSpec, threads: int = 2, seed: int = 0,
                 n_top_genes: int = 2000, rankz_cells: int = 1000, warmup: bool = True) -> dict:
    """Run one pipeline on ``spec`` in this process and return its measurements.

    ``n_top_genes`` applies to ``scanpy``, ``rankz_cells`` to ``ours`` (see :func:`run_ours`).

    Returns
    -------
    dict with ``pipeline``, ``n_cells``, ``n_train``, ``n_test``, ``steps`` (list of
    ``{step, time_s, peak_bytes, calls}``), ``total_time_s`` (steps except ``load``),
    ``peak_bytes`` (all steps), ``macro_f1``, ``accuracy``, ``memory_method``, ``blas``.
    """
    from sklearn.metrics import accuracy_score, f1_score
    from threadpoolctl import threadpool_limits

    if pipeline not in _RUNNERS:
        raise SclinbenchError(f"bench: pipeline '{pipeline}' is unknown; valid: {', '.join(PIPELINES)}")
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
    runner = _RUNNERS[pipeline]
    opts = {"rankz_cells": rankz_cells} if pipeline == "ours" else {"n_top_genes": n_top_genes}
    with threadpool_limits(limits=threads):
        if pipeline == "scanpy":
            import scanpy  # noqa: F401  (imports numba)

            _limit_numba(threads)
        if warmup:
            small = dataclasses.replace(spec, n_cells=min(spec.n_cells, 1000), chunk_cells=500)
            runner(small, StepRecorder(), seed=seed, **opts)
        gc.collect()
        rec = StepRecorder()
        y_true, y_pred = runner(spec, rec, seed=seed, **opts)
        blas = _blas_info()
    labels = np.union1d(y_true, y_pred)
    steps = [{"step": k, **v} for k, v in rec.steps.items()]
    return {
        "pipeline": pipeline,
        "n_cells": spec.n_cells,
        "n_train": spec.n_role("train"),
        "n_test": int(y_true.size),
        "steps": steps,
        "total_time_s": float(sum(s["time_s"] for s in steps if s["step"] != "load")),
        "peak_bytes": int(max(s["peak_bytes"] for s in steps)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "memory_method": rec.method,
        "blas": blas,
    }


def _run_isolated(kwargs: dict) -> dict:
    """:func:`run_pipeline` in a fresh spawned process (so peaks and imports do not mix)."""
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(run_pipeline, **kwargs).result()


def run_benchmark(cells=(10_000, 100_000), threads: int = 2, pipelines=PIPELINES, isolate: bool = True,
                  warmup: bool = True, n_top_genes: int = 2000, rankz_cells: int = 1000, seed: int = 0,
                  repeats: int = 1, log=None, **spec_kwargs) -> dict:
    """Run every pipeline at every size (smallest first); returns the results dictionary.

    Parameters
    ----------
    cells
        Total cell counts to run.
    threads
        BLAS / OpenMP / numba threads of each pipeline.
    pipelines
        Subset of :data:`PIPELINES`.
    isolate
        Run each (size, pipeline) in a fresh process (default; needed for clean memory peaks).
    warmup
        Run each pipeline once on a small data set first (untimed).
    n_top_genes
        Highly variable genes of the scanpy pipeline.
    rankz_cells
        Cells per ``rankz`` call of our pipeline (see :func:`run_ours`).
    seed
        Seed of the data and of the models.
    repeats
        Run each (size, pipeline) this many times and report the fastest run (its steps, peaks and
        F1); every run's total time is kept in ``repeat_total_times_s``. Helps on a shared machine.
    log
        Callable for progress lines (default: stderr).
    **spec_kwargs
        Other :class:`SyntheticSpec` fields (``n_genes``, ``umis_per_cell``, ``chunk_cells``, ...).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    unknown = sorted(set(pipelines) - set(PIPELINES))
    if unknown:
        raise SclinbenchError(f"bench: pipeline(s) {', '.join(unknown)} unknown; valid: {', '.join(PIPELINES)}")
    if not (isinstance(repeats, int) and repeats >= 1):
        raise SclinbenchError(f"bench: repeats must be an integer >= 1, got {repeats!r}")
    runs, skipped = [], []
    for n in sorted(int(c) for c in cells):
        spec = SyntheticSpec(n_cells=n, seed=seed, **spec_kwargs)
        nnz_pc = _expected_nnz_per_cell(spec)
        for pipeline in [p for p in PIPELINES if p in pipelines]:
            if pipeline == "scanpy":
                need = estimate_scanpy_peak_bytes(spec, nnz_pc, n_top_genes)
                budget = memory_budget_bytes()
                if need > budget:
                    log(f"[bench] {n:,} cells: scanpy not run: needs ~{need / 2**30:.0f} GiB "
                        f"(budget {budget / 2**30:.1f} GiB)")
                    skipped.append({"pipeline": pipeline, "n_cells": n, "estimated_peak_bytes": need,
                                    "budget_bytes": budget})
                    continue
            load_before = _loadavg()
            log(f"[bench] {n:,} cells: running {pipeline} (load average {load_before})")
            kwargs = dict(pipeline=pipeline, spec=spec, threads=threads, seed=seed,
                          n_top_genes=n_top_genes, rankz_cells=rankz_cells, warmup=warmup)
            tries = []
            for _ in range(repeats):
                tries.append(_run_isolated(kwargs) if isolate else run_pipeline(**kwargs))
            res = min(tries, key=lambda r: r["total_time_s"])
            res["repeat_total_times_s"] = [r["total_time_s"] for r in tries]
            res["nnz_per_cell"] = nnz_pc
            res["load_average_before"] = load_before
            res["load_average_after"] = _loadavg()
            if pipeline == "scanpy":
                res["estimated_peak_bytes"] = estimate_scanpy_peak_bytes(spec, nnz_pc, n_top_genes)
            runs.append(res)
            totals = ", ".join(f"{t:.1f}" for t in res["repeat_total_times_s"])
            log(f"[bench]   {pipeline}: {totals} s, peak {res['peak_bytes'] / 2**30:.2f} GiB, "
                f"macro F1 {res['macro_f1']:.3f}")
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": _machine(),
        "threads": threads,
        "repeats": repeats,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "spec": {k: v for k, v in dataclasses.asdict(SyntheticSpec(n_cells=2, seed=seed, **spec_kwargs)).items()
                 if k != "n_cells"},
        "n_top_genes": n_top_genes,
        "rankz_cells": rankz_cells,
        "runs": runs,
        "skipped": skipped,
        "foundation_models": list(FOUNDATION_MODEL_THROUGHPUT),
        "summary": summarize(runs),
    }


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) * 1024
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "python": platform.python_version(),
            "platform": platform.platform()}


def summarize(runs: list[dict]) -> dict:
    """Ratios per size, our log-log time slope and throughput vs foundation models."""
    by = {(r["n_cells"], r["pipeline"]): r for r in runs}
    sizes = sorted({r["n_cells"] for r in runs})
    ratios = []
    for n in sizes:
        o, s = by.get((n, "ours")), by.get((n, "scanpy"))
        if o and s:
            ratios.append({
                "n_cells": n,
                "time_ratio": s["total_time_s"] / o["total_time_s"],
                "memory_ratio": s["peak_bytes"] / o["peak_bytes"],
                "f1_diff": o["macro_f1"] - s["macro_f1"],
            })
    ours = [(n, by[(n, "ours")]["total_time_s"]) for n in sizes if (n, "ours") in by]
    slope = None
    if len(ours) >= 2 and ours[-1][0] > ours[0][0]:
        slope = math.log(ours[-1][1] / ours[0][1]) / math.log(ours[-1][0] / ours[0][0])
    ours_rate = ours[-1][0] / ours[-1][1] if ours else None
    return {"ratios": ratios, "ours_time_slope": slope, "ours_cells_per_s_largest": ours_rate}


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
TABLE_COLUMNS = ("cells", "pipeline", "step", "time_s", "cpu_s", "peak_GiB")


def results_table(results: dict):
    """Tidy per-step table: one row per size x pipeline x step, plus a ``TOTAL`` row per run.

    ``time_s`` (wall) and ``cpu_s`` (CPU time of all threads) of the ``load`` rows are shown but not
    part of ``TOTAL``; the ``TOTAL`` peak is the largest peak of all steps (data included).
    """
    import pandas as pd

    rows = []
    for r in results["runs"]:
        for s in r["steps"]:
            rows.append((r["n_cells"], r["pipeline"], s["step"], s["time_s"], s["cpu_s"], s["peak_bytes"] / 2**30))
        cpu = sum(s["cpu_s"] for s in r["steps"] if s["step"] != "load")
        rows.append((r["n_cells"], r["pipeline"], "TOTAL", r["total_time_s"], cpu, r["peak_bytes"] / 2**30))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def summary_table(results: dict):
    """One row per size x pipeline: total time, cells/s, peak memory, macro F1, accuracy."""
    import pandas as pd

    rows = [(r["n_cells"], r["pipeline"], r["total_time_s"], r["n_cells"] / r["total_time_s"],
             r["peak_bytes"] / 2**30, r["macro_f1"], r["accuracy"], r.get("load_average_before", ""))
            for r in results["runs"]]
    return pd.DataFrame(rows, columns=["cells", "pipeline", "total_s", "cells_per_s", "peak_GiB",
                                       "macro_F1", "accuracy", "load_avg_before"])


def _fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_report(results: dict) -> str:
    """The printed report: settings, per-step table, summary, ratios, targets, foundation models."""
    lines = []
    m = results["machine"]
    spec = results["spec"]
    lines.append(f"sclinbench performance benchmark  {results['date']}")
    lines.append(f"machine: {m['cpu']}, {m['cores']} cores, "
                 f"{(m['memory_bytes'] or 0) / 2**30:.1f} GiB RAM, Python {m['python']}")
    lines.append(f"threads: {results['threads']} (threadpoolctl; numba likewise)   "
                 f"OPENBLAS_CORETYPE={results['openblas_coretype'] or '(unset)'}")
    seen = []
    for r in results["runs"]:
        for b in r["blas"]:
            if b.get("user_api") == "blas" and b not in seen:
                seen.append(b)
    for b in seen:
        lines.append(f"BLAS: {b['internal_api']} {b['version']} ({b.get('library') or b.get('prefix')}), "
                     f"kernel {b['architecture']}, "
                     f"{b['num_threads']} threads ({b.get('threading_layer')})")
    lines.append(f"data: synthetic counts, {spec['n_genes']:,} genes, {spec['n_lineages'] * spec['n_subtypes']} "
                 f"cell types ({spec['n_lineages']} lineages x {spec['n_subtypes']} subtypes), median "
                 f"{spec['umis_per_cell']:.0f} UMIs/cell, test fraction {spec['test_fraction']}, "
                 f"blocks of {spec['chunk_cells']:,} cells, seed {spec['seed']}")
    lines.append(f"ours: blocks of {spec['chunk_cells']:,} cells loaded at a time, rankz in slices of "
                 f"{results.get('rankz_cells', '?')} cells; scanpy: whole matrix, {results['n_top_genes']} HVGs")
    if results["runs"]:
        lines.append(f"memory: {results['runs'][0]['memory_method']}; 'load' = generating the counts "
                     "(stands in for reading them; not in TOTAL time, in TOTAL peak)")
    lines.append("")

    table = results_table(results)
    if len(table):
        lines.append("Per step (wall time, peak RSS of the process during the step)")
        lines.append(table.to_string(index=False, float_format=lambda x: f"{x:,.2f}"))
        lines.append("")
        summ = summary_table(results)
        nnz = {r["n_cells"]: r["nnz_per_cell"] for r in results["runs"]}
        summ.insert(1, "nnz_per_cell", summ["cells"].map(nnz).round(0).astype(int))
        title = "Per pipeline (total = all steps but load)"
        if results.get("repeats", 1) > 1:
            summ["all_totals_s"] = [" ".join(f"{t:.1f}" for t in r["repeat_total_times_s"])
                                    for r in results["runs"]]
            title += f"; fastest of {results['repeats']} runs, all totals in the last column"
        lines.append(title)
        lines.append(summ.to_string(index=False, float_format=lambda x: f"{x:,.3f}"))
        lines.append("")
    for s in results["skipped"]:
        need = s["estimated_peak_bytes"] / 2**30
        lines.append(f"{s['n_cells']:,} cells, {s['pipeline']}: not run: needs ~{need:.0f} "
                     f"GiB (estimate), budget {s['budget_bytes'] / 2**30:.1f} GiB (MemAvailable - "
                     f"{MEMORY_HEADROOM / 2**30:.0f} GiB headroom)")
    est = [(r["n_cells"], r["estimated_peak_bytes"], r["peak_bytes"])
           for r in results["runs"] if "estimated_peak_bytes" in r]
    for n, e, p in est:
        lines.append(f"{n:,} cells, scanpy memory estimate {e / 2**30:.2f} GiB vs measured {p / 2**30:.2f} GiB")
    if results["skipped"] or est:
        lines.append("")

    summary = results["summary"]
    if summary["ratios"]:
        lines.append("scanpy / ours")
        for q in summary["ratios"]:
            lines.append(f"  {q['n_cells']:>9,} cells: time x{q['time_ratio']:.1f}, peak memory "
                         f"x{q['memory_ratio']:.1f}, macro F1 ours - scanpy = {q['f1_diff']:+.3f}")
        lines.append("")

    lines.append("Targets")
    ours = {r["n_cells"]: r for r in results["runs"] if r["pipeline"] == "ours"}
    big = ours.get(max((n for n in ours if n >= 1_000_000), default=-1))
    if big:
        ok = big["peak_bytes"] < 16 * 2**30
        lines.append(f"  {big['n_cells']:,} cells, ours peak < 16 GiB: {big['peak_bytes'] / 2**30:.2f} GiB -> "
                     f"{'MET' if ok else 'NOT MET'}")
    else:
        lines.append("  1M cells, ours peak < 16 GiB: not measured in this run (--cells 1000000)")
    for q in summary["ratios"]:
        ok = q["time_ratio"] >= 3 and q["f1_diff"] >= 0
        lines.append(f"  {q['n_cells']:,} cells, >= 3x faster than scanpy at >= macro F1: "
                     f"x{q['time_ratio']:.1f}, F1 {q['f1_diff']:+.3f} -> {'MET' if ok else 'NOT MET'}")
    if summary["ours_time_slope"] is not None:
        sizes = sorted(ours)
        ok = summary["ours_time_slope"] <= 1.1
        lines.append(f"  linear cost, log-log slope of our total time {sizes[0]:,} -> {sizes[-1]:,} cells: "
                     f"{summary['ours_time_slope']:.2f} (target <= 1.1) -> {'MET' if ok else 'NOT MET'}")
    lines.append("")

    if ours:
        n = max(ours)
        rate = n / ours[n]["total_time_s"]
        lines.append(f"Throughput vs foundation-model embedding (ours at {n:,} cells: {rate:,.0f} cells/s, "
                     f"{results['threads']} CPU threads; fit + predict included, FM = embedding only)")
        for fm in results["foundation_models"]:
            lines.append(f"  {fm['model']}: ~{fm['cells_per_s']:.0f} cells/s on {fm['hardware']} -> ours "
                         f"x{rate / fm['cells_per_s']:,.0f}; {n:,} cells would take "
                         f"{_fmt_duration(n / fm['cells_per_s'])} vs {_fmt_duration(ours[n]['total_time_s'])}")
            lines.append(f"      basis: {fm['basis']}")
    return "\n".join(lines)


def _to_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, SyntheticSpec):
        return dataclasses.asdict(obj)
    return obj


def main(argv=None) -> int:
    """Command line: ``python benchmarks/bench_pipelines.py [--cells N ...] [--threads T] [--json out.json]``."""
    p = argparse.ArgumentParser(prog="python benchmarks/bench_pipelines.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000],
                   help="total cell counts (default: 10000 100000; 1000000 takes minutes)")
    p.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP/numba threads (default 2)")
    p.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    p.add_argument("--genes", type=int, default=20_000, help="genes (default 20000)")
    p.add_argument("--umis", type=float, default=3_000.0, help="median UMIs per cell (default 3000)")
    p.add_argument("--chunk-cells", type=int, default=20_000, help="cells per generated block (default 20000)")
    p.add_argument("--n-top-genes", type=int, default=2000, help="HVGs of the scanpy pipeline (default 2000)")
    p.add_argument("--rankz-cells", type=int, default=1000,
                   help="cells per rankz call in our streamed pipeline (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1,
                   help="run each size x pipeline N times and report the fastest (default 1)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run of each pipeline")
    p.add_argument("--in-process", action="store_true",
                   help="run pipelines in this process (faster start; memory peaks then include earlier runs)")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    if min(args.threads, args.repeats, args.rankz_cells) < 1 or any(c < 2 for c in args.cells):
        p.error("--threads, --repeats and --rankz-cells must be >= 1 and --cells >= 2")
    try:
        results = run_benchmark(
            cells=args.cells, threads=args.threads, pipelines=args.pipelines, isolate=not args.in_process,
            warmup=not args.no_warmup, n_top_genes=args.n_top_genes, rankz_cells=args.rankz_cells,
            seed=args.seed, repeats=args.repeats,
            n_genes=args.genes, umis_per_cell=args.umis, chunk_cells=args.chunk_cells,
        )
    except SclinbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(results))
    if args.json:
        from sclinbench.io import atomic_path

        with atomic_path(args.json) as tmp:
            with open(tmp, "w") as fh:
                json.dump(_to_jsonable(results), fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
