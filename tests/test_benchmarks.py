"""Tests of the scale benchmarks (benchmarks/): synthetic data generator, step recorder, the scanpy
standard runner on a small standardized file and the comparison arithmetic. No timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_pipelines  # noqa: E402
import bench_scanpy  # noqa: E402
import synthetic_cells  # noqa: E402
from make_dataset import make_dataset  # noqa: E402
from measure import StepRecorder  # noqa: E402
from synthetic_cells import SyntheticSpec, generate_block  # noqa: E402

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.splits import make_splits
from sclinbench.workflow.io import write_table

# a small data set: 2,000 genes, 15 types
TINY = dict(n_genes=2000, umis_per_cell=800, lineage_genes=100, subtype_genes=30, program_genes=50)


def test_lookup_table_hand_example():
    # p = (0.5, 0.25, 0.25, 0) over 16 slots -> 8, 4, 4, 0 slots
    t = synthetic_cells._lookup_table(np.array([0.5, 0.25, 0.25, 0.0]), bits=4, dtype=np.uint16)
    assert t.shape == (16,)
    assert np.bincount(t, minlength=4).tolist() == [8, 4, 4, 0]
    # largest remainder: (1/3, 1/3, 1/3) over 8 slots -> 3, 3, 2 (ties to the lower index)
    t = synthetic_cells._lookup_table(np.ones(3), bits=3, dtype=np.uint16)
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
    assert set(y) <= set(synthetic_cells.type_names(spec))
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


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """A local h5ad of 1,500 synthetic cells (as make_dataset.py writes them) and a 3-fold split."""
    d = tmp_path_factory.mktemp("bench")
    info = make_dataset(d / "small.h5ad", 1500, n_genes=2000, chunk_cells=500)
    obs = ad.read_h5ad(info["path"], backed="r").obs
    table = make_splits(obs, {"kind": "celltype", "split": "stratified", "n_folds": 3}, seed=0, dataset="small")
    write_table(table, d / "splits.tsv.gz")
    return Path(info["path"]), d / "splits.tsv.gz", table


def test_make_dataset_writes_what_h5ad_nnz_reads(small_dataset):
    path, _, _ = small_dataset
    a = ad.read_h5ad(path)
    assert sp.issparse(a.X) and a.n_obs == 1500 and a.n_vars == 2000
    assert {"cell_type", "donor_id"} <= set(a.obs.columns)
    assert bench_pipelines.h5ad_nnz(path) == (1500, a.X.nnz)


def test_scanpy_standard_scores_the_workflow_folds(small_dataset):
    path, splits, table = small_dataset
    out = bench_scanpy.run(str(path), str(splits), folds=2, threads=1, n_top_genes=500)
    assert [s["step"] for s in out["steps"]] == list(bench_scanpy.STEPS)
    assert out["folds_run"] == 2
    test = table[(table["role"] == "test") & table["fold"].isin(sorted(table["fold"].unique())[:2])]
    assert len(out["y_true"]) == len(out["y_pred"]) == len(test)
    assert out["n_train_per_fold"] == [int(((table["fold"] == f) & (table["role"] == "train")).sum())
                                       for f in sorted(table["fold"].unique())[:2]]
    assert bench_pipelines.macro_f1(out["y_true"], out["y_pred"]) > 5 / 15  # 15 types: chance is 1/15
    assert out["peak_bytes"] > 0 and out["wall_s"] > 0


def test_comparison_ratios_and_slope_hand_numbers():
    def size(n, wall_rankz, scanpy_wall):
        ev = "evaluate/dataset~scale/task~celltype_stratified/representation~"
        return {"n_cells": n, "jobs": [
                    {"job": ev + "rankz", "wall_s": wall_rankz, "cpu_s": 1.0, "peak_gib": 1.0,
                     "cells_x_folds_per_s": 5 * n / wall_rankz, "mem_mb": 1000, "status": "ok"},
                    {"job": ev + "log1p", "wall_s": 2 * wall_rankz, "cpu_s": 1.0, "peak_gib": 2.0,
                     "cells_x_folds_per_s": 5 * n / (2 * wall_rankz), "mem_mb": 1000, "status": "ok"}],
                "ours": {"rankz_centroid": {"macro_f1": 0.9, "folds": 5},
                         "log1p_pca_logreg": {"macro_f1": 0.85, "folds": 5}},
                "scanpy": {"wall_s": scanpy_wall, "folds_run": 1, "peak_bytes": 4 * 2**30, "macro_f1": 0.8}}

    rows = bench_pipelines.comparison([size(1000, 10.0, 20.0), size(10_000, 100.0, 200.0)])
    r = {(x["n_cells"], x["pipeline"]): x for x in rows}
    # rankz: 10 s for 5 folds = 2 s per fold; scanpy 20 s for its one fold -> 10x
    assert r[(1000, "rankz_centroid")]["speedup_vs_scanpy"] == pytest.approx(10.0)
    assert r[(1000, "log1p_pca_logreg")]["speedup_vs_scanpy"] == pytest.approx(5.0)
    assert r[(1000, "rankz_centroid")]["f1_minus_scanpy"] == pytest.approx(0.1)
    assert bench_pipelines.slopes(rows) == {"rankz_centroid": pytest.approx(1.0), "log1p_pca_logreg": pytest.approx(1.0)}
    quadratic = bench_pipelines.comparison([size(1000, 10.0, 20.0), size(10_000, 1000.0, 200.0)])
    assert bench_pipelines.slopes(quadratic)["rankz_centroid"] == pytest.approx(2.0)
    assert "skipped" in bench_pipelines.format_report({
        "machine": {"cpu": "x", "cores": 2, "memory_bytes": 2**34}, "cores": 2, "load_average_before": "0",
        "results": [{**size(1000, 10.0, 20.0), "run": "r", "workflow_exit_code": 0,
                     "scanpy": {"skipped": "estimated peak 30 GiB > 20 GiB available"}}],
        "comparison": [], "slopes": {}})


def test_generate_block_stream_unchanged_by_generate_cells():
    """The cells of generate_block are those of the generator before generate_cells was added
    (sha256 of data, indices, indptr and labels recorded from the earlier code)."""
    import hashlib

    h = hashlib.sha256()
    for spec in [SyntheticSpec(n_cells=600, n_genes=2000, chunk_cells=250, seed=3), SyntheticSpec(n_cells=300, n_genes=500)]:
        for b in range(spec.n_blocks):
            for role in ("train", "test"):
                X, y = generate_block(spec, b, role)
                for a in (X.data, X.indices, X.indptr):
                    h.update(a.tobytes())
                h.update("|".join(y).encode())
    assert h.hexdigest() == "e0f810ffc529e964706abf824ecf0fc4a443136e1623f69486e261e1910b0e4e"


def test_generate_cells_donor_programs_shift_their_genes():
    spec = SyntheticSpec(n_cells=2, n_genes=3000, seed=1)
    progs = synthetic_cells.program_profiles(spec, 2, genes=50, lfc=2.0, seed=5)
    codes = np.zeros(400, dtype=int)
    w = np.zeros((400, 2))
    w[:200, 0] = 0.15
    w[200:, 1] = 0.15
    X = synthetic_cells.generate_cells(spec, codes, seed=[1, 2], programs=progs, program_weights=w)
    assert X.shape == (400, 3000) and X.dtype == np.int32
    g0 = np.flatnonzero(progs[0])
    mean0 = np.asarray(X[:, g0].sum(axis=1)).ravel() / np.asarray(X.sum(axis=1)).ravel()
    assert mean0[:200].mean() - mean0[200:].mean() > 0.08  # ~15% of their UMIs from the program


def test_bench_zscore_svd_runs_and_compares_its_outputs(tmp_path, capsys):
    import bench_zscore_svd

    saved = tmp_path / "run.npz"
    args = ["--cells", "400", "--genes", "2000", "--repeats", "1", "--cache", str(tmp_path)]
    assert bench_zscore_svd.main(args + ["--save", str(saved)]) == 0
    assert bench_zscore_svd.main(args + ["--compare", str(saved)]) == 0  # the cached rankz: same outputs
    out = capsys.readouterr().out
    for name in ("matmat", "rmatmat", "components", "singular_values", "scores"):
        assert f"{name} bit-identical" in out
    assert "DIFFERENT" not in out and "rankz 400 x " in out
