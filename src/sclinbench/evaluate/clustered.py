"""One logistic regression per Leiden cluster of the training cells: the disease-state model of
Souza & Mehta 2026.

- :class:`LeidenLogisticRegression`  Leiden clusters of the training cells, a class-balanced
                                     logistic regression per cluster, test cells assigned to
                                     clusters by a cosine k-nearest-neighbour vote
- :func:`leiden_clusters`            the Leiden labels of the cells of one matrix (scanpy's kNN
                                     graph, igraph's Leiden)

The paper's infection pipeline ends in this model (``rankz -> ANOVA -> z-score -> PCA 220 ->
leiden_logreg``): cell states differ more than infected and uninfected cells of one state do, so
the infection signature is learnt within each state. The paper's code drops the test cells that
land in a cluster without a model; here no test cell is dropped: they are scored by one model
fitted on every training cell and counted (:meth:`LeidenLogisticRegression.fallback_mask`; the
predictions table's ``fallback`` column, the score stage's ``n_fallback``).
"""

from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError
from sclinbench.represent import MAX_DENSE_ELEMENTS, to_dense

log = logging.getLogger("sclinbench.evaluate.clustered")

#: The options of the config's ``model: {name: leiden_logreg}`` and their defaults (the paper's).
LEIDEN_LOGREG_OPTIONS = {"n_neighbors": 15, "resolution": 0.4, "assign_neighbors": 15, "min_cluster_cells": 5,
                         "C": 1.0, "max_iter": 1000, "tol": 1e-4}


def leiden_clusters(X: np.ndarray, n_neighbors: int = 15, resolution: float = 0.4,
                    random_state: int = 0) -> np.ndarray:
    """Leiden clusters of the rows of ``X`` (integer labels ``0..K-1``, 0 the largest cluster).

    The graph is scanpy's (``sc.pp.neighbors(n_neighbors, use_rep="X")``: euclidean kNN -- exact
    below 8,192 cells, pynndescent above, seeded -- with UMAP connectivities as edge weights),
    clustered by igraph's Leiden (``sc.tl.leiden(flavor="igraph", directed=False)``, modularity
    with ``resolution``, iterated until the partition is stable, seeded).
    """
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(np.asarray(X, dtype=np.float32))
    k = min(int(n_neighbors), adata.n_obs)
    # from 8,192 cells scanpy uses pynndescent: the same transformer, handing scanpy a csr_matrix
    transformer = _NNDescent(k, random_state) if adata.n_obs >= EXACT_KNN_BELOW else None
    sc.pp.neighbors(adata, n_neighbors=k, use_rep="X", random_state=random_state, transformer=transformer)
    sc.tl.leiden(adata, resolution=float(resolution), flavor="igraph", n_iterations=-1, directed=False,
                 random_state=random_state)
    return adata.obs["leiden"].astype(int).to_numpy()


#: Below this many cells scanpy's kNN graph is exact (brute force); from it, pynndescent.
EXACT_KNN_BELOW = 8192


class _NNDescent(BaseEstimator):
    """The pynndescent kNN transformer ``sc.pp.neighbors`` builds itself from 8,192 cells (UMAP's
    ``n_trees`` / ``n_iters`` for the number of cells, scanpy's ``n_jobs``), returning a ``csr_matrix``:
    pynndescent 0.7 returns a ``csr_array``, which scanpy 1.11.5 cannot read (no ``getnnz``)."""

    def __init__(self, n_neighbors: int = 15, random_state: int = 0):
        self.n_neighbors, self.random_state = n_neighbors, random_state

    def fit_transform(self, X, y=None):
        import scanpy as sc
        import scipy.sparse as sp
        from pynndescent import PyNNDescentTransformer

        n_obs = X.shape[0]
        inner = PyNNDescentTransformer(n_neighbors=self.n_neighbors, metric="euclidean", metric_kwds={},
                                       random_state=self.random_state, n_jobs=sc.settings.n_jobs,
                                       n_trees=min(64, 5 + round(n_obs ** 0.5 / 20.0)),
                                       n_iters=max(5, round(np.log2(n_obs))))
        return sp.csr_matrix(inner.fit_transform(X))


class LeidenLogisticRegression(ClassifierMixin, BaseEstimator):
    """A class-balanced logistic regression per Leiden cluster of the training cells.

    ``fit`` (training cells only):

    1. Leiden clusters of the training cells (:func:`leiden_clusters` with ``n_neighbors``,
       ``resolution``, ``random_state``);
    2. one ``LogisticRegression(class_weight="balanced", C, max_iter, tol)`` per cluster that has
       at least ``min_cluster_cells`` cells of at least two classes; other clusters get none;
    3. when some cluster has no model, one more logistic regression on every training cell (the
       fallback model).

    ``predict_proba`` assigns each cell to the cluster of the distance-weighted vote of its
    ``assign_neighbors`` nearest training cells by cosine distance (``KNeighborsClassifier(
    weights="distance", metric="cosine")`` on the training cells and their cluster labels) and
    scores it with the cluster's model, or the fallback model when the cluster has none
    (:meth:`fallback_mask`). A cluster model's probabilities fill the columns of its classes in
    :attr:`classes_` (the classes of all training cells); a class it was not trained on gets 0.

    Input: dense features (a PCA output); sparse or :class:`~sclinbench.represent.OffsetCSR`
    input is densified up to ``max_dense_elements``.

    Parameters
    ----------
    n_neighbors, resolution
        Neighbours of the kNN graph and Leiden resolution (the paper: 15, 0.4).
    assign_neighbors
        Training cells voting for a test cell's cluster (15; at most the number of training cells).
    min_cluster_cells
        Clusters with fewer training cells get no model (5).
    C, max_iter, tol
        Of every logistic regression (lbfgs, L2; non-convergence is logged).
    random_state
        Seed of the kNN graph, Leiden and the logistic regressions.
    max_dense_elements
        Largest ``n_cells * n_features`` densified.

    Attributes
    ----------
    classes_ : ndarray
        The training labels (sorted), the columns of ``predict_proba``.
    labels_ : ndarray (n_training_cells,)
        Leiden cluster of every training cell.
    n_clusters_ : int
    cluster_sizes_ : ndarray (n_clusters_,)
    cluster_models_ : list
        The fitted ``LogisticRegression`` of each cluster, ``None`` where the cluster has fewer
        than ``min_cluster_cells`` cells or one class.
    has_model_ : ndarray of bool (n_clusters_,)
    global_model_ : LogisticRegression or None
        The fallback model on every training cell; ``None`` when every cluster has a model.
    assigner_ : KNeighborsClassifier
        Cosine, distance-weighted vote over the training cells' clusters.
    converged_ : bool
        False if any logistic regression hit ``max_iter``.
    """

    def __init__(self, n_neighbors: int = 15, resolution: float = 0.4, assign_neighbors: int = 15,
                 min_cluster_cells: int = 5, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-4,
                 random_state: int | None = 0, max_dense_elements: int = MAX_DENSE_ELEMENTS):
        self.n_neighbors = n_neighbors
        self.resolution = resolution
        self.assign_neighbors = assign_neighbors
        self.min_cluster_cells = min_cluster_cells
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.max_dense_elements = max_dense_elements

    # ------------------------------------------------------------------ parameters
    def check_params(self) -> None:
        """Raise :class:`SclinbenchError` (naming the option) for an invalid parameter: the one
        place they are checked (``fit`` calls it; :func:`sclinbench.evaluate.models.build_model` too, so a
        bad config fails before any fold runs)."""
        def positive(key, integer):
            value = getattr(self, key)
            ok = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
            if isinstance(value, bool) or not ok or not value > 0:
                kind = "a positive integer" if integer else "a positive number"
                raise SclinbenchError(f"model 'leiden_logreg': {key} must be {kind}, got {value!r}")

        for key in ("n_neighbors", "assign_neighbors", "min_cluster_cells", "max_iter", "max_dense_elements"):
            positive(key, True)
        for key in ("resolution", "C", "tol"):
            positive(key, False)
        if self.n_neighbors < 2:
            raise SclinbenchError(f"model 'leiden_logreg': n_neighbors must be >= 2 (a kNN graph needs "
                                  f"neighbours), got {self.n_neighbors!r}")

    def _dense(self, X) -> np.ndarray:
        return np.asarray(to_dense(X, "model leiden_logreg", self.max_dense_elements), dtype=np.float64)

    def _logreg(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=float(self.C), class_weight="balanced", max_iter=int(self.max_iter),
                                  tol=float(self.tol), random_state=self.random_state)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        from sklearn.neighbors import KNeighborsClassifier

        self.check_params()
        X = self._dense(X)
        y = np.asarray(y)
        n = X.shape[0]
        if y.shape[0] != n:
            raise ValueError(f"X has {n} rows but y has {y.shape[0]} labels")
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise SclinbenchError(f"model 'leiden_logreg': the training cells have one class "
                                  f"({self.classes_[0] if self.classes_.size else 'none'}); it needs two")
        self.n_features_in_ = X.shape[1]
        self.labels_ = leiden_clusters(X, self.n_neighbors, self.resolution, self.random_state)
        self.n_clusters_ = int(self.labels_.max()) + 1
        self.cluster_sizes_ = np.bincount(self.labels_, minlength=self.n_clusters_)
        self.assigner_ = KNeighborsClassifier(n_neighbors=min(int(self.assign_neighbors), n), weights="distance",
                                              metric="cosine", algorithm="brute").fit(X, self.labels_)
        unconverged = 0
        models = []
        for c in range(self.n_clusters_):
            rows = np.flatnonzero(self.labels_ == c)
            if rows.size < self.min_cluster_cells or np.unique(y[rows]).size < 2:
                models.append(None)
                continue
            model, ok = self._fit_logreg(X[rows], y[rows])
            models.append(model)
            unconverged += not ok
        self.cluster_models_ = models
        self.has_model_ = np.array([m is not None for m in models], dtype=bool)
        self.global_model_ = None
        if not self.has_model_.all():
            self.global_model_, ok = self._fit_logreg(X, y)
            unconverged += not ok
        self.converged_ = unconverged == 0
        if unconverged:
            log.warning("leiden_logreg: %d logistic regression(s) did not converge in max_iter=%d iterations; "
                        "raise max_iter or standardize the features (scale: true)", unconverged, self.max_iter)
        without = self.cluster_sizes_[~self.has_model_]
        log.info("leiden_logreg: %d training cells in %d Leiden clusters (sizes %s); %d without a model "
                 "(< %d cells or one class; %d cells) -> fallback model on all training cells%s",
                 n, self.n_clusters_, ", ".join(map(str, self.cluster_sizes_)), without.size,
                 self.min_cluster_cells, int(without.sum()), "" if without.size else " not needed")
        return self

    def _fit_logreg(self, X, y):
        model = self._logreg()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X, y)
        ok = True
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                ok = False
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return model, ok

    # ------------------------------------------------------------------ predict
    def _checked(self, X) -> np.ndarray:
        check_is_fitted(self, "assigner_")
        X = self._dense(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, fitted on {self.n_features_in_}")
        return X

    def assign_clusters(self, X) -> np.ndarray:
        """The training cluster of every cell of ``X`` (cosine, distance-weighted vote of its
        ``assign_neighbors`` nearest training cells)."""
        return self._assign(self._checked(X))

    def _assign(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] == 0:
            return np.empty(0, dtype=self.labels_.dtype)
        return np.asarray(self.assigner_.predict(X))

    def fallback_mask(self, X) -> np.ndarray:
        """True for the cells of ``X`` whose cluster has no model: the fallback model scores them."""
        return ~self.has_model_[self.assign_clusters(X)]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (columns :attr:`classes_`) from the model of each cell's cluster
        (the fallback model where the cluster has none); 0 for a class that model lacks."""
        X = self._checked(X)
        clusters = self._assign(X)
        P = np.zeros((X.shape[0], self.classes_.size))
        for c in np.unique(clusters):
            rows = np.flatnonzero(clusters == c)
            model = self.cluster_models_[c] if self.has_model_[c] else self.global_model_
            cols = np.searchsorted(self.classes_, model.classes_)
            P[np.ix_(rows, cols)] = model.predict_proba(X[rows])
        return P

    def decision_function(self, X) -> np.ndarray:
        """Log-probabilities (``log predict_proba``; a class the cell's model lacks gets the log of
        the smallest positive float, finite)."""
        return np.log(np.maximum(self.predict_proba(X), np.finfo(np.float64).tiny))

    def predict(self, X) -> np.ndarray:
        """The most probable class (:meth:`predict_proba`)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
