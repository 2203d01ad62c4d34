"""``sclinbench train`` / ``annotate --reference`` without ``--pipeline``: the pipeline is chosen on the
reference by nested selection (sclinbench.evaluate.nested.choose_for_reference) among
sclinbench.tool.catalog.TRAIN_CANDIDATES, on folds of held-out reference donors (cells with fewer
than 3 donors); the model file records the choice and ``annotate --model`` says it.

References: stratified halves of scanpy's bundled pbmc68k_reduced (real cells, no donors), the
real lavage fixture (tests/data/liao2020: 3 COVID-19 patients, infection label) and the synthetic
atlas's species alpha (4 donors).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from real_fixtures import write_pbmc_halves

from sclinbench import data
from sclinbench.data.synthetic import make_atlas
from sclinbench.evaluate import nested
from sclinbench.tool import catalog
from sclinbench.tool.annotate import prepare_reference

CANDIDATES = list(catalog.TRAIN_CANDIDATES)
PATIENTS = sorted((REPO / "tests/data/liao2020/patients").glob("C*_subset_filtered_feature_bc_matrix.h5"))


def run(cwd, *args):
    env = {k: v for k, v in os.environ.items() if k != "SCLINBENCH_WORKFLOW"}
    proc = subprocess.run([sys.executable, "-m", "sclinbench", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def meta(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(str(npz["__meta__"]))


def arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "__meta__"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """pbmc ref/query halves; atlas alpha with donors in 'patient' (no donor_id column); liao fixture."""
    d = tmp_path_factory.mktemp("selection")
    write_pbmc_halves(d, "pbmc_ref.h5ad", "pbmc_query.h5ad", ["bulk_labels"])
    atlas, _ = make_atlas(seed=0, cells_per_species=600, n_genes=600, n_cell_types=4, n_disease_genes=10)
    alpha = atlas["alpha"]
    alpha.obs["patient"] = alpha.obs.pop("donor_id").astype(str)
    alpha.write_h5ad(d / "alpha.h5ad")
    entry = yaml.safe_load((REPO / "config/datasets.yaml").read_text())["liao2020"]
    raw = data.read_raw([str(p) for p in PATIENTS], "10x_h5",
                        file_obs=[{"donor_id": p.name.split("_")[0]} for p in PATIENTS])
    liao = data.standardize(raw, {**entry, "qc": {"min_genes": 20}}, {}, source="fixture", name="liao2020")
    ad.AnnData(X=liao.X, obs=liao.obs[["condition", "donor_id"]].astype(str),
               var=liao.var[["gene_symbol"]]).write_h5ad(d / "liao.h5ad")
    return d


def test_train_records_candidates_scores_split_and_winner(files):
    """Real lavage cells of 3 patients: 3 folds, each holding one patient out; the model file keeps
    every candidate's score, the inner split and the winner (the best score), and the fitted
    pipeline is the winner."""
    d = files
    proc = run(d, "train", "--reference", "liao.h5ad", "--label", "condition", "--model", "liao.npz")
    sel = meta(d / "liao.npz")["provenance"]["selection"]
    assert sel["candidates"] == CANDIDATES and set(sel["scores"]) == set(CANDIDATES)
    assert sel["inner_split"] == "donor" and sel["n_units"] == 3 and sel["inner_folds"] == 3
    assert sel["metric"] == "macro_f1" and sel["seed"] == 0
    scores = pd.Series(sel["scores"])
    assert scores.between(0, 1).all() and scores.nunique() > 1
    assert sel["winner"] == scores[CANDIDATES].idxmax()  # ties: the first listed
    assert meta(d / "liao.npz")["pipeline"] == sel["winner"]
    assert proc.stdout.startswith(f"pipeline: {sel['winner']} chosen among 3 candidates by nested selection on "
                                  "held-out reference donors, 3 folds over 3 donors (seed 0)")
    assert f"trained {sel['winner']} on" in proc.stdout


def test_inner_folds_hold_out_reference_donors_else_cells(files, monkeypatch):
    """The folds the candidates are scored on (spied on sclinbench.evaluate.nested.select): whole donors
    held out with >= 3 donors, cells of an unknown donor left out of the scoring; stratified cells
    with 2 donors or none."""
    seen = []
    real = nested.select

    def spy(*args, **kw):
        sel = real(*args, **kw)
        seen.append((np.asarray(args[2]).astype(str), sel))
        return sel

    monkeypatch.setattr(nested, "select", spy)
    alpha = ad.read_h5ad(files / "alpha.h5ad")
    alpha.obs["donor_id"] = alpha.obs["patient"].to_numpy()
    unknown = alpha.obs_names[:30]
    alpha.obs.loc[unknown, "donor_id"] = "unknown"
    ref = prepare_reference(alpha, "cell_type", source="alpha")
    donors = ref.adata.obs["donor_id"].astype(str).to_numpy()
    rec = nested.choose_for_reference(ref.adata.X, ref.labels, donors, catalog.TRAIN_CANDIDATES, seed=0)
    units, sel = seen[-1]
    assert rec["inner_split"] == sel.kind == "donor" and rec["n_units"] == 4 and len(sel.folds) == 3
    scored = np.concatenate([b for _, b in sel.folds])
    assert sorted(scored) == sorted(np.flatnonzero(units != "unknown"))  # each known-donor cell once
    assert rec["n_scored_cells"] == ref.adata.n_obs - 30
    for a, b in sel.folds:
        assert not set(units[a]) & set(units[b]) and "unknown" not in set(units[a]) | set(units[b])
    # 2 donors: stratified folds of cells
    two = np.where(np.isin(donors, ["alpha_d1", "alpha_d2"]), "alpha_d1", "alpha_d3")
    rec = nested.choose_for_reference(ref.adata.X, ref.labels, two, catalog.TRAIN_CANDIDATES, seed=0)
    assert rec["inner_split"] == "stratified" and rec["n_units"] == ref.adata.n_obs
    units, sel = seen[-1]
    assert any(set(units[a]) & set(units[b]) for a, b in sel.folds)  # a donor on both sides: cells held out


def test_donor_column_and_fixed_pipeline_on_the_command_line(files):
    """No donor_id column: cells (stratified); --donor names the column: donors; --pipeline fixes
    the choice (no selection is run, the record says fixed)."""
    d = files
    run(d, "train", "--reference", "alpha.h5ad", "--label", "cell_type", "--model", "cells.npz")
    assert meta(d / "cells.npz")["provenance"]["selection"]["inner_split"] == "stratified"
    assert meta(d / "cells.npz")["provenance"]["selection"]["n_units"] == 600
    run(d, "train", "--reference", "alpha.h5ad", "--label", "cell_type", "--donor", "patient", "--model", "donors.npz")
    sel = meta(d / "donors.npz")["provenance"]["selection"]
    assert sel["inner_split"] == "donor" and sel["n_units"] == 4
    proc = run(d, "train", "--reference", "alpha.h5ad", "--label", "cell_type", "--donor", "patient",
               "--pipeline", "log1p_pca_logreg", "--model", "fixed.npz")
    m = meta(d / "fixed.npz")
    assert m["pipeline"] == "log1p_pca_logreg" and m["provenance"]["selection"] == {"fixed": "log1p_pca_logreg"}
    assert "nested selection" not in proc.stderr and "fixed by --pipeline log1p_pca_logreg" in proc.stdout
    err = subprocess.run([sys.executable, "-m", "sclinbench", "train", "--reference", "alpha.h5ad", "--label",
                          "cell_type", "--donor", "donor", "--model", "x.npz"], cwd=d, capture_output=True, text=True)
    assert err.returncode == 1 and "has no obs column 'donor' (--donor)" in err.stderr and "patient" in err.stderr
    assert not (d / "x.npz").exists()


def test_selection_is_reproducible_from_the_seed(files):
    """The same --seed: the same record (scores, winner) and the same fitted arrays; another seed
    draws other inner folds (other scores)."""
    d = files
    for name, seed in (("s0a.npz", 0), ("s0b.npz", 0), ("s5.npz", 5)):
        run(d, "-q", "train", "--reference", "pbmc_ref.h5ad", "--label", "bulk_labels", "--seed", seed, "--model", name)
    a, b, c = (meta(d / n)["provenance"]["selection"] for n in ("s0a.npz", "s0b.npz", "s5.npz"))
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert drop(a) == drop(b) and a["inner_split"] == "stratified" and a["n_units"] == 353
    xa, xb = arrays(d / "s0a.npz"), arrays(d / "s0b.npz")
    assert xa.keys() == xb.keys() and all(np.array_equal(xa[k], xb[k]) for k in xa)
    assert c["seed"] == 5 and c["scores"] != a["scores"]


def test_annotate_says_which_pipeline_and_model_equals_reference(files):
    """annotate --model prints the pipeline and how it was chosen, and keeps the record in uns;
    annotate --reference without --pipeline chooses the same and gives identical labels."""
    d = files
    run(d, "train", "--reference", "pbmc_ref.h5ad", "--label", "bulk_labels", "--model", "pbmc.npz")
    sel = meta(d / "pbmc.npz")["provenance"]["selection"]
    pa = run(d, "annotate", "--model", "pbmc.npz", "--query", "pbmc_query.h5ad", "--out", "a.h5ad")
    pb = run(d, "annotate", "--reference", "pbmc_ref.h5ad", "--label", "bulk_labels", "--query", "pbmc_query.h5ad",
             "--out", "b.h5ad")
    line = (f"pipeline: {sel['winner']} chosen among 3 candidates by nested selection on held-out reference cells "
            "(stratified), 3 folds over 353 cells (seed 0): macro_f1 "
            + ", ".join(f"{n} {sel['scores'][n]:.3f}" for n in CANDIDATES))
    assert pa.stdout.splitlines()[0] == line and pb.stdout.splitlines()[0] == line
    assert f"labelled 347 cells with {sel['winner']}" in pa.stdout
    a, b = ad.read_h5ad(d / "a.h5ad"), ad.read_h5ad(d / "b.h5ad")
    for x in (a, b):
        u = x.uns["sclinbench"]
        assert u["pipeline"] == sel["winner"] and u["selection"]["winner"] == sel["winner"]
        assert u["selection"]["inner_split"] == "stratified" and list(u["selection"]["candidates"]) == CANDIDATES
    pd.testing.assert_series_equal(a.obs["sclinbench_label"], b.obs["sclinbench_label"])
    np.testing.assert_allclose(a.obs["conf_score"], b.obs["conf_score"], rtol=1e-10)
    fixed = run(d, "annotate", "--reference", "pbmc_ref.h5ad", "--label", "bulk_labels", "--query",
                "pbmc_query.h5ad", "--out", "c.h5ad", "--pipeline", "rankz_centroid")
    assert fixed.stdout.splitlines()[0] == "pipeline: rankz_centroid (fixed by --pipeline rankz_centroid)"
    assert ad.read_h5ad(d / "c.h5ad").uns["sclinbench"]["selection"] == {"fixed": "rankz_centroid"}


def test_train_candidates_are_the_config_entries():
    """Each candidate is its entry of config/config.yaml or config/grid.yaml, and annotate can use it."""
    from sclinbench.tool.annotate import check_spec

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())["pipelines"]
    grid = yaml.safe_load((REPO / "config/grid.yaml").read_text())["pipelines"]
    for name, spec in catalog.TRAIN_CANDIDATES.items():
        assert spec == {**grid, **cfg}[name], name
        check_spec(name, spec)
    assert len({s["representation"]["name"] for s in catalog.TRAIN_CANDIDATES.values()}) == 3


def test_a_binary_reference_trains_every_candidate(files, tmp_path):
    """The lavage fixture's infection label has two classes: each candidate must train on it, and
    its model file must give back the same labels and scores (a two-class RidgeClassifier has a
    1-D ``coef_`` in scikit-learn >= 1.8: pearson_pca_ridge once could not be saved)."""
    import scipy.sparse as sp

    from sclinbench.tool.annotate import Annotator

    ref = prepare_reference(ad.read_h5ad(files / "liao.h5ad"), "condition", source="liao")
    counts = sp.csr_matrix(ref.adata.X)
    for name, spec in catalog.TRAIN_CANDIDATES.items():
        model = Annotator.fit(ref, spec, name)
        assert list(model.pipeline.classes_) == ["infected", "uninfected"]
        model.save(tmp_path / f"{name}.npz")
        back = Annotator.load(tmp_path / f"{name}.npz")
        pd.testing.assert_frame_equal(back.predict(counts), model.predict(counts))
