"""Train + annotate with the sclinbench command line (in one process, timed after the imports).

    .venv/bin/python sclinbench_runner.py '{"reference": ..., "query": ..., "label": ..., "model": ..., "out": ...,
                                            "pipeline": ..., "extra": [...]}'

Calls ``sclinbench.cli.main`` with the same arguments as ``sclinbench train`` and
``sclinbench annotate --model``; prints one JSON line with times.
"""
import json
import sys
import time

t_start = time.perf_counter()
# what the command imports on its way (as `import celltypist` brings scanpy and scikit-learn)
import anndata  # noqa: E402,F401
import sklearn.discriminant_analysis  # noqa: E402,F401  (sclinbench.models.build_model imports these lazily)
import sklearn.dummy  # noqa: E402,F401
import sklearn.linear_model  # noqa: E402,F401
import sklearn.metrics  # noqa: E402,F401
import sklearn.neighbors  # noqa: E402,F401
import sklearn.pipeline  # noqa: E402,F401
import sklearn.svm  # noqa: E402,F401

import sclinbench.tool.annotate  # noqa: E402,F401
import sclinbench.tool.catalog  # noqa: E402,F401
from sclinbench.cli import main  # noqa: E402

job = json.loads(sys.argv[1])
t_imported = time.perf_counter()
common = ["--pipeline", job["pipeline"]] + (["--config", job["config"]] if job.get("config") else [])
t0 = time.perf_counter()
rc = main(["-q", "train", "--reference", job["reference"], "--label", job["label"], "--model", job["model"], *common])
t1 = time.perf_counter()
if rc == 0:
    rc = main(["-q", "annotate", "--model", job["model"], "--query", job["query"], "--out", job["out"],
               "--truth", job["label"], *job.get("extra", [])])
t2 = time.perf_counter()
print(json.dumps({"import_s": t_imported - t_start, "train_s": t1 - t0, "annotate_s": t2 - t1,
                  "label_column": "sclinbench_label", "rc": rc}))
sys.exit(rc)
