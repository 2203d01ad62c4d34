"""The parameter-free rank representation (Souza & Mehta 2026): ranks -> inverse normal -> L2.

:func:`rankz` ranks every cell's counts over all genes and returns an
:class:`~sclinbench.represent.offset.OffsetCSR` (a 100k x 20k result is never densified). The
within-row ranking (:func:`_within_row_ranks`) is the kernel: cells are independent, so it runs on
blocks of cells, and a compiled kernel would replace it without changing anything around it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import special

from sclinbench.represent.normalize import _as_counts
from sclinbench.represent.offset import OffsetCSR

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
