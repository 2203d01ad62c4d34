"""Figures (sclinbench.plotting) from the tables of a made-up run (fake_predictions.fake_run)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_predictions import fake_run
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from sclinbench import plotting, report
from sclinbench.errors import SclinbenchError
from sclinbench.workflow import contracts

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "config" / "reference_results.tsv"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fake_run(tmp_path_factory.mktemp("fake_run"), n_boot=100)


@pytest.fixture(scope="module")
def metrics(run):
    return contracts.check_metrics(run["scores"])


@pytest.fixture(scope="module")
def summary(run):
    return contracts.check_summary(run["summary"])


@pytest.fixture(scope="module")
def reference():
    return report.read_reference(REFERENCE)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR), checking the signature."""
    data = Path(path).read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def novel_predictions(seed: int = 0) -> pd.DataFrame:
    """Per-cell predictions of a novel-type task: novel cells get lower confidence for 'good'."""
    rng = np.random.default_rng(seed)
    frames = []
    for pipeline, shift in (("good", 0.3), ("control_majority", 0.0)):
        for group in ("B cell", "NK cell"):
            for fold in range(2):
                novel = rng.random(80) < 0.25
                score = rng.uniform(0.5, 1.0, 80) - shift * novel
                frames.append(pd.DataFrame({
                    "cell_id": [f"c{i}" for i in range(80)], "fold": fold, "group": group,
                    "pipeline": pipeline, "y_true": np.where(novel, group, "T cell"),
                    "y_pred": "T cell", "score": score, "novel": novel}))
    return pd.concat(frames, ignore_index=True)


def write_benchmarks(root: Path) -> None:
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rule, job, s, rss in (("evaluate", "dataset~pbmc68k/task~t", "12.5", "850.2"),
                              ("evaluate", "dataset~atlas/task~t", "30.0", "1200.0"),
                              ("split", "dataset~atlas", "1.2", "-")):
        f = root / rule / f"{job}.tsv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(header + f"{s}\t0:00:12\t{rss}\t1\t1\t1\t0\t0\t80\t10\n")


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


def test_make_figures_writes_every_png_and_pdf(tmp_path, summary, metrics, reference):
    write_benchmarks(tmp_path / "benchmarks")
    written = plotting.make_figures(summary, tmp_path / "figures", metrics=metrics, reference=reference,
                                    predictions=novel_predictions(),
                                    benchmarks=plotting.read_benchmarks(tmp_path / "benchmarks"),
                                    dataset_aliases={"atlas": "spermatogenesis"})
    assert list(written) == list(plotting.FIGURES)
    for stem, (png, pdf) in written.items():
        w, h = png_size(png)
        assert w in (round(plotting.SINGLE_COLUMN * 300), round(plotting.DOUBLE_COLUMN * 300)), stem
        assert 300 <= h <= 3000, stem
        assert pdf.read_bytes()[:5] == b"%PDF-"
    assert not list((tmp_path / "figures").glob("*.part"))


def test_png_has_exact_pixel_size_of_the_figure(tmp_path, summary):
    fig = plotting.cross_species_heatmap(summary)
    png, pdf = plotting.save_figure(fig, tmp_path / "h.png", tmp_path / "h.pdf")
    w_in, h_in = fig.get_size_inches()
    assert png_size(png) == (round(w_in * 300), round(h_in * 300))
    assert png_size(png)[0] == 1050  # one journal column at 300 dpi
    import matplotlib.image as mpimg
    assert mpimg.imread(png).shape[:2] == (round(h_in * 300), 1050)  # decodable


def test_cross_species_heatmap_annotates_matrix_and_marks_diagonal(summary):
    fig = plotting.cross_species_heatmap(summary, pipeline="log1p_pca_logreg")
    mat = report.cross_species_matrix(summary, "log1p_pca_logreg")
    texts = _texts(fig)
    for v in mat.to_numpy().ravel():
        assert f"{v:.2f}" in texts
    outlined = [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and not p.get_fill()
                and p.get_edgecolor()[:3] == (0.0, 0.0, 0.0)]
    assert len(outlined) == 3                    # one black outline per same-species cell
    assert any("cross-validation within" in t for t in texts)  # the legend says what the diagonal is
    assert any("shared labels" in t for t in texts)             # and which score it shows
    # right axis: each row's mean over the *other* species
    off = mat.to_numpy().copy()
    np.fill_diagonal(off, np.nan)
    for v in np.nanmean(off, axis=1):
        assert f"{v:.2f}" in texts


def test_default_heatmap_shows_best_linear_pipeline(summary):
    fig = plotting.cross_species_heatmap(summary)
    assert any(t.startswith("rankz_centroid (best of grid: optimistic)") for t in _texts(fig))


def test_cross_species_bars_mark_published_and_show_our_values(summary, reference):
    fig = plotting.cross_species_average_bars(summary, reference, dataset_aliases={"atlas": "spermatogenesis"})
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "UCE (published)" in labels and "rankz_centroid" in labels
    assert "control_majority" in labels and "control_shuffled" in labels   # the role: control pipelines
    hatched = [p for p in ax.patches if p.get_hatch()]
    solid = [p for p in ax.patches if not p.get_hatch()]
    assert len(hatched) == 3 * 4 and len(solid) == 3 * 3   # 3 species x (4 published, 3 ours)
    bars = {c.get_label(): [round(p.get_height(), 6) for p in c.patches] for c in ax.containers}
    assert bars["UCE (published)"] == [0.495, 0.45, 0.37]   # human, macaque, mouse from the reference
    avg = report.cross_species_average(summary)
    want = avg[(avg.pipeline == "rankz_centroid") & (avg.training_species == "human")]["mean"].iloc[0]
    assert any(abs(p.get_height() - want) < 1e-12 for p in solid)
    assert any("excluded" in t for t in _texts(fig))


def test_cross_species_bars_without_published_match(summary, reference):
    fig = plotting.cross_species_average_bars(summary, reference)  # no alias: no match
    assert not [p for p in fig.axes[0].patches if p.get_hatch()]
    assert any("No published numbers for dataset 'atlas'" in t for t in _texts(fig))
    fig = plotting.cross_species_average_bars(summary, None, include_diagonal=True)
    assert any("included" in t for t in _texts(fig))


def test_placeholders_when_a_run_has_no_such_task(tmp_path, summary):
    only_celltype = summary[summary.kind == "celltype"]
    written = plotting.make_figures(only_celltype, tmp_path)
    for stem in ("cross_species_heatmap", "cross_species_average", "disease", "novel_type",
                 "runtime_memory"):
        assert written[stem][0].exists()
    fig = plotting.cross_species_heatmap(only_celltype)
    assert getattr(fig, "sclinbench_placeholder", False)
    assert any("kind: cross_species" in t for t in _texts(fig))
    assert getattr(plotting.disease_levels(report.summary_view(only_celltype)),
                   "sclinbench_placeholder", False)
    assert getattr(plotting.runtime_memory(pd.DataFrame(columns=["rule", "job", "s", "max_rss"])),
                   "sclinbench_placeholder", False)
    assert not getattr(plotting.pipeline_scores(report.summary_view(only_celltype)),
                       "sclinbench_placeholder", False)


def test_pipeline_scores_draw_controls_as_lines(summary):
    view = report.summary_view(summary)
    fig = plotting.pipeline_scores(view)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 5  # dataset x task x split kind
    ax = panels[0]  # atlas / celltype_donor
    s = view[(view.dataset == "atlas") & (view.task == "celltype_donor") & (view.metric == "macro_f1")]
    vlines = [line.get_xdata()[0] for line in ax.get_lines() if len(set(line.get_xdata())) == 1
              and len(line.get_xdata()) == 2]
    for ctrl in ("control_majority", "control_shuffled"):
        assert s[s.pipeline == ctrl]["mean"].iloc[0] in vlines
    ticks = [t.get_text() for t in panels[0].get_yticklabels()]
    assert set(ticks) == {"rankz_centroid", "log1p_pca_logreg", "pearson_logreg", "rankz_knn"}  # never a control


def test_embedding_pipelines_are_marked_computed_here(summary):
    emb = summary[summary.pipeline == "pearson_logreg"].assign(pipeline="uce_logreg", representation="embedding")
    fig = plotting.pipeline_scores(report.summary_view(pd.concat([summary, emb])))
    assert "uce_logreg *" in [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("computed here" in t for t in _texts(fig))


def test_normalization_heatmap_values(summary):
    view = report.summary_view(summary)
    fig = plotting.normalization_model_heatmap(view)
    s = view[(view.metric == "macro_f1") & (view.role == "method")]
    texts = _texts(fig)
    for v in s["mean"]:
        assert f"{v:.2f}" in texts
    assert texts.count("–") >= 3  # rankz x logreg etc. were not run


def test_disease_levels(summary):
    fig = plotting.disease_levels(report.summary_view(summary))
    ticks = " ".join(t.get_text() for t in fig.axes[0].get_xticklabels())
    assert "pseudobulk" in ticks


def test_novelty_roc_by_hand():
    pred = pd.DataFrame({"pipeline": "p", "score": [0.9, 0.8, 0.2, 0.1], "novel": [False, False, True, True]})
    roc = plotting.novelty_roc(pred)
    assert ((roc.fpr == 0) & (roc.tpr == 1)).any()          # low confidence = novel: perfectly separated
    flipped = pred.assign(novel=[True, True, False, False])
    assert not ((plotting.novelty_roc(flipped).tpr > 0) & (plotting.novelty_roc(flipped).fpr < 1)).any()
    # an unscored cell counts as the most novel
    nan = pd.DataFrame({"pipeline": "p", "score": [0.9, np.nan, 0.5], "novel": [False, True, False]})
    assert ((plotting.novelty_roc(nan).fpr == 0) & (plotting.novelty_roc(nan).tpr == 1)).any()
    with pytest.raises(SclinbenchError, match="novel"):
        plotting.novelty_roc(pred.drop(columns="novel"))


def test_novel_type_figure(metrics, summary):
    fig = plotting.novel_type_detection(novel_predictions(), metrics)
    texts = _texts(fig)
    assert "good" in texts and "mono" in texts             # ROC legend entry; held-out types from the metrics
    only_metrics = plotting.novel_type_detection(None, metrics)
    assert any("predictions not supplied" in t for t in _texts(only_metrics))


def test_novel_type_figure_draws_every_novel_type_task_with_the_tables_auroc(metrics, summary):
    """One row per dataset x novel-type task (not only the first); legend numbers are the summary's."""
    two = pd.concat([summary, summary[summary.kind == "novel_type"].assign(dataset="atlas")], ignore_index=True)
    m2 = pd.concat([metrics, metrics[metrics.kind == "novel_type"].assign(dataset="atlas")], ignore_index=True)
    preds = {k: novel_predictions(i).replace({"pipeline": {"good": "rankz_centroid"}})
             for i, k in enumerate([("pbmc68k", "novel_type"), ("atlas", "novel_type")])}
    fig = plotting.novel_type_detection(preds, m2, two)
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("atlas · novel_type") for t in titles) and any(t.startswith("pbmc68k · novel_type") for t in titles)
    value = two[(two.dataset == "atlas") & (two.metric == "novelty_auroc") & (two.group == "")
                & (two.pipeline == "rankz_centroid")]["value"].iloc[0]
    assert f"rankz_centroid  {value:.2f}" in _texts(fig)


def test_a_control_is_told_by_its_role_not_its_name(summary, metrics, tmp_path):
    renamed = {"control_majority": "always_first"}
    s = summary.replace({"pipeline": renamed})
    styles = plotting.control_styles(s)
    assert set(styles) == {"always_first", "control_shuffled"} and styles["always_first"]["label"] == "always_first (control)"
    assert plotting.pipeline_colors(sorted(s.pipeline.unique()), styles)["always_first"] not in plotting.OKABE_ITO.values()
    fig = plotting.pipeline_scores(report.summary_view(s))
    assert "always_first (control)" in fig.legends[0].get_texts()[0].get_text() + fig.legends[0].get_texts()[1].get_text()
    assert "always_first" not in [t.get_text() for t in fig.axes[0].get_yticklabels()]   # not drawn as a method


def test_pipeline_scores_has_x_labels_under_every_column_and_room_at_one(summary):
    fig = plotting.pipeline_scores(report.summary_view(summary))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    columns = {}
    for ax in visible:
        columns.setdefault(round(ax.get_position().x0, 3), []).append(ax)
    for col in columns.values():
        lowest = min(col, key=lambda a: a.get_position().y0)
        assert lowest.get_xlabel() and any(t.get_text() for t in lowest.get_xticklabels()), lowest.get_title()
    assert visible[0].get_xlim()[1] > 1.0    # a point at 1.0 is drawn whole


def test_runtime_figure_draws_no_bars(tmp_path):
    from matplotlib.patches import Rectangle

    write_benchmarks(tmp_path)
    fig = plotting.runtime_memory(plotting.read_benchmarks(tmp_path))
    for ax in fig.axes:
        assert not [p for p in ax.patches if isinstance(p, Rectangle)], "bars on a (log) axis"


def test_read_benchmarks_and_runtime_figure(tmp_path):
    write_benchmarks(tmp_path)
    b = plotting.read_benchmarks(tmp_path)
    assert sorted(b["rule"]) == ["evaluate", "evaluate", "split"]
    ev = b[b.rule == "evaluate"].set_index("job")
    assert ev.loc["dataset~atlas/task~t", "s"] == 30.0 and ev.loc["dataset~atlas/task~t", "max_rss"] == 1200.0
    assert np.isnan(b[b.rule == "split"]["max_rss"].iloc[0])   # "-" = not measured
    fig = plotting.runtime_memory(b)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["split (n=1)", "evaluate (n=2)"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.tsv").write_text("foo\tbar\n1\t2\n")
    with pytest.raises(SclinbenchError, match="no column 's'"):
        plotting.read_benchmarks(tmp_path)
    assert plotting.read_benchmarks(tmp_path / "missing").empty


def test_pipeline_colors_are_colour_blind_safe_and_stable():
    c = plotting.pipeline_colors(["rankz_centroid", "control_majority", "log1p_logreg"], controls=["control_majority"])
    assert c["rankz_centroid"] == plotting.OKABE_ITO["blue"]
    assert c["log1p_logreg"] == plotting.OKABE_ITO["orange"]
    assert c["control_majority"] not in plotting.OKABE_ITO.values()
