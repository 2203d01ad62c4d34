"""Classifiers: the training-free centroid classifier, sklearn linear models, controls.

- :class:`CentroidClassifier`  class-mean profiles + least-squares decomposition of each cell
- :func:`build_model`          config name + params -> estimator (see :data:`MODELS`)
- :class:`InputAdapter`        lets any sklearn classifier take :class:`~sclinbench.represent.OffsetCSR`
                               input (dense copy below a size limit) and logs non-convergence
- :class:`ShuffledLabels`      control: fit the wrapped estimator on permuted training labels
- :data:`MODEL_FAMILIES`       every model's family (linear / piecewise_linear / nonlinear /
                               baseline): tables of "linear" pipelines only ever show the linear family
- :func:`control_seed`         the seed of one shuffled-label draw (seed, fold, repeat)

All estimators follow the scikit-learn contract (state set in ``fit``, fitted attributes end in ``_``).
"""

from __future__ import annotations

import inspect
import logging
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from sclinbench.errors import SclinbenchError, refuse_foreign_options
from sclinbench.evaluate.clustered import LEIDEN_LOGREG_OPTIONS, LeidenLogisticRegression
from sclinbench.represent import MAX_DENSE_ELEMENTS, OffsetCSR, to_dense
from sclinbench.represent.offset import RowSubset

log = logging.getLogger("sclinbench.evaluate.models")

_DENSE = {"max_dense_elements": MAX_DENSE_ELEMENTS}  # models that may be handed a dense copy
#: Model names understood by :func:`build_model` and their options (defaults): the one definition
#: the config schema is tested against. An option of another model is an error.
MODELS: dict[str, dict] = {
    "logreg": {"C": 1.0, "max_iter": 1000, "tol": 1e-4, "Cs": [0.001, 0.01, 0.1, 1.0, 10.0], "cv_folds": 3,
               **_DENSE},
    "linear_svm": {"C": 1.0, "max_iter": 5000, "Cs": [0.001, 0.01, 0.1, 1.0, 10.0], "cv_folds": 3, **_DENSE},
    "ridge": {"alpha": 1.0, **_DENSE},
    "lda": {"shrinkage": "auto", **_DENSE},
    "centroid": {"min_class_size": 1, "basis": "cells"},
    "knn": {"n_neighbors": 5, "weights": "uniform", "metric": "euclidean", **_DENSE},
    "majority": {},
    "leiden_logreg": {**LEIDEN_LOGREG_OPTIONS, **_DENSE},
}

#: The family of every model of :data:`MODELS`. ``linear``: decision boundaries linear in the
#: (represented) features -- the centroid classifier's least-squares coefficients are a linear map
#: of the cell; ``piecewise_linear``: one linear model per region of the feature space
#: (``leiden_logreg``: a logistic regression per Leiden cluster, regions from a kNN vote -- not
#: linear overall); ``nonlinear``: kNN; ``baseline``: ignores the features (majority class).
MODEL_FAMILIES: dict[str, str] = {
    "logreg": "linear", "linear_svm": "linear", "ridge": "linear", "lda": "linear",
    "centroid": "linear", "knn": "nonlinear", "majority": "baseline", "leiden_logreg": "piecewise_linear",
}
FAMILIES = ("linear", "piecewise_linear", "nonlinear", "baseline")

#: Models whose class scores carry no information about the cell: their predictions get one
#: constant score for every class and cell (so any AUROC of them is 0.5 by definition, also when
#: folds are pooled -- a per-fold constant would otherwise rank whole folds against each other).
CONSTANT_SCORE_MODELS = ("majority",)


def model_family(name: str) -> str:
    """The family (:data:`FAMILIES`) of a model name of :data:`MODELS`."""
    if name not in MODEL_FAMILIES:
        raise SclinbenchError(f"model name '{name}' is unknown; valid: {', '.join(MODEL_FAMILIES)}")
    return MODEL_FAMILIES[name]


def control_seed(seed: int, fold: int, repeat: int) -> int:
    """Seed of the label permutation of one fold and repeat of a shuffled-label control.

    Derived from all three numbers (``numpy.random.SeedSequence``), so every fold and every repeat
    draws its own permutation and the draws do not depend on which other folds or repeats run.
    """
    return int(np.random.SeedSequence([int(seed), int(fold), int(repeat)]).generate_state(1)[0])


# --------------------------------------------------------------------------------------------------
# centroid classifier
# --------------------------------------------------------------------------------------------------
def _class_means(X, codes: np.ndarray, k: int) -> np.ndarray:
    """k x n_features matrix of per-class means of the rows of X (CSR / OffsetCSR / RowSubset / dense)."""
    n = X.shape[0]
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    A = sp.csr_matrix((1.0 / counts[codes], (codes, np.arange(n))), shape=(k, n))
    if isinstance(X, (OffsetCSR, RowSubset)):
        return X.rdot(A)
    if sp.issparse(X):
        return np.asarray((A @ sp.csr_matrix(X)).toarray(), dtype=np.float64)
    return np.asarray(A @ np.asarray(X, dtype=np.float64))


def _linear_scores(X, W: np.ndarray) -> np.ndarray:
    """``X @ W`` for CSR / OffsetCSR / RowSubset / dense X and dense W."""
    if isinstance(X, (OffsetCSR, RowSubset)):
        return X.dot(W)
    if sp.issparse(X):
        return np.asarray(sp.csr_matrix(X) @ W)
    return np.asarray(X, dtype=np.float64) @ W


#: How :class:`CentroidClassifier` builds its class profiles (model option ``basis``).
CENTROID_BASES = ("cells", "pseudobulk_rankz")


def _library_fractions(X) -> sp.csr_matrix:
    """Rows of raw counts divided by their library size (cells without counts stay zero)."""
    from sclinbench.represent.normalize import _as_counts

    if isinstance(X, RowSubset):
        X = X.materialize()
    X = _as_counts(X, where="model 'centroid' (basis pseudobulk_rankz)")
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).reshape(-1)
    scale = np.divide(1.0, lib, out=np.zeros_like(lib), where=lib > 0)
    # one float64 copy of the values, scaled in place (the products of diags(scale) @ X, without
    # its two further copies); the index arrays are shared with X, which is only read
    data = X.data.astype(np.float64)
    data *= np.repeat(scale, np.diff(X.indptr))
    return sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape, copy=False)


class CentroidClassifier(ClassifierMixin, BaseEstimator):
    """Training-free centroid classifier (Souza & Mehta 2026).

    Class profiles ``P`` (k x G) are the means of the training cells of each class. A cell ``x`` is
    decomposed on the profiles by least squares, ``beta = argmin ||x - P^T beta||_2``, and assigned
    to the class with the largest coefficient. ``decision_function`` returns ``beta``.

    The least-squares solution is ``beta = pinv(P^T) x``, computed once in ``fit`` from the thin SVD
    of ``P^T`` (the same solution as solving with the k x k Gram matrix ``P P^T``, but with the
    condition number of ``P`` rather than its square); singular values below
    ``rcond * s_max`` are dropped (minimum-norm solution, no ridge). Prediction is then one
    product ``X @ coef_.T``, which for :class:`~sclinbench.represent.OffsetCSR` input is
    ``S coef_.T + offset (1^T coef_.T)`` -- no densifying.

    ``basis="pseudobulk_rankz"`` is the basis of Souza & Mehta's cross-species transfer: the model
    takes raw counts (pipeline ``representation: {name: counts}``); a class profile is the rankz
    (:func:`~sclinbench.represent.rankz`) of the class's pseudobulk -- the mean over its training
    cells of counts / library size -- and each cell is rankz'd (over the same genes) before the
    decomposition. Both are per-class / per-cell transforms of training or test rows only.

    Parameters
    ----------
    min_class_size
        Classes with fewer training cells are excluded (never predicted) and listed in
        ``excluded_classes_``.
    rcond
        Relative cutoff for small singular values of ``P``; default ``max(G, k) * eps``.
    basis
        ``"cells"``: profiles are the class means of the input rows (default);
        ``"pseudobulk_rankz"``: see above (input: raw counts).

    Attributes
    ----------
    classes_ : ndarray
        Classes kept (columns of ``decision_function``).
    excluded_classes_ : ndarray
        Classes with fewer than ``min_class_size`` training cells.
    profiles_ : ndarray (k, G)
        Class profiles (the class means; ``pseudobulk_rankz``: the rankz of each class's mean
        library fractions, which are ``pseudobulk_``).
    coef_ : ndarray (k, G)
        ``pinv(P^T)``: ``beta = X @ coef_.T``.
    rank_ : int
        Numerical rank of ``P``.
    class_counts_ : ndarray
        Training cells per kept class.
    """

    def __init__(self, min_class_size: int = 1, rcond: float | None = None, basis: str = "cells"):
        self.min_class_size = min_class_size
        self.rcond = rcond
        self.basis = basis

    def _check_basis(self) -> None:
        if self.basis not in CENTROID_BASES:
            raise SclinbenchError(f"model 'centroid': basis must be one of {', '.join(CENTROID_BASES)}, "
                                  f"got {self.basis!r}")

    def fit(self, X, y):
        self._check_basis()
        y = np.asarray(y)
        n, g = X.shape
        if y.shape[0] != n:
            raise ValueError(f"X has {n} rows but y has {y.shape[0]} labels")
        rows, codes = self.training_codes(y)
        Xk = X if rows.size == n else X[rows]
        if self.basis == "pseudobulk_rankz":
            Xk = _library_fractions(Xk)
        return self.fit_class_means(_class_means(Xk, codes, self.classes_.size), g)

    def training_codes(self, y) -> tuple[np.ndarray, np.ndarray]:
        """The first half of :meth:`fit`, which needs only the labels: sets ``classes_``,
        ``class_counts_`` and ``excluded_classes_``; returns the rows of ``y`` that enter the class
        means and their class codes (positions in ``classes_``).

        :meth:`fit` is ``training_codes`` + the class means of those rows +
        :meth:`fit_class_means`; a caller that accumulates the means itself (over blocks of rows
        read from disk or in memory, :class:`sclinbench.evaluate.plans.ViewTarget`) calls the two halves.
        """
        if not (isinstance(self.min_class_size, numbers.Integral) and self.min_class_size >= 1):
            raise SclinbenchError(
                f"model 'centroid': min_class_size must be an integer >= 1, got {self.min_class_size!r}"
            )
        y = np.asarray(y)
        labels, counts = np.unique(y, return_counts=True)
        keep = counts >= self.min_class_size
        self.excluded_classes_ = labels[~keep]
        if not keep.any():
            raise SclinbenchError(
                f"model 'centroid': no class has >= min_class_size={self.min_class_size} training cells; "
                "lower min_class_size"
            )
        if self.excluded_classes_.size:
            log.info("centroid: excluded %d classes below %d cells: %s", self.excluded_classes_.size,
                     self.min_class_size, ", ".join(map(str, self.excluded_classes_)))
        self.classes_ = labels[keep]
        self.class_counts_ = counts[keep]
        rows = np.flatnonzero(np.isin(y, self.classes_))
        return rows, np.searchsorted(self.classes_, y[rows])

    def fit_class_means(self, P: np.ndarray, n_features: int):
        """The second half of :meth:`fit`: the least-squares solution of the class means ``P``
        (``classes_`` x features, from the rows and codes of :meth:`training_codes`; for
        ``basis="pseudobulk_rankz"`` the class means of the library fractions, rankz'd here)."""
        self._check_basis()
        self.n_features_in_ = int(n_features)
        P = np.asarray(P, dtype=np.float64)
        if self.basis == "pseudobulk_rankz":
            from sclinbench.represent.rank import rankz

            self.pseudobulk_ = P
            P = rankz(sp.csr_matrix(P), dtype=np.float64).toarray()
        self.profiles_ = P
        U, s, Vt = np.linalg.svd(P.T, full_matrices=False)  # P^T = U diag(s) Vt
        rcond = self.rcond if self.rcond is not None else max(P.shape) * np.finfo(np.float64).eps
        good = s > rcond * (s[0] if s.size else 0.0)
        self.rank_ = int(good.sum())
        if self.rank_ < P.shape[0]:
            log.warning(
                "centroid: class profiles are linearly dependent (rank %d < %d classes); using the "
                "minimum-norm least-squares solution. This is expected after mean-centering steps "
                "(scale, pca): the size-weighted class means then sum to zero",
                self.rank_, P.shape[0],
            )
        # pinv(P^T) = Vt^T diag(1/s) U^T  (k x G)
        self.coef_ = (Vt[good].T / s[good]) @ U[:, good].T
        return self

    def decision_function(self, X) -> np.ndarray:
        """Least-squares coefficients ``beta`` (n_cells x n_classes)."""
        check_is_fitted(self, "coef_")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, fitted on {self.n_features_in_}")
        if self.basis == "pseudobulk_rankz":  # raw counts in: each cell rankz'd on its own
            from sclinbench.represent.rank import rankz

            X = rankz(X.materialize() if isinstance(X, RowSubset) else X)
        return _linear_scores(X, self.coef_.T)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


# --------------------------------------------------------------------------------------------------
# wrappers
# --------------------------------------------------------------------------------------------------
def _estimator_has(attr):
    def check(self):
        est = getattr(self, "estimator_", self.estimator)
        return hasattr(est, attr)

    return check


class _FittedDelegate(ClassifierMixin, BaseEstimator):
    """Predictions of a wrapper come from its fitted ``estimator_`` on ``self._input(X)``."""

    def _input(self, X):
        return X

    @property
    def classes_(self):
        return self.estimator_.classes_

    def predict(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self._input(X))

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self._input(X))

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(self._input(X))


class InputAdapter(_FittedDelegate):
    """Give a scikit-learn classifier the input it can take, and log non-convergence.

    Parameters
    ----------
    estimator
        An unfitted scikit-learn classifier.
    input_kind
        ``"sparse"``: CSR and dense pass through, :class:`~sclinbench.represent.OffsetCSR` is
        densified; ``"dense"``: CSR and OffsetCSR are densified (e.g. LDA); ``"none"``: the
        estimator ignores features (majority baseline), it gets one zero column.
        Densifying is refused above ``max_dense_elements`` with a :class:`SclinbenchError` that
        tells the user to add a reduction or feature selection.
    max_dense_elements
        Largest ``n_cells * n_features`` densified.

    Attributes
    ----------
    estimator_
        The fitted clone of ``estimator``.
    converged_ : bool
        False if the estimator raised a ``ConvergenceWarning`` (also logged as a warning).
    classes_ : ndarray
    """

    def __init__(self, estimator, input_kind: str = "sparse", max_dense_elements: int = MAX_DENSE_ELEMENTS):
        self.estimator = estimator
        self.input_kind = input_kind
        self.max_dense_elements = max_dense_elements

    def _input(self, X):
        name = type(self.estimator).__name__
        if self.input_kind == "none":
            return np.zeros((X.shape[0], 1))
        if self.input_kind == "dense":
            return to_dense(X, f"model {name}", self.max_dense_elements)
        if isinstance(X, OffsetCSR):
            return to_dense(X, f"model {name}", self.max_dense_elements)
        return X

    def fit(self, X, y):
        if self.input_kind not in ("sparse", "dense", "none"):
            raise ValueError(f"input_kind must be sparse, dense or none, got {self.input_kind!r}")
        self.n_features_in_ = X.shape[1]
        Xi = self._input(X)
        est = clone(self.estimator)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            est.fit(Xi, y)
        self.converged_ = True
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                self.converged_ = False
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if not self.converged_:
            log.warning(
                "model %s did not converge in max_iter=%s iterations on %d x %d inputs; raise max_iter "
                "or standardize the features (scale: {max_value: 10})",
                type(est).__name__, getattr(est, "max_iter", "?"), X.shape[0], X.shape[1],
            )
        self.estimator_ = est
        return self


class ShuffledLabels(_FittedDelegate):
    """Control: fit ``estimator`` on a seeded permutation of the training labels.

    Any score it reaches above chance comes from class frequencies, not from the features; a
    pipeline should beat it by a wide margin.

    Parameters
    ----------
    estimator
        Unfitted classifier (any of :func:`build_model`).
    random_state
        Seed of the permutation.

    Attributes
    ----------
    estimator_
        Fitted clone of ``estimator``.
    permutation_ : ndarray
        The permutation applied to ``y``.
    """

    def __init__(self, estimator, random_state: int | None = 0):
        self.estimator = estimator
        self.random_state = random_state

    def fit(self, X, y):
        y = np.asarray(y)
        self.n_features_in_ = X.shape[1]
        self.permutation_ = np.random.default_rng(self.random_state).permutation(y.shape[0])
        self.estimator_ = clone(self.estimator).fit(X, y[self.permutation_])
        return self


# --------------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------------
def _resolve_params(name: str, params: dict | None) -> dict:
    """Defaults of ``name`` updated with ``params``; an option ``name`` does not have is an error
    (naming the models it belongs to), never silently ignored."""
    if name not in MODELS:
        raise SclinbenchError(f"model name '{name}' is unknown; valid: {', '.join(MODELS)}")
    given = dict(params or {})
    refuse_foreign_options(MODELS, "model", name, given)
    return {**MODELS[name], **given}


def _positive(name: str, key: str, value, integer: bool = False):
    ok = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise SclinbenchError(f"model '{name}': {key} must be {kind}, got {value!r}")
    return value


def _check_Cs(name: str, Cs) -> list[float]:
    if not (isinstance(Cs, (list, tuple)) and Cs and all(
        isinstance(c, numbers.Real) and not isinstance(c, bool) and c > 0 for c in Cs
    )):
        raise SclinbenchError(f"model '{name}': Cs must be a list of positive numbers, got {Cs!r}")
    return [float(c) for c in Cs]


def _logreg_cv(p: dict, seed: int):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    kwargs = dict(
        Cs=_check_Cs("logreg", p["Cs"]),
        cv=StratifiedKFold(_positive("logreg", "cv_folds", p["cv_folds"], integer=True), shuffle=True,
                           random_state=seed),
        scoring="f1_macro",
        class_weight="balanced",
        max_iter=int(p["max_iter"]),
        tol=float(p["tol"]),
        random_state=seed,
    )
    sig = inspect.signature(LogisticRegressionCV).parameters
    if "l1_ratios" in sig:
        kwargs["l1_ratios"] = (0.0,)
    if "use_legacy_attributes" in sig:
        kwargs["use_legacy_attributes"] = False
    return LogisticRegressionCV(**kwargs)


def build_model(name: str, params: dict | None = None, seed: int = 0):
    """Classifier for a config ``model:`` entry.

    Parameters
    ----------
    name
        One of :data:`MODELS`:

        - ``logreg``: multinomial L2 logistic regression (lbfgs), ``class_weight="balanced"``;
          ``C`` a number, or ``C: "cv"`` to choose C from ``Cs`` by ``cv_folds``-fold stratified
          inner CV (macro F1) on the training cells only (``LogisticRegressionCV``);
          ``max_iter`` (1000) -- non-convergence is logged as a warning.
        - ``linear_svm``: ``LinearSVC`` (``C``, balanced; ``C: "cv"`` picks C from ``Cs`` by
          inner stratified CV on the training cells, ``GridSearchCV``).
        - ``ridge``: ``RidgeClassifier`` (``alpha``, balanced).
        - ``lda``: ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")`` (dense input:
          use after PCA or feature selection).
        - ``centroid``: :class:`CentroidClassifier` (``min_class_size``; ``basis``: ``cells``, or
          ``pseudobulk_rankz`` -- the paper's cross-species basis, on raw counts).
        - ``knn``: ``KNeighborsClassifier`` (``n_neighbors`` 5, ``weights``, ``metric``).
        - ``majority``: ``DummyClassifier(strategy="most_frequent")``.
        - ``leiden_logreg``: :class:`~sclinbench.evaluate.clustered.LeidenLogisticRegression`, a
          class-balanced logistic regression per Leiden cluster of the training cells
          (``n_neighbors`` 15, ``resolution`` 0.4, ``assign_neighbors`` 15,
          ``min_cluster_cells`` 5, ``C``, ``max_iter``, ``tol``; Souza & Mehta's disease model).

        Every model except ``centroid`` and ``leiden_logreg`` is wrapped in :class:`InputAdapter` (``max_dense_elements``
        sets the densifying limit of those that may densify).
    params
        Model options (the ``model:`` entry without ``name``), see :data:`MODELS`; an option the
        model does not have raises :class:`SclinbenchError`.
    seed
        Seed for estimators with randomness (inner CV folds, LinearSVC).

    Returns
    -------
    An unfitted scikit-learn classifier.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC

    p = _resolve_params(name, params)
    if name == "centroid":
        if p["basis"] not in CENTROID_BASES:
            raise SclinbenchError(f"model 'centroid': basis must be one of {', '.join(CENTROID_BASES)}, "
                                  f"got {p['basis']!r}")
        return CentroidClassifier(min_class_size=p["min_class_size"], basis=p["basis"])
    if name == "leiden_logreg":  # densifies its own input (up to max_dense_elements)
        est = LeidenLogisticRegression(**p, random_state=seed)
        est.check_params()
        return est
    if name == "majority":  # ignores the features: never densifies
        return InputAdapter(DummyClassifier(strategy="most_frequent"), "none")
    cap = _positive(name, "max_dense_elements", p["max_dense_elements"], integer=True)
    if name == "logreg":
        _positive(name, "max_iter", p["max_iter"], integer=True)
        _positive(name, "tol", p["tol"])
        if p["C"] == "cv":
            est = _logreg_cv(p, seed)
        else:
            est = LogisticRegression(
                C=float(_positive(name, "C", p["C"])),
                class_weight="balanced",
                max_iter=int(p["max_iter"]),
                tol=float(p["tol"]),
                random_state=seed,
            )
        return InputAdapter(est, "sparse", cap)
    if name == "linear_svm":
        svc = LinearSVC(
            C=1.0 if p["C"] == "cv" else float(_positive(name, "C", p["C"])),
            class_weight="balanced",
            max_iter=int(_positive(name, "max_iter", p["max_iter"], integer=True)),
            random_state=seed,
        )
        if p["C"] == "cv":
            from sklearn.model_selection import GridSearchCV, StratifiedKFold

            Cs = _check_Cs(name, p["Cs"])
            folds = _positive(name, "cv_folds", p["cv_folds"], integer=True)
            svc = GridSearchCV(svc, {"C": Cs}, scoring="f1_macro",
                               cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
        return InputAdapter(svc, "sparse", cap)
    if name == "ridge":
        return InputAdapter(
            RidgeClassifier(alpha=float(_positive(name, "alpha", p["alpha"])), class_weight="balanced"),
            "sparse", cap,
        )
    if name == "lda":
        shrink = p["shrinkage"]
        if not (shrink == "auto" or shrink is None or (isinstance(shrink, numbers.Real) and 0 <= shrink <= 1)):
            raise SclinbenchError(f"model 'lda': shrinkage must be 'auto', null or in [0, 1], got {shrink!r}")
        return InputAdapter(LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrink), "dense", cap)
    if name == "knn":
        est = KNeighborsClassifier(
            n_neighbors=int(_positive(name, "n_neighbors", p["n_neighbors"], integer=True)),
            weights=p["weights"],
            metric=p["metric"],
        )
        return InputAdapter(est, "sparse", cap)
    raise AssertionError(f"model {name!r} of MODELS has no estimator")
