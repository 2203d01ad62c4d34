"""Peak memory of reading a large h5ad whole vs reading only the held-out donors' rows.

Run ``python benchmarks/bench_read.py`` (``--help`` for options). It PRINTS a table (and optionally
writes ``--json``); it is a measurement script, never a timed test.

What is measured
----------------
Data
    A seeded synthetic h5ad laid out like a CELLxGENE Tabula Sapiens file: normalized-looking X
    and raw counts in ``raw.X`` (both CSR, the same values), obs ``donor_id`` / ``cell_type``,
    ``--genes`` genes with ``--genes-per-cell`` detected genes per cell. Cells come in runs of
    ``--run`` cells per donor (as from sequencing runs), cycling over ``--donors`` donors; the
    first ``--held-out`` share of donors are named TSP17, TSP18, ... (held out), the rest TSP1,
    TSP2, .... Defaults mirror the largest paper file: Tabula Sapiens lymph node, 129,062 cells,
    72,290 (56%) from held-out donors. The file is written uncompressed (what is measured is
    memory, and gzip would only slow the writing down).
Reads (each in a fresh process, so peaks do not mix)
    ``whole``  ``sclinbench.data.read_raw(path, counts="raw.X")`` then the held-out rows selected
               (``adata[keep].copy()``): the workflow's reading before issue 14.
    ``rows``   ``read_raw(path, counts="raw.X", rows=ood_row_filter(entry))``: the donor filter
               applied while reading, only the kept rows of raw.X are read from disk.
Memory
    The process's RSS high-water mark around the read (``measure.StepRecorder``: VmHWM after
    resetting it through ``/proc/self/clear_refs``, else RSS sampled every 5 ms), and the size of
    the resulting CSR matrix (stored values and their column indices).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HELD_OUT = "TSP(1[7-9]|[2-9][0-9])"


def donor_names(n_donors: int, held_out: float) -> list[str]:
    n_held = max(1, min(n_donors - 1, round(n_donors * held_out)))
    return [f"TSP{17 + i}" for i in range(n_held)] + [f"TSP{1 + i}" for i in range(n_donors - n_held)]


def write_file(path: Path, cells: int, genes: int, per_cell: int, donors: int, held_out: float,
               run: int = 1000, seed: int = 0, chunk: int = 10_000) -> dict:
    """Write the synthetic h5ad to ``path`` chunk by chunk (never the whole matrix in memory)."""
    import h5py
    import pandas as pd
    from anndata.io import write_elem

    rng = np.random.default_rng(seed)
    names = donor_names(donors, held_out)
    donor = np.asarray(names, dtype=object)[(np.arange(cells) // run) % donors]
    obs = pd.DataFrame({"donor_id": pd.Categorical(donor),
                        "cell_type": pd.Categorical(rng.choice([f"type{i}" for i in range(20)], cells))},
                       index=[f"cell{i}" for i in range(cells)])
    var = pd.DataFrame({"feature_name": [f"GENE{i}" for i in range(genes)]},
                       index=[f"ENSG{i:011d}" for i in range(genes)])
    if per_cell > genes:
        raise SystemExit("--genes-per-cell must not exceed --genes")
    nnz = cells * per_cell
    with h5py.File(path, "w") as f:
        f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        write_elem(f, "obs", obs)
        write_elem(f, "var", var)
        raw = f.create_group("raw")
        raw.attrs.update({"encoding-type": "raw", "encoding-version": "0.1.0"})
        write_elem(raw, "var", var)
        groups = [f.create_group("X"), raw.create_group("X")]
        for g in groups:
            g.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": np.array([cells, genes])})
            g.create_dataset("data", shape=(nnz,), dtype=np.float32, chunks=(min(nnz, 1 << 18),))
            g.create_dataset("indices", shape=(nnz,), dtype=np.int32, chunks=(min(nnz, 1 << 18),))
            g.create_dataset("indptr", data=np.arange(cells + 1, dtype=np.int64) * per_cell)
        for start in range(0, cells, chunk):
            n = min(chunk, cells - start)
            stride = genes // per_cell  # one detected gene in each stretch of `stride` genes: sorted, unique
            cols = (np.arange(per_cell) * stride + rng.integers(0, stride, size=(n, per_cell))).astype(np.int32)
            values = rng.integers(1, 20, size=(n, per_cell)).astype(np.float32)
            lo, hi = start * per_cell, (start + n) * per_cell
            for g in groups:
                g["data"][lo:hi] = values.reshape(-1)
                g["indices"][lo:hi] = cols.reshape(-1)
        for key in ("layers", "obsm", "obsp", "uns", "varm", "varp"):
            write_elem(f, key, {})
    keep = np.isin(donor, [d for d in names if d.startswith("TSP") and int(d[3:]) > 16])
    return {"cells": cells, "genes": genes, "nnz": nnz, "kept_cells": int(keep.sum()),
            "file_mib": path.stat().st_size / 2**20}


def _worker(mode: str, path: str, queue) -> None:
    from measure import StepRecorder  # beside this script

    from sclinbench import data

    entry = {"ood_only": True, "ood_donors": [HELD_OUT], "columns": {"donor_id": "donor_id"}}
    rec = StepRecorder()
    t0 = time.perf_counter()
    with rec.step("read"):
        if mode == "whole":
            adata = data.read_raw(path, "h5ad", counts="raw.X", checksum=False)
            keep = data._ood_mask(adata.obs["donor_id"], [HELD_OUT])
            adata = adata[keep].copy()
        else:
            adata = data.read_raw(path, "h5ad", counts="raw.X", checksum=False, rows=data.ood_row_filter(entry))
    X = adata.X
    queue.put({"mode": mode, "peak_mib": rec.steps["read"]["peak_bytes"] / 2**20, "time_s": time.perf_counter() - t0,
               "cells": int(adata.n_obs), "matrix_mib": (X.data.nbytes + X.indices.nbytes) / 2**20,  # stored values + their columns
               "method": rec.method})


def measure(path: Path) -> list[dict]:
    ctx = mp.get_context("spawn")
    out = []
    for mode in ("whole", "rows"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_worker, args=(mode, str(path), queue))
        proc.start()
        out.append(queue.get())
        proc.join()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=129_062, help="cells in the file (default: TS lymph node)")
    parser.add_argument("--genes", type=int, default=60_000, help="genes in the file")
    parser.add_argument("--genes-per-cell", type=int, default=1_000, help="detected genes per cell")
    parser.add_argument("--donors", type=int, default=9, help="donors in the file")
    parser.add_argument("--held-out", type=float, default=72_290 / 129_062, help="share of held-out donors")
    parser.add_argument("--run", type=int, default=1_000, help="cells per donor run")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the file (default: a temporary dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "bench_read.h5ad"
        t0 = time.perf_counter()
        info = write_file(path, args.cells, args.genes, args.genes_per_cell, args.donors, args.held_out, args.run)
        print(f"file: {info['cells']:,} cells x {info['genes']:,} genes, {info['nnz']:,} stored values per "
              f"matrix (X and raw.X), {info['file_mib']:,.0f} MiB, {info['kept_cells']:,} cells of held-out donors "
              f"(written in {time.perf_counter() - t0:.0f} s)")
        rows = measure(path)
    print(f"{'read':<8}{'cells kept':>12}{'raw.X kept (MiB)':>18}{'peak RSS (MiB)':>16}{'time (s)':>10}")
    for r in rows:
        print(f"{r['mode']:<8}{r['cells']:>12,}{r['matrix_mib']:>18,.0f}{r['peak_mib']:>16,.0f}{r['time_s']:>10.1f}")
    print(f"peak memory method: {rows[0]['method']}")
    if args.json:
        args.json.write_text(json.dumps({"file": info, "reads": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
