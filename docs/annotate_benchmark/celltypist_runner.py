"""Train + annotate with CellTypist, timed; run with CellTypist's own Python (see compare_celltypist.py).

    /work/ctenv/bin/python celltypist_runner.py '{"reference": ..., "query": ..., "label": ..., "model": ..., "out": ...}'

CellTypist expects log1p(CP10k) input: both files are normalized with scanpy (normalize_total to
1e4 over all genes, log1p) inside the timed section. Defaults otherwise (LogisticRegression, C=1,
no SGD, no feature selection, 'best match', no majority voting). Prints one JSON line with times.
"""
import json
import os
import sys
import time

t_start = time.perf_counter()
import anndata as ad  # noqa: E402
import celltypist  # noqa: E402
import scanpy as sc  # noqa: E402

job = json.loads(sys.argv[1])
t_imported = time.perf_counter()


def lognorm(adata):
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


t0 = time.perf_counter()
ref = lognorm(ad.read_h5ad(job["reference"]))
model = celltypist.train(ref, labels=job["label"])
model.write(os.path.abspath(job["model"]))
t1 = time.perf_counter()
query = lognorm(ad.read_h5ad(job["query"]))
result = celltypist.annotate(query, model=os.path.abspath(job["model"]))
out = result.to_adata()
out.write_h5ad(job["out"])
t2 = time.perf_counter()
print(json.dumps({"import_s": t_imported - t_start, "train_s": t1 - t0, "annotate_s": t2 - t1,
                  "label_column": "predicted_labels", "celltypist": celltypist.__version__}))
