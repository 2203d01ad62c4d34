"""evaluate(): every test cell predicted, nothing fitted on test cells, real and synthetic data."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from sclinbench import data
from sclinbench.data.synthetic import make_atlas
from sclinbench.errors import SclinbenchError
from sclinbench.evaluate import intervals, metrics
from sclinbench.evaluate.engine import evaluate, pseudobulk
from sclinbench.evaluate.models import CentroidClassifier, ShuffledLabels, control_seed
from sclinbench.evaluate.splits import make_splits
from sclinbench.represent import rankz

ROOT = Path(__file__).resolve().parents[1]
PATIENTS = sorted((ROOT / "tests/data/liao2020/patients").glob("C*_subset_filtered_feature_bc_matrix.h5"))
CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())
PIPELINES = CONFIG["pipelines"]


@pytest.fixture(scope="module")
def liao():
    """Three COVID-19 BALF patients (real 10x data), infection from viral reads, standardized."""
    entry = yaml.safe_load((ROOT / "config/datasets.yaml").read_text())["liao2020"]
    raw = data.read_raw([str(p) for p in PATIENTS], "10x_h5",
                        file_obs=[{"donor_id": p.name.split("_")[0]} for p in PATIENTS])
    # the fixture keeps 1,000 of ~33k genes, so the registry's min_genes: 200 (set for whole files) is relaxed
    entry = {**entry, "qc": {"min_genes": 20}}
    return data.standardize(raw, entry, {}, source="fixture", name="liao2020")


def test_liao_disease_task_scores_every_test_cell(liao):
    assert "nCoV" not in liao.var_names
    counts = liao.obs.groupby(["donor_id", "condition"], observed=True).size().to_dict()
    assert counts == {("C144", "uninfected"): 120, ("C146", "infected"): 60, ("C146", "uninfected"): 120,
                      ("C149", "infected"): 60, ("C149", "uninfected"): 120}
    task = {"kind": "disease", "split": "donor", "n_folds": 3}
    splits = make_splits(liao.obs, task, seed=0, dataset="liao2020")
    pred = evaluate(liao, splits, PIPELINES, task, seed=0, dataset="liao2020")
    test = splits[splits.role == "test"]
    for name in PIPELINES:
        for _, rows in pred[pred.pipeline == name].groupby("repeat"):
            assert sorted(zip(rows.cell_id, rows.fold)) == sorted(zip(test.cell_id, test.fold))
    assert pred.loc[pred.pipeline == "control_shuffled", "repeat"].nunique() == 5
    assert (pred.loc[pred.pipeline != "control_shuffled", "repeat"] == 0).all()
    # each fold holds out exactly one patient
    merged = test.merge(liao.obs[["donor_id"]], left_on="cell_id", right_index=True)
    assert merged.groupby("fold").donor_id.nunique().eq(1).all()
    scores = metrics.score(pred, "disease")
    f1 = scores[scores.metric == "macro_f1"].groupby("pipeline").value.mean()
    assert f1.notna().all() and (f1 <= 1).all()


def test_changing_test_cells_changes_nothing_fitted(liao):
    """Leakage check on the whole evaluation: perturbing half of the test cells of a fold leaves
    the predictions of the other test cells bit-identical (every step was fitted on train only)."""
    task = {"kind": "disease", "split": "donor", "n_folds": 3}
    splits = make_splits(liao.obs, task, seed=0, dataset="liao2020")
    fold0 = splits[splits.fold == 0]
    before = evaluate(liao, fold0, PIPELINES, task, seed=0)
    test_ids = fold0.loc[fold0.role == "test", "cell_id"].to_numpy()
    changed = test_ids[::2]
    other = liao.copy()
    idx = other.obs_names.get_indexer(changed)
    X = other.X.tolil()
    rng = np.random.default_rng(1)
    X[idx] = sp.csr_matrix(rng.poisson(3.0, size=(len(idx), other.n_vars)).astype(np.float32))
    other.X = X.tocsr()
    after = evaluate(other, fold0, PIPELINES, task, seed=0)
    keep_b = before[~before.cell_id.isin(changed)].reset_index(drop=True)
    keep_a = after[~after.cell_id.isin(changed)].reset_index(drop=True)
    pd.testing.assert_frame_equal(keep_b, keep_a)
    # and the perturbed cells did change
    assert not before[before.cell_id.isin(changed)].reset_index(drop=True).equals(
        after[after.cell_id.isin(changed)].reset_index(drop=True))


def _toy(n=90, genes=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(["a", "b", "c"], n // 3)
    means = rng.gamma(2, 1, size=(3, genes)) * 3
    X = sp.csr_matrix(rng.poisson(means[np.repeat(np.arange(3), n // 3)]).astype(np.float32))
    obs = pd.DataFrame({"cell_type": labels, "donor_id": np.tile(["d1", "d2", "d3"], n // 3)},
                       index=[f"c{i}" for i in range(n)])
    return ad.AnnData(X=X, obs=obs)


def test_imported_embedding_is_scored_like_any_representation():
    adata = _toy()
    onehot = pd.get_dummies(adata.obs.cell_type).to_numpy(float)
    adata.obsm["X_fm"] = onehot + np.random.default_rng(0).normal(0, 0.3, onehot.shape)
    task = {"kind": "celltype", "split": "stratified", "n_folds": 3}
    splits = make_splits(adata.obs, task, seed=0)
    spec = {"fm_logreg": {"representation": {"name": "embedding", "obsm_key": "X_fm"},
                          "model": {"name": "logreg", "C": 1.0}}}
    pred = evaluate(adata, splits, spec, task)
    assert len(pred) == adata.n_obs
    assert (pred.y_true == pred.y_pred).mean() > 0.9
    with pytest.raises(SclinbenchError, match="embedding 'X_uce' is not in obsm .* X_fm"):
        evaluate(adata, splits, {"x": {"representation": {"name": "embedding", "obsm_key": "X_uce"},
                                       "model": {"name": "logreg"}}}, task)


def test_pseudobulk_sums_counts_per_donor():
    X = sp.csr_matrix(np.array([[1, 0], [2, 3], [0, 5]], dtype=np.float32))
    summed, labels, donors = pseudobulk(X, np.array(["x", "x", "y"]), np.array(["d2", "d2", "d1"]))
    assert list(donors) == ["d1", "d2"] and list(labels) == ["y", "x"]
    np.testing.assert_array_equal(summed.toarray(), [[0, 5], [3, 3]])


def test_stale_split_file_is_a_clear_error():
    adata = _toy()
    splits = make_splits(adata.obs, {"kind": "celltype", "split": "stratified", "n_folds": 3})
    splits.loc[0, "cell_id"] = "ghost"
    with pytest.raises(SclinbenchError, match="cell 'ghost' of the split table is not in dataset"):
        evaluate(adata, splits, {"r": PIPELINES["rankz_centroid"]}, {"kind": "celltype", "split": "stratified"})


def test_shuffled_control_draws_a_new_permutation_per_fold_and_repeat():
    adata = _toy(n=120)
    task = {"kind": "celltype", "split": "stratified", "n_folds": 3}
    splits = make_splits(adata.obs, task, seed=0)
    spec = {"representation": {"name": "rankz"}, "model": {"name": "centroid"}, "control": "shuffled",
            "repeats": 3}
    pred = evaluate(adata, splits, {"shuf": spec}, task, seed=7)
    seeds = {(f, r): control_seed(7, f, r) for f in range(3) for r in range(3)}
    assert len(set(seeds.values())) == 9
    Z = rankz(adata.X)
    y = adata.obs.cell_type.to_numpy()
    calls = {}
    for (fold, repeat), rows in pred.groupby(["fold", "repeat"]):
        train = adata.obs_names.get_indexer(splits[(splits.fold == fold) & (splits.role == "train")].cell_id)
        test = adata.obs_names.get_indexer(rows.cell_id)
        model = ShuffledLabels(CentroidClassifier(), random_state=seeds[(fold, repeat)]).fit(Z[train], y[train])
        np.testing.assert_array_equal(rows.y_pred.to_numpy(), model.predict(Z[test]))
        calls[(fold, repeat)] = model.permutation_
    # every fold and repeat permuted differently (not one seed reused)
    assert len({tuple(p[:20]) for p in calls.values()}) == 9


def test_majority_control_writes_constant_scores():
    adata = _toy()
    task = {"kind": "celltype", "split": "stratified", "n_folds": 3}
    pred = evaluate(adata, make_splits(adata.obs, task), {"m": PIPELINES["control_majority"]}, task)
    cols = [c for c in pred.columns if c.startswith("s:")]
    assert (pred[cols].to_numpy() == 0).all() and (pred.score == 0).all()


def test_cross_species_transfer_is_trained_on_every_source_cell():
    from sclinbench.data.gene_space import map_to_reference

    adatas, orth = make_atlas(seed=1, n_genes=300, cells_per_species=240, n_cell_types=4, n_donors=4,
                              n_disease_genes=10, species=("alpha", "beta"), divergence=(0.0, 0.3))
    adata = map_to_reference(adatas, orth, "alpha")
    task = {"kind": "cross_species", "split": "cross_species", "diagonal": {"split": "stratified", "n_folds": 3}}
    splits = make_splits(adata.obs, task, seed=0)
    pred = evaluate(adata, splits, {"rankz_centroid": PIPELINES["rankz_centroid"]}, task)
    alpha = (adata.obs.organism == "alpha").to_numpy()
    Z = rankz(adata.X)
    y = adata.obs.cell_type.astype(str).to_numpy()
    full = CentroidClassifier().fit(Z[alpha], y[alpha])
    ab = pred[pred.group == "alpha->beta"]
    idx = adata.obs_names.get_indexer(ab.cell_id)
    np.testing.assert_array_equal(ab.y_pred.to_numpy(), full.predict(Z[idx]))
    assert ab.label_in_training.to_numpy().tolist() == np.isin(y[idx], np.unique(y[alpha])).tolist()
    assert not ab.label_in_training.all()          # beta's own type is not in alpha
    diag = pred[pred.group == "alpha->alpha"]
    assert diag.cell_id.value_counts().eq(1).all() and len(diag) == alpha.sum()


@pytest.mark.parametrize("which", ["liao", "synthetic"])
def test_shuffled_control_mean_auroc_is_one_half(which, liao):
    """Over many permutations (each fold its own) the shuffled control's pooled AUROC centres on 0.5."""
    if which == "liao":
        adata, task = liao, {"kind": "disease", "split": "donor", "n_folds": 3}
    else:
        adatas, orth = make_atlas(seed=2, n_genes=300, cells_per_species=400, n_cell_types=5, n_donors=4,
                                  n_disease_genes=10, species=("alpha", "beta"), divergence=(0.0, 0.3))
        adata = adatas["alpha"]
        task = {"kind": "celltype", "split": "stratified", "n_folds": 3}
    spec = {**PIPELINES["control_shuffled"], "repeats": 40}
    pred = evaluate(adata, make_splits(adata.obs, task, seed=0), {"control_shuffled": spec}, task, seed=0)
    summary, _ = intervals.summarize_predictions(pred, task, n_boot=100)
    auc = summary[(summary.metric == "auroc_ovr") & (summary.group == "")].iloc[0]
    assert auc["n_repeats"] == 40
    print(f"shuffled control, {which}: mean AUROC {auc['value']:.3f} over 40 repeats "
          f"({auc['repeat_min']:.3f}-{auc['repeat_max']:.3f})")
    assert abs(auc["value"] - 0.5) < 0.05, auc["value"]
    assert auc["repeat_max"] - auc["repeat_min"] > 0.05   # single permutations do stray: hence repeats


def test_fold_with_one_class_is_not_averaged(liao):
    """liao2020: patient C144 has no infected cell. Its fold has no macro F1; the pooled score of the
    majority control is that of always calling 'uninfected', not the 1.0 of that one fold."""
    task = {"kind": "disease", "split": "donor", "n_folds": 3}
    splits = make_splits(liao.obs, task, seed=0, dataset="liao2020")
    pred = evaluate(liao, splits, {"control_majority": PIPELINES["control_majority"]}, task, seed=0)
    per_fold = metrics.score(pred, "disease")
    f1 = per_fold[per_fold.metric == "macro_f1"].set_index("fold")["value"]
    c144 = int(pred.loc[pred.cell_id.str.startswith("C144"), "fold"].iloc[0])
    assert np.isnan(f1[c144])
    summary, _ = intervals.summarize_predictions(pred, task, n_boot=200)
    pooled = summary[(summary.metric == "macro_f1") & (summary.group == "")].iloc[0]
    want = metrics.classification_scores(pred.y_true, pred.y_pred)["macro_f1"]
    assert pooled["value"] == pytest.approx(want) and pooled["value"] < 0.6
    assert pooled["unit"] == "donor" and pooled["n_units"] == 3


# ------------------------------------------------------------------------------------------------
# stateless representations computed once per dataset: identical predictions
# ------------------------------------------------------------------------------------------------
SHARING_PIPELINES = {
    **PIPELINES,  # rankz + centroid / majority / shuffled; log1p + HVG + scale + PCA + logreg
    "sqrt_anova_centroid": {"representation": {"name": "sqrt", "target_sum": 1e4},
                            "features": {"method": "anova", "k": 50}, "model": {"name": "centroid"}},
    "sqrt_anova_shuffled": {"representation": {"name": "sqrt", "target_sum": 1e4},
                            "features": {"method": "anova", "k": 50}, "model": {"name": "centroid"},
                            "control": "shuffled", "repeats": 2},
    "rankz_hvg_centroid": {"representation": {"name": "rankz"}, "features": {"method": "hvg", "n_top": 100},
                           "model": {"name": "centroid"}},
    "rankz_pca_logreg": {"representation": {"name": "rankz"}, "reduction": {"method": "pca", "n_components": 10},
                         "model": {"name": "logreg"}},
    "log1p_hvg_scale_centroid": {"representation": {"name": "log1p", "target_sum": 1e4},
                                 "features": {"method": "hvg", "n_top": 100}, "scale": {"max_value": 10},
                                 "model": {"name": "centroid"}},
    "log1p_median_pca_centroid": {"representation": {"name": "log1p", "target_sum": "median"},  # fitted: per fold
                                  "reduction": {"method": "pca", "n_components": 10}, "model": {"name": "centroid"}},
}


def _atlas_alpha():
    adatas, _ = make_atlas(seed=3, species=("alpha", "beta"), divergence=(0.0, 0.3), n_genes=600,
                           cells_per_species=700)
    return adatas["alpha"]


@pytest.mark.parametrize("case", ["atlas_stratified", "liao_donor", "atlas_pseudobulk"])
def test_shared_stateless_representations_give_identical_predictions(case, liao, monkeypatch):
    from sclinbench.represent.transformer import RepresentationTransformer

    if case == "atlas_stratified":
        adata, task = _atlas_alpha(), {"kind": "celltype", "split": "stratified", "n_folds": 3}
    elif case == "liao_donor":
        adata, task = liao, {"kind": "disease", "split": "donor", "n_folds": 3}
    else:
        adata, task = _atlas_alpha(), {"kind": "disease", "split": "donor_pseudobulk"}
    splits = make_splits(adata.obs, task, seed=0)
    calls = []
    original = RepresentationTransformer.represent_all
    monkeypatch.setattr(RepresentationTransformer, "represent_all",
                        lambda self, X: calls.append(self.name) or original(self, X))
    per_fold = evaluate(adata, splits, SHARING_PIPELINES, task, seed=0, share_stateless=False)
    assert calls == []
    shared = evaluate(adata, splits, SHARING_PIPELINES, task, seed=0)
    if case == "atlas_pseudobulk":  # counts are summed per donor before the transform: never shared
        assert calls == []
    else:  # each stateless representation of all cells once, whatever the number of folds
        assert sorted(calls) == ["log1p", "rankz", "sqrt"]
    pd.testing.assert_frame_equal(shared, per_fold, check_exact=True)


def test_papers_cross_species_centroid_through_the_evaluation():
    """The paper's basis (rankz of pseudobulk library fractions) on raw counts, transfer folds and a
    10% same-species hold-out: every test cell once, and the transfer fold is the model fitted on
    every cell of the training species."""
    from sclinbench.data.gene_space import map_to_reference

    adatas, orth = make_atlas(seed=1, n_genes=300, cells_per_species=240, n_cell_types=4, n_donors=4,
                              n_disease_genes=10, species=("alpha", "beta"), divergence=(0.0, 0.3))
    adata = map_to_reference(adatas, orth, "alpha")
    task = {"kind": "cross_species", "split": "cross_species", "protocol": "paper",
            "diagonal": {"split": "stratified_holdout", "test_fraction": 0.1}}
    splits = make_splits(adata.obs, task, seed=0)
    spec = {"representation": {"name": "counts"}, "model": {"name": "centroid", "basis": "pseudobulk_rankz"}}
    pred = evaluate(adata, splits, {"paper_centroid": spec, "rankz_centroid": PIPELINES["rankz_centroid"]}, task)
    alpha = (adata.obs.organism == "alpha").to_numpy()
    y = adata.obs.cell_type.astype(str).to_numpy()
    full = CentroidClassifier(basis="pseudobulk_rankz").fit(adata.X[alpha], y[alpha])
    ab = pred[(pred.group == "alpha->beta") & (pred.pipeline == "paper_centroid")]
    idx = adata.obs_names.get_indexer(ab.cell_id)
    np.testing.assert_array_equal(ab.y_pred.to_numpy(), full.predict(adata.X[idx]))
    diag = pred[(pred.group == "alpha->alpha") & (pred.pipeline == "paper_centroid")]
    assert diag.cell_id.value_counts().eq(1).all() and len(diag) == 24          # 10% of alpha's 240
    summary, _ = intervals.summarize_predictions(pred, task, n_boot=100)
    acc = summary[summary.metric == "accuracy"].set_index(["group", "pipeline"])["value"]
    # 4 types (chance 0.25); the paper's basis is a real classifier on and off the diagonal
    assert acc[("alpha->alpha", "paper_centroid")] > 0.6 and acc[("alpha->beta", "paper_centroid")] > 0.6


def test_counts_are_released_when_no_fold_needs_them(liao):
    """evaluate(..., release_counts=True) drops the counts once the stateless representation of all
    cells is computed and no later step reads counts: the same predictions, and X is gone from the
    handed-over AnnData. HVG selection reads the counts in its passes over the block, which come
    before the folds, so an HVG pipeline releases them too; a representation fitted per fold
    (median target sum) keeps them."""
    task = {"kind": "celltype", "split": "stratified_holdout", "n_repeats": 2, "test_fraction": 0.2}
    adata = liao.copy()
    adata.obs["cell_type"] = np.where(np.asarray(adata.X.sum(axis=1)).ravel() > np.median(
        np.asarray(adata.X.sum(axis=1)).ravel()), "high", "low")
    splits = make_splits(adata.obs, task, seed=0)
    stateless = {"rankz_pca_logreg": SHARING_PIPELINES["rankz_pca_logreg"],
                 "rankz_anova_scale_pca_logreg": {"representation": {"name": "rankz"},
                                                  "features": {"method": "anova", "k": 200},
                                                  "scale": {"max_value": None},
                                                  "reduction": {"method": "pca", "n_components": 5},
                                                  "model": {"name": "logreg"}}}
    with_hvg = dict(stateless, log1p_hvg_scale_centroid=SHARING_PIPELINES["log1p_hvg_scale_centroid"])
    fitted = dict(with_hvg, median_centroid={"representation": {"name": "log1p", "target_sum": "median"},
                                             "model": {"name": "centroid"}})
    for pipelines, released_after in ((stateless, True), (with_hvg, True), (fitted, False)):
        kept = evaluate(adata, splits, pipelines, task, seed=0)
        handed = adata.copy()
        released = evaluate(handed, splits, pipelines, task, seed=0, release_counts=True)
        pd.testing.assert_frame_equal(released, kept, check_exact=True)
        assert (handed.X is None) == released_after, sorted(pipelines)
        assert adata.X is not None
