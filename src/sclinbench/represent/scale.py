"""Per-feature z-scores fitted on the training cells, clipped (as ``sc.pp.scale``) or not (as
scikit-learn's ``StandardScaler``); the z-scored rankz matrix as an implicit operator (:class:`ColumnScaled`)."""

from __future__ import annotations

import numbers

import numba
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError
from sclinbench.represent.offset import MAX_DENSE_ELEMENTS, OffsetCSR, column_mean_var, to_dense


class ColumnScaled:
    """The z-scored matrix ``Z = (X - 1 mean^T) diag(1 / std)`` of a CSR or :class:`OffsetCSR` ``X``,
    never formed.

    A rankz matrix is ``S + offset 1^T`` (OffsetCSR); its z-score has a different value at every zero
    of every cell and feature, so it is dense, but it is a sparse matrix plus rank-one and per-column
    terms: ``Z = S D + offset (1/std)^T - 1 (mean/std)^T``. This class keeps ``X``, ``mean`` and ``std``
    and supports what PCA needs: ``Z @ W`` (:meth:`dot`), ``V @ Z`` (:meth:`rdot`), row indexing,
    :meth:`column_mean_var` and :meth:`toarray`. Every value equals that of the dense z-score.
    """

    __array_ufunc__ = None
    ndim = 2

    def __init__(self, base, mean, std):
        self.base = base if isinstance(base, OffsetCSR) else sp.csr_matrix(base)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        if self.mean.shape != (self.base.shape[1],) or self.std.shape != (self.base.shape[1],):
            raise ValueError(f"mean / std need {self.base.shape[1]} entries")

    @property
    def shape(self) -> tuple[int, int]:
        return self.base.shape

    dtype = np.dtype(np.float64)

    def __repr__(self) -> str:
        n, g = self.shape
        return f"<ColumnScaled {n} x {g} z-score of {self.base!r}>"

    def __getitem__(self, rows) -> ColumnScaled:
        return ColumnScaled(self.base[rows], self.mean, self.std)

    def toarray(self) -> np.ndarray:
        out = self.base.toarray().astype(np.float64, copy=False)
        out -= self.mean
        out /= self.std
        return out

    def dot(self, W) -> np.ndarray:
        """``Z @ W = X (W / std) - 1 (mean/std)^T W`` for dense ``W`` (``(g,)`` or ``(g, k)``)."""
        W = np.asarray(W, dtype=np.float64)
        Ws = W / (self.std if W.ndim == 1 else self.std[:, None])
        out = np.asarray(self.base @ Ws)  # CSR or OffsetCSR (its __matmul__)
        return out - self.mean @ Ws

    def rdot(self, V) -> np.ndarray:
        """``V @ Z = ((V X) - (V 1) mean^T) / std`` for dense ``V`` (``(n,)`` or ``(k, n)``)."""
        V = np.asarray(V, dtype=np.float64)
        VX = np.asarray(V @ self.base)  # CSR or OffsetCSR (its __rmatmul__)
        if V.ndim == 1:
            return (VX - V.sum() * self.mean) / self.std
        return (VX - np.outer(V.sum(axis=1), self.mean)) / self.std

    def __matmul__(self, W):
        return self.dot(W)

    def __rmatmul__(self, V):
        return self.rdot(V)

    def column_mean_var(self, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
        mean, var = column_mean_var(self.base, ddof=ddof)
        return (mean - self.mean) / self.std, var / self.std**2


class ScaleClip(TransformerMixin, BaseEstimator):
    """Per-feature z-score with mean / std from the training cells, clipped at ``+-max_value``.

    As ``sc.pp.scale(zero_center=True, max_value=...)``: sample std (ddof=1), features with zero
    std are divided by 1. Accepts CSR, OffsetCSR or dense input; the output is dense (float64),
    refused above ``max_dense_elements`` elements -- except with ``sparse_shift``.

    ``sparse_shift=True`` (for a following step that centres its input, i.e. PCA): for CSR input,
    every zero of feature ``j`` maps to the same value ``c_j = clip(-mean_j / std_j)``, so the
    scaled matrix is exactly ``Z = 1 c^T + S`` with ``S`` sparse on the stored entries
    (``S_ij = clip(z_ij) - c_j``). ``transform`` then returns ``S`` (CSR, float64; ``c_`` holds
    ``c``): the scaled matrix up to one constant per feature, which any centring removes --
    ``PCA(Z) = PCA(S)``, and test cells ``S_test - mean_train(S) = Z_test - mean_train(Z)``.
    Nothing of cells x features is densified. Without clipping (``max_value=None``, scikit-learn's
    ``StandardScaler``) and with ``sparse_shift``, :class:`OffsetCSR` input (rankz) gives the exact
    ``Z`` as a :class:`ColumnScaled` operator, at any size. Other input types give the dense ``Z``.

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

    def __init__(self, max_value: float | None = 10.0, max_dense_elements: int = MAX_DENSE_ELEMENTS,
                 sparse_shift: bool = False):
        self.max_value = max_value
        self.max_dense_elements = max_dense_elements
        self.sparse_shift = sparse_shift

    def fit(self, X, y=None):
        m = self.max_value
        if m is not None and not (isinstance(m, numbers.Real) and not isinstance(m, bool) and m > 0):
            raise SclinbenchError(f"scale: max_value must be a positive number or null, got {self.max_value!r}")
        self.n_features_in_ = X.shape[1]
        mean, var = column_mean_var(X, ddof=1)
        std = np.sqrt(var)
        std[std == 0] = 1.0
        self.mean_, self.std_ = mean, std
        c = -mean / std
        if m is not None:
            c = np.clip(c, -m, m)
        self.c_ = c
        return self

    def transform(self, X):
        check_is_fitted(self, "mean_")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, fitted on {self.n_features_in_}")
        if self.sparse_shift and sp.issparse(X):
            X = sp.csr_matrix(X)
            m = np.inf if self.max_value is None else float(self.max_value)
            data = _scaled_minus_zero_value(X.data, X.indices, self.mean_, self.std_, self.c_, m)
            return sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape, copy=False)
        if self.sparse_shift and isinstance(X, OffsetCSR):
            if self.max_value is None:
                return ColumnScaled(X, self.mean_, self.std_)
            n, g = X.shape
            if n * g > self.max_dense_elements:  # clipping the zeros of a rankz matrix makes it dense
                raise SclinbenchError(
                    f"scale: clipping at max_value {self.max_value:g} needs the z-scored rankz matrix dense "
                    f"({n} x {g} > limit {self.max_dense_elements:.3g} elements); use scale: {{max_value: null}} "
                    "(no clipping, as StandardScaler: exact at any size) or select fewer features")
        D = np.array(to_dense(X, "scale", self.max_dense_elements), dtype=np.float64, copy=True)
        D -= self.mean_
        D /= self.std_
        if self.max_value is not None:
            np.clip(D, -self.max_value, self.max_value, out=D)
        return D


@numba.njit(cache=True, nogil=True)
def _scaled_minus_zero_value(data, indices, mean, std, c, max_value):  # pragma: no cover (compiled)
    """``clip((x - mean_j) / std_j) - c_j`` of every stored value (float64)."""
    out = np.empty(data.shape[0], np.float64)
    for k in range(data.shape[0]):
        j = indices[k]
        z = (np.float64(data[k]) - mean[j]) / std[j]
        z = min(max(z, -max_value), max_value)
        out[k] = z - c[j]
    return out
