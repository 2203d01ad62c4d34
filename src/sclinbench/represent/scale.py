"""Per-feature z-scores fitted on the training cells, clipped (as ``sc.pp.scale``)."""

from __future__ import annotations

import numbers

import numba
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError
from sclinbench.represent.offset import MAX_DENSE_ELEMENTS, column_mean_var, to_dense


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
    Nothing of cells x features is densified. Other input types give the dense ``Z``.

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
