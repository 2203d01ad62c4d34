"""Representations of raw counts: normalizations, gene selection, scaling and PCA.

The input everywhere is a CSR matrix of raw integer counts (cells x genes). Stateless normalizations
are plain functions (:func:`normalize_total`, :func:`shifted_log`, :func:`sqrt_norm`, :func:`rankz`,
:func:`pearson_residuals`); everything that learns from data is a scikit-learn transformer whose
state is set in ``fit`` from the training cells only:

- :class:`RepresentationTransformer`  one named representation (+ optional count-based HVG selection)
- :class:`AnovaSelector`              top-k genes by ANOVA F (cell-type labels of the training cells)
- :class:`ScaleClip`                  per-gene z-score clipped at ``max_value`` (as ``sc.pp.scale``)
- :class:`PCATransformer`             PCA with implicit mean-centering of sparse inputs

The rank-based representation :func:`rankz` returns an :class:`OffsetCSR`: a sparse matrix plus a
per-cell constant (the common value of all zero genes of that cell), so a 100k x 20k result is never
densified. Every consumer here (ANOVA, scaling statistics, PCA, the centroid classifier) works on it
directly; sklearn estimators that cannot are handed a dense copy only below
:data:`MAX_DENSE_ELEMENTS` (see :func:`to_dense`).
"""

from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from scipy import special, stats
from scipy.sparse.linalg import LinearOperator, svds
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError

log = logging.getLogger("sclinbench.represent")

#: Largest number of matrix elements (cells x features) any step may densify (1.6 GB as float64).
MAX_DENSE_ELEMENTS = 200_000_000

#: Valid representation names of :class:`RepresentationTransformer` and their parameters (defaults).
REPRESENTATIONS: dict[str, dict] = {
    "counts": {},
    "log1p": {"target_sum": 1e4, "pseudocount": 1.0},
    "sqrt": {"target_sum": 1e4},
    "pearson": {"theta": 100.0, "clip": None},
    "rankz": {},
}

#: Count-based highly-variable-gene flavors (both run on the raw training counts).
HVG_FLAVORS = ("pearson_residuals", "seurat_v3")


# --------------------------------------------------------------------------------------------------
# OffsetCSR: sparse matrix + per-row constant
# --------------------------------------------------------------------------------------------------
class OffsetCSR:
    """A dense matrix stored as ``S + offset[:, None]`` with ``S`` CSR.

    This is the exact form of :func:`rankz` output: every zero count of cell ``i`` maps to one value
    ``offset[i]``, and ``S`` stores, at the nonzero counts only, the difference to that value.

    Parameters
    ----------
    S
        Sparse part (converted to CSR), shape ``(n_rows, n_cols)``.
    offset
        Per-row constant, shape ``(n_rows,)``.

    Notes
    -----
    Supported operations are the ones the pipeline needs: row indexing (``X[rows]``), column
    subsetting (:meth:`select_columns`), products with dense matrices (``X @ W``, ``V @ X``,
    :meth:`dot`, :meth:`rdot`), column statistics (:meth:`mean`, :meth:`column_mean_var`),
    :meth:`row_norms`, :meth:`toarray` and :meth:`vstack`.
    """

    # make ``ndarray @ OffsetCSR`` defer to OffsetCSR.__rmatmul__ instead of building object arrays
    __array_ufunc__ = None
    ndim = 2

    def __init__(self, S, offset):
        S = sp.csr_matrix(S)
        offset = np.asarray(offset, dtype=np.float64).ravel()
        if offset.shape[0] != S.shape[0]:
            raise ValueError(f"offset has {offset.shape[0]} entries for {S.shape[0]} rows")
        self.S = S
        self.offset = offset

    # -- basic properties ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.S.shape

    @property
    def dtype(self):
        return np.result_type(self.S.dtype, self.offset.dtype)

    @property
    def nnz(self) -> int:
        return self.S.nnz

    def __len__(self) -> int:
        return self.S.shape[0]

    def __repr__(self) -> str:
        n, g = self.shape
        return f"<OffsetCSR {n} x {g}, {self.nnz} stored entries + per-row offset>"

    def copy(self) -> "OffsetCSR":
        return OffsetCSR(self.S.copy(), self.offset.copy())

    def toarray(self) -> np.ndarray:
        """Dense ``S + offset[:, None]`` (float64)."""
        out = self.S.toarray().astype(np.float64, copy=False)
        out += self.offset[:, None]
        return out

    # -- indexing ------------------------------------------------------------------------------
    def __getitem__(self, key) -> "OffsetCSR":
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError("OffsetCSR supports X[rows] and X[rows, cols]")
            rows, cols = key
            out = self[rows]
            if isinstance(cols, slice) and cols == slice(None):
                return out
            return out.select_columns(cols)
        if isinstance(key, numbers.Integral):
            key = [int(key)]
        key = key if isinstance(key, slice) else np.asarray(key)
        return OffsetCSR(self.S[key], self.offset[key])

    def select_columns(self, idx) -> "OffsetCSR":
        """Keep columns ``idx`` (indices, slice or boolean mask); the per-row offset is unchanged."""
        return OffsetCSR(self.S[:, idx], self.offset)

    @staticmethod
    def vstack(blocks) -> "OffsetCSR":
        """Stack OffsetCSR blocks by rows."""
        blocks = list(blocks)
        return OffsetCSR(
            sp.vstack([b.S for b in blocks], format="csr"),
            np.concatenate([b.offset for b in blocks]),
        )

    # -- products ------------------------------------------------------------------------------
    def dot(self, W):
        """``X @ W`` for dense ``W`` of shape ``(n_cols,)`` or ``(n_cols, k)``: ``S W + offset 1^T W``."""
        W = np.asarray(W)
        out = np.asarray(self.S @ W, dtype=np.float64)
        colsum = W.sum(axis=0)
        if W.ndim == 1:
            return out + self.offset * colsum
        return out + np.outer(self.offset, colsum)

    def rdot(self, V):
        """``V @ X`` for ``V`` (dense or sparse) of shape ``(n_rows,)`` or ``(k, n_rows)``.

        Returns a dense array of shape ``(n_cols,)`` or ``(k, n_cols)``: ``V S + (V offset) 1^T``.
        """
        if sp.issparse(V):
            out = np.asarray((V @ self.S).toarray(), dtype=np.float64)
            voff = np.asarray(V @ self.offset).ravel()
            return out + voff[:, None]
        V = np.asarray(V)
        if V.ndim == 1:
            return np.asarray(self.S.T @ V, dtype=np.float64).ravel() + V @ self.offset
        out = np.asarray((self.S.T @ V.T).T, dtype=np.float64)
        return out + (V @ self.offset)[:, None]

    def __matmul__(self, W):
        return self.dot(W)

    def __rmatmul__(self, V):
        return self.rdot(V)

    # -- statistics ----------------------------------------------------------------------------
    def sum(self, axis=None):
        n, g = self.shape
        if axis is None:
            return float(_col_sums(self.S).sum()) + g * float(self.offset.sum())
        if axis == 0:
            return _col_sums(self.S) + self.offset.sum()
        if axis == 1:
            return _row_sums(self.S) + g * self.offset
        raise ValueError(f"axis must be None, 0 or 1, got {axis}")

    def mean(self, axis=None):
        n, g = self.shape
        total = self.sum(axis=axis)
        return total / {None: n * g, 0: n, 1: g}[axis]

    def column_mean_var(self, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Per-column mean and variance (two-pass form, exact up to rounding)."""
        return column_mean_var(self, ddof=ddof)

    def row_norms(self) -> np.ndarray:
        """Euclidean norm of each row, ``sqrt(sum_j (s_ij + o_i)^2)``, without densifying."""
        g = self.shape[1]
        S = self.S
        sq = _row_sums(S, power=2)
        cross = _row_sums(S)
        return np.sqrt(np.maximum(sq + 2.0 * self.offset * cross + g * self.offset**2, 0.0))


# --------------------------------------------------------------------------------------------------
# input helpers
# --------------------------------------------------------------------------------------------------
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


def _col_sums(X: sp.csr_matrix, power: int = 1) -> np.ndarray:
    """Column sums of ``X.data ** power`` accumulated in float64.

    (scipy's ``.sum(axis=0)`` accumulates float32 data in float32: 1e6 values of 1.1 sum to
    1.11e6, 1% off; this does not.)
    """
    w = X.data.astype(np.float64)
    if power == 2:
        w *= w
    return np.bincount(X.indices, weights=w, minlength=X.shape[1])


def _row_sums(X: sp.csr_matrix, power: int = 1) -> np.ndarray:
    """Row sums of ``X.data ** power`` accumulated in float64."""
    w = X.data.astype(np.float64)
    if power == 2:
        w *= w
    out = np.zeros(X.shape[0], dtype=np.float64)
    nonempty = np.diff(X.indptr) > 0
    if w.size:
        out[nonempty] = np.add.reduceat(w, X.indptr[:-1][nonempty])
    return out


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


def _scale_rows(X: sp.csr_matrix, factors: np.ndarray, dtype) -> sp.csr_matrix:
    """Copy of CSR ``X`` with row ``i`` multiplied by ``factors[i]`` (no densifying)."""
    out = sp.csr_matrix(
        (X.data.astype(np.float64), X.indices.copy(), X.indptr.copy()), shape=X.shape
    )
    out.data *= np.repeat(factors, np.diff(X.indptr))
    out.data = out.data.astype(dtype, copy=False)
    return out


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


# --------------------------------------------------------------------------------------------------
# stateless normalizations
# --------------------------------------------------------------------------------------------------
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
    out = normalize_total(X, target_sum, library=library, dtype=np.float64)
    out.data = np.log1p(out.data / float(pseudocount)).astype(dtype, copy=False)
    return out


def sqrt_norm(X, target_sum: float = 1e4, library=None, dtype=np.float32) -> sp.csr_matrix:
    """Square root of library-normalized counts, ``sqrt(X / library * target_sum)`` (CSR out).

    Parameters
    ----------
    X, target_sum, library, dtype
        As in :func:`normalize_total`.
    """
    out = normalize_total(X, target_sum, library=library, dtype=np.float64)
    out.data = np.sqrt(out.data).astype(dtype, copy=False)
    return out


_U16_PAD = np.iinfo(np.uint16).max


def _within_row_ranks_small_ints(X: sp.csr_matrix, chunk_elements: int = 20_000_000) -> np.ndarray:
    """:func:`_within_row_ranks` for integer values < 65535: row-wise radix sorts on a padded array.

    Rows are copied, in chunks, into a ``uint16`` array padded with 65535 and sorted along the rows
    with numpy's stable (radix) sort, which is several times faster than one global sort.
    """
    n = X.shape[0]
    nnz_row = np.diff(X.indptr)
    ranks = np.empty(X.nnz, dtype=np.float64)
    rows_per_chunk = max(1, chunk_elements // max(int(nnz_row.max(initial=0)), 1))
    for start in range(0, n, rows_per_chunk):
        stop = min(start + rows_per_chunk, n)
        width = int(nnz_row[start:stop].max())
        lo, hi = X.indptr[start], X.indptr[stop]
        if hi == lo:
            continue
        lens = nnz_row[start:stop]
        m = stop - start
        local_row = np.repeat(np.arange(m), lens)
        pos = np.arange(hi - lo) - np.repeat(X.indptr[start:stop] - lo, lens)
        M = np.full(m * width, _U16_PAD, dtype=np.uint16)
        flat = local_row * width + pos
        M[flat] = X.data[lo:hi]
        order = np.argsort(M.reshape(m, width), axis=1, kind="stable")
        del M
        # the padding sorts last in each row: keep the first lens[r] entries -> chunk permutation
        order += (X.indptr[start:stop] - lo)[:, None]
        keep = np.arange(width)[None, :] < lens[:, None]
        perm = order[keep]
        del order, keep
        sv = X.data[lo:hi][perm]
        new = np.empty(hi - lo, dtype=bool)
        new[0] = True
        np.not_equal(sv[1:], sv[:-1], out=new[1:])
        new[X.indptr[start:stop][lens > 0] - lo] = True  # a row start is always a new group
        starts = np.flatnonzero(new)
        sizes = np.diff(np.append(starts, hi - lo))
        group_rank = starts + (sizes - 1) / 2.0 - (X.indptr[start:stop] - lo)[local_row[perm[starts]]] + 1.0
        ranks[lo + perm] = np.repeat(group_rank, sizes)
    return ranks


def _within_row_ranks(X: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Average (1-based) rank of each stored value among the stored values of its row.

    Vectorised over the CSR structure. Integer counts below 65535 use row-wise radix sorts
    (:func:`_within_row_ranks_small_ints`); otherwise one global sort of ``(row, value)`` keys, after
    which tie groups are found where the key changes and every member gets the group's mean
    position. ``rows`` is the row index of each stored value.
    """
    nnz = X.nnz
    if nnz == 0:
        return np.zeros(0, dtype=np.float64)
    n = X.shape[0]
    data = X.data
    vmax = float(data.max())
    integer = np.issubdtype(data.dtype, np.integer) or bool(np.all(data == np.round(data)))
    if integer and vmax < _U16_PAD:
        return _within_row_ranks_small_ints(X)
    if integer and (vmax + 1.0) * n < 2**62:
        key = rows.astype(np.int64) * np.int64(vmax + 1) + data.astype(np.int64)
        order = np.argsort(key)
        skey = key[order]
        new_group = np.empty(nnz, dtype=bool)
        new_group[0] = True
        np.not_equal(skey[1:], skey[:-1], out=new_group[1:])
        del key, skey
    else:
        order = np.lexsort((data, rows))
        sd, sr = data[order], rows[order]
        new_group = np.empty(nnz, dtype=bool)
        new_group[0] = True
        new_group[1:] = (sd[1:] != sd[:-1]) | (sr[1:] != sr[:-1])
        del sd, sr
    starts = np.flatnonzero(new_group)
    del new_group
    sizes = np.diff(np.append(starts, nnz))
    group_row = rows[order[starts]]
    # sorted positions are row-contiguous: position within row = position - indptr[row]
    group_rank = starts + (sizes - 1) / 2.0 - X.indptr[group_row] + 1.0
    ranks = np.empty(nnz, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, sizes)
    return ranks


def rankz(X, dtype=np.float32, block_cells: int = 1000) -> OffsetCSR:
    """Parameter-free rank / inverse-normal representation of each cell (Souza & Mehta 2026).

    Per cell: library-size fractions -> rank over ALL genes (ties averaged, so all zeros of a cell
    share one average rank) -> ``z = Phi^{-1}(rank / (G + 1))`` -> L2-normalize the cell.

    Because counts are non-negative, the ``m_i`` zeros of cell ``i`` occupy ranks ``1..m_i`` and all
    map to ``z0_i = Phi^{-1}(((m_i + 1) / 2) / (G + 1))``; a nonzero with within-cell rank ``r``
    among the nonzeros gets rank ``m_i + r``. The result is returned exactly, without densifying, as
    ``dense = S + offset[:, None]`` with ``S`` CSR on the sparsity of ``X`` storing ``z_ij - z0_i``
    and ``offset = z0_i`` (both divided by the cell's L2 norm, which is
    ``sqrt(m_i z0_i^2 + sum_nonzero z_ij^2)``). Ranks are invariant to the library-size scaling, so
    they are computed on the counts directly. Cells with no counts map to all zeros.

    Parameters
    ----------
    X
        Raw counts, CSR (cells x genes), over all genes.
    dtype
        dtype of the stored values of ``S`` (``offset`` is float64).
    block_cells
        Cells ranked at a time. Every cell is independent, so the result does not depend on it;
        blocks keep the temporaries small (whole 16k-cell blocks spent as much time in page
        faults as in ranking, see docs/performance.md).

    Returns
    -------
    :class:`OffsetCSR` with unit-norm rows.
    """
    X = _as_counts(X)
    if X.shape[0] > block_cells:
        parts = [_rankz_block(X[i:i + block_cells], dtype) for i in range(0, X.shape[0], block_cells)]
        return OffsetCSR(sp.vstack([p.S for p in parts], format="csr"),
                         np.concatenate([p.offset for p in parts]))
    return _rankz_block(X, dtype)


def _rankz_block(X, dtype) -> OffsetCSR:
    """:func:`rankz` of the rows of ``X`` in one pass."""
    X = X.copy()
    X.eliminate_zeros()
    X.sort_indices()
    n, g = X.shape
    nnz_row = np.diff(X.indptr)
    n_zero = (g - nnz_row).astype(np.float64)
    rows = np.repeat(np.arange(n, dtype=np.int32 if n < 2**31 else np.int64), nnz_row)

    ranks = _within_row_ranks(X, rows)
    ranks += n_zero[rows]
    z = special.ndtri(ranks / (g + 1.0))
    z0 = np.where(n_zero > 0, special.ndtri(((n_zero + 1.0) / 2.0) / (g + 1.0)), 0.0)

    sq = np.bincount(rows, weights=z * z, minlength=n) + n_zero * z0**2
    norm = np.sqrt(sq)
    norm[norm == 0] = 1.0
    data = (z - z0[rows]) / norm[rows]
    S = sp.csr_matrix((data.astype(dtype), X.indices.copy(), X.indptr.copy()), shape=(n, g))
    return OffsetCSR(S, z0 / norm)


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
    chunk_size: int = 10_000,
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
    built in chunks of ``chunk_size`` cells.

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
    chunk_size
        Cells per dense chunk.
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
    lib = _library(X, library, n)
    out = np.empty((n, g), dtype=np.float64)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        x = X[start:stop].toarray().astype(np.float64, copy=False)
        mu = lib[start:stop, None] * p[None, :]
        denom = np.sqrt(mu + mu * mu / theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(denom > 0, (x - mu) / np.where(denom > 0, denom, 1.0), 0.0)
        if clip is not None:
            np.clip(z, -clip, clip, out=z)
        out[start:stop] = z
    return out


# --------------------------------------------------------------------------------------------------
# dense conversion and column statistics (any of CSR / OffsetCSR / dense)
# --------------------------------------------------------------------------------------------------
def _check_dense_size(n: int, g: int, where: str, max_elements: int) -> None:
    if n * g > max_elements:
        raise SclinbenchError(
            f"{where} needs a dense {n} x {g} matrix ({n * g:.3g} elements > limit "
            f"{max_elements:.3g}); add a reduction (reduction: {{method: pca}}) or a feature selection "
            "(features: {method: hvg, n_top: 2000} or {method: anova, k: 2000}) to the pipeline"
        )


def to_dense(X, where: str = "this step", max_elements: int = MAX_DENSE_ELEMENTS) -> np.ndarray:
    """Dense float64 copy of CSR / OffsetCSR / array input, refused above ``max_elements``.

    Parameters
    ----------
    X
        Matrix to convert.
    where
        Name of the step, for the error message.
    max_elements
        Largest ``n_rows * n_cols`` allowed.
    """
    if isinstance(X, np.ndarray):
        return X
    n, g = X.shape
    _check_dense_size(n, g, where, max_elements)
    if isinstance(X, OffsetCSR):
        return X.toarray()
    if sp.issparse(X):
        return X.toarray()
    return np.asarray(X)


def column_mean_var(X, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance of CSR, OffsetCSR or dense input, without densifying.

    The variance uses the two-pass (centered) form on the stored entries, so it does not suffer
    from the cancellation of ``E[x^2] - E[x]^2``.

    Parameters
    ----------
    X
        Matrix, cells x features.
    ddof
        Delta degrees of freedom (1 for the sample variance, as ``sc.pp.scale``).
    """
    n, g = X.shape
    if isinstance(X, np.ndarray) or not (sp.issparse(X) or isinstance(X, OffsetCSR)):
        X = np.asarray(X, dtype=np.float64)
        return X.mean(axis=0), X.var(axis=0, ddof=ddof)
    if isinstance(X, OffsetCSR):
        S, off = X.S.tocsr(), X.offset
    else:
        S, off = sp.csr_matrix(X), np.zeros(n)
    mean = _col_sums(S) / n + off.mean()
    # sum_i (s_ij + o_i - m_j)^2 = sum_i (o_i - m_j)^2 + sum_{nonzero} [s^2 + 2 s (o_i - m_j)]
    o_mean = off.mean()
    o_var = ((off - o_mean) ** 2).sum()
    base = o_var + n * (o_mean - mean) ** 2
    rows = np.repeat(np.arange(n), np.diff(S.indptr))
    s = S.data.astype(np.float64)
    contrib = s * s + 2.0 * s * (off[rows] - mean[S.indices])
    ss = base + np.bincount(S.indices, weights=contrib, minlength=g)
    return mean, np.maximum(ss, 0.0) / max(n - ddof, 1)


def _select_columns(X, idx):
    if isinstance(X, OffsetCSR):
        return X.select_columns(idx)
    if sp.issparse(X):
        return sp.csr_matrix(X)[:, idx]
    return np.asarray(X)[:, idx]


# --------------------------------------------------------------------------------------------------
# highly variable genes (count-based, scanpy)
# --------------------------------------------------------------------------------------------------
def select_hvg(X, n_top: int, flavor: str = "pearson_residuals", theta: float = 100.0) -> np.ndarray:
    """Indices (ascending) of the ``n_top`` most variable genes of the counts ``X``, via scanpy.

    Both flavors are count-based and run on the cells passed (the training cells):

    - ``"pearson_residuals"`` (default, ships with scanpy): genes ranked by the variance of their
      analytic Pearson residuals, ``sc.experimental.pp.highly_variable_genes`` (Lause et al. 2021).
    - ``"seurat_v3"``: ``sc.pp.highly_variable_genes(flavor="seurat_v3")``; needs the optional
      package ``scikit-misc``.

    Genes with no counts in ``X`` are never selected.

    Parameters
    ----------
    X
        Raw counts, CSR, cells x genes.
    n_top
        Number of genes to keep.
    flavor
        One of :data:`HVG_FLAVORS`.
    theta
        Overdispersion for the Pearson-residual flavor.
    """
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    if flavor not in HVG_FLAVORS:
        raise SclinbenchError(
            f"features: hvg flavor '{flavor}' is unknown; valid: {', '.join(HVG_FLAVORS)}"
        )
    if not (isinstance(n_top, numbers.Integral) and n_top > 0):
        raise SclinbenchError(f"features: hvg 'n_top' must be a positive integer, got {n_top!r}")
    X = _as_counts(X)
    expressed = np.flatnonzero(_col_sums(X) > 0)
    if n_top >= expressed.size:
        if n_top > expressed.size:
            log.warning(
                "hvg: n_top=%d >= %d genes with training counts; keeping all %d",
                n_top, expressed.size, expressed.size,
            )
        return expressed
    sub = X[:, expressed].astype(np.float32)
    adata = ad.AnnData(
        X=sub,
        obs=pd.DataFrame(index=[str(i) for i in range(sub.shape[0])]),
        var=pd.DataFrame(index=[str(j) for j in expressed]),
    )
    if flavor == "pearson_residuals":
        df = sc.experimental.pp.highly_variable_genes(
            adata, flavor="pearson_residuals", n_top_genes=int(n_top), theta=theta, inplace=False
        )
    else:
        try:
            import skmisc  # noqa: F401
        except ImportError:
            raise SclinbenchError(
                "features: hvg flavor 'seurat_v3' needs the package scikit-misc; "
                "pip install scikit-misc, or use flavor: pearson_residuals"
            ) from None
        df = sc.pp.highly_variable_genes(
            adata, flavor="seurat_v3", n_top_genes=int(n_top), inplace=False
        )
    mask = np.asarray(df["highly_variable"], dtype=bool)
    return expressed[mask]


# --------------------------------------------------------------------------------------------------
# transformers
# --------------------------------------------------------------------------------------------------
class RepresentationTransformer(TransformerMixin, BaseEstimator):
    """One named representation of raw counts, fitted on the training cells only.

    Parameters
    ----------
    name
        ``counts`` (raw counts, CSR), ``log1p`` (:func:`shifted_log`, CSR), ``sqrt``
        (:func:`sqrt_norm`, CSR), ``pearson`` (:func:`pearson_residuals`, dense) or ``rankz``
        (:func:`rankz`, :class:`OffsetCSR`).
    params
        Representation parameters: ``log1p``: ``target_sum`` (number or ``"median"``: the median
        library size of the TRAINING cells), ``pseudocount``; ``sqrt``: ``target_sum``; ``pearson``:
        ``theta`` (default 100), ``clip`` (``None`` or ``"auto"`` = ``sqrt(n_training_cells)``, as in
        the config schema; a positive number; ``False`` for no clipping). Defaults in
        :data:`REPRESENTATIONS`.
    hvg
        Keep only this many highly variable genes, selected from the TRAINING counts (see
        :func:`select_hvg`). ``None`` keeps all genes.
    hvg_flavor
        Count-based HVG flavor: ``"pearson_residuals"`` (default, no extra dependency) or
        ``"seurat_v3"`` (needs scikit-misc).
    max_dense_elements
        Size limit for the dense ``pearson`` output.

    Attributes
    ----------
    genes_ : ndarray
        Indices of the kept columns (all genes without HVG).
    target_sum_ : float
        Target sum used (``log1p`` / ``sqrt``).
    gene_fractions_ : ndarray
        Training gene fractions of the kept genes, over all genes (``pearson``).
    clip_ : float or None
        Residual clip (``pearson``).
    params_ : dict
        Parameters with defaults filled in.
    n_features_in_ : int
        Number of genes of the input counts.

    Notes
    -----
    Library sizes are always computed over ALL genes before the columns are subset, so HVG
    selection never changes a cell's library size; ``rankz`` ranks over all genes, then subsets
    (without re-normalizing the rows).
    """

    def __init__(
        self,
        name: str = "log1p",
        params: dict | None = None,
        hvg: int | None = None,
        hvg_flavor: str = "pearson_residuals",
        max_dense_elements: int = MAX_DENSE_ELEMENTS,
    ):
        self.name = name
        self.params = params
        self.hvg = hvg
        self.hvg_flavor = hvg_flavor
        self.max_dense_elements = max_dense_elements

    def resolved_params(self) -> dict:
        """Parameters with defaults filled in; raises :class:`SclinbenchError` on unknown keys."""
        if self.name not in REPRESENTATIONS:
            raise SclinbenchError(
                f"representation name '{self.name}' is unknown; valid: "
                f"{', '.join([*REPRESENTATIONS, 'embedding'])}"
            )
        defaults = REPRESENTATIONS[self.name]
        given = dict(self.params or {})
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            valid = ", ".join(defaults) if defaults else "none"
            raise SclinbenchError(
                f"representation '{self.name}': unknown parameter(s) {', '.join(unknown)}; "
                f"valid: {valid}"
            )
        out = {**defaults, **given}
        ts = out.get("target_sum")
        if ts is not None and not (ts == "median" or (_is_number(ts) and ts > 0)):
            raise SclinbenchError(
                f"representation '{self.name}': target_sum must be a positive number or 'median', "
                f"got {ts!r}"
            )
        if "pseudocount" in out and not (_is_number(out["pseudocount"]) and out["pseudocount"] > 0):
            raise SclinbenchError(
                f"representation '{self.name}': pseudocount must be > 0, got {out['pseudocount']!r}"
            )
        if "theta" in out and not (_is_number(out["theta"]) and out["theta"] > 0):
            raise SclinbenchError(f"representation 'pearson': theta must be > 0, got {out['theta']!r}")
        clip = out.get("clip")
        if "clip" in out and not (
            clip is None or clip is False or clip == "auto" or (_is_number(clip) and clip > 0)
        ):
            raise SclinbenchError(
                f"representation 'pearson': clip must be null (sqrt of the number of training cells), "
                f"a positive number or false, got {clip!r}"
            )
        if self.hvg is not None and not (isinstance(self.hvg, numbers.Integral) and self.hvg > 0):
            raise SclinbenchError(f"features: hvg 'n_top' must be a positive integer, got {self.hvg!r}")
        if self.hvg is not None and self.hvg_flavor not in HVG_FLAVORS:
            raise SclinbenchError(
                f"features: hvg flavor '{self.hvg_flavor}' is unknown; valid: {', '.join(HVG_FLAVORS)}"
            )
        return out

    def fit(self, X, y=None):
        """Learn the gene selection and representation parameters from training counts ``X``."""
        params = self.resolved_params()
        X = _as_counts(X, where=f"representation '{self.name}'")
        n, g = X.shape
        self.n_features_in_ = g
        self.params_ = params
        if self.hvg is not None:
            self.genes_ = select_hvg(X, int(self.hvg), flavor=self.hvg_flavor)
        else:
            self.genes_ = np.arange(g)
        lib = library_size(X)
        if "target_sum" in params:
            ts = params["target_sum"]
            if ts == "median":
                ts = float(np.median(lib))
                if ts <= 0:
                    raise SclinbenchError(
                        f"representation '{self.name}': target_sum 'median' is 0 (most training "
                        "cells have no counts); give a number"
                    )
            self.target_sum_ = float(ts)
        if self.name == "pearson":
            fractions = fit_gene_fractions(X)
            self.gene_fractions_ = fractions[self.genes_]
            n_unseen = int((self.gene_fractions_ == 0).sum())
            if n_unseen:
                log.warning(
                    "pearson: %d kept genes have no training counts; their residuals are set to 0",
                    n_unseen,
                )
            clip = params["clip"]
            if clip is None or clip == "auto":
                self.clip_ = float(np.sqrt(n))
            elif clip is False:
                self.clip_ = None
            else:
                self.clip_ = float(clip)
            self.theta_ = float(params["theta"])
        return self

    def _all_genes(self) -> bool:
        return self.genes_.shape[0] == self.n_features_in_

    def transform(self, X):
        """Representation of counts ``X`` (same genes as in ``fit``) restricted to ``genes_``."""
        check_is_fitted(self, "genes_")
        X = _as_counts(X, where=f"representation '{self.name}'")
        if X.shape[1] != self.n_features_in_:
            raise SclinbenchError(
                f"representation '{self.name}': input has {X.shape[1]} genes, fitted on "
                f"{self.n_features_in_}; use the same gene space for train and test cells"
            )
        if self.name == "rankz":
            Z = rankz(X)
            return Z if self._all_genes() else Z.select_columns(self.genes_)
        lib = library_size(X)
        Xs = X if self._all_genes() else X[:, self.genes_]
        if self.name == "counts":
            return Xs.astype(np.float32)
        if self.name == "log1p":
            return shifted_log(Xs, self.target_sum_, self.params_["pseudocount"], library=lib)
        if self.name == "sqrt":
            return sqrt_norm(Xs, self.target_sum_, library=lib)
        return pearson_residuals(
            Xs,
            self.gene_fractions_,
            theta=self.theta_,
            clip=self.clip_,
            library=lib,
            max_dense_elements=self.max_dense_elements,
        )


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def f_classif_any(X, y) -> tuple[np.ndarray, np.ndarray]:
    """One-way ANOVA F statistic and p-value per column, for CSR, OffsetCSR or dense ``X``.

    CSR and dense input go to :func:`sklearn.feature_selection.f_classif`. For OffsetCSR the
    per-class sums and the sums of squares are computed from ``S`` and the per-cell offset
    (``x_ij = s_ij + o_i``) without densifying. Constant columns get ``F = nan``.
    """
    from sklearn.feature_selection import f_classif

    if not isinstance(X, OffsetCSR):
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", message="Features .* are constant")
            return f_classif(X, y)
    y = np.asarray(y)
    n, g = X.shape
    classes, codes = np.unique(y, return_inverse=True)
    k = classes.size
    Y = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(k, n))
    n_c = np.bincount(codes, minlength=k).astype(np.float64)
    class_sums = X.rdot(Y)  # k x g
    total = class_sums.sum(axis=0)
    S, off = X.S, X.offset
    sumsq = (
        _col_sums(S, power=2)
        + 2.0 * np.asarray(S.T @ off, dtype=np.float64).ravel()
        + float(off @ off)
    )
    ss_tot = sumsq - total**2 / n
    ss_between = (class_sums**2 / n_c[:, None]).sum(axis=0) - total**2 / n
    ss_within = ss_tot - ss_between
    dfb, dfw = k - 1, n - k
    with np.errstate(divide="ignore", invalid="ignore"):
        F = (ss_between / dfb) / (ss_within / dfw)
    p = stats.f.sf(F, dfb, dfw)
    return F, p


class AnovaSelector(TransformerMixin, BaseEstimator):
    """Keep the ``k`` features with the largest ANOVA F statistic for the training labels.

    Works like ``SelectKBest(f_classif, k=k)`` but also on :class:`OffsetCSR` input (F computed
    exactly from the sparse part and the per-cell offset, see :func:`f_classif_any`). Features with
    undefined F (constant) rank last; ties keep the lower column index.

    Parameters
    ----------
    k
        Number of features to keep (all if ``k`` >= number of features, with a warning).

    Attributes
    ----------
    scores_, pvalues_ : ndarray
        F statistics and p-values of all input features.
    genes_ : ndarray
        Kept column indices, ascending.
    """

    def __init__(self, k: int = 1000):
        self.k = k

    def fit(self, X, y):
        if not (isinstance(self.k, numbers.Integral) and self.k > 0):
            raise SclinbenchError(f"features: anova 'k' must be a positive integer, got {self.k!r}")
        if y is None:
            raise SclinbenchError("features: anova needs the training labels (y)")
        n, g = X.shape
        self.n_features_in_ = g
        F, p = f_classif_any(X, y)
        self.scores_, self.pvalues_ = np.asarray(F, dtype=np.float64), np.asarray(p, dtype=np.float64)
        k = int(self.k)
        if k >= g:
            if k > g:
                log.warning("anova: k=%d >= %d features; keeping all", k, g)
            self.genes_ = np.arange(g)
            return self
        key = np.where(np.isnan(self.scores_), -np.inf, self.scores_)
        order = np.lexsort((np.arange(g), -key))  # descending score, then ascending index
        self.genes_ = np.sort(order[:k])
        return self

    def transform(self, X):
        check_is_fitted(self, "genes_")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, fitted on {self.n_features_in_}")
        return _select_columns(X, self.genes_)


class ScaleClip(TransformerMixin, BaseEstimator):
    """Per-feature z-score with mean / std from the training cells, clipped at ``+-max_value``.

    As ``sc.pp.scale(zero_center=True, max_value=...)``: sample std (ddof=1), features with zero
    std are divided by 1. Accepts CSR, OffsetCSR or dense input; the output is dense (float64),
    refused above ``max_dense_elements`` elements.

    Parameters
    ----------
    max_value
        Clip bound; ``None`` for no clipping.
    max_dense_elements
        Size limit for the dense output.

    Attributes
    ----------
    mean_, std_ : ndarray
        Training mean and std of each feature.
    """

    def __init__(self, max_value: float | None = 10.0, max_dense_elements: int = MAX_DENSE_ELEMENTS):
        self.max_value = max_value
        self.max_dense_elements = max_dense_elements

    def fit(self, X, y=None):
        if self.max_value is not None and not (_is_number(self.max_value) and self.max_value > 0):
            raise SclinbenchError(f"scale: max_value must be a positive number or null, got {self.max_value!r}")
        self.n_features_in_ = X.shape[1]
        mean, var = column_mean_var(X, ddof=1)
        std = np.sqrt(var)
        std[std == 0] = 1.0
        self.mean_, self.std_ = mean, std
        return self

    def transform(self, X):
        check_is_fitted(self, "mean_")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, fitted on {self.n_features_in_}")
        D = np.array(to_dense(X, "scale", self.max_dense_elements), dtype=np.float64, copy=True)
        D -= self.mean_
        D /= self.std_
        if self.max_value is not None:
            np.clip(D, -self.max_value, self.max_value, out=D)
        return D


class PCATransformer(TransformerMixin, BaseEstimator):
    """PCA fitted on the training cells; sparse inputs are mean-centered implicitly.

    CSR and :class:`OffsetCSR` input never get densified whole; the solver is chosen by
    ``svd_solver``:

    - ``"covariance"``: the exact G x G covariance matrix, accumulated from dense row chunks of the
      centered matrix with BLAS, then ``eigh``. Exact and fast when the number of features is
      moderate (after HVG / ANOVA selection; ~7 s for 10k cells x 2000 genes).
    - ``"arpack"``: truncated SVD (``scipy.sparse.linalg.svds``) of a ``LinearOperator`` that
      represents ``X - 1 mean^T`` without forming it, started from a ``random_state``-seeded
      vector. Exact (to ARPACK's tolerance); memory stays sparse, but it needs many products
      (about 2 minutes for 50 components of a 10k x 20k matrix with 2e7 nonzeros).
    - ``"randomized"``: randomized subspace iteration (Halko et al. 2011) on the same operator,
      ``n_iter`` power iterations with 20 oversamples; faster for very large inputs, approximate.
    - ``"auto"`` (default): ``covariance`` when ``n_features <= 2500``, else ``arpack``.

    Dense input goes to :class:`sklearn.decomposition.PCA`. Signs follow scikit-learn (largest
    absolute loading of each component positive), so results agree with
    ``sklearn.decomposition.PCA`` on the densified matrix.

    Parameters
    ----------
    n_components
        Number of components; capped at ``min(n_train - 1, n_features - 1)`` with a warning.
    whiten
        Divide the scores by ``sqrt(explained_variance_)``.
    random_state
        Seed of the ARPACK start vector / randomized sketch / sklearn's solver.
    svd_solver
        ``"auto"``, ``"covariance"``, ``"arpack"`` or ``"randomized"`` (sparse input only).
    n_iter
        Power iterations of the randomized solver.

    Attributes
    ----------
    components_ : ndarray (n_components_, n_features)
    mean_, explained_variance_, explained_variance_ratio_, singular_values_ : ndarray
    n_components_ : int
    """

    def __init__(
        self,
        n_components: int = 50,
        whiten: bool = False,
        random_state: int | None = 0,
        svd_solver: str = "auto",
        n_iter: int = 7,
    ):
        self.n_components = n_components
        self.whiten = whiten
        self.random_state = random_state
        self.svd_solver = svd_solver
        self.n_iter = n_iter

    def fit(self, X, y=None):
        self._fit(X)
        return self

    def _fit(self, X):
        if not (isinstance(self.n_components, numbers.Integral) and self.n_components > 0):
            raise SclinbenchError(
                f"reduction: pca 'n_components' must be a positive integer, got {self.n_components!r}"
            )
        n, g = X.shape
        self.n_features_in_ = g
        k_max = min(n - 1, g - 1)
        if k_max < 1:
            raise SclinbenchError(f"reduction: pca needs at least 2 training cells and 2 features, got {n} x {g}")
        k = int(self.n_components)
        if k > k_max:
            log.warning("pca: n_components=%d capped at %d (min(n_train - 1, n_features - 1))", k, k_max)
            k = k_max
        self.n_components_ = k
        if not (sp.issparse(X) or isinstance(X, OffsetCSR)):
            from sklearn.decomposition import PCA

            pca = PCA(n_components=k, whiten=False, random_state=self.random_state)
            pca.fit(np.asarray(X, dtype=np.float64))
            self.mean_ = pca.mean_
            self.components_ = pca.components_
            self.explained_variance_ = pca.explained_variance_
            self.explained_variance_ratio_ = pca.explained_variance_ratio_
            self.singular_values_ = pca.singular_values_
            return
        if sp.issparse(X):
            X = sp.csr_matrix(X)
        solvers = ("auto", "covariance", "arpack", "randomized")
        if self.svd_solver not in solvers:
            raise SclinbenchError(
                f"reduction: pca svd_solver '{self.svd_solver}' is unknown; valid: {', '.join(solvers)}"
            )
        solver = self.svd_solver
        if solver == "auto":
            solver = "covariance" if g <= COVARIANCE_PCA_MAX_FEATURES else "arpack"
        self.svd_solver_ = solver
        mean, var = column_mean_var(X, ddof=1)
        if solver == "covariance":
            evals, evecs = _covariance_eigh(X, mean)
            top = np.argsort(evals)[::-1][:k]
            s = np.sqrt(np.maximum(evals[top], 0.0) * (n - 1))
            Vt = evecs[:, top].T.copy()
        else:
            op = _centered_operator(X, mean)
            if solver == "arpack":
                v0 = np.random.RandomState(self.random_state).uniform(-1.0, 1.0, size=min(n, g))
                U, s, Vt = svds(op, k=k, v0=v0, solver="arpack")
            else:
                rng = np.random.default_rng(self.random_state)
                U, s, Vt = _randomized_svd(op, k, 20, int(self.n_iter), rng)
            order = np.argsort(s)[::-1]
            s, Vt = s[order], Vt[order]
        # sklearn's convention: largest |loading| of each component positive
        idx = np.argmax(np.abs(Vt), axis=1)
        signs = np.sign(Vt[np.arange(k), idx])
        signs[signs == 0] = 1.0
        Vt *= signs[:, None]
        self.mean_ = mean
        self.components_ = Vt
        self.singular_values_ = s
        self.explained_variance_ = s**2 / (n - 1)
        total = var.sum()
        self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else np.zeros(k)

    def transform(self, X):
        check_is_fitted(self, "components_")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, fitted on {self.n_features_in_}")
        W = self.components_.T
        if isinstance(X, OffsetCSR):
            T = X.dot(W)
        elif sp.issparse(X):
            T = np.asarray(sp.csr_matrix(X) @ W)
        else:
            T = np.asarray(X, dtype=np.float64) @ W
        T = T - self.mean_ @ W
        if self.whiten:
            T /= np.sqrt(self.explained_variance_)
        return T


#: ``PCATransformer(svd_solver="auto")`` uses the exact covariance solver up to this many features.
COVARIANCE_PCA_MAX_FEATURES = 2500


def _covariance_eigh(X, mean: np.ndarray, chunk_elements: int = 20_000_000) -> tuple:
    """Eigen-decomposition of the covariance (ddof=1) of CSR / OffsetCSR ``X``.

    ``sum_i (x_i - mean)(x_i - mean)^T`` is accumulated over dense chunks of rows (each centered
    exactly), so only ``chunk_elements`` matrix entries are dense at a time.
    """
    n, g = X.shape
    C = np.zeros((g, g), dtype=np.float64)
    rows = max(1, chunk_elements // max(g, 1))
    for start in range(0, n, rows):
        block = X[start:start + rows]
        D = block.toarray().astype(np.float64, copy=False)
        D -= mean
        C += D.T @ D
    C /= max(n - 1, 1)
    return np.linalg.eigh(C)


def _centered_operator(X, mean: np.ndarray) -> LinearOperator:
    """``LinearOperator`` for ``X - 1 mean^T`` (X CSR or OffsetCSR), computing in float64.

    The sparse part is converted to float64 once (sharing its index arrays), so products do not
    re-cast float32 data on every call; products with the transpose use the CSC view of the same
    arrays (no transposed copy).
    """
    n, g = X.shape
    if isinstance(X, OffsetCSR):
        S, off = X.S, X.offset
    else:
        S, off = sp.csr_matrix(X), None
    S64 = sp.csr_matrix((S.data.astype(np.float64, copy=False), S.indices, S.indptr), shape=S.shape, copy=False)
    ST = S64.T  # CSC view

    def matmat(V):
        V = np.asarray(V, dtype=np.float64)
        out = np.asarray(S64 @ V)
        shift = mean @ V
        if off is not None:
            return out + np.outer(off, V.sum(axis=0)) - shift[None, :]
        return out - shift[None, :]

    def rmatmat(U):
        U = np.asarray(U, dtype=np.float64)
        out = np.asarray(ST @ U)
        colsum = U.sum(axis=0)
        if off is not None:
            out = out + (off @ U)[None, :]
        return out - np.outer(mean, colsum)

    def matvec(v):
        return matmat(np.asarray(v, dtype=np.float64).reshape(-1, 1)).ravel()

    def rmatvec(u):
        return rmatmat(np.asarray(u, dtype=np.float64).reshape(-1, 1)).ravel()

    return LinearOperator(
        (n, g), matvec=matvec, rmatvec=rmatvec, matmat=matmat, rmatmat=rmatmat, dtype=np.float64
    )


def _randomized_svd(op: LinearOperator, k: int, n_oversamples: int, n_iter: int, rng) -> tuple:
    """Truncated SVD of a ``LinearOperator`` by randomized subspace iteration (Halko et al. 2011).

    Block products only (``matmat``/``rmatmat``), QR re-orthonormalization after every product.
    Returns ``(U, s, Vt)`` with ``s`` descending.
    """
    from scipy.linalg import qr, svd

    n, g = op.shape
    ell = min(k + n_oversamples, n, g)
    Q, _ = qr(op.matmat(rng.standard_normal((g, ell))), mode="economic")
    for _ in range(n_iter):
        Z, _ = qr(op.rmatmat(Q), mode="economic")
        Q, _ = qr(op.matmat(Z), mode="economic")
    B = op.rmatmat(Q).T  # ell x g  = Q^T A
    Ub, s, Vt = svd(B, full_matrices=False)
    return (Q @ Ub)[:, :k], s[:k], Vt[:k]
