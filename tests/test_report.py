"""Tables, cross-species averages, published numbers and provenance (sclinbench.report).

``tests/data/metrics_small.tsv`` is a hand-built metrics table in the ``results/metrics.tsv``
format: two datasets (``pbmc68k``: stratified cell types and novel-type detection with three
held-out types; ``atlas``: three species human/macaque/mouse with every ordered species pair
including the same-species diagonal, stratified cell types, disease at cell and donor level),
three method pipelines and the two controls, five folds, every metric. Its values were set by
hand to look like real results and jittered with seeded noise; they are not measurements.
Expected numbers below are recomputed from the raw rows with the ``csv`` module (independently of
pandas/the package), or worked out by hand on tiny tables.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sclinbench import report
from sclinbench.errors import SclinbenchError

ROOT = Path(__file__).resolve().parents[1]
METRICS = ROOT / "tests" / "data" / "metrics_small.tsv"
REFERENCE = ROOT / "config" / "reference_results.tsv"
SCHEMA = ROOT / "config" / "reference_results.schema.yaml"


@pytest.fixture(scope="module")
def raw_rows():
    with open(METRICS, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def metrics():
    return report.read_metrics(METRICS)


@pytest.fixture(scope="module")
def reference():
    return report.read_reference(REFERENCE)


def _values(rows, **where):
    return [float(r["value"]) for r in rows if all(r[k] == v for k, v in where.items())]


def _pair_mean(rows, pipeline, train, test, metric="macro_f1"):
    v = _values(rows, dataset="atlas", task="cross_species", pipeline=pipeline,
                group=f"{train}->{test}", metric=metric)
    assert len(v) == 5
    return sum(v) / len(v)


def _tiny_cross(values: dict[tuple[str, str], list[float]], pipeline="p") -> pd.DataFrame:
    rows = []
    for (a, b), folds in values.items():
        for fold, v in enumerate(folds):
            rows.append(dict(dataset="d", task="cross_species", kind="cross_species",
                             split_kind="cross_species", group=f"{a}->{b}", pipeline=pipeline,
                             role="method", representation="rankz", model="centroid", fold=fold,
                             metric="macro_f1", value=v))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- fixture itself

def test_fixture_has_the_promised_shape(raw_rows):
    assert {r["dataset"] for r in raw_rows} == {"pbmc68k", "atlas"}
    assert {r["pipeline"] for r in raw_rows} == {"rankz_centroid", "log1p_pca_logreg", "pearson_logreg",
                                                 "control_majority", "control_shuffled"}
    assert {r["fold"] for r in raw_rows} == {"0", "1", "2", "3", "4"}
    groups = {r["group"] for r in raw_rows if r["kind"] == "cross_species"}
    assert len(groups) == 9 and {"human->human", "macaque->macaque", "mouse->mouse"} <= groups
    metrics = {r["metric"] for r in raw_rows}
    assert {"macro_f1", "accuracy", "balanced_accuracy", "macro_precision", "macro_recall",
            "auroc_ovr", "macro_f1_shared", "novelty_auroc", "known_accuracy"} <= metrics
    assert {r["split_kind"] for r in raw_rows if r["kind"] == "disease"} == {"donor", "donor_pseudobulk"}


# ----------------------------------------------------------------------------- summaries

def test_summary_of_a_fold_task_equals_the_mean_of_its_folds(raw_rows, metrics):
    s = report.summarize(metrics, seed=0)
    for pipeline in ("rankz_centroid", "control_majority"):
        folds = _values(raw_rows, dataset="pbmc68k", task="celltype_stratified", pipeline=pipeline,
                        metric="macro_f1")
        row = s[(s.dataset == "pbmc68k") & (s.task == "celltype_stratified") & (s.pipeline == pipeline)
                & (s.metric == "macro_f1")].iloc[0]
        assert row["mean"] == pytest.approx(sum(folds) / 5, abs=1e-12)
        assert row["n"] == 5 and row["unit"] == "fold"
        # a percentile bootstrap of the mean lies inside the range of the fold values
        assert min(folds) <= row["ci_low"] <= row["mean"] <= row["ci_high"] <= max(folds)
        assert row["ci_low"] < row["ci_high"]


def test_summary_of_grouped_tasks_weighs_each_group_equally(raw_rows, metrics):
    s = report.summarize(metrics)
    per_type = []
    for label in ("B cell", "NK cell", "CD14+ Monocyte"):
        v = _values(raw_rows, task="novel_type", pipeline="rankz_centroid", group=label,
                    metric="novelty_auroc")
        per_type.append(sum(v) / len(v))
    row = s[(s.task == "novel_type") & (s.pipeline == "rankz_centroid") & (s.metric == "novelty_auroc")].iloc[0]
    assert row["mean"] == pytest.approx(sum(per_type) / 3, abs=1e-12)
    assert (row["n"], row["n_folds"], row["unit"]) == (3, 5, "held-out type")

    off = [_pair_mean(raw_rows, "rankz_centroid", a, b) for a in ("human", "macaque", "mouse")
           for b in ("human", "macaque", "mouse") if a != b]
    row = s[(s.task == "cross_species") & (s.pipeline == "rankz_centroid") & (s.metric == "macro_f1")].iloc[0]
    assert row["mean"] == pytest.approx(sum(off) / 6, abs=1e-12)
    assert row["n"] == 6 and "excl. same-species" in row["unit"]


def test_summary_is_seeded_and_independent_of_row_order(metrics):
    a = report.summarize(metrics, seed=3)
    b = report.summarize(metrics.sample(frac=1.0, random_state=1), seed=3)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    c = report.summarize(metrics, seed=4)
    assert not np.allclose(a["ci_low"], c["ci_low"])        # the seed matters
    np.testing.assert_allclose(a["mean"], c["mean"])          # the means do not depend on it


def test_bootstrap_mean_edge_cases():
    assert report.bootstrap_mean([0.7]) == (0.7, 0.7, 0.7, 1)
    mean, lo, hi, n = report.bootstrap_mean([np.nan, np.nan])
    assert n == 0 and np.isnan(mean)
    mean, lo, hi, n = report.bootstrap_mean([0.2, 0.4, np.nan])
    assert (mean, n) == (pytest.approx(0.3), 2) and 0.2 <= lo <= hi <= 0.4


def test_best_linear_never_picks_a_control_or_an_embedding():
    s = pd.DataFrame({
        "dataset": "d", "task": "t", "kind": "celltype", "split_kind": "stratified",
        "pipeline": ["control_majority", "fm_uce", "rankz_centroid", "log1p_logreg"],
        "role": ["control", "method", "method", "method"],
        "representation": ["rankz", "embedding", "rankz", "log1p"],
        "model": ["majority", "logreg", "centroid", "logreg"], "metric": "macro_f1",
        "mean": [0.99, 0.95, 0.80, 0.80], "ci_low": 0.0, "ci_high": 1.0, "n": 5, "n_folds": 1,
        "unit": "fold"})
    best = report.best_linear(s)
    # control and embedding are higher but excluded; the tie goes to the alphabetically first name
    assert best["pipeline"].tolist() == ["log1p_logreg"]
    assert report.best_linear(s, exclude_representations=())["pipeline"].tolist() == ["fm_uce"]


def test_best_linear_on_fixture(metrics):
    best = report.best_linear(report.summarize(metrics))
    assert len(best) == 6 and (best["role"] == "method").all()
    got = dict(zip(zip(best["dataset"], best["task"]), best["pipeline"]))
    assert got[("atlas", "cross_species")] == "rankz_centroid"
    assert got[("pbmc68k", "celltype_stratified")] == "pearson_logreg"


# ----------------------------------------------------------------------------- cross-species

def test_cross_species_average_with_and_without_diagonal_by_hand():
    m = _tiny_cross({("a", "a"): [0.9, 0.9], ("a", "b"): [0.4, 0.6], ("a", "c"): [0.7, 0.7],
                     ("b", "b"): [1.0, 1.0], ("b", "a"): [0.2, 0.2]})
    excl = report.cross_species_average(m).set_index("training_species")
    incl = report.cross_species_average(m, include_diagonal=True).set_index("training_species")
    # a: others are b (mean 0.5) and c (0.7) -> 0.6; with a->a (0.9) -> 0.7
    assert excl.loc["a", "mean"] == pytest.approx(0.6) and excl.loc["a", "n"] == 2
    assert incl.loc["a", "mean"] == pytest.approx(0.7) and incl.loc["a", "n"] == 3
    # b: only a (0.2) -> 0.2; with b->b (1.0) -> 0.6
    assert excl.loc["b", "mean"] == pytest.approx(0.2) and excl.loc["b", "n"] == 1
    assert incl.loc["b", "mean"] == pytest.approx(0.6)
    assert not excl["includes_diagonal"].any() and incl["includes_diagonal"].all()
    assert set(excl["metric"]) == {"macro_f1_mean_over_targets"}


def test_cross_species_average_on_fixture(raw_rows, metrics):
    avg = report.cross_species_average(metrics)
    row = avg[(avg.pipeline == "rankz_centroid") & (avg.training_species == "mouse")].iloc[0]
    want = (_pair_mean(raw_rows, "rankz_centroid", "mouse", "human")
            + _pair_mean(raw_rows, "rankz_centroid", "mouse", "macaque")) / 2
    assert row["mean"] == pytest.approx(want, abs=1e-12)
    incl = report.cross_species_average(metrics, include_diagonal=True)
    row_in = incl[(incl.pipeline == "rankz_centroid") & (incl.training_species == "mouse")].iloc[0]
    want_in = (2 * want + _pair_mean(raw_rows, "rankz_centroid", "mouse", "mouse")) / 3
    assert row_in["mean"] == pytest.approx(want_in, abs=1e-12)
    assert row_in["mean"] > row["mean"]   # the easy same-species score inflates the average


def test_cross_species_matrix_orientation(raw_rows, metrics):
    mat = report.cross_species_matrix(metrics, "rankz_centroid")
    assert mat.index.tolist() == ["human", "macaque", "mouse"]
    assert mat.columns.tolist() == ["human", "macaque", "mouse"]
    assert mat.loc["human", "mouse"] == pytest.approx(_pair_mean(raw_rows, "rankz_centroid", "human", "mouse"))
    assert mat.loc["mouse", "human"] == pytest.approx(_pair_mean(raw_rows, "rankz_centroid", "mouse", "human"))
    assert mat.loc["human", "mouse"] != pytest.approx(mat.loc["mouse", "human"])
    with pytest.raises(SclinbenchError, match="no_such_pipeline"):
        report.cross_species_matrix(metrics, "no_such_pipeline")


def test_malformed_cross_species_group_is_a_user_error():
    m = _tiny_cross({("a", "b"): [0.5]})
    m.loc[0, "group"] = "a-b"
    with pytest.raises(SclinbenchError, match="'a-b'"):
        report.summarize(m)


def test_check_metrics_names_missing_column(metrics):
    with pytest.raises(SclinbenchError, match="missing column.*role"):
        report.check_metrics(metrics.drop(columns="role"), where="results/metrics.tsv")


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


def test_published_table_labels_every_row(metrics, reference):
    avg = pd.concat([report.cross_species_average(metrics), report.cross_species_average(metrics, True)])
    table = report.published_table(reference, avg, dataset_aliases={"atlas": "spermatogenesis"})
    assert set(table["source"]) == {"published", "computed here"}
    ours = table[table.source == "computed here"]
    assert len(ours) == len(avg) and set(ours["includes_diagonal"]) == {"true", "false"}
    pub = table[table.source == "published"]
    assert len(pub) == 32 and set(pub["includes_diagonal"]) == {"unknown"}
    # our value for rankz_centroid / human (no diagonal) is carried over unchanged
    want = avg[(avg.pipeline == "rankz_centroid") & (avg.training_species == "human")
               & ~avg.includes_diagonal]["mean"].iloc[0]
    got = ours[(ours.model == "rankz_centroid") & (ours.training_species == "human")
               & (ours.includes_diagonal == "false")]["value"].iloc[0]
    assert got == want
    # without the alias nothing published matches the dataset 'atlas': no silent mixing
    alone = report.published_table(reference, avg)
    assert set(alone["source"]) == {"computed here"}


def test_published_wide_compares_over_the_same_species(metrics, reference):
    avg = report.cross_species_average(metrics)
    wide = report.published_wide(report.published_table(reference, avg, {"atlas": "spermatogenesis"}))
    uce = wide[wide.model == "UCE"].iloc[0]
    assert uce["source"] == "published" and uce["same-species score"] == "same-species unknown"
    assert uce["mean (species run here)"] == pytest.approx((0.495 + 0.45 + 0.37) / 3)
    assert uce["mean (all its species)"] == pytest.approx(np.mean([0.495, 0.48, 0.45, 0.41, 0.49, 0.37, 0.31, 0.27]))
    assert wide["source"].iloc[0] == "computed here"


def test_species_names_are_matched_by_common_name():
    assert report.common_species_name("Homo sapiens") == "human"
    assert report.common_species_name("Mus_musculus") == "mouse"
    assert report.common_species_name("Xenopus") == "xenopus"


# ----------------------------------------------------------------------------- written tables

def test_write_tables_numbers_equal_the_metrics(tmp_path, raw_rows, metrics, reference):
    written = report.write_tables(metrics, reference, tmp_path, tasks=["celltype_stratified", "cross_species",
                                                                        "novel_type", "not_run_task"],
                                  dataset_aliases={"atlas": "spermatogenesis"})
    for stem in ("summary", "task~celltype_stratified", "task~not_run_task", "best_linear",
                 "cross_species_pairs", "cross_species_average", "published_comparison"):
        assert (tmp_path / f"{stem}.tsv").exists() and (tmp_path / f"{stem}.md").exists()
        assert written[stem] == tmp_path / f"{stem}.tsv"
    assert not list(tmp_path.glob("*.part"))

    t = pd.read_csv(tmp_path / "task~celltype_stratified.tsv", sep="\t")
    folds = _values(raw_rows, dataset="atlas", task="celltype_stratified", pipeline="log1p_pca_logreg",
                    metric="balanced_accuracy")
    row = t[(t.dataset == "atlas") & (t.pipeline == "log1p_pca_logreg") & (t.metric == "balanced_accuracy")].iloc[0]
    assert row["mean"] == pytest.approx(sum(folds) / 5, abs=1e-9)
    md = (tmp_path / "task~celltype_stratified.md").read_text()
    assert report.format_ci(row["mean"], row["ci_low"], row["ci_high"], row["n"]) in md
    assert "No rows" in (tmp_path / "task~not_run_task.md").read_text()

    avg = pd.read_csv(tmp_path / "cross_species_average.tsv", sep="\t")
    assert set(avg["includes_diagonal"]) == {True, False}
    pairs = pd.read_csv(tmp_path / "cross_species_pairs.tsv", sep="\t")
    p = pairs[(pairs.pipeline == "pearson_logreg") & (pairs.training_species == "macaque")
              & (pairs.target_species == "human")].iloc[0]
    assert p["mean"] == pytest.approx(_pair_mean(raw_rows, "pearson_logreg", "macaque", "human"))
    assert "0.9" in (tmp_path / "cross_species_pairs.md").read_text()  # diagonal values marked with *
    assert "*" in (tmp_path / "cross_species_pairs.md").read_text()
    pub = pd.read_csv(tmp_path / "published_comparison.tsv", sep="\t")
    assert set(pub["source"]) == {"published", "computed here"}
    assert "UCE" in (tmp_path / "published_comparison.md").read_text()


def test_write_tables_without_cross_species(tmp_path, metrics):
    m = metrics[metrics.kind == "celltype"]
    report.write_tables(m, None, tmp_path)
    assert "No cross-species task" in (tmp_path / "cross_species_average.md").read_text()
    assert pd.read_csv(tmp_path / "cross_species_average.tsv", sep="\t").empty


def test_results_readme_shows_best_pipeline_with_its_controls(tmp_path, metrics, reference):
    s = report.summarize(metrics)
    path = report.write_results_readme(metrics, reference, tmp_path / "README.md",
                                       dataset_aliases={"atlas": "spermatogenesis"})
    text = path.read_text()
    line = next(x for x in text.splitlines() if x.startswith("| pbmc68k | celltype_stratified"))
    best = s[(s.dataset == "pbmc68k") & (s.task == "celltype_stratified") & (s.metric == "macro_f1")]
    r = best[best.pipeline == "pearson_logreg"].iloc[0]
    c = best[best.pipeline == "control_majority"].iloc[0]
    assert "pearson_logreg" in line
    assert report.format_ci(r["mean"], r["ci_low"], r["ci_high"], r["n"]) in line
    assert report.format_ci(c["mean"], c["ci_low"], c["ci_high"], c["n"]) in line
    assert "TranscriptFormer-Exemplar | published" in text
    assert "excl. same-species" in text and "incl. same-species" in text


def test_format_ci():
    assert report.format_ci(0.81234, 0.8, 0.825, 5) == "0.812 [0.800, 0.825]"
    assert report.format_ci(0.5, 0.5, 0.5, 1) == "0.500 (n=1)"
    assert report.format_ci(float("nan"), float("nan"), float("nan"), 0) == "–"


# ----------------------------------------------------------------------------- provenance

def test_provenance_records_versions_config_hash_and_checksums(tmp_path):
    raw = tmp_path / "raw.h5ad"
    raw.write_bytes(b"not really an h5ad")
    digest = report.sha256_file(raw)
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


def test_html_gallery_embeds_figures(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = report.write_html_gallery({"a": png}, tmp_path / "x.html", captions={"a": "cap <b>"})
    text = page.read_text()
    assert "data:image/png;base64," in text and "cap &lt;b&gt;" in text
    with pytest.raises(SclinbenchError, match="missing.png"):
        report.write_html_gallery({"b": tmp_path / "missing.png"}, tmp_path / "y.html")


def test_paired_table_differences_match_the_folds(metrics):
    table = report.paired_table(metrics, n_boot=200)
    assert len(table) and set(table["metric"]) == {"macro_f1"}
    assert not set(table["a"]) & {"control_majority", "control_shuffled"}
    row = table[table["task"] != "cross_species"].iloc[0]
    m = metrics[(metrics.dataset == row.dataset) & (metrics.task == row.task) & (metrics.metric == "macro_f1")]
    a = m[m.pipeline == row.a].set_index(["fold", "group"])["value"]
    b = m[m.pipeline == row.b].set_index(["fold", "group"])["value"]
    assert row.mean_difference == pytest.approx((a - b).mean())
    assert row.n == len(a) and row.ci_low <= row.mean_difference <= row.ci_high


def test_pooled_leave_one_out_scores_keep_their_donor_interval():
    base = dict(dataset="d", task="t", kind="disease", split_kind="donor_pseudobulk", group="", pipeline="p",
                role="method", representation="rankz", model="centroid")
    rows = [dict(base, fold=f, metric="accuracy", value=v) for f, v in enumerate([1, 0, 1, 1])]
    rows += [dict(base, fold=-1, metric="macro_f1", value=0.73), dict(base, fold=-1, metric="macro_f1_ci_low", value=0.4),
             dict(base, fold=-1, metric="macro_f1_ci_high", value=1.0)]
    summary = report.summarize(pd.DataFrame(rows)).set_index("metric")
    assert "macro_f1_ci_low" not in summary.index
    f1 = summary.loc["macro_f1"]
    assert (f1["mean"], f1["ci_low"], f1["ci_high"], f1["n"]) == (0.73, 0.4, 1.0, 4)
    assert f1["unit"] == "held-out donor (pooled)"
    assert summary.loc["accuracy", "mean"] == pytest.approx(0.75) and summary.loc["accuracy", "n"] == 4
