"""The parameter-free rank representation (Souza & Mehta 2026): ranks -> inverse normal -> L2.

:func:`rankz` ranks every cell's counts over all genes and returns an
:class:`~sclinbench.represent.offset.OffsetCSR` (a 100k x 20k result is never densified). The
kernel (:func:`_rankz_kernel`) is compiled with numba (``cache=True``: compiled once per
environment, then loaded from numba's cache) and runs in parallel over cells: every cell is
ranked on its own, in a per-cell counting sort for small integer counts or a stable sort
otherwise. The output is written straight into one preallocated float32 array, and the result
shares the index arrays of a canonical input (no copy), so the representation costs 4 bytes per
stored count.
"""

from __future__ import annotations

import logging
import time

import numba
import numpy as np
import scipy.sparse as sp
from scipy import special

from sclinbench.represent.normalize import _as_counts
from sclinbench.represent.offset import OffsetCSR

log = logging.getLogger("sclinbench.represent")

#: Integer counts below this value are ranked with a per-cell counting sort; larger or non-integer
#: values with a stable sort (same ranks).
_COUNTING_SORT_MAX = 1 << 16


@numba.njit(parallel=True, cache=True, nogil=True)
def _rankz_kernel(data, indptr, n_genes, table, out, offset, max_count):  # pragma: no cover (compiled)
    """Per cell: average ranks of the stored values over all ``n_genes`` genes -> z -> L2.

    ``table[k] = ndtri((k / 2) / (n_genes + 1))``, indexed by twice the average rank (an integer).
    Writes ``(z - z0) / norm`` of every stored value into ``out`` and ``z0 / norm`` into
    ``offset``. z values are computed and summed in float64 in the order of the stored values
    (as ``np.bincount`` does), then stored as ``out``'s dtype.
    """
    n = indptr.shape[0] - 1
    for i in numba.prange(n):
        lo = indptr[i]
        hi = indptr[i + 1]
        m = hi - lo
        if m == 0:
            offset[i] = 0.0
            continue
        nz = n_genes - m
        z0 = table[nz + 1] if nz > 0 else 0.0
        vmax = 0.0
        integer = True
        for k in range(lo, hi):
            v = data[k]
            if v > vmax:
                vmax = v
            if v != np.floor(v):
                integer = False
        s = 0.0
        if integer and vmax < max_count:
            # counting sort: key[v] = twice the average rank of value v among all genes
            iv = np.int64(vmax)
            hist = np.zeros(iv + 1, np.int64)
            for k in range(lo, hi):
                hist[np.int64(data[k])] += 1
            below = 0
            for v in range(iv + 1):
                c = hist[v]
                hist[v] = 2 * below + c + 1 + 2 * nz
                below += c
            for k in range(lo, hi):
                z = table[hist[np.int64(data[k])]]
                s += z * z
            sq = s + nz * (z0 * z0)
            norm = np.sqrt(sq)
            if norm == 0:
                norm = 1.0
            for k in range(lo, hi):
                out[k] = (table[hist[np.int64(data[k])]] - z0) / norm
        else:
            order = np.argsort(data[lo:hi], kind="mergesort")
            zs = np.empty(m, np.float64)
            j = 0
            while j < m:
                e = j
                v = data[lo + order[j]]
                while e + 1 < m and data[lo + order[e + 1]] == v:
                    e += 1
                z = table[2 * j + (e - j + 1) + 1 + 2 * nz]
                for t in range(j, e + 1):
                    zs[order[t]] = z
                j = e + 1
            for t in range(m):
                s += zs[t] * zs[t]
            sq = s + nz * (z0 * z0)
            norm = np.sqrt(sq)
            if norm == 0:
                norm = 1.0
            for t in range(m):
                out[lo + t] = (zs[t] - z0) / norm
        offset[i] = z0 / norm


def _ndtri_table(n_genes: int) -> np.ndarray:
    """``Phi^{-1}((k / 2) / (G + 1))`` for ``k = 0 .. 2G + 1`` (k = twice an average rank)."""
    k = np.arange(2 * n_genes + 2, dtype=np.float64)
    return special.ndtri((k * 0.5) / (n_genes + 1.0))


def _run_kernel(data, indptr, n_genes, table, out, offset) -> None:
    """Run the kernel; the first call of a signature in a process logs its compile / cache-load time."""
    known = len(_rankz_kernel.signatures)
    t0 = time.perf_counter()
    _rankz_kernel(data, indptr, n_genes, table, out, offset, _COUNTING_SORT_MAX)
    if len(_rankz_kernel.signatures) > known:
        log.info("rankz: first call (numba compile, or load from its cache, included) took %.1f s for %d cells",
                 time.perf_counter() - t0, indptr.shape[0] - 1)


def rankz(X, dtype=np.float32) -> OffsetCSR:
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

    Every cell is computed from its own counts only (a stateless per-cell transform), so the
    result of a row subset equals the same rows of the result.

    Parameters
    ----------
    X
        Raw counts, CSR (cells x genes), over all genes. If ``X`` is in canonical form (sorted
        indices, no duplicates, no explicit zeros), ``S`` shares ``X.indices`` and ``X.indptr``
        (do not modify them in place); otherwise a canonical copy is made first.
    dtype
        dtype of the stored values of ``S`` (``offset`` is float64).

    Returns
    -------
    :class:`OffsetCSR` with unit-norm rows.
    """
    X = _as_counts(X)
    if not X.has_canonical_format or (X.nnz and not X.data.all()):
        X = X.copy()
        X.sum_duplicates()
        X.eliminate_zeros()
    n, g = X.shape
    out = np.empty(X.nnz, dtype=dtype)
    offset = np.empty(n, dtype=np.float64)
    _run_kernel(X.data, X.indptr, g, _ndtri_table(g), out, offset)
    S = sp.csr_matrix((out, X.indices, X.indptr), shape=(n, g), copy=False)
    return OffsetCSR(S, offset)
