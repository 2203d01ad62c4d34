"""Seeded synthetic single-cell counts for the scale benchmarks, generated block by block.

``SyntheticSpec`` describes the data: ``n_types`` cell types (lineages x subtypes) with distinct
expression programs, log-normal library sizes, shared per-cell programs (cycling / stress) and
ambient RNA mixed into every cell, UMIs drawn from the resulting multinomial. Cells come in blocks
of ``chunk_cells``; each block has a training and a test part generated from their own seeds, so
any block can be produced alone and a million cells never have to be in memory at once
(``make_dataset.py`` appends the blocks to an h5ad).
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError


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
    baseline: np.ndarray  # (G,) log baseline expression (programs of generate_cells build on it)
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
    return _Profiles(names, logp0, type_prob, library_factor, tables, len(components))


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
    X = _count_umis(prof.tables, comp_ids, comp_counts, lib, G, rng, sub_block)
    return X, prof.type_names[codes]


def _count_umis(tables: np.ndarray, comp_ids: np.ndarray, comp_counts: np.ndarray, lib: np.ndarray, G: int,
                rng: np.random.Generator, sub_block: int) -> sp.csr_matrix:
    """UMIs of ``m`` cells: cell ``i`` draws ``comp_counts[i, j]`` genes from lookup table
    ``comp_ids[i, j]`` (slots of ``tables``); returns CSR int32 counts with sorted indices."""
    m = lib.shape[0]
    comp_offsets = comp_ids << _TABLE_BITS
    T = 1 << _TABLE_BITS

    indices, data, row_nnz = [], [], []
    for a in range(0, m, sub_block):
        b = min(a + sub_block, m)
        cnt = comp_counts[a:b].ravel()
        slots = np.repeat(comp_offsets[a:b].ravel(), cnt)
        slots += rng.integers(0, T, size=slots.size, dtype=np.int64)
        keys = np.repeat(np.arange(b - a, dtype=np.int64) * G, lib[a:b])
        keys += tables[slots]
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
    return X


def program_profiles(spec: SyntheticSpec, n: int, genes: int = 100, lfc: float = 1.5, seed=0) -> np.ndarray:
    """``n`` extra expression programs over the genes of ``spec`` (donor, species or infection
    programs for :func:`generate_cells`): each a gene probability vector over ``genes`` random genes,
    raised ``lfc`` above their baseline expression. Seeded by ``seed`` alone, so adding programs
    never changes the cell-type profiles (or :func:`generate_block`'s cells)."""
    prof = _profiles_cached(spec.profile_key())
    rng = np.random.default_rng(seed)
    out = np.zeros((n, spec.n_genes))
    for i in range(n):
        g = rng.choice(spec.n_genes, min(genes, spec.n_genes), replace=False)
        out[i, g] = _softmax(prof.baseline[g] + lfc)
    return out


def generate_cells(spec: SyntheticSpec, codes, seed, programs: np.ndarray | None = None,
                   program_weights: np.ndarray | None = None, library_scale=None,
                   sub_block: int = 128) -> sp.csr_matrix:
    """Counts of cells whose types are given (``codes`` index ``type_names(spec)``'s unsorted order,
    i.e. the generator's ``lineage{l}_sub{s}`` numbering ``l * n_subtypes + s``), with optional extra
    programs mixed in: cell ``i`` draws a fraction ``program_weights[i, j]`` of its UMIs from
    ``programs[j]`` (:func:`program_profiles`; e.g. its donor's program), on top of its type, the
    shared programs and ambient RNA of :func:`generate_block`. ``library_scale`` multiplies each
    cell's library size (e.g. low-quality barcodes). Seeded by ``seed`` (an int or a list of ints).

    :func:`generate_block` is unchanged by this function: it draws its own cells from its own seeds.
    """
    prof = _profiles_cached(spec.profile_key())
    codes = np.asarray(codes, dtype=np.int64)
    m = codes.size
    G, K, P = spec.n_genes, spec.n_types, spec.n_programs
    if m and (codes.min() < 0 or codes.max() >= K):
        raise ValueError(f"type codes must be in 0..{K - 1}")
    E = 0 if programs is None else programs.shape[0]
    extra = np.zeros((m, 0)) if E == 0 else np.asarray(program_weights, dtype=float)
    if extra.shape != (m, E):
        raise ValueError(f"program_weights must have shape ({m}, {E}), got {extra.shape}")
    rng = np.random.default_rng(seed)
    lib = rng.lognormal(np.log(spec.umis_per_cell), spec.library_sigma, m) * prof.library_factor[codes]
    if library_scale is not None:
        lib = lib * np.asarray(library_scale, dtype=float)
    lib = np.maximum(np.rint(lib), 50).astype(np.int64)
    prog = rng.beta(0.4, 12.0, size=(m, P))
    amb = rng.beta(2.0, 2.0 / max(spec.ambient, 1e-6) - 2.0, size=m) if spec.ambient > 0 else np.zeros(m)
    W = np.column_stack([np.ones(m), prog, amb, extra])
    W[:, 0] = np.maximum(1.0 - prog.sum(axis=1) - amb - extra.sum(axis=1), 0.2)
    W /= W.sum(axis=1, keepdims=True)
    comp_counts = rng.multinomial(lib, W)
    comp_ids = np.empty((m, P + 2 + E), dtype=np.int64)
    comp_ids[:, 0] = codes
    comp_ids[:, 1:P + 2] = K + np.arange(P + 1)
    tables = prof.tables
    if E:
        dtype = prof.tables.dtype
        tables = np.concatenate([prof.tables] + [_lookup_table(p, _TABLE_BITS, dtype) for p in programs])
        comp_ids[:, P + 2:] = prof.n_components + np.arange(E)
    return _count_umis(tables, comp_ids, comp_counts, lib, G, rng, sub_block)


def iter_blocks(spec: SyntheticSpec, role: str):
    """Yield ``(X, y)`` for the training or test part of every block (see :func:`generate_block`)."""
    for block in range(spec.n_blocks):
        yield generate_block(spec, block, role)
