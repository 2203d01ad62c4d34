"""The scanpy standard pipeline, as users run it, on a standardized dataset and the workflow's folds.

    python benchmarks/bench_scanpy.py --data RUN/resources/standardized/scale.h5ad \
        --splits RUN/results/splits/dataset~scale/task~celltype_stratified.tsv.gz --json scanpy.json

Per fold, on the training cells: ``sc.pp.normalize_total(target_sum=1e4)`` -> ``sc.pp.log1p`` ->
``sc.pp.highly_variable_genes(n_top_genes=2000)`` (scanpy's default flavour, seurat) -> keep those
genes -> ``sc.pp.scale(max_value=10)`` -> ``sc.pp.pca(n_comps=50)`` -> logistic regression (the
package's ``logreg``: L2, lbfgs, balanced classes). The fold's test cells get the same
normalization, the training genes, the training mean / std (clipped at 10) and the training
loadings. Nothing fitted sees a test cell, as in the workflow.

Each step's wall time, CPU time (all threads) and exact peak memory (``measure.StepRecorder``) is
summed over the folds run; the predictions of the test cells are returned for scoring with the
same function as the workflow's. ``--folds K`` runs the first K folds only (the per-fold rate is
what the comparison uses). It prints one JSON document (and writes it with ``--json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # measure.py beside this script
sys.path.insert(0, str(HERE.parent / "src"))

from measure import StepRecorder, blas_info, limit_numba, loadavg  # noqa: E402

STEPS = ("load", "normalize_total", "log1p", "hvg", "scale", "pca", "fit", "predict")


def _fold(adata, itrain, itest, y, rec: StepRecorder, seed: int, n_top_genes: int):
    import scanpy as sc

    from sclinbench.evaluate.models import build_model

    train, test = adata[itrain].copy(), adata[itest].copy()
    with rec.step("normalize_total"):
        sc.pp.normalize_total(train, target_sum=1e4)
        sc.pp.normalize_total(test, target_sum=1e4)
    with rec.step("log1p"):
        sc.pp.log1p(train)
        sc.pp.log1p(test)
    with rec.step("hvg"):
        sc.pp.highly_variable_genes(train, n_top_genes=n_top_genes)
        genes = np.flatnonzero(train.var["highly_variable"].to_numpy())
        train, test = train[:, genes].copy(), test[:, genes].copy()
        gc.collect()
    with rec.step("scale"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="zero-centering a sparse array", category=UserWarning)
        sc.pp.scale(train, max_value=10)
        mean, std = train.var["mean"].to_numpy(), train.var["std"].to_numpy()
        Xt = test.X.toarray() if sp.issparse(test.X) else np.asarray(test.X)
        del test
        Xt = (Xt - mean) / np.where(std > 0, std, 1.0)
        np.clip(Xt, -10, 10, out=Xt)
    with rec.step("pca"):
        sc.pp.pca(train, n_comps=50, random_state=seed)
        center = np.asarray(train.X.mean(axis=0)).ravel()
        test_pcs = (Xt - center) @ np.asarray(train.varm["PCs"])
        train_pcs = np.asarray(train.obsm["X_pca"])
        del Xt, train
    with rec.step("fit"):
        clf = build_model("logreg", {}, seed).fit(train_pcs, y[itrain])
    with rec.step("predict"):
        return np.asarray(clf.predict(test_pcs)).astype(str)


def run(data: str, splits: str, folds: int | None = None, seed: int = 0, n_top_genes: int = 2000,
        threads: int = 2, label: str = "cell_type") -> dict:
    import anndata as ad
    from threadpoolctl import threadpool_limits

    from sclinbench.evaluate.splits import iter_folds
    from sclinbench.workflow.contracts import read_splits

    rec = StepRecorder()
    t_start = time.perf_counter()
    with threadpool_limits(limits=threads):
        import scanpy  # noqa: F401  (numba with it)

        limit_numba(threads)
        with rec.step("load"):
            adata = ad.read_h5ad(data)
            table = read_splits(splits)
        y = adata.obs[label].astype(str).to_numpy()
        index = {c: i for i, c in enumerate(adata.obs_names)}
        y_true, y_pred, n_train = [], [], []
        for k, (_fold_id, _groups, train_ids, test_ids) in enumerate(iter_folds(table)):
            if folds is not None and k >= folds:
                break
            itrain = np.array([index[c] for c in train_ids])
            itest = np.array([index[c] for c in test_ids])
            y_pred.append(_fold(adata, itrain, itest, y, rec, seed, n_top_genes))
            y_true.append(y[itest])
            n_train.append(len(itrain))
            print(f"bench_scanpy: fold {k + 1} done at {time.perf_counter() - t_start:.1f} s", file=sys.stderr, flush=True)
    steps = [{"step": s, **rec.steps[s]} for s in STEPS if s in rec.steps]
    return {
        "pipeline": "scanpy_standard",
        "n_cells": int(adata.n_obs),
        "folds_run": len(y_pred),
        "n_train_per_fold": n_train,
        "steps": steps,
        "wall_s": float(sum(s["time_s"] for s in steps if s["step"] != "load")),
        "cpu_s": float(sum(s["cpu_s"] for s in steps if s["step"] != "load")),
        "load_s": float(rec.steps["load"]["time_s"]),
        "peak_bytes": int(max(s["peak_bytes"] for s in steps)),
        "memory_method": rec.method,
        "y_true": np.concatenate(y_true).tolist(),
        "y_pred": np.concatenate(y_pred).tolist(),
        "blas": blas_info(),
        "load_average_after": loadavg(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="standardized h5ad (resources/standardized/<dataset>.h5ad)")
    p.add_argument("--splits", required=True, help="the workflow's split table of the task")
    p.add_argument("--folds", type=int, help="run only the first K folds (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default="cell_type")
    p.add_argument("--json", help="write the result here too")
    args = p.parse_args(argv)
    out = run(args.data, args.splits, folds=args.folds, seed=args.seed, threads=args.threads, label=args.label)
    text = json.dumps(out)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
