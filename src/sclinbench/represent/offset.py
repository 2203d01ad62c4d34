"""The sparse-offset matrix type and the primitives every representation step shares.

:class:`OffsetCSR` stores a dense matrix as ``S + offset[:, None]`` with ``S`` CSR: the exact form
of :func:`~sclinbench.represent.rankz` output (every zero count of a cell maps to one value). The
functions here work on CSR, OffsetCSR or dense input alike -- column sums, means and variances
(:func:`column_mean_var`), column selection, and the one guarded way to densify
(:func:`to_dense`, refused above :data:`MAX_DENSE_ELEMENTS`). Blocked or streamed variants of
these statistics belong here, beside the ones they replace.
"""

from __future__ import annotations

import numbers

import numba
import numpy as np
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError

#: Largest number of matrix elements (cells x features) any step may densify (1.6 GB as float64).
MAX_DENSE_ELEMENTS = 200_000_000


# --------------------------------------------------------------------------------------------------
# OffsetCSR: sparse matrix + per-row constant
# --------------------------------------------------------------------------------------------------
class OffsetCSR:
    """A dense matrix stored as ``S + offset[:, None]`` with ``S`` CSR.

    This is the exact form of :func:`~sclinbench.represent.rankz` output: every zero count of cell ``i`` maps to one value
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

    def copy(self) -> OffsetCSR:
        return OffsetCSR(self.S.copy(), self.offset.copy())

    def toarray(self) -> np.ndarray:
        """Dense ``S + offset[:, None]`` (float64)."""
        out = self.S.toarray().astype(np.float64, copy=False)
        out += self.offset[:, None]
        return out

    # -- indexing ------------------------------------------------------------------------------
    def __getitem__(self, key) -> OffsetCSR:
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

    def select_columns(self, idx) -> OffsetCSR:
        """Keep columns ``idx`` (indices, slice or boolean mask); the per-row offset is unchanged."""
        return OffsetCSR(self.S[:, idx], self.offset)

    @staticmethod
    def vstack(blocks) -> OffsetCSR:
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
# RowSubset: some rows of a matrix, without copying them
# --------------------------------------------------------------------------------------------------
class RowSubset:
    """Rows ``rows`` of a CSR or :class:`OffsetCSR` matrix ``base``, without copying them.

    ``X[rows]`` of a 200k-cell CSR copies every stored value of those rows; this view keeps only
    the row indices. It supports what the training-free models need -- ``shape``, ``V @ X``
    (:meth:`rdot`, through a sparse ``V`` over all rows of ``base``), ``X @ W`` (:meth:`dot`, over
    blocks of rows), ``X[rows]`` (a sub-view) -- and :meth:`materialize` (the copy) for
    everything else. Results equal those of ``base[rows]`` exactly: products visit the rows in the
    same order.
    """

    __array_ufunc__ = None
    ndim = 2

    def __init__(self, base, rows, block_rows: int = 10_000):
        if not (isinstance(base, OffsetCSR) or sp.issparse(base)):
            raise TypeError(f"RowSubset needs a CSR or OffsetCSR matrix, got {type(base).__name__}")
        self.base = base if isinstance(base, OffsetCSR) else sp.csr_matrix(base)
        self.rows = np.asarray(rows, dtype=np.int64).ravel()
        self.block_rows = block_rows

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows.shape[0], self.base.shape[1])

    @property
    def dtype(self):
        return self.base.dtype

    def __len__(self) -> int:
        return self.rows.shape[0]

    def __repr__(self) -> str:
        return f"<RowSubset of {self.shape[0]} rows of {self.base!r}>"

    def __getitem__(self, key) -> RowSubset:
        if isinstance(key, tuple):
            raise IndexError("RowSubset supports X[rows] only; materialize() first")
        return RowSubset(self.base, self.rows[key], self.block_rows)

    def materialize(self):
        """``base[rows]`` (a copy)."""
        return self.base[self.rows]

    def _sparse_part(self) -> sp.csr_matrix:
        return self.base.S if isinstance(self.base, OffsetCSR) else self.base

    def rdot(self, V):
        """``V @ X`` for sparse ``V`` of shape ``(k, n_rows)`` (dense ``V``: on the copied rows).

        Computed in place on ``base`` by a compiled kernel, in parallel over the rows of ``V``; each
        output sums the products in the order of ``V``'s stored values, in float64 -- the numbers of
        scipy's ``V @ base[rows]`` (which would first copy the rows, and upcast them to float64).
        """
        if not sp.issparse(V):
            return _rdot_any(self.materialize(), V)
        V = sp.csr_matrix(V)
        S = self._sparse_part()
        out = _csr_left_product(V.data.astype(np.float64, copy=False), V.indices, V.indptr, self.rows,
                                S.data, S.indices, S.indptr, S.shape[1])
        if isinstance(self.base, OffsetCSR):
            # built from V's arrays (never re-sorted): the offsets are summed in V's order too
            Vfull = sp.csr_matrix((V.data, self.rows[V.indices], V.indptr), shape=(V.shape[0], self.base.shape[0]))
            out += np.asarray(Vfull @ self.base.offset).ravel()[:, None]
        return out

    def dot(self, W):
        """``X @ W`` for dense ``W`` of shape ``(n_cols,)`` or ``(n_cols, k)``, in place on ``base``.

        A compiled kernel, in parallel over rows, sums each row's products in the order of its
        stored values (float64): the numbers of scipy's ``base[rows] @ W`` (and of
        :meth:`OffsetCSR.dot` for an OffsetCSR base), without copying the rows.
        """
        W = np.asarray(W)
        vector = W.ndim == 1
        W2 = np.ascontiguousarray(W.reshape(W.shape[0], -1), dtype=np.float64)
        S = self._sparse_part()
        out = _csr_rows_dot(S.data, S.indices, S.indptr, self.rows, W2)
        if vector:
            out = out.ravel()
        if isinstance(self.base, OffsetCSR):  # as OffsetCSR.dot: S W + offset 1^T W
            colsum = W.sum(axis=0)
            return out + (self.base.offset[self.rows] * colsum if vector
                          else np.outer(self.base.offset[self.rows], colsum))
        return out

    def __matmul__(self, W):
        return self.dot(W)

    def __rmatmul__(self, V):
        return self.rdot(V)


def _rdot_any(X, V):
    if isinstance(X, OffsetCSR):
        return X.rdot(V)
    return np.asarray(V @ X, dtype=np.float64)


@numba.njit(parallel=True, cache=True, nogil=True)
def _csr_left_product(vdata, vindices, vindptr, rows, data, indices, indptr, n_cols):  # pragma: no cover
    """Dense ``V @ B[rows]`` for CSR ``V`` (k x len(rows)) and CSR ``B``, without copying rows."""
    k = vindptr.shape[0] - 1
    out = np.zeros((k, n_cols), np.float64)
    for c in numba.prange(k):
        for q in range(vindptr[c], vindptr[c + 1]):
            v = vdata[q]
            i = rows[vindices[q]]
            for p in range(indptr[i], indptr[i + 1]):
                out[c, indices[p]] += v * np.float64(data[p])
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _csr_rows_dot(data, indices, indptr, rows, W):  # pragma: no cover (compiled)
    """Dense ``B[rows] @ W`` for CSR ``B`` and dense C-ordered float64 ``W``, without copying rows."""
    n = rows.shape[0]
    k = W.shape[1]
    out = np.zeros((n, k), np.float64)
    for t in numba.prange(n):
        i = rows[t]
        for p in range(indptr[i], indptr[i + 1]):
            a = np.float64(data[p])
            j = indices[p]
            for c in range(k):
                out[t, c] += a * W[j, c]
    return out


def take(X, rows, cols=None):
    """``X[rows][:, cols]`` of CSR or OffsetCSR ``X`` in one pass, without the intermediate copy
    of whole rows (``cols`` ascending; ``None`` keeps all columns). Values and their order within
    each row are those of the two-step copy."""
    if isinstance(X, OffsetCSR):
        return OffsetCSR(take(X.S, rows, cols), X.offset[np.asarray(rows)])
    X = sp.csr_matrix(X)
    rows = np.asarray(rows, dtype=np.int64)
    if cols is None:
        return X[rows]
    cols = np.asarray(cols, dtype=np.int64)
    colmap = np.full(X.shape[1], -1, dtype=np.int64)
    colmap[cols] = np.arange(cols.shape[0])
    counts = _take_count(X.indices, X.indptr, rows, colmap)
    indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    idx_dtype = np.int32 if max(indptr[-1], cols.shape[0]) < 2**31 else np.int64
    data = np.empty(indptr[-1], dtype=X.data.dtype)
    indices = np.empty(indptr[-1], dtype=idx_dtype)
    _take_fill(X.data, X.indices, X.indptr, rows, colmap, indptr, data, indices)
    return sp.csr_matrix((data, indices, indptr.astype(idx_dtype, copy=False)), shape=(rows.shape[0], cols.shape[0]),
                         copy=False)


@numba.njit(parallel=True, cache=True, nogil=True)
def _take_count(indices, indptr, rows, colmap):  # pragma: no cover (compiled)
    counts = np.zeros(rows.shape[0], np.int64)
    for t in numba.prange(rows.shape[0]):
        i = rows[t]
        c = 0
        for p in range(indptr[i], indptr[i + 1]):
            if colmap[indices[p]] >= 0:
                c += 1
        counts[t] = c
    return counts


@numba.njit(parallel=True, cache=True, nogil=True)
def _take_fill(data, indices, indptr, rows, colmap, out_indptr, out_data, out_indices):  # pragma: no cover
    for t in numba.prange(rows.shape[0]):
        i = rows[t]
        q = out_indptr[t]
        for p in range(indptr[i], indptr[i + 1]):
            j = colmap[indices[p]]
            if j >= 0:
                out_data[q] = data[p]
                out_indices[q] = j
                q += 1


def materialize(X):
    """``X`` itself, or the copy of the rows of a :class:`RowSubset`."""
    return X.materialize() if isinstance(X, RowSubset) else X


# --------------------------------------------------------------------------------------------------
# sums accumulated in float64
# --------------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _col_accumulate(data, indices, n_cols, power):  # pragma: no cover (compiled)
    out = np.zeros(n_cols, np.float64)
    for k in range(data.shape[0]):
        v = np.float64(data[k])
        if power == 2:
            v = v * v
        out[indices[k]] += v
    return out


def _col_sums(X: sp.csr_matrix, power: int = 1) -> np.ndarray:
    """Column sums of ``X.data ** power`` accumulated in float64.

    (scipy's ``.sum(axis=0)`` accumulates float32 data in float32: 1e6 values of 1.1 sum to
    1.11e6, 1% off; this does not.) One sequential pass in the order of the stored values -- the
    same sums as ``np.bincount(X.indices, weights=X.data.astype(float64))``, without its float64
    copy of the data.
    """
    if X.nnz == 0:
        return np.zeros(X.shape[1], dtype=np.float64)
    return _col_accumulate(X.data, X.indices, X.shape[1], power)


def _row_sums(X: sp.csr_matrix, power: int = 1, block_nnz: int = 10_000_000) -> np.ndarray:
    """Row sums of ``X.data ** power`` accumulated in float64 (over blocks of whole rows, so
    the float64 copy of the data is never larger than ``block_nnz`` values)."""
    n = X.shape[0]
    out = np.zeros(n, dtype=np.float64)
    if X.nnz == 0:
        return out
    indptr = X.indptr
    for start, stop, lo, hi in row_blocks(indptr, block_nnz):
        w = X.data[lo:hi].astype(np.float64)
        if power == 2:
            w *= w
        nonempty = np.flatnonzero(np.diff(indptr[start:stop + 1]) > 0)
        if w.size:
            out[start + nonempty] = np.add.reduceat(w, indptr[start:stop][nonempty] - lo)
    return out


def row_blocks(indptr: np.ndarray, block_nnz: int):
    """Yield ``(start, stop, lo, hi)``: consecutive row ranges of a CSR matrix holding about
    ``block_nnz`` stored values each (at least one row), and their value range ``lo:hi``."""
    n = len(indptr) - 1
    start = 0
    while start < n:
        stop = int(np.searchsorted(indptr, indptr[start] + block_nnz, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        yield start, stop, indptr[start], indptr[stop]
        start = stop


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
    ss = base + _centered_square_sums(S.data, S.indices, S.indptr, off, mean)
    return mean, np.maximum(ss, 0.0) / max(n - ddof, 1)


@numba.njit(cache=True, nogil=True)
def _centered_square_sums(data, indices, indptr, off, mean):  # pragma: no cover (compiled)
    """Per column ``sum_{nonzero} [s^2 + 2 s (o_i - m_j)]`` in one sequential pass (float64,
    in the order of the stored values: the sums ``np.bincount`` gives, without temporaries)."""
    out = np.zeros(mean.shape[0], np.float64)
    for i in range(indptr.shape[0] - 1):
        o = off[i]
        for k in range(indptr[i], indptr[i + 1]):
            s = np.float64(data[k])
            j = indices[k]
            out[j] += s * s + 2.0 * s * (o - mean[j])
    return out


def _select_columns(X, idx):
    if isinstance(X, OffsetCSR):
        return X.select_columns(idx)
    if sp.issparse(X):
        return sp.csr_matrix(X)[:, idx]
    return np.asarray(X)[:, idx]
