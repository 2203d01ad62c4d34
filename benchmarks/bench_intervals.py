"""Time the score stage's resampling (sclinbench.evaluate.intervals.summarize_predictions) at scale.

Not a test (no timing assertions): prints wall time for 100,000 pooled out-of-fold predictions of
15 classes, 4 pipelines (the shuffled control with 5 repeats), 2,000 draws, with 20 donors as units
and with cells as units. Run: .venv/bin/python benchmarks/bench_intervals.py
(the made-up predictions come from the tests' tests/fake_predictions.py)
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_predictions import kfold_predictions  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from sclinbench.evaluate import intervals  # noqa: E402

threadpool_limits(1)  # as in the workflow's score jobs
labels = [f"t{i}" for i in range(15)]
pipes = {"a": 0.9, "b": 0.8, "control_majority": 0.2, "control_shuffled": 0.1}
for donors in (True, False):
    pred = kfold_predictions(pipes, n_donors=20, cells_per_donor=5000, n_folds=5, seed=0, repeats=5,
                             donor_ids=donors, labels=labels)
    t0 = time.perf_counter()
    s, _ = intervals.summarize_predictions(pred, {"kind": "celltype", "split": "stratified"}, n_boot=2000)
    row = s[(s.metric == "macro_f1") & (s.pipeline == "a")].iloc[0]
    print(f"{len(pred) // 8:,} cells x 8 pipeline-repeats, units {row['unit']} ({row['interval']}): "
          f"{time.perf_counter() - t0:.1f} s")
