"""leiden_logreg (Souza & Mehta's disease-state model): Leiden clusters of the training cells only,
a class-balanced logistic regression per cluster, test cells assigned by a cosine kNN vote, and no
test cell dropped -- cells of a cluster without a model are scored by the fallback model and
counted. Synthetic blobs and the real COVID-19 lavage fixture."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from numpy.testing import assert_allclose, assert_array_equal
from real_fixtures import liao_standardized
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import KNeighborsClassifier

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate import intervals, metrics
from sclinbench.evaluate.clustered import LeidenLogisticRegression, leiden_clusters
from sclinbench.evaluate.engine import evaluate
from sclinbench.evaluate.models import MODEL_FAMILIES, build_model
from sclinbench.evaluate.pipeline import build_preprocessing
from sclinbench.evaluate.splits import make_splits
from sclinbench.workflow import contracts

ROOT = Path(__file__).resolve().parents[1]

#: The paper's disease pipeline on today's code (scale: true clips at 10; see config/README.md).
PAPER_DISEASE = {"representation": {"name": "rankz"}, "features": {"method": "anova", "k": 20000},
                 "scale": True, "reduction": {"method": "pca", "n_components": 220},
                 "model": {"name": "leiden_logreg"}}


def _blobs(seed=0, n=(90, 90, 70), dim=12):
    """Three well-separated blobs: A holds classes a/b, B holds b/c, C only c (no model)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (3, dim))
    centres *= 12 / np.linalg.norm(centres, axis=1, keepdims=True)
    X, y, blob = [], [], []
    for b, (size, classes) in enumerate(zip(n, (("a", "b"), ("b", "c"), ("c",)))):
        labels = np.array(classes)[np.arange(size) % len(classes)]
        shift = np.zeros((size, dim))
        if len(classes) == 2:  # the classes of a blob differ along one direction
            shift[:, b] = np.where(labels == classes[0], -1.5, 1.5)
        X.append(centres[b] + shift + rng.normal(0, 1, (size, dim)))
        y.append(labels)
        blob.append(np.full(size, b))
    return np.vstack(X), np.concatenate(y), np.concatenate(blob)


@pytest.fixture(scope="module")
def blobs():
    X, y, blob = _blobs()
    test = np.arange(len(y)) % 4 == 0
    model = LeidenLogisticRegression(random_state=0).fit(X[~test], y[~test])
    return X, y, blob, test, model


def test_clusters_come_from_training_cells_and_one_class_clusters_get_no_model(blobs):
    X, y, blob, test, model = blobs
    assert model.labels_.shape == ((~test).sum(),)  # fit saw the training rows only
    assert model.n_clusters_ == 3
    # each cluster is one blob
    table = pd.crosstab(model.labels_, blob[~test])
    assert (table.gt(0).sum(axis=1) == 1).all()
    only_c = int(table[2].idxmax())
    assert not model.has_model_[only_c] and model.cluster_models_[only_c] is None
    assert model.has_model_.sum() == 2 and model.global_model_ is not None
    assert list(model.classes_) == ["a", "b", "c"]
    for c in np.flatnonzero(model.has_model_):
        assert model.cluster_models_[c].class_weight == "balanced"
        assert set(model.cluster_models_[c].classes_) < set(model.classes_)


def test_every_test_cell_is_scored_and_fallback_cells_by_the_global_model(blobs):
    X, y, blob, test, model = blobs
    Xte = X[test]
    P = model.predict_proba(Xte)
    assert P.shape == (test.sum(), 3) and np.isfinite(P).all()
    assert_allclose(P.sum(axis=1), 1.0)
    assert_array_equal(model.predict(Xte), model.classes_[P.argmax(axis=1)])
    assert_array_equal(model.decision_function(Xte).argmax(axis=1), P.argmax(axis=1))
    fallback = model.fallback_mask(Xte)
    assert_array_equal(fallback, blob[test] == 2)  # the one-class blob, and only it
    assert_allclose(P[fallback], model.global_model_.predict_proba(Xte[fallback]))
    # a cluster model's classes fill their columns, the others are exactly 0
    clusters = model.assign_clusters(Xte)
    for c in np.flatnonzero(model.has_model_):
        rows = clusters == c
        sub = model.cluster_models_[c]
        lacking = ~np.isin(model.classes_, sub.classes_)
        assert rows.any() and lacking.sum() == 1
        assert (P[np.ix_(rows, lacking)] == 0).all()
        assert_allclose(P[np.ix_(rows, ~lacking)], sub.predict_proba(Xte[rows]))
    assert (model.predict(Xte) == y[test]).mean() > 0.8
    # each test cell is scored on its own: predicting it alone or among others gives the same
    one = model.predict_proba(Xte[:1])
    assert_allclose(one, P[:1])
    assert model.predict_proba(Xte[:0]).shape == (0, 3)


def test_small_clusters_get_no_model(blobs):
    X, y, blob, test, model = blobs
    smallest = int(model.cluster_sizes_[model.has_model_].min())
    kept = LeidenLogisticRegression(min_cluster_cells=smallest).fit(X[~test], y[~test])
    assert_array_equal(kept.labels_, model.labels_) and kept.has_model_.sum() == 2  # exactly min: a model
    dropped = LeidenLogisticRegression(min_cluster_cells=smallest + 1).fit(X[~test], y[~test])
    assert_array_equal(dropped.labels_, model.labels_)
    assert dropped.has_model_.sum() == 1
    fallback = dropped.fallback_mask(X[test])
    assert fallback.sum() > (blob[test] == 2).sum()
    assert_allclose(dropped.predict_proba(X[test])[fallback], dropped.global_model_.predict_proba(X[test][fallback]))
    every = LeidenLogisticRegression(min_cluster_cells=10_000).fit(X[~test], y[~test])
    assert not every.has_model_.any() and every.fallback_mask(X[test]).all()
    assert_allclose(every.predict_proba(X[test]), every.global_model_.predict_proba(X[test]))


def test_no_fallback_model_when_every_cluster_has_one():
    X, y, blob = _blobs(n=(90, 90, 70))
    two = blob < 2
    model = LeidenLogisticRegression().fit(X[two], y[two])
    assert model.has_model_.all() and model.global_model_ is None
    assert not model.fallback_mask(X[two]).any()


def test_deterministic_from_the_seed(blobs):
    X, y, blob, test, model = blobs
    again = LeidenLogisticRegression(random_state=0).fit(X[~test], y[~test])
    assert_array_equal(again.labels_, model.labels_)
    assert_array_equal(again.predict_proba(X[test]), model.predict_proba(X[test]))


def test_agrees_with_a_reference_computation():
    """scanpy neighbors + leiden, sklearn LogisticRegression per cluster, sklearn KNeighbors
    (cosine, distance-weighted) assignment, written out independently of the estimator."""
    X, y, blob = _blobs(seed=4, n=(60, 60, 40), dim=8)
    test = np.arange(len(y)) % 3 == 0
    Xtr, ytr, Xte = X[~test], y[~test], X[test]
    model = LeidenLogisticRegression(resolution=0.4, random_state=7).fit(Xtr, ytr)

    ref = ad.AnnData(np.zeros((len(ytr), 1), dtype=np.float32))
    ref.obsm["X_pca"] = Xtr.astype(np.float32)
    sc.pp.neighbors(ref, n_neighbors=15, use_rep="X_pca", random_state=7)
    sc.tl.leiden(ref, resolution=0.4, flavor="igraph", n_iterations=-1, directed=False, random_state=7)
    labels = ref.obs["leiden"].astype(int).to_numpy()
    assert_array_equal(model.labels_, labels)
    knn = KNeighborsClassifier(n_neighbors=15, weights="distance", metric="cosine").fit(Xtr, labels)
    assigned = knn.predict(Xte)
    assert_array_equal(model.assign_clusters(Xte), assigned)
    classes = np.unique(ytr)
    want = np.zeros((len(Xte), classes.size))
    fallback_ref = np.zeros(len(Xte), dtype=bool)
    everyone = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=7).fit(Xtr, ytr)
    for c in np.unique(assigned):
        rows = assigned == c
        members = labels == c
        if members.sum() >= 5 and np.unique(ytr[members]).size >= 2:
            lr = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=7)
            lr.fit(Xtr[members], ytr[members])
        else:
            lr, fallback_ref[rows] = everyone, True
        want[np.ix_(rows, np.searchsorted(classes, lr.classes_))] = lr.predict_proba(Xte[rows])
    assert fallback_ref.any() and not fallback_ref.all()
    assert_array_equal(model.fallback_mask(Xte), fallback_ref)
    assert_allclose(model.predict_proba(Xte), want, rtol=1e-10, atol=1e-12)
    assert_array_equal(model.predict(Xte), classes[want.argmax(axis=1)])


def test_leiden_clusters_are_the_labels_of_the_rows():
    X, _, blob = _blobs(n=(40, 40, 40))
    labels = leiden_clusters(X, 15, 0.4, 0)
    assert labels.shape == (120,) and labels.min() == 0
    assert pd.crosstab(labels, blob).gt(0).sum(axis=1).eq(1).all()


@pytest.mark.parametrize("options, message", [
    ({"resolution": 0}, "resolution must be a positive number"),
    ({"n_neighbors": 1}, "n_neighbors must be >= 2"),
    ({"min_cluster_cells": 2.5}, "min_cluster_cells must be a positive integer"),
    ({"C": "cv"}, "C must be a positive number"),
    ({"alpha": 1.0}, "has no option 'alpha'"),
])
def test_options_are_checked_when_the_model_is_built(options, message):
    with pytest.raises(SclinbenchError, match=message):
        build_model("leiden_logreg", options)


def test_model_factory_and_family():
    model = build_model("leiden_logreg", {"resolution": 1.0, "min_cluster_cells": 7}, seed=3)
    assert isinstance(model, LeidenLogisticRegression)
    assert (model.resolution, model.min_cluster_cells, model.n_neighbors, model.assign_neighbors,
            model.random_state) == (1.0, 7, 15, 15, 3)
    assert MODEL_FAMILIES["leiden_logreg"] == "piecewise_linear"  # never in a table of linear pipelines
    with pytest.raises(SclinbenchError, match="one class"):
        LeidenLogisticRegression().fit(np.zeros((20, 3)), np.array(["x"] * 20))


# ------------------------------------------------------------------------------------------------
# the real lavage fixture, through evaluate and the score stage
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def liao():
    """Three COVID-19 BALF patients (real 10x data), infection from viral reads, standardized."""
    return liao_standardized()


def test_liao_clusters_of_training_cells_only(liao):
    """On one fold of the real data the estimator is fitted on the fold's training rows only (the
    preprocessing too), and every test cell gets a cluster."""
    task = {"kind": "disease", "split": "donor", "n_folds": 3}
    splits = make_splits(liao.obs, task, seed=0, dataset="liao2020")
    fold = splits[splits.fold == 1]
    itr = liao.obs_names.get_indexer(fold.loc[fold.role == "train", "cell_id"])
    ite = liao.obs_names.get_indexer(fold.loc[fold.role == "test", "cell_id"])
    y = liao.obs["condition"].astype(str).to_numpy()
    spec = {**PAPER_DISEASE, "model": {"name": "leiden_logreg"}}
    pre = build_preprocessing(spec, 0)
    Ztr = pre.fit_transform(liao.X[itr], y[itr])
    model = build_model("leiden_logreg", {}, seed=0).fit(Ztr, y[itr])
    assert model.labels_.shape == (itr.size,) and model.n_clusters_ >= 2
    clusters = model.assign_clusters(pre.transform(liao.X[ite]))
    assert clusters.shape == (ite.size,) and set(clusters) <= set(range(model.n_clusters_))


def test_liao_fallback_cells_are_kept_counted_and_scored_by_the_global_model(liao):
    """Donor folds of the real data with a min_cluster_cells that leaves some clusters without a
    model: every test cell is in the table once per fold, the fallback ones are scored exactly as
    the one logistic regression on all training cells (the logreg pipeline of the same
    preprocessing), and the score stage counts them."""
    task = {"kind": "disease", "split": "donor", "n_folds": 3}
    splits = make_splits(liao.obs, task, seed=0, dataset="liao2020")
    pipelines = {"leiden": {**PAPER_DISEASE, "model": {"name": "leiden_logreg", "min_cluster_cells": 60}},
                 "logreg": {**PAPER_DISEASE, "model": {"name": "logreg"}}}
    pred = evaluate(liao, splits, pipelines, task, seed=0, dataset="liao2020")
    assert list(pred.columns[:len(contracts.PREDICTION_COLUMNS)]) == contracts.PREDICTION_COLUMNS
    test = splits[splits.role == "test"]
    for name in pipelines:
        rows = pred[pred.pipeline == name]
        assert sorted(zip(rows.cell_id, rows.fold)) == sorted(zip(test.cell_id, test.fold))
    assert not pred.loc[pred.pipeline == "logreg", "fallback"].any()
    leiden = pred[pred.pipeline == "leiden"].set_index(["cell_id", "fold"])
    logreg = pred[pred.pipeline == "logreg"].set_index(["cell_id", "fold"]).loc[leiden.index]
    fb = leiden["fallback"].to_numpy(bool)
    assert 0 < fb.sum() < len(fb), fb.sum()
    assert_array_equal(leiden.loc[fb, "y_pred"], logreg.loc[fb, "y_pred"])
    assert_allclose(leiden.loc[fb, "s:infected"], logreg.loc[fb, "s:infected"], rtol=1e-6, atol=1e-9)
    assert not np.allclose(leiden.loc[~fb, "s:infected"], logreg.loc[~fb, "s:infected"])
    assert np.isfinite(leiden[["s:infected", "s:uninfected"]].to_numpy()).all()

    per_fold = metrics.score(pred, "disease")
    n = per_fold[(per_fold.metric == "n_fallback") & (per_fold.pipeline == "leiden")]["value"].sum()
    assert n == fb.sum()
    summary, _ = intervals.summarize_predictions(pred, task, n_boot=100)
    row = summary[(summary.metric == "n_fallback")].set_index("pipeline")
    assert row.loc["leiden", "value"] == fb.sum() and row.loc["logreg", "value"] == 0
    assert row.loc["leiden", "interval"] == "count (no interval)" and np.isnan(row.loc["leiden", "ci_low"])
    auc = summary[(summary.metric == "auroc_ovr") & (summary.pipeline == "leiden")]["value"].iloc[0]
    assert np.isfinite(auc)
    # the task's Markdown table says how many cells the fallback model scored
    from sclinbench.report.tables import _task_markdown

    labelled = summary.assign(dataset="liao2020", task="infection", kind="disease", split_kind="donor",
                              protocol="strict", role="method", representation="rankz",
                              family=summary.pipeline.map({"leiden": "piecewise_linear", "logreg": "linear"}),
                              model=summary.pipeline.map({"leiden": "leiden_logreg", "logreg": "logreg"}))
    md = _task_markdown(labelled, "Task infection")
    assert f"leiden {fb.sum()} of {len(fb)}" in md and "logreg 0" not in md


def test_prediction_tables_without_the_fallback_column_still_read(tmp_path):
    old = pd.DataFrame({"cell_id": ["c1", "c2"], "fold": [0, 0], "group": ["", ""], "pipeline": ["p", "p"],
                        "repeat": [0, 0], "donor_id": ["d", "d"], "y_true": ["a", "b"], "y_pred": ["a", "a"],
                        "score": [0.9, 0.6], "novel": [False, False], "label_in_training": [True, True],
                        "s:a": [0.9, 0.6], "s:b": [0.1, 0.4]})
    old.to_csv(tmp_path / "old.tsv", sep="\t", index=False)
    back = contracts.read_predictions([tmp_path / "old.tsv"])
    assert (~back["fallback"]).all()
    new = old.assign(fallback=[True, False])
    new.to_csv(tmp_path / "new.tsv.gz", sep="\t", index=False)
    back = contracts.read_predictions([tmp_path / "new.tsv.gz"])
    assert back["fallback"].tolist() == [True, False]
    assert metrics.score_rows(back, "disease")["n_fallback"] == 1


def test_leiden_clusters_above_the_exact_knn_size():
    """From 8,192 cells scanpy builds the kNN graph with pynndescent, whose newer releases return a
    ``csr_array`` that scanpy 1.11 cannot index (``'csr_array' object has no attribute 'getnnz'``):
    the paper's disease pipeline failed on every fold with more training cells (the 100% rehearsal)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, size=(4, 20))
    truth = np.repeat(np.arange(4), 2100)  # 8,400 cells
    X = centres[truth] + rng.normal(size=(truth.size, 20))
    labels = leiden_clusters(X, n_neighbors=15, resolution=0.4, random_state=0)
    assert labels.shape == truth.shape
    assert adjusted_rand_score(truth, labels) > 0.95
    assert np.array_equal(labels, leiden_clusters(X, n_neighbors=15, resolution=0.4, random_state=0))
