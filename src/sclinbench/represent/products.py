"""Cache-blocked products of a CSR matrix with tall dense float64 matrices (the centred PCA operator).

The randomized SVD of the paper's pipeline multiplies a ~100,000 x 20,000 CSR matrix (12% stored)
by dense matrices of k = 230 columns, 16 times. Row by row, every stored value reads (``B W``) or
updates (``B^T U``) one whole 1.8 KB row of a 36 MB dense operand at a random column: the operand
does not fit any core's cache, and each product ran at a fraction of the cores' speed. Here the
columns of ``B`` (the rows of the dense operand) are cut into blocks of :data:`COLUMN_BLOCK` so that
the operand's block stays in the core's cache while a range of rows passes over it.

Both products keep the float64 numbers of the plain loops exactly (same operations, same order of
summation for every output element):

- ``B W`` (:func:`rows_dot`): each output row sums its stored values in their stored order (column
  blocks are visited in increasing order and the indices are sorted), as ``B @ W`` row by row;
- ``B^T U`` (:func:`transpose_dot`): rows are split into ``n_chunks`` contiguous ranges, each range's
  sum is accumulated over its rows in order and the range sums are added left to right -- the sums
  of the former per-thread accumulators -- but the work is split over column blocks (each thread
  owns its block of the output), not over row ranges, so no thread holds a whole g x k partial.

The centring / offset / column-scaling terms of :func:`sclinbench.represent.pca._centered_operator`
are applied in the same pass (:func:`rows_dot`'s ``off, colsum, shift``; :func:`transpose_dot`'s
``off_u, mean, usum, inv``), with the operations and order of the numpy expressions they replace.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

#: Columns of ``B`` per block: 256 rows of a k = 230 operand are 0.47 MB (``B W``); ``B^T U`` uses
#: pairs of blocks (0.94 MB of output per block), inside the 2 MB per-core cache of the machine
#: the figures in docs/performance.md were measured on.
COLUMN_BLOCK = 256

#: Rows of ``B`` per task of :func:`rows_dot` (their output rows: 0.94 MB at k = 230).
ROW_BLOCK = 512


class BlockedCSR:
    """A CSR matrix with the stored position of every (row, column block) boundary.

    ``rel[i, b]`` is the first stored position of row ``i`` at a column ``>= edges[b]``, relative to
    ``indptr[i]`` (int32: 4 bytes per row and block, 31 MB for 100,000 rows x 77 blocks). The
    indices must be sorted within rows; a copy with sorted indices is made if they are not.
    """

    def __init__(self, S, column_block: int = COLUMN_BLOCK):
        S = sp.csr_matrix(S)
        if not S.has_sorted_indices:
            S = S.sorted_indices()
        self.S = S
        g = S.shape[1]
        self.edges = np.append(np.arange(0, g, column_block), g).astype(np.int64)
        self.rel = _block_starts(S.indices, S.indptr, self.edges)

    @property
    def shape(self) -> tuple[int, int]:
        return self.S.shape


def rows_dot(B: BlockedCSR, W: np.ndarray, off=None, colsum=None, shift=None,
             row_block: int = ROW_BLOCK) -> np.ndarray:
    """``(B W + off colsum^T) - 1 shift^T`` for C-ordered float64 ``W`` (g x k); each term optional.

    Equal, bit for bit, to ``out = B @ W`` (summed row by row in stored order, as
    :func:`sclinbench.represent.offset._csr_rows_dot`), then ``out += np.outer(off, colsum)`` and
    ``out -= shift``.
    """
    S = B.S
    n, k = S.shape[0], W.shape[1]
    has_off, has_shift = off is not None, shift is not None
    off = np.zeros(n) if off is None else np.asarray(off, dtype=np.float64)
    colsum = np.zeros(k) if colsum is None else np.asarray(colsum, dtype=np.float64)
    shift = np.zeros(k) if shift is None else np.asarray(shift, dtype=np.float64)
    return _rows_dot(S.data, S.indices, S.indptr, B.rel, W, row_block, off, colsum, shift, has_off, has_shift)


def transpose_dot(B: BlockedCSR, U: np.ndarray, n_chunks: int, off_u=None, mean=None, usum=None,
                  inv=None, merge: int = 2) -> np.ndarray:
    """``(((B^T U + 1 off_u^T) - mean usum^T) * inv[:, None])`` for C-ordered float64 ``U`` (n x k).

    ``B^T U`` is summed as ``n_chunks`` contiguous row ranges added left to right (the numbers of
    one accumulator per range); the other terms are optional (``mean`` and ``usum`` together) and
    equal, bit for bit, ``out += off_u[None, :]``, ``out -= np.outer(mean, usum)``,
    ``out *= inv[:, None]``. The work is split over ``merge`` column blocks at a time.
    """
    S = B.S
    g, k = S.shape[1], U.shape[1]
    has_off, has_mean, has_inv = off_u is not None, mean is not None, inv is not None
    off_u = np.zeros(k) if off_u is None else np.asarray(off_u, dtype=np.float64)
    mean = np.zeros(g) if mean is None else np.asarray(mean, dtype=np.float64)
    usum = np.zeros(k) if usum is None else np.asarray(usum, dtype=np.float64)
    inv = np.ones(g) if inv is None else np.asarray(inv, dtype=np.float64)
    return _transpose_dot(S.data, S.indices, S.indptr, B.rel, B.edges, U, int(n_chunks), int(merge),
                          off_u, mean, usum, inv, has_off, has_mean, has_inv)


@numba.njit(parallel=True, cache=True, nogil=True)
def _block_starts(indices, indptr, edges):  # pragma: no cover (compiled)
    n = indptr.shape[0] - 1
    nb = edges.shape[0]
    rel = np.empty((n, nb), np.int32)
    for i in numba.prange(n):
        p = indptr[i]
        end = indptr[i + 1]
        for b in range(nb - 1):
            e = edges[b]
            while p < end and indices[p] < e:
                p += 1
            rel[i, b] = p - indptr[i]
        rel[i, nb - 1] = end - indptr[i]
    return rel


@numba.njit(parallel=True, cache=True, nogil=True)
def _rows_dot(data, indices, indptr, rel, W, row_block, off, colsum, shift, has_off,
              has_shift):  # pragma: no cover (compiled)
    n = indptr.shape[0] - 1
    nb = rel.shape[1] - 1
    k = W.shape[1]
    out = np.zeros((n, k), np.float64)
    for rb in numba.prange((n + row_block - 1) // row_block):
        r0 = rb * row_block
        r1 = min(n, r0 + row_block)
        for b in range(nb):  # the block of W stays in cache over the rows r0:r1
            for t in range(r0, r1):
                o = out[t]
                p = indptr[t] + rel[t, b]
                end = indptr[t] + rel[t, b + 1]
                while p + 4 <= end:  # four stored values per pass over the output row, added in order
                    a0 = np.float64(data[p])
                    a1 = np.float64(data[p + 1])
                    a2 = np.float64(data[p + 2])
                    a3 = np.float64(data[p + 3])
                    w0 = W[indices[p]]
                    w1 = W[indices[p + 1]]
                    w2 = W[indices[p + 2]]
                    w3 = W[indices[p + 3]]
                    for c in range(k):
                        o[c] = (((o[c] + a0 * w0[c]) + a1 * w1[c]) + a2 * w2[c]) + a3 * w3[c]
                    p += 4
                while p < end:
                    a = np.float64(data[p])
                    w = W[indices[p]]
                    for c in range(k):
                        o[c] += a * w[c]
                    p += 1
        for t in range(r0, r1):
            o = out[t]
            if has_off:
                for c in range(k):
                    o[c] += off[t] * colsum[c]
            if has_shift:
                for c in range(k):
                    o[c] -= shift[c]
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _transpose_dot(data, indices, indptr, rel, edges, U, n_chunks, merge, off_u, mean, usum, inv,
                   has_off, has_mean, has_inv):  # pragma: no cover (compiled)
    n = indptr.shape[0] - 1
    nb = rel.shape[1] - 1
    g = edges[nb]
    k = U.shape[1]
    step = (n + n_chunks - 1) // n_chunks
    out = np.zeros((g, k), np.float64)
    n_tasks = (nb + merge - 1) // merge
    for task in numba.prange(n_tasks):
        b0 = task * merge
        b1 = min(nb, b0 + merge)
        g0 = edges[b0]
        g1 = edges[b1]
        buf = np.zeros((g1 - g0, k), np.float64)  # this task's rows of one range's sum
        for ch in range(n_chunks):
            if ch > 0:
                buf[:] = 0.0
            for i in range(ch * step, min(n, (ch + 1) * step)):
                u = U[i]
                p = indptr[i] + rel[i, b0]
                end = indptr[i] + rel[i, b1]
                while p + 4 <= end:
                    a0 = np.float64(data[p])
                    a1 = np.float64(data[p + 1])
                    a2 = np.float64(data[p + 2])
                    a3 = np.float64(data[p + 3])
                    o0 = buf[indices[p] - g0]
                    o1 = buf[indices[p + 1] - g0]
                    o2 = buf[indices[p + 2] - g0]
                    o3 = buf[indices[p + 3] - g0]
                    for t in range(k):
                        x = u[t]
                        o0[t] += a0 * x
                        o1[t] += a1 * x
                        o2[t] += a2 * x
                        o3[t] += a3 * x
                    p += 4
                while p < end:
                    a = np.float64(data[p])
                    o = buf[indices[p] - g0]
                    for t in range(k):
                        o[t] += a * u[t]
                    p += 1
            if ch == 0:
                out[g0:g1] = buf
            else:
                for jj in range(g1 - g0):
                    for t in range(k):
                        out[g0 + jj, t] += buf[jj, t]
        for j in range(g0, g1):
            o = out[j]
            if has_off:
                for t in range(k):
                    o[t] += off_u[t]
            if has_mean:
                for t in range(k):
                    o[t] -= mean[j] * usum[t]
            if has_inv:
                for t in range(k):
                    o[t] *= inv[j]
    return out
