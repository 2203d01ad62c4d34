"""Tables, the headline, cross-species averages, published numbers and provenance (sclinbench.report).

The score-stage tables come from :func:`fake_predictions.fake_run`: made-up predictions of five
tasks (stratified cell types without donors, novel types, donor-held-out cell types, three-species
transfer, leave-one-donor-out pseudobulk) scored by the real score stage and assembled by the real
metrics step; the report only reads them. Expected numbers are read back from those tables or
worked out by hand on tiny tables.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fake_predictions import fake_run

from sclinbench import report
from sclinbench.data import species
from sclinbench.errors import SclinbenchError
from sclinbench.workflow import contracts
from sclinbench.workflow.io import sha256_file

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "config" / "reference_results.tsv"
SCHEMA = ROOT / "config" / "reference_results.schema.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fake_run(tmp_path_factory.mktemp("fake_run"))


@pytest.fixture(scope="module")
def summary(run):
    return contracts.check_summary(run["summary"])


@pytest.fixture(scope="module")
def paired(run):
    return run["paired"]


@pytest.fixture(scope="module")
def reference():
    return report.read_reference(REFERENCE)


def _get(summary, dataset, task, pipeline, metric="macro_f1", group=""):
    r = summary[(summary.dataset == dataset) & (summary.task == task) & (summary.pipeline == pipeline)
                & (summary.metric == metric) & (summary.group == group)]
    assert len(r) == 1
    return r.iloc[0]


# ----------------------------------------------------------------------------- selection

def test_best_of_grid_is_linear_never_knn_control_or_embedding(summary):
    best = report.best_of_grid(summary)
    assert set(best["family"]) == {"linear"} and (best["role"] == "method").all()
    assert "rankz_knn" not in set(best["pipeline"])           # the most accurate, but not linear
    assert (best["selection"] == report.OPTIMISTIC).all()
    anyfam = report.best_of_grid(summary, family=None)
    assert set(anyfam["pipeline"]) == {"rankz_knn"}
    s = summary.copy()
    emb = s[s.pipeline == "pearson_logreg"].assign(pipeline="uce_logreg", representation="embedding", value=0.99)
    assert "uce_logreg" not in set(report.best_of_grid(pd.concat([s, emb]))["pipeline"])


def test_novel_type_headline_ranks_by_novelty_auroc(summary):
    best = report.best_of_grid(summary)
    row = best[best.task == "novel_type"].iloc[0]
    assert row["metric"] == "novelty_auroc"
    nov = summary[(summary.task == "novel_type") & (summary.metric == "novelty_auroc") & (summary.group == "")
                  & (summary.family == "linear") & (summary.role == "method")]
    assert row["pipeline"] == nov.sort_values("value").iloc[-1]["pipeline"]


def test_cross_species_headline_group_follows_the_protocol(summary):
    assert report.headline_group("cross_species", "strict") == ""
    assert report.headline_group("cross_species", "paper") == "incl. same-species"
    paper = summary.assign(protocol=np.where(summary.task == "cross_species", "paper", summary.protocol))
    head = report.headline_rows(paper)
    cs = head[(head.task == "cross_species") & (head.pipeline == "rankz_centroid")].iloc[0]
    assert cs["group"] == "incl. same-species"


def test_signal_over_control_uses_the_paired_difference(tmp_path):
    weak = fake_run(tmp_path, n_boot=200, weak=("atlas", "celltype_donor"))
    sig = report.signal_over_control(weak["summary"], weak["paired"]).set_index(["dataset", "task"])
    assert sig.loc[("atlas", "celltype_donor"), "signal"] == report.NO_SIGNAL
    assert sig.loc[("pbmc68k", "celltype_stratified"), "signal"] == report.SIGNAL
    row = sig.loc[("pbmc68k", "celltype_stratified")]
    d = report.paired_difference(weak["paired"], "pbmc68k", "celltype_stratified", "", "macro_f1",
                                 row["best"], row["control"])
    assert d["difference"] == pytest.approx(row["difference"]) and d["ci_low"] > 0
    readme = report.write_results_readme(weak["summary"], weak["paired"], None, tmp_path / "README.md")
    text = readme.read_text()
    assert "No signal over control" in text and "atlas / celltype_donor: no signal over control" in text
    line = next(x for x in text.splitlines() if x.startswith("| atlas | celltype_donor"))
    assert "no signal over control" in line


def test_headline_table_shows_declared_best_controls_and_units(summary, paired):
    head = report.headline_table(summary, paired, declared=["rankz_centroid", "log1p_pca_logreg"])
    row = head[(head.dataset == "atlas") & (head.task == "celltype_donor")].iloc[0]
    r = _get(summary, "atlas", "celltype_donor", "rankz_centroid")
    assert row["rankz_centroid (declared)"] == report.format_row(r.to_dict())
    assert row["best linear of the grid (chosen on the evaluation folds: optimistic)"].startswith("rankz_centroid: ")
    assert "repeats" in row["control_shuffled"]
    assert row["n (unit)"] == "6 (donor)" and row["score"] == "macro F1"
    cs = head[head.task == "cross_species"].iloc[0]
    assert cs["score"] == "macro F1 (transfer pairs, excl. same-species, shared labels)"
    assert head[head.task == "novel_type"].iloc[0]["score"] == "novelty AUROC"
    assert head[head.task == "disease_donor"].iloc[0]["n (unit)"] == "8 (donor)"


# ----------------------------------------------------------------------------- cross-species

def test_cross_species_matrix_and_averages_come_from_the_score_stage(summary):
    mat = report.cross_species_matrix(summary, "rankz_centroid")
    assert mat.index.tolist() == ["human", "macaque", "mouse"] == mat.columns.tolist()
    for a in ("human", "macaque", "mouse"):
        for b in ("human", "macaque", "mouse"):
            assert mat.loc[a, b] == _get(summary, "atlas", "cross_species", "rankz_centroid", group=f"{a}->{b}")["value"]
    avg = report.cross_species_average(summary).set_index(["pipeline", "training_species"])
    want = (mat.loc["macaque", "human"] + mat.loc["macaque", "mouse"]) / 2
    row = avg.loc[("rankz_centroid", "macaque")]
    assert row["mean"] == pytest.approx(want) and row["n"] == 2 and not row["includes_diagonal"]
    assert np.isnan(row["ci_low"]) and "too few units" in row["interval"]
    incl = report.cross_species_average(summary, True).set_index(["pipeline", "training_species"])
    assert incl.loc[("rankz_centroid", "macaque"), "mean"] == pytest.approx(mat.loc["macaque"].mean())
    with pytest.raises(SclinbenchError, match="no_such_pipeline"):
        report.cross_species_matrix(summary, "no_such_pipeline")


def test_check_summary_names_missing_column(summary):
    with pytest.raises(SclinbenchError, match="missing column.*family"):
        contracts.check_summary(summary.drop(columns="family"), where="results/summary.tsv")


# ----------------------------------------------------------------------------- published numbers

def test_reference_table_is_a_faithful_copy_of_the_shared_source(reference):
    assert reference.shape[0] == 32
    assert set(reference["model"]) == {"TranscriptFormer-Exemplar", "TranscriptFormer-Metazoa", "UCE", "ESM2-CE"}
    assert set(reference["includes_diagonal"]) == {"unknown"}
    assert set(reference["note"]) == {"read off a figure, about +-0.01"}
    row = reference[(reference.model == "UCE") & (reference.training_species == "opossum")].iloc[0]
    assert row["value"] == pytest.approx(0.27)
    shared = Path("/work/shared/benchmarks/published_results.tsv")
    if shared.exists():  # developer machines only; the package never needs it
        src = pd.read_csv(shared, sep="\t")
        merged = src.merge(reference, left_on=["model", "training_species"],
                           right_on=["model", "training_species"])
        assert len(merged) == 32 and np.allclose(merged["value_x"], merged["value_y"])


def test_schema_columns_match_the_code():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["required"] == list(report.REFERENCE_COLUMNS)
    assert list(schema["properties"]) == list(report.REFERENCE_COLUMNS)


def _broken(tmp_path, edit) -> Path:
    lines = REFERENCE.read_text().splitlines()
    lines = edit(lines)
    path = tmp_path / "reference_results.tsv"
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "reference_results.schema.yaml").write_text(SCHEMA.read_text())
    return path


def _replace_field(line: str, col: int, value: str) -> str:
    parts = line.split("\t")
    parts[col] = value
    return "\t".join(parts)


@pytest.mark.parametrize("edit, pattern", [
    (lambda L: L[:3] + [_replace_field(L[3], 5, "0.5x")] + L[4:], r"line 4 column value: '0.5x' is not a number"),
    (lambda L: L[:5] + [_replace_field(L[5], 5, "1.5")] + L[6:], r"line 6 column value: 1.5"),
    (lambda L: L[:2] + [_replace_field(L[2], 6, "maybe")] + L[3:], r"line 3 column includes_diagonal: 'maybe'"),
    (lambda L: L[:7] + [_replace_field(L[7], 2, "crossspecies")] + L[8:], r"line 8 column task"),
    (lambda L: L[:9] + [_replace_field(L[9], 7, "")] + L[10:], r"line 10 column citation"),
    (lambda L: ["\t".join(L[0].split("\t")[:-1])] + [x.rsplit("\t", 1)[0] for x in L[1:]], r"missing column\(s\) counts"),
    (lambda L: L + [L[1]], r"line 34 repeats"),
])
def test_broken_reference_gives_one_line_error(tmp_path, edit, pattern):
    path = _broken(tmp_path, edit)
    with pytest.raises(SclinbenchError, match=pattern) as info:
        report.read_reference(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message



def test_published_table_labels_every_row(summary, reference):
    avg = pd.concat([report.cross_species_average(summary), report.cross_species_average(summary, True)])
    table = report.published_table(reference, avg, dataset_aliases={"atlas": "spermatogenesis"})
    assert set(table["source"]) == {"published", "computed here"}
    ours = table[table.source == "computed here"]
    assert len(ours) == len(avg) and set(ours["includes_diagonal"]) == {"true", "false"}
    pub = table[table.source == "published"]
    assert len(pub) == 32 and set(pub["includes_diagonal"]) == {"unknown"}
    alone = report.published_table(reference, avg)
    assert set(alone["source"]) == {"computed here"}   # no silent mixing without the alias


def test_species_names_are_matched_by_common_name():
    assert species.common_name("Homo sapiens") == "human"
    assert species.common_name("Mus_musculus") == "mouse"
    assert species.common_name("Xenopus") == "xenopus"


# ----------------------------------------------------------------------------- written tables

def test_write_tables_state_their_interval_and_numbers(tmp_path, run, reference):
    written = report.write_tables(run["scores"], run["summary"], run["paired"], reference, tmp_path,
                                  tasks=["celltype_donor", "cross_species", "not_run_task"], unseen=run["unseen"],
                                  n_boot=200, dataset_aliases={"atlas": "spermatogenesis"})
    for stem in ("headline", "summary", "task~celltype_donor", "task~not_run_task", "best_linear",
                 "cross_species_pairs", "cross_species_average", "cross_species_unseen", "published_comparison",
                 "paired_comparison"):
        assert (tmp_path / f"{stem}.tsv").exists() and written[stem] == tmp_path / f"{stem}.tsv"
        md = (tmp_path / f"{stem}.md").read_text()
        assert "ntervals" in md, stem          # every table states its interval method
    assert not list(tmp_path.glob("*.part"))
    md = (tmp_path / "task~celltype_donor.md").read_text()
    r = _get(contracts.check_summary(run["summary"]), "atlas", "celltype_donor", "rankz_centroid")
    assert report.format_row(r.to_dict()) in md and "Interval: 95% percentile bootstrap over 6 donors" in md
    assert "No rows" in (tmp_path / "task~not_run_task.md").read_text()
    best = (tmp_path / "best_linear.md").read_text()
    assert "optimistic" in best and "rankz_knn" not in best
    unseen = (tmp_path / "cross_species_unseen.md").read_text()
    assert "human->macaque" in unseen and "| X |" in unseen
    assert "*" in (tmp_path / "cross_species_pairs.md").read_text()
    paired_md = (tmp_path / "paired_comparison.md").read_text()
    assert "| rankz_centroid | control_shuffled |" in paired_md      # method - control orientation


def test_format_ci_and_row():
    assert report.format_ci(0.81234, 0.8, 0.825, 5) == "0.812 [0.800, 0.825]"
    assert report.format_ci(0.5, np.nan, np.nan, 2, unit_values="a: 0.4; b: 0.6") == \
        "0.500 (a: 0.4; b: 0.6; n=2; too few units for an interval)"
    assert report.format_ci(float("nan"), float("nan"), float("nan"), 0) == "–"
    # 8 of 8 donors right: a degenerate bootstrap is said to be one, never printed as [1.000, 1.000]
    assert report.format_ci(1.0, 1.0, 1.0, 8) == "1.000 (every resample of the 8 units gives 1.000: no spread to show)"
    row = {"value": 0.1, "ci_low": 0.08, "ci_high": 0.12, "n_units": 6, "n_repeats": 5, "repeat_min": 0.09,
           "repeat_max": 0.13, "repeat_sd": 0.01, "unit_values": ""}
    assert report.format_row(row) == "0.100 [0.080, 0.120]; 5 repeats 0.090–0.130 (sd 0.010)"


# ----------------------------------------------------------------------------- provenance

def test_provenance_records_versions_config_hash_and_checksums(tmp_path):
    raw = tmp_path / "raw.h5ad"
    raw.write_bytes(b"not really an h5ad")
    digest = sha256_file(raw)
    assert digest == hashlib.sha256(b"not really an h5ad").hexdigest()
    cfg = {"seed": 0, "pipelines": {"a": {"model": {"name": "centroid"}}}}
    prov = report.provenance(cfg, {"pbmc68k": digest}, repo_dir=ROOT)
    assert prov["config_sha256"] == report.config_hash({"pipelines": {"a": {"model": {"name": "centroid"}}},
                                                         "seed": 0})
    assert prov["config_sha256"] != report.config_hash({**cfg, "seed": 1})
    assert prov["packages"]["pandas"] == pd.__version__
    assert prov["datasets_sha256"] == {"pbmc68k": digest}
    assert len(prov["git_commit"]) == 40 or prov["git_commit"] == "unknown"
    assert report.provenance(cfg, {}, repo_dir=tmp_path)["git_commit"] == "unknown"
    report.write_provenance(prov, tmp_path / "provenance.json", tmp_path / "provenance.md")
    assert json.loads((tmp_path / "provenance.json").read_text())["datasets_sha256"]["pbmc68k"] == digest
    assert digest in (tmp_path / "provenance.md").read_text()


def test_species_names_in_one_place():
    assert species.ensembl_prefix("human") == species.ensembl_prefix("Homo sapiens") == "hsapiens"
    assert species.ensembl_prefix("Mus musculus") == species.ensembl_prefix("mmusculus") == "mmusculus"
    assert species.ensembl_prefix("Canis lupus familiaris") == species.ensembl_prefix("dog") == "clfamiliaris"
    assert species.ensembl_prefix("mouse lemur") == "mmurinus"
    assert species.ensembl_prefix("Human-2", strict=False) == "human2"
    with pytest.raises(SclinbenchError, match="not a known name"):
        species.ensembl_prefix("Human-2")
    assert species.short_label("Homo sapiens") == "H. sapiens" and species.short_label("alpha") == "alpha"
    assert "human" in species.biomart_names("Homo sapiens")


def test_a_control_named_otherwise_is_still_a_control(run, reference):
    """Controls are told apart by role (issue 13): a control not named control_* is shown as one."""
    renamed = {"control_majority": "always_first"}
    s = contracts.check_summary(run["summary"]).replace({"pipeline": renamed})
    paired = run["paired"].replace({"a": renamed, "b": renamed})
    head = report.headline_table(s, paired)
    assert "always_first" in head.columns and not (head["always_first"] == "not run").all()
    assert report.controls_of(s) == ["always_first", "control_shuffled"]
    avg = pd.concat([report.cross_species_average(s), report.cross_species_average(s, True)])
    table = report.published_table(reference, avg, dataset_aliases={"atlas": "spermatogenesis"})
    wide = report.published_wide(table, controls=False, control_pipelines=report.controls_of(s))
    assert "always_first" not in set(wide["model"]) and "rankz_centroid" in set(wide["model"])
    ours = report.published_wide(table, control_pipelines=report.controls_of(s))
    ours = list(ours.loc[ours.source == report.COMPUTED, "model"])
    assert ours.index("always_first") > ours.index("rankz_centroid")    # controls after the methods


# ----------------------------------------------------------------------------- text that follows the numbers

def test_control_text_follows_the_numbers(summary, paired, tmp_path):
    """"below chance" is written only when a control's interval lies below chance, and it names it."""
    from sclinbench.report.controls import BELOW, control_chance, controls_paragraph

    verdicts = control_chance(summary)
    assert set(verdicts.metric) == {"auroc_ovr", "balanced_accuracy", "novelty_auroc"}
    # balanced accuracy: chance stated for the two-class task only (4 classes: it depends on each unit's)
    assert set(verdicts[verdicts.metric == "balanced_accuracy"].task) == {"disease_donor"}
    two = summary.copy()
    two.loc[two.metric == "n_classes", "value"] = 2                        # as if every task had two classes
    ba = control_chance(two)
    ba = ba[(ba.metric == "balanced_accuracy") & (ba.task == "celltype_donor")]
    assert len(ba) == 2 and (ba.chance == 0.5).all()
    summary = two
    at_chance = summary.copy()
    ctrl = at_chance.role == "control"
    for metric in ("auroc_ovr", "novelty_auroc", "balanced_accuracy"):
        m = ctrl & (at_chance.metric == metric)
        at_chance.loc[m, ["value", "ci_low", "ci_high"]] = [0.5, 0.45, 0.55]
    text = controls_paragraph(at_chance)
    assert BELOW not in text and "No control is below or above chance" in text
    below = at_chance.copy()
    hit = (below.pipeline == "control_majority") & (below.task == "celltype_donor") & (below.metric == "balanced_accuracy") \
        & (below.group == "")
    below.loc[hit, ["value", "ci_low", "ci_high"]] = [0.0, 0.0, 0.1]
    text = controls_paragraph(below)
    assert "atlas / celltype_donor (donor): control_majority balanced accuracy 0.000 [0.000, 0.100] is below chance" in text
    assert text.count(BELOW) == 1
    path = report.write_results_readme(below, paired, None, tmp_path / "README.md")
    readme = path.read_text()
    assert "is below chance" in readme and "fall below chance" not in readme
    path = report.write_results_readme(at_chance, paired, None, tmp_path / "README2.md")
    assert BELOW not in path.read_text()


def test_novelty_is_read_above_the_best_control_and_donor_splits_show_each_unit(summary, paired, tmp_path):
    from sclinbench.report.controls import novelty_over_control

    nov = novelty_over_control(summary, paired)
    best = report.best_control(summary)
    strongest = best[best.task == "novel_type"].iloc[0]["pipeline"]     # the control with the highest novelty AUROC
    assert set(nov.pipeline) >= {"rankz_centroid", "log1p_pca_logreg"} and set(nov.control) == {strongest}
    r = nov[nov.pipeline == "rankz_centroid"].iloc[0]
    d = report.paired_difference(paired, "pbmc68k", "novel_type", "", "novelty_auroc", "rankz_centroid", strongest)
    assert r["above control"].startswith(f"{d['difference']:.3f} [")
    head = report.headline_table(summary, paired)
    cell = head[head.task == "novel_type"].iloc[0]["rankz_centroid (declared)"]
    assert f"; above {strongest}: " in cell
    readme = report.write_results_readme(summary, paired, None, tmp_path / "README.md").read_text()
    assert "## Novel types: novelty AUROC beside and above the best control" in readme
    assert "## Donor splits: the score of each held-out unit" in readme
    section = readme.split("## Donor splits")[1]
    assert "celltype_donor" in section and "pooled over donors (beside)" in section
    assert "| d0 | d1 | d2 | d3 | d4 | d5 |" in section                   # one column per held-out donor
    # folds of a single class (one pseudobulk donor each) have no score of their own: pooled headline only
    assert "disease_donor" not in section
