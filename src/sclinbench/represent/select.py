"""Gene selection fitted on the training cells: highly variable genes (scanpy) and ANOVA F.

- :func:`select_hvg`     the ``n_top`` most variable genes of the training counts (scanpy's flavours)
- :class:`AnovaSelector` the ``k`` features with the largest ANOVA F for the training labels, also on
                         :class:`~sclinbench.represent.offset.OffsetCSR` input (:func:`f_classif_any`)
"""

from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError
from sclinbench.represent.normalize import _as_counts
from sclinbench.represent.offset import OffsetCSR, _col_sums, _select_columns

log = logging.getLogger("sclinbench.represent")

#: scanpy's highly-variable-gene flavours, the default first. ``pearson_residuals`` and
#: ``seurat_v3`` rank the raw training counts; ``seurat`` and ``cell_ranger`` their log1p(CP10k)
#: (scanpy's standard recipe: ``normalize_total(target_sum=1e4)``, ``log1p``, then HVGs).
HVG_FLAVORS = ("pearson_residuals", "seurat", "cell_ranger", "seurat_v3")
#: Feature selection methods of a pipeline (``features: {method: ...}``) and their options.
FEATURE_SELECTORS: dict[str, dict] = {
    "none": {},
    "hvg": {"n_top": 2000, "flavor": HVG_FLAVORS[0]},
    "anova": {"k": 2000},
}


def check_hvg_flavor(flavor: str) -> None:
    """Raise a one-line :class:`SclinbenchError` for an unknown flavour or a missing optional package."""
    if flavor not in HVG_FLAVORS:
        raise SclinbenchError(
            f"features: hvg flavor '{flavor}' is unknown; valid: {', '.join(HVG_FLAVORS)}"
        )
    if flavor == "seurat_v3":
        try:
            import skmisc  # noqa: F401  (scikit-misc, optional: seurat_v3 needs its loess)
        except ImportError:
            raise SclinbenchError(
                "features: hvg flavor 'seurat_v3' needs the package scikit-misc, which is not installed: "
                f"pip install scikit-misc (or add it to envs/sclinbench.yaml), or use flavor: {HVG_FLAVORS[0]}"
            ) from None


def select_hvg(X, n_top: int, flavor: str = HVG_FLAVORS[0], theta: float = 100.0) -> np.ndarray:
    """Indices (ascending) of the ``n_top`` most variable genes of the counts ``X``, via scanpy.

    Every flavour runs on the cells passed (the training cells):

    - ``"pearson_residuals"`` (default): genes ranked by the variance of their analytic Pearson
      residuals, ``sc.experimental.pp.highly_variable_genes`` (Lause et al. 2021), on the counts.
    - ``"seurat"`` / ``"cell_ranger"``: ``sc.pp.highly_variable_genes(flavor=...)`` on
      log1p(CP10k) of the counts (scanpy's standard path; both expect logarithmized data).
    - ``"seurat_v3"``: ``sc.pp.highly_variable_genes(flavor="seurat_v3")`` on the counts; needs
      the optional package ``scikit-misc``.

    Genes with no counts in ``X`` are never selected.

    Parameters
    ----------
    X
        Raw counts, CSR, cells x genes.
    n_top
        Number of genes to keep.
    flavor
        One of :data:`HVG_FLAVORS`.
    theta
        Overdispersion for the Pearson-residual flavor.
    """
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    from sclinbench.represent.normalize import shifted_log

    check_hvg_flavor(flavor)
    if not (isinstance(n_top, numbers.Integral) and n_top > 0):
        raise SclinbenchError(f"features: hvg 'n_top' must be a positive integer, got {n_top!r}")
    X = _as_counts(X)
    expressed = np.flatnonzero(_col_sums(X) > 0)
    if n_top >= expressed.size:
        if n_top > expressed.size:
            log.warning(
                "hvg: n_top=%d >= %d genes with training counts; keeping all %d",
                n_top, expressed.size, expressed.size,
            )
        return expressed
    sub = X[:, expressed].astype(np.float32)
    if flavor in ("seurat", "cell_ranger"):  # library sizes over the expressed genes = over all genes
        sub = shifted_log(sub, target_sum=1e4)
    adata = ad.AnnData(
        X=sub,
        obs=pd.DataFrame(index=[str(i) for i in range(sub.shape[0])]),
        var=pd.DataFrame(index=[str(j) for j in expressed]),
    )
    if flavor == "pearson_residuals":
        df = sc.experimental.pp.highly_variable_genes(
            adata, flavor="pearson_residuals", n_top_genes=int(n_top), theta=theta, inplace=False
        )
    else:
        df = sc.pp.highly_variable_genes(adata, flavor=flavor, n_top_genes=int(n_top), inplace=False)
    if flavor in ("seurat", "cell_ranger"):
        # scanpy keeps every gene at or above the n_top-th normalized dispersion (ties add genes):
        # exactly n_top here, ties broken by gene order
        key = np.nan_to_num(np.asarray(df["dispersions_norm"], dtype=np.float64), nan=-np.inf)
        top = np.lexsort((np.arange(key.size), -key))[:n_top]
        return expressed[np.sort(top)]
    mask = np.asarray(df["highly_variable"], dtype=bool)
    return expressed[mask]



def f_classif_any(X, y) -> tuple[np.ndarray, np.ndarray]:
    """One-way ANOVA F statistic and p-value per column, for CSR, OffsetCSR or dense ``X``.

    CSR and dense input go to :func:`sklearn.feature_selection.f_classif`. For OffsetCSR the
    per-class sums and the sums of squares are computed from ``S`` and the per-cell offset
    (``x_ij = s_ij + o_i``) without densifying. Constant columns get ``F = nan``.
    """
    from sklearn.feature_selection import f_classif

    if not isinstance(X, OffsetCSR):
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", message="Features .* are constant")
            return f_classif(X, y)
    y = np.asarray(y)
    n, g = X.shape
    classes, codes = np.unique(y, return_inverse=True)
    k = classes.size
    Y = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(k, n))
    n_c = np.bincount(codes, minlength=k).astype(np.float64)
    class_sums = X.rdot(Y)  # k x g
    total = class_sums.sum(axis=0)
    S, off = X.S, X.offset
    sumsq = (
        _col_sums(S, power=2)
        + 2.0 * np.asarray(S.T @ off, dtype=np.float64).ravel()
        + float(off @ off)
    )
    ss_tot = sumsq - total**2 / n
    ss_between = (class_sums**2 / n_c[:, None]).sum(axis=0) - total**2 / n
    ss_within = ss_tot - ss_between
    dfb, dfw = k - 1, n - k
    with np.errstate(divide="ignore", invalid="ignore"):
        F = (ss_between / dfb) / (ss_within / dfw)
    p = stats.f.sf(F, dfb, dfw)
    return F, p


class AnovaSelector(TransformerMixin, BaseEstimator):
    """Keep the ``k`` features with the largest ANOVA F statistic for the training labels.

    Works like ``SelectKBest(f_classif, k=k)`` but also on :class:`OffsetCSR` input (F computed
    exactly from the sparse part and the per-cell offset, see :func:`f_classif_any`). Features with
    undefined F (constant) rank last; ties keep the lower column index.

    Parameters
    ----------
    k
        Number of features to keep (all if ``k`` >= number of features, with a warning).

    Attributes
    ----------
    scores_, pvalues_ : ndarray
        F statistics and p-values of all input features.
    genes_ : ndarray
        Kept column indices, ascending.
    """

    def __init__(self, k: int = 1000):
        self.k = k

    def fit(self, X, y):
        if not (isinstance(self.k, numbers.Integral) and self.k > 0):
            raise SclinbenchError(f"features: anova 'k' must be a positive integer, got {self.k!r}")
        if y is None:
            raise SclinbenchError("features: anova needs the training labels (y)")
        n, g = X.shape
        self.n_features_in_ = g
        F, p = f_classif_any(X, y)
        self.scores_, self.pvalues_ = np.asarray(F, dtype=np.float64), np.asarray(p, dtype=np.float64)
        k = int(self.k)
        if k >= g:
            if k > g:
                log.warning("anova: k=%d >= %d features; keeping all", k, g)
            self.genes_ = np.arange(g)
            return self
        key = np.where(np.isnan(self.scores_), -np.inf, self.scores_)
        order = np.lexsort((np.arange(g), -key))  # descending score, then ascending index
        self.genes_ = np.sort(order[:k])
        return self

    def transform(self, X):
        check_is_fitted(self, "genes_")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, fitted on {self.n_features_in_}")
        return _select_columns(X, self.genes_)
