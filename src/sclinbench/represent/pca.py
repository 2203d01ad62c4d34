"""PCA fitted on the training cells, with sparse (CSR / OffsetCSR) inputs mean-centered implicitly."""

from __future__ import annotations

import logging
import numbers
import time

import numba
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError
from sclinbench.represent.offset import OffsetCSR, column_mean_var
from sclinbench.represent.products import BlockedCSR, rows_dot, transpose_dot
from sclinbench.represent.scale import ColumnScaled

log = logging.getLogger("sclinbench.represent")

#: Reductions of a pipeline (``reduction: {method: ...}``) and their options.
REDUCTIONS: dict[str, dict] = {
    "none": {},
    "pca": {"n_components": 50, "whiten": False, "svd_solver": "auto"},
}

#: Solvers of :class:`PCATransformer` (``reduction: {method: pca, svd_solver: ...}``).
PCA_SOLVERS = ("auto", "covariance", "arpack", "randomized")


def check_svd_solver(solver: str) -> None:
    """Raise a one-line :class:`SclinbenchError` for an unknown PCA solver."""
    if solver not in PCA_SOLVERS:
        raise SclinbenchError(f"reduction: pca svd_solver '{solver}' is unknown; valid: {', '.join(PCA_SOLVERS)}")


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
    - ``"randomized"``: scikit-learn's randomized SVD (Halko et al. 2011: Gaussian sketch from
      ``random_state``, 10 oversamples, ``n_iter`` LU-normalized power iterations, "auto" as
      scikit-learn) on the same operator -- what ``sklearn.decomposition.PCA`` runs on a large
      dense matrix, on the same random numbers; approximate, and far fewer products than ARPACK.
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
        Power iterations of the randomized solver (``"auto"``: scikit-learn's rule).

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
        n_iter: int | str = "auto",
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
            log.info("pca: n_components=%d capped at %d (min(n_train - 1, n_features - 1))", k, k_max)
            k = k_max
        self.n_components_ = k
        if not (sp.issparse(X) or isinstance(X, (OffsetCSR, ColumnScaled))):
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
        check_svd_solver(self.svd_solver)
        solver = self.svd_solver
        if solver == "auto":
            solver = "covariance" if g <= COVARIANCE_PCA_MAX_FEATURES else "arpack"
        self.svd_solver_ = solver
        mean, var = X.column_mean_var(ddof=1) if isinstance(X, ColumnScaled) else column_mean_var(X, ddof=1)
        if solver == "covariance" and n < g:  # the n x n Gram matrix is the smaller one: same components
            s, Vt = _gram_svd(X, mean, k)
        elif solver == "covariance":
            evals, evecs = _covariance_eigh(X, mean)
            top = np.argsort(evals)[::-1][:k]
            s = np.sqrt(np.maximum(evals[top], 0.0) * (n - 1))
            Vt = evecs[:, top].T.copy()
        else:
            op = _centered_operator(X, mean)
            started = time.perf_counter()
            log.info("pca: %s SVD of the centred %d x %d %s, %d components (a long step: minutes at 100k cells)",
                     solver, n, g, type(X).__name__, k)
            if solver == "arpack":
                v0 = np.random.RandomState(self.random_state).uniform(-1.0, 1.0, size=min(n, g))
                U, s, Vt = svds(op, k=k, v0=v0, solver="arpack")
            else:
                U, s, Vt = _randomized_svd(op, k, 10, self.n_iter, self.random_state)
            order = np.argsort(s)[::-1]
            s, Vt = s[order], Vt[order]
            log.info("pca: %s SVD done in %.1f s", solver, time.perf_counter() - started)
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
        if isinstance(X, (OffsetCSR, ColumnScaled)):
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
    exactly), so only ``chunk_elements`` matrix entries are dense at a time. The chunks of a
    float64 CSR matrix (the scaled HVG matrix of the log1p pipeline) share one buffer: at 160k
    training cells x 2,000 genes a fold's 16 chunks of 160 MB would otherwise each fault in fresh
    pages (~1.3 s per GiB on the 2-core machine of docs/performance.md).
    """
    from scipy.linalg.blas import dsyrk

    n, g = X.shape
    C = np.zeros((g, g), dtype=np.float64, order="F")
    rows = max(1, chunk_elements // max(g, 1))
    buffer = None  # float64 CSR chunks are written into one buffer: no fresh pages per chunk
    for start in range(0, n, rows):
        block = X[start:start + rows]
        if sp.issparse(block) and block.dtype == np.float64:
            if buffer is None:
                buffer = np.empty((min(rows, n), g), dtype=np.float64)
            D = buffer[:block.shape[0]]
            sp.csr_matrix(block).toarray(out=D)  # scipy clears it first
        else:
            D = block.toarray().astype(np.float64, copy=False)
        D -= mean
        # C += D^T D, lower triangle only (symmetric rank-k update: half the flops of a product)
        C = dsyrk(1.0, D.T, beta=1.0, c=C, trans=0, lower=1, overwrite_c=1)
    C /= max(n - 1, 1)
    return np.linalg.eigh(C, UPLO="L")


def _gram_svd(X, mean: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` singular values and right singular vectors of the centred ``X - 1 mean^T`` (n < g)
    from the eigen-decomposition of its n x n Gram matrix: ``G = Xc Xc^T = U S^2 U^T`` and
    ``V^T = S^-1 U^T Xc``. The same components as the g x g covariance (:func:`_covariance_eigh`)
    at O(n^2 g + n^3) instead of O(n g^2 + g^3): the exact solver for fewer cells than features."""
    from scipy.linalg.blas import dsyrk

    D = X.toarray().astype(np.float64, copy=False)
    D -= mean
    G = dsyrk(1.0, D, trans=0, lower=1)
    evals, evecs = np.linalg.eigh(G, UPLO="L")
    top = np.argsort(evals)[::-1][:k]
    s = np.sqrt(np.maximum(evals[top], 0.0))
    Vt = (evecs[:, top].T @ D) / np.maximum(s, np.finfo(np.float64).tiny)[:, None]
    return s, Vt


def _centered_operator(X, mean: np.ndarray) -> LinearOperator:
    """``LinearOperator`` for ``X - 1 mean^T`` (X CSR, OffsetCSR or :class:`ColumnScaled`), in float64.

    Products with the sparse part run in parallel, cache-blocked compiled kernels straight on its
    stored values (float32 or float64; no float64 copy, no transposed copy;
    :mod:`sclinbench.represent.products`), with the offset and centring terms in the same pass. For
    ``Z = (B - 1 m^T) diag(1/s)`` (:class:`ColumnScaled`), ``Z - 1 mean^T = (B - 1 mean_B^T) diag(1/s)``
    with ``mean_B = mean s + m``, so its operator is that of ``B`` with the columns scaled.
    """
    n, g = X.shape
    inv = None
    if isinstance(X, ColumnScaled):
        mean, inv, X = mean * X.std + X.mean, 1.0 / X.std, X.base
    if isinstance(X, OffsetCSR):
        S, off = X.S, X.offset
    else:
        S, off = sp.csr_matrix(X), None
    B = BlockedCSR(S)
    # B^T U sums one range of rows per thread, then the ranges: fixed here, as the numbers depend on it
    n_chunks = max(1, numba.get_num_threads())

    def matmat(V):
        V = np.asarray(V, dtype=np.float64)
        if inv is not None:
            V = V * inv[:, None]
        V = np.ascontiguousarray(V)
        return rows_dot(B, V, off, None if off is None else V.sum(axis=0), mean @ V)

    def rmatmat(U):
        U = np.ascontiguousarray(U, dtype=np.float64)
        return transpose_dot(B, U, n_chunks, None if off is None else off @ U, mean, U.sum(axis=0), inv)

    return _operator((n, g), matmat, rmatmat)


def _operator(shape, matmat, rmatmat) -> LinearOperator:
    def matvec(v):
        return matmat(np.asarray(v, dtype=np.float64).reshape(-1, 1)).ravel()

    def rmatvec(u):
        return rmatmat(np.asarray(u, dtype=np.float64).reshape(-1, 1)).ravel()

    return LinearOperator(shape, matvec=matvec, rmatvec=rmatvec, matmat=matmat, rmatmat=rmatmat, dtype=np.float64)


def _randomized_svd(op: LinearOperator, k: int, n_oversamples: int, n_iter, random_state) -> tuple:
    """Truncated SVD of a ``LinearOperator``: the steps of scikit-learn's ``randomized_svd`` as
    ``PCA(svd_solver="randomized")`` (and ``"auto"`` on large dense input) runs them.

    scikit-learn's function accepts arrays only, so its steps are followed here on the operator:
    the wider side is sketched (``transpose = n_rows < n_cols``) by a Gaussian matrix drawn from
    ``RandomState(random_state).normal``, ``n_iter`` power iterations ("auto": 7 when
    ``k < 0.1 min(shape)``, else 4) normalized by LU (not normalized when ``n_iter <= 2``), a
    QR of the last product, the SVD of ``Q^T A``. On the same matrix and seed, the same numbers up
    to rounding. Returns ``(U, s, Vt)`` with ``s`` descending, before any sign convention.
    """
    from scipy import linalg

    n, g = op.shape
    if n_iter == "auto":
        n_iter = 7 if k < 0.1 * min(n, g) else 4
    transpose = n < g
    A = op.T if transpose else op
    Q = np.random.RandomState(random_state).normal(size=(A.shape[1], k + n_oversamples))
    if n_iter <= 2:
        def normalize(M):
            return M
    else:
        def normalize(M):
            return linalg.lu(M, permute_l=True, check_finite=False)[0]
    for _ in range(int(n_iter)):
        Q = normalize(A.matmat(Q))
        Q = normalize(A.rmatmat(Q))
    Q, _ = linalg.qr(A.matmat(Q), mode="economic", check_finite=False)
    B = A.rmatmat(Q).T  # Q^T A
    Uhat, s, Vt = linalg.svd(B, full_matrices=False, check_finite=False, lapack_driver="gesdd")
    U = Q @ Uhat
    if transpose:
        U, Vt = Vt.T, U.T
    return U[:, :k], s[:k], Vt[:k]
