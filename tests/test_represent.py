"""Normalizations, OffsetCSR, HVG/ANOVA/scale/PCA transformers: hand-computed and reference checks."""

import logging

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from scipy.special import ndtri
from scipy.stats import rankdata

from sclinbench.errors import SclinbenchError
from sclinbench.represent import (
    AnovaSelector,
    OffsetCSR,
    PCATransformer,
    RepresentationTransformer,
    ScaleClip,
    column_mean_var,
    f_classif_any,
    fit_gene_fractions,
    library_size,
    normalize_total,
    pearson_residuals,
    rankz,
    select_hvg,
    shifted_log,
    sqrt_norm,
    to_dense,
)

# 3 cells x 4 genes; library sizes 3, 6, 10
X34 = np.array([[0, 2, 0, 1], [3, 3, 0, 0], [1, 2, 3, 4]], dtype=np.float32)


def nb_counts(n_cells=120, n_genes=60, n_types=3, seed=0, markers_per_type=4):
    """Seeded negative-binomial counts with cell types; the first genes are type markers."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_types, n_cells)
    base = rng.gamma(0.6, 1.0, n_genes) * 0.5
    mean = np.tile(base, (n_cells, 1))
    for t in range(n_types):
        genes = np.arange(t * markers_per_type, (t + 1) * markers_per_type)
        mean[np.ix_(y == t, genes)] += 6.0
    size = rng.uniform(0.5, 2.0, n_cells)[:, None]
    counts = rng.negative_binomial(5, 5 / (5 + mean * size))
    return sp.csr_matrix(counts.astype(np.float32)), y.astype(str)


# ------------------------------------------------------------------------------------------------
# stateless normalizations on the 3 x 4 example
# ------------------------------------------------------------------------------------------------
def test_library_size_and_normalize_total_hand_example():
    X = sp.csr_matrix(X34)
    assert_allclose(library_size(X), [3, 6, 10])
    N = normalize_total(X, target_sum=10)
    assert sp.isspmatrix_csr(N)
    expected = [[0, 20 / 3, 0, 10 / 3], [5, 5, 0, 0], [1, 2, 3, 4]]
    assert_allclose(N.toarray(), expected, rtol=1e-6)
    assert N.nnz == X.nnz


def test_normalize_total_uses_given_library_for_column_subsets():
    X = sp.csr_matrix(X34)
    sub = normalize_total(X[:, [1, 3]], target_sum=10, library=library_size(X))
    assert_allclose(sub.toarray(), [[20 / 3, 10 / 3], [5, 0], [2, 4]], rtol=1e-6)


def test_shifted_log_hand_example_pseudocount_one_is_log1p():
    out = shifted_log(sp.csr_matrix(X34), target_sum=10, pseudocount=1.0)
    assert sp.isspmatrix_csr(out)
    expected = np.log1p([[0, 20 / 3, 0, 10 / 3], [5, 5, 0, 0], [1, 2, 3, 4]])
    assert_allclose(out.toarray(), expected, rtol=1e-6)


def test_shifted_log_hand_example_pseudocount_half():
    # log(y + 0.5) - log(0.5) = log(2 y + 1)
    out = shifted_log(sp.csr_matrix(X34), target_sum=10, pseudocount=0.5).toarray()
    expected = [
        [0, np.log(43 / 3), 0, np.log(23 / 3)],
        [np.log(11), np.log(11), 0, 0],
        [np.log(3), np.log(5), np.log(7), np.log(9)],
    ]
    assert_allclose(out, expected, rtol=1e-6)
    assert (out[X34 == 0] == 0).all()


def test_sqrt_norm_hand_example():
    out = sqrt_norm(sp.csr_matrix(X34), target_sum=10)
    assert sp.isspmatrix_csr(out)
    expected = [[0, np.sqrt(20 / 3), 0, np.sqrt(10 / 3)], [np.sqrt(5), np.sqrt(5), 0, 0], [1, np.sqrt(2), np.sqrt(3), 2]]
    assert_allclose(out.toarray(), expected, rtol=1e-6)


def test_zero_library_cell_stays_zero():
    X = sp.csr_matrix(np.array([[0, 0, 0], [1, 0, 1]], dtype=np.float32))
    assert_allclose(shifted_log(X, 10).toarray()[0], 0)
    assert_allclose(sqrt_norm(X, 10).toarray()[0], 0)
    assert_allclose(rankz(X).toarray()[0], 0)


def test_negative_counts_are_refused():
    X = sp.csr_matrix(np.array([[1.0, -1.0]]))
    with pytest.raises(SclinbenchError, match="negative"):
        shifted_log(X)


# ------------------------------------------------------------------------------------------------
# rankz
# ------------------------------------------------------------------------------------------------
def test_rankz_hand_example_with_ties():
    Z = rankz(sp.csr_matrix(X34))
    assert isinstance(Z, OffsetCSR)
    # ranks over all 4 genes, ties averaged (the two zeros of cells 0 and 1 share rank 1.5)
    ranks = np.array([[1.5, 4, 1.5, 3], [3.5, 3.5, 1.5, 1.5], [1, 2, 3, 4]])
    z = ndtri(ranks / 5)
    expected = z / np.linalg.norm(z, axis=1, keepdims=True)
    dense = Z.toarray()
    assert_allclose(dense, expected, atol=1e-7)
    # cell 1: z = (c, c, -c, -c) with c = Phi^-1(0.7)  ->  unit norm gives exactly +-1/2
    assert_allclose(dense[1], [0.5, 0.5, -0.5, -0.5], atol=1e-7)
    assert_allclose(np.linalg.norm(dense, axis=1), 1.0, atol=1e-7)


def test_rankz_offset_form_has_count_sparsity_and_zero_value_offset():
    X = sp.csr_matrix(X34)
    Z = rankz(X)
    assert Z.S.shape == X.shape
    assert np.array_equal(Z.S.indptr, X.indptr) and np.array_equal(Z.S.indices, X.indices)
    dense = Z.toarray()
    # every zero count of a cell takes the cell's offset value
    for i in range(3):
        assert_allclose(dense[i][X34[i] == 0], Z.offset[i], atol=1e-7)
    assert Z.offset[2] == 0.0  # cell without zeros
    assert_allclose(Z.offset[1], -0.5, atol=1e-7)
    assert_allclose(Z.row_norms(), 1.0, atol=1e-6)


def test_rankz_matches_dense_rankdata_reference():
    X, _ = nb_counts(n_cells=80, n_genes=45, seed=3)
    D = X.toarray()
    z = ndtri(rankdata(D, axis=1) / (D.shape[1] + 1))
    expected = z / np.linalg.norm(z, axis=1, keepdims=True)
    Z = rankz(X)
    assert_allclose(Z.toarray(), expected, atol=1e-6)
    assert_allclose(Z.row_norms(), 1.0, atol=1e-6)


@pytest.mark.parametrize("scale", [1000.0, 0.37])
def test_rankz_large_and_non_integer_values(scale):
    # values >= 65535 and non-integers take the global-sort path; result must be the same ranks
    X, _ = nb_counts(n_cells=30, n_genes=20, seed=4)
    Xs = X.copy()
    Xs.data = Xs.data * scale * (100.0 if scale > 1 else 1.0)
    assert_allclose(rankz(Xs).toarray(), rankz(X).toarray(), atol=1e-6)


def test_rankz_ignores_explicit_zeros_and_unsorted_indices():
    X = sp.csr_matrix((np.array([0.0, 2.0, 1.0], dtype=np.float32), np.array([0, 3, 1]), np.array([0, 3])), shape=(1, 4))
    ref = rankz(sp.csr_matrix(np.array([[0, 1, 0, 2]], dtype=np.float32)))
    assert_allclose(rankz(X).toarray(), ref.toarray(), atol=1e-7)


# ------------------------------------------------------------------------------------------------
# OffsetCSR operations
# ------------------------------------------------------------------------------------------------
def _offset_example(seed=0):
    rng = np.random.default_rng(seed)
    S = sp.random(12, 7, density=0.3, random_state=seed, format="csr")
    off = rng.normal(size=12)
    return OffsetCSR(S, off), S.toarray() + off[:, None]


def test_offsetcsr_products_and_indexing_match_dense():
    Z, D = _offset_example()
    rng = np.random.default_rng(1)
    W = rng.normal(size=(7, 3))
    V = rng.normal(size=(4, 12))
    assert_allclose(Z.dot(W), D @ W)
    assert_allclose(Z @ W, D @ W)
    assert_allclose(Z.dot(W[:, 0]), D @ W[:, 0])
    assert_allclose(V @ Z, V @ D)
    assert_allclose(Z.rdot(sp.csr_matrix(V)), V @ D)
    assert_allclose(Z.rdot(V[0]), V[0] @ D)
    rows = np.array([3, 0, 7])
    assert_allclose(Z[rows].toarray(), D[rows])
    assert_allclose(Z[2:5].toarray(), D[2:5])
    assert_allclose(Z[np.arange(12) % 2 == 0].toarray(), D[::2])
    assert_allclose(Z.select_columns([6, 1]).toarray(), D[:, [6, 1]])
    assert_allclose(Z[rows, [0, 2]].toarray(), D[np.ix_(rows, [0, 2])])
    assert_allclose(OffsetCSR.vstack([Z[:5], Z[5:]]).toarray(), D)
    assert_allclose(Z.mean(axis=0), D.mean(axis=0))
    assert_allclose(Z.sum(axis=1), D.sum(axis=1))
    assert_allclose(Z.row_norms(), np.linalg.norm(D, axis=1))


@pytest.mark.parametrize("kind", ["csr", "offset", "dense"])
def test_column_mean_var_matches_numpy(kind):
    Z, D = _offset_example(2)
    X = {"csr": sp.csr_matrix(Z.S), "offset": Z, "dense": D}[kind]
    ref = Z.S.toarray() if kind == "csr" else D
    mean, var = column_mean_var(X, ddof=1)
    assert_allclose(mean, ref.mean(axis=0))
    assert_allclose(var, ref.var(axis=0, ddof=1))


def test_to_dense_refuses_above_cap_and_names_the_fix():
    Z, D = _offset_example()
    assert_allclose(to_dense(Z), D)
    with pytest.raises(SclinbenchError, match="reduction"):
        to_dense(Z, "model X", max_elements=10)


# ------------------------------------------------------------------------------------------------
# Pearson residuals
# ------------------------------------------------------------------------------------------------
def test_pearson_residuals_match_direct_formula_with_train_fractions():
    X, _ = nb_counts(seed=5)
    train, test = X[:80], X[80:]
    p = fit_gene_fractions(train)
    D = train.toarray().astype(np.float64)
    assert_allclose(p, D.sum(0) / D.sum())
    x = test.toarray().astype(np.float64)
    n = x.sum(1, keepdims=True)
    mu = n * p
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(mu > 0, (x - mu) / np.sqrt(mu + mu**2 / 50.0), 0.0)
    z = np.clip(z, -3.0, 3.0)
    out = pearson_residuals(test, p, theta=50.0, clip=3.0)
    assert_allclose(out, z, rtol=1e-10, atol=1e-12)


def test_pearson_transformer_equals_scanpy_when_fitted_and_applied_on_the_same_cells():
    import anndata as ad
    import scanpy as sc

    X, _ = nb_counts(n_cells=90, seed=6)
    X = X[:, np.asarray(X.sum(0)).ravel() > 0]
    adata = ad.AnnData(X.copy())
    sc.experimental.pp.normalize_pearson_residuals(adata, theta=100)  # clip defaults to sqrt(n_cells)
    rt = RepresentationTransformer("pearson").fit(X)
    assert rt.clip_ == pytest.approx(np.sqrt(90))
    assert_allclose(rt.transform(X), adata.X, rtol=1e-5, atol=1e-6)


def test_pearson_transformer_fits_on_train_and_uses_test_cell_library():
    X, _ = nb_counts(seed=7)
    rt = RepresentationTransformer("pearson", params={"theta": 100, "clip": False}).fit(X[:60])
    p = fit_gene_fractions(X[:60])
    assert_allclose(rt.gene_fractions_, p)
    assert rt.clip_ is None
    assert_allclose(rt.transform(X[60:]), pearson_residuals(X[60:], p, theta=100, clip=None))
    # clip null (the config default) = sqrt(number of TRAINING cells), also applied to test cells
    rt = RepresentationTransformer("pearson", params={"clip": None}).fit(X[:60])
    assert rt.clip_ == np.sqrt(60)
    assert_allclose(rt.transform(X[60:]), pearson_residuals(X[60:], p, theta=100, clip=np.sqrt(60)))
    assert RepresentationTransformer("pearson", params={"clip": 2.5}).fit(X[:60]).clip_ == 2.5


# ------------------------------------------------------------------------------------------------
# RepresentationTransformer
# ------------------------------------------------------------------------------------------------
def test_median_target_sum_is_fitted_on_train():
    X, _ = nb_counts(seed=8)
    rt = RepresentationTransformer("log1p", params={"target_sum": "median"}).fit(X[:50])
    assert rt.target_sum_ == np.median(library_size(X[:50]))
    assert_allclose(rt.transform(X[50:]).toarray(), shifted_log(X[50:], rt.target_sum_).toarray(), rtol=1e-6)


@pytest.mark.parametrize("name", ["log1p", "sqrt", "counts", "rankz"])
def test_hvg_subsets_columns_without_changing_library_size(name):
    X, _ = nb_counts(seed=9)
    full = RepresentationTransformer(name).fit(X)
    sub = RepresentationTransformer(name, hvg=10).fit(X)
    assert sub.genes_.shape == (10,)
    a = sub.transform(X)
    b = full.transform(X)
    a = a.toarray() if hasattr(a, "toarray") else a
    b = b.toarray() if hasattr(b, "toarray") else b
    assert_allclose(a, b[:, sub.genes_], rtol=1e-6, atol=1e-7)


def test_hvg_finds_marker_genes_from_train_counts_only():
    # 3 types x 4 markers: the 12 marker genes are the variable ones
    X, _ = nb_counts(n_cells=300, n_genes=80, seed=10)
    genes = select_hvg(X, 12)
    assert set(genes) == set(range(12))
    rt = RepresentationTransformer("log1p", hvg=12).fit(X[:200])
    assert set(rt.genes_) == set(select_hvg(X[:200], 12))


def test_hvg_never_selects_genes_without_training_counts(caplog):
    X, _ = nb_counts(n_cells=40, n_genes=20, seed=11)
    X = X.tolil()
    X[:, 5] = 0
    X = X.tocsr()
    with caplog.at_level(logging.INFO, logger="sclinbench.represent"):
        genes = select_hvg(X, 50)
    expressed = np.flatnonzero(np.asarray(X.sum(0)).ravel() > 0)
    assert 5 not in expressed and np.array_equal(genes, expressed)
    assert "keeping all" in caplog.text
    assert 5 not in select_hvg(X, expressed.size - 1)


def test_seurat_v3_flavor_without_scikit_misc_gives_clear_error():
    pytest.importorskip("anndata")
    try:
        import skmisc  # noqa: F401

        pytest.skip("scikit-misc installed")
    except ImportError:
        pass
    X, _ = nb_counts(seed=12)
    with pytest.raises(SclinbenchError, match="scikit-misc"):
        RepresentationTransformer("log1p", hvg=5, hvg_flavor="seurat_v3").fit(X)


def test_representation_errors_name_the_key():
    X, _ = nb_counts(seed=13)
    with pytest.raises(SclinbenchError, match="valid: counts, log1p, sqrt, pearson, rankz, embedding"):
        RepresentationTransformer("tfidf").fit(X)
    with pytest.raises(SclinbenchError, match="target_sums.*valid: target_sum, pseudocount"):
        RepresentationTransformer("log1p", params={"target_sums": 1}).fit(X)
    with pytest.raises(SclinbenchError, match="target_sum"):
        RepresentationTransformer("log1p", params={"target_sum": "mean"}).fit(X)
    rt = RepresentationTransformer("log1p").fit(X)
    with pytest.raises(SclinbenchError, match="same gene space"):
        rt.transform(X[:, :10])


# ------------------------------------------------------------------------------------------------
# ANOVA, scaling, PCA
# ------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Features .* are constant:UserWarning", "ignore::RuntimeWarning")
def test_anova_on_offsetcsr_equals_sklearn_on_dense():
    from sklearn.feature_selection import SelectKBest, f_classif

    X, y = nb_counts(seed=14)
    Z = rankz(X)
    D = Z.toarray()
    F, p = f_classif_any(Z, y)
    F_ref, p_ref = f_classif(D, y)
    assert_allclose(F, F_ref, rtol=1e-6)
    assert_allclose(p, p_ref, rtol=1e-5, atol=1e-300)
    sel = AnovaSelector(k=8).fit(Z, y)
    ref = np.flatnonzero(SelectKBest(f_classif, k=8).fit(D, y).get_support())
    assert np.array_equal(sel.genes_, ref)
    assert set(sel.genes_) <= set(range(12))  # the top genes are markers
    assert_allclose(sel.transform(Z).toarray(), D[:, ref])
    assert np.array_equal(AnovaSelector(k=8).fit(X, y).genes_,
                          np.flatnonzero(SelectKBest(f_classif, k=8).fit(X, y).get_support()))


@pytest.mark.parametrize("kind", ["csr", "offset", "dense"])
def test_scaleclip_matches_numpy(kind):
    X, _ = nb_counts(seed=15)
    Z = rankz(X)
    inp = {"csr": X, "offset": Z, "dense": Z.toarray()}[kind]
    D = X.toarray().astype(np.float64) if kind == "csr" else Z.toarray()
    sc_ = ScaleClip(max_value=1.5).fit(inp[:70])
    mu, sd = D[:70].mean(0), D[:70].std(0, ddof=1)
    sd[sd == 0] = 1
    assert_allclose(sc_.transform(inp[70:]), np.clip((D[70:] - mu) / sd, -1.5, 1.5), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["csr", "offset"])
@pytest.mark.parametrize("whiten", [False, True])
@pytest.mark.parametrize("solver", ["covariance", "arpack"])
@pytest.mark.parametrize("n_genes", [40, 150])  # fewer genes than the 70 training cells, and more (Gram path)
def test_pca_on_sparse_equals_sklearn_on_densified(kind, whiten, solver, n_genes):
    from sklearn.decomposition import PCA

    X, _ = nb_counts(n_cells=100, n_genes=n_genes, seed=16)
    X = shifted_log(X, 1e3, dtype=np.float64)
    inp = X if kind == "csr" else rankz(X.astype(np.float32))
    D = inp.toarray()
    pt = PCATransformer(n_components=6, whiten=whiten, random_state=0, svd_solver=solver).fit(inp[:70])
    assert pt.svd_solver_ == solver
    sk = PCA(n_components=6, whiten=whiten, svd_solver="full").fit(D[:70])
    signs = np.sign((pt.components_ * sk.components_).sum(1))
    assert_allclose(np.abs(signs), 1)
    assert_allclose(pt.components_ * signs[:, None], sk.components_, atol=1e-8)
    assert_allclose(pt.transform(inp[70:]) * signs, sk.transform(D[70:]), atol=1e-8)
    assert_allclose(pt.explained_variance_, sk.explained_variance_, rtol=1e-8)
    assert_allclose(pt.explained_variance_ratio_, sk.explained_variance_ratio_, rtol=1e-8)
    assert_allclose(pt.mean_, sk.mean_, atol=1e-12)


@pytest.mark.parametrize("kind", ["csr", "offset"])
def test_pca_randomized_solver_recovers_the_leading_components(kind):
    from sklearn.decomposition import PCA

    X, _ = nb_counts(n_cells=200, n_genes=60, seed=21)
    X = shifted_log(X, 1e3, dtype=np.float64)
    inp = X if kind == "csr" else rankz(X.astype(np.float32))
    D = inp.toarray()
    pt = PCATransformer(n_components=5, svd_solver="randomized", n_iter=10).fit(inp)
    sk = PCA(n_components=5, svd_solver="full").fit(D)
    # the 3 cell types give 2 strong components; those must match closely
    cos = np.abs((pt.components_[:2] * sk.components_[:2]).sum(1))
    assert (cos > 0.999).all(), cos
    assert_allclose(pt.explained_variance_[:2], sk.explained_variance_[:2], rtol=1e-3)
    assert PCATransformer(svd_solver="auto").fit(inp).svd_solver_ == "covariance"
    with pytest.raises(SclinbenchError, match="svd_solver.*valid: auto, covariance, arpack, randomized"):
        PCATransformer(svd_solver="lobpcg").fit(inp)


def test_pca_is_deterministic_and_caps_components(caplog):
    X, _ = nb_counts(n_cells=10, n_genes=30, seed=17)
    with caplog.at_level(logging.INFO, logger="sclinbench.represent"):
        pt = PCATransformer(n_components=50).fit(X)
    assert pt.n_components_ == 9 and pt.transform(X).shape == (10, 9)
    assert "capped at 9" in caplog.text
    a = PCATransformer(5, random_state=3).fit(X).components_
    b = PCATransformer(5, random_state=3).fit(X).components_
    assert np.array_equal(a, b)


def test_pca_dense_input_uses_sklearn():
    from sklearn.decomposition import PCA

    X, _ = nb_counts(n_cells=50, n_genes=20, seed=18)
    D = X.toarray().astype(np.float64)
    pt = PCATransformer(4).fit(D)
    assert_allclose(np.abs(pt.transform(D)), np.abs(PCA(4).fit(D).transform(D)), atol=1e-8)


# ------------------------------------------------------------------------------------------------
# leakage: fitted state depends on training cells only; transforms are per cell
# ------------------------------------------------------------------------------------------------
def _fitted_attributes(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


def _assert_bit_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and np.array_equal(va, vb, equal_nan=True), k
        else:
            assert va == vb, k


LEAKAGE_STEPS = {
    "hvg": lambda: RepresentationTransformer("log1p", hvg=10),
    "median_target_sum": lambda: RepresentationTransformer("sqrt", params={"target_sum": "median"}),
    "pearson": lambda: RepresentationTransformer("pearson", hvg=15),
    "rankz_hvg": lambda: RepresentationTransformer("rankz", hvg=15),
}


@pytest.mark.parametrize("step", list(LEAKAGE_STEPS))
def test_representation_fit_does_not_see_test_cells(step):
    X, y = nb_counts(seed=19)
    train, test = np.arange(0, 80), np.arange(80, 120)
    Xp = X.tolil()
    Xp[test] = X[test].toarray()[::-1] * 7 + 3  # perturb the test cells only
    Xp = Xp.tocsr()
    a = LEAKAGE_STEPS[step]().fit(X[train])
    b = LEAKAGE_STEPS[step]().fit(Xp[train])
    _assert_bit_identical(_fitted_attributes(a), _fitted_attributes(b))
    # the transform is per cell: a cell's representation does not depend on the other cells
    full = a.transform(Xp)
    full = full.toarray() if hasattr(full, "toarray") else full
    alone = a.transform(X[train])
    alone = alone.toarray() if hasattr(alone, "toarray") else alone
    assert np.array_equal(full[train], alone)
    assert not np.allclose(full[test], (lambda t: t.toarray() if hasattr(t, "toarray") else t)(a.transform(X[test])))


@pytest.mark.parametrize("make", [lambda: ScaleClip(5), lambda: PCATransformer(5), lambda: AnovaSelector(7)])
def test_scale_pca_anova_fit_does_not_see_test_cells(make):
    X, y = nb_counts(seed=20)
    Z = rankz(X)
    train, test = np.arange(0, 80), np.arange(80, 120)
    D = Z.toarray()
    Dp = D.copy()
    Dp[test] = Dp[test] * 3 + 1
    Zp = OffsetCSR(sp.vstack([Z.S[train], sp.csr_matrix(Dp[test].astype(Z.S.dtype))]).tocsr(),
                   np.concatenate([Z.offset[train], np.zeros(40)]))
    a = make().fit(Z[train], y[train])
    b = make().fit(Zp[train], y[train])
    _assert_bit_identical(_fitted_attributes(a), _fitted_attributes(b))
    ta = a.transform(Zp)
    ta = ta.toarray() if hasattr(ta, "toarray") else ta
    tb = a.transform(Z[train])
    tb = tb.toarray() if hasattr(tb, "toarray") else tb
    assert_allclose(ta[train], tb, rtol=1e-12, atol=1e-12)


def test_rankz_of_row_subset_equals_rows_of_rankz():
    # a stateless per-cell transform: any rows computed alone equal the same rows computed together
    rng = np.random.default_rng(3)
    X = sp.csr_matrix(rng.poisson(0.4, size=(257, 60)).astype(np.float32))
    rows = rng.permutation(257)[:100]
    whole, sub = rankz(X), rankz(X[rows])
    np.testing.assert_array_equal(whole.S[rows].toarray(), sub.S.toarray())
    np.testing.assert_array_equal(whole.offset[rows], sub.offset)


def _rankz_reference(D):
    """Plain per-cell reference: scipy.stats.rankdata over all genes -> ndtri -> L2 (float64)."""
    g = D.shape[1]
    out = np.zeros(D.shape)
    for i, row in enumerate(D):
        if not row.any():
            continue
        z = ndtri(rankdata(row) / (g + 1.0))
        out[i] = z / np.linalg.norm(z)
    return out


def _realistic_counts(n, g, seed):
    """Overdispersed counts with many ties, an empty cell, a cell with every gene detected, a
    cell with counts >= 65536 and cells with non-integer values."""
    rng = np.random.default_rng(seed)
    mean = rng.gamma(0.3, 2.0, g)[None, :] * rng.lognormal(0, 0.6, n)[:, None]
    D = rng.negative_binomial(2, 2 / (2 + mean)).astype(np.float64)
    D[0] = 0.0
    D[1] = rng.integers(1, 5, g)
    D[2, :5] = [70000, 65536, 65535, 65535, 3]
    D[3:6] *= 0.37
    D[6, 0] = 1e9
    return D


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rankz_kernel_matches_plain_rankdata_reference(dtype):
    D = _realistic_counts(300, 400, seed=11)
    X = sp.csr_matrix(D.astype(dtype))
    Z = rankz(X)
    assert Z.S.dtype == np.float32
    expected = _rankz_reference(D)
    assert_allclose(Z.toarray(), expected, rtol=1e-6, atol=2e-7)
    assert_allclose(Z.offset, expected.min(axis=1) * (D.min(axis=1) == 0), atol=1e-12)
    assert_allclose(Z.toarray()[0], 0.0)  # empty cell: all zeros
    assert_allclose(Z.row_norms()[1:], 1.0, atol=1e-6)
    # float64 output is the reference up to float64 rounding
    assert_allclose(rankz(X, dtype=np.float64).toarray(), expected, rtol=1e-12, atol=1e-14)


def test_rankz_shares_the_index_arrays_of_canonical_input():
    D = _realistic_counts(50, 80, seed=2)
    X = sp.csr_matrix(D.astype(np.float32))
    Z = rankz(X)
    assert np.shares_memory(Z.S.indices, X.indices) and np.shares_memory(Z.S.indptr, X.indptr)  # no copies
    assert Z.S.data.dtype == np.float32 and Z.S.data.size == X.nnz


def test_rankz_sums_duplicate_entries():
    X = sp.csr_matrix((np.array([1.0, 1.0, 1.0], np.float32), np.array([2, 2, 0]), np.array([0, 3])), shape=(1, 4))
    ref = rankz(sp.csr_matrix(np.array([[1, 0, 2, 0]], dtype=np.float32)))
    assert_allclose(rankz(X).toarray(), ref.toarray(), atol=1e-7)

# ------------------------------------------------------------------------------------------------
# Pearson-residual HVG without copies: same statistic and genes as scanpy
# ------------------------------------------------------------------------------------------------
def _scanpy_pearson_hvg(X, n_top):
    import anndata as ad
    import scanpy as sc

    df = sc.experimental.pp.highly_variable_genes(ad.AnnData(X=X.astype(np.float32)), flavor="pearson_residuals",
                                                  n_top_genes=n_top, inplace=False)
    return np.asarray(df["residual_variances"]), np.flatnonzero(df["highly_variable"])


def _liao_counts():
    import scanpy as sc

    from tests.conftest import REPO

    a = sc.read_10x_h5(REPO / "tests/data/liao2020/C146_subset_filtered_feature_bc_matrix.h5")
    return sp.csr_matrix(a.X, dtype=np.float32)


@pytest.mark.parametrize("source", ["liao2020", "synthetic"])
def test_pearson_residual_variances_and_genes_equal_scanpy(source):
    from sclinbench.represent.select import pearson_residual_variances

    if source == "liao2020":  # real UMI counts, 310 cells x 2000 genes
        X = _liao_counts()
    else:
        X = sp.csr_matrix(_realistic_counts(400, 300, seed=5).round())
    X = X[np.asarray(X.sum(axis=1)).ravel() > 0]  # scanpy's statistic needs cells with counts
    var_sc, genes_sc = _scanpy_pearson_hvg(X, 100)
    var = pearson_residual_variances(X)
    expressed = np.asarray(X.sum(axis=0)).ravel() > 0
    # dense float64 reference of the same statistic
    D = X.toarray().astype(np.float64)
    mu = np.outer(D.sum(1), D.sum(0)) / D.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip((D - mu) / np.sqrt(mu + mu * mu / 100.0), -np.sqrt(D.shape[0]), np.sqrt(D.shape[0]))
    assert_allclose(var[expressed], r[:, expressed].var(axis=0), rtol=1e-12)
    # scanpy multiplies its float32 sums in float32: equal to ~1e-7
    assert_allclose(var[expressed], var_sc[expressed], rtol=1e-6)
    assert np.all(var[~expressed] == 0)
    np.testing.assert_array_equal(select_hvg(X, 100), genes_sc)
    # a row subset read in place equals the copied rows
    rows = np.random.default_rng(0).permutation(X.shape[0])[: X.shape[0] // 2]
    np.testing.assert_array_equal(select_hvg(X, 100, rows=rows), select_hvg(X[rows], 100))
    assert_allclose(pearson_residual_variances(X, rows=rows), pearson_residual_variances(X[rows]), rtol=1e-12)


# ------------------------------------------------------------------------------------------------
# scale before PCA in its exact sparse form
# ------------------------------------------------------------------------------------------------
def test_scale_sparse_shift_is_the_scaled_matrix_up_to_a_constant_per_gene():
    X, _ = nb_counts(n_cells=300, n_genes=60, seed=7)
    L = shifted_log(X)
    tr, te = L[:200], L[200:]
    dense = ScaleClip(max_value=1.5).fit(tr)  # a low clip, so zeros and nonzeros get clipped
    sparse = ScaleClip(max_value=1.5, sparse_shift=True).fit(tr)
    S = sparse.transform(te)
    assert sp.issparse(S) and S.nnz == te.nnz
    assert_allclose(S.toarray() + sparse.c_, dense.transform(te), rtol=0, atol=1e-12)
    assert (np.abs(dense.transform(te)) <= 1.5).all()


def test_pca_of_sparse_scaled_form_equals_pca_of_dense_scaled_matrix():
    from sclinbench.evaluate.pipeline import build_preprocessing

    X, _ = nb_counts(n_cells=400, n_genes=80, seed=8)
    spec = {"representation": {"name": "log1p"}, "features": {"method": "hvg", "n_top": 40},
            "scale": {"max_value": 10}, "reduction": {"method": "pca", "n_components": 8}, "model": {"name": "centroid"}}
    pre = build_preprocessing(spec)
    assert pre.named_steps["scale"].sparse_shift
    tr, te = X[:300], X[300:]
    a = pre.fit(tr).transform(te)
    dense = build_preprocessing(spec)
    dense.named_steps["scale"].set_params(sparse_shift=False)
    b = dense.fit(tr).transform(te)
    assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    assert_allclose(pre.named_steps["reduce"].explained_variance_, dense.named_steps["reduce"].explained_variance_,
                    rtol=1e-9)


@pytest.mark.parametrize("kind", ["csr", "offset"])
def test_row_subset_products_equal_those_of_the_copied_rows(kind):
    from sclinbench.represent.offset import RowSubset

    X, _ = nb_counts(n_cells=200, n_genes=60, seed=9)
    base = X if kind == "csr" else rankz(X)
    rng = np.random.default_rng(1)
    rows = rng.permutation(200)[:120]
    view, copy = RowSubset(base, rows), base[rows]
    assert view.shape == copy.shape
    W = rng.normal(size=(60, 4))
    codes = rng.integers(0, 3, 120)
    A = sp.csr_matrix((1.0 / np.bincount(codes)[codes], (codes, np.arange(120))), shape=(3, 120))
    if kind == "csr":
        expected_dot, expected_rdot = np.asarray(copy @ W), (A @ copy).toarray()
    else:
        expected_dot, expected_rdot = copy.dot(W), copy.rdot(A)
    np.testing.assert_array_equal(view.dot(W), expected_dot)
    np.testing.assert_array_equal(view.rdot(A), expected_rdot)
    np.testing.assert_array_equal(view[5:50].dot(W), expected_dot[5:50])


@pytest.mark.parametrize("kind", ["csr", "offset"])
def test_take_rows_and_columns_in_one_pass_equals_the_two_step_copy(kind):
    from sclinbench.represent.offset import take

    X, _ = nb_counts(n_cells=100, n_genes=40, seed=12)
    base = X if kind == "csr" else rankz(X)
    rows, cols = np.array([5, 3, 99, 3, 0]), np.array([0, 7, 8, 30, 39])
    a, b = take(base, rows, cols), base[rows][:, cols]
    if kind == "offset":
        np.testing.assert_array_equal(a.offset, b.offset)
        a, b = a.S, b.S
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)
