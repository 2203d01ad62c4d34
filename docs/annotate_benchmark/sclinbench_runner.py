"""Train + annotate with the sclinbench command line (in one process, timed after the imports).

    .venv/bin/python sclinbench_runner.py '{"reference": ..., "query": ..., "label": ..., "model": ..., "out": ...,
                                            "pipeline": ..., "donor": ..., "extra": [...]}'

Calls ``sclinbench.cli.main`` with the same arguments as ``sclinbench train`` and
``sclinbench annotate --model``; prints one JSON line with times. ``"pipeline": "default"`` runs
``train`` without ``--pipeline`` (what a user gets: nested selection among TRAIN_CANDIDATES, with
``--donor COLUMN`` when ``"donor"`` is given); the pipeline it chose is read back from the model file.
"""
import json
import sys
import time

t_start = time.perf_counter()
# what the command imports on its way (as `import celltypist` brings scanpy and scikit-learn)
import anndata  # noqa: E402,F401
import numpy as np  # noqa: E402
import sklearn.discriminant_analysis  # noqa: E402,F401  (sclinbench.evaluate.models.build_model imports these lazily)
import sklearn.dummy  # noqa: E402,F401
import sklearn.linear_model  # noqa: E402,F401
import sklearn.metrics  # noqa: E402,F401
import sklearn.neighbors  # noqa: E402,F401
import sklearn.pipeline  # noqa: E402,F401
import sklearn.svm  # noqa: E402,F401

import sclinbench.evaluate.engine  # noqa: E402,F401  (the default's nested selection)
import sclinbench.evaluate.nested  # noqa: E402,F401
import sclinbench.tool.annotate  # noqa: E402,F401
import sclinbench.tool.catalog  # noqa: E402,F401
from sclinbench.cli import main  # noqa: E402

job = json.loads(sys.argv[1])
t_imported = time.perf_counter()
if job["pipeline"] == "default":  # no --pipeline: train chooses
    common = ["--donor", job["donor"]] if job.get("donor") else []
else:
    common = ["--pipeline", job["pipeline"]] + (["--config", job["config"]] if job.get("config") else [])
t0 = time.perf_counter()
rc = main(["-q", "train", "--reference", job["reference"], "--label", job["label"], "--model", job["model"], *common])
t1 = time.perf_counter()
if rc == 0:
    rc = main(["-q", "annotate", "--model", job["model"], "--query", job["query"], "--out", job["out"],
               "--truth", job["label"], *job.get("extra", [])])
t2 = time.perf_counter()
with np.load(job["model"], allow_pickle=False) as npz:  # what the model file says it is (after the timing)
    meta = json.loads(str(npz["__meta__"]))
selection = meta["provenance"].get("selection", {})
print(json.dumps({"chosen": selection.get("winner", selection.get("fixed")),
                  "selection_s": selection.get("seconds"), "selection_scores": selection.get("scores"),
                  "inner_split": selection.get("inner_split"),
                  "import_s": t_imported - t_start, "train_s": t1 - t0, "annotate_s": t2 - t1,
                  "label_column": "sclinbench_label", "rc": rc}))
sys.exit(rc)
