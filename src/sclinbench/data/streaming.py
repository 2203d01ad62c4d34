"""Streaming: one h5ad file standardized block by block, never holding its counts
(:func:`standardize_h5ad`); same checks, messages, steps and output as :func:`standardize`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.data.counts import check_integer_counts
from sclinbench.data.genes import _merge_genes, _plan_var
from sclinbench.data.h5ad import READ_ERRORS, _canonical, _read_obs_var, h5ad_counts_group
from sclinbench.data.obs import _condition_obs, _feature_hit, _map_obs
from sclinbench.data.reading import _rows_to_keep, ood_row_filter, unreadable
from sclinbench.data.standardization import _standardize_cells
from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)

#: stored values read from disk per block by the streaming standardization (data + indices:
#: 8 bytes each, plus the block's transforms: a few hundred MB at most)
STREAM_BLOCK = 1 << 23


class _StreamedCounts:
    """The counts of one h5ad (CSR) as :func:`standardize` transforms them, read in row blocks.

    Every block is put in canonical form, its duplicated genes summed (``codes``) and the
    ``condition_from_feature`` genes dropped (``drop``), exactly as the in-memory path transforms
    the whole matrix. :meth:`scan` checks the counts and computes per-cell totals/genes (and the
    feature's counts); :meth:`cell_stats` / :meth:`gene_cells` answer :func:`_quality_control`
    for the cells and genes an obs/var-only AnnData holds; :meth:`write` writes those cells x
    genes as CSR float32, block by block. Peak memory: one block (``block`` stored values) plus
    per-cell arrays.
    """

    def __init__(self, group, file_rows: np.ndarray, names: pd.Index, codes: np.ndarray | None,
                 n_merged: int, where: str, block: int = STREAM_BLOCK):
        self.group, self.file_rows, self.names = group, file_rows, names
        self.codes, self.n_merged, self.where = codes, n_merged, where
        self.block = int(block)
        self.indptr = group["indptr"][:].astype(np.int64)
        self.n_vars = int(group.attrs["shape"][1])
        self.drop = None  # genes (merged space) dropped after condition_from_feature
        self.var_names = None  # work genes (after the drop), set by the caller
        self.totals = self.n_genes = None
        self._gene_cells = None  # (cells, genes' cells) of the last gene_cells over every gene
        self._gene_totals = None  # (cells, genes' total counts) of the last gene_cells

    def _ranges(self, rows: np.ndarray):
        """Contiguous file-row ranges of at most ``block`` stored values holding ``rows``."""
        indptr, n = self.indptr, len(self.indptr) - 1
        i = 0
        while i < len(rows):
            r0 = int(rows[i])
            r1 = int(np.searchsorted(indptr, indptr[r0] + self.block, side="right")) - 1
            r1 = min(max(r1, r0 + 1), n)
            j = int(np.searchsorted(rows, r1, side="left"))
            yield r0, r1, rows[i:j] - r0, i, j
            i = j

    def _blocks(self, positions: np.ndarray, check: bool = False):
        """``(slice of positions, block)``: the work rows ``positions`` (increasing) in blocks,
        transformed (stored zeros dropped, duplicated genes summed)."""
        rows = self.file_rows[positions]
        data_ds, index_ds = self.group["data"], self.group["indices"]
        for r0, r1, local, i, j in self._ranges(rows):
            lo, hi = int(self.indptr[r0]), int(self.indptr[r1])
            indptr = self.indptr[r0:r1 + 1] - lo
            indices = index_ds[lo:hi]
            values = data_ds[lo:hi]
            X = sp.csr_matrix((values, indices, indptr), shape=(r1 - r0, self.n_vars))
            if len(local) < r1 - r0:
                X = X[local]
            X = _canonical(X)
            if check:
                check_integer_counts(X, where=self.where)
            X = _canonical(_merge_genes(X, self.codes, self.n_merged))
            yield slice(i, j), X

    def scan(self, hit: np.ndarray | None = None) -> np.ndarray | None:
        """One pass over every work row: the integer check, totals and genes per cell (after the
        dropped genes) and, with ``hit``, the feature's counts per cell."""
        n = len(self.file_rows)
        totals, n_genes = np.zeros(n), np.zeros(n, dtype=np.int64)
        feature = np.zeros(n) if hit is not None else None
        keep_cols = None
        for rows, X in self._blocks(np.arange(n), check=True):
            if hit is not None:
                feature[rows] = np.asarray(X[:, np.flatnonzero(hit)].sum(axis=1)).reshape(-1)
                if self.drop is not None:
                    keep_cols = keep_cols if keep_cols is not None else np.flatnonzero(~self.drop)
                    X = X[:, keep_cols]
            totals[rows] = np.asarray(X.sum(axis=1)).reshape(-1)
            n_genes[rows] = np.diff(X.indptr)
        self.totals, self.n_genes = totals, n_genes
        return feature

    def _work_blocks(self, adata: ad.AnnData):
        positions = self.names.get_indexer(adata.obs_names)
        if (positions < 0).any() or (np.diff(positions) <= 0).any():
            raise AssertionError("streamed standardization: cells out of file order")
        cols = self.var_names.get_indexer(adata.var_names)
        kept = np.flatnonzero(~self.drop) if self.drop is not None else None
        for rows, X in self._blocks(positions):
            if kept is not None:
                X = X[:, kept]
            yield rows, X, cols

    def cell_stats(self, adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
        positions = self.names.get_indexer(adata.obs_names)
        if adata.n_vars == len(self.var_names) and adata.var_names.equals(self.var_names):
            return self.totals[positions], self.n_genes[positions]
        last = self._gene_cells
        if last is not None and np.array_equal(last[0], positions):
            dropped = np.ones(len(self.var_names), dtype=bool)
            dropped[self.var_names.get_indexer(adata.var_names)] = False
            if not last[1][dropped].any():  # only genes without a count in these cells went
                return self.totals[positions], self.n_genes[positions]
        totals, n_genes = np.zeros(adata.n_obs), np.zeros(adata.n_obs, dtype=np.int64)
        for rows, X, cols in self._work_blocks(adata):
            X = X[:, cols]
            totals[rows] = np.asarray(X.sum(axis=1)).reshape(-1)
            n_genes[rows] = np.diff(X.indptr)
        return totals, n_genes

    def gene_cells(self, adata: ad.AnnData) -> np.ndarray:
        n_cells = np.zeros(len(self.var_names), dtype=np.int64)
        totals = np.zeros(len(self.var_names))
        for _, X, _ in self._work_blocks(adata):
            n_cells += np.bincount(X.indices, minlength=len(self.var_names))
            totals += np.bincount(X.indices, weights=X.data, minlength=len(self.var_names))
        positions = self.names.get_indexer(adata.obs_names)
        if adata.var_names.equals(self.var_names):
            self._gene_cells = (positions, n_cells)
        self._gene_totals = (positions, totals)
        return n_cells[self.var_names.get_indexer(adata.var_names)]

    def gene_totals(self, adata: ad.AnnData) -> np.ndarray:
        """Total counts per gene of these cells (from the pass of :meth:`gene_cells` when it read
        the same cells)."""
        last = getattr(self, "_gene_totals", None)
        if last is None or not np.array_equal(last[0], self.names.get_indexer(adata.obs_names)):
            self.gene_cells(adata)
            last = self._gene_totals
        return last[1][self.var_names.get_indexer(adata.var_names)]

    def write(self, adata: ad.AnnData, path: str | os.PathLike, compression: str | None) -> int:
        """Append X (CSR float32, the cells x genes of ``adata``) to the h5ad at ``path`` (written
        by anndata without X); returns the stored values written."""
        import h5py

        bound = int(self.n_genes[self.names.get_indexer(adata.obs_names)].sum())
        index_dtype = np.int64 if bound >= np.iinfo(np.int32).max else np.int32
        kwargs = {"compression": compression} if compression else {}
        with h5py.File(path, "a") as f:
            g = f.create_group("X")
            g.attrs["encoding-type"], g.attrs["encoding-version"] = "csr_matrix", "0.1.0"
            g.attrs["shape"] = np.array([adata.n_obs, adata.n_vars], dtype=np.int64)
            chunk = (1 << 16,)
            data = g.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=chunk, **kwargs)
            indices = g.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=chunk,
                                       **kwargs)
            indptr = np.zeros(adata.n_obs + 1, dtype=index_dtype)
            nnz = 0
            for rows, X, cols in self._work_blocks(adata):
                X = _canonical(X[:, cols]).astype(np.float32)
                m = X.nnz
                data.resize((nnz + m,))
                indices.resize((nnz + m,))
                data[nnz:], indices[nnz:] = X.data, X.indices
                indptr[rows.start + 1:rows.stop + 1] = X.indptr[1:].astype(np.int64) + nnz
                nnz += m
            g.create_dataset("indptr", data=indptr, **kwargs)
        return nnz


def standardize_h5ad(
    path: str | os.PathLike,
    entry: dict,
    qc: dict | None,
    out: str | os.PathLike,
    source: str = "",
    name: str | None = None,
    raw_info: dict | None = None,
    local: bool = False,
    block: int = STREAM_BLOCK,
) -> ad.AnnData | None:
    """:func:`read_raw` + :func:`standardize` of one h5ad file, streamed: the file's counts are
    read in blocks of rows (twice or three times: checks and statistics, genes' cells when gene
    filters apply, then the write) and the standardized file is written block by block, so the
    peak memory is one block plus obs/var, whatever the file's size. Same checks, messages,
    steps and output as the in-memory path (a test compares them).

    Returns the standardized AnnData without ``X`` (obs, var, uns) after writing ``out``
    atomically, or ``None`` (nothing written) when the file cannot be streamed (not an anndata
    h5ad with CSR counts): the caller then takes the in-memory path.
    """
    import h5py

    from sclinbench.data.formats import format_problem
    from sclinbench.workflow.io import atomic_path, choose_compression

    path = Path(path)
    raw_info = dict(raw_info or {})
    name = name or entry.get("name") or "dataset"
    counts = entry.get("counts", "X")
    entry_where = f" of registry entry '{name}'"
    if not path.exists():
        if local:
            raise SclinbenchError(f"{path} does not exist; fix its path under files:{entry_where} and re-run.")
        raise SclinbenchError(f"{path} does not exist; download it (or fix its path in the registry entry) and re-run.")
    problem = format_problem(path, "h5ad", name, local=local)
    if problem:
        raise SclinbenchError(problem)
    opened = h5ad_counts_group(path, counts)
    if opened is None:
        try:  # a file HDF5 cannot open at all is refused here, in one line, not by the fallback
            h5py.File(path, "r").close()
        except READ_ERRORS as exc:
            raise unreadable(path, "h5ad", exc, local, entry_where) from exc
        return None
    f, group = opened
    try:
        with f:
            return _standardize_streamed(f, group, path, entry, qc, out, source, name, raw_info, counts,
                                         block, atomic_path, choose_compression)
    except SclinbenchError:
        raise
    except READ_ERRORS as exc:
        raise unreadable(path, "h5ad", exc, local, entry_where) from exc


def _standardize_streamed(f, group, path, entry, qc, out, source, name, raw_info, counts, block,
                          atomic_path, choose_compression):
    obs, var_in, obsm = _read_obs_var(f, counts, path)
    n_file, n_vars = obs.shape[0], var_in.shape[0]
    if n_file == 0 or n_vars == 0:
        what = "cells" if n_file == 0 else "genes"
        raise SclinbenchError(
            f"{path} holds 0 {what} ({n_file} cells x {n_vars} genes, read as h5ad, "
            f"counts: {counts}) of registry entry '{name}': the file itself is empty, so no threshold can "
            f"help; check that it is the right file (e.g. a Cell Ranger run that found no cells)."
        )
    rows = ood_row_filter(entry)
    keep = _rows_to_keep(obs, rows, path)
    file_rows = np.arange(n_file) if keep is None else np.flatnonzero(keep)
    if keep is not None:
        obs = obs.iloc[file_rows]
        obsm = {k: v[file_rows] for k, v in obsm.items()}
        log.info("%s: kept %d of %d cells while reading (donors matching %s in obs '%s')", path,
                 len(file_rows), n_file, rows["patterns"], rows["column"])
    file_obs = ((entry.get("files") or [{}])[0] or {}).get("obs") or {}
    for key, value in file_obs.items():
        obs[key] = pd.Categorical([str(value)] * len(obs))
    log.info("read %s: %d cells x %d genes (h5ad, %s; streamed in blocks of %d stored values)", path,
             len(obs), n_vars, counts, block)

    where = f"dataset '{name}'" + (f" ({source})" if source else "")
    raw_info = {"files": str(path), "format": "h5ad", "counts": counts, "n_obs_file": n_file, **raw_info}
    work = ad.AnnData(obs=obs.copy(), var=var_in.copy(), obsm=obsm)
    work.obs.index = work.obs.index.astype(str)
    if not work.obs_names.is_unique:
        log.warning("cell names are not unique; making them unique")
        work.obs_names_make_unique()
    var, codes = _plan_var(work.var, entry, where)
    work = ad.AnnData(obs=work.obs, var=var, obsm=dict(work.obsm))
    _map_obs(work, entry, where)
    stream = _StreamedCounts(group, file_rows, work.obs_names.copy(), codes, len(var),
                             where=f"{path} ({counts})", block=block)
    spec = entry.get("condition_from_feature")
    hit = None
    if spec:
        if (entry.get("columns") or {}).get("condition") is not None:
            raise SclinbenchError(
                f"{where}: set either columns.condition or condition_from_feature in the registry entry, not both."
            )
        hit = _feature_hit(work.var, spec, where)
        if spec.get("drop_feature", True):
            stream.drop = hit
    feature_counts = stream.scan(hit)
    if spec:
        _condition_obs(work.obs, spec, feature_counts, where)
        if stream.drop is not None:
            work = work[:, ~hit].copy()
    stream.var_names = work.var_names.copy()
    work = _standardize_cells(work, entry, qc, name, where, source, raw_info, counts, n_file, n_vars,
                              counts=stream)
    bound = int(stream.n_genes[stream.names.get_indexer(work.obs_names)].sum())
    compression = choose_compression(bound)
    with atomic_path(out) as tmp:
        work.write_h5ad(tmp, compression="gzip")  # obs, var, uns, obsm: X is written below
        nnz = stream.write(work, tmp, compression)
    log.info("%s: wrote %s (%d stored values, X %s)", where, out, nnz, compression or "uncompressed")
    return work
