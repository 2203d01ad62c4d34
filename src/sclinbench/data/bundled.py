"""Datasets shipped with an installed package (scanpy's pbmc68k_reduced): :func:`load_bundled`."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from sclinbench.data.counts import recover_counts_from_lognorm
from sclinbench.errors import SclinbenchError
from sclinbench.workflow.io import sha256_file

BUNDLED = ("pbmc68k_reduced",)


def load_bundled(name: str) -> ad.AnnData:
    """A dataset shipped with an installed package, with integer counts in ``X``.

    Parameters
    ----------
    name
        ``"pbmc68k_reduced"``: scanpy's 700 PBMCs x 765 genes. Its ``raw.X`` is
        ``log1p(counts / n_counts * 1e4)``; the counts are recovered as
        ``expm1(raw.X) * n_counts / 1e4`` (every value must be within 0.1 of an integer).

    Returns
    -------
    AnnData with CSR int32 counts in ``X``, the source ``obs`` (``bulk_labels``, ``n_counts``,
    ...), gene symbols as ``var_names`` and the source embeddings in ``obsm``.
    """
    if name not in BUNDLED:
        raise SclinbenchError(
            f"unknown bundled dataset '{name}' (key bundled: in the registry); available: "
            f"{', '.join(BUNDLED)}."
        )
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    counts = recover_counts_from_lognorm(
        src.raw.X, src.obs["n_counts"].to_numpy(), scale=1e4, tol=0.1,
        where="scanpy pbmc68k_reduced raw.X",
    )
    adata = ad.AnnData(
        X=counts,
        obs=src.obs.copy(),
        var=pd.DataFrame(index=src.raw.var_names.astype(str)),
        obsm={k: np.asarray(v) for k, v in src.obsm.items()},
    )
    path = Path(sc.datasets.__file__).parent / "10x_pbmc68k_reduced.h5ad"
    adata.uns["sclinbench_raw"] = {
        "files": str(path),
        "sha256": sha256_file(path) if path.exists() else "",
        "format": "bundled",
        "counts": "expm1(raw.X) * obs.n_counts / 1e4",
    }
    return adata
