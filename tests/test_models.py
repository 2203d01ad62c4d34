"""Centroid classifier (hand examples, OffsetCSR == dense), model factory, controls, novelty score."""

import logging

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.dummy import DummyClassifier
from synthetic_counts import nb_counts

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.models import (
    MODELS,
    CentroidClassifier,
    InputAdapter,
    ShuffledLabels,
    build_model,
)
from sclinbench.represent import ScaleClip, rankz, shifted_log

P_TRUE = np.array(
    [
        [4.0, 0, 0, 1, 0],  # class a
        [0, 3, 0, 1, 1],  # class b
        [0, 0, 5, 0, 2],  # class c
    ]
)
X_TRAIN = np.array(
    [
        [3.0, 0, 0, 1, 0],
        [5, 0, 0, 1, 0],
        [0, 2, 0, 1, 1],
        [0, 4, 0, 1, 1],
        [0, 0, 4, 0, 2],
        [0, 0, 6, 0, 2],
    ]
)
Y_TRAIN = np.array(["a", "a", "b", "b", "c", "c"])



# ------------------------------------------------------------------------------------------------
# centroid classifier
# ------------------------------------------------------------------------------------------------
def test_centroid_profiles_are_class_means_and_beta_recovers_mixture():
    clf = CentroidClassifier().fit(X_TRAIN, Y_TRAIN)
    assert list(clf.classes_) == ["a", "b", "c"]
    assert_allclose(clf.profiles_, P_TRUE)
    x = 0.7 * P_TRUE[0] + 0.3 * P_TRUE[2]
    assert_allclose(clf.decision_function(x[None, :]), [[0.7, 0.0, 0.3]], atol=1e-12)
    assert clf.predict(x[None, :])[0] == "a"
    assert clf.predict((0.2 * P_TRUE[0] + 0.5 * P_TRUE[1])[None, :])[0] == "b"


def test_centroid_beta_is_least_squares_for_points_off_the_span():
    clf = CentroidClassifier().fit(X_TRAIN, Y_TRAIN)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 5, size=(4, 5))
    beta_ref = np.linalg.lstsq(P_TRUE.T, x.T, rcond=None)[0].T
    # the same solution through the k x k Gram matrix
    beta_gram = np.linalg.solve(P_TRUE @ P_TRUE.T, P_TRUE @ x.T).T
    assert_allclose(clf.decision_function(x), beta_ref, atol=1e-12)
    assert_allclose(beta_ref, beta_gram, atol=1e-10)
    assert_allclose(clf.decision_function(sp.csr_matrix(x)), beta_ref, atol=1e-12)


def test_centroid_collinear_profiles_give_minimum_norm_solution(caplog):
    X = np.vstack([X_TRAIN, [[4.0, 3, 0, 2, 1]]])  # class d = a + b exactly
    y = np.append(Y_TRAIN, "d")
    with caplog.at_level(logging.WARNING, logger="sclinbench.evaluate.models"):
        clf = CentroidClassifier().fit(X, y)
    assert clf.rank_ == 3 and "linearly dependent" in caplog.text
    x = np.array([[1.0, 2, 3, 4, 5]])
    assert_allclose(clf.decision_function(x), (np.linalg.pinv(clf.profiles_.T) @ x.T).T, atol=1e-10)


def test_centroid_min_class_size_excludes_small_classes():
    X = np.vstack([X_TRAIN, [[0.0, 0, 0, 0, 9]]])
    y = np.append(Y_TRAIN, "rare")
    clf = CentroidClassifier(min_class_size=2).fit(X, y)
    assert list(clf.excluded_classes_) == ["rare"]
    assert list(clf.classes_) == ["a", "b", "c"]
    assert_allclose(clf.profiles_, P_TRUE)  # the excluded cell does not enter any profile
    assert "rare" not in set(clf.predict(X))
    with pytest.raises(SclinbenchError, match="min_class_size"):
        CentroidClassifier(min_class_size=10).fit(X, y)


def test_centroid_on_offsetcsr_equals_dense():
    X, y = nb_counts(seed=1)
    Z = rankz(X)
    D = Z.toarray()
    a = CentroidClassifier().fit(Z[:100], y[:100])
    b = CentroidClassifier().fit(D[:100], y[:100])
    assert_allclose(a.profiles_, b.profiles_, atol=1e-12)
    assert_allclose(a.decision_function(Z[100:]), b.decision_function(D[100:]), atol=1e-10)
    assert np.array_equal(a.predict(Z[100:]), b.predict(D[100:]))
    # on these well-separated types the centroid classifier is nearly perfect
    assert (a.predict(Z[100:]) == y[100:]).mean() > 0.9


# ------------------------------------------------------------------------------------------------
# build_model
# ------------------------------------------------------------------------------------------------
def _scaled_data(seed=2):
    X, y = nb_counts(seed=seed)
    L = shifted_log(X, 1e3)
    S = ScaleClip(10).fit(L[:100]).transform(L)
    return S[:100], y[:100], S[100:], y[100:]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_fits_and_predicts_known_classes(name):
    Xtr, ytr, Xte, yte = _scaled_data()
    model = build_model(name, {}, seed=0).fit(Xtr, ytr)
    pred = model.predict(Xte)
    assert pred.shape == (50,) and set(pred) <= set(ytr)
    acc = (pred == yte).mean()
    if name == "majority":
        assert set(pred) == {max(set(ytr), key=list(ytr).count)}
    else:
        assert acc > 0.8, (name, acc)


@pytest.mark.parametrize("name", ["logreg", "linear_svm", "ridge"])
def test_linear_models_are_class_balanced(name):
    m = build_model(name, {}, seed=0)
    assert m.estimator.class_weight == "balanced"


def test_logreg_with_inner_cv_chooses_C_from_grid_on_train_only():
    Xtr, ytr, _, _ = _scaled_data()
    m = build_model("logreg", {"C": "cv", "Cs": [0.01, 1.0], "cv_folds": 3}, seed=0).fit(Xtr, ytr)
    C = np.atleast_1d(m.estimator_.C_)[0]
    assert C in (0.01, 1.0)
    assert m.estimator_.scoring == "f1_macro"


def test_logreg_nonconvergence_is_logged(caplog):
    Xtr, ytr, _, _ = _scaled_data()
    with caplog.at_level(logging.WARNING, logger="sclinbench.evaluate.models"):
        m = build_model("logreg", {"max_iter": 1}, seed=0).fit(Xtr, ytr)
    assert m.converged_ is False
    assert "did not converge" in caplog.text and "max_iter=1" in caplog.text
    m2 = build_model("logreg", {}, seed=0).fit(Xtr, ytr)
    assert m2.converged_ is True


def test_build_model_errors_name_the_key():
    with pytest.raises(SclinbenchError, match="model name 'xgboost' is unknown; valid: logreg"):
        build_model("xgboost", {}, 0)
    with pytest.raises(SclinbenchError, match="model 'logreg' has no option 'gamma' \\(its options: C"):
        build_model("logreg", {"gamma": 1}, 0)
    with pytest.raises(SclinbenchError, match="C must be a positive number"):
        build_model("logreg", {"C": -1}, 0)
    with pytest.raises(SclinbenchError, match="n_neighbors"):
        build_model("knn", {"n_neighbors": 0}, 0)


def test_offsetcsr_is_densified_below_cap_and_refused_above():
    X, y = nb_counts(seed=3)
    Z = rankz(X)
    a = build_model("logreg", {}, 0).fit(Z[:100], y[:100])
    b = build_model("logreg", {}, 0).fit(Z[:100].toarray(), y[:100])
    assert_allclose(a.estimator_.coef_, b.estimator_.coef_)
    assert np.array_equal(a.predict(Z[100:]), b.predict(Z[100:].toarray()))
    with pytest.raises(SclinbenchError, match="reduction: {method: pca}"):
        build_model("logreg", {"max_dense_elements": 1000}, 0).fit(Z[:100], y[:100])
    # LDA needs dense input: CSR is densified too, and refused above the cap
    build_model("lda", {}, 0).fit(X[:100], y[:100])
    with pytest.raises(SclinbenchError, match="LinearDiscriminantAnalysis"):
        build_model("lda", {"max_dense_elements": 1000}, 0).fit(X[:100], y[:100])
    # the majority baseline never looks at the features, so never densifies
    m = InputAdapter(DummyClassifier(strategy="most_frequent"), "none", max_dense_elements=1).fit(Z[:100], y[:100])
    assert build_model("majority", {}, 0).input_kind == "none"
    assert m.predict(Z[100:]).shape == (50,)


def test_input_adapter_exposes_only_what_the_estimator_has():
    from sklearn.svm import LinearSVC

    ad = InputAdapter(LinearSVC())
    assert not hasattr(ad, "predict_proba") and hasattr(ad, "decision_function")


# ------------------------------------------------------------------------------------------------
# shuffled-labels control
# ------------------------------------------------------------------------------------------------
def test_shuffled_labels_fits_on_a_seeded_permutation():
    X, y = nb_counts(seed=4)
    Z = rankz(X)
    ctrl = ShuffledLabels(CentroidClassifier(), random_state=7).fit(Z, y)
    perm = ctrl.permutation_
    assert sorted(perm) == list(range(len(y))) and not np.array_equal(perm, np.arange(len(y)))
    ref = CentroidClassifier().fit(Z, y[perm])
    assert_allclose(ctrl.estimator_.profiles_, ref.profiles_)
    assert np.array_equal(ShuffledLabels(CentroidClassifier(), random_state=7).fit(Z, y).permutation_, perm)
    assert not np.array_equal(ShuffledLabels(CentroidClassifier(), random_state=8).fit(Z, y).permutation_, perm)
    # the control carries no signal: accuracy near chance, far below the real classifier
    real = (CentroidClassifier().fit(Z[:100], y[:100]).predict(Z[100:]) == y[100:]).mean()
    shuf = (ShuffledLabels(CentroidClassifier(), 0).fit(Z[:100], y[:100]).predict(Z[100:]) == y[100:]).mean()
    assert real - shuf > 0.4


def test_linear_svm_with_inner_cv():
    Xtr, ytr, Xte, yte = _scaled_data()
    m = build_model("linear_svm", {"C": "cv", "Cs": [0.01, 1.0]}, seed=0)
    m.fit(Xtr, ytr)
    assert m.estimator_.best_params_["C"] in (0.01, 1.0)
    assert m.estimator_.scoring == "f1_macro"
    assert (m.predict(Xte) == yte).mean() > 0.8


def test_every_model_declares_a_family_and_knn_is_not_linear():
    from sclinbench.evaluate.models import FAMILIES, MODEL_FAMILIES, MODELS, model_family

    assert set(MODEL_FAMILIES) == set(MODELS)
    assert set(MODEL_FAMILIES.values()) <= set(FAMILIES)
    assert model_family("knn") == "nonlinear" and model_family("majority") == "baseline"
    assert {m for m, f in MODEL_FAMILIES.items() if f == "linear"} == {"logreg", "linear_svm", "ridge", "lda",
                                                                      "centroid"}


def test_control_seeds_differ_per_fold_and_repeat():
    from sclinbench.evaluate.models import control_seed

    seeds = {control_seed(0, f, r) for f in range(5) for r in range(5)}
    assert len(seeds) == 25
    assert control_seed(3, 1, 2) == control_seed(3, 1, 2) != control_seed(4, 1, 2)


# ------------------------------------------------------------------------------------------------
# the paper's cross-species basis: rankz of pseudobulk library fractions
# ------------------------------------------------------------------------------------------------
def _hand_rankz(v: np.ndarray) -> np.ndarray:
    """One profile by hand: average ranks over all genes -> Phi^-1(rank / (G + 1)) -> unit L2 norm."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    z = ndtri(rankdata(v) / (v.size + 1))
    return z / np.linalg.norm(z)


def test_pseudobulk_rankz_basis_equals_a_hand_computation():
    counts = np.array([
        [3.0, 0, 1, 0, 6, 0],     # a
        [10, 2, 0, 0, 8, 0],      # a  (a larger library: fractions, not counts, are averaged)
        [0, 4, 0, 2, 1, 1],       # b
        [0, 1, 0, 1, 0, 0],       # b
        [1, 0, 5, 0, 0, 3],       # c
    ])
    y = np.array(["a", "a", "b", "b", "c"])
    model = build_model("centroid", {"basis": "pseudobulk_rankz"}).fit(sp.csr_matrix(counts), y)
    fractions = counts / counts.sum(axis=1, keepdims=True)
    pseudobulk = np.vstack([fractions[y == c].mean(axis=0) for c in ("a", "b", "c")])
    basis = np.vstack([_hand_rankz(p) for p in pseudobulk])
    assert_allclose(model.pseudobulk_, pseudobulk, rtol=1e-12)
    assert_allclose(model.profiles_, basis, rtol=1e-6, atol=1e-7)
    # not the class mean of the counts (nor of the rankz'd cells): the option changes the basis
    assert not np.allclose(model.pseudobulk_[0], counts[:2].mean(axis=0) / counts[:2].mean(axis=0).sum())
    plain = CentroidClassifier().fit(rankz(sp.csr_matrix(counts)), y)
    assert not np.allclose(plain.profiles_, basis, atol=1e-3)
    # cells: rankz'd one by one, decomposed on the basis by least squares
    query = np.array([[2.0, 0, 3, 0, 0, 1], [0, 3, 0, 2, 0, 0], [4, 1, 0, 0, 5, 0]])
    cells = np.vstack([_hand_rankz(q) for q in query])
    beta = np.linalg.lstsq(basis.T, cells.T, rcond=None)[0].T
    assert_allclose(model.decision_function(sp.csr_matrix(query)), beta, rtol=1e-5, atol=1e-6)
    assert list(model.predict(sp.csr_matrix(query))) == ["c", "b", "a"]


def test_pseudobulk_rankz_basis_takes_counts_only():
    from sclinbench.evaluate.pipeline import build_pipeline
    from sclinbench.evaluate.spec import PipelineSpec

    def normalize_spec(entry):
        return PipelineSpec.from_config("pipeline", entry).canonical()
    from sclinbench.tool.portable import LinearScorer

    spec = {"representation": {"name": "counts"}, "model": {"name": "centroid", "basis": "pseudobulk_rankz"}}
    assert normalize_spec(spec)["model"] == {"name": "centroid", "min_class_size": 1, "basis": "pseudobulk_rankz"}
    X, y = nb_counts(seed=3)
    pipe = build_pipeline(spec).fit(X[:100], y[:100])
    assert (pipe.predict(X[100:]) == y[100:]).mean() > 0.9
    for other in ({"representation": {"name": "rankz"}}, {"scale": True},
                  {"reduction": {"method": "pca", "n_components": 5}}):
        with pytest.raises(SclinbenchError, match="basis pseudobulk_rankz builds its profiles from raw counts"):
            normalize_spec({**spec, **other})
    with pytest.raises(SclinbenchError, match="basis must be one of cells, pseudobulk_rankz"):
        build_model("centroid", {"basis": "means"})
    with pytest.raises(SclinbenchError, match="expected raw counts"):
        build_model("centroid", {"basis": "pseudobulk_rankz"}).fit(rankz(X[:100]), y[:100])
    with pytest.raises(SclinbenchError, match="a model file cannot hold"):
        LinearScorer.from_estimator(pipe.named_steps["model"])


def test_library_fractions_scale_one_copy_to_the_numbers_of_the_diagonal_product():
    """The pseudobulk basis divides each training cell by its library size in one float64 copy
    of the values (scaled in place): exactly the numbers of ``diags(1 / library) @ X`` on real
    lavage counts, a cell without counts staying zero, and a row view giving its rows'."""
    import scanpy as sc

    from sclinbench.evaluate.models import _library_fractions
    from sclinbench.represent.offset import RowSubset
    from tests.conftest import REPO

    X = sp.csr_matrix(sc.read_10x_h5(REPO / "tests/data/liao2020/C146_subset_filtered_feature_bc_matrix.h5").X,
                      dtype=np.float32)
    X = sp.vstack([X, sp.csr_matrix((1, X.shape[1]), dtype=np.float32)], format="csr")  # a cell without counts
    lib = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(1.0, lib, out=np.zeros_like(lib), where=lib > 0)
    expected = sp.csr_matrix(sp.diags(scale) @ X.astype(np.float64))
    got = _library_fractions(X)
    assert got.dtype == np.float64 and X.dtype == np.float32  # the input is not changed
    np.testing.assert_array_equal(got.toarray(), expected.toarray())
    assert got[-1].nnz == 0 or not got[-1].toarray().any()
    rows = np.arange(0, X.shape[0], 3)
    np.testing.assert_array_equal(_library_fractions(RowSubset(X, rows)).toarray(), expected[rows].toarray())
