"""The paper's exact cell-typing pipeline (issue 20): config/paper.yaml's declared
``paper_rankz_anova_pca_logreg`` against the dense scikit-learn pipeline of Souza & Mehta's code
(SelectKBest f_classif -> StandardScaler -> PCA(220, whiten, random_state=0) -> balanced
LogisticRegression) on scanpy's real pbmc68k_reduced counts, 5 stratified 80/20 splits
(random_state 0-4). Ours never forms the z-scored cells x genes matrix."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sclinbench.data import load_bundled
from sclinbench.evaluate.pipeline import build_pipeline
from sclinbench.represent import OffsetCSR, rankz
from sclinbench.represent.scale import ColumnScaled, ScaleClip

ROOT = Path(__file__).resolve().parents[1]


def _paper_spec() -> dict:
    return yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["pipelines"]["paper_rankz_anova_pca_logreg"]


def test_paper_pipeline_agrees_with_the_dense_scikit_learn_pipeline():
    adata = load_bundled("pbmc68k_reduced")
    X, y = adata.X.tocsr(), adata.obs["bulk_labels"].astype(str).to_numpy()
    spec = _paper_spec()
    assert spec["scale"] == {"max_value": None} and spec["reduction"]["n_components"] == 220
    ours_all, dense_all, truth = [], [], []
    for i in range(5):
        train, test = train_test_split(np.arange(X.shape[0]), test_size=0.2, stratify=y, random_state=i)
        pipe = build_pipeline(spec, seed=0).fit(X[train], y[train])
        # the scaled training matrix handed to PCA is the implicit operator, never a dense array
        pre = pipe[:3].transform(X[train])
        assert isinstance(pre, ColumnScaled) and isinstance(pre.base, OffsetCSR)
        ours = pipe.predict(X[test])
        R = rankz(X.astype(np.float32)).toarray()  # rankz is per cell (stateless): all cells at once
        dense = make_pipeline(
            SelectKBest(f_classif, k=min(20000, X.shape[1])), StandardScaler(),
            PCA(n_components=220, whiten=True, random_state=0),
            LogisticRegression(class_weight="balanced", max_iter=1000),
        ).fit(R[train], y[train])
        ours_all.append(ours)
        dense_all.append(dense.predict(R[test]))
        truth.append(y[test])
    ours, dense, truth = map(np.concatenate, (ours_all, dense_all, truth))
    assert (ours == dense).mean() >= 0.995, (ours == dense).mean()
    f_ours, f_dense = (f1_score(truth, p, average="macro") for p in (ours, dense))
    assert abs(f_ours - f_dense) <= 0.002, (f_ours, f_dense)
    assert f_ours > 0.3  # 10 PBMC types, chance ~0.1: the pipeline learns


def test_unclipped_scale_of_rankz_is_the_exact_z_score_at_any_size():
    rng = np.random.default_rng(5)
    import scipy.sparse as sp

    counts = sp.random(300, 80, density=0.2, random_state=rng, data_rvs=lambda k: rng.integers(1, 30, k)).tocsr()
    R = rankz(counts.astype(np.float32))
    D = R.toarray()
    # a size limit far below the matrix: unclipped scaling needs no dense copy
    Z = ScaleClip(max_value=None, sparse_shift=True, max_dense_elements=10).fit(R).transform(R)
    ref = (D - D.mean(0)) / D.std(0, ddof=1)
    np.testing.assert_allclose(Z.toarray(), ref, atol=1e-10)
    W = rng.standard_normal((80, 3))
    np.testing.assert_allclose(Z @ W, ref @ W, atol=1e-9)
    np.testing.assert_allclose(W[:, :1].T @ Z[:80], W[:, :1].T @ ref[:80], atol=1e-9)
    mean, var = Z.column_mean_var(ddof=1)
    np.testing.assert_allclose(mean, 0, atol=1e-10)
    np.testing.assert_allclose(var, 1, atol=1e-10)
    # clipping cannot be implicit: beyond the limit it stops with the fix in one line
    with pytest.raises(Exception, match=r"max_value: null"):
        ScaleClip(max_value=10, sparse_shift=True, max_dense_elements=10).fit(R).transform(R)
