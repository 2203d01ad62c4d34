"""Low-level h5ad reading: the counts matrices a file holds, CSR row subsets read from disk, and
the CSR counts group and shape of a file read from its metadata (:func:`h5ad_counts_group`,
:func:`h5ad_shape`) without loading the matrix.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

log = logging.getLogger(__name__)

_READ_BLOCK = 1 << 22  # stored values read from disk at a time when reading a row subset


def _as_csr(X) -> sp.csr_matrix:
    if sp.issparse(X):
        return X.tocsr() if not isinstance(X, sp.csr_matrix) else X
    return sp.csr_matrix(np.asarray(X))


def _canonical(X: sp.csr_matrix) -> sp.csr_matrix:
    """Sorted indices, no duplicate entries, no stored zeros (copies only when needed)."""
    if X.has_canonical_format and not (X.data == 0).any():
        return X
    X = X.copy()
    X.sum_duplicates()
    X.eliminate_zeros()
    return X


def _h5ad_matrices(f) -> list[str]:
    found = ["X"] if "X" in f else []
    if "raw" in f and "X" in f["raw"]:
        found.append("raw.X")
    if "layers" in f:
        found += [f"layers/{k}" for k in f["layers"]]
    return found


def _read_csr_rows(group, keep: np.ndarray, block: int | None = None) -> sp.csr_matrix:
    """The rows ``keep`` (boolean mask) of a CSR matrix stored in an h5ad group, read from disk.

    Only the kept rows end up in memory: the stored values are read in contiguous stretches of at
    most ``block`` values (a kept row longer than that is read alone) and the kept rows' values
    are copied into arrays allocated once, so the peak is the kept rows plus one stretch.
    """
    block = int(block or _READ_BLOCK)
    n_rows, n_cols = (int(v) for v in group.attrs["shape"])
    indptr = group["indptr"][:].astype(np.int64)
    rows = np.flatnonzero(keep)
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    data_ds, index_ds = group["data"], group["indices"]
    data = np.empty(int(lengths.sum()), dtype=data_ds.dtype)
    indices = np.empty(int(lengths.sum()), dtype=index_ds.dtype)
    pos, i = 0, 0
    while i < len(rows):
        lo = starts[i]
        j = max(int(np.searchsorted(ends, lo + block, side="right")), i + 1)  # rows i..j-1 fit
        hi = ends[j - 1]
        if hi > lo:
            seg_start, seg_len = starts[i:j] - lo, lengths[i:j]
            m = int(seg_len.sum())
            values, cols = data_ds[lo:hi], index_ds[lo:hi]
            if m == hi - lo:  # the kept rows are contiguous on disk
                data[pos:pos + m], indices[pos:pos + m] = values, cols
            else:
                take = np.repeat(seg_start - (np.cumsum(seg_len) - seg_len), seg_len) + np.arange(m)
                data[pos:pos + m], indices[pos:pos + m] = values[take], cols[take]
            pos += m
        i = j
    out_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_indptr[1:])
    return sp.csr_matrix((data, indices, out_indptr), shape=(len(rows), n_cols))


def _read_matrix_rows(elem, keep: np.ndarray | None, where: str):
    """A stored matrix (dense dataset or sparse group), only the rows ``keep`` when given."""
    import h5py
    from anndata.io import read_elem

    if keep is None:
        return read_elem(elem)
    if isinstance(elem, h5py.Dataset):  # dense: read the kept rows in blocks
        rows = np.flatnonzero(keep)
        out = np.empty((len(rows),) + tuple(elem.shape[1:]), dtype=elem.dtype)
        step = max(1, _READ_BLOCK // max(1, int(np.prod(elem.shape[1:]))))
        for k in range(0, len(rows), step):
            out[k:k + step] = elem[rows[k:k + step]]
        return out
    if elem.attrs.get("encoding-type") == "csr_matrix":
        return _read_csr_rows(elem, keep)
    log.info("%s is not stored by rows (%s): reading it whole, then keeping %d of %d rows", where,
             elem.attrs.get("encoding-type"), int(keep.sum()), keep.size)
    return _as_csr(read_elem(elem))[np.flatnonzero(keep)]


#: What a reader raises on a truncated or corrupt file (turned into one line by :func:`unreadable`).
READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, EOFError, TypeError)


def h5ad_counts_group(path: str | os.PathLike, counts: str = "X"):
    """``(file, group)`` of the CSR counts matrix ``counts`` of an h5ad, or ``None`` when the file
    cannot be streamed (legacy layout, dense or CSC matrix, matrix missing: the in-memory reader
    then gives its own message). The caller closes the file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except READ_ERRORS:  # truncated or not HDF5: the callers' readers name the file in one line
        return None
    try:
        if f.attrs.get("encoding-type") != "anndata":
            raise KeyError("legacy")
        key = {"X": "X", "raw.X": "raw/X"}.get(counts, counts)
        group = f[key]
        if not isinstance(group, h5py.Group) or group.attrs.get("encoding-type") != "csr_matrix":
            raise KeyError("not csr")
    except (KeyError, OSError):
        f.close()
        return None
    return f, group


def h5ad_shape(path: str | os.PathLike, counts: str = "X") -> tuple[int, int, int] | None:
    """``(cells, genes, stored values)`` of an h5ad's CSR counts matrix, read from the file's
    metadata without loading the matrix; ``None`` when it is not a CSR h5ad matrix."""
    opened = h5ad_counts_group(path, counts)
    if opened is None:
        return None
    f, group = opened
    with f:
        n_obs, n_vars = (int(v) for v in group.attrs["shape"])
        return n_obs, n_vars, int(group["data"].shape[0])


def _read_obs_var(f, counts: str, path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """obs, the counts matrix's var (``raw/var`` for raw.X, joined as :func:`_read_h5ad` does) and
    the per-cell obsm arrays of an h5ad, without its matrices."""
    from anndata.io import read_elem

    obs = read_elem(f["obs"])
    var = read_elem(f["var"])
    if counts == "raw.X":
        raw_var = read_elem(f["raw/var"])
        extra = [c for c in var.columns if c not in raw_var.columns]
        if extra and var.index.is_unique and raw_var.index.isin(var.index).all():
            raw_var = raw_var.join(var[extra])
        var = raw_var
    obsm = {}
    if "obsm" in f:
        for key in f["obsm"]:
            value = read_elem(f["obsm"][key])
            if isinstance(value, np.ndarray) and value.shape[0] == obs.shape[0]:
                obsm[key] = value
    return obs, var, obsm
