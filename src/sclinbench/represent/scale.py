"""Per-feature z-scores fitted on the training cells, clipped (as ``sc.pp.scale``)."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError
from sclinbench.represent.offset import MAX_DENSE_ELEMENTS, column_mean_var, to_dense


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
        m = self.max_value
        if m is not None and not (isinstance(m, numbers.Real) and not isinstance(m, bool) and m > 0):
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
