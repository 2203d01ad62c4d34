"""One engine, any block size: evaluation in blocks of cells read from the h5ad (sclinbench.evaluate.engine on
FileBlocks) = evaluation in memory (the same passes over one block).

Real data (three COVID-19 lavage patients, 10x files of ../shared reduced to the committed fixture)
through both paths with tiny blocks (dozens per pass), for the default pipelines (rankz centroid,
its majority and shuffled-label controls, log1p + Pearson HVG + scale + PCA + logistic
regression) and two more that take the HVG path (sqrt + HVG + centroid; rankz + HVG + PCA + logreg),
on donor-held-out and stratified splits: the same rows in the same order, the same labels, the same
scores to float64 rounding (class means and HVG statistics are summed block by block).
"""

import numpy as np
import pandas as pd
import pytest
from test_evaluate import PIPELINES, ROOT, liao  # noqa: F401  (the fixture)

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.engine import evaluate, evaluate_file, evaluate_streamed, why_not_streamed
from sclinbench.evaluate.splits import make_splits

MORE = {
    "log1p_hvg300_pca_logreg": {**PIPELINES["log1p_pca_logreg"], "features": {"method": "hvg", "n_top": 300}},
    "sqrt_hvg_centroid": {"representation": {"name": "sqrt", "target_sum": 10000},
                          "features": {"method": "hvg", "n_top": 250}, "model": {"name": "centroid"}},
    "rankz_hvg_pca_logreg": {"representation": {"name": "rankz"}, "features": {"method": "hvg", "n_top": 400},
                             "reduction": {"method": "pca", "n_components": 20}, "model": {"name": "logreg"}},
}


@pytest.fixture(scope="module")
def liao_file(liao, tmp_path_factory):  # noqa: F811
    path = tmp_path_factory.mktemp("streamed") / "liao2020.h5ad"
    liao.write_h5ad(path)
    return path


@pytest.mark.parametrize("task", [
    {"kind": "disease", "split": "donor", "n_folds": 3},
    {"kind": "celltype", "split": "stratified", "n_folds": 4, "label": "condition"},
])
def test_streamed_equals_in_memory(liao, liao_file, task):  # noqa: F811
    pipelines = {**PIPELINES, **MORE}
    splits = make_splits(liao.obs, task, seed=0, dataset="liao2020")
    memory = evaluate(liao, splits, pipelines, task, seed=3, dataset="liao2020")
    blocks = evaluate_streamed(liao_file, splits, pipelines, task, seed=3, dataset="liao2020",
                               block_values=4000)
    assert liao.X.nnz / 4000 > 20  # many blocks per pass
    assert list(blocks.columns) == list(memory.columns)
    assert len(blocks) == len(memory)
    text = [c for c in memory.columns if not c.startswith("s:") and c != "score"]
    pd.testing.assert_frame_equal(blocks[text], memory[text])
    numbers = [c for c in memory.columns if c.startswith("s:")] + ["score"]
    np.testing.assert_allclose(blocks[numbers].to_numpy(float), memory[numbers].to_numpy(float),
                               rtol=1e-9, atol=1e-9)
    # every kind of pipeline was there, and the HVG ones did select genes (n_top < genes)
    assert set(blocks.pipeline) == set(pipelines)
    assert liao.n_vars > 400


def test_evaluate_file_streams_above_the_threshold_only(liao, liao_file, caplog):  # noqa: F811
    task = {"kind": "disease", "split": "donor", "n_folds": 3}
    splits = make_splits(liao.obs, task, seed=0, dataset="liao2020")
    with caplog.at_level("INFO", logger="sclinbench.evaluate"):
        whole = evaluate_file(liao_file, splits, PIPELINES, task, dataset="liao2020")
        assert "evaluated in blocks" not in caplog.text
        streamed = evaluate_file(liao_file, splits, PIPELINES, task, dataset="liao2020", stream_from_nnz=1,
                                 block_values=4000)
        assert "evaluated in blocks" in caplog.text
    pd.testing.assert_frame_equal(whole[["cell_id", "pipeline", "y_pred"]], streamed[["cell_id", "pipeline", "y_pred"]])


def test_what_cannot_be_streamed_says_why(liao, liao_file):  # noqa: F811
    task = {"kind": "disease", "split": "donor", "n_folds": 3}
    splits = make_splits(liao.obs, task, seed=0, dataset="liao2020")
    median = {"m": {"representation": {"name": "log1p", "target_sum": "median"}, "model": {"name": "centroid"}}}
    assert "fitted on the training cells" in why_not_streamed(median, "donor")
    pca_all = {"p": {"representation": {"name": "rankz"}, "reduction": {"method": "pca", "n_components": 5},
                     "model": {"name": "logreg"}}}
    assert "all genes" in why_not_streamed(pca_all, "donor")
    assert "pseudobulk" in why_not_streamed(PIPELINES, "donor_pseudobulk")
    seurat = {"s": {**PIPELINES["log1p_pca_logreg"], "features": {"method": "hvg", "n_top": 100, "flavor": "seurat"}}}
    assert "scanpy" in why_not_streamed(seurat, "donor")
    with pytest.raises(SclinbenchError, match="cannot be evaluated in blocks: .*all genes"):
        evaluate_streamed(liao_file, splits, pca_all, task, dataset="liao2020")
    # evaluate_file reads such a dataset whole (and says so): the same as evaluate
    out = evaluate_file(liao_file, splits, pca_all, task, dataset="liao2020", stream_from_nnz=1)
    assert set(out.pipeline) == {"p"}


@pytest.mark.parametrize("hvg", [False, True])
def test_held_representation_reads_the_file_once_with_the_same_predictions(liao, liao_file, hvg, caplog):  # noqa: F811
    """The blocks' representation of pass 1 is held for the last pass when it fits ``hold_bytes``:
    one read of the file fewer, the same table; with ``hold_bytes=0`` it is recomputed. The log
    says which."""
    import logging

    import sclinbench.evaluate.blocks as blocks_module

    pipelines = {name: PIPELINES[name] for name in ("rankz_centroid",)}
    if hvg:
        pipelines["rankz_hvg_pca_logreg"] = MORE["rankz_hvg_pca_logreg"]
    task = {"kind": "celltype", "split": "stratified", "n_folds": 3, "label": "condition"}
    splits = make_splits(liao.obs, task, seed=0, dataset="liao2020")
    passes = {}
    original = blocks_module.FileBlocks.__iter__

    def counting(self):
        passes[hold] = passes.get(hold, 0) + 1
        return original(self)

    out = {}
    for hold in (0, 1 << 30):
        with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.INFO, logger="sclinbench.evaluate"):
            mp.setattr(blocks_module.FileBlocks, "__iter__", counting)
            caplog.clear()
            out[hold] = evaluate_streamed(liao_file, splits, pipelines, task, seed=3, dataset="liao2020",
                                          block_values=4000, hold_bytes=hold)
            said = caplog.text
        assert ("held for the last pass" in said) == (hold > 0), said
        assert ("recomputed in the last pass" in said) == (hold == 0), said
    pd.testing.assert_frame_equal(out[1 << 30], out[0], check_exact=True)
    # HVG pipelines read the counts in passes 2 and 3 either way; the last pass needs no read
    assert passes[0] - passes[1 << 30] == 1, passes


def test_scratch_passes_read_the_same_blocks_into_reused_buffers(liao, liao_file):  # noqa: F811
    """Passes 2 and 3 (``_Blocks.scratch``) read every block of the real lavage counts into the same two
    buffers: the same values as fresh reads, one buffer pair over the pass, freed after a pass without keep."""
    from sclinbench.evaluate.blocks import FileBlocks

    blocks = FileBlocks(liao_file, 4000)
    try:
        assert len(blocks.ranges) > 20
        fresh = [(start, stop, X.copy()) for start, stop, X in blocks]
        assert blocks._buffers is None
        for keep in (True, False):
            seen = set()
            for (start, stop, X), (s0, s1, F) in zip(blocks.scratch(keep=keep), fresh):
                assert (start, stop) == (s0, s1)
                assert (X != F).nnz == 0 and np.array_equal(X.indices, F.indices)
                assert np.array_equal(X.indptr, F.indptr) and X.dtype == F.dtype
                seen.add(X.data.ctypes.data)  # each block's values live in the one buffer
            assert len(seen) == 1
            assert (blocks._buffers is not None) == keep
        np.testing.assert_array_equal(np.concatenate([F.data for _, _, F in fresh]), liao.X.data)
    finally:
        blocks.close()
