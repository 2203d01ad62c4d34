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


def _read_10x(source: Path) -> dict:
    """Matrix (barcodes x features CSR), barcodes, feature columns and attributes of a 10x HDF5."""
    with h5py.File(source, "r") as f:
        m = f["matrix"]
        n_features, n_cells = (int(v) for v in m["shape"][:])
        # 10x stores features x barcodes in CSC, i.e. barcodes x features in CSR.
        X = sp.csr_matrix((m["data"][:], m["indices"][:], m["indptr"][:]), shape=(n_cells, n_features))
        return {"X": X, "barcodes": m["barcodes"][:],
                "features": {k: m["features"][k][:] for k in ("feature_type", "genome", "id", "name")},
                "tag_keys": m["features"]["_all_tag_keys"][:], "attrs": dict(f.attrs)}


def _viral(tenx: dict) -> tuple[int, np.ndarray, np.ndarray]:
    """Column of nCoV, detected genes per barcode, viral UMIs per barcode."""
    virus = int(np.flatnonzero(tenx["features"]["id"].astype(str) == "nCoV")[0])
    X = tenx["X"]
    return virus, np.diff(X.indptr), np.asarray(X[:, virus].todense()).ravel()


def _pick_cells(rng, detected, viral, min_genes, n_infected, n_uninfected, n_low_quality) -> list[np.ndarray]:
    good = detected >= min_genes
    pools = [np.flatnonzero(good & (viral > 0)), np.flatnonzero(good & (viral == 0)),
             np.flatnonzero(~good & (detected > 0))]
    return [rng.choice(pool, min(n, len(pool)), replace=False)
            for pool, n in zip(pools, (n_infected, n_uninfected, n_low_quality))]


def _write_10x(output: Path, tenx: dict, cells: np.ndarray, genes: np.ndarray) -> None:
    """Write barcodes ``cells`` x features ``genes`` of ``tenx`` in the Cell Ranger v3 layout."""
    sub = tenx["X"][cells][:, genes].tocsr()
    sub.sort_indices()
    output.parent.mkdir(parents=True, exist_ok=True)
    packed = dict(compression="gzip", compression_opts=9, shuffle=True)
    with h5py.File(output, "w") as f:
        for key, value in tenx["attrs"].items():
            f.attrs[key] = value
        m = f.create_group("matrix")
        m.create_dataset("barcodes", data=tenx["barcodes"][cells], **packed)
        m.create_dataset("data", data=sub.data.astype(np.int32), **packed)
        m.create_dataset("indices", data=sub.indices.astype(np.int64), **packed)
        m.create_dataset("indptr", data=sub.indptr.astype(np.int64), **packed)
        m.create_dataset("shape", data=np.array([len(genes), len(cells)], dtype=np.int32))
        g = m.create_group("features")
        g.create_dataset("_all_tag_keys", data=tenx["tag_keys"])
        for key, value in tenx["features"].items():
            g.create_dataset(key, data=value[genes], **packed)


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
    tenx = _read_10x(source)
    X, n_features = tenx["X"], tenx["X"].shape[1]
    virus, detected, viral = _viral(tenx)
    cells = np.sort(np.concatenate(_pick_cells(rng, detected, viral, min_genes, n_infected, n_uninfected,
                                               n_low_quality)))
    sub = X[cells]
    in_cells = np.bincount(sub.indices, minlength=n_features)
    in_cells[virus] = -1  # chosen separately
    top = np.argsort(-in_cells, kind="stable")[: n_genes - 1]
    genes = np.sort(np.concatenate([top, [virus]]))
    _write_10x(output, tenx, cells, genes)

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


LIAO_PATIENTS = {
    "C144": "data/liao2020-covid-balf/GSM4339772_C144_filtered_feature_bc_matrix.h5",
    "C146": LIAO_SOURCE,
    "C149": "data/liao2020-covid-balf/GSM4475052_C149_filtered_feature_bc_matrix.h5",
}


def make_liao2020_patients(shared: Path = DEFAULT_SHARED, outdir: Path = HERE / "liao2020" / "patients",
                           n_infected: int = 60, n_uninfected: int = 120, n_genes: int = 1000,
                           min_genes: int = 200, seed: int = 0) -> list[dict]:
    """Three small 10x HDF5 files, one per patient, with the SAME features (for a disease task with
    patients held out): per patient up to ``n_infected`` barcodes with nCoV reads (C144 has none)
    and ``n_uninfected`` without, all with >= ``min_genes`` genes; features = ``nCoV`` + the
    ``n_genes - 1`` genes detected in most chosen barcodes over all three patients."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for patient, rel in LIAO_PATIENTS.items():
        tenx = _read_10x(Path(shared) / rel)
        virus, detected, viral = _viral(tenx)
        cells = np.sort(np.concatenate(_pick_cells(rng, detected, viral, min_genes, n_infected, n_uninfected, 0)))
        chosen[patient] = (tenx, cells, virus)
    ids = [tenx["features"]["id"].astype(str) for tenx, _, _ in chosen.values()]
    if not all((i == ids[0]).all() for i in ids):
        raise SystemExit("the three Liao files do not share one feature list")
    in_cells = sum(np.bincount(t["X"][c].indices, minlength=len(ids[0])) for t, c, _ in chosen.values())
    virus = chosen["C146"][2]
    in_cells[virus] = -1
    genes = np.sort(np.concatenate([np.argsort(-in_cells, kind="stable")[: n_genes - 1], [virus]]))
    out = []
    for patient, (tenx, cells, _) in chosen.items():
        output = Path(outdir) / f"{patient}_subset_filtered_feature_bc_matrix.h5"
        _write_10x(output, tenx, cells, genes)
        viral = np.asarray(tenx["X"][cells][:, virus].todense()).ravel()
        out.append({"patient": patient, "source": str(Path(shared) / LIAO_PATIENTS[patient]),
                    "source_sha256": _sha256(Path(shared) / LIAO_PATIENTS[patient]),
                    "output": str(output), "output_sha256": _sha256(output), "bytes": output.stat().st_size,
                    "cells": len(cells), "genes": len(genes), "infected": int((viral > 0).sum())})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the ../shared directory")
    args = parser.parse_args()
    for key, value in make_liao2020_c146(args.shared).items():
        print(f"{key}\t{value}")
    for summary in make_liao2020_patients(args.shared):
        print("\t".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
