"""Time the workflow's own evaluate path (``sclinbench.evaluate.engine.evaluate``, as scripts/evaluate.py
calls it) on a standardized h5ad and its split table, for one representation's pipelines.

    python benchmarks/bench_evaluate.py --data /work/scale/run_200k/resources/standardized/scale.h5ad \
        --splits /work/scale/run_200k/results/splits/dataset~scale/task~celltype_stratified.tsv.gz \
        --representation rankz [--no-share] [--threads 1]

Prints read / evaluate / write wall time, cells x folds / s of the evaluate call and of the whole
job, and the process's peak RSS (ru_maxrss; one process, so it is exact). For quick iteration only:
the numbers to report come from the evaluate rule itself (benchmarks/run_scale.py).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--splits", required=True)
    ap.add_argument("--representation", required=True)
    ap.add_argument("--config", default=str(REPO / "config/config.yaml"))
    ap.add_argument("--no-share", action="store_true", help="compute stateless representations per fold")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (the evaluate rule's threads)")
    ap.add_argument("--write", action="store_true", help="also write the predictions (Parquet) as the rule does")
    args = ap.parse_args()

    import anndata as ad
    import yaml
    from threadpoolctl import threadpool_limits

    from sclinbench.evaluate.engine import evaluate
    from sclinbench.workflow.contracts import read_splits, write_predictions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = yaml.safe_load(Path(args.config).read_text())
    pipelines = {n: s for n, s in config["pipelines"].items()
                 if s["representation"]["name"] == args.representation}
    t0 = time.perf_counter()
    with threadpool_limits(args.threads):
        adata = ad.read_h5ad(args.data)
        splits = read_splits(args.splits)
        t_read = time.perf_counter() - t0
        peak_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        t1 = time.perf_counter()
        pred = evaluate(adata, splits, pipelines, {"kind": "celltype", "split": "stratified"}, seed=0,
                        dataset="scale", share_stateless=not args.no_share)
        t_eval = time.perf_counter() - t1
        peak_eval = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t_write = 0.0
    if args.write:
        t2 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            write_predictions(pred, Path(tmp) / "pred.parquet")
        t_write = time.perf_counter() - t2
    total = time.perf_counter() - t0
    cf = adata.n_obs * splits["fold"].nunique()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"representation {args.representation} ({', '.join(pipelines)}), share={not args.no_share}: "
          f"{adata.n_obs} cells x {splits['fold'].nunique()} folds, nnz {adata.X.nnz:,}")
    print(f"read {t_read:.1f} s, evaluate {t_eval:.1f} s ({cf / t_eval:,.0f} cells x folds / s), "
          f"write {t_write:.1f} s, total {total:.1f} s ({cf / total:,.0f} cells x folds / s); "
          f"peak RSS {peak:.2f} GiB (after read {peak_read:.2f}, after evaluate {peak_eval:.2f})")


if __name__ == "__main__":
    main()
