"""Representations of raw counts: normalizations, gene selection, scaling and PCA.

The input everywhere is a CSR matrix of raw integer counts (cells x genes). Stateless normalizations
are plain functions; everything that learns from data is a scikit-learn transformer whose state is
set in ``fit`` from the training cells only. One module per concern:

- :mod:`~sclinbench.represent.offset`      :class:`OffsetCSR` (a sparse matrix plus a per-cell
                                           constant) and the statistics, column selection and guarded
                                           densifying (:func:`to_dense`) every step shares
- :mod:`~sclinbench.represent.normalize`   :func:`normalize_total`, :func:`shifted_log`,
                                           :func:`sqrt_norm`, :func:`pearson_residuals`
- :mod:`~sclinbench.represent.rank`        :func:`rankz` (ranks -> inverse normal -> L2; Souza & Mehta 2026)
- :mod:`~sclinbench.represent.select`      :func:`select_hvg` (scanpy's HVG flavours),
                                           :class:`AnovaSelector`
- :mod:`~sclinbench.represent.scale`       :class:`ScaleClip` (per-gene z-score, clipped)
- :mod:`~sclinbench.represent.pca`         :class:`PCATransformer` (implicit centering of sparse input)
- :mod:`~sclinbench.represent.transformer` :class:`RepresentationTransformer` (one named
                                           representation, optionally on the HVGs only)

:func:`rankz` returns an :class:`OffsetCSR` (the common value of a cell's zero genes is the
offset), so a 100k x 20k result is never densified. Every consumer here (ANOVA, scaling
statistics, PCA, the centroid classifier) works on it directly; scikit-learn estimators that cannot
are handed a dense copy only below :data:`MAX_DENSE_ELEMENTS`.
"""

from sclinbench.represent.normalize import (
    fit_gene_fractions,
    library_size,
    normalize_total,
    pearson_residuals,
    shifted_log,
    sqrt_norm,
)
from sclinbench.represent.offset import MAX_DENSE_ELEMENTS, OffsetCSR, column_mean_var, to_dense
from sclinbench.represent.pca import PCA_SOLVERS, REDUCTIONS, PCATransformer
from sclinbench.represent.rank import rankz
from sclinbench.represent.scale import ScaleClip
from sclinbench.represent.select import (
    FEATURE_SELECTORS,
    HVG_FLAVORS,
    AnovaSelector,
    f_classif_any,
    select_hvg,
)
from sclinbench.represent.transformer import REPRESENTATIONS, RepresentationTransformer

__all__ = [
    "FEATURE_SELECTORS", "HVG_FLAVORS", "MAX_DENSE_ELEMENTS", "PCA_SOLVERS", "REDUCTIONS", "REPRESENTATIONS", "AnovaSelector", "OffsetCSR", "PCATransformer",
    "RepresentationTransformer", "ScaleClip", "column_mean_var", "f_classif_any", "fit_gene_fractions",
    "library_size", "normalize_total", "pearson_residuals", "rankz", "select_hvg", "shifted_log",
    "sqrt_norm", "to_dense",
]
