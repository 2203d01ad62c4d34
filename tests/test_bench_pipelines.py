"""Tests of the performance benchmark (benchmarks/bench_pipelines.py): data generator, streaming centroid fit,
memory recorder, summary arithmetic and a tiny end-to-end run. No timing is asserted."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_pipelines as bench  # noqa: E402
from bench_pipelines import (  # noqa: E402
    PIPELINES,
    STEPS,
    TABLE_COLUMNS,
    CentroidAccumulator,
    StepRecorder,
    SyntheticSpec,
    generate_block,
    results_table,
    summarize,
)

from sclinbench.errors import SclinbenchError
from sclinbench.models import CentroidClassifier
from sclinbench.represent import OffsetCSR, rankz

# a small data set: 2,000 genes, 15 types
TINY = dict(n_genes=2000, umis_per_cell=800, lineage_genes=100, subtype_genes=30, program_genes=50)


def test_lookup_table_hand_example():
    # p = (0.5, 0.25, 0.25, 0) over 16 slots -> 8, 4, 4, 0 slots
    t = bench._lookup_table(np.array([0.5, 0.25, 0.25, 0.0]), bits=4, dtype=np.uint16)
    assert t.shape == (16,)
    assert np.bincount(t, minlength=4).tolist() == [8, 4, 4, 0]
    # largest remainder: (1/3, 1/3, 1/3) over 8 slots -> 3, 3, 2 (ties to the lower index)
    t = bench._lookup_table(np.ones(3), bits=3, dtype=np.uint16)
    assert np.bincount(t).tolist() == [3, 3, 2]


def test_block_sizes_and_roles_cover_all_cells():
    spec = SyntheticSpec(n_cells=2_500, chunk_cells=1_000, test_fraction=0.2, **TINY)
    assert spec.n_blocks == 3
    assert [spec.block_sizes(b) for b in range(3)] == [(800, 200), (800, 200), (400, 100)]
    assert spec.n_role("train") == 2_000 and spec.n_role("test") == 500


def test_generate_block_is_seeded_sparse_counts():
    spec = SyntheticSpec(n_cells=600, chunk_cells=300, **TINY)
    X, y = generate_block(spec, 1, "train")
    X2, y2 = generate_block(spec, 1, "train")
    assert sp.isspmatrix_csr(X) and X.dtype == np.int32 and X.shape == (240, 2000)
    assert X.has_sorted_indices and X.data.min() >= 1
    assert (X != X2).nnz == 0 and np.array_equal(y, y2)
    Xt, _ = generate_block(spec, 1, "test")
    assert Xt.shape == (60, 2000)
    Xo, _ = generate_block(spec, 0, "train")
    assert (Xo != X).nnz > 0  # other block, other cells
    assert set(y) <= set(bench.type_names(spec))
    # library sizes around the requested median (log-normal, sigma 0.5, times type factors)
    lib = np.asarray(X.sum(axis=1)).ravel()
    assert 400 < np.median(lib) < 1600
    with pytest.raises(ValueError):
        generate_block(spec, 2, "train")


def test_generated_types_differ_in_their_programs():
    # class means of log counts separate lineages: within-type spread < between-type distance
    spec = SyntheticSpec(n_cells=3000, chunk_cells=3000, **TINY)
    X, y = generate_block(spec, 0, "train")
    L = np.log1p(X.toarray() / X.sum(axis=1).A * 1e4)
    names = np.unique(y)
    means = np.vstack([L[y == k].mean(axis=0) for k in names])
    d = np.linalg.norm(means[:, None] - means[None], axis=2)
    assert d[~np.eye(len(names), dtype=bool)].min() > 0.5


def test_invalid_spec_is_a_user_error():
    with pytest.raises(SclinbenchError, match="test_fraction"):
        SyntheticSpec(n_cells=100, test_fraction=1.0)
    with pytest.raises(SclinbenchError, match="ambient"):
        SyntheticSpec(n_cells=100, ambient=0.7)
    with pytest.raises(SclinbenchError, match="exceed n_genes"):
        SyntheticSpec(n_cells=100, n_genes=50)


def test_centroid_accumulator_equals_fit_on_all_rows():
    spec = SyntheticSpec(n_cells=1200, chunk_cells=400, **TINY)
    acc = CentroidAccumulator()
    Zs, ys = [], []
    for b in range(spec.n_blocks):
        X, y = generate_block(spec, b, "train")
        Z = rankz(X)
        acc.partial_fit(Z, y)
        Zs.append(Z)
        ys.append(y)
    streamed = acc.to_classifier()
    full = CentroidClassifier().fit(OffsetCSR.vstack(Zs), np.concatenate(ys))
    np.testing.assert_array_equal(streamed.classes_, full.classes_)
    np.testing.assert_array_equal(streamed.class_counts_, full.class_counts_)
    np.testing.assert_allclose(streamed.profiles_, full.profiles_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(streamed.coef_, full.coef_, rtol=1e-8, atol=1e-10)
    Xt, _ = generate_block(spec, 0, "test")
    Zt = rankz(Xt)
    np.testing.assert_array_equal(streamed.predict(Zt), full.predict(Zt))


def test_rankz_slice_size_does_not_change_predictions():
    spec = SyntheticSpec(n_cells=900, chunk_cells=450, **TINY)
    y_true_a, y_pred_a = bench.run_ours(spec, StepRecorder(), rankz_cells=7)
    rec = StepRecorder()
    y_true_b, y_pred_b = bench.run_ours(spec, rec, rankz_cells=10_000)
    np.testing.assert_array_equal(y_true_a, y_true_b)
    np.testing.assert_array_equal(y_pred_a, y_pred_b)
    assert y_true_a.size == spec.n_role("test") == 180
    assert list(rec.steps) == list(STEPS["ours"])
    with pytest.raises(SclinbenchError, match="rankz_cells"):
        bench.run_ours(spec, StepRecorder(), rankz_cells=0)


def test_centroid_accumulator_hand_example_dense():
    acc = CentroidAccumulator()
    acc.partial_fit(np.array([[1.0, 0.0], [3.0, 0.0]]), ["a", "a"])
    acc.partial_fit(sp.csr_matrix([[0.0, 2.0], [5.0, 0.0]]), ["b", "a"])
    clf = acc.to_classifier()
    np.testing.assert_allclose(clf.profiles_, [[3.0, 0.0], [0.0, 2.0]])  # a: (1+3+5)/3, b: (0,2)
    assert clf.class_counts_.tolist() == [3, 1]
    assert clf.predict(np.array([[1.0, 0.1], [0.0, 1.0]])).tolist() == ["a", "b"]
    with pytest.raises(SclinbenchError):
        CentroidAccumulator().to_classifier()


def test_step_recorder_sees_a_200mb_allocation():
    rec = StepRecorder()
    with rec.step("small"):
        pass
    with rec.step("big"):
        a = np.ones(25_000_000)  # 200 MB, touched
        a.sum()
        del a
    with rec.step("big"):
        pass
    assert rec.steps["big"]["calls"] == 2 and rec.steps["small"]["calls"] == 1
    assert rec.steps["big"]["peak_bytes"] >= rec.steps["small"]["peak_bytes"] + 190e6
    assert rec.steps["big"]["time_s"] >= 0


def test_summarize_hand_numbers():
    runs = [
        {"n_cells": 1_000, "pipeline": "ours", "total_time_s": 1.0, "peak_bytes": 2, "macro_f1": 0.9},
        {"n_cells": 10_000, "pipeline": "ours", "total_time_s": 10.0, "peak_bytes": 2, "macro_f1": 0.9},
        {"n_cells": 10_000, "pipeline": "scanpy", "total_time_s": 40.0, "peak_bytes": 8, "macro_f1": 0.8},
    ]
    s = summarize(runs)
    assert s["ours_time_slope"] == pytest.approx(1.0)
    assert s["ours_cells_per_s_largest"] == pytest.approx(1_000.0)
    (q,) = s["ratios"]
    assert q["n_cells"] == 10_000
    assert q["time_ratio"] == pytest.approx(4.0)
    assert q["memory_ratio"] == pytest.approx(4.0)
    assert q["f1_diff"] == pytest.approx(0.1)
    # quadratic cost shows as slope 2
    runs[1]["total_time_s"] = 100.0
    assert summarize(runs)["ours_time_slope"] == pytest.approx(2.0)


def _check_table(results):
    table = results_table(results)
    assert tuple(table.columns) == TABLE_COLUMNS
    for pipeline in PIPELINES:
        sub = table[table["pipeline"] == pipeline]
        assert tuple(sub["step"]) == (*STEPS[pipeline], "TOTAL")
    assert np.isfinite(table[["time_s", "peak_GiB"]].to_numpy()).all()
    assert (table["time_s"] >= 0).all() and (table["peak_GiB"] > 0).all()
    # TOTAL = sum of the timed steps (load excluded); TOTAL peak = max over steps
    for pipeline in PIPELINES:
        sub = table[table["pipeline"] == pipeline].set_index("step")
        steps = sub.drop(index="TOTAL")
        assert sub.loc["TOTAL", "time_s"] == pytest.approx(steps.drop(index="load")["time_s"].sum())
        assert sub.loc["TOTAL", "peak_GiB"] == pytest.approx(steps["peak_GiB"].max())


def test_tiny_benchmark_end_to_end_isolated(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main(["--cells", "2000", "--threads", "1", "--genes", "2000", "--umis", "800",
                     "--chunk-cells", "1000", "--n-top-genes", "300", "--no-warmup", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    for needle in ("Per step", "Per pipeline", "scanpy / ours", "Targets", "Throughput",
                   "OPENBLAS_CORETYPE", "BLAS:", "kernel"):
        assert needle in text
    results = json.loads(out.read_text())
    assert [r["pipeline"] for r in results["runs"]] == list(PIPELINES)
    _check_table(results)
    chance = 1.0 / 15
    for r in results["runs"]:
        assert r["n_cells"] == 2000 and r["n_test"] == 400 and r["n_train"] == 1600
        assert r["macro_f1"] > 0.5 > 5 * chance
        assert math.isfinite(r["total_time_s"]) and r["peak_bytes"] > 0
    (q,) = results["summary"]["ratios"]
    assert all(math.isfinite(q[k]) for k in ("time_ratio", "memory_ratio", "f1_diff"))
    assert results["threads"] == 1
    assert any(b["user_api"] == "blas" and b["num_threads"] == 1 for b in results["runs"][0]["blas"])


def test_two_sizes_in_process_give_slope_and_skip_scanpy_over_budget(monkeypatch):
    monkeypatch.setattr(bench, "memory_budget_bytes", lambda: 0)
    lines = []
    results = bench.run_benchmark(cells=[2000, 1000], threads=1, isolate=False, warmup=False, n_top_genes=300,
                                  repeats=2, log=lines.append, chunk_cells=1000, **TINY)
    assert [(r["n_cells"], r["pipeline"]) for r in results["runs"]] == [(1000, "ours"), (2000, "ours")]
    for r in results["runs"]:  # the fastest of two runs is reported
        assert len(r["repeat_total_times_s"]) == 2
        assert r["total_time_s"] == min(r["repeat_total_times_s"])
    assert [s["n_cells"] for s in results["skipped"]] == [1000, 2000]
    assert math.isfinite(results["summary"]["ours_time_slope"])
    text = bench.format_report(results)
    assert "scanpy: not run: needs ~" in text
    assert "linear cost, log-log slope" in text
    assert "fastest of 2 runs" in text
    with pytest.raises(SclinbenchError, match="repeats"):
        bench.run_benchmark(cells=[1000], repeats=0, isolate=False)
    assert any("not run" in line for line in lines)
