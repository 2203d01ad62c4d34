"""Reading raw files: :func:`read_raw` reads h5ad, Cell Ranger HDF5 or Matrix Market files; several
files are concatenated, each with its own constant obs columns (e.g. the donor of a 10x run). Cells
of out-of-distribution donors can be kept while reading (:func:`ood_row_filter`); a file that cannot
be read is refused in one line (:func:`unreadable`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from sclinbench.data.counts import check_integer_counts
from sclinbench.data.h5ad import READ_ERRORS, _as_csr, _h5ad_matrices, _read_matrix_rows
from sclinbench.data.obs import UNKNOWN
from sclinbench.errors import SclinbenchError
from sclinbench.workflow.io import sha256_file

log = logging.getLogger(__name__)

FORMATS = ("h5ad", "10x_h5", "mtx")


def ood_row_filter(entry: dict) -> dict | None:
    """The donor filter of a registry entry that can be applied while reading, else ``None``.

    Only ``ood_only`` entries have one: the rows whose donor (obs column ``columns.donor_id``, else
    ``donor_id``) fully matches one of ``ood_donors`` -- the same cells :func:`standardize` keeps.
    Passed to :func:`read_raw` as ``rows=``, it keeps a large file's other donors out of memory.
    """
    if not entry.get("ood_only") or not entry.get("ood_donors"):
        return None
    column = (entry.get("columns") or {}).get("donor_id") or "donor_id"
    return {"column": column, "patterns": [str(p) for p in entry["ood_donors"]]}


def _ood_mask(values: pd.Series, patterns: Sequence[str]) -> np.ndarray:
    """Cells whose donor fully matches one of ``patterns`` (a missing donor reads "unknown")."""
    regex = re.compile("|".join(f"(?:{p})" for p in patterns))
    labels = values.astype(object).where(values.notna(), UNKNOWN).astype(str)
    return labels.map(lambda d: bool(regex.fullmatch(d))).to_numpy(dtype=bool)


def _read_h5ad(path: Path, counts: str, rows: dict | None = None) -> ad.AnnData:
    """Read only what is needed: the counts matrix, obs, the matching var and obsm.

    ``rows`` (:func:`ood_row_filter`) keeps only the cells of the matching donors, selected from
    obs before the matrix is touched: only those rows of the counts matrix are read from disk
    (:func:`_read_csr_rows`), so a large file never sits in memory whole. Without ``rows``, or
    when the file has no such donor column (e.g. the donor comes from the file's ``obs:`` in the
    registry), every row is read and :func:`standardize` filters later.
    ``uns["sclinbench_read"]["n_obs_file"]`` records the number of cells in the file.
    """
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        if f.attrs.get("encoding-type") != "anndata":  # legacy file: let anndata convert it
            adata = _pick_matrix(ad.read_h5ad(path), counts, path)
            n_file = adata.n_obs
            keep = _rows_to_keep(adata.obs, rows, path)
            if keep is not None:
                adata = adata[keep].copy()
            adata.uns["sclinbench_read"] = {"n_obs_file": int(n_file)}
            return adata
        available = _h5ad_matrices(f)
        if counts not in available:
            raise SclinbenchError(
                f"{path} has no '{counts}' matrix (counts: in the registry entry); it has: "
                f"{', '.join(available) or 'none'}."
            )
        obs = read_elem(f["obs"])
        n_file = obs.shape[0]
        keep = _rows_to_keep(obs, rows, path)
        var = read_elem(f["var"])
        where = f"{path} ({counts})"
        if counts == "X":
            X = _read_matrix_rows(f["X"], keep, where)
        elif counts == "raw.X":
            X = _read_matrix_rows(f["raw/X"], keep, where)
            raw_var = read_elem(f["raw/var"])
            extra = [c for c in var.columns if c not in raw_var.columns]
            if extra and var.index.is_unique and raw_var.index.isin(var.index).all():
                raw_var = raw_var.join(var[extra])
            var = raw_var
        else:
            X = _read_matrix_rows(f["layers"][counts.split("/", 1)[1]], keep, where)
        obsm = {}
        if "obsm" in f:
            for key in f["obsm"]:
                value = read_elem(f["obsm"][key])
                if isinstance(value, np.ndarray) and value.shape[0] == n_file:
                    obsm[key] = value if keep is None else value[keep]
        if keep is not None:
            obs = obs.iloc[np.flatnonzero(keep)]
            log.info("%s: kept %d of %d cells while reading (donors matching %s in obs '%s')", path,
                     int(keep.sum()), n_file, rows["patterns"], rows["column"])
    adata = ad.AnnData(X=_as_csr(X), obs=obs, var=var, obsm=obsm)
    adata.uns["sclinbench_read"] = {"n_obs_file": int(n_file)}
    return adata


def _rows_to_keep(obs: pd.DataFrame, rows: dict | None, path: Path) -> np.ndarray | None:
    """Boolean mask of the cells ``rows`` keeps; ``None`` = keep every cell (nothing to filter)."""
    if not rows or rows["column"] not in obs.columns:
        return None
    keep = _ood_mask(obs[rows["column"]], rows["patterns"])
    if not keep.any():
        present = sorted(set(obs[rows["column"]].astype(str)))
        raise SclinbenchError(
            f"{path}: no donor in obs '{rows['column']}' matches ood_donors {list(rows['patterns'])} "
            f"(registry entry); donors are: {', '.join(present[:20])}."
        )
    return None if keep.all() else keep


def _pick_matrix(adata: ad.AnnData, counts: str, path: Path) -> ad.AnnData:
    if counts == "X":
        X, var = adata.X, adata.var
    elif counts == "raw.X" and adata.raw is not None:
        X, var = adata.raw.X, adata.raw.var
    elif counts.startswith("layers/") and counts.split("/", 1)[1] in adata.layers:
        X, var = adata.layers[counts.split("/", 1)[1]], adata.var
    else:
        have = ["X"] + (["raw.X"] if adata.raw is not None else []) + [f"layers/{k}" for k in adata.layers]
        raise SclinbenchError(
            f"{path} has no '{counts}' matrix (counts: in the registry entry); it has: {', '.join(have)}."
        )
    return ad.AnnData(X=_as_csr(X), obs=adata.obs.copy(), var=var.copy(),
                      obsm={k: v for k, v in adata.obsm.items() if isinstance(v, np.ndarray)})


def _read_10x_h5(path: Path, counts: str) -> ad.AnnData:
    import warnings

    import scanpy as sc

    with warnings.catch_warnings():  # duplicated symbols: irrelevant, genes are re-indexed by id
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        adata = sc.read_10x_h5(path, gex_only=True)
    adata.var["gene_symbols"] = adata.var_names.astype(str)
    adata.var_names = pd.Index(adata.var["gene_ids"].astype(str).to_numpy())
    return adata


def _read_mtx(path: Path, counts: str) -> ad.AnnData:
    import scanpy as sc

    if not path.is_dir():
        raise SclinbenchError(
            f"{path} is not a directory; format mtx expects a Cell Ranger Matrix Market directory "
            f"(matrix.mtx.gz, features.tsv.gz, barcodes.tsv.gz)."
        )
    return sc.read_10x_mtx(path, var_names="gene_ids", gex_only=True)


_READERS = {"h5ad": _read_h5ad, "10x_h5": _read_10x_h5, "mtx": _read_mtx}


def _file_keys(paths: list[Path], file_obs: list[dict]) -> list[str]:
    keys = [str(next(iter(extra.values()))) if extra else p.stem for p, extra in zip(paths, file_obs)]
    if len(set(keys)) < len(keys):
        keys = [f"{i}" for i in range(len(keys))]
    return keys


def unreadable(path, fmt: str, exc: Exception, local: bool, entry_where: str) -> SclinbenchError:
    """The one-line error for a file that cannot be read: a user's own file is never deleted; a
    downloaded one can be fetched again."""
    detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    if local:
        return SclinbenchError(
            f"Cannot read {path} as {fmt} ({detail}); it looks truncated or corrupt. It is your own "
            f"file (source: local{entry_where}), so nothing was deleted: check it or export it again, "
            f"or fix format:/counts: in the registry entry."
        )
    return SclinbenchError(
        f"Cannot read {path} as {fmt} ({detail}); it is probably truncated or corrupt: "
        f"delete it and re-run to download it again (or check format: in the registry entry)."
    )


def read_raw(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    fmt: str,
    counts: str = "X",
    file_obs: Sequence[dict] | None = None,
    checksum: bool = True,
    local: bool = False,
    entry_name: str | None = None,
    rows: dict | None = None,
) -> ad.AnnData:
    """Read raw count file(s) into one AnnData with CSR counts in ``X``.

    Parameters
    ----------
    paths
        One path or several; several files are concatenated along cells (genes: outer join,
        missing genes count 0) and cell names are prefixed with a per-file key.
    fmt
        ``h5ad`` (AnnData), ``10x_h5`` (Cell Ranger HDF5, v2 or v3 layout) or ``mtx``
        (Cell Ranger Matrix Market directory). 10x inputs get ``var_names`` = feature ids and
        ``var["gene_symbols"]``; only Gene Expression features are kept.
    counts
        Where the counts are in an h5ad: ``X``, ``raw.X`` or ``layers/<name>`` (only the
        matrix asked for is read, with ``raw.var`` for ``raw.X``).
    file_obs
        One dict per file of constant obs columns, e.g. ``[{"donor_id": "C144"}, ...]``; the
        first value also prefixes the cell names when there are several files.
    checksum
        Record each file's sha256 (one more pass over the file) for provenance.
    local
        The files are the user's own (``source: local``): messages never advise deleting them.
    entry_name
        The registry entry, named in messages.

    Before a file is read, its content is sniffed (:mod:`sclinbench.data.formats`): a file of another
    format than ``fmt`` is refused with the format it is and what to set.
    rows
        h5ad only: keep only the cells of these donors while reading (:func:`ood_row_filter`),
        so the other rows of the counts matrix are never loaded.

    Returns
    -------
    AnnData; ``uns["sclinbench_raw"]`` records the files, their sha256, format, counts key and
    ``n_obs_file`` (cells in the files, before ``rows``).

    Raises
    ------
    SclinbenchError
        Missing, truncated or corrupt file (naming it), a file of another format, a file with
        no cells or no genes, missing counts matrix, non-integer counts.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise SclinbenchError("read_raw: no input files given; list them under files: in the registry entry.")
    if fmt not in _READERS:
        raise SclinbenchError(f"unknown format '{fmt}' (format: in the registry entry); use one of {', '.join(FORMATS)}.")
    if fmt != "h5ad" and counts != "X":
        raise SclinbenchError(f"counts: {counts} applies to h5ad files only; {fmt} files hold their counts in X.")
    file_obs = [dict(d or {}) for d in (file_obs or [{}] * len(paths))]
    if len(file_obs) != len(paths):
        raise SclinbenchError(f"read_raw: {len(file_obs)} obs dicts for {len(paths)} files.")

    from sclinbench.data.formats import format_problem

    entry_where = f" of registry entry '{entry_name}'" if entry_name else ""
    parts = []
    n_obs_file = 0
    for path, extra in zip(paths, file_obs):
        if not path.exists():
            if local:
                raise SclinbenchError(f"{path} does not exist; fix its path under files:{entry_where} and re-run.")
            raise SclinbenchError(f"{path} does not exist; download it (or fix its path in the registry entry) and re-run.")
        problem = format_problem(path, fmt, entry_name, local=local)
        if problem:
            raise SclinbenchError(problem)
        try:
            adata = _READERS[fmt](path, counts, **({"rows": rows} if fmt == "h5ad" else {}))
        except SclinbenchError:
            raise
        except READ_ERRORS as exc:
            raise unreadable(path, fmt, exc, local, entry_where) from exc
        if adata.n_obs == 0 or adata.n_vars == 0:
            what = "cells" if adata.n_obs == 0 else "genes"
            raise SclinbenchError(
                f"{path} holds 0 {what} ({adata.n_obs} cells x {adata.n_vars} genes, read as {fmt}, "
                f"counts: {counts}){entry_where}: the file itself is empty, so no threshold can help; "
                f"check that it is the right file (e.g. a Cell Ranger run that found no cells)."
            )
        adata.X = _as_csr(adata.X)
        check_integer_counts(adata.X, where=f"{path} ({counts})")
        for key, value in extra.items():
            adata.obs[key] = pd.Categorical([str(value)] * adata.n_obs)
        log.info("read %s: %d cells x %d genes (%s, %s)", path, adata.n_obs, adata.n_vars, fmt, counts)
        n_obs_file += int(adata.uns.pop("sclinbench_read", {}).get("n_obs_file", adata.n_obs))
        parts.append(adata)

    if len(parts) == 1:
        adata = parts[0]
    else:
        for part, path in zip(parts, paths):
            if not part.var_names.is_unique:
                raise SclinbenchError(f"{path}: gene names are not unique, so files cannot be aligned for concatenation.")
        for part, key in zip(parts, _file_keys(paths, file_obs)):
            part.obs_names = [f"{key}_{name}" for name in part.obs_names]
        adata = ad.concat(parts, join="outer", merge="same", fill_value=0)
        adata.X = _as_csr(adata.X)
    if not adata.obs_names.is_unique:
        log.warning("cell names are not unique; making them unique")
        adata.obs_names_make_unique()
    adata.uns["sclinbench_raw"] = {
        "files": ", ".join(str(p) for p in paths),
        "sha256": ", ".join(sha256_file(p) for p in paths) if checksum else "",
        "format": fmt,
        "counts": counts,
        "n_obs_file": n_obs_file,
    }
    return adata
