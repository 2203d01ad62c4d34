"""Write time and size of a predictions table as TSV.gz (the earlier format) and as Parquet.

A seeded table shaped like the evaluate job's of 200k cells x 5 folds (1.4M rows: 7 pipeline
rows per test cell; 15 ``s:<label>`` score columns) is written with the package's own writers
(:func:`sclinbench.workflow.io.write_table` for ``.tsv.gz``, :func:`sclinbench.workflow.contracts.write_predictions`
for Parquet) and read back with :func:`sclinbench.workflow.contracts.read_predictions`.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_predictions_io.py --rows 1400000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def table(rows: int, n_classes: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.array([f"type_{i:02d}" for i in range(n_classes)], dtype=object)
    pipelines = np.array([f"pipeline_{i}" for i in range(7)], dtype=object)
    cells = rows // len(pipelines)
    scores = rng.dirichlet(np.ones(n_classes), size=rows)
    y_true = labels[rng.integers(0, n_classes, rows)]
    frame = pd.DataFrame({
        "cell_id": np.array([f"c{i:07d}" for i in range(cells)], dtype=object)[np.arange(rows) % cells],
        "fold": np.arange(rows) % 5, "group": "", "pipeline": pipelines[np.arange(rows) // cells % 7],
        "repeat": 0, "donor_id": np.array([f"d{i}" for i in range(12)], dtype=object)[rng.integers(0, 12, rows)],
        "y_true": y_true, "y_pred": labels[scores.argmax(1)], "score": scores.max(1), "novel": False,
        "label_in_training": True, "fallback": False,
    })
    return pd.concat([frame, pd.DataFrame(scores, columns=[f"s:{c}" for c in labels])], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_400_000)
    ap.add_argument("--classes", type=int, default=15)
    args = ap.parse_args()

    from sclinbench.workflow.contracts import read_predictions, write_predictions
    from sclinbench.workflow.io import write_table

    pred = table(args.rows, args.classes)
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in (("pred.tsv.gz", write_table), ("pred.parquet", write_predictions)):
            path = Path(tmp) / name
            t0 = time.perf_counter()
            write(pred, path)
            t_write = time.perf_counter() - t0
            t0 = time.perf_counter()
            back = read_predictions([path])
            t_read = time.perf_counter() - t0
            assert len(back) == len(pred)
            got, want = back["s:type_00"].to_numpy(), pred["s:type_00"].to_numpy()
            exact = int((got == want).sum())  # Parquet keeps every bit; the TSV text keeps ~15 digits
            print(f"{name:13s} {len(pred)} rows x {pred.shape[1]} columns: write {t_write:6.1f} s, "
                  f"{path.stat().st_size / 1e6:7.1f} MB, read {t_read:6.1f} s; scores read back exactly: "
                  f"{exact}/{len(want)}")


if __name__ == "__main__":
    main()
