"""The paper run rehearsed on stand-ins served over local HTTP (benchmarks/paper_rehearsal.py).

CI size: --fraction 0.01 --tissues 1 (ts_bone_marrow: every Tabula Sapiens task and the TF-target
analysis; the eight testis files; the three lavage 10x files; STRING stand-ins). Every stage runs:
download with one cut connection resumed, standardize of all three file kinds, every task incl.
paper_leiden_logreg, the analyses, the paper figures and report.html."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
TS = "ts_bone_marrow"


@pytest.mark.workflow
def test_rehearsal_subset_runs_every_stage_clean(tmp_path):
    out = tmp_path / "reh"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/paper_rehearsal.py"), "--fraction", "0.01",
                        "--tissues", "1", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "rehearsal.json").read_text())
    assert s["tissues"] == [TS]
    assert s["exit_code"] == 0 and s["failed_jobs"] == 0 and s["not_finished"] == [], s["failed"]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith(f"paper_rehearsal: {s['jobs']} jobs, 0 failed, exit 0"), last
    assert "max peak ?" not in last and 0 < s["max_peak_gib"] < 12
    # the cut connection was resumed with a Range request from a non-zero offset, of the cut file
    (path, offset), = s["resumed_downloads"]
    assert path == s["dropped"] and offset > 0
    run = out / "run"
    # standardize: the CELLxGENE file (held-out donors only), the 8 testis files + collection, the 10x files
    import anndata as ad

    ts = ad.read_h5ad(run / f"resources/standardized/{TS}.h5ad", backed="r")
    assert 0 < ts.n_obs <= s["stand_ins"][TS]["held_out_cells"] and "gene_symbol" in ts.var
    assert set(ts.obs["donor_id"].astype(str)) <= {f"TSP{17 + i}" for i in range(4)}
    lavage = ad.read_h5ad(run / "resources/standardized/liao2020.h5ad", backed="r")
    assert set(lavage.obs["donor_id"].astype(str)) == {"C144", "C146", "C149"} and "nCoV" not in lavage.var_names
    sperm = ad.read_h5ad(run / "resources/standardized/spermatogenesis.h5ad", backed="r")
    assert sperm.obs["organism"].nunique() == 8
    # every task x dataset has metrics; the disease pipeline runs on the infection tasks only
    m = pd.read_csv(run / "results/metrics.tsv", sep="\t")
    want = {(t, TS) for t in ["ts_celltype_stratified", "ts_celltype_donor", "ts_novel_type"]}
    want |= {("spermatogenesis_cross_species", "spermatogenesis"), ("infection_cell", "liao2020"),
             ("infection_cell_paper", "liao2020")}
    assert set(zip(m["task"], m["dataset"])) == want
    assert {f"{a}|{b}" for a, b in want} == set(s["metrics_rows"]) and min(s["metrics_rows"].values()) > 0
    leiden = m[m["pipeline"] == "paper_leiden_logreg"]
    assert set(leiden["task"]) == {"infection_cell", "infection_cell_paper"}
    f1 = m[(m["metric"] == "macro_f1") & (m["pipeline"] == "paper_rankz_anova_pca_logreg")]
    assert f1[f1["task"] == "ts_celltype_stratified"]["fold"].nunique() == 5  # the paper's 5 splits (one fold each)
    assert f1[f1["task"] == "infection_cell_paper"]["fold"].nunique() == 10
    # analyses (STRING stand-ins downloaded from the local server) and the paper's figures
    tf = pd.read_csv(run / "results/analyses/tf_targets.tsv", sep="\t")
    declared = tf[tf["setting"] == "declared"]
    assert set(declared["tf"]) == {"E2F8", "FOXM1", "SPIB", "MYBL2", "PTTG1"}
    assert (declared["n_genes_tested"] > 0).all() and (declared["base_rate"] > 0).all()
    structure = pd.read_csv(run / "results/analyses/structure.tsv", sep="\t")
    assert len(structure) > 0
    assert len(pd.read_csv(run / "results/analyses/manifold.tsv", sep="\t")) > 0
    for name in ["tabula_sapiens", "spermatogenesis_matrix", "spermatogenesis_by_species", "infection", "novel_types"]:
        assert (run / f"results/paper/{name}.png").stat().st_size > 0
        assert len(pd.read_csv(run / f"results/paper/{name}.tsv", sep="\t")) > 0
    assert (run / "report.html").stat().st_size > 100_000
