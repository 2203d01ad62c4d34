"""The real snakemake workflow on the embedded offline default (pbmc68k + synthetic atlas)."""


import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import copy_workflow, paper_configfiles, run_snakemake

from sclinbench.workflow import contracts

pytestmark = pytest.mark.workflow


def _read_metrics(workdir):
    return pd.read_csv(workdir / "results/metrics.tsv", sep="\t", keep_default_na=False,
                       na_values={"value": ["nan", "NaN", ""]})


def _metric(m, **kw):
    sel = m
    for k, v in kw.items():
        sel = sel[sel[k] == v]
    return sel


def test_default_run_writes_metrics_and_beats_controls(default_run):
    workdir, _ = default_run
    m = _read_metrics(workdir)
    assert list(m.columns) == ["dataset", "task", "kind", "split_kind", "group", "pipeline", "role",
                               "representation", "model", "fold", "repeat", "metric", "value"]
    f1 = _metric(m, dataset="pbmc68k", task="celltype_stratified", metric="macro_f1", repeat=0)
    by = f1.groupby("pipeline")["value"].mean()
    assert set(by.index) == {"rankz_centroid", "log1p_pca_logreg", "control_majority", "control_shuffled"}
    for method in ("rankz_centroid", "log1p_pca_logreg"):
        assert by[method] > 0.5, by
        assert by[method] > by["control_shuffled"] + 0.3, by
        assert by[method] > by["control_majority"] + 0.3, by
    assert f1.groupby("pipeline")["fold"].nunique().eq(5).all()


def test_every_test_cell_is_predicted_once_per_fold(default_run):
    workdir, _ = default_run
    splits = pd.read_csv(workdir / "results/splits/dataset~pbmc68k/task~celltype_stratified.tsv.gz", sep="\t")
    pred = contracts.read_predictions(workdir / "results/predictions/dataset~pbmc68k/task~celltype_stratified/"
                                      "representation~rankz.parquet")
    test = splits[splits.role == "test"]
    assert pred.loc[pred.pipeline == "control_shuffled", "repeat"].nunique() == 5
    for (_pipeline, _repeat), rows in pred.groupby(["pipeline", "repeat"]):
        assert len(rows) == len(test)
        assert set(zip(rows.cell_id, rows.fold)) == set(zip(test.cell_id, test.fold))
    adata = ad.read_h5ad(workdir / "resources/standardized/pbmc68k.h5ad")
    assert test.cell_id.nunique() == adata.n_obs == 700


def test_cross_species_recovers_truth_and_keeps_diagonal_apart(default_run):
    workdir, _ = default_run
    m = _read_metrics(workdir)
    cs = _metric(m, dataset="atlas", task="cross_species", metric="macro_f1")
    off = cs[cs.group.map(lambda g: g.split("->")[0] != g.split("->")[1])]
    diag = cs[cs.group.map(lambda g: g.split("->")[0] == g.split("->")[1])]
    assert len(diag) and len(off)
    paper = off[off.pipeline == "rankz_centroid"]["value"].mean()
    shuffled = off[off.pipeline == "control_shuffled"]["value"].mean()
    assert paper > shuffled + 0.3, (paper, shuffled)
    # more divergent species are harder: alpha->beta (0.3) beats alpha->gamma (0.6)
    by_pair = off[off.pipeline == "rankz_centroid"].groupby("group")["value"].mean()
    assert by_pair["alpha->beta"] > by_pair["alpha->gamma"]
    # one transfer fold per pair, trained on every alpha cell; the diagonal is a 4-fold donor CV
    assert off.groupby(["pipeline", "group", "repeat"]).fold.nunique().eq(1).all()
    assert diag[diag.pipeline == "rankz_centroid"].groupby("group").fold.nunique().eq(4).all()
    splits = pd.read_csv(workdir / "results/splits/dataset~atlas/task~cross_species.tsv.gz", sep="\t")
    std = ad.read_h5ad(workdir / "resources/standardized/atlas.h5ad", backed="r").obs
    train0 = splits[(splits.fold == 0) & (splits.role == "train")]
    assert set(train0.cell_id) == set(std.index[std.organism == train0.group.iloc[0].split("->")[0]])
    # beta's own type is not in alpha: counted apart, never in the headline
    unseen = _metric(m, task="cross_species", group="alpha->beta", metric="n_cells_unseen_label")
    assert (unseen.value > 0).all()
    s = contracts.read_summary(workdir / "results/summary.tsv")
    head = s[(s.task == "cross_species") & (s.group == "") & (s.metric == "macro_f1")].set_index("pipeline")
    assert head.loc["rankz_centroid", "n_units"] == 6 and head.loc["rankz_centroid", "unit"] == "species pair"
    assert float(head.loc["rankz_centroid", "value"]) == pytest.approx(by_pair.mean())


def test_held_out_types_are_flagged_as_novel(default_run):
    workdir, _ = default_run
    m = _read_metrics(workdir)
    auc = _metric(m, dataset="atlas", task="novel_type", metric="novelty_auroc").groupby("pipeline")["value"].mean()
    assert (_metric(m, task="novel_type", pipeline="control_majority", metric="novelty_auroc").value == 0.5).all()
    assert auc["rankz_centroid"] > 0.7, auc
    assert auc["control_majority"] == pytest.approx(0.5)


def test_disease_program_is_found_at_cell_and_donor_level(default_run):
    workdir, _ = default_run
    m = _read_metrics(workdir)
    cell = _metric(m, task="disease_cell", metric="macro_f1").groupby("pipeline")["value"].mean()
    assert cell["rankz_centroid"] > cell["control_shuffled"] + 0.1, cell
    donor = _metric(m, task="disease_donor", metric="accuracy").groupby("pipeline")["value"].mean()
    # each fold holds out one healthy and one disease donor: the majority gets exactly one right
    assert donor["rankz_centroid"] >= 0.75 and donor["control_majority"] == pytest.approx(0.5), donor


def test_results_readme_headline_and_controls(default_run):
    workdir, _ = default_run
    text = (workdir / "results/README.md").read_text()
    assert "rankz_centroid (declared)" in text and "log1p_pca_logreg (declared)" in text
    assert "chosen on the evaluation folds: optimistic" in text
    assert "macro F1 (transfer pairs, excl. same-species, shared labels)" in text
    assert "novelty AUROC" in text and "signal over control" in text
    line = next(x for x in text.splitlines() if x.startswith("| atlas | cross_species"))
    assert "species pair" in line and "5 repeats" in line
    s = contracts.read_summary(workdir / "results/summary.tsv")
    shuffled = s[(s.pipeline == "control_shuffled") & (s.metric == "auroc_ovr") & (s.group == "")]
    assert (shuffled.n_repeats.astype(int) == 5).all()
    values = shuffled.value.astype(float)
    assert len(values) == 8 and (abs(values - 0.5) < 0.15).all(), values
    majority = s[(s.pipeline == "control_majority") & (s.metric == "auroc_ovr") & (s.group == "")]
    assert (majority.value.astype(float) == 0.5).all()          # constant scores
    # issue 22: every control of every disease task reads chance, the donor-level task included
    disease = s[(s.kind == "disease") & (s.role == "control") & (s.group == "")
                & s.metric.isin(["balanced_accuracy", "auroc_ovr"])]
    assert len(disease) == 8 and disease.value.astype(float).between(0.35, 0.65).all(), disease
    assert "fall below chance" not in text and "Controls against chance" in text
    assert "## Donor splits: the score of each held-out unit" in text
    best = pd.read_csv(workdir / "results/tables/best_linear.tsv", sep="\t")
    assert set(best.family) == {"linear"}
    for stem in ("headline", "summary", "paired_comparison", "cross_species_unseen"):
        assert "ntervals" in (workdir / f"results/tables/{stem}.md").read_text()


def test_second_run_does_no_work(default_run):
    workdir, _ = default_run
    proc = run_snakemake(workdir, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_lint_is_clean(default_run):
    workdir, _ = default_run
    proc = run_snakemake(workdir, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _local_dataset(workdir, name, adata, columns, tasks, extra_config=""):
    path = workdir / f"{name}.h5ad"
    adata.write_h5ad(path)
    registry = (workdir / "config/datasets.yaml").read_text()
    cols = ", ".join(f"{k}: {v}" for k, v in columns.items())
    registry += f"\n{name}:\n  source: local\n  files: [{{path: {path}}}]\n  format: h5ad\n  columns: {{{cols}}}\n"
    (workdir / "config/datasets.yaml").write_text(registry)
    (workdir / "extra.yaml").write_text(
        "tasks:\n" + "".join(f"  {t}:\n    kind: celltype\n    split: stratified\n    n_folds: 5\n"
                             f"    datasets: [{name}]\n" for t in tasks) + extra_config)


def _counts_adata(n=120, genes=60, seed=0, label_col="cell_type"):
    rng = np.random.default_rng(seed)
    labels = np.repeat(["a", "b", "c"], n // 3)
    means = rng.gamma(2, 1, size=(3, genes))
    X = rng.poisson(means[np.repeat(np.arange(3), n // 3)] * 3).astype(np.float32)
    obs = pd.DataFrame({label_col: labels}, index=[f"cell{i}" for i in range(n)])
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(genes)]))


def _fails_with(proc, *needles):
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    lines = [line for line in text.splitlines() if "sclinbench error" in line or "SclinbenchError" in line]
    assert lines, text[-3000:]
    for needle in needles:
        assert any(needle in line for line in lines), (needle, lines)


@pytest.fixture
def workdir(tmp_path):
    return copy_workflow(tmp_path / "wf")


def test_misspelled_config_key_is_one_line(workdir):
    (workdir / "bad.yaml").write_text("pipelnes: {}\n")
    proc = run_snakemake(workdir, "-n", "--configfile", "config/config.yaml", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "unknown key 'pipelnes' at top level" in proc.stdout + proc.stderr


def test_yaml_syntax_errors_name_the_file_and_line(workdir):
    """Issue 24: a YAML syntax error gave Snakemake's generic 'not valid JSON or YAML'. The config
    files are checked by ``python -m sclinbench.workflow.config`` (./bootstrap run does it first); the
    registry, which the Snakefile reads, says file and line itself."""
    import subprocess
    import sys

    (workdir / "bad.yaml").write_text("use_tasks: [celltype_donor\ntasks: {}\n")
    proc = subprocess.run([sys.executable, "-m", "sclinbench.workflow.config", "bad.yaml"], cwd=workdir,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("sclinbench error: bad.yaml:2:") and "started at line 1" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    ok = subprocess.run([sys.executable, "-m", "sclinbench.workflow.config", "config/config.yaml"], cwd=workdir,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and not ok.stderr
    (workdir / "reg.yaml").write_text("mine:\n  source: bundled\n\tbundled: pbmc68k_reduced\n")
    (workdir / "mine.yaml").write_text("registry: reg.yaml\n")
    proc = run_snakemake(workdir, "-n", "--configfile", "config/config.yaml", "mine.yaml", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "reg.yaml:3:1: the registry is not valid YAML" in text, text[-2000:]
    assert "Traceback" not in text


def test_an_option_of_another_model_stops_the_run_at_validation(workdir):
    (workdir / "bad.yaml").write_text("pipelines:\n  mine: {representation: {name: rankz}, model: {name: logreg, alpha: 2}}\n")
    proc = run_snakemake(workdir, "-n", "--configfile", "config/config.yaml", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "'alpha' at pipelines.mine.model is not an option of model 'logreg' (its options: C," in proc.stdout + proc.stderr
    assert not (workdir / "results").exists()


def test_dataset_without_label_column(workdir):
    _local_dataset(workdir, "mine", _counts_adata(label_col="celltype_x"), {"cell_type": "celltype_x_typo"},
                   ["mine_ct"])
    proc = run_snakemake(workdir, "results/splits/dataset~mine/task~mine_ct.tsv.gz", "--configfile", "config/config.yaml", "extra.yaml", check=False)
    _fails_with(proc, "celltype_x_typo", "celltype_x")


def test_normalized_counts_are_refused(workdir):
    a = _counts_adata()
    a.X = np.log1p(a.X / a.X.sum(1, keepdims=True) * 1e4)
    _local_dataset(workdir, "lognorm", a, {"cell_type": "cell_type"}, ["lognorm_ct"])
    proc = run_snakemake(workdir, "resources/standardized/lognorm.h5ad", "--configfile", "config/config.yaml", "extra.yaml", check=False)
    _fails_with(proc, "integer")
    assert not (workdir / "resources/standardized/lognorm.h5ad").exists()


def test_class_smaller_than_folds(workdir):
    a = _counts_adata()
    a.obs.loc[a.obs_names[:3], "cell_type"] = "rare"
    _local_dataset(workdir, "rare", a, {"cell_type": "cell_type"}, ["rare_ct"])
    proc = run_snakemake(workdir, "results/splits/dataset~rare/task~rare_ct.tsv.gz", "--configfile", "config/config.yaml", "extra.yaml", check=False)
    _fails_with(proc, "class 'rare'", "n_folds=5")


def test_zero_cells_after_filtering(workdir):
    _local_dataset(workdir, "tiny", _counts_adata(), {"cell_type": "cell_type"}, ["tiny_ct"],
                   extra_config="qc:\n  min_genes: 100000\n")
    proc = run_snakemake(workdir, "resources/standardized/tiny.h5ad", "--configfile", "config/config.yaml", "extra.yaml", check=False)
    _fails_with(proc, "tiny")


def test_paper_configuration_dry_runs_offline(workdir):
    proc = run_snakemake(workdir, "-n", "--configfile", *paper_configfiles(workdir), check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    for rule in ("fetch", "ensembl_orthologs", "standardize", "evaluate", "figures", "tables"):
        assert f"\n{rule} " in text or f"\n{rule}\t" in text or f"rule {rule}:" in text, rule
    assert "results/predictions/dataset~spermatogenesis/task~spermatogenesis_cross_species" in text
    assert "resources/orthologs/ensembl-112/hsapiens__mmusculus.tsv" in text
    for task in ("ts_celltype_stratified", "ts_celltype_donor", "infection_cell_paper"):
        assert f"task~{task}" in text, task
    assert "representation~counts.parquet" in text          # the paper's cross-species centroid


def test_local_dataset_gets_metrics_and_figures(workdir):
    """A user's h5ad with three lines of registry and a task gets scored, figures and tables included."""
    adata = _counts_adata(n=150, genes=80)
    adata.obs["sample"] = np.tile(["s1", "s2", "s3"], 50)
    adata.write_h5ad(workdir / "mine.h5ad")
    with open(workdir / "config/datasets.yaml", "a") as handle:
        handle.write(f"\nmydata:\n  source: local\n  files: [{{path: {workdir / 'mine.h5ad'}}}]\n"
                     "  organism: Homo sapiens\n  columns: {cell_type: cell_type, donor_id: sample}\n")
    (workdir / "mine.yaml").write_text(
        "use_tasks: [mine_celltype]\ntasks:\n  mine_celltype: {kind: celltype, split: donor, n_folds: 3, "
        "datasets: [mydata]}\n")
    proc = run_snakemake(workdir, "--configfile", "config/config.yaml", "mine.yaml")
    # the README's example runs clean: gene ids read from the ids, the organism given (issue 24)
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if " WARNING sclinbench" in line]
    assert not warnings, warnings
    m = _read_metrics(workdir)
    assert set(m.dataset) == {"mydata"} and set(m.task) == {"mine_celltype"}
    f1 = m[m.metric == "macro_f1"].groupby("pipeline")["value"].mean()
    assert f1["rankz_centroid"] > f1["control_shuffled"] + 0.3
    for stem in ("pipeline_scores", "normalization_model"):
        png = workdir / f"results/figures/{stem}.png"
        assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mydata" in (workdir / "results/tables/summary.tsv").read_text()


def test_the_default_run_prints_no_warning_and_says_where_the_results_are(default_run):
    """Issue 24: 68 sclinbench warnings about the embedded data and 41 JSON job records on the
    console; nothing at the end said where the results were."""
    workdir, proc = default_run
    console = proc.stdout + proc.stderr
    noise = [line for line in console.splitlines()
             if " WARNING sclinbench" in line or "job record:" in line or "Warning:" in line]
    assert not noise, noise[:5]
    assert f"sclinbench: results in {workdir.resolve() / 'results/README.md'}" in console
    assert "--report results/report.html" in console.splitlines()[-1] or "report.html" in console
    # the job records are in the job logs
    assert "job record:" in (workdir / "logs/evaluate/dataset~atlas/task~celltype_donor/"
                             "representation~rankz.log").read_text()


def test_logs_say_what_each_step_does_and_no_more(default_run):
    workdir, _ = default_run
    figures = (workdir / "logs/figures.log").read_text()
    assert "fontTools" not in figures and len(figures.splitlines()) < 10, figures[-2000:]
    evaluate = (workdir / "logs/evaluate/dataset~atlas/task~celltype_donor/representation~rankz.log").read_text()
    assert "starting fold 1/4" in evaluate and "starting fold 4/4" in evaluate and "fold 4/4 done" in evaluate
    score = (workdir / "logs/score/dataset~atlas/task~cross_species.log").read_text()
    assert "atlas/cross_species, headline: 6 species pairs" in score
    assert "atlas/cross_species, alpha->beta:" in score
