"""Gene selection fitted on the training cells: highly variable genes (scanpy) and ANOVA F.

- :func:`select_hvg`     the ``n_top`` most variable genes of the training counts (scanpy's flavours)
- :class:`AnovaSelector` the ``k`` features with the largest ANOVA F for the training labels, also on
                         :class:`~sclinbench.represent.offset.OffsetCSR` input (:func:`f_classif_any`)
"""

from __future__ import annotations

import logging
import numbers
import warnings

import numba
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


def select_hvg(X, n_top: int, flavor: str = HVG_FLAVORS[0], theta: float = 100.0, rows=None) -> np.ndarray:
    """Indices (ascending) of the ``n_top`` most variable genes of the counts ``X`` (of its rows
    ``rows``, if given: the training cells).

    - ``"pearson_residuals"`` (default): genes ranked by the variance of their analytic Pearson
      residuals (Lause et al. 2021) -- the quantity and the ranking of scanpy's
      ``sc.experimental.pp.highly_variable_genes(flavor="pearson_residuals")``, computed by
      :func:`pearson_residual_variances` over the training rows of ``X`` in place (no copy of
      the counts, nothing dense of cells x genes).
    - ``"seurat"`` / ``"cell_ranger"``: ``sc.pp.highly_variable_genes(flavor=...)`` on
      log1p(CP10k) of the counts (scanpy's standard path; both expect logarithmized data).
    - ``"seurat_v3"``: ``sc.pp.highly_variable_genes(flavor="seurat_v3")`` on the counts; needs
      the optional package ``scikit-misc``.

    The scanpy flavours run on a copy of the training rows. Genes with no counts in the cells
    used are never selected.

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
    rows
        Row indices of the cells to use (default: all rows).
    """
    check_hvg_flavor(flavor)
    if not (isinstance(n_top, numbers.Integral) and n_top > 0):
        raise SclinbenchError(f"features: hvg 'n_top' must be a positive integer, got {n_top!r}")
    X = _as_counts(X)
    rows = np.arange(X.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    gene_sums, lib = _row_subset_sums(X.data, X.indices, X.indptr, rows, X.shape[1])
    expressed = np.flatnonzero(gene_sums > 0)
    if n_top >= expressed.size:
        if n_top > expressed.size:
            log.info(  # an adaptation to a small gene set, nothing to act on: the job log says it
                "hvg: n_top=%d >= %d genes with training counts; keeping all %d",
                n_top, expressed.size, expressed.size,
            )
        return expressed
    if flavor == "pearson_residuals":
        var = pearson_residual_variances(X, theta=theta, rows=rows, _sums=(gene_sums, lib))
        return top_variable(var, expressed, n_top)
    return _select_hvg_scanpy(X[rows] if rows.size != X.shape[0] else X, expressed, n_top, flavor)


def _select_hvg_scanpy(X, expressed, n_top, flavor) -> np.ndarray:
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    from sclinbench.represent.normalize import shifted_log

    sub = X[:, expressed].astype(np.float32)
    if flavor in ("seurat", "cell_ranger"):  # library sizes over the expressed genes = over all genes
        sub = shifted_log(sub, target_sum=1e4)
    adata = ad.AnnData(
        X=sub,
        obs=pd.DataFrame(index=[str(i) for i in range(sub.shape[0])]),
        var=pd.DataFrame(index=[str(j) for j in expressed]),
    )
    df = sc.pp.highly_variable_genes(adata, flavor=flavor, n_top_genes=int(n_top), inplace=False)
    if flavor in ("seurat", "cell_ranger"):
        # scanpy keeps every gene at or above the n_top-th normalized dispersion (ties add genes):
        # exactly n_top here, ties broken by gene order
        key = np.nan_to_num(np.asarray(df["dispersions_norm"], dtype=np.float64), nan=-np.inf)
        top = np.lexsort((np.arange(key.size), -key))[:n_top]
        return expressed[np.sort(top)]
    mask = np.asarray(df["highly_variable"], dtype=bool)
    return expressed[mask]


def pearson_residual_variances(X, theta: float = 100.0, clip: float | None = None, rows=None,
                               _sums=None) -> np.ndarray:
    """Variance over cells of each gene's clipped analytic Pearson residuals, without densifying.

    With ``mu_ij = s_j n_i / N`` (gene sum, library size, total over the cells used),
    ``r_ij = clip((x_ij - mu_ij) / sqrt(mu_ij + mu_ij^2 / theta), -c, c)`` and ``c = sqrt(n)``
    (``clip=None``), the per-gene mean and the (two-pass, ddof=0) variance of ``r`` over ALL
    cells, zeros included -- the statistic scanpy's
    ``sc.experimental.pp.highly_variable_genes(flavor="pearson_residuals")`` ranks genes by.

    A zero count's residual depends only on the cell's library size and the gene, so the sum over
    all cells is computed over the distinct library sizes (weighted by how many cells have each),
    and the stored counts add their difference to that zero residual: exact (up to float64
    rounding; scanpy accumulates the gene and library sums in float32), in time
    ``O(distinct library sizes x genes + nnz)`` and memory ``O(genes)``. Genes without counts get
    variance 0 (as scanpy).

    Parameters
    ----------
    X
        Raw counts, CSR, cells x genes.
    theta, clip
        Overdispersion and residual clip (``None``: ``sqrt(number of cells used)``).
    rows
        Row indices of the cells to use (default: all rows); the counts are read in place.
    """
    X = _as_counts(X)
    rows = np.arange(X.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    n = rows.shape[0]
    if _sums is None:
        _sums = _row_subset_sums(X.data, X.indices, X.indptr, rows, X.shape[1])
    gene_sums, lib = _sums
    total = float(gene_sums.sum())
    clip = float(np.sqrt(n)) if clip is None else float(clip)
    sums = residual_zero_sums(lib, gene_sums, total, theta, clip)
    sums += residual_stored_sums(X, rows, lib, gene_sums, total, theta, clip)
    mean = sums / n
    sq = residual_zero_sums(lib, gene_sums, total, theta, clip, mean)
    sq += residual_stored_sums(X, rows, lib, gene_sums, total, theta, clip, mean)
    var = sq / n
    var[gene_sums == 0] = 0.0
    return var


def top_variable(var: np.ndarray, expressed: np.ndarray, n_top: int) -> np.ndarray:
    """The ``n_top`` genes of ``expressed`` with the largest ``var`` (over all genes), ascending:
    scanpy's ranking (argsort twice, ties broken as ``np.argsort`` breaks them)."""
    ranks = np.argsort(np.argsort(-var[expressed]))
    return expressed[ranks < n_top]


def training_sums(X, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Gene sums and library sizes (float64) of the rows ``rows`` of the counts ``X``, in place."""
    X = _as_counts(X)
    rows = np.arange(X.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    return _row_subset_sums(X.data, X.indices, X.indptr, rows, X.shape[1])


def residual_zero_sums(lib, gene_sums, total, theta, clip, mean=None) -> np.ndarray:
    """Per gene, the sum over the cells of library sizes ``lib`` of the zero-count residual, or
    (``mean`` given) of its squared deviation from ``mean``: one half of a pass of
    :func:`pearson_residual_variances` (the other is :func:`residual_stored_sums`)."""
    lib_u, lib_w = np.unique(lib, return_counts=True)
    square = mean is not None
    mean = np.zeros(gene_sums.shape[0]) if mean is None else mean
    return _residual_zero_part(lib_u, lib_w.astype(np.float64), gene_sums, total, theta, clip, mean,
                               square)


def residual_stored_sums(X, rows, lib, gene_sums, total, theta, clip, mean=None) -> np.ndarray:
    """Per gene, the sum over the stored counts of rows ``rows`` of ``X`` (library sizes ``lib``,
    one per row of ``rows``) of their residual minus the zero residual, or (``mean`` given) of the
    difference of their squared deviations from ``mean``. Sums over blocks of rows add up to the
    sum over all of them (up to float64 rounding)."""
    square = mean is not None
    mean = np.zeros(gene_sums.shape[0]) if mean is None else mean
    n_chunks = max(1, 4 * numba.get_num_threads())
    return _residual_nonzero_part(X.data, X.indices, X.indptr, np.asarray(rows, dtype=np.int64), lib,
                                  gene_sums, total, theta, clip, mean, square, n_chunks)


@numba.njit(cache=True, nogil=True)
def _row_subset_sums(data, indices, indptr, rows, n_genes):  # pragma: no cover (compiled)
    """Gene sums and library sizes (float64) of rows ``rows`` of a CSR matrix, read in place."""
    genes = np.zeros(n_genes, np.float64)
    lib = np.zeros(rows.shape[0], np.float64)
    for t in range(rows.shape[0]):
        i = rows[t]
        acc = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            v = np.float64(data[k])
            genes[indices[k]] += v
            acc += v
        lib[t] = acc
    return genes, lib


@numba.njit(inline="always")
def _clipped_residual(x, mu, theta, clip):  # pragma: no cover (compiled)
    r = (x - mu) / np.sqrt(mu + mu * mu / theta)
    return min(max(r, -clip), clip)


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _residual_zero_part(lib_u, lib_w, s, total, theta, clip, mean, square):  # pragma: no cover
    """Per gene: sum over all cells of the zero-count residual (``square``: of its squared
    deviation from ``mean``), over the distinct library sizes ``lib_u`` with weights ``lib_w``."""
    g = s.shape[0]
    out = np.zeros(g, np.float64)
    for j in numba.prange(g):
        sj = s[j]
        if sj == 0:
            continue
        acc = 0.0
        for u in range(lib_u.shape[0]):
            r0 = _clipped_residual(0.0, sj * lib_u[u] / total, theta, clip)
            if square:
                d = r0 - mean[j]
                acc += lib_w[u] * (d * d)
            else:
                acc += lib_w[u] * r0
        out[j] = acc
    return out


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _residual_nonzero_part(data, indices, indptr, rows, lib, s, total, theta, clip, mean, square,
                           n_chunks):  # pragma: no cover (compiled)
    """Per gene: sum over the stored counts of (residual - zero residual) (``square``: of the
    difference of their squared deviations from ``mean``), in parallel over chunks of rows."""
    g = s.shape[0]
    n = rows.shape[0]
    acc = np.zeros((n_chunks, g), np.float64)
    for c in numba.prange(n_chunks):
        for t in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            i = rows[t]
            ni = lib[t]
            for k in range(indptr[i], indptr[i + 1]):
                j = indices[k]
                mu = s[j] * ni / total
                r = _clipped_residual(np.float64(data[k]), mu, theta, clip)
                r0 = _clipped_residual(0.0, mu, theta, clip)
                if square:
                    a = r - mean[j]
                    b = r0 - mean[j]
                    acc[c, j] += a * a - b * b
                else:
                    acc[c, j] += r - r0
    out = np.zeros(g, np.float64)
    for c in range(n_chunks):
        out += acc[c]
    return out



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
                log.info("anova: k=%d >= %d features; keeping all", k, g)
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
        if self.genes_.shape[0] == self.n_features_in_:
            return X  # every feature kept (e.g. the paper's k=20000 of fewer genes): no copy of the matrix
        return _select_columns(X, self.genes_)
