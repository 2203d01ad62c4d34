"""config/paper_manifest.yaml and sclinbench.data.manifest: the paper's tasks checked offline against what is
known about the real files, the downloaded files checked against it, and donors filtered while reading."""

import copy
import re
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from conftest import REPO, copy_workflow, paper_configfiles, run_snakemake

from sclinbench import data, report
from sclinbench.data import manifest
from sclinbench.data.datasets import standardized_dataset
from sclinbench.errors import SclinbenchError

MANIFEST = REPO / "config" / "paper_manifest.yaml"
SCHEMA = REPO / "config" / "paper_manifest.schema.yaml"
TSP17 = "TSP(1[7-9]|[2-9][0-9])"
COLLECTION = "e5f58829-1a66-40b5-a624-9046778e74f5"
VERSION = "0a1b2c3d-0000-4000-8000-000000000001"


def _yaml(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def real():
    return manifest.load(MANIFEST), _yaml(REPO / "config" / "datasets.yaml"), _yaml(REPO / "config" / "paper.yaml")


# ----------------------------------------------------------------------------- a CELLxGENE-like file

def cellxgene_like(path: Path, donors=("TSP1", "TSP2", "TSP17", "TSP21"), n_per_donor=60, n_genes=120,
                   schema_version="5.2.0", seed=0) -> ad.AnnData:
    """A small h5ad laid out like a CELLxGENE schema 5 Tabula Sapiens file (seeded).

    Normalized X, raw counts in raw.X, layers/decontXcounts, obs donor_id / cell_type / organism,
    var index = Ensembl ids, var feature_name with a SYMBOL_ENSG... and bare Ensembl ids among the
    names, uns schema_version and citation. Donors' cells are interleaved (not contiguous on disk).
    """
    rng = np.random.default_rng(seed)
    n = n_per_donor * len(donors)
    donor = np.tile(np.asarray(donors, dtype=object), n_per_donor)
    types = np.array(["T cell", "B cell", "monocyte"], dtype=object)[rng.integers(0, 3, n)]
    counts = sp.random(n, n_genes, density=0.3, format="csr", random_state=seed,
                       data_rvs=lambda k: rng.integers(1, 30, k)).astype(np.float32)
    counts = (counts + sp.csr_matrix((np.full(n, 5.0, dtype=np.float32), (np.arange(n), rng.integers(0, n_genes, n))),
                                     shape=counts.shape)).tocsr()  # no empty cell
    ids = [f"ENSG{i:011d}" for i in range(n_genes)]
    names = [f"GENE{i}" for i in range(n_genes)]
    names[3], names[4] = f"MATR3_{ids[3]}", ids[4]
    obs = pd.DataFrame({"donor_id": pd.Categorical(donor), "cell_type": pd.Categorical(types),
                        "organism": pd.Categorical(["Homo sapiens"] * n)},
                       index=[f"cell{i}" for i in range(n)])
    var = pd.DataFrame({"feature_name": pd.Categorical(names)}, index=ids)
    raw = ad.AnnData(X=counts, obs=obs, var=var)
    adata = raw.copy()
    adata.X = sp.csr_matrix(np.log1p(counts.toarray() / np.asarray(counts.sum(1)) * 1e4).astype(np.float32))
    adata.raw = raw
    adata.layers["decontXcounts"] = counts.copy()
    adata.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
    adata.uns["schema_version"] = schema_version
    adata.uns["citation"] = (f"Publication: https://doi.org/10.1126/science.abl4896 Dataset Version: "
                             f"https://datasets.cellxgene.cziscience.com/{VERSION}.h5ad curated and distributed by "
                             f"CZ CELLxGENE Discover in Collection: https://cellxgene.cziscience.com/collections/{COLLECTION}")
    adata.write_h5ad(path, compression="gzip")
    return adata


def fixture_entry(path: Path, **extra) -> dict:
    entry = {"description": "fixture", "source": "local", "files": [{"path": str(path)}], "format": "h5ad",
             "counts": "raw.X", "collection_id": COLLECTION, "dataset_version_id": VERSION,
             "organism": "Homo sapiens", "columns": {"cell_type": "cell_type", "donor_id": "donor_id"},
             "gene_id": "ensembl", "var_columns": {"gene_symbol": "feature_name"},
             "ood_donors": [TSP17], "ood_only": True}
    entry.update(extra)
    return entry


def fixture_manifest(tmp_path: Path, name: str, path: Path, **facts) -> Path:
    """A manifest beside a copy of the real schema, describing the fixture file (edit with ``facts``)."""
    spec = {"files": [str(path)], "collection_id": COLLECTION, "dataset_version_id": VERSION,
            "held_out_donors": TSP17, "schema_version": {"value": "5", "source": "fx"},
            "matrices": {"value": ["X", "raw.X", "layers/decontXcounts"], "source": "fx"},
            "label_column": {"value": "cell_type", "source": "fx"},
            "donor_column": {"value": "donor_id", "source": "fx"},
            "gene_symbols": {"value": "feature_name", "all_symbols": False, "source": "fx"},
            "n_cells": {"value": 240, "source": "fx"}, "n_donors": {"value": 4, "source": "fx"},
            "n_cells_held_out": {"value": 120, "source": "fx"}, "n_donors_held_out": {"value": 2, "source": "fx"},
            "n_genes": {"value": 120, "source": "fx"}}
    spec.update(facts)
    raw = {"version": 1, "sources": {"fx": {"cite": "the test fixture", "detail": "tests/test_manifest.py"}},
           "datasets": {name: spec}}
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    shutil.copy(SCHEMA, folder / SCHEMA.name)
    out = folder / "paper_manifest.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


# ----------------------------------------------------------------------------- the committed manifest

def test_manifest_is_valid_and_every_fact_has_a_known_source(real):
    m, registry, _ = real
    assert m is not None and len(m.datasets) >= 37
    for name, spec in m.datasets.items():
        for key in manifest.FACT_KEYS:
            if key in spec:
                fact = m.fact(name, key)
                assert fact.source, (name, key)
                assert fact.known or fact.at_least is not None or fact.note, (name, key, "null without a reason")


def test_manifest_describes_the_registry_files(real):
    m, registry, _ = real
    for name, spec in m.datasets.items():
        assert name in registry, name
        assert m.applies(name, registry[name]), f"{name}: manifest files differ from the registry's"
        entry = registry[name]
        if "dataset_version_id" in spec:  # CELLxGENE: the URL serves <dataset_version_id>.h5ad
            assert entry["dataset_version_id"] == spec["dataset_version_id"]
            assert entry["files"][0]["url"].endswith(f"/{spec['dataset_version_id']}.h5ad")
            assert entry["collection_id"] == spec["collection_id"] == COLLECTION


def test_every_cellxgene_registry_entry_names_its_collection_and_version(real):
    _, registry, _ = real
    for name, entry in registry.items():
        urls = [f.get("url") or "" for f in entry.get("files", [])]
        if any("cellxgene.cziscience.com" in u for u in urls):
            assert re.fullmatch(r"[0-9a-f-]{36}", entry["collection_id"]), name
            assert urls[0] == f"https://datasets.cellxgene.cziscience.com/{entry['dataset_version_id']}.h5ad", name


def test_per_dataset_numbers_fit_under_the_totals(real):
    m, _, _ = real
    for total in m.totals:
        known = [m.fact(d, total["fact"]) for d in total["datasets"]]
        values = [f.value for f in known if f.known]
        assert sum(values) <= total["value"], total["name"]
        if len(values) == len(known):  # every part known: they must add up exactly
            assert sum(values) == total["value"], total["name"]


def test_held_out_donor_counts_match_the_issue(real):
    m, _, _ = real
    tissues = [n for n in m.datasets if m.datasets[n].get("group") == "tabula_sapiens"]
    donors = {n: m.fact(n, "n_donors_held_out") for n in tissues}
    assert len(tissues) == 28
    assert {n for n, f in donors.items() if f.value == 0} == {"ts_kidney"}
    ones = {n for n, f in donors.items() if f.value == 1}
    assert ones == {f"ts_{t}" for t in ("eye", "mammary", "lung", "uterus", "testis", "skin", "prostate", "pancreas")}
    assert sum(1 for f in donors.values() if not f.known and f.at_least == 2) == 19
    assert m.fact("ts_kidney", "n_cells_held_out").value == 0 and m.fact("ts_pancreas", "n_cells_held_out").value == 41


# ----------------------------------------------------------------------------- offline task checks

def test_the_paper_configuration_has_no_task_that_cannot_run(real):
    m, registry, paper = real
    tasks = paper["tasks"]
    assert manifest.task_problems(tasks, registry, m) == []
    # the rule behind the lists: every donor-held-out tissue has >= 2 held-out donors, no task has a 0-cell tissue
    for name in tasks["ts_celltype_donor"]["datasets"]:
        assert m.fact(name, "n_donors_held_out").at_least == 2 and not m.fact(name, "n_donors_held_out").known
    assert tasks["ts_celltype_donor"]["split"] == "leave_one_donor_out"
    assert "ts_kidney" not in tasks["ts_celltype_stratified"]["datasets"]
    assert "ts_lung" not in tasks["ts_novel_type"]["datasets"]
    assert registry["spermatogenesis_human"]["columns"]["donor_id"] == "donor_id"
    assert all(registry[m_]["var_columns"]["gene_symbol"] == "feature_name"
               for m_ in registry["spermatogenesis"]["members"].values())


@pytest.mark.parametrize("dataset, change, needles", [
    ("ts_kidney", {}, ["'ts_celltype_donor'", "'ts_kidney'", "0 cells from held-out donors",
                       "remove 'ts_kidney' from tasks.ts_celltype_donor.datasets"]),
    ("ts_lung", {}, ["'ts_lung'", "1 held-out donor", "leave_one_donor_out needs 2", "remove 'ts_lung'"]),
    ("ts_lung", {"split": "donor", "n_folds": 3}, ["1 held-out donor", "n_folds=3 needs 3"]),
    ("ts_pancreas", {"split": "stratified", "n_folds": 5, "min_cells_per_class": 25},
     ["41 cells from held-out donors cannot hold 2 classes of >= 25 cells", "lower the task's min_cells_per_class"]),
])
def test_a_task_that_cannot_run_is_one_line_with_dataset_task_number_and_fix(real, dataset, change, needles):
    m, registry, paper = real
    tasks = copy.deepcopy(paper["tasks"])
    tasks["ts_celltype_donor"]["datasets"].append(dataset)
    tasks["ts_celltype_donor"].update(change)
    problems = manifest.task_problems(tasks, registry, m)
    assert len(problems) == 1, [p.line() for p in problems]
    line = problems[0].line()
    assert "\n" not in line and "config/paper_manifest.yaml" in line and "issue 14" in line
    for needle in needles:
        assert needle in line, (needle, line)
    with pytest.raises(SclinbenchError, match=re.escape(line)):
        manifest.check_tasks(tasks, registry, MANIFEST)


def test_registry_choices_the_file_cannot_serve_are_stopped(real):
    m, registry, paper = real
    reg = copy.deepcopy(registry)
    reg["ts_blood"]["counts"] = "layers/spliced"
    reg["ts_liver"]["gene_id"] = "symbol"
    tasks = {"t": {"kind": "celltype", "split": "stratified", "n_folds": 5, "datasets": ["ts_blood", "ts_liver"]}}
    lines = [p.line() for p in manifest.task_problems(tasks, reg, m)]
    assert any("counts: layers/spliced, but the file holds X, raw.X, layers/decontXcounts" in x for x in lines)
    assert any("'ts_liver'" in x and "not a gene symbol for every gene" in x and "gene_id: ensembl" in x for x in lines)


def test_facts_apply_only_to_the_files_they_describe(real):
    m, registry, _ = real
    tasks = {"t": {"kind": "celltype", "split": "leave_one_donor_out", "datasets": ["ts_kidney"]}}
    mine = copy.deepcopy(registry)
    mine["ts_kidney"]["files"] = [{"url": "https://example.org/my_kidney.h5ad"}]  # a user's own file
    assert manifest.task_problems(tasks, mine, m) == []
    other = copy.deepcopy(registry)
    other["ts_kidney"]["ood_donors"] = ["TSP1"]  # another donor filter: the held-out counts do not apply
    assert manifest.task_problems(tasks, other, m) == []
    every = copy.deepcopy(registry)
    every["ts_kidney"]["ood_only"] = False  # all donors: n_cells / n_donors (unknown) apply, nothing to stop
    assert manifest.task_problems(tasks, every, m) == []


def test_lower_bounds_never_stop_but_are_reported(real, capsys):
    m, registry, paper = real
    tasks = {"t": {"kind": "celltype", "split": "donor", "n_folds": 3, "datasets": ["ts_blood", "ts_fat"]}}
    unverified = []
    assert manifest.task_problems(tasks, registry, m, unverified) == []
    assert unverified == ["ts_blood/t: >= 2 held-out donors known, split donor needs 3",
                          "ts_fat/t: >= 2 held-out donors known, split donor needs 3"]
    manifest.check_tasks(tasks, registry, MANIFEST)
    assert "2 task x dataset pair(s) could not be verified offline" in capsys.readouterr().err


def test_collection_members_are_checked(tmp_path, real):
    m, registry, _ = real
    raw = _yaml(MANIFEST)
    raw["datasets"]["spermatogenesis_mouse"]["n_cells"] = {"value": 0, "source": "souza_mehta"}
    (tmp_path / SCHEMA.name).write_bytes(SCHEMA.read_bytes())
    (tmp_path / MANIFEST.name).write_text(yaml.safe_dump(raw))
    edited = manifest.load(tmp_path / MANIFEST.name)
    tasks = {"x": {"kind": "cross_species", "split": "cross_species", "datasets": ["spermatogenesis"],
                   "organisms": ["Homo sapiens", "Mus musculus"]}}
    lines = [p.line() for p in manifest.task_problems(tasks, registry, edited)]
    assert any("member spermatogenesis_mouse has 0 cells" in x and "drop Mus musculus" in x for x in lines)
    assert any("only 1 organism(s) with cells" in x for x in lines)
    assert manifest.task_problems(tasks, registry, m) == []


def test_without_a_manifest_nothing_is_checked(tmp_path, real):
    _, registry, _ = real
    manifest.check_tasks({"t": {"kind": "celltype", "split": "donor", "n_folds": 9, "datasets": ["ts_kidney"]}},
                         registry, tmp_path / "missing.yaml")


def test_a_manifest_citing_an_unknown_source_is_refused(tmp_path):
    path = fixture_manifest(tmp_path, "fx", tmp_path / "x.h5ad", n_cells={"value": 3, "source": "nowhere"})
    with pytest.raises(SclinbenchError, match="cites source 'nowhere'"):
        manifest.load(path)
    path = fixture_manifest(tmp_path, "fx", tmp_path / "x.h5ad", n_cells={"value": None, "source": "fx"})
    with pytest.raises(SclinbenchError, match="n_cells"):  # null without a reason
        manifest.load(path)


# ----------------------------------------------------------------------------- after download

def test_downloaded_file_that_matches_gives_no_warning(tmp_path):
    path = tmp_path / "tissue.h5ad"
    cellxgene_like(path)
    facts = fixture_manifest(tmp_path, "fx", path)
    assert manifest.check_download("fx", fixture_entry(path), [path], facts) == []


def test_every_difference_is_a_warning_naming_both_numbers(tmp_path):
    path = tmp_path / "tissue.h5ad"
    cellxgene_like(path, donors=("TSP1", "TSP17", "TSP21", "TSP22"), schema_version="6.0.0")
    facts = fixture_manifest(tmp_path, "fx", path,
                             matrices={"value": ["X", "raw.X", "layers/decontXcounts", "layers/spliced"], "source": "fx"},
                             collection_id="ffffffff-1a66-40b5-a624-9046778e74f5",
                             n_genes={"at_least": 200, "source": "fx"})
    warnings = manifest.check_download("fx", fixture_entry(path, collection_id=None), [path], facts)
    text = "\n".join(warnings)
    assert "the number of cells of held-out donors (TSP(1[7-9]|[2-9][0-9])) is 180 in the downloaded file, " \
           "the manifest says 120 (config/paper_manifest.yaml: the test fixture)" in text
    assert "held-out donors (TSP(1[7-9]|[2-9][0-9])) is 3 in the downloaded file, the manifest says 2" in text
    assert "has no layers/spliced" in text
    assert "CELLxGENE schema 6.0.0 in the downloaded file, the manifest says 5.x" in text
    assert f"names collection_id {COLLECTION}, the registry and manifest say ffffffff-" in text
    assert "the number of genes is 120 in the downloaded file, the manifest says at least 200" in text
    assert len(warnings) == 6 and all("\n" not in w and "dataset 'fx'" in w for w in warnings)


def test_missing_columns_are_warnings(tmp_path):
    path = tmp_path / "tissue.h5ad"
    cellxgene_like(path)
    facts = fixture_manifest(tmp_path, "fx", path)
    entry = fixture_entry(path, columns={"cell_type": "celltype", "donor_id": "donor"},
                          var_columns={"gene_symbol": "gene_name"})
    text = "\n".join(manifest.check_download("fx", entry, [path], facts))
    assert "no obs column 'donor'" in text and "no obs column 'celltype'" in text and "no var column 'gene_name'" in text


def test_describe_reports_cells_types_and_donors_per_species():
    obs = pd.DataFrame({"organism": ["Homo sapiens"] * 3 + ["Mus musculus"] * 2,
                        "cell_type": ["a", "b", "b", "a", "a"],
                        "donor_id": ["d1", "d2", "d2", "unknown", "unknown"]}, index=list("vwxyz"))
    lines = manifest.describe(ad.AnnData(obs=obs), "sperm")
    assert lines == ["dataset 'sperm', Homo sapiens: 3 cells, 2 cell types, 2 donors (d1, d2)",
                     "dataset 'sperm', Mus musculus: 2 cells, 1 cell types, donors unknown (no donor column)"]


def test_counts_after_quality_control_are_compared(tmp_path, real):
    m, registry, _ = real
    obs = pd.DataFrame({"organism": ["Homo sapiens"] * 4 + ["Mus musculus"] * 2,
                        "cell_type": ["spermatocyte", "somatic cell", "x", "x", "spermatocyte", "somatic cell"]},
                       index=list("abcdef"))
    adata = ad.AnnData(obs=obs, uns={"sclinbench": {"qc": '{"min_genes": 200}'}})
    text = "\n".join(manifest.check_standardized("spermatogenesis", registry["spermatogenesis"], adata, MANIFEST))
    assert "6 cells after quality control (min_genes=200), the manifest says 71,202" in text
    assert "counted with cell types with more than 50 cells" in text
    assert "cell types common to every organism are somatic cell, spermatocyte, the manifest says early spermatid" in text


# ----------------------------------------------------------------------------- reading only the kept donors

class _Recorded:
    """An h5py-like 1-D dataset that records how many values each read returns."""

    def __init__(self, values, log):
        self.values, self.log, self.dtype = values, log, values.dtype

    def __getitem__(self, key):
        out = self.values[key]
        self.log.append(out.size)
        return out


def _csr_group(m: sp.csr_matrix, log):
    return type("Group", (), {"attrs": {"shape": m.shape, "encoding-type": "csr_matrix"},
                              "__getitem__": lambda self, k: {
                                  "indptr": m.indptr, "data": _Recorded(m.data, log),
                                  "indices": _Recorded(m.indices, log)}[k]})()


@pytest.mark.parametrize("block", [1, 40, 1000, 10**9])
def test_only_the_kept_rows_are_read_from_disk(block):
    rng = np.random.default_rng(1)
    m = sp.random(300, 50, density=0.2, format="csr", random_state=2)
    keep = rng.random(300) < 0.3
    log = []
    got = data._read_csr_rows(_csr_group(m, log), keep, block=block)
    assert (got != m[keep]).nnz == 0 and got.shape == (keep.sum(), 50)
    kept_nnz = int(m[keep].nnz)
    # values read from disk: the kept rows, plus at most one stretch of `block` values per read
    assert sum(log) / 2 <= kept_nnz + block * (len(log) / 2)
    if block == 1:  # one kept row per read: exactly the kept values, nothing of the other rows
        assert sum(log) / 2 == kept_nnz


def test_donors_filtered_while_reading_give_the_same_standardized_data(tmp_path, monkeypatch):
    path = tmp_path / "tissue.h5ad"
    cellxgene_like(path, n_per_donor=80)
    entry = fixture_entry(path)
    qc = {"min_genes": 5, "min_cells": 3, "min_counts": 1}
    filtered = standardized_dataset("fx", entry, [str(path)], qc)
    monkeypatch.setattr(data, "ood_row_filter", lambda entry: None)  # read every row, filter afterwards
    full = standardized_dataset("fx", entry, [str(path)], qc)
    assert filtered.n_obs == 160 and set(filtered.obs["donor_id"]) == {"TSP17", "TSP21"}
    assert (filtered.X != full.X).nnz == 0
    pd.testing.assert_frame_equal(filtered.obs, full.obs)
    pd.testing.assert_frame_equal(filtered.var, full.var)
    assert filtered.uns["sclinbench"]["n_cells_raw"] == full.uns["sclinbench"]["n_cells_raw"] == 320


def test_reading_rows_keeps_obsm_and_works_for_every_matrix(tmp_path):
    path = tmp_path / "tissue.h5ad"
    source = cellxgene_like(path)
    rows = data.ood_row_filter(fixture_entry(path))
    keep = source.obs["donor_id"].isin(["TSP17", "TSP21"]).to_numpy()
    for counts, want in (("raw.X", source.raw.X), ("layers/decontXcounts", source.layers["decontXcounts"])):
        got = data.read_raw(path, "h5ad", counts=counts, rows=rows)
        assert (got.X != want[keep]).nnz == 0 and list(got.obs_names) == list(source.obs_names[keep])
        assert np.array_equal(got.obsm["X_umap"], source.obsm["X_umap"][keep])
        assert got.uns["sclinbench_raw"]["n_obs_file"] == source.n_obs


def test_no_matching_donor_is_one_line_listing_the_donors(tmp_path):
    path = tmp_path / "tissue.h5ad"
    cellxgene_like(path, donors=("TSP1", "TSP2"))
    with pytest.raises(SclinbenchError, match=r"no donor in obs 'donor_id' matches ood_donors .*donors are: TSP1, TSP2"):
        data.read_raw(path, "h5ad", counts="raw.X", rows=data.ood_row_filter(fixture_entry(path)))


# ----------------------------------------------------------------------------- published comparison

def test_published_comparison_names_the_counts_of_both_sides():
    reference = report.read_reference(REPO / "config" / "reference_results.tsv")
    ours = pd.DataFrame({"dataset": ["spermatogenesis"], "kind": ["cross_species"],
                         "metric": ["macro_f1_mean_over_targets"], "training_species": ["Homo sapiens"],
                         "pipeline": ["rankz_centroid"], "representation": ["rankz"], "includes_diagonal": [False],
                         "mean": [0.6], "ci_low": [0.5], "ci_high": [0.7], "n": [7]})
    registry = _yaml(REPO / "config" / "datasets.yaml")
    counts = manifest.entry_counts(registry, ["spermatogenesis", "ts_blood", "pbmc68k"])
    assert counts == {"spermatogenesis": "X", "ts_blood": "raw.X",
                      "pbmc68k": "bundled (counts recovered from log-normalized raw.X)"}
    table = report.published_table(reference, ours, counts=counts)
    mine = table[table.source == report.COMPUTED]
    assert list(mine["counts"]) == ["X"]
    pub = table[table.source == report.PUBLISHED]
    assert set(pub.loc[pub.model.str.startswith("TranscriptFormer"), "counts"]) == {"X"}
    assert set(pub.loc[pub.model == "UCE", "counts"]) == {"not stated"}
    wide = report.published_wide(table)
    assert "counts" in wide.columns and wide["counts"].iloc[0] == "X"
    assert set(report.published_table(reference, ours)["counts"].iloc[:1]) == {"not recorded"}


def test_one_place_switches_the_counts_of_every_tabula_sapiens_entry():
    text = (REPO / "config" / "datasets.yaml").read_text()
    assert text.count("counts: &ts_counts") == 1 and text.count("counts: *ts_counts") == 33
    switched = yaml.safe_load(text.replace("&ts_counts raw.X", "&ts_counts layers/decontXcounts"))
    assert {e["counts"] for n, e in switched.items() if n.startswith("ts_")} == {"layers/decontXcounts"}
    # the paper's gene filter, one place for every Tabula Sapiens entry (and no other)
    assert text.count("qc: &ts_qc {min_gene_counts: 10}") == 1 and text.count("qc: *ts_qc") == 33
    registry = yaml.safe_load(text)
    assert all((e.get("qc") or {}).get("min_gene_counts") == (10 if n.startswith("ts_") else None)
               for n, e in registry.items())


# ----------------------------------------------------------------------------- the workflow



@pytest.mark.workflow
def test_dry_run_stops_before_download_with_the_reason(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    files = paper_configfiles(workdir)
    (workdir / "kidney.yaml").write_text(
        "tasks:\n  ts_novel_type:\n    datasets: [ts_blood, ts_bone_marrow, ts_kidney]\n")
    proc = run_snakemake(workdir, "-n", "--configfile", *files, "kidney.yaml", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    line = next(x for x in text.splitlines() if x.startswith("task 'ts_novel_type'"))
    assert line == ("task 'ts_novel_type' cannot run on dataset 'ts_kidney': 0 cells from held-out donors "
                    "(config/paper_manifest.yaml: issue 14, offline check; chanzuckerberg/cz-benchmarks "
                    "src/czbenchmarks/conf/datasets.yaml); remove 'ts_kidney' from tasks.ts_novel_type.datasets")
    assert not (workdir / "resources").exists()


@pytest.mark.workflow
def test_standardize_logs_the_manifest_check_and_what_the_file_holds(tmp_path):
    """The rule standardize on a local CELLxGENE-like file that the (copied) manifest describes."""
    workdir = copy_workflow(tmp_path / "wf")
    path = workdir / "tissue.h5ad"
    cellxgene_like(path, donors=("TSP1", "TSP17", "TSP21", "TSP30"))
    entry = fixture_entry(path)
    with open(workdir / "config/datasets.yaml", "a") as fh:
        fh.write("\n" + yaml.safe_dump({"fx": entry}, sort_keys=False))
    raw = _yaml(workdir / "config/paper_manifest.yaml")
    spec = _yaml(fixture_manifest(tmp_path, "fx", path))["datasets"]["fx"]
    raw["sources"]["fx"] = {"cite": "the test fixture", "detail": "tests/test_manifest.py"}
    raw["datasets"]["fx"] = spec
    (workdir / "config/paper_manifest.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run_snakemake(workdir, "resources/standardized/fx.h5ad", "--configfile", "config/config.yaml")
    log = (workdir / "logs/standardize/fx.log").read_text()
    assert "is 180 in the downloaded file, the manifest says 120" in log
    assert "held-out donors (TSP(1[7-9]|[2-9][0-9])) is 3 in the downloaded file, the manifest says 2" in log
    assert "kept 180 of 240 cells while reading" in log
    assert re.search(r"dataset 'fx', Homo sapiens: 180 cells, 3 cell types, 3 donors \(TSP17, TSP21, TSP30\)", log)
    assert "2 of 120 var 'feature_name' values are not gene symbols" in log
    out = ad.read_h5ad(workdir / "resources/standardized/fx.h5ad")
    assert out.n_obs == 180 and out.uns["sclinbench"]["n_cells_raw"] == 240


def test_read_benchmark_runs_small_and_keeps_the_same_cells(tmp_path, capsys):
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_read

    out = tmp_path / "bench.json"
    assert bench_read.main(["--cells", "3000", "--genes", "400", "--genes-per-cell", "40", "--json", str(out),
                            "--dir", str(tmp_path)]) == 0
    result = __import__("json").loads(out.read_text())
    whole, rows = result["reads"]
    assert (whole["mode"], rows["mode"]) == ("whole", "rows")
    assert whole["cells"] == rows["cells"] == result["file"]["kept_cells"] > 0
    assert whole["matrix_mib"] == rows["matrix_mib"] and rows["peak_mib"] > 0
    assert "peak RSS (MiB)" in capsys.readouterr().out


def test_the_paper_protocol_splits_are_checked_offline(real):
    """stratified_holdout and a hold-out diagonal are accepted; the paper's >= 100 cells per type is
    checked against the held-out cells the manifest knows."""
    m, registry, paper = real
    tasks = copy.deepcopy({k: paper["tasks"][k] for k in ("ts_celltype_stratified", "spermatogenesis_cross_species")})
    assert tasks["ts_celltype_stratified"]["split"] == "stratified_holdout"
    assert manifest.task_problems(tasks, registry, m) == []
    tasks["ts_celltype_stratified"]["datasets"].append("ts_pancreas")
    lines = [p.line() for p in manifest.task_problems(tasks, registry, m)]
    assert len(lines) == 1 and "'ts_pancreas'" in lines[0]
    assert "41 cells from held-out donors cannot hold 2 classes of >= 100 cells" in lines[0]
    # without a class filter a stratified hold-out still needs 2 cells per class
    tasks = {"t": {"kind": "celltype", "split": "stratified_holdout", "datasets": ["ts_kidney"]}}
    assert "0 cells from held-out donors" in manifest.task_problems(tasks, registry, m)[0].line()
