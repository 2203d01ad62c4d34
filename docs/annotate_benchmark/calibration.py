"""ECE of sclinbench_confidence (= conf_score) on pbmc68k_reduced stratified halves (seeds 0-4), per pipeline.

    .venv/bin/python docs/annotate_benchmark/calibration.py      (from the repository root; about 1 minute)
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.data import load_bundled
from sclinbench.tool import annotate as tool
from sclinbench.tool import catalog
from sclinbench.tool.calibrate import expected_calibration_error

logging.disable(logging.WARNING)
a = load_bundled("pbmc68k_reduced")
y = a.obs["bulk_labels"].astype(str).to_numpy()
b = ad.AnnData(X=sp.csr_matrix(a.X, dtype=np.float32), obs=pd.DataFrame({"cell_type": y}, index=a.obs_names),
               var=pd.DataFrame(index=a.var_names))
cat = catalog.load(None, [], datasets_too=False)
rows = []
for name in ["rankz_centroid", "log1p_pca_logreg", "pearson_pca_ridge"]:
    if name not in cat.pipelines:
        continue
    _, spec = cat.pipeline(name)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        q = np.zeros(a.n_obs, bool)
        for label in np.unique(y):
            idx = np.flatnonzero(y == label)
            q[rng.choice(idx, idx.size // 2, replace=False)] = True
        ref = tool.prepare_reference(b[~q].copy(), "cell_type")
        res = tool.annotate(b[q].copy(), reference=ref, pipeline_name=name, spec=spec)
        o = res.adata.obs
        correct = (o["predicted_labels"].astype(str).to_numpy() == y[q])
        rows.append({"pipeline": name, "seed": seed, "accuracy": correct.mean(), "mean_conf_score": o.conf_score.mean(),
                     "ece": expected_calibration_error(o.conf_score.to_numpy(), correct),
                     "heldout_cv_ece": res.annotator.calibration["probability"]["ece"],
                     "frac_below_0.5": res.low_confidence["fraction_below"]})
df = pd.DataFrame(rows)
print(df.groupby("pipeline").agg(["mean", "std"]).round(3).drop(columns="seed").to_string())
