"""Time the products and the randomized SVD of the paper pipeline's implicit z-scored rankz matrix.

    NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=1 python benchmarks/bench_zscore_svd.py --cells 25000 \
        --cache /tmp/zsvd --save /tmp/zsvd/new.npz [--compare /tmp/zsvd/old.npz]

``paper_rankz_anova_pca_logreg`` (config/paper.yaml) runs PCA(220, whiten, randomized) on the
z-score (no clipping) of the rankz of the training cells: a :class:`ColumnScaled` over an
:class:`OffsetCSR`, never densified. Its randomized SVD is 16 products of the centred operator
(``_centered_operator``) with dense matrices of 230 columns; this script builds that operator
through the package's own functions on synthetic counts (``make_dataset.py``'s generator: ~2,400
stored counts per cell over 20,000 genes, genes without counts dropped), then times

- one ``matmat`` (cells x genes times genes x 230) and one ``rmatmat`` (its transpose product),
  ``--repeats`` times each after a warm-up call (min and median of wall and CPU seconds: CPU is the sum over threads);
- the whole ``PCATransformer.fit`` the pipeline runs (once).

``--save`` writes the products' and the PCA's outputs to an .npz; ``--compare`` reads one written
by another run (e.g. of the code before a change: ``PYTHONPATH=<old checkout>/src``) and prints the
largest absolute and relative difference of every array and whether they are bit-identical.
``--cache DIR`` keeps the rankz matrix between runs (the counts take a while to draw).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_dataset / synthetic_cells beside this script


def rankz_matrix(n_cells: int, n_genes: int, seed: int, cache: str | None):
    """The rankz OffsetCSR of ``n_cells`` synthetic cells (genes without counts dropped)."""
    from sclinbench.represent import OffsetCSR, rankz

    if cache:
        path = Path(cache) / f"rankz_{n_cells}_{n_genes}_{seed}.npz"
        if path.exists():
            z = np.load(path)
            S = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            return OffsetCSR(S, z["offset"])
    from make_dataset import DEFAULT_UMIS, _block_cells
    from synthetic_cells import SyntheticSpec

    spec = SyntheticSpec(n_cells=n_cells, n_genes=n_genes, umis_per_cell=DEFAULT_UMIS, chunk_cells=20_000, seed=seed)
    X = sp.vstack([_block_cells(spec, b)[0] for b in range(spec.n_blocks)], format="csr")
    X = X[:, np.flatnonzero(X.getnnz(axis=0) > 0)]
    R = rankz(X)
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
        np.savez(path, data=R.S.data, indices=R.S.indices, indptr=R.S.indptr, shape=np.array(R.shape),
                 offset=R.offset)
    return R


def timed(f, repeats: int):
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = f()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return out, walls, cpus


def fmt(walls, cpus) -> str:
    return (f"wall min {min(walls):.2f} s, median {np.median(walls):.2f} s; "
            f"CPU min {min(cpus):.2f} s, median {np.median(cpus):.2f} s  (n = {len(walls)})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=25_000, help="training cells (103200: Tabula Sapiens lymph node)")
    ap.add_argument("--genes", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=230, help="columns of the dense operand (220 components + 10)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="directory to keep the rankz matrix in")
    ap.add_argument("--no-svd", action="store_true", help="time the two products only")
    ap.add_argument("--save", default=None, help="write the outputs to this .npz")
    ap.add_argument("--compare", default=None, help=".npz of another run to compare the outputs with")
    args = ap.parse_args(argv)

    import numba

    import sclinbench
    from sclinbench.represent.pca import PCATransformer, _centered_operator
    from sclinbench.represent.scale import ScaleClip

    print(f"sclinbench from {Path(sclinbench.__file__).parent}; numba threads {numba.get_num_threads()}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    t = time.perf_counter()
    R = rankz_matrix(args.cells, args.genes, args.seed, args.cache)
    n, g = R.shape
    print(f"rankz {n:,} x {g:,}, {R.nnz:,} stored values ({R.nnz / n:,.0f} per cell), "
          f"{R.S.data.dtype} data, {time.perf_counter() - t:.1f} s", flush=True)
    Z = ScaleClip(max_value=None, sparse_shift=True).fit(R).transform(R)  # the ColumnScaled the pipeline builds
    mean, _ = Z.column_mean_var(ddof=1)
    t = time.perf_counter()
    op = _centered_operator(Z, mean)
    print(f"operator built in {time.perf_counter() - t:.2f} s", flush=True)
    V = np.random.RandomState(args.seed).normal(size=(g, args.k))
    op.rmatmat(op.matmat(V[:, :2]))  # compile (or load) the kernels before timing
    AV, walls, cpus = timed(lambda: op.matmat(V), args.repeats)
    print(f"matmat  ({n:,} x {g:,}) @ ({g:,} x {args.k}): {fmt(walls, cpus)}", flush=True)
    ATU, walls, cpus = timed(lambda: op.rmatmat(AV), args.repeats)
    print(f"rmatmat ({g:,} x {n:,}) @ ({n:,} x {args.k}): {fmt(walls, cpus)}", flush=True)
    out = {"matmat": AV, "rmatmat": ATU}
    if not args.no_svd:
        pca = PCATransformer(n_components=220, whiten=True, svd_solver="randomized", random_state=0)
        _, walls, cpus = timed(lambda: pca.fit(Z), 1)
        print(f"PCATransformer(220, whiten, randomized).fit: {fmt(walls, cpus)}", flush=True)
        out.update(components=pca.components_, singular_values=pca.singular_values_,
                   scores=pca.transform(Z[np.arange(min(n, 2000))]))
    if args.save:
        np.savez(args.save, **out)
    if args.compare:
        ref = np.load(args.compare)
        for name, a in out.items():
            if name not in ref:
                continue
            b = ref[name]
            diff = np.abs(a - b).max()
            rel = diff / max(np.abs(b).max(), np.finfo(float).tiny)
            print(f"vs {args.compare}: {name} {'bit-identical' if np.array_equal(a, b) else 'DIFFERENT'}"
                  f" (max |diff| {diff:.3g}, relative to max |ref| {rel:.3g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
