"""The cache-blocked products of the centred PCA operator (represent/products.py) on the rankz of
scanpy's real pbmc68k_reduced counts: equal to a dense numpy reference at every block size, and
bit-identical to the plain sequential loops whose order they keep (the numbers the former kernels gave)."""

import numpy as np
import pytest
import scipy.sparse as sp

from sclinbench.data import load_bundled
from sclinbench.represent import rankz
from sclinbench.represent.pca import _centered_operator
from sclinbench.represent.products import BlockedCSR, rows_dot, transpose_dot
from sclinbench.represent.scale import ScaleClip


@pytest.fixture(scope="module")
def R():
    X = load_bundled("pbmc68k_reduced").X.tocsr()  # 700 cells x 765 genes, ~250 stored counts per cell
    return rankz(X)


def _sequential_rows_dot(S, W):
    """``S W`` summed row by row in stored order (the plain loop)."""
    out = np.zeros((S.shape[0], W.shape[1]))
    for i in range(S.shape[0]):
        for p in range(S.indptr[i], S.indptr[i + 1]):
            out[i] += np.float64(S.data[p]) * W[S.indices[p]]
    return out


def _sequential_transpose_dot(S, U, n_chunks):
    """``S^T U``: one accumulator per contiguous range of rows, the ranges added left to right."""
    n = S.shape[0]
    step = -(-n // n_chunks)
    out = None
    for c in range(n_chunks):
        acc = np.zeros((S.shape[1], U.shape[1]))
        for i in range(c * step, min(n, (c + 1) * step)):
            for p in range(S.indptr[i], S.indptr[i + 1]):
                acc[S.indices[p]] += np.float64(S.data[p]) * U[i]
        out = acc if out is None else out + acc
    return out


# column blocks of 7 / 100 genes and row blocks of 5 / 64 cells put block edges everywhere;
# 256 / 512 are the defaults (one row block, three column blocks here)
@pytest.mark.parametrize("column_block, row_block, merge", [(7, 5, 1), (100, 64, 3), (256, 512, 2)])
@pytest.mark.parametrize("k", [1, 37])
def test_blocked_products_equal_the_sequential_loops_bit_for_bit(R, column_block, row_block, merge, k):
    S = R.S[:300]  # a few hundred cells keep the Python reference loops quick
    rng = np.random.default_rng(k)
    W = rng.normal(size=(S.shape[1], k))
    U = rng.normal(size=(S.shape[0], k))
    B = BlockedCSR(S, column_block=column_block)
    assert np.array_equal(rows_dot(B, W, row_block=row_block), _sequential_rows_dot(S, W))
    for n_chunks in (1, 2, 3):
        got = transpose_dot(B, U, n_chunks, merge=merge)
        assert np.array_equal(got, _sequential_transpose_dot(S, U, n_chunks))


@pytest.mark.parametrize("column_block, row_block", [(7, 5), (256, 512)])
@pytest.mark.parametrize("k", [1, 300])
@pytest.mark.parametrize("offset", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
def test_blocked_products_with_offset_centring_and_scaling_equal_dense_numpy(R, column_block, row_block, k,
                                                                             offset, scaled):
    S, n, g = R.S, *R.shape
    rng = np.random.default_rng(0)
    W = rng.normal(size=(g, k))
    U = rng.normal(size=(n, k))
    off = R.offset if offset else None
    mean = rng.normal(size=g)
    inv = rng.uniform(0.5, 2.0, size=g) if scaled else None
    D = S.toarray().astype(np.float64) + (R.offset[:, None] if offset else 0.0)
    Dc = D - mean  # the centred matrix, then the columns scaled
    if scaled:
        Dc = Dc * inv
    B = BlockedCSR(S, column_block=column_block)
    Ws = W * inv[:, None] if scaled else W
    got = rows_dot(B, Ws, off, Ws.sum(axis=0) if offset else None, mean @ Ws, row_block=row_block)
    np.testing.assert_allclose(got, Dc @ W, rtol=1e-10, atol=1e-9)
    got_t = transpose_dot(B, U, 2, off @ U if offset else None, mean, U.sum(axis=0), inv)
    np.testing.assert_allclose(got_t, Dc.T @ U, rtol=1e-10, atol=1e-9)
    # a wrong block edge loses or doubles whole stored values: far above these tolerances
    assert np.abs(Dc @ W).max() > 1.0 and np.abs(Dc.T @ U).max() > 1.0


def test_centred_operator_of_the_z_scored_rankz_equals_the_dense_z_score(R):
    """The operator PCA's randomized / ARPACK solvers use (ColumnScaled over OffsetCSR, OffsetCSR,
    CSR with unsorted indices): products and vector products equal those of the dense matrix."""
    Z = ScaleClip(max_value=None, sparse_shift=True).fit(R).transform(R)
    S_unsorted = R.S.copy()
    for i in range(0, S_unsorted.shape[0], 3):  # reverse the stored order of every third row
        lo, hi = S_unsorted.indptr[i], S_unsorted.indptr[i + 1]
        S_unsorted.data[lo:hi] = S_unsorted.data[lo:hi][::-1]
        S_unsorted.indices[lo:hi] = S_unsorted.indices[lo:hi][::-1]
    S_unsorted.has_sorted_indices = False
    rng = np.random.default_rng(1)
    for X, dense in [(Z, Z.toarray()), (R, R.toarray()), (sp.csr_matrix(S_unsorted), R.S.toarray().astype(float))]:
        mean = dense.mean(axis=0)
        op = _centered_operator(X, mean)
        Dc = dense - mean
        V = rng.normal(size=(dense.shape[1], 230))
        U = rng.normal(size=(dense.shape[0], 230))
        np.testing.assert_allclose(op.matmat(V), Dc @ V, rtol=1e-9, atol=1e-8)
        np.testing.assert_allclose(op.rmatmat(U), Dc.T @ U, rtol=1e-9, atol=1e-8)
        np.testing.assert_allclose(op.matvec(V[:, 0]), Dc @ V[:, 0], rtol=1e-9, atol=1e-8)
        np.testing.assert_allclose(op.rmatvec(U[:, 0]), Dc.T @ U[:, 0], rtol=1e-9, atol=1e-8)


def test_covariance_over_chunks_in_one_buffer_equals_the_dense_covariance():
    """The exact PCA's covariance of the log1p pipeline's input (the scaled HVG matrix: float64
    CSR, here of the 700 bundled PBMCs) accumulated over many chunks written into one reused
    buffer equals the dense covariance, whatever the number of chunks (the last one shorter)."""
    from sclinbench.represent.pca import _covariance_eigh

    X = load_bundled("pbmc68k_reduced").X.tocsr()
    L = sp.csr_matrix(np.log1p(X.astype(np.float64)))
    Z = ScaleClip(max_value=10, sparse_shift=True).fit(L).transform(L)
    assert sp.issparse(Z) and Z.dtype == np.float64
    D = Z.toarray()
    mean = D.mean(axis=0)
    dense = np.linalg.eigh(np.cov(D, rowvar=False), UPLO="L")[0]
    one = _covariance_eigh(Z, mean)  # one chunk
    for chunk_elements in (765 * 7, 765 * 64):  # 100 and 11 chunks, the last one shorter
        many = _covariance_eigh(Z, mean, chunk_elements=chunk_elements)
        np.testing.assert_allclose(many[0], one[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(one[0], dense, rtol=1e-8, atol=1e-9)
