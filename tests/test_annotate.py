"""sclinbench.tool: gene matching, the portable pipeline and model file, the annotator, the DAG rule.

Data: seeded negative-binomial counts with marker genes (tests/synthetic_counts.py), the synthetic
three-species atlas (sclinbench.data.synthetic, with its ortholog table), and the real Ensembl BioMart
human->mouse export subset of tests/data/orthologs (real gene ids, synthetic counts).
"""

from __future__ import annotations

import json
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from conftest import REPO, copy_workflow, run_snakemake
from real_fixtures import stratified_query_mask
from synthetic_counts import nb_counts

from sclinbench.data.gene_space import one_to_one
from sclinbench.data.orthologs import read_biomart
from sclinbench.data.synthetic import make_atlas
from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.pipeline import build_pipeline
from sclinbench.evaluate.predictions import class_scores
from sclinbench.represent import rankz
from sclinbench.tool import annotate as tool
from sclinbench.tool import catalog, portable
from sclinbench.tool import genes as gm
from sclinbench.tool.jobs import selected_jobs as jobs_of_config

ORTHOLOGS = REPO / "tests" / "data" / "orthologs" / "human_mouse_subset.tsv.gz"

SPECS = {
    "centroid": {"representation": {"name": "rankz"}, "model": {"name": "centroid"}},
    "anova_centroid": {"representation": {"name": "rankz"}, "features": {"method": "anova", "k": 20},
                       "model": {"name": "centroid"}},
    "log1p_pca_logreg": {"representation": {"name": "log1p"}, "features": {"method": "hvg", "n_top": 30},
                         "scale": {"max_value": 10}, "reduction": {"method": "pca", "n_components": 8},
                         "model": {"name": "logreg", "C": 1.0}},
    "rankz_whiten_logreg": {"representation": {"name": "rankz"}, "features": {"method": "anova", "k": 30},
                            "scale": {"max_value": 10},
                            "reduction": {"method": "pca", "n_components": 6, "whiten": True},
                            "model": {"name": "logreg", "C": 1.0}},
    "sqrt_svm": {"representation": {"name": "sqrt"}, "model": {"name": "linear_svm", "C": 0.1}},
    "pearson_ridge": {"representation": {"name": "pearson"}, "features": {"method": "hvg", "n_top": 30},
                      "model": {"name": "ridge"}},
    "rankz_pca_lda": {"representation": {"name": "rankz"}, "reduction": {"method": "pca", "n_components": 6},
                      "model": {"name": "lda"}},
    "logreg_cv": {"representation": {"name": "log1p", "target_sum": "median"},
                  "model": {"name": "logreg", "C": "cv", "Cs": [0.1, 1.0], "cv_folds": 2}},
}


def _adata(X, y, genes=None, symbols=None):
    genes = genes if genes is not None else [f"G{i:03d}" for i in range(X.shape[1])]
    var = pd.DataFrame(index=pd.Index(genes, dtype=str))
    if symbols is not None:
        var["gene_symbol"] = symbols
    obs = pd.DataFrame({"cell_type": y}, index=[f"c{i}" for i in range(X.shape[0])])
    return ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=obs, var=var)


@pytest.fixture(scope="module")
def counts():
    X, y = nb_counts(n_cells=400, n_genes=60, n_types=4, seed=1)
    return X, y


@pytest.fixture(scope="module")
def reference(counts):
    X, y = counts
    return tool.prepare_reference(_adata(X[:300], y[:300]), "cell_type", source="test")


# --------------------------------------------------------------------------------------------------
# portable pipelines: the same predictions as the benchmark's fitted Pipeline, through a safe file
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
def test_portable_pipeline_predicts_as_the_fitted_pipeline(counts, name, tmp_path):
    X, y = counts
    pipe = build_pipeline(SPECS[name], seed=0).fit(X[:300], y[:300])
    expected, classes = class_scores(pipe[-1], pipe[:-1].transform(X[300:]))
    lin = portable.from_pipeline(pipe)
    y_pred, conf, scores = lin.predict_scores(X[300:])
    assert list(lin.classes_) == list(classes)
    np.testing.assert_allclose(scores, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(y_pred, pipe.predict(X[300:]).astype(str))
    np.testing.assert_allclose(conf, expected.max(axis=1))
    portable.save(tmp_path / "m.npz", lin, {"x": 1}, {})
    loaded, meta, _ = portable.load(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.predict_scores(X[300:])[2], scores, rtol=0, atol=0)
    assert meta["x"] == 1


def test_binary_models_score_both_classes(counts):
    X, y = counts
    keep = np.isin(y, ["t0", "t1"])
    for model in ({"name": "logreg"}, {"name": "linear_svm"}):
        spec = {"representation": {"name": "log1p"}, "model": model}
        pipe = build_pipeline(spec).fit(X[keep][:150], y[keep][:150])
        expected, _ = class_scores(pipe[-1], pipe[:-1].transform(X[keep][150:]))
        got = portable.from_pipeline(pipe).predict_scores(X[keep][150:])
        np.testing.assert_allclose(got[2], expected, atol=1e-6)  # sklearn computes in float32 here
        np.testing.assert_array_equal(got[0], pipe.predict(X[keep][150:]))


def test_knn_and_controls_are_refused(reference):
    for spec, needle in (({"representation": {"name": "rankz"}, "model": {"name": "knn"}}, "linear models"),
                         ({"representation": {"name": "rankz"}, "model": {"name": "centroid"}, "control": "shuffled"},
                          "control"),
                         ({"role": "control", "representation": {"name": "rankz"}, "model": {"name": "majority"}},
                          "control"),
                         ({"representation": {"name": "embedding", "obsm_key": "X_pca"}, "model": {"name": "logreg"}},
                          "embedding")):
        with pytest.raises(SclinbenchError, match=needle):
            tool.Annotator.fit(reference, spec, "p")


def test_gene_weights_compose_the_linear_steps(counts):
    """weights @ representation(x) + constant == class scores, through anova, scale and whitened PCA."""
    X, y = counts
    spec = {**SPECS["rankz_whiten_logreg"], "scale": {"max_value": 1e9}}  # no clipping: exact
    lin = portable.from_pipeline(build_pipeline(spec).fit(X[:300], y[:300]))
    W = lin.gene_weights()
    R = rankz(X[300:]).toarray()
    logits = portable._scores(lin.transform(X[300:]), lin.scorer.coef_.T) + lin.scorer.intercept_
    diff = logits - R @ W.T
    np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), atol=1e-8)  # a per-class constant


def test_top_genes_are_the_markers(reference):
    ann = tool.Annotator.fit(reference, SPECS["centroid"], "rankz_centroid")
    top = ann.top_genes(4)
    for t in range(4):  # nb_counts: genes 4t..4t+3 mark type t
        genes = set(top[top.label == f"t{t}"].gene_id)
        assert genes == {f"G{g:03d}" for g in range(4 * t, 4 * t + 4)}, (t, genes)
    assert (top.weight > 0).all()


def test_stateless_representation_is_computed_once_with_the_same_fit(counts):
    """annotate computes rankz once for all reference cells (a per-cell transform) and fits the rest
    of the pipeline on the rows it needs: the same model as fitting the whole pipeline on those cells."""
    X, y = counts
    for name in ("centroid", "rankz_whiten_logreg", "sqrt_svm"):
        spec = SPECS[name]
        rep = build_pipeline(spec).steps[0][1]
        assert tool._stateless_representation(rep)
        Z = rep.fit(X).transform(X)
        rows = np.arange(250)
        fast = tool._fit_pipeline(spec, X[rows], y[rows], 0, Z[rows])
        slow = tool._fit_pipeline(spec, X[rows], y[rows], 0)
        np.testing.assert_allclose(fast.predict_scores(X[300:])[2], slow.predict_scores(X[300:])[2], atol=1e-10)
    for name in ("log1p_pca_logreg", "pearson_ridge", "logreg_cv"):  # hvg / fitted parameters: not stateless
        assert not tool._stateless_representation(build_pipeline(SPECS[name]).steps[0][1])


# --------------------------------------------------------------------------------------------------
# the model file
# --------------------------------------------------------------------------------------------------
def test_model_round_trip_and_safety_checks(reference, counts, tmp_path):
    X, _ = counts
    ann = tool.Annotator.fit(reference, SPECS["log1p_pca_logreg"], "log1p_pca_logreg")
    path = tmp_path / "m.npz"
    ann.save(path)
    back = tool.Annotator.load(path)
    pd.testing.assert_frame_equal(back.predict(X[300:]), ann.predict(X[300:]))
    assert back.threshold == ann.threshold and back.label_counts == ann.label_counts
    with np.load(path, allow_pickle=False) as npz:  # arrays and JSON only
        store = {k: npz[k] for k in npz.files}
    assert all(v.dtype != object for v in store.values())

    def rewrite(name, change):
        doc = json.loads(str(store["__meta__"]))
        new = dict(store)
        change(doc, new)
        new["__meta__"] = np.array(json.dumps(doc))
        np.savez(tmp_path / name, **new)
        return tmp_path / name

    # a readable format written by another sclinbench version is read, with the same predictions
    old = rewrite("old.npz", lambda d, s: d.update(sclinbench_version="0.0.1"))
    pd.testing.assert_frame_equal(tool.Annotator.load(old).predict(X[300:]), ann.predict(X[300:]))
    fmt = rewrite("fmt.npz", lambda d, s: d.update(format_version=99))
    with pytest.raises(SclinbenchError, match="model format 99 .*newer than this sclinbench.*upgrade sclinbench, or "
                                              "rebuild it with this one: sclinbench train --reference test"):
        tool.Annotator.load(fmt)
    genes = rewrite("genes.npz", lambda d, s: s.update({"data/gene_ids": s["data/gene_ids"][:-5],
                                                        "data/gene_symbols": s["data/gene_symbols"][:-5]}))
    with pytest.raises(SclinbenchError, match="lists 55 genes but its pipeline was fitted on 60"):
        tool.Annotator.load(genes)
    evil = rewrite("class.npz", lambda d, s: d["steps"][0].update({"class": "os.system"}))
    with pytest.raises(SclinbenchError, match="unknown step class"):
        tool.Annotator.load(evil)
    np.savez(tmp_path / "pickle.npz", __meta__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SclinbenchError, match="pickled"):
        tool.Annotator.load(tmp_path / "pickle.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(SclinbenchError, match="not a sclinbench model"):
        tool.Annotator.load(tmp_path / "text.npz")
    assert zipfile.is_zipfile(path)


# --------------------------------------------------------------------------------------------------
# genes
# --------------------------------------------------------------------------------------------------
def test_query_genes_are_put_on_the_reference_list(reference, counts):
    X, y = counts
    ann = tool.Annotator.fit(reference, SPECS["centroid"], "rankz_centroid")
    keep = np.random.default_rng(0).permutation(60)[:50]  # 10 reference genes missing, the rest shuffled
    Xq = sp.hstack([X[300:][:, keep], sp.csr_matrix(np.ones((100, 5), dtype=np.float32))]).tocsr()
    names = [f"G{g:03d}" for g in keep] + [f"OTHER{i}" for i in range(5)]  # + 5 genes the reference lacks
    match = ann.match(_adata(Xq, y[300:], genes=names).var, min_shared=10)
    assert (match.n_shared, match.n_target, match.n_query) == (50, 60, 55)
    expected = X[300:].toarray()
    expected[:, np.setdiff1d(np.arange(60), keep)] = 0  # missing genes count zero
    np.testing.assert_array_equal(match.apply(Xq).toarray(), expected)
    assert match.summary()["fraction_of_reference"] == pytest.approx(50 / 60)


def test_ensembl_versions_duplicates_and_symbol_columns():
    ids = ["ENSG00000000003.15", "ENSG00000000005.6", "ENSG00000000419.14", "ENSG00000000457"]
    assert list(gm.clean_ids(ids)) == ["ENSG00000000003", "ENSG00000000005", "ENSG00000000419", "ENSG00000000457"]
    target = {"var_names": gm.clean_ids(["ENSG00000000003", "ENSG00000000005", "ENSG00000000419"]),
              "var['gene_symbol']": gm.clean_ids(["TSPAN6", "TNMD", "DPM1"])}
    # the query is indexed by symbols (one duplicated), with no id column: matched on the symbols, summed
    qvar = pd.DataFrame(index=["DPM1", "TSPAN6", "TSPAN6", "XYZ"])
    keys = gm.gene_keys(qvar)
    m = gm.match_genes(target, keys, target_ids=np.array(["a", "b", "c"], dtype=object),
                       target_symbols=np.array(["TSPAN6", "TNMD", "DPM1"], dtype=object), min_shared=1)
    assert m.matched_on == "query var_names = reference var['gene_symbol']"
    X = sp.csr_matrix(np.array([[1, 2, 3, 4]], dtype=np.float32))
    np.testing.assert_array_equal(m.apply(X).toarray(), [[5, 0, 1]])
    assert "Ensembl gene ids (human" in gm.describe_ids(ids)
    assert "upper case" in gm.describe_ids(["CD3D", "CD4", "MS4A1", "LYZ"])
    assert "mouse-style" in gm.describe_ids(["Cd3d", "Cd4", "Ms4a1", "Lyz2"])


def test_too_few_shared_genes_names_both_id_types(reference):
    ann = tool.Annotator.fit(reference, SPECS["centroid"], "rankz_centroid")
    qvar = pd.DataFrame(index=[f"ENSMUSG{i:011d}" for i in range(60)])
    with pytest.raises(SclinbenchError) as err:
        ann.match(qvar, min_shared=20, query_name="query q.h5ad")
    msg = str(err.value)
    assert "shares 0 of 60 genes" in msg and "at least 20" in msg
    assert "Ensembl gene ids (mouse" in msg and "gene ids like 'G000'" in msg and "\n" not in msg


# --------------------------------------------------------------------------------------------------
# the annotator
# --------------------------------------------------------------------------------------------------
def test_reference_checks(counts):
    X, y = counts
    a = _adata(X[:100], y[:100])
    with pytest.raises(SclinbenchError, match="no obs column 'celltype'.*its obs columns are: cell_type"):
        tool.prepare_reference(a, "celltype")
    b = a.copy()
    b.obs.loc[b.obs_names[0], "cell_type"] = "lonely"
    with pytest.raises(SclinbenchError, match="label 'lonely' of column 'cell_type' has only one cell"):
        tool.prepare_reference(b, "cell_type")
    ref = tool.prepare_reference(b, "cell_type", min_cells_per_label=2)
    assert "lonely" not in set(ref.labels) and ref.adata.n_obs == 99
    c = a.copy()
    c.obs["cell_type"] = c.obs["cell_type"].astype(object)
    c.obs.iloc[:7, 0] = np.nan  # unlabelled cells are set aside, never a class
    ref = tool.prepare_reference(c, "cell_type")
    assert ref.n_set_aside == 7 and ref.adata.n_obs == 93 and "unknown" not in set(ref.labels)
    d = a.copy()
    d.X = sp.csr_matrix(np.log1p(d.X.toarray()))
    with pytest.raises(SclinbenchError, match="no raw integer counts.*X holds non-integer values.*raw.X absent"):
        tool.prepare_reference(d, "cell_type")
    d.layers["counts"] = a.X.copy()
    assert tool.prepare_reference(d, "cell_type").counts_key == "layers/counts"


def test_annotate_in_memory_keeps_every_query_cell(reference, counts):
    X, y = counts
    Xq = X[300:].tolil()
    Xq[:3] = 0  # three empty cells: labelled unassigned, not dropped
    q = _adata(Xq.tocsr(), y[300:])
    res = tool.annotate(q, reference=reference, pipeline_name="rankz_centroid", spec=SPECS["centroid"],
                        truth="cell_type", min_shared_genes=10)
    obs = res.adata.obs
    assert res.adata.n_obs == 100
    assert (obs["sclinbench_label"][:3] == "unassigned").all() and obs["sclinbench_confidence"][:3].isna().all()
    assert obs["sclinbench_label"][3:].isin(["t0", "t1", "t2", "t3"]).all()
    assert obs["sclinbench_novelty_score"][3:].between(0, 1).all()
    m = res.metrics.set_index(["set", "metric"])["value"]
    assert m[("query_shared_labels", "macro_f1")] > 0.85
    assert res.labels["n_cells"].sum() == 100
    uns = res.adata.uns["sclinbench"]
    assert uns["genes"]["n_shared"] == 60 and json.loads(uns["spec"])["model"]["name"] == "centroid"
    assert uns["versions"]["sclinbench"] and "threshold" in uns["novelty"]


def test_novelty_flags_about_the_calibrated_share_and_catches_a_new_type():
    X, y = nb_counts(n_cells=2000, n_genes=80, n_types=5, seed=3)
    known = y != "t4"
    ref = tool.prepare_reference(_adata(X[:1500][known[:1500]], y[:1500][known[:1500]]), "cell_type")
    ann = tool.Annotator.fit(ref, SPECS["centroid"], "rankz_centroid", novelty_quantile=0.05)
    query = _adata(X[1500:], y[1500:])
    pred = ann.predict(ann.match(query.var, min_shared=10).apply(query.X))
    new = ~known[1500:]
    rate_known = pred["is_novel"][~new].mean()
    assert 0.0 < rate_known < 0.15, rate_known  # calibrated at 5% of held-out reference cells
    assert pred["is_novel"][new].mean() > 3 * rate_known
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(new, pred["novelty_score"]) > 0.8
    assert ann.calibration["n_heldout_cells"] == pytest.approx(0.2 * ref.adata.n_obs, abs=4)


def test_reference_mode_fits_on_the_shared_genes(reference, counts):
    """With a reference, ranks cover the same genes on both sides: the fit uses the genes the query has."""
    X, y = counts
    q = _adata(X[300:, :45], y[300:], genes=[f"G{i:03d}" for i in range(45)])
    res = tool.annotate(q, reference=reference, pipeline_name="rankz_centroid", spec=SPECS["centroid"],
                        min_shared_genes=10)
    assert res.annotator.pipeline.n_genes == 45 and res.adata.uns["sclinbench"]["genes"]["n_genes_fitted"] == 45
    assert res.adata.uns["sclinbench"]["genes"]["n_reference_genes"] == 60


def test_across_species_through_the_atlas_orthologs(tmp_path):
    adatas, table = make_atlas(seed=0, cells_per_species=600, n_genes=400, n_cell_types=4, n_disease_genes=10)
    path = tmp_path / "orth.tsv"
    table.to_csv(path, sep="\t", index=False)
    ref = tool.prepare_reference(adatas["alpha"], "cell_type", source="alpha")
    ann = tool.Annotator.fit(ref, SPECS["centroid"], "rankz_centroid")
    pairs = gm.read_ortholog_table(path, "alpha", "beta")
    beta = adatas["beta"].copy()
    res = tool.annotate(beta, annotator=ann, pairs=pairs, truth="cell_type")
    one2one = table[(table.other_species == "beta") & (table.homology_type == "ortholog_one2one")]
    assert res.genes.n_shared == len(set(one2one.reference_gene) & set(ref.adata.var["gene_id"]))
    assert "through orthologs" in res.genes.matched_on
    m = res.metrics.set_index(["set", "metric"])["value"]
    assert m[("query_shared_labels", "macro_f1")] > 0.6  # 4 types: chance is about 0.25
    # beta's species-only type is never a reference label: scored apart, never mixed into the F1
    assert m[("query_other_labels", "novel_flag_rate")] >= 0
    assert res.metrics.set_index("set").loc["query_other_labels", "labels"].tolist()[0] == "type_05"
    # without orthologs, the species-specific ids share nothing
    with pytest.raises(SclinbenchError, match="shares 0 of"):
        ann.match(adatas["beta"].var, min_shared=10)
    # the table the other way round (beta as reference_species) gives the same mapping
    flipped = table.rename(columns={"reference_species": "other_species", "other_species": "reference_species",
                                    "reference_gene": "other_gene", "other_gene": "reference_gene",
                                    "reference_symbol": "other_symbol", "other_symbol": "reference_symbol"})
    flipped[flipped.reference_species == "beta"].to_csv(tmp_path / "flip.tsv", sep="\t", index=False)
    again = ann.match(adatas["beta"].var, pairs=gm.read_ortholog_table(tmp_path / "flip.tsv"))
    np.testing.assert_array_equal(again.source_to_target, ann.match(adatas["beta"].var, pairs=pairs).source_to_target)


def test_across_species_with_a_real_biomart_export():
    """Real human/mouse Ensembl ids of the BioMart export fixture, synthetic counts on them."""
    one = one_to_one(read_biomart(ORTHOLOGS, "human", "mouse")).iloc[:200]
    X, y = nb_counts(n_cells=300, n_genes=200, n_types=3, seed=5)
    human = _adata(X[:200], y[:200], genes=list(one.reference_gene))
    order = np.random.default_rng(1).permutation(200)
    mouse = _adata(X[200:][:, order], y[200:], genes=list(one.other_gene.iloc[order]))
    ref = tool.prepare_reference(human, "cell_type")
    pairs = gm.read_ortholog_table(ORTHOLOGS, "human", "mouse")
    res = tool.annotate(mouse, reference=ref, pipeline_name="rankz_centroid", spec=SPECS["centroid"], pairs=pairs,
                        truth="cell_type")
    assert res.genes.n_shared == ref.adata.n_vars  # every reference gene (genes without counts are removed)
    assert ref.adata.n_vars > 150 and ref.adata.var_names[0].startswith("ENSG")
    # the other way round: a mouse reference labels human cells with the same human->mouse export
    mouse_ref = tool.prepare_reference(_adata(X[:200][:, order], y[:200], genes=list(one.other_gene.iloc[order])),
                                       "cell_type")
    back = gm.read_ortholog_table(ORTHOLOGS, "mouse", "human")
    res = tool.annotate(_adata(X[200:], y[200:], genes=list(one.reference_gene)), reference=mouse_ref,
                        pipeline_name="rankz_centroid", spec=SPECS["centroid"], pairs=back, truth="cell_type")
    assert res.genes.n_shared == mouse_ref.adata.n_vars
    assert res.metrics.set_index(["set", "metric"])["value"][("query_shared_labels", "macro_f1")] > 0.9
    assert res.metrics.set_index(["set", "metric"])["value"][("query_shared_labels", "macro_f1")] > 0.9


def test_output_may_not_overwrite_an_input(tmp_path):
    q = tmp_path / "q.h5ad"
    q.write_text("x")
    with pytest.raises(SclinbenchError, match="--out .*q.h5ad is the query file"):
        tool.check_outputs(tool.output_paths(tmp_path / "sub" / ".." / "q.h5ad"), {"query": q})
    tool.check_outputs(tool.output_paths(tmp_path / "out.h5ad"), {"query": q})


def test_builtin_pipelines_are_the_config_entries():
    """Without a checkout the command knows the default pipeline; it must equal its config entry."""
    config = yaml.safe_load(open(REPO / "config" / "config.yaml"))
    assert tool.DEFAULT_PIPELINE in config["pipelines"]
    for name, spec in catalog.BUILTIN_PIPELINES.items():
        assert tool.check_spec(name, spec) == tool.check_spec(name, config["pipelines"][name])
    assert tool.check_spec(tool.DEFAULT_PIPELINE, config["pipelines"][tool.DEFAULT_PIPELINE]).representation == {
        "name": "rankz"}


def test_schema_and_package_agree_on_the_annotate_defaults():
    schema = yaml.safe_load(open(REPO / "config" / "schema.yaml"))["properties"]["annotate"]["additionalProperties"]
    props = schema["properties"]
    for part, defaults in ((props, tool.JOB_DEFAULTS), (props["reference"]["properties"], tool.REFERENCE_DEFAULTS),
                           (props["query"]["properties"], tool.QUERY_DEFAULTS)):
        for key, value in defaults.items():
            assert part[key]["default"] == value, key
    assert tool.DEFAULT_PIPELINE in props["pipeline"]["description"]
    from sclinbench.cli import build_parser

    args = build_parser().parse_args(["annotate", "--model", "m", "--query", "q", "--out", "o"])
    assert (args.min_shared_genes, args.calibration_fraction, args.novelty_quantile, args.key_added, args.top_genes) == (
        100, 0.2, 0.01, "sclinbench", 20)


# --------------------------------------------------------------------------------------------------
# the workflow's annotate rule on the embedded default
# --------------------------------------------------------------------------------------------------
@pytest.mark.workflow
def test_annotate_rule_on_the_embedded_default(default_run):
    workdir, _ = default_run
    config = yaml.safe_load(open(workdir / "config" / "config.yaml"))
    atlas = ad.read_h5ad(workdir / "resources/standardized/atlas.h5ad")
    for name in config["annotate"]:
        for ext in ("h5ad", "labels.tsv", "top_genes.tsv", "metrics.tsv"):
            assert (workdir / f"results/annotate/{name}.{ext}").stat().st_size > 0
    out = ad.read_h5ad(workdir / "results/annotate/atlas_heldout_donors.h5ad")
    held = atlas.obs["organism"].astype(str).eq("alpha") & atlas.obs["donor_id"].astype(str).isin(["alpha_d7", "alpha_d8"])
    assert sorted(out.obs_names) == sorted(atlas.obs_names[held.to_numpy()])  # every query cell, nothing else
    for col in ("sclinbench_label", "sclinbench_confidence", "sclinbench_novelty_score", "sclinbench_is_novel"):
        assert col in out.obs.columns
    uns = out.uns["sclinbench"]
    assert uns["pipeline"] == "rankz_centroid" and len(uns["reference_sha256"]) == 64
    assert uns["n_reference_cells"] == int((atlas.obs["organism"].astype(str).eq("alpha") & ~held).sum())
    m = pd.read_csv(workdir / "results/annotate/atlas_heldout_donors.metrics.tsv", sep="\t").set_index(["set", "metric"])
    assert m.loc[("query_shared_labels", "macro_f1"), "value"] > 0.8
    cross = pd.read_csv(workdir / "results/annotate/atlas_alpha_to_beta.metrics.tsv", sep="\t").set_index(["set", "metric"])
    assert cross.loc[("query_shared_labels", "macro_f1"), "value"] > 0.7
    assert cross.xs("query_other_labels", level="set")["labels"].tolist() == ["type_09"] * 2
    assert cross.loc[("query_other_labels", "novelty_auroc"), "value"] > 0.7
    labels = pd.read_csv(workdir / "results/annotate/atlas_alpha_to_beta.labels.tsv", sep="\t")
    assert labels["n_cells"].sum() == int(atlas.obs["organism"].astype(str).eq("beta").sum())


def test_which_annotate_jobs_a_config_runs():
    jobs = {"a": {}, "b": {}}
    assert list(jobs_of_config({"annotate": jobs})) == ["a", "b"]
    assert jobs_of_config({"annotate": jobs, "use_tasks": ["t"]}) == {}  # a config of one's own
    assert list(jobs_of_config({"annotate": jobs, "use_tasks": ["t"], "use_annotate": ["b"]})) == ["b"]
    with pytest.raises(SclinbenchError, match="use_annotate names 'c', which is not under 'annotate:'"):
        jobs_of_config({"annotate": jobs, "use_annotate": ["c"]})


def test_annotate_job_with_an_unknown_dataset_is_one_line(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "bad.yaml").write_text(
        "annotate:\n  mine:\n    reference: {dataset: atlass}\n    query: {dataset: atlas}\n")
    proc = run_snakemake(workdir, "-n", "--configfile", "config/config.yaml", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "annotate job 'mine': reference dataset 'atlass' is not in the registry" in proc.stdout + proc.stderr
    (workdir / "bad.yaml").write_text(
        "annotate:\n  mine:\n    reference: {dataset: atlas}\n    query: {dataset: atlas}\n    pipeline: control_majority\n")
    proc = run_snakemake(workdir, "-n", "--configfile", "config/config.yaml", "bad.yaml", check=False)
    assert "pipeline 'control_majority' is a control" in proc.stdout + proc.stderr


@pytest.mark.workflow
def test_annotate_rule_with_a_query_file_and_an_ortholog_table(tmp_path):
    """A user's raw h5ad of another species, through a user's ortholog table, as a DAG target."""
    workdir = copy_workflow(tmp_path / "wf")
    entry = yaml.safe_load(open(REPO / "config" / "datasets.yaml"))["atlas"]["synthetic"]
    adatas, table = make_atlas(**entry)  # the registry's atlas: the same genes as resources/standardized/atlas.h5ad
    adatas["gamma"].write_h5ad(workdir / "gamma_raw.h5ad")
    table.to_csv(workdir / "orthologs.tsv", sep="\t", index=False)
    (workdir / "mine.yaml").write_text(
        "annotate:\n  gamma_file:\n"
        "    reference: {dataset: atlas, subset: {organism: [alpha]}, species: alpha}\n"
        "    query: {path: gamma_raw.h5ad, truth: cell_type, species: gamma}\n"
        "    orthologs: {source: file, path: orthologs.tsv}\n")
    run_snakemake(workdir, "results/annotate/gamma_file.h5ad", "--configfile", "config/config.yaml", "mine.yaml")
    out = ad.read_h5ad(workdir / "results/annotate/gamma_file.h5ad")
    assert out.n_obs == adatas["gamma"].n_obs and out.n_vars == adatas["gamma"].n_vars  # the user's file, labelled
    genes = out.uns["sclinbench"]["genes"]
    assert "through orthologs" in genes["matched_on"] and genes["n_shared"] > 1000
    m = pd.read_csv(workdir / "results/annotate/gamma_file.metrics.tsv", sep="\t").set_index(["set", "metric"])
    assert m.loc[("query_shared_labels", "macro_f1"), "value"] > 0.5
    proc = run_snakemake(workdir, "-n", "results/annotate/gamma_file.h5ad", "--configfile", "config/config.yaml",
                         "mine.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------------
# a saved model gives the labels of the one-call path
# --------------------------------------------------------------------------------------------------
def _same_labels(a, b):
    pd.testing.assert_series_equal(a.obs["sclinbench_label"], b.obs["sclinbench_label"])
    np.testing.assert_allclose(a.obs["sclinbench_confidence"], b.obs["sclinbench_confidence"], rtol=1e-10)
    np.testing.assert_allclose(a.obsm["sclinbench_scores"], b.obsm["sclinbench_scores"], rtol=1e-10, atol=1e-12)
    ga, gb = a.uns["sclinbench"]["genes"], b.uns["sclinbench"]["genes"]
    for key in ("n_shared", "n_missing", "n_genes_fitted", "heldout_macro_f1_all_genes",
                "heldout_macro_f1_shared_genes", "macro_f1_cost"):
        assert ga.get(key) == gb.get(key), key


@pytest.mark.parametrize("name", ["centroid", "log1p_pca_logreg"])
def test_model_and_reference_give_the_same_labels_when_query_genes_are_missing(reference, counts, name, tmp_path,
                                                                                caplog):
    """Within species, 15 of 60 reference genes missing from the query: --model refits on the 45 from the
    reference counts it keeps, as --reference fits on them: the same labels, scores and stated cost."""
    X, y = counts
    keep = np.random.default_rng(2).permutation(60)[:45]
    q = _adata(X[300:][:, keep], y[300:], genes=[f"G{g:03d}" for g in keep])
    ann = tool.Annotator.fit(reference, SPECS[name], name)
    ann.save(tmp_path / "m.npz")
    model = tool.Annotator.load(tmp_path / "m.npz")
    with caplog.at_level("WARNING", logger="sclinbench.annotate"):
        a = tool.annotate(q.copy(), annotator=model, min_shared_genes=10).adata
    assert "the query lacks 15 of the 60 reference genes (25.0%)" in caplog.text and "cost" in caplog.text
    b = tool.annotate(q.copy(), reference=reference, pipeline_name=name, spec=SPECS[name], min_shared_genes=10).adata
    _same_labels(a, b)
    g = a.uns["sclinbench"]["genes"]
    assert g["n_missing"] == 15 and g["n_genes_fitted"] == 45 and g["refitted_on_shared_genes"]
    assert g["heldout_macro_f1_all_genes"] == pytest.approx(ann.calibration["macro_f1"])
    assert g["macro_f1_cost"] == pytest.approx(g["heldout_macro_f1_all_genes"] - g["heldout_macro_f1_shared_genes"])
    assert a.uns["sclinbench"]["model"] == str(tmp_path / "m.npz")
    # without the reference counts the missing genes count zero: other scores, and a warning saying so
    ann.save(tmp_path / "slim.npz", with_reference_counts=False)
    assert (tmp_path / "slim.npz").stat().st_size < (tmp_path / "m.npz").stat().st_size
    caplog.clear()
    with caplog.at_level("WARNING", logger="sclinbench.annotate"):
        c = tool.annotate(q.copy(), annotator=tool.Annotator.load(tmp_path / "slim.npz"), min_shared_genes=10).adata
    assert "keeps no reference counts" in caplog.text and "count zero" in caplog.text
    assert not c.uns["sclinbench"]["genes"]["refitted_on_shared_genes"]
    assert not np.allclose(c.obsm["sclinbench_scores"], a.obsm["sclinbench_scores"])


def test_model_and_reference_give_the_same_labels_across_species(tmp_path):
    """alpha labels beta through the atlas's one-to-one orthologs (beta lacks the alpha genes without one)."""
    adatas, table = make_atlas(seed=0, cells_per_species=600, n_genes=400, n_cell_types=4, n_disease_genes=10)
    table.to_csv(tmp_path / "orth.tsv", sep="\t", index=False)
    pairs = gm.read_ortholog_table(tmp_path / "orth.tsv", "alpha", "beta")
    ref = tool.prepare_reference(adatas["alpha"], "cell_type", source="alpha")
    tool.Annotator.fit(ref, SPECS["centroid"], "rankz_centroid").save(tmp_path / "alpha.npz")
    a = tool.annotate(adatas["beta"].copy(), annotator=tool.Annotator.load(tmp_path / "alpha.npz"), pairs=pairs,
                      truth="cell_type")
    b = tool.annotate(adatas["beta"].copy(), reference=ref, pipeline_name="rankz_centroid", spec=SPECS["centroid"],
                      pairs=pairs, truth="cell_type")
    assert a.genes_info["n_missing"] > 0  # genes without a one-to-one ortholog
    _same_labels(a.adata, b.adata)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)


# --------------------------------------------------------------------------------------------------
# calibrated probabilities, CellTypist's columns, majority voting
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big():
    X, y = nb_counts(n_cells=1600, n_genes=60, n_types=4, seed=7)
    Xd = X.toarray()
    Xd[:, :16] = np.random.default_rng(0).binomial(Xd[:, :16].astype(int), 0.25)  # weaker markers: some errors
    return sp.csr_matrix(Xd, dtype=np.float32), y


@pytest.mark.parametrize("name", sorted(set(SPECS) - {"logreg_cv"}))
def test_confidence_is_a_calibrated_probability_for_every_pipeline(big, name):
    """Temperature-scaled on held-out reference cells: on new cells of the same kind, the mean
    confidence matches the accuracy (ECE < 0.08), whatever the pipeline's own scores are."""
    X, y = big
    ref = tool.prepare_reference(_adata(X[:800], y[:800]), "cell_type")
    ann = tool.Annotator.fit(ref, SPECS[name], name)
    pred, S, P = ann.predict_matrices(ann.match(_adata(X[800:], y[800:]).var, min_shared=10).apply(X[800:]))
    assert np.all((P >= 0) & (P <= 1)) and np.allclose(P.sum(axis=1), 1)
    np.testing.assert_array_equal(np.argmax(P, axis=1), np.argmax(S, axis=1))  # the label is the pipeline's
    correct = pred["label"].to_numpy() == y[800:]
    assert 0.6 < correct.mean() < 1.0  # a query with errors to be calibrated against
    from sclinbench.tool.calibrate import expected_calibration_error

    ece = expected_calibration_error(pred["confidence"].to_numpy(), correct)
    assert ece < 0.08, (name, ece, pred["confidence"].mean(), correct.mean())
    q = ann.calibration["probability"]
    assert q["n_cells"] == ann.calibration["n_heldout_cells"] and 0 <= q["ece"] < 0.15


def test_celltypist_columns_and_majority_voting(big, tmp_path):
    X, y = big
    ref = tool.prepare_reference(_adata(X[:800], y[:800]), "cell_type")
    q = _adata(X[800:], y[800:])
    q.obs["clusters"] = pd.Categorical(y[800:])  # clusters that are the true types
    res = tool.annotate(q, reference=ref, pipeline_name="rankz_centroid", spec=SPECS["centroid"], min_shared_genes=10,
                        over_clustering="clusters", confidence_threshold=0.9)
    obs = res.adata.obs
    assert (obs["predicted_labels"].astype(str) == obs["sclinbench_label"].astype(str)).all()
    np.testing.assert_array_equal(obs["conf_score"], obs["sclinbench_confidence"])
    assert obs["conf_score"].between(0, 1).all() and not np.allclose(obs["conf_score"], obs["sclinbench_score"])
    assert (obs["majority_voting"].astype(str) == y[800:]).mean() == 1.0  # each true type votes for itself
    assert (obs["over_clustering"].astype(str) == obs["clusters"].astype(str)).all()
    low = res.adata.uns["sclinbench"]["confidence"]
    assert low["threshold"] == 0.9 and low["n_below"] == int((obs["conf_score"] < 0.9).sum()) > 0
    assert low["fraction_below"] == pytest.approx(low["n_below"] / 800)
    assert f"{low['n_below']} ({100 * low['fraction_below']:.1f}%) below calibrated confidence 0.9" in res.summary()
    tool.write_result(res, tool.output_paths(tmp_path / "o.h5ad"))
    back = ad.read_h5ad(tmp_path / "o.h5ad")
    for key in ("sclinbench_scores", "sclinbench_probabilities"):
        assert list(back.obsm[key].columns) == ["t0", "t1", "t2", "t3"]
    np.testing.assert_allclose(back.obsm["sclinbench_probabilities"].max(axis=1), back.obs["conf_score"])


def test_majority_voting_over_a_leiden_over_clustering_of_real_cells():
    """pbmc68k_reduced (real PBMCs, 10 bulk_labels), stratified halves: the query is over-clustered by
    itself (CellTypist's default, resolution 5 below 5,000 cells); each cluster votes one label and
    the vote keeps the per-cell accuracy (within 0.03; here it smooths as many errors as it makes)."""
    from sclinbench.data import load_bundled

    a = load_bundled("pbmc68k_reduced")
    y = a.obs["bulk_labels"].astype(str).to_numpy()
    query = stratified_query_mask(y)
    b = _adata(sp.csr_matrix(a.X), y, genes=list(a.var_names))
    ref = tool.prepare_reference(b[~query].copy(), "cell_type")
    res = tool.annotate(b[query].copy(), reference=ref, pipeline_name="rankz_centroid", spec=SPECS["centroid"],
                        majority_voting=True)
    o = res.adata.obs
    assert o["over_clustering"].nunique() > 10
    assert (o.groupby("over_clustering", observed=True)["majority_voting"].nunique() == 1).all()
    acc_cell = (o["predicted_labels"].astype(str) == y[query]).mean()
    acc_vote = (o["majority_voting"].astype(str) == y[query]).mean()
    assert acc_cell > 0.7 and acc_vote >= acc_cell - 0.03, (acc_cell, acc_vote)
    assert res.adata.uns["sclinbench"]["majority_voting"]["clusters"] == o["over_clustering"].nunique()


def test_model_file_of_format_1_is_refused_with_the_command_that_rebuilds_it(tmp_path, monkeypatch):
    old = tmp_path / "v1.npz"
    old.write_bytes((REPO / "tests/data/models/v1_rankz_centroid.npz").read_bytes())
    with pytest.raises(SclinbenchError) as err:
        tool.Annotator.load(old)
    msg = str(err.value)
    assert "model format 1 (written by sclinbench 0.1.0)" in msg and "\n" not in msg
    cmd = msg.split("rebuild it with ", 1)[1]
    assert cmd == (f"sclinbench train --reference tests/data/models/v1_reference.h5ad --label bulk_labels "
                   f"--pipeline rankz_centroid --model {old}")
    import logging

    from sclinbench.cli import main

    monkeypatch.chdir(REPO)  # the fixture's reference path is relative to the repository
    root = logging.getLogger()
    handlers, level = list(root.handlers), logging.getLogger("sclinbench").level
    try:
        assert main(cmd.split()[1:]) == 0
    finally:  # main() sets up the command's logging; give pytest's back
        root.handlers[:] = handlers
        logging.getLogger("sclinbench").setLevel(level)
    model = tool.Annotator.load(old)
    assert model.pipeline_name == "rankz_centroid" and model.reference_counts.shape[0] == 90
