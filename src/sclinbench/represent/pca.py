"""PCA fitted on the training cells, with sparse (CSR / OffsetCSR) inputs mean-centered implicitly."""

from __future__ import annotations

import logging
import numbers

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError
from sclinbench.represent.offset import OffsetCSR, column_mean_var

log = logging.getLogger("sclinbench.represent")

#: Reductions of a pipeline (``reduction: {method: ...}``) and their options.
REDUCTIONS: dict[str, dict] = {
    "none": {},
    "pca": {"n_components": 50, "whiten": False},
}


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
            log.info("pca: n_components=%d capped at %d (min(n_train - 1, n_features - 1))", k, k_max)
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
    from scipy.linalg.blas import dsyrk

    n, g = X.shape
    C = np.zeros((g, g), dtype=np.float64, order="F")
    rows = max(1, chunk_elements // max(g, 1))
    for start in range(0, n, rows):
        block = X[start:start + rows]
        D = block.toarray().astype(np.float64, copy=False)
        D -= mean
        # C += D^T D, lower triangle only (symmetric rank-k update: half the flops of a product)
        C = dsyrk(1.0, D.T, beta=1.0, c=C, trans=0, lower=1, overwrite_c=1)
    C /= max(n - 1, 1)
    return np.linalg.eigh(C, UPLO="L")


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
