"""Stateless normalizations of raw counts: library size, shifted log, square root, Pearson residuals.

Every function takes a CSR matrix of raw integer counts (cells x genes) and computes each cell from
its own counts (Pearson residuals also from gene fractions fitted on the training cells,
:func:`fit_gene_fractions`). Library sizes can be passed in, so a column subset (after gene
selection) keeps each cell's library size over all genes.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError
from sclinbench.represent.offset import (
    MAX_DENSE_ELEMENTS,
    OffsetCSR,
    _check_dense_size,
    _col_sums,
    _row_sums,
    row_blocks,
)


def _as_counts(X, where: str = "X") -> sp.csr_matrix:
    """CSR view/copy of a counts matrix; refuses negative values."""
    if isinstance(X, OffsetCSR):
        raise SclinbenchError(
            f"{where}: expected raw counts (CSR), got an OffsetCSR (a rankz result); "
            "apply the representation to the raw counts"
        )
    X = sp.csr_matrix(X) if not sp.isspmatrix_csr(X) else X
    if X.nnz and X.data.min() < 0:
        raise SclinbenchError(
            f"{where}: counts contain negative values; pass raw (non-negative integer) counts, "
            "not normalized or scaled data"
        )
    return X




def library_size(X) -> np.ndarray:
    """Total counts per cell (row sums) as float64.

    Parameters
    ----------
    X
        Counts, CSR or dense, cells x genes.
    """
    if sp.issparse(X):
        return _row_sums(sp.csr_matrix(X))
    return np.asarray(X, dtype=np.float64).sum(axis=1)


def _scale_rows(X: sp.csr_matrix, factors: np.ndarray, dtype, then=None,
                block_nnz: int = 10_000_000) -> sp.csr_matrix:
    """``X`` with row ``i`` multiplied by ``factors[i]`` (then ``then`` applied), no densifying.

    Computed in float64 over blocks of whole rows (at most ``block_nnz`` values at a time) and
    written into one preallocated array of ``dtype``; the result shares ``X.indices`` and
    ``X.indptr`` (do not change its sparsity structure in place).
    """
    indptr = X.indptr
    out = np.empty(X.nnz, dtype=dtype)
    for start, stop, lo, hi in row_blocks(indptr, block_nnz):
        d = X.data[lo:hi].astype(np.float64)
        d *= np.repeat(factors[start:stop], np.diff(indptr[start:stop + 1]))
        out[lo:hi] = d if then is None else then(d)
    return sp.csr_matrix((out, X.indices, X.indptr), shape=X.shape, copy=False)


def _row_factors(library: np.ndarray, target_sum: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        f = np.where(library > 0, float(target_sum) / np.where(library > 0, library, 1.0), 0.0)
    return f


def _library(X, library, n_rows: int) -> np.ndarray:
    if library is None:
        return library_size(X)
    library = np.asarray(library, dtype=np.float64).ravel()
    if library.shape[0] != n_rows:
        raise ValueError(f"library has {library.shape[0]} entries for {n_rows} cells")
    return library



def normalize_total(X, target_sum: float = 1e4, library=None, dtype=np.float32) -> sp.csr_matrix:
    """Scale each cell to ``target_sum`` total counts: ``X / library * target_sum``.

    Parameters
    ----------
    X
        Raw counts, CSR (cells x genes).
    target_sum
        Total each cell is scaled to.
    library
        Library sizes to divide by (default: row sums of ``X``). Pass the totals over ALL genes
        when ``X`` is a column subset, so gene selection never changes a cell's library size.
    dtype
        dtype of the stored values.

    Returns
    -------
    CSR matrix with the sparsity of ``X``. Cells with zero counts stay all-zero.
    """
    X = _as_counts(X)
    lib = _library(X, library, X.shape[0])
    return _scale_rows(X, _row_factors(lib, target_sum), dtype)


def shifted_log(
    X, target_sum: float = 1e4, pseudocount: float = 1.0, library=None, dtype=np.float32
) -> sp.csr_matrix:
    """Shifted logarithm ``log(X / library * target_sum + pc) - log(pc)``.

    Equals ``log1p`` of the library-normalized counts when ``pseudocount == 1``; zeros stay zeros,
    so the output keeps the sparsity of ``X``. Computed as ``log1p(y / pc)`` for precision.

    Parameters
    ----------
    X
        Raw counts, CSR (cells x genes).
    target_sum
        Total each cell is scaled to before the log (``1e4`` is scanpy's usual choice).
    pseudocount
        ``pc > 0``.
    library
        Library sizes (see :func:`normalize_total`).
    dtype
        dtype of the stored values.
    """
    if not pseudocount > 0:
        raise SclinbenchError(f"representation parameter 'pseudocount' must be > 0, got {pseudocount}")
    X = _as_counts(X)
    lib = _library(X, library, X.shape[0])
    pc = float(pseudocount)
    return _scale_rows(X, _row_factors(lib, target_sum), dtype, then=lambda d: np.log1p(d / pc))


def sqrt_norm(X, target_sum: float = 1e4, library=None, dtype=np.float32) -> sp.csr_matrix:
    """Square root of library-normalized counts, ``sqrt(X / library * target_sum)`` (CSR out).

    Parameters
    ----------
    X, target_sum, library, dtype
        As in :func:`normalize_total`.
    """
    X = _as_counts(X)
    lib = _library(X, library, X.shape[0])
    return _scale_rows(X, _row_factors(lib, target_sum), dtype, then=np.sqrt)



def fit_gene_fractions(X) -> np.ndarray:
    """Fraction of all counts that falls on each gene, ``p_j = sum_i x_ij / sum_ij x_ij``.

    Fit this on the training cells (over all genes), then subset to the genes you keep.
    """
    X = _as_counts(X)
    colsum = _col_sums(X)
    total = colsum.sum()
    if total <= 0:
        raise SclinbenchError("pearson residuals: the training cells have no counts at all")
    return colsum / total


def pearson_residuals(
    X,
    gene_fractions,
    theta: float = 100.0,
    clip: float | None = None,
    library=None,
    max_dense_elements: int = MAX_DENSE_ELEMENTS,
) -> np.ndarray:
    """Analytic Pearson residuals (Lause, Berens & Kobak 2021) with gene fractions fitted elsewhere.

    ``mu_ij = n_i p_j``, ``z_ij = (x_ij - mu_ij) / sqrt(mu_ij + mu_ij^2 / theta)``, clipped to
    ``[-clip, clip]``. ``n_i`` is the cell's own library size (over all genes); ``p_j`` comes from
    :func:`fit_gene_fractions` on the TRAINING cells. scanpy's
    ``sc.experimental.pp.normalize_pearson_residuals`` estimates ``p_j`` (and the clip) from the
    very matrix it transforms, so it cannot be fitted on training cells and applied to test cells;
    this function can. Genes with ``p_j == 0`` (no training counts) get residual 0.

    The output is dense by nature, so compute it only for selected genes (e.g. after HVG); it is
    filled in one compiled pass per cell.

    Parameters
    ----------
    X
        Raw counts, CSR, cells x selected genes.
    gene_fractions
        ``p_j`` for the columns of ``X``.
    theta
        Negative-binomial overdispersion (100 as in Lause et al.).
    clip
        Clip residuals to ``+-clip``; ``None`` for no clipping. The usual choice is
        ``sqrt(n_training_cells)``.
    library
        Library sizes over ALL genes (default: row sums of ``X``).
    max_dense_elements
        Refuse outputs larger than this many elements.

    Returns
    -------
    Dense float64 array, cells x genes.
    """
    X = _as_counts(X)
    n, g = X.shape
    p = np.asarray(gene_fractions, dtype=np.float64).ravel()
    if p.shape[0] != g:
        raise ValueError(f"gene_fractions has {p.shape[0]} entries for {g} genes")
    if not theta > 0:
        raise SclinbenchError(f"representation parameter 'theta' must be > 0, got {theta}")
    _check_dense_size(n, g, "representation 'pearson'", max_dense_elements)
    lib = np.asarray(_library(X, library, n), dtype=np.float64).ravel()
    out = np.empty((n, g), dtype=np.float64)
    # one compiled pass per cell, the same float64 operations in the same order as
    # (x - mu) / sqrt(mu + mu^2 / theta) with numpy (so the same bits)
    _pearson_fill(X.data, X.indices, X.indptr, lib, p, float(theta),
                  0.0 if clip is None else float(clip), clip is not None, out)
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _pearson_fill(data, indices, indptr, lib, p, theta, clip, has_clip, out):  # pragma: no cover (compiled)
    n, g = out.shape
    for i in numba.prange(n):
        for j in range(g):
            mu = lib[i] * p[j]
            denom = np.sqrt(mu + mu * mu / theta)
            out[i, j] = (0.0 - mu) / denom if denom > 0 else 0.0
        for q in range(indptr[i], indptr[i + 1]):
            j = indices[q]
            mu = lib[i] * p[j]
            denom = np.sqrt(mu + mu * mu / theta)
            out[i, j] = (np.float64(data[q]) - mu) / denom if denom > 0 else 0.0
        if has_clip:
            for j in range(g):
                z = out[i, j]
                if z < -clip:
                    out[i, j] = -clip
                elif z > clip:
                    out[i, j] = clip
