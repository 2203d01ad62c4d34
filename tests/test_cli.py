"""The ``sclinbench`` command, run as a user runs it: a subprocess started in a folder outside the repository.

Reference and query are stratified halves of scanpy's bundled pbmc68k_reduced (counts recovered as
sclinbench.data.load_bundled does) and small synthetic atlases; every bad input must end with one
line ``sclinbench error: ...``, exit code 1, no traceback and no output file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import REPO
from real_fixtures import write_pbmc_halves

from sclinbench import __version__
from sclinbench.data.synthetic import make_atlas

CONSOLE = Path(sys.executable).with_name("sclinbench")


def sclinbench(cwd, *args, check=True):
    """``python -m sclinbench ARGS`` in ``cwd`` (the console script is tested separately)."""
    env = {k: v for k, v in os.environ.items() if k != "SCLINBENCH_WORKFLOW"}
    proc = subprocess.run([sys.executable, "-m", "sclinbench", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"sclinbench {' '.join(map(str, args))} failed:\n{proc.stderr[-4000:]}")
    return proc


def fails(proc, *needles):
    """One line 'sclinbench error: ...' naming every needle, exit 1, no traceback."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sclinbench error: ")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def pbmc(tmp_path_factory):
    """Stratified halves of pbmc68k_reduced (raw counts in X, labels in bulk_labels) in a folder outside the repo."""
    d = tmp_path_factory.mktemp("user")
    write_pbmc_halves(d, "ref.h5ad", "query.h5ad", ["bulk_labels", "n_genes"])
    return d


def test_help_version_and_console_script(tmp_path):
    proc = sclinbench(tmp_path, "--version")
    assert proc.stdout.strip() == f"sclinbench {__version__}"
    for args in (["--help"], ["list", "--help"], ["train", "--help"], ["annotate", "--help"]):
        assert "usage: sclinbench" in sclinbench(tmp_path, *args).stdout
    assert "--orthologs" in sclinbench(tmp_path, "annotate", "--help").stdout
    if not CONSOLE.exists():
        pytest.skip(f"no console script next to {sys.executable} (install with pip install -e .)")
    proc = subprocess.run([str(CONSOLE), "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.stdout.strip() == f"sclinbench {__version__}"


def test_list_names_and_describes(tmp_path):
    out = sclinbench(tmp_path, "list").stdout
    assert f"workflow: {REPO}" in out
    for name, text in (("rankz_centroid", "rank -> inverse-normal"), ("log1p_pca_logreg", "scanpy-standard"),
                       ("pbmc68k", "700 PBMCs"), ("celltype_donor", "whole donors held out"),
                       ("rankz_pca_svm", "rankz -> hvg 2000 -> pca 50 -> linear_svm")):
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert text in out.split(line, 1)[1].split("\n  ")[0] + line, (name, line)
    assert "rankz -> centroid [train candidate] [workflow annotate default]" in out
    assert out.count("[train candidate]") == 3  # what train chooses among without --pipeline
    pipes = sclinbench(tmp_path, "list", "pipelines").stdout
    assert "rankz_centroid" in pipes and "pbmc68k" not in pipes and "celltype_donor" not in pipes
    tasks = sclinbench(tmp_path, "list", "tasks").stdout
    assert "disease_donor" in tasks and "rankz_centroid" not in tasks
    assert "spermatogenesis" in sclinbench(tmp_path, "list", "datasets").stdout
    (tmp_path / "mine.yaml").write_text("pipelines:\n  my_pipe:   # mine, one line\n"
                                        "    representation: {name: rankz}\n    model: {name: ridge}\n")
    assert "mine, one line" in sclinbench(tmp_path, "list", "pipelines", "--config", "mine.yaml").stdout


def test_without_a_checkout_only_the_builtin_pipeline(tmp_path):
    """What a non-editable install sees: the package without the workflow folder next to it."""
    pkg = tmp_path / "site" / "sclinbench"
    shutil.copytree(REPO / "src" / "sclinbench", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**{k: v for k, v in os.environ.items() if k != "SCLINBENCH_WORKFLOW"}, "PYTHONPATH": str(pkg.parent)}
    proc = subprocess.run([sys.executable, "-m", "sclinbench", "list"], cwd=tmp_path, capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "no workflow checkout found" in proc.stdout and "rankz_centroid" in proc.stdout
    assert "log1p_pca_logreg" not in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "sclinbench", "list", "--workflow", str(REPO)], cwd=tmp_path,
                          capture_output=True, text=True, env=env)
    assert "log1p_pca_logreg" in proc.stdout


def test_train_then_annotate_from_another_folder(pbmc):
    d = pbmc
    proc = sclinbench(d, "train", "--reference", "ref.h5ad", "--label", "bulk_labels", "--model", "pbmc.npz",
                      "--pipeline", "rankz_centroid")  # the default choice: tests/test_train_selection.py
    assert "trained rankz_centroid on 353 cells x 765 genes, 10 labels" in proc.stdout
    proc = sclinbench(d, "annotate", "--model", "pbmc.npz", "--query", "query.h5ad", "--out", "labelled.h5ad",
                      "--truth", "bulk_labels")
    assert "labelled 347 cells with rankz_centroid" in proc.stdout
    out = ad.read_h5ad(d / "labelled.h5ad")
    query = ad.read_h5ad(d / "query.h5ad")
    assert list(out.obs_names) == list(query.obs_names)  # AnnData in, the same AnnData out, + columns
    assert (out.X != query.X).nnz == 0 and "n_genes" in out.obs
    truth, pred = out.obs["bulk_labels"].astype(str), out.obs["sclinbench_label"].astype(str)
    assert (truth == pred).mean() > 0.7
    uns = out.uns["sclinbench"]
    assert uns["pipeline"] == "rankz_centroid" and uns["model"] == "pbmc.npz"
    from sclinbench.tool.annotate import sha256_file

    assert uns["reference_sha256"] == sha256_file(d / "ref.h5ad")
    assert uns["model_sha256"] == sha256_file(d / "pbmc.npz")
    assert uns["genes"]["n_shared"] == 765 and uns["versions"]["sclinbench"] == __version__
    metrics = pd.read_csv(d / "labelled.metrics.tsv", sep="\t").set_index(["set", "metric"])["value"]
    from sclinbench.evaluate.metrics import classification_scores

    assert metrics[("query_shared_labels", "macro_f1")] == pytest.approx(classification_scores(truth, pred)["macro_f1"])
    labels = pd.read_csv(d / "labelled.labels.tsv", sep="\t")
    assert labels["n_cells"].sum() == 347 and set(labels["label"]) == set(truth)
    top = pd.read_csv(d / "labelled.top_genes.tsv", sep="\t")
    b = top[top.label == "CD19+ B"].head(10)
    assert {"CD79A", "CD79B", "MS4A1", "CD74", "HLA-DRA", "CD37"} & set(b.gene_symbol), b  # B cell genes


def test_annotate_with_a_reference_equals_train_then_annotate(pbmc):
    """Also when the query lacks genes (65 of the 765): the model refits on the others, as --reference
    fits on them; the output reads as CellTypist's (predicted_labels, conf_score, majority_voting)."""
    d = pbmc
    q = ad.read_h5ad(d / "query.h5ad")
    q[:, 65:].copy().write_h5ad(d / "query_700.h5ad")
    sclinbench(d, "train", "--reference", "ref.h5ad", "--label", "bulk_labels", "--model", "m2.npz",
               "--pipeline", "log1p_pca_logreg")
    for query, tag in (("query.h5ad", "all"), ("query_700.h5ad", "700")):
        pa = sclinbench(d, "annotate", "--model", "m2.npz", "--query", query, "--out", f"a{tag}.h5ad",
                        "--majority-voting")
        pb = sclinbench(d, "annotate", "--reference", "ref.h5ad", "--label", "bulk_labels", "--pipeline",
                        "log1p_pca_logreg", "--query", query, "--out", f"b{tag}.h5ad", "--compression", "gzip",
                        "--majority-voting")
        a, b = ad.read_h5ad(d / f"a{tag}.h5ad"), ad.read_h5ad(d / f"b{tag}.h5ad")
        for col in ("sclinbench_label", "predicted_labels", "majority_voting"):
            pd.testing.assert_series_equal(a.obs[col], b.obs[col])
        np.testing.assert_allclose(a.obs["conf_score"], b.obs["conf_score"], rtol=1e-10)
        np.testing.assert_allclose(a.obsm["sclinbench_probabilities"], b.obsm["sclinbench_probabilities"], rtol=1e-10)
        assert a.obs["conf_score"].between(0, 1).all()
        assert "below calibrated confidence 0.5" in pa.stdout and "have a calibrated confidence below 0.5" in pa.stderr
        if tag == "700":
            for proc, x in ((pa, a), (pb, b)):
                assert "the query lacks 65 of the 765 reference genes (8.5%)" in proc.stderr and "cost" in proc.stderr
                assert x.uns["sclinbench"]["genes"]["n_missing"] == 65
    assert json.loads(b.uns["sclinbench"]["spec"])["reduction"] == {"method": "pca", "n_components": 50,
                                                                    "whiten": False, "svd_solver": "auto"}


def test_across_species_on_the_command_line(tmp_path):
    adatas, table = make_atlas(seed=0, cells_per_species=600, n_genes=600, n_cell_types=4, n_disease_genes=10)
    adatas["alpha"].write_h5ad(tmp_path / "alpha.h5ad")
    adatas["beta"].write_h5ad(tmp_path / "beta.h5ad")
    table.to_csv(tmp_path / "orth.tsv", sep="\t", index=False)
    args = ["annotate", "--reference", "alpha.h5ad", "--label", "cell_type", "--query", "beta.h5ad",
            "--out", "beta_labelled.h5ad", "--truth", "cell_type"]
    fails(sclinbench(tmp_path, *args, check=False), "shares 0 of", "--orthologs")
    fails(sclinbench(tmp_path, *args, "--reference-species", "alpha", "--query-species", "beta", check=False),
          "differ: give --orthologs")
    proc = sclinbench(tmp_path, *args, "--reference-species", "alpha", "--query-species", "beta",
                      "--orthologs", "orth.tsv")
    assert "query macro F1" in proc.stdout
    out = ad.read_h5ad(tmp_path / "beta_labelled.h5ad")
    assert out.n_obs == 600 and "through orthologs" in out.uns["sclinbench"]["genes"]["matched_on"]
    m = pd.read_csv(tmp_path / "beta_labelled.metrics.tsv", sep="\t")
    assert set(m[m.set == "query_other_labels"]["labels"]) == {"type_05"}  # the species-only type, apart
    fails(sclinbench(tmp_path, *args, "--reference-species", "human", "--query-species", "mouse",
                     "--orthologs", "ensembl", check=False),
          "resources/orthologs/ensembl-112/hsapiens__mmusculus.tsv", "snakemake --cores 1")


# --------------------------------------------------------------------------------------------------
# bad input: one line each
# --------------------------------------------------------------------------------------------------
def test_query_not_raw_counts(pbmc, tmp_path):
    q = ad.read_h5ad(pbmc / "query.h5ad")
    q.X = sp.csr_matrix(np.log1p(q.X.toarray() / q.X.sum(axis=1).A * 1e4))
    q.write_h5ad(tmp_path / "lognorm.h5ad")
    err = fails(sclinbench(tmp_path, "annotate", "--reference", pbmc / "ref.h5ad", "--label", "bulk_labels",
                           "--query", "lognorm.h5ad", "--out", "o.h5ad", check=False),
                "lognorm.h5ad holds no raw integer counts", "X holds non-integer values", "layers/counts absent",
                "--query-counts")
    assert "registry" not in err
    assert not (tmp_path / "o.h5ad").exists()
    q.layers["counts"] = ad.read_h5ad(pbmc / "query.h5ad").X  # counts kept in a layer, scanpy style: found
    q.write_h5ad(tmp_path / "layer.h5ad")
    sclinbench(tmp_path, "annotate", "--reference", pbmc / "ref.h5ad", "--label", "bulk_labels", "--query",
               "layer.h5ad", "--out", "o.h5ad")
    assert ad.read_h5ad(tmp_path / "o.h5ad").uns["sclinbench"]["query_counts"] == "layers/counts"


def test_no_shared_genes_names_the_id_types(pbmc, tmp_path):
    q = ad.read_h5ad(pbmc / "query.h5ad")
    q.var_names = [f"ENSG{i:011d}" for i in range(q.n_vars)]
    q.write_h5ad(tmp_path / "ens.h5ad")
    fails(sclinbench(tmp_path, "annotate", "--reference", pbmc / "ref.h5ad", "--label", "bulk_labels",
                     "--query", "ens.h5ad", "--out", "o.h5ad", check=False),
          "shares 0 of 765 genes", "uses gene symbols (upper case, human-style", "uses Ensembl gene ids (human")
    few = ad.read_h5ad(pbmc / "query.h5ad")[:, :50].copy()
    few.write_h5ad(tmp_path / "few.h5ad")
    fails(sclinbench(tmp_path, "annotate", "--reference", pbmc / "ref.h5ad", "--label", "bulk_labels",
                     "--query", "few.h5ad", "--out", "o.h5ad", check=False),
          "shares 50 of 765 genes", "at least 100 needed")


def test_reference_label_column_missing_lists_columns(pbmc, tmp_path):
    fails(sclinbench(tmp_path, "train", "--reference", pbmc / "ref.h5ad", "--label", "celltype", "--model", "m.npz",
                     check=False),
          "has no obs column 'celltype' (--label)", "its obs columns are: bulk_labels, n_genes")
    assert not (tmp_path / "m.npz").exists()


def test_label_with_one_cell(pbmc, tmp_path):
    r = ad.read_h5ad(pbmc / "ref.h5ad")
    r.obs["bulk_labels"] = r.obs["bulk_labels"].astype(str)
    r.obs.iloc[0, 0] = "Megakaryocyte"
    r.write_h5ad(tmp_path / "ref1.h5ad")
    fails(sclinbench(tmp_path, "train", "--reference", "ref1.h5ad", "--label", "bulk_labels", "--model", "m.npz",
                     check=False),
          "label 'Megakaryocyte'", "has only one cell", "--min-cells-per-label 2")
    sclinbench(tmp_path, "train", "--reference", "ref1.h5ad", "--label", "bulk_labels", "--model", "m.npz",
               "--min-cells-per-label", "2")


def test_model_from_another_version_or_gene_set(pbmc, tmp_path):
    sclinbench(tmp_path, "train", "--reference", pbmc / "ref.h5ad", "--label", "bulk_labels", "--model", "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        store = {k: npz[k] for k in npz.files}
    meta = json.loads(str(store["__meta__"]))
    meta["sclinbench_version"] = "0.0.9"  # the same model format from another sclinbench version: read
    np.savez(tmp_path / "other.npz", **{**store, "__meta__": np.array(json.dumps(meta))})
    sclinbench(tmp_path, "annotate", "--model", "other.npz", "--query", pbmc / "query.h5ad", "--out", "o.h5ad")
    assert ad.read_h5ad(tmp_path / "o.h5ad").uns["sclinbench"]["model"] == "other.npz"
    (tmp_path / "o.h5ad").unlink()
    # model format 1 (sclinbench 0.1.0, tests/data/models): refused with the command that rebuilds it
    shutil.copy(REPO / "tests/data/models/v1_rankz_centroid.npz", tmp_path / "v1.npz")
    err = fails(sclinbench(tmp_path, "annotate", "--model", "v1.npz", "--query", pbmc / "query.h5ad", "--out",
                           "o.h5ad", check=False),
                "v1.npz has model format 1 (written by sclinbench 0.1.0)",
                "rebuild it with sclinbench train --reference tests/data/models/v1_reference.h5ad --label bulk_labels "
                "--pipeline rankz_centroid --model v1.npz")
    shutil.copy(REPO / "tests/data/models/v1_reference.h5ad", tmp_path / "v1_reference.h5ad")
    cmd = err.split("rebuild it with sclinbench ", 1)[1].replace("tests/data/models/", "")
    sclinbench(tmp_path, *cmd.split())
    sclinbench(tmp_path, "annotate", "--model", "v1.npz", "--query", pbmc / "query.h5ad", "--out", "o.h5ad")
    (tmp_path / "o.h5ad").unlink()
    # a query measured on another gene set than the model's
    adatas, _ = make_atlas(seed=0, cells_per_species=300, n_genes=500, n_cell_types=3, n_disease_genes=10)
    adatas["alpha"].write_h5ad(tmp_path / "other_genes.h5ad")
    fails(sclinbench(tmp_path, "annotate", "--model", "m.npz", "--query", "other_genes.h5ad", "--out", "o.h5ad",
                     check=False),
          "shares 0 of 765 genes with the model m.npz", "gene ids like 'ALPHA_G00001'")
    assert not (tmp_path / "o.h5ad").exists()


def test_output_would_overwrite_the_query(pbmc, tmp_path):
    shutil.copy(pbmc / "query.h5ad", tmp_path / "q.h5ad")
    before = (tmp_path / "q.h5ad").read_bytes()
    fails(sclinbench(tmp_path, "annotate", "--reference", pbmc / "ref.h5ad", "--label", "bulk_labels",
                     "--query", "q.h5ad", "--out", "./q.h5ad", check=False),
          "--out q.h5ad is the query file")
    assert (tmp_path / "q.h5ad").read_bytes() == before
    fails(sclinbench(tmp_path, "train", "--reference", "q.h5ad", "--label", "bulk_labels", "--model", "q.h5ad",
                     check=False), "is the reference file")


def test_argument_mistakes(pbmc, tmp_path):
    fails(sclinbench(tmp_path, "annotate", "--query", pbmc / "query.h5ad", "--out", "o.h5ad", check=False),
          "needs --reference")
    fails(sclinbench(tmp_path, "annotate", "--reference", pbmc / "ref.h5ad", "--query", pbmc / "query.h5ad",
                     "--out", "o.h5ad", check=False), "--reference needs --label")
    fails(sclinbench(tmp_path, "train", "--reference", pbmc / "ref.h5ad", "--label", "bulk_labels",
                     "--pipeline", "nope", "--model", "m.npz", check=False),
          "pipeline 'nope' is not defined", "rankz_centroid")
    fails(sclinbench(tmp_path, "train", "--reference", pbmc / "ref.h5ad", "--label", "bulk_labels",
                     "--pipeline", "rankz_knn", "--model", "m.npz", check=False), "linear models")
    fails(sclinbench(tmp_path, "annotate", "--model", "missing.npz", "--query", pbmc / "query.h5ad",
                     "--out", "o.h5ad", check=False), "missing.npz does not exist")
    fails(sclinbench(tmp_path, "annotate", "--reference", "nothere.h5ad", "--label", "x", "--query",
                     pbmc / "query.h5ad", "--out", "o.h5ad", check=False), "reference file nothere.h5ad does not exist")
