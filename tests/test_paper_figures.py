"""The paper's figures by name (sclinbench.paper_figures): built from the score stage's tables of a
made-up run of the paper's tasks, and planned by `snakemake -n` with config/paper.yaml."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import fake_predictions as fp  # noqa: E402
from conftest import REPO, copy_workflow, paper_configfiles, run_snakemake  # noqa: E402

from sclinbench import paper_figures, report  # noqa: E402
from sclinbench.workflow import contracts

ACC = {"rankz_centroid": 0.8, "paper_rankz_anova_pca_logreg": 0.85, "log1p_pca_logreg": 0.7,
       "control_majority": 0.3, "control_shuffled": 0.25}
SPECS = {**fp.PIPELINE_SPECS,
         "paper_rankz_anova_pca_logreg": {"representation": {"name": "rankz"}, "model": {"name": "logreg"}}}
DECLARED = ["rankz_centroid", "paper_rankz_anova_pca_logreg"]
TASKS = {
    "ts_celltype_stratified": {"kind": "celltype", "split": "stratified_holdout", "protocol": "paper",
                               "n_repeats": 5, "test_fraction": 0.2},
    "ts_celltype_donor": {"kind": "celltype", "split": "leave_one_donor_out"},
    "ts_novel_type": {"kind": "novel_type", "split": "novel_type"},
    "spermatogenesis_cross_species": {"kind": "cross_species", "split": "cross_species", "protocol": "paper"},
    "infection_cell_paper": {"kind": "disease", "split": "stratified", "protocol": "paper"},
    "infection_cell": {"kind": "disease", "split": "donor"},
}
TISSUES = ["ts_blood", "ts_liver", "ts_lung"]
RUN = ([("ts_blood", "ts_celltype_stratified"), ("ts_liver", "ts_celltype_stratified"),
        ("ts_lung", "ts_celltype_stratified"), ("ts_blood", "ts_celltype_donor"), ("ts_liver", "ts_celltype_donor"),
        ("ts_blood", "ts_novel_type"), ("spermatogenesis", "spermatogenesis_cross_species"),
        ("liao2020", "infection_cell_paper"), ("liao2020", "infection_cell")])
SPECIES = ("human", "macaque", "mouse", "chimpanzee")
FIGURES = {"tabula_sapiens": ["ts_celltype_stratified", "ts_celltype_donor"],
           "spermatogenesis_matrix": ["spermatogenesis_cross_species"],
           "spermatogenesis_by_species": ["spermatogenesis_cross_species"],
           "infection": ["infection_cell_paper", "infection_cell"], "novel_types": ["ts_novel_type"]}


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    """results/summary.tsv of a made-up run of the paper's tasks (the score stage's real code)."""
    from sclinbench.evaluate import intervals, metrics
    from sclinbench.workflow.io import write_table

    tmp = tmp_path_factory.mktemp("paper_run")
    files = []
    for i, (dataset, task) in enumerate(RUN):
        spec = TASKS[task]
        if spec["kind"] == "cross_species":
            pred = fp.cross_species_predictions(ACC, species=SPECIES, seed=i, only_in="macaque")
        elif spec["kind"] == "novel_type":
            pred = fp.novel_predictions(ACC, seed=i)
        elif spec["split"] == "stratified_holdout":
            pred = fp.holdout_predictions(ACC, seed=i)
        elif spec["kind"] == "disease":
            pred = fp.kfold_predictions(ACC, n_donors=3, cells_per_donor=60, n_folds=3, seed=i,
                                        labels=["infected", "uninfected"])
        else:
            pred = fp.kfold_predictions(ACC, n_folds=6, seed=i)
        s, _ = intervals.summarize_predictions(pred, spec, n_boot=200, key=f"{dataset}/{task}")
        path = tmp / f"{dataset}~{task}.summary.tsv"
        write_table(s, path)
        files.append(path)
    return metrics.assemble(files, [d for d, _ in RUN], [t for _, t in RUN], TASKS, SPECS, kind="summary")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The shipped published numbers plus made-up Tabula Sapiens rows (the shipped table has none)."""
    ref = report.read_reference(REPO / "config/reference_results.tsv")
    extra = pd.DataFrame([{**ref.iloc[0].to_dict(), "model": "UCE", "dataset": d, "task": "celltype",
                           "metric": "macro_f1", "training_species": "", "value": v,
                           "includes_diagonal": "unknown", "note": "made up for a test"}
                          for d, v in [("ts_blood", 0.61), ("ts_liver", 0.55)]])
    return pd.concat([ref, extra], ignore_index=True)


def test_tabula_sapiens_table_has_every_tissue_intervals_and_marked_published(summary, reference):
    t = paper_figures.tabula_sapiens_table(summary, reference, FIGURES["tabula_sapiens"], DECLARED)
    assert list(t.columns) == paper_figures.PAPER_TABLE_COLUMNS
    ours = t[t["source"] == "computed here"]
    paper = ours[ours["task"] == "ts_celltype_stratified"]
    for p in DECLARED:
        assert sorted(paper.loc[paper["model"] == p, "dataset"]) == TISSUES
    assert set(ours["model"]) == set(DECLARED) | {"control_majority", "control_shuffled"}  # log1p: not declared
    methods = ours[ours["role"] == "method"]
    assert (methods["ci_low"] <= methods["value"]).all() and (methods["value"] <= methods["ci_high"]).all()
    assert (methods["n"] >= 3).all() and methods["interval"].str.contains("bootstrap|Student-t").all()
    assert set(ours.loc[ours["task"] == "ts_celltype_donor", "dataset"]) == {"ts_blood", "ts_liver"}
    pub = t[t["source"] == "published"]
    assert sorted(zip(pub["dataset"], pub["value"])) == [("ts_blood", 0.61), ("ts_liver", 0.55)]
    assert (pub["role"] == "published").all() and pub["ci_low"].isna().all()
    # the paper protocol's number is the mean over the 5 hold-outs, as the summary has it
    s = summary[(summary.task == "ts_celltype_stratified") & (summary.metric == "macro_f1") & (summary.group == "")]
    row = s[(s.dataset == "ts_lung") & (s.pipeline == "rankz_centroid")].iloc[0]
    mine = paper[(paper.dataset == "ts_lung") & (paper.model == "rankz_centroid")].iloc[0]
    assert mine["value"] == pytest.approx(row["value"]) and mine["ci_high"] == pytest.approx(row["ci_high"])


def test_matrix_table_has_every_pair_and_no_published_values(summary):
    t = paper_figures.spermatogenesis_matrix_table(summary, FIGURES["spermatogenesis_matrix"], DECLARED)
    assert (t["source"] == "computed here").all()
    for p in DECLARED:
        pairs = set(zip(t.loc[t.model == p, "training_species"], t.loc[t.model == p, "target_species"]))
        assert pairs == {(a, b) for a in SPECIES for b in SPECIES}
    off = t[t["training_species"] != t["target_species"]]
    assert off["ci_low"].notna().all() and (off["n"] >= 3).all()
    assert (t.loc[t.training_species == t.target_species, "note"].str.startswith("same species")).all()


def test_by_species_table_marks_published_and_keeps_both_averages(summary):
    ref = report.read_reference(REPO / "config/reference_results.tsv")
    aliases = {"spermatogenesis": "spermatogenesis"}
    t = paper_figures.spermatogenesis_by_species_table(summary, ref, FIGURES["spermatogenesis_by_species"],
                                                       DECLARED, aliases)
    pub = t[t["source"] == "published"]
    assert set(pub["model"]) == {"TranscriptFormer-Exemplar", "TranscriptFormer-Metazoa", "UCE", "ESM2-CE"}
    assert set(pub["training_species"]) == set(SPECIES)            # only the species of this run
    exemplar = pub[(pub.model == "TranscriptFormer-Exemplar") & (pub.training_species == "mouse")]
    assert exemplar["value"].tolist() == [0.47] and pub["ci_low"].isna().all()
    ours = t[(t["source"] == "computed here") & (t["model"] == "rankz_centroid")]
    incl = ours[ours["includes_diagonal"] == "true"]
    assert sorted(incl["training_species"]) == sorted(SPECIES) and (incl["n"] == len(SPECIES)).all()
    assert incl["ci_low"].notna().all()
    assert sorted(ours.loc[ours["includes_diagonal"] == "false", "training_species"]) == sorted(SPECIES)


def test_infection_and_novel_tables(summary):
    inf = paper_figures.infection_table(summary, None, FIGURES["infection"], DECLARED)
    assert set(inf["task"]) == set(FIGURES["infection"]) and (inf["source"] == "computed here").all()
    assert inf.loc[inf.role == "method", "note"].str.match(r"\d+ test cells; 0 scored by a fallback model").all()
    donor = inf[(inf.task == "infection_cell") & (inf.role == "method")]
    assert (donor["n"] == 3).all() and donor["unit"].eq("donor").all()
    nov = paper_figures.novel_types_table(summary, None, FIGURES["novel_types"], DECLARED)
    assert set(nov["metric"]) == {"novelty_auroc"} and set(nov["dataset"]) == {"ts_blood"}
    assert nov.loc[nov.role == "method", "n"].eq(4).all()        # the 4 held-out types


def test_make_paper_figures_writes_every_named_file(summary, reference, tmp_path):
    written = paper_figures.make_paper_figures(summary, FIGURES, DECLARED, tmp_path, reference=reference)
    assert set(written) == set(FIGURES) == set(contracts.PAPER_FIGURES)
    for name, (png, pdf, tsv) in written.items():
        assert png.stat().st_size > 10_000 and pdf.stat().st_size > 5_000, name
        table = pd.read_csv(tsv, sep="\t", keep_default_na=False)
        assert list(table.columns) == paper_figures.PAPER_TABLE_COLUMNS and (table["figure"] == name).all()
        assert set(table["source"]) <= {"computed here", "published"}
    ts = pd.read_csv(tmp_path / "tabula_sapiens.tsv", sep="\t")
    assert (ts["source"] == "published").sum() == 2
    # a figure of tasks that did not run is a placeholder, with an empty table
    fig, table = paper_figures.paper_figure("infection", summary, ["no_such_task"], DECLARED)
    assert getattr(fig, "sclinbench_placeholder", False) and table.empty


def test_schema_names_the_papers_figures():
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())
    names = schema["properties"]["report"]["properties"]["paper_figures"]["properties"]
    assert tuple(names) == contracts.PAPER_FIGURES
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    assert tuple(paper["report"]["paper_figures"]) == contracts.PAPER_FIGURES
    assert set(t for ts in paper["report"]["paper_figures"].values() for t in ts) <= set(paper["use_tasks"])


# --------------------------------------------------------------------------- the workflow

def _planned_jobs(workdir, configfiles):
    """The jobs `snakemake -n` plans (Snakemake's API: the dry run's DAG, with each job's params)."""
    from snakemake.api import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
        SnakemakeApi,
        StorageSettings,
    )
    from snakemake.settings.types import Quietness

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wapi = api.workflow(resource_settings=ResourceSettings(cores=1),
                            config_settings=ConfigSettings(configfiles=[workdir / f for f in configfiles]),
                            storage_settings=StorageSettings(), snakefile=workdir / "Snakefile", workdir=workdir)
        wapi.dag(DAGSettings()).execute_workflow(executor="dryrun")
        return [(job.rule.name, dict(job.wildcards_dict), job.params, list(job.output))
                for job in wapi._workflow.dag.jobs]  # noqa: SLF001 -- the DAG the dry run planned


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("paper_figures_wf"))


def test_paper_dry_run_plans_the_paper_figures_rule(workdir):
    proc = run_snakemake(workdir, "-n", "--configfile", *paper_configfiles(workdir))
    text = proc.stdout + proc.stderr
    assert "rule paper_figures:" in text or "\npaper_figures " in text
    for name in contracts.PAPER_FIGURES:
        for ext in ("png", "pdf", "tsv"):
            assert f"results/paper/{name}.{ext}" in text, (name, ext)


def test_paper_disease_pipeline_runs_on_the_infection_tasks_only(workdir):
    jobs = _planned_jobs(workdir, paper_configfiles(workdir))
    evaluate = [(wc, params) for rule, wc, params, _ in jobs if rule == "evaluate"]
    with_leiden = {wc["task"] for wc, params in evaluate if "paper_leiden_logreg" in params.pipelines}
    assert with_leiden == {"infection_cell", "infection_cell_paper"}
    tasks = {wc["task"] for wc, _ in evaluate}
    assert {"ts_celltype_stratified", "ts_celltype_donor", "ts_novel_type", "spermatogenesis_cross_species"} <= tasks
    for wc, params in evaluate:   # the other tasks keep every other pipeline of their representation
        if wc["task"] == "ts_celltype_stratified" and wc["representation"] == "rankz":
            assert {"rankz_centroid", "paper_rankz_anova_pca_logreg"} <= set(params.pipelines)
    figures = [params for rule, _, params, _ in jobs if rule == "paper_figures"]
    assert len(figures) == 1 and set(figures[0].figures) == set(contracts.PAPER_FIGURES)


def test_default_run_plans_no_paper_figures(workdir):
    jobs = _planned_jobs(workdir, [])
    assert not [j for j in jobs if j[0] == "paper_figures"]
    assert np.all([not str(o).startswith("results/paper/") for j in jobs for o in j[3]])
