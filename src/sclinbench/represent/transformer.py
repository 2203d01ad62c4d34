"""One named representation of raw counts as a scikit-learn transformer (fitted on training cells).

:class:`RepresentationTransformer` computes ``counts``, ``log1p``, ``sqrt``, ``pearson`` or
``rankz`` (:data:`REPRESENTATIONS`) and, optionally, keeps only the highly variable genes of the
training counts (:func:`~sclinbench.represent.select.select_hvg`).
"""

from __future__ import annotations

import logging
import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError
from sclinbench.represent.normalize import (
    _as_counts,
    fit_gene_fractions,
    library_size,
    pearson_residuals,
    shifted_log,
    sqrt_norm,
)
from sclinbench.represent.offset import MAX_DENSE_ELEMENTS, OffsetCSR, RowSubset
from sclinbench.represent.rank import rankz
from sclinbench.represent.select import HVG_FLAVORS, check_hvg_flavor, select_hvg

log = logging.getLogger("sclinbench.represent")

#: Valid representation names of :class:`RepresentationTransformer` and their parameters (defaults).
REPRESENTATIONS: dict[str, dict] = {
    "counts": {},
    "log1p": {"target_sum": 1e4, "pseudocount": 1.0},
    "sqrt": {"target_sum": 1e4},
    "pearson": {"theta": 100.0, "clip": None},
    "rankz": {},
}


class RepresentationTransformer(TransformerMixin, BaseEstimator):
    """One named representation of raw counts, fitted on the training cells only.

    Parameters
    ----------
    name
        ``counts`` (raw counts, CSR), ``log1p`` (:func:`shifted_log`, CSR), ``sqrt``
        (:func:`sqrt_norm`, CSR), ``pearson`` (:func:`pearson_residuals`, dense) or ``rankz``
        (:func:`rankz`, :class:`OffsetCSR`).
    params
        Representation parameters: ``log1p``: ``target_sum`` (number or ``"median"``: the median
        library size of the TRAINING cells), ``pseudocount``; ``sqrt``: ``target_sum``; ``pearson``:
        ``theta`` (default 100), ``clip`` (``None`` = ``sqrt(n_training_cells)``, as in the config
        schema; a positive number; ``False`` for no clipping). Defaults in
        :data:`REPRESENTATIONS`.
    hvg
        Keep only this many highly variable genes, selected from the TRAINING counts (see
        :func:`select_hvg`). ``None`` keeps all genes.
    hvg_flavor
        One of :data:`~sclinbench.represent.select.HVG_FLAVORS` (default ``"pearson_residuals"``;
        ``"seurat_v3"`` needs scikit-misc).
    max_dense_elements
        Size limit for the dense ``pearson`` output.

    Attributes
    ----------
    genes_ : ndarray
        Indices of the kept columns (all genes without HVG).
    target_sum_ : float
        Target sum used (``log1p`` / ``sqrt``).
    gene_fractions_ : ndarray
        Training gene fractions of the kept genes, over all genes (``pearson``).
    clip_ : float or None
        Residual clip (``pearson``).
    params_ : dict
        Parameters with defaults filled in.
    n_features_in_ : int
        Number of genes of the input counts.

    Notes
    -----
    Library sizes are always computed over ALL genes before the columns are subset, so HVG
    selection never changes a cell's library size; ``rankz`` ranks over all genes, then subsets
    (without re-normalizing the rows).
    """

    def __init__(
        self,
        name: str = "log1p",
        params: dict | None = None,
        hvg: int | None = None,
        hvg_flavor: str = HVG_FLAVORS[0],
        max_dense_elements: int = MAX_DENSE_ELEMENTS,
    ):
        self.name = name
        self.params = params
        self.hvg = hvg
        self.hvg_flavor = hvg_flavor
        self.max_dense_elements = max_dense_elements

    def resolved_params(self) -> dict:
        """Parameters with defaults filled in; raises :class:`SclinbenchError` on unknown keys."""
        if self.name not in REPRESENTATIONS:
            raise SclinbenchError(
                f"representation name '{self.name}' is unknown; valid: "
                f"{', '.join([*REPRESENTATIONS, 'embedding'])}"
            )
        defaults = REPRESENTATIONS[self.name]
        given = dict(self.params or {})
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            valid = ", ".join(defaults) if defaults else "none"
            raise SclinbenchError(
                f"representation '{self.name}': unknown parameter(s) {', '.join(unknown)}; "
                f"valid: {valid}"
            )
        out = {**defaults, **given}
        ts = out.get("target_sum")
        if ts is not None and not (ts == "median" or (_is_number(ts) and ts > 0)):
            raise SclinbenchError(
                f"representation '{self.name}': target_sum must be a positive number or 'median', "
                f"got {ts!r}"
            )
        if "pseudocount" in out and not (_is_number(out["pseudocount"]) and out["pseudocount"] > 0):
            raise SclinbenchError(
                f"representation '{self.name}': pseudocount must be > 0, got {out['pseudocount']!r}"
            )
        if "theta" in out and not (_is_number(out["theta"]) and out["theta"] > 0):
            raise SclinbenchError(f"representation 'pearson': theta must be > 0, got {out['theta']!r}")
        clip = out.get("clip")
        if "clip" in out and not (
            clip is None or clip is False or (_is_number(clip) and clip > 0)
        ):
            raise SclinbenchError(
                f"representation 'pearson': clip must be null (sqrt of the number of training cells), "
                f"a positive number or false, got {clip!r}"
            )
        if self.hvg is not None and not (isinstance(self.hvg, numbers.Integral) and self.hvg > 0):
            raise SclinbenchError(f"features: hvg 'n_top' must be a positive integer, got {self.hvg!r}")
        if self.hvg is not None:
            check_hvg_flavor(self.hvg_flavor)
        return out

    def is_stateless(self) -> bool:
        """True if the representation (before gene selection) has no fitted state: every cell is
        computed from its own counts only -- ``rankz``, and ``log1p`` / ``sqrt`` to a fixed
        ``target_sum``. Such a representation may be computed once for all cells of a dataset
        (:meth:`represent_all`) and shared by every fold without any test cell informing a
        training cell; the gene selection (HVG) is still fitted per fold on the training counts.
        """
        params = self.resolved_params()
        if self.name == "rankz":
            return True
        return self.name in ("log1p", "sqrt") and params["target_sum"] != "median"

    def fit_reads_counts(self) -> bool:
        """False if :meth:`fit` reads nothing of its counts but their number of genes: a stateless
        representation (:meth:`is_stateless`) without HVG selection. Its counts may then be
        released once :meth:`represent_all` is computed (``sclinbench.evaluate.engine.evaluate``)."""
        return self.hvg is not None or not self.is_stateless()

    def represent_all(self, X):
        """The stateless representation (:meth:`is_stateless`) of all cells, over ALL genes.

        No fitting involved; select the fitted genes with :meth:`select_genes`. The rows of
        ``select_genes(represent_all(X))`` equal ``fit(...).transform(X)`` exactly (library sizes
        are over all genes in both).
        """
        if not self.is_stateless():
            raise SclinbenchError(f"representation '{self.name}' with these parameters is fitted on training cells")
        params = self.resolved_params()
        X = _as_counts(X, where=f"representation '{self.name}'")
        if self.name == "rankz":
            return rankz(X)
        if self.name == "log1p":
            return shifted_log(X, float(params["target_sum"]), params["pseudocount"])
        return sqrt_norm(X, float(params["target_sum"]))

    def select_genes(self, Z):
        """Columns ``genes_`` of a representation of all genes (:meth:`represent_all`)."""
        check_is_fitted(self, "genes_")
        if self._all_genes():
            return Z
        return Z.select_columns(self.genes_) if isinstance(Z, OffsetCSR) else Z[:, self.genes_]

    def fit(self, X, y=None):
        """Learn the gene selection and representation parameters from training counts ``X``.

        ``X`` may be a :class:`~sclinbench.represent.offset.RowSubset` of the counts of all
        cells (the training rows): HVG selection then reads the training rows in place.
        """
        params = self.resolved_params()
        rows = None
        if isinstance(X, RowSubset):
            X, rows = X.base, X.rows
        X = _as_counts(X, where=f"representation '{self.name}'")
        g = X.shape[1]
        self.n_features_in_ = g
        self.params_ = params
        if self.hvg is not None:
            self.genes_ = select_hvg(X, int(self.hvg), flavor=self.hvg_flavor, rows=rows)
        else:
            self.genes_ = np.arange(g)
        needs_counts = params.get("target_sum") == "median" or self.name == "pearson"
        if rows is not None and needs_counts:
            X = X[rows]
        n = X.shape[0] if rows is None else rows.shape[0]
        if "target_sum" in params:
            ts = params["target_sum"]
            if ts == "median":
                ts = float(np.median(library_size(X)))
                if ts <= 0:
                    raise SclinbenchError(
                        f"representation '{self.name}': target_sum 'median' is 0 (most training "
                        "cells have no counts); give a number"
                    )
            self.target_sum_ = float(ts)
        if self.name == "pearson":
            fractions = fit_gene_fractions(X)
            self.gene_fractions_ = fractions[self.genes_]
            n_unseen = int((self.gene_fractions_ == 0).sum())
            if n_unseen:
                log.warning(
                    "pearson: %d kept genes have no training counts; their residuals are set to 0",
                    n_unseen,
                )
            clip = params["clip"]
            if clip is None:
                self.clip_ = float(np.sqrt(n))
            elif clip is False:
                self.clip_ = None
            else:
                self.clip_ = float(clip)
            self.theta_ = float(params["theta"])
        return self

    def _all_genes(self) -> bool:
        return self.genes_.shape[0] == self.n_features_in_

    def transform(self, X):
        """Representation of counts ``X`` (same genes as in ``fit``) restricted to ``genes_``."""
        check_is_fitted(self, "genes_")
        X = _as_counts(X, where=f"representation '{self.name}'")
        if X.shape[1] != self.n_features_in_:
            raise SclinbenchError(
                f"representation '{self.name}': input has {X.shape[1]} genes, fitted on "
                f"{self.n_features_in_}; use the same gene space for train and test cells"
            )
        if self.name == "rankz":
            Z = rankz(X)
            return Z if self._all_genes() else Z.select_columns(self.genes_)
        lib = library_size(X)
        Xs = X if self._all_genes() else X[:, self.genes_]
        if self.name == "counts":
            return Xs.astype(np.float32)
        if self.name == "log1p":
            return shifted_log(Xs, self.target_sum_, self.params_["pseudocount"], library=lib)
        if self.name == "sqrt":
            return sqrt_norm(Xs, self.target_sum_, library=lib)
        return pearson_residuals(
            Xs,
            self.gene_fractions_,
            theta=self.theta_,
            clip=self.clip_,
            library=lib,
            max_dense_elements=self.max_dense_elements,
        )


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)
