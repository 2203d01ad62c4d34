"""Derive the committed test fixtures of sclinbench.data from ../shared (one function each).

    .venv/bin/python tests/data/make_fixtures.py [--shared /work/shared]

The workflow and the tests never read ../shared; only this script does, and its outputs are
committed with their provenance (tests/data/*/PROVENANCE.md).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
DEFAULT_SHARED = HERE.parents[2] / "shared"  # <project>/../shared

LIAO_SOURCE = "data/liao2020-covid-balf/GSM4339774_C146_filtered_feature_bc_matrix.h5"
LIAO_OUTPUT = HERE / "liao2020" / "C146_subset_filtered_feature_bc_matrix.h5"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_liao2020_c146(
    shared: Path = DEFAULT_SHARED,
    output: Path = LIAO_OUTPUT,
    n_infected: int = 100,
    n_uninfected: int = 200,
    n_low_quality: int = 10,
    n_genes: int = 2000,
    min_genes: int = 200,
    seed: int = 0,
) -> dict:
    """A small Cell Ranger v3 HDF5 subset of patient C146 (Liao et al. 2020).

    Cells: ``n_infected`` cells with nCoV counts > 0 and ``n_uninfected`` without, both drawn
    among cells with >= ``min_genes`` detected genes, plus ``n_low_quality`` cells below that
    (so a min_genes filter has something to remove). Genes: the feature ``nCoV`` plus the
    ``n_genes - 1`` genes detected in most of the chosen cells, in the file's original order.
    Values are the original integer UMI counts; the layout, dtypes and root attributes follow
    the source file (written with h5py, gzip-compressed).
    """
    source = Path(shared) / LIAO_SOURCE
    rng = np.random.default_rng(seed)
    with h5py.File(source, "r") as f:
        m = f["matrix"]
        n_features, n_cells = (int(v) for v in m["shape"][:])
        # 10x stores features x barcodes in CSC, i.e. barcodes x features in CSR.
        X = sp.csr_matrix((m["data"][:], m["indices"][:], m["indptr"][:]), shape=(n_cells, n_features))
        barcodes = m["barcodes"][:]
        features = {k: m["features"][k][:] for k in ("feature_type", "genome", "id", "name")}
        tag_keys = m["features"]["_all_tag_keys"][:]
        attrs = dict(f.attrs)

    ids = features["id"].astype(str)
    virus = int(np.flatnonzero(ids == "nCoV")[0])
    detected = np.diff(X.indptr)
    viral = np.asarray(X[:, virus].todense()).ravel()
    good = detected >= min_genes
    infected = np.flatnonzero(good & (viral > 0))
    uninfected = np.flatnonzero(good & (viral == 0))
    low = np.flatnonzero(~good & (detected > 0))
    cells = np.sort(np.concatenate([
        rng.choice(infected, n_infected, replace=False),
        rng.choice(uninfected, n_uninfected, replace=False),
        rng.choice(low, n_low_quality, replace=False),
    ]))
    sub = X[cells]
    in_cells = np.bincount(sub.indices, minlength=n_features)
    in_cells[virus] = -1  # chosen separately
    top = np.argsort(-in_cells, kind="stable")[: n_genes - 1]
    genes = np.sort(np.concatenate([top, [virus]]))
    sub = sub[:, genes].tocsr()
    sub.sort_indices()

    output.parent.mkdir(parents=True, exist_ok=True)
    packed = dict(compression="gzip", compression_opts=9, shuffle=True)
    with h5py.File(output, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        m = f.create_group("matrix")
        m.create_dataset("barcodes", data=barcodes[cells], **packed)
        m.create_dataset("data", data=sub.data.astype(np.int32), **packed)
        m.create_dataset("indices", data=sub.indices.astype(np.int64), **packed)
        m.create_dataset("indptr", data=sub.indptr.astype(np.int64), **packed)
        m.create_dataset("shape", data=np.array([len(genes), len(cells)], dtype=np.int32))
        g = m.create_group("features")
        g.create_dataset("_all_tag_keys", data=tag_keys)
        for key, value in features.items():
            g.create_dataset(key, data=value[genes], **packed)

    summary = {
        "source": str(source),
        "source_sha256": _sha256(source),
        "output": str(output),
        "output_sha256": _sha256(output),
        "bytes": output.stat().st_size,
        "cells": len(cells),
        "genes": len(genes),
        "infected": int((viral[cells] > 0).sum()),
        "low_quality": int((detected[cells] < min_genes).sum()),
        "nCoV_total": int(viral[cells].sum()),
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the ../shared directory")
    args = parser.parse_args()
    for key, value in make_liao2020_c146(args.shared).items():
        print(f"{key}\t{value}")


if __name__ == "__main__":
    main()
