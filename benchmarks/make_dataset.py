"""Write a synthetic single-cell count matrix of N cells as a local h5ad, streamed block by block.

    python benchmarks/make_dataset.py --cells 200000 --out /work/scale/synthetic_200k.h5ad

The cells come from the package's own generator (:class:`synthetic_cells.SyntheticSpec`,
:func:`synthetic_cells.generate_block`): 15 cell types (5 lineages x 3 subtypes) with distinct
expression programs, log-normal library sizes, shared per-cell programs and ambient RNA, UMIs drawn
from a multinomial. The defaults give ~20,000 genes and ~2,400 detected genes per cell (median
library ~4,100 UMIs; the generator's own default of 3,000 UMIs gives ~1,900 detected genes).

The file is what a user brings to the workflow (``source: local``): raw integer counts in ``X``
as CSR float32 (int32 indices; int32 indptr up to 2**31 - 1 stored values, as anndata writes
such a matrix, int64 above), obs ``cell_type`` and ``donor_id`` (8 donors), var
indexed by gene name. It is readable by ``anndata.read_h5ad`` and by the workflow's
``source: local`` entry; next to it the script writes ``<stem>.registry.yaml``, a registry with one
entry (``scale``) pointing at the file, for ``--config registry=...`` (benchmarks/scale_config.yaml).

Memory: the matrix is never held in memory. Each block of ``--chunk-cells`` cells is generated,
appended to the on-disk CSR (``anndata.io.write_elem`` for the first block,
``anndata.io.sparse_dataset(...).append`` for the others) and dropped; only the labels (a few
bytes per cell) are kept until obs is written at the end. 1M cells x ~2,400 stored values are
~2.4e9 values, ~19 GB as float32 data + int32 indices: more than the nnz an int32 indptr can
address, hence the blocks are appended with an int64 indptr (rewritten as int32 at the end
when the total fits).

Uncompressed on purpose: gzip on 1M cells makes the write several times slower (and every later
full read pays the decompression again); the files are scratch data, not for git.

Deterministic: cells of block ``b`` depend only on ``(seed, b)`` and the spec, so the first 200k
cells of the 1M-cell file equal the 200k-cell file (same seed and ``--chunk-cells``). Donors are
drawn per block from their own seeded stream, uniformly over the donors, independent of the cell
type (no donor effect on expression: this is a scale benchmark, not a batch-effect model).

Prints the size on disk, nnz, nnz per cell, time and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # the package, also when not installed
sys.path.insert(0, str(Path(__file__).resolve().parent))  # synthetic_cells beside this script

from synthetic_cells import SyntheticSpec, generate_block  # noqa: E402

from sclinbench.workflow.io import atomic_path  # noqa: E402

#: Median UMIs per cell that give ~2,400 detected genes per cell over 20,000 genes.
DEFAULT_UMIS = 4_100.0

#: Name of the registry entry written next to the file.
ENTRY_NAME = "scale"


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def _donor_codes(seed: int, block: int, n: int, n_donors: int) -> np.ndarray:
    rng = np.random.default_rng([seed, block, 1_000_003])  # not one of the generator's streams (0, 1)
    return rng.integers(0, n_donors, size=n)


def _block_cells(spec: SyntheticSpec, block: int):
    """Counts (CSR float32, int32 indices) and labels of all cells of one block: its training
    part, then its test part (the generator's split; both drawn from the same profiles)."""
    import scipy.sparse as sp

    parts = [generate_block(spec, block, role) for role in ("train", "test")]
    X = sp.vstack([p[0] for p in parts], format="csr")
    y = np.concatenate([p[1] for p in parts])
    X = sp.csr_matrix((X.data.astype(np.float32), X.indices.astype(np.int32, copy=False), X.indptr),
                      shape=X.shape)
    X.has_sorted_indices = True
    return X, y


def registry_text(path: Path, spec: SyntheticSpec, n_donors: int) -> str:
    return (
        f"# Written by benchmarks/make_dataset.py: one local dataset for benchmarks/scale_config.yaml.\n"
        f"# Use it with  --config registry={path.with_suffix('.registry.yaml')}\n"
        f"{ENTRY_NAME}:\n"
        f"  description: Synthetic counts, {spec.n_cells:,} cells x {spec.n_genes:,} genes, {spec.n_types} cell "
        f"types, {n_donors} donors (benchmarks/make_dataset.py, seed {spec.seed})\n"
        f"  source: local\n"
        f"  format: h5ad\n"
        f"  files: [{{path: {path}}}]\n"
        f"  organism: Homo sapiens\n"
        f"  gene_id: symbol\n"
        f"  columns: {{cell_type: cell_type, donor_id: donor_id}}\n"
    )


def make_dataset(out: str | os.PathLike, n_cells: int, *, seed: int = 0, n_genes: int = 20_000,
                 umis_per_cell: float = DEFAULT_UMIS, n_donors: int = 8, chunk_cells: int = 20_000,
                 progress=print) -> dict:
    """Write the h5ad (atomically) and its registry snippet; return what was written."""
    import anndata as ad
    import h5py
    import pandas as pd
    from anndata.io import sparse_dataset, write_elem

    out = Path(out).resolve()
    spec = SyntheticSpec(n_cells=n_cells, n_genes=n_genes, umis_per_cell=umis_per_cell,
                         chunk_cells=chunk_cells, seed=seed)
    t0 = time.perf_counter()
    labels, donors, nnz = [], [], 0
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            X_disk = None
            for b in range(spec.n_blocks):
                X, y = _block_cells(spec, b)
                if X_disk is None:
                    # int64 indptr from the start: 1M cells hold more values than int32 addresses
                    write_elem(f, "X", X, dataset_kwargs={"indptr_dtype": np.int64})
                    X_disk = sparse_dataset(f["X"])
                else:
                    X_disk.append(X)
                labels.append(y)
                donors.append(_donor_codes(seed, b, X.shape[0], n_donors))
                nnz += X.nnz
                done = sum(len(v) for v in labels)
                if progress and (b % 5 == 4 or b == spec.n_blocks - 1):
                    dt = time.perf_counter() - t0
                    progress(f"  {done:,}/{n_cells:,} cells, {nnz / done:,.0f} stored values per cell, "
                             f"{dt:,.0f} s, {done / dt:,.0f} cells/s, peak RSS {_peak_rss_gib():.2f} GiB")
                del X, y
            if nnz < np.iinfo(np.int32).max:
                # what anndata writes for a matrix of this size: int32 indptr (scipy would otherwise
                # carry int64 indptr beside int32 indices and upcast the indices in some operations)
                indptr = f["X/indptr"][:]
                del f["X/indptr"]
                f["X"].create_dataset("indptr", data=indptr.astype(np.int32), maxshape=(None,))
            y = np.concatenate(labels)
            donor_names = np.array([f"donor{d}" for d in range(n_donors)])
            obs = pd.DataFrame(
                {"cell_type": pd.Categorical(y, categories=np.sort(np.unique(y))),
                 "donor_id": pd.Categorical(donor_names[np.concatenate(donors)], categories=donor_names)},
                index=pd.Index([f"cell{i:07d}" for i in range(y.size)]),
            )
            var = pd.DataFrame(index=pd.Index([f"gene{g:05d}" for g in range(n_genes)]))
            write_elem(f, "obs", obs)
            write_elem(f, "var", var)
            uns = {"synthetic": {k: v for k, v in dataclasses.asdict(spec).items()},
                   "synthetic_generator": "synthetic_cells.generate_block via benchmarks/make_dataset.py",
                   "synthetic_donors": n_donors}
            write_elem(f, "uns", uns)
            for key in ("obsm", "varm", "layers", "obsp", "varp"):
                write_elem(f, key, {})
            f.attrs["encoding-type"] = "anndata"
            f.attrs["encoding-version"] = "0.1.0"
        # readable as AnnData (backed: nothing is loaded) before it is renamed into place
        check = ad.read_h5ad(tmp, backed="r")
        assert check.shape == (n_cells, n_genes), check.shape
        assert list(check.obs.columns) == ["cell_type", "donor_id"]
        check.file.close()
    reg = out.with_suffix(".registry.yaml")
    with atomic_path(reg) as tmp:
        tmp.write_text(registry_text(out, spec, n_donors))
    wall = time.perf_counter() - t0
    return {"path": str(out), "registry": str(reg), "n_cells": n_cells, "n_genes": n_genes,
            "nnz": nnz, "nnz_per_cell": nnz / n_cells, "bytes": out.stat().st_size, "wall_s": wall,
            "peak_rss_gib": _peak_rss_gib(), "n_types": int(obs["cell_type"].nunique()),
            "n_donors": int(obs["donor_id"].nunique())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, required=True, help="cells (e.g. 10000, 100000, 200000, 1000000)")
    p.add_argument("--out", required=True, help="the h5ad to write (keep large files outside git)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--umis", type=float, default=DEFAULT_UMIS,
                   help=f"median UMIs per cell (default {DEFAULT_UMIS:.0f}: ~2,400 detected genes)")
    p.add_argument("--donors", type=int, default=8)
    p.add_argument("--chunk-cells", type=int, default=20_000, help="cells generated and appended at a time")
    args = p.parse_args(argv)
    if args.cells < 100 or args.donors < 1:
        p.error("--cells must be >= 100 and --donors >= 1")
    est = args.cells * 2_400 * 8 / 1e9
    free = os.statvfs(Path(args.out).resolve().parent).f_bavail * os.statvfs(Path(args.out).resolve().parent).f_frsize
    print(f"make_dataset: {args.cells:,} cells x {args.genes:,} genes -> {args.out} "
          f"(~{est:.1f} GB uncompressed; {free / 1e9:.0f} GB free there)")
    if free < 1.1 * est * 1e9:
        print(f"make_dataset: not enough disk for ~{est:.1f} GB at {Path(args.out).parent}", file=sys.stderr)
        return 2
    r = make_dataset(args.out, args.cells, seed=args.seed, n_genes=args.genes, umis_per_cell=args.umis,
                     n_donors=args.donors, chunk_cells=args.chunk_cells)
    print(f"wrote {r['path']}: {r['n_cells']:,} cells x {r['n_genes']:,} genes, {r['n_types']} cell types, "
          f"{r['n_donors']} donors")
    print(f"  size {r['bytes'] / 2**30:.2f} GiB ({r['bytes']:,} bytes, uncompressed), nnz {r['nnz']:,} "
          f"({r['nnz_per_cell']:,.0f} per cell)")
    print(f"  time {r['wall_s']:,.1f} s ({r['n_cells'] / r['wall_s']:,.0f} cells/s), "
          f"peak RSS {r['peak_rss_gib']:.2f} GiB, load average {os.getloadavg()[0]:.2f}")
    print(f"  registry snippet {r['registry']}  (--config registry={r['registry']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
