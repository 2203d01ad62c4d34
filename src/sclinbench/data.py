"""Read, check and standardize single-cell datasets into one AnnData contract.

The standardized AnnData (docs/DESIGN.md) has raw integer counts in ``X`` (CSR, float32),
``obs`` columns ``cell_type`` (when labelled), ``donor_id``, ``condition`` (when known) and
``organism`` next to the source's own columns, ``var`` indexed by a stable gene id with
``gene_id`` and ``gene_symbol`` columns, and provenance in ``uns["sclinbench"]``.

- :func:`load_bundled` — datasets shipped with an installed package (scanpy's pbmc68k_reduced).
- :func:`read_raw` — h5ad, Cell Ranger HDF5 or Matrix Market files; several files are
  concatenated, each with its own constant obs columns (e.g. the donor of a 10x run).
- :func:`check_integer_counts` — refuses normalized or log-transformed matrices.
- :func:`recover_counts_from_lognorm` — undoes ``log1p(counts / total * scale)`` exactly.
- :func:`standardize` — one registry entry (config/datasets.yaml) applied to an AnnData.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError
from sclinbench.io import sha256_file

log = logging.getLogger(__name__)

BUNDLED = ("pbmc68k_reduced",)
FORMATS = ("h5ad", "10x_h5", "mtx")
STANDARD_OBS = ("cell_type", "donor_id", "condition", "organism")
QC_KEYS = ("min_genes", "min_counts", "min_cells", "min_cells_per_label", "min_gene_counts")
UNKNOWN = "unknown"
#: obs columns holding labels a task predicts: a cell without one is unlabelled (NaN), never a class
LABEL_COLUMNS = ("cell_type", "condition")
#: label values that mean "no label" (case-insensitive; registry key ``unlabelled:`` replaces them);
#: NaN and empty strings are always unlabelled
DEFAULT_UNLABELLED = ("unknown", "unassigned", "nan", "na", "n/a", "none")

_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*G\d+)\.\d+(?:_PAR_Y)?$")
_CHUNK = 10_000_000  # values checked at a time (bounds temporary memory)
_READ_BLOCK = 1 << 22  # stored values read from disk at a time when reading a row subset


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _stored_values(X) -> np.ndarray:
    """The explicitly stored values of a sparse or dense matrix (a view where possible)."""
    if sp.issparse(X):
        return X.data
    return np.asarray(X).reshape(-1)


def check_integer_counts(X, where: str) -> None:
    """Refuse anything but non-negative integer counts.

    Parameters
    ----------
    X
        Sparse or dense cells x genes matrix.
    where
        Names the file and matrix in the error, e.g. ``"data/x.h5ad (raw.X)"``.

    Raises
    ------
    SclinbenchError
        When a value is negative, not finite or not an integer (normalized or log data).
    """
    values = _stored_values(X)
    if np.issubdtype(values.dtype, np.integer):
        if values.size and values.min() < 0:
            raise SclinbenchError(
                f"{where} holds negative values, so it is not raw counts; point `counts:` in the "
                f"registry entry at the raw counts (e.g. raw.X or layers/counts)."
            )
        return
    if not np.issubdtype(values.dtype, np.floating):
        raise SclinbenchError(f"{where} has non-numeric dtype {values.dtype}; expected raw counts.")
    for start in range(0, values.size, _CHUNK):
        block = values[start:start + _CHUNK]
        if not np.all(np.isfinite(block)):
            raise SclinbenchError(
                f"{where} holds NaN or infinite values, so it is not raw counts; point `counts:` "
                f"in the registry entry at the raw counts (e.g. raw.X or layers/counts)."
            )
        if block.size and block.min() < 0:
            raise SclinbenchError(
                f"{where} holds negative values (e.g. {block.min():.3g}): it looks scaled or "
                f"centred, not raw counts; point `counts:` in the registry entry at the raw "
                f"counts (e.g. raw.X or layers/counts)."
            )
        fractional = block != np.round(block)
        if fractional.any():
            example = float(block[np.argmax(fractional)])
            raise SclinbenchError(
                f"{where} holds non-integer values (e.g. {example:.4g}): it looks normalized or "
                f"log-transformed; point `counts:` in the registry entry at the raw counts "
                f"(e.g. raw.X or layers/counts)."
            )


def recover_counts_from_lognorm(
    X,
    total_counts: Sequence[float] | np.ndarray,
    scale: float = 1e4,
    tol: float = 0.1,
    where: str = "matrix",
) -> sp.csr_matrix:
    """Undo ``log1p(counts / total_counts * scale)`` and return integer counts.

    Parameters
    ----------
    X
        Log-normalized cells x genes matrix (sparse stays sparse: ``expm1(0) = 0``).
    total_counts
        Per-cell library sizes used by the normalization (e.g. ``obs["n_counts"]``).
    scale
        The normalization's target sum.
    tol
        Largest accepted distance of a recovered value from the nearest integer.
    where
        Names the matrix in the error.

    Returns
    -------
    CSR matrix of dtype int32.

    Raises
    ------
    SclinbenchError
        When a recovered value is farther than ``tol`` from an integer (wrong totals or scale).
    """
    totals = np.asarray(total_counts, dtype=np.float64).reshape(-1)
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    if totals.shape[0] != X.shape[0]:
        raise SclinbenchError(f"{where}: {totals.shape[0]} library sizes for {X.shape[0]} cells.")
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    values = np.expm1(X.data) * totals[rows] / scale
    rounded = np.round(values)
    deviation = float(np.abs(values - rounded).max()) if values.size else 0.0
    if deviation > tol:
        raise SclinbenchError(
            f"{where}: undoing log1p(x / total * {scale:g}) leaves values {deviation:.3f} away from "
            f"an integer (tolerance {tol}); the library sizes or scale do not match, so integer "
            f"counts cannot be recovered; use a file with the raw counts."
        )
    out = sp.csr_matrix((rounded.astype(np.int32), X.indices, X.indptr), shape=X.shape)
    out.eliminate_zeros()
    log.info("%s: recovered integer counts (largest distance to an integer %.3f)", where, deviation)
    return out


# --------------------------------------------------------------------------------------------
# bundled data
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# reading files
# --------------------------------------------------------------------------------------------


def _as_csr(X) -> sp.csr_matrix:
    if sp.issparse(X):
        return X.tocsr() if not isinstance(X, sp.csr_matrix) else X
    return sp.csr_matrix(np.asarray(X))


def _canonical(X: sp.csr_matrix) -> sp.csr_matrix:
    """Sorted indices, no duplicate entries, no stored zeros (copies only when needed)."""
    if X.has_canonical_format and not (X.data == 0).any():
        return X
    X = X.copy()
    X.sum_duplicates()
    X.eliminate_zeros()
    return X


def _h5ad_matrices(f) -> list[str]:
    found = ["X"] if "X" in f else []
    if "raw" in f and "X" in f["raw"]:
        found.append("raw.X")
    if "layers" in f:
        found += [f"layers/{k}" for k in f["layers"]]
    return found


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


def _read_csr_rows(group, keep: np.ndarray, block: int | None = None) -> sp.csr_matrix:
    """The rows ``keep`` (boolean mask) of a CSR matrix stored in an h5ad group, read from disk.

    Only the kept rows end up in memory: the stored values are read in contiguous stretches of at
    most ``block`` values (a kept row longer than that is read alone) and the kept rows' values
    are copied into arrays allocated once, so the peak is the kept rows plus one stretch.
    """
    block = int(block or _READ_BLOCK)
    n_rows, n_cols = (int(v) for v in group.attrs["shape"])
    indptr = group["indptr"][:].astype(np.int64)
    rows = np.flatnonzero(keep)
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    data_ds, index_ds = group["data"], group["indices"]
    data = np.empty(int(lengths.sum()), dtype=data_ds.dtype)
    indices = np.empty(int(lengths.sum()), dtype=index_ds.dtype)
    pos, i = 0, 0
    while i < len(rows):
        lo = starts[i]
        j = max(int(np.searchsorted(ends, lo + block, side="right")), i + 1)  # rows i..j-1 fit
        hi = ends[j - 1]
        if hi > lo:
            seg_start, seg_len = starts[i:j] - lo, lengths[i:j]
            m = int(seg_len.sum())
            values, cols = data_ds[lo:hi], index_ds[lo:hi]
            if m == hi - lo:  # the kept rows are contiguous on disk
                data[pos:pos + m], indices[pos:pos + m] = values, cols
            else:
                take = np.repeat(seg_start - (np.cumsum(seg_len) - seg_len), seg_len) + np.arange(m)
                data[pos:pos + m], indices[pos:pos + m] = values[take], cols[take]
            pos += m
        i = j
    out_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_indptr[1:])
    return sp.csr_matrix((data, indices, out_indptr), shape=(len(rows), n_cols))


def _read_matrix_rows(elem, keep: np.ndarray | None, where: str):
    """A stored matrix (dense dataset or sparse group), only the rows ``keep`` when given."""
    import h5py
    from anndata.io import read_elem

    if keep is None:
        return read_elem(elem)
    if isinstance(elem, h5py.Dataset):  # dense: read the kept rows in blocks
        rows = np.flatnonzero(keep)
        out = np.empty((len(rows),) + tuple(elem.shape[1:]), dtype=elem.dtype)
        step = max(1, _READ_BLOCK // max(1, int(np.prod(elem.shape[1:]))))
        for k in range(0, len(rows), step):
            out[k:k + step] = elem[rows[k:k + step]]
        return out
    if elem.attrs.get("encoding-type") == "csr_matrix":
        return _read_csr_rows(elem, keep)
    log.info("%s is not stored by rows (%s): reading it whole, then keeping %d of %d rows", where,
             elem.attrs.get("encoding-type"), int(keep.sum()), keep.size)
    return _as_csr(read_elem(elem))[np.flatnonzero(keep)]


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


#: What a reader raises on a truncated or corrupt file (turned into one line by :func:`unreadable`).
READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, EOFError, TypeError)


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

    Before a file is read, its content is sniffed (:mod:`sclinbench.formats`): a file of another
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

    from sclinbench.formats import format_problem

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


# --------------------------------------------------------------------------------------------
# standardization
# --------------------------------------------------------------------------------------------


def _as_label(values: pd.Series, where: str, column: str) -> pd.Categorical:
    """Strings; missing values become "unknown" (and are counted in the log). For grouping columns
    (donor_id, organism); label columns go through :func:`_as_class_label`."""
    missing = values.isna().to_numpy()
    labels = values.astype(object).where(~missing, UNKNOWN).astype(str)
    if missing.any():
        log.warning("%s: %d cells have no %s; set to '%s'", where, int(missing.sum()), column, UNKNOWN)
    return pd.Categorical(labels.to_numpy())


def unlabelled_mask(values: pd.Series, tokens: Iterable[str] = DEFAULT_UNLABELLED) -> np.ndarray:
    """True where a label is missing: NaN, empty/blank, or one of ``tokens`` (case-insensitive)."""
    text = values.astype(object).where(values.notna(), "").astype(str).str.strip()
    lowered = {str(t).strip().lower() for t in tokens}
    return (values.isna() | (text == "") | text.str.lower().isin(lowered)).to_numpy(dtype=bool)


def _as_class_label(values: pd.Series, where: str, column: str, tokens: Sequence[str]) -> pd.Categorical:
    """Strings, with unlabelled cells (NaN, empty, ``tokens``) left missing (NaN): never a class.

    They stay in the standardized file and every task predicting ``column`` sets them aside
    (:func:`sclinbench.splits.task_cells`); how many, and what they were, is logged.
    """
    missing = unlabelled_mask(values, tokens)
    labels = values.astype(object).where(values.notna(), "").astype(str)
    if missing.any():
        seen = labels[missing].str.strip().replace("", "<missing>").value_counts()
        shown = ", ".join(f"{v!r}: {n}" for v, n in seen.items())
        log.warning(
            "%s: %d of %d cells have no %s (%s); they are kept but unlabelled (missing), so no task "
            "trains on or scores them (unlabelled: in the registry entry lists the values meaning "
            "'no label'; default %s)", where, int(missing.sum()), len(values), column, shown,
            ", ".join(DEFAULT_UNLABELLED),
        )
    return pd.Categorical(labels.where(~missing, None).to_numpy(dtype=object))


def _map_obs(adata: ad.AnnData, entry: dict, where: str) -> None:
    columns = entry.get("columns") or {}
    tokens = entry.get("unlabelled")
    tokens = DEFAULT_UNLABELLED if tokens is None else tuple(map(str, tokens))

    def label(values: pd.Series, target: str) -> pd.Categorical:
        if target in LABEL_COLUMNS:
            return _as_class_label(values, where, target, tokens)
        return _as_label(values, where, target)

    obs = adata.obs
    existing = list(obs.columns)
    for target in STANDARD_OBS:
        source = columns.get(target)
        if source is None:
            continue
        if source not in obs.columns:
            raise SclinbenchError(
                f"{where}: obs column '{source}' (columns.{target} in the registry entry) does not "
                f"exist; obs columns are: {', '.join(map(str, existing)) or 'none'}."
            )
        if source != target and target in obs.columns:
            log.warning("%s: obs column '%s' is replaced by '%s' (columns.%s)", where, target, source, target)
        obs[target] = label(obs[source], target)
    if columns.get("organism") is None:
        if entry.get("organism"):
            obs["organism"] = pd.Categorical([entry["organism"]] * adata.n_obs)
        elif "organism" in obs.columns:
            obs["organism"] = _as_label(obs["organism"], where, "organism")
        else:  # only cross-species tasks need it; they refuse a single organism with a clear message
            log.warning("%s: no organism given; set organism: (e.g. Homo sapiens) or columns.organism in "
                        "the registry entry. Using 'unknown'.", where)
            obs["organism"] = pd.Categorical(["unknown"] * adata.n_obs)
    if columns.get("donor_id") is None:
        if "donor_id" in obs.columns:
            log.info("%s: using the source's obs column donor_id", where)
            obs["donor_id"] = _as_label(obs["donor_id"], where, "donor_id")
        else:
            # a bundled dataset is a fixed file shipped by a package: nothing for the user to act on
            say = log.info if entry.get("source") == "bundled" else log.warning
            say("%s: no donor column; donor_id set to '%s' (donor-held-out splits are refused)", where, UNKNOWN)
            obs["donor_id"] = pd.Categorical([UNKNOWN] * adata.n_obs)
    for target in LABEL_COLUMNS:
        if columns.get(target) is None and target in obs.columns:
            obs[target] = label(obs[target], target)


def _gene_values(var: pd.DataFrame, column: str | None, key: str, where: str) -> np.ndarray:
    if column is None:
        return var.index.astype(str).to_numpy()
    if column not in var.columns:
        raise SclinbenchError(
            f"{where}: var column '{column}' (var_columns.{key} in the registry entry) does not "
            f"exist; var columns are: {', '.join(map(str, var.columns)) or 'none'} (null = the var index)."
        )
    values = var[column].astype(object)
    return values.where(values.notna(), "").astype(str).to_numpy()


def ensembl_share(ids) -> float:
    """The share of gene ids that look like Ensembl ids (``ENS...``, e.g. ENSG00000141510)."""
    ids = np.asarray(ids, dtype=object)
    return float(np.mean([str(g).startswith("ENS") for g in ids])) if ids.size else 0.0


def _gene_id_advice(var: pd.DataFrame, ids: np.ndarray, share: float, var_columns: dict) -> str:
    """What to set when ``gene_id: ensembl`` meets gene ids that are not Ensembl ids."""
    ensembl_columns = []
    for column in var.columns:
        if column == var_columns.get("gene_id") or pd.api.types.is_numeric_dtype(var[column]):
            continue
        values = var[column].astype(str)
        if len(values) and values.str.startswith("ENS").mean() >= 0.5:
            ensembl_columns.append(column)
    fix = (f"set var_columns.gene_id: {ensembl_columns[0]} (that var column holds Ensembl ids)"
           if ensembl_columns else "set gene_id: symbol in the registry entry")
    return (f"gene_id: ensembl, but only {100 * share:.0f}% of the {len(ids)} gene ids look like Ensembl "
            f"ids (e.g. {ids[0]!r}): they look like gene symbols; {fix} (or gene_id: auto)")


def _plan_var(var_in: pd.DataFrame, entry: dict, where: str) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The standardized var (gene id index, symbols) and, when gene ids repeat, the code of each
    input gene's merged gene (``None`` = no duplicates). Reads var only, never the counts."""
    kind = entry.get("gene_id", "auto")
    var_columns = entry.get("var_columns") or {}
    ids = _gene_values(var_in, var_columns.get("gene_id"), "gene_id", where)
    symbols = _gene_values(var_in, var_columns.get("gene_symbol"), "gene_symbol", where)
    ids = np.array([_ENSEMBL_VERSION.sub(r"\1", g) for g in ids], dtype=object)  # only Ensembl ids match
    symbols = np.where(symbols == "", ids, symbols)
    ids_ensembl = ensembl_share(ids)
    if kind == "auto":  # read from the ids themselves: most files carry either one or the other
        kind = "ensembl" if ids_ensembl >= 0.5 else "symbol"
        log.info("%s: gene_id not given; %.0f%% of the %d gene ids look like Ensembl ids, so genes are "
                 "indexed by %s (set gene_id: in the registry entry to choose)", where,
                 100 * ids_ensembl, len(ids), kind)
    elif kind == "ensembl" and len(ids) and ids_ensembl < 0.5:
        log.warning("%s: %s", where, _gene_id_advice(var_in, ids, ids_ensembl, var_columns))
    elif kind == "symbol" and len(symbols) and ensembl_share(symbols) >= 0.5:
        log.warning("%s: gene_id: symbol, but %.0f%% of the %d gene symbols look like Ensembl ids (e.g. "
                    "%r): set gene_id: ensembl (or auto), or var_columns.gene_symbol: to the var column "
                    "that holds symbols", where, 100 * ensembl_share(symbols), len(symbols), symbols[0])
    index = pd.Index(ids if kind == "ensembl" else symbols, dtype=str)
    if (index == "").any():
        raise SclinbenchError(f"{where}: some genes have an empty {kind} id; check var_columns in the registry entry.")
    var = var_in.copy()
    var["gene_id"], var["gene_symbol"] = ids.astype(str), symbols.astype(str)
    var.index = index
    codes = None
    if not index.is_unique:
        codes, uniques = pd.factorize(index)
        n_genes = len(codes)
        first = pd.Series(np.arange(n_genes)).groupby(codes).first().to_numpy()
        var = var.iloc[first]
        log.info("%s: %d duplicated gene ids summed (%d -> %d genes)", where, n_genes - len(uniques), n_genes, len(uniques))
    var.index.name = None
    return var, codes


def _merge_genes(X, codes: np.ndarray | None, n_out: int):
    """Sum the columns of ``X`` that share a code (duplicated gene ids); ``X`` when none do."""
    if codes is None:
        return X
    n_genes = len(codes)
    merge = sp.csr_matrix(
        (np.ones(n_genes, dtype=X.dtype), (np.arange(n_genes), codes)), shape=(n_genes, n_out)
    )
    return _as_csr(X @ merge)


def _standardize_var(adata: ad.AnnData, entry: dict, where: str) -> ad.AnnData:
    """Index genes by Ensembl id (version removed) or symbol; sum duplicated genes."""
    var, codes = _plan_var(adata.var, entry, where)
    X = _merge_genes(adata.X, codes, len(var))
    return ad.AnnData(X=X, obs=adata.obs, var=var, obsm=dict(adata.obsm), uns=dict(adata.uns))


def _feature_hit(var: pd.DataFrame, spec: dict, where: str) -> np.ndarray:
    """The genes named by ``condition_from_feature.feature`` (index, gene_id or gene_symbol)."""
    feature = spec["feature"]
    hit = (var.index == feature) | (var["gene_id"] == feature) | (var["gene_symbol"] == feature)
    hit = np.asarray(hit)
    if not hit.any():
        raise SclinbenchError(
            f"{where}: feature '{feature}' (condition_from_feature.feature in the registry entry) is "
            f"not among the genes (index, gene_id or gene_symbol)."
        )
    return hit


def _condition_obs(obs: pd.DataFrame, spec: dict, feature_counts: np.ndarray, where: str) -> None:
    """Set obs ``<feature>_counts`` and ``condition`` from the feature's counts per cell."""
    feature = spec["feature"]
    min_count = int(spec.get("min_count", 1))
    positive = feature_counts >= min_count
    if "condition" in obs.columns:
        log.warning("%s: obs condition is replaced by condition_from_feature", where)
    obs[f"{feature}_counts"] = feature_counts.astype(np.int64)
    obs["condition"] = pd.Categorical(
        np.where(positive, spec.get("positive", "positive"), spec.get("negative", "negative"))
    )
    log.info("%s: condition from %s >= %d: %d of %d cells positive", where, feature, min_count,
             int(positive.sum()), len(obs))


def _condition_from_feature(adata: ad.AnnData, spec: dict, where: str) -> ad.AnnData:
    hit = _feature_hit(adata.var, spec, where)
    feature_counts = np.asarray(adata.X[:, np.flatnonzero(hit)].sum(axis=1)).reshape(-1)
    _condition_obs(adata.obs, spec, feature_counts, where)
    if spec.get("drop_feature", True):
        adata = adata[:, ~hit].copy()
    return adata


def _select_cells(adata: ad.AnnData, keep: np.ndarray) -> ad.AnnData:
    return adata if keep.all() else adata[keep].copy()


def _obs_filter(adata: ad.AnnData, filters: dict, where: str) -> ad.AnnData:
    for column, values in (filters or {}).items():
        if column not in adata.obs.columns:
            raise SclinbenchError(
                f"{where}: obs column '{column}' (obs_filter in the registry entry) does not exist; "
                f"obs columns are: {', '.join(map(str, adata.obs.columns))}."
            )
        keep = adata.obs[column].astype(str).isin([str(v) for v in values]).to_numpy()
        log.info("%s: obs_filter %s in %s keeps %d of %d cells", where, column, values, int(keep.sum()), adata.n_obs)
        if not keep.any():
            present = sorted(map(str, adata.obs[column].unique()))[:10]
            raise SclinbenchError(
                f"{where}: obs_filter {column}: {values} keeps no cell; values present include: {', '.join(present)}."
            )
        adata = _select_cells(adata, keep)
    return adata


def _flag_ood(adata: ad.AnnData, patterns: Sequence[str], only: bool, where: str) -> ad.AnnData:
    if not patterns:
        if only:
            raise SclinbenchError(f"{where}: ood_only is set but ood_donors is empty; list the held-out donors.")
        return adata
    regex = re.compile("|".join(f"(?:{p})" for p in patterns))
    donors = adata.obs["donor_id"].astype(str)
    ood = donors.map(lambda d: bool(regex.fullmatch(d))).to_numpy(dtype=bool)
    adata.obs["ood_donor"] = ood
    log.info("%s: %d of %d cells from out-of-distribution donors %s", where, int(ood.sum()), adata.n_obs,
             sorted(set(donors[ood])))
    if only:
        if not ood.any():
            raise SclinbenchError(
                f"{where}: no donor matches ood_donors {list(patterns)}; donors are: "
                f"{', '.join(sorted(set(donors))[:20])}."
            )
        adata = _select_cells(adata, ood)
    return adata


class _InMemoryCounts:
    """Per-cell and per-gene counts of the matrix an AnnData holds (see :class:`_StreamedCounts`
    for the same statistics of an h5ad read in blocks of rows)."""

    def cell_stats(self, adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
        X = adata.X
        return np.asarray(X.sum(axis=1)).reshape(-1), np.diff(X.indptr)

    def gene_cells(self, adata: ad.AnnData) -> np.ndarray:
        return np.bincount(adata.X.indices, minlength=adata.n_vars)

    def gene_totals(self, adata: ad.AnnData) -> np.ndarray:
        return np.bincount(adata.X.indices, weights=adata.X.data, minlength=adata.n_vars)


def _quality_control(adata: ad.AnnData, thresholds: dict, name: str,
                     counts=None) -> tuple[ad.AnnData, list[str]]:
    """Cell filters (empty, min_counts, min_genes), rare labels, then gene filters (empty,
    min_cells, min_gene_counts: label-free statistics of every kept cell, whichever task or fold
    later tests it -- Souza & Mehta filter Tabula Sapiens genes by total count before splitting).

    ``counts`` gives the per-cell totals / genes and per-gene cells of the cells and genes
    ``adata`` holds: by default from ``adata.X``; a :class:`_StreamedCounts` computes them from
    the file in blocks, for an ``adata`` without ``X``.
    """
    counts = counts or _InMemoryCounts()
    steps: list[str] = []
    shown = ", ".join(f"{k}={thresholds[k]}" for k in QC_KEYS)

    def nothing_left(what: str) -> SclinbenchError:
        return SclinbenchError(
            f"Dataset '{name}': no {what} left after quality control ({shown}); lower these "
            f"thresholds (qc: in the config or in the registry entry)."
        )

    def note(message: str) -> None:
        steps.append(message)
        log.info("%s: %s", name, message)

    totals, n_genes = counts.cell_stats(adata)
    checks = [
        ("empty cells", totals > 0),
        (f"cells with < {thresholds['min_counts']} counts", totals >= thresholds["min_counts"]),
        (f"cells with < {thresholds['min_genes']} genes", n_genes >= thresholds["min_genes"]),
    ]
    keep = np.ones(adata.n_obs, dtype=bool)
    for label, ok in checks:
        dropped = int((keep & ~ok).sum())
        if dropped:
            note(f"removed {dropped} {label}")
        keep &= ok
    if not keep.any():
        raise nothing_left("cells")
    adata = _select_cells(adata, keep)

    min_per_label = thresholds["min_cells_per_label"]
    if min_per_label > 0:
        if "cell_type" not in adata.obs.columns:
            note("min_cells_per_label skipped: no cell_type column")
        else:
            labels = adata.obs["cell_type"]
            sizes = labels.dropna().astype(str).value_counts()  # unlabelled cells are no cell type
            rare = sizes.index[sizes < min_per_label]
            if len(rare):
                keep = ~(labels.notna() & labels.astype(str).isin(rare)).to_numpy()
                note(f"removed {int((~keep).sum())} cells of {len(rare)} cell types with < {min_per_label} cells "
                     f"({', '.join(map(str, rare))})")
                if not keep.any():
                    raise nothing_left("cells")
                adata = _select_cells(adata, keep)
                if isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype):
                    adata.obs["cell_type"] = adata.obs["cell_type"].cat.remove_unused_categories()

    n_cells = counts.gene_cells(adata)
    keep_genes = np.ones(adata.n_vars, dtype=bool)
    gene_checks = [("empty genes", n_cells > 0),
                   (f"genes in < {thresholds['min_cells']} cells", n_cells >= thresholds["min_cells"])]
    if thresholds["min_gene_counts"] > 0:  # label-free, over every cell kept so far (test cells too)
        gene_checks.append((f"genes with < {thresholds['min_gene_counts']} counts in total",
                            counts.gene_totals(adata) >= thresholds["min_gene_counts"]))
    for label, ok in gene_checks:
        dropped = int((keep_genes & ~ok).sum())
        if dropped:
            note(f"removed {dropped} {label}")
        keep_genes &= ok
    if not keep_genes.any():
        raise nothing_left("genes")
    if not keep_genes.all():
        adata = adata[:, keep_genes].copy()
        totals = counts.cell_stats(adata)[0]
        if not (totals > 0).all():
            note(f"removed {int((totals == 0).sum())} cells left empty by the gene filters")
            if not (totals > 0).any():
                raise nothing_left("cells")
            adata = _select_cells(adata, totals > 0)
    note(f"kept {adata.n_obs} cells x {adata.n_vars} genes")
    return adata, steps


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def standardize(
    adata: ad.AnnData,
    entry: dict,
    qc: dict | None = None,
    source: str = "",
    name: str | None = None,
) -> ad.AnnData:
    """Apply one registry entry to raw data: the standardized AnnData of docs/DESIGN.md.

    Steps: integer check -> var (gene id index, symbols, duplicated genes summed) -> obs
    (``columns`` mapped onto ``cell_type``, ``donor_id``, ``condition``, ``organism``) ->
    ``condition_from_feature`` -> ``obs_filter`` -> ``ood_donors``/``ood_only`` -> quality
    control -> CSR float32 counts and provenance.

    Parameters
    ----------
    adata
        Raw data with integer counts in ``X`` (from :func:`read_raw` or :func:`load_bundled`).
        Not modified.
    entry
        One registry entry (config/datasets.yaml); missing keys take the schema defaults. Used
        keys: ``columns``, ``organism``, ``gene_id``, ``var_columns``, ``obs_filter``,
        ``condition_from_feature``, ``ood_donors``, ``ood_only``, ``qc``, ``unlabelled`` (values
        of ``cell_type``/``condition`` meaning "no label"; default :data:`DEFAULT_UNLABELLED`).
    qc
        Thresholds ``min_genes``, ``min_counts`` (cells), ``min_cells`` and ``min_gene_counts``
        (genes: detected in fewer cells / fewer counts in total over the kept cells),
        ``min_cells_per_label`` (cell types); missing or null = 0 (off). Non-null values of
        ``entry["qc"]`` override them.
    source
        URL(s) or path(s) of the raw data, recorded in ``uns["sclinbench"]["source"]``.
    name
        Dataset name used in messages and provenance.

    Returns
    -------
    AnnData: ``X`` CSR float32 integer-valued counts; ``obs`` standard columns next to the
    source's (``<feature>_counts`` and ``ood_donor`` when used); ``var`` index = gene id,
    ``gene_id``, ``gene_symbol``; ``uns["sclinbench"]`` = dataset, source, files, sha256,
    format, counts, parameters (JSON), qc (JSON), qc_log (JSON), unlabelled (JSON: label column
    -> cells without a label, kept as missing values), unlabelled_values (JSON), verified (how
    each raw file was checked: registry, lock, unverified, local).

    Raises
    ------
    SclinbenchError
        Non-integer counts, a mapped column or feature that does not exist (listing the
        existing ones), a filter keeping nothing, or no cell left after quality control.
    """
    name = name or entry.get("name") or "dataset"
    where = f"dataset '{name}'" + (f" ({source})" if source else "")
    raw_info = dict(adata.uns.get("sclinbench_raw", {}))
    counts_key = raw_info.get("counts", entry.get("counts", "X"))
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise SclinbenchError(
            f"{where}: the input holds {adata.n_obs} cells x {adata.n_vars} genes, nothing to standardize; "
            f"check the file(s) (no threshold is involved yet)."
        )
    X = _canonical(_as_csr(adata.X))
    check_integer_counts(X, where=f"{where} [{counts_key}]")
    n_cells_in, n_genes_in = int(raw_info.get("n_obs_file", adata.n_obs)), adata.n_vars  # cells in the file(s)

    work = ad.AnnData(X=X, obs=adata.obs.copy(), var=adata.var.copy(), obsm=dict(adata.obsm))
    work.obs.index = work.obs.index.astype(str)
    if not work.obs_names.is_unique:
        work.obs_names_make_unique()
    work = _standardize_var(work, entry, where)
    _map_obs(work, entry, where)
    spec = entry.get("condition_from_feature")
    if spec:
        if (entry.get("columns") or {}).get("condition") is not None:
            raise SclinbenchError(
                f"{where}: set either columns.condition or condition_from_feature in the registry entry, not both."
            )
        work = _condition_from_feature(work, spec, where)
    return _standardize_cells(work, entry, qc, name, where, source, raw_info, counts_key,
                              n_cells_in, n_genes_in)


def _standardize_cells(work: ad.AnnData, entry: dict, qc: dict | None, name: str, where: str,
                       source: str, raw_info: dict, counts_key: str, n_cells_in: int, n_genes_in: int,
                       counts=None) -> ad.AnnData:
    """The steps of :func:`standardize` after the obs/var mapping: obs_filter, ood donors, quality
    control, ``max_cells``, then the standard dtypes and provenance. ``work`` has no ``X`` when
    ``counts`` (a :class:`_StreamedCounts`) computes the statistics from the file."""
    work = _obs_filter(work, entry.get("obs_filter") or {}, where)
    work = _flag_ood(work, entry.get("ood_donors") or [], bool(entry.get("ood_only", False)), where)

    thresholds = {k: int((qc or {}).get(k) or 0) for k in QC_KEYS}
    thresholds.update({k: int(v) for k, v in (entry.get("qc") or {}).items() if v is not None})
    work, qc_log = _quality_control(work, thresholds, name, counts=counts)
    work, subsample = subsample_cells(work, entry.get("max_cells"), int(entry.get("subsample_seed") or 0),
                                      where)

    if work.X is not None:
        work.X = _canonical(_as_csr(work.X)).astype(np.float32)
    for column in STANDARD_OBS:
        if column in work.obs.columns and not isinstance(work.obs[column].dtype, pd.CategoricalDtype):
            work.obs[column] = pd.Categorical(work.obs[column].astype(str))
    parameters = {k: v for k, v in entry.items() if k != "description"}
    unlabelled = {c: int(work.obs[c].isna().sum()) for c in LABEL_COLUMNS if c in work.obs.columns}
    for column, n in unlabelled.items():
        if n:
            log.info("%s: %d of %d cells in the standardized file have no %s (set aside by every task "
                     "predicting it)", where, n, work.n_obs, column)
    work.uns = {
        "sclinbench": {
            "dataset": name,
            "source": source or raw_info.get("files", ""),
            "files": raw_info.get("files", ""),
            "sha256": raw_info.get("sha256", ""),
            "format": raw_info.get("format", entry.get("format", "")),
            "counts": counts_key,
            "n_cells_raw": int(n_cells_in),
            "n_genes_raw": int(n_genes_in),
            "parameters": _json(parameters),
            "qc": _json(thresholds),
            "qc_log": _json(qc_log),
            "unlabelled": _json(unlabelled),
            "unlabelled_values": _json(list(DEFAULT_UNLABELLED if entry.get("unlabelled") is None
                                            else map(str, entry["unlabelled"]))),
            "verified": raw_info.get("verified", ""),
        }
    }
    if subsample:
        work.uns["sclinbench"]["subsample"] = _json(subsample)
    log.info("%s: standardized %d cells x %d genes (from %d x %d)", where, work.n_obs, work.n_vars,
             n_cells_in, n_genes_in)
    return work


def subsample_cells(adata: ad.AnnData, max_cells: int | None, seed: int = 0,
                    where: str = "dataset") -> tuple[ad.AnnData, dict | None]:
    """At most ``max_cells`` cells, drawn without replacement, stratified by ``cell_type``.

    Each cell type (unlabelled cells form a stratum of their own) keeps its share of the cells:
    ``max_cells * n_type / n`` rounded by largest remainder, so the shares add up to
    ``max_cells``; the draw inside each stratum is seeded (``seed``) and the kept cells stay in
    file order. ``max_cells`` null, or >= the number of cells, keeps every cell (and returns
    ``None`` as the record). The record (max_cells, seed, cells before and after, the stratum
    column) goes into ``uns["sclinbench"]["subsample"]``.
    """
    n = adata.n_obs
    if max_cells is None or int(max_cells) >= n:
        return adata, None
    max_cells = int(max_cells)
    if "cell_type" in adata.obs.columns:
        labels = adata.obs["cell_type"].astype(object).where(adata.obs["cell_type"].notna(), "\0unlabelled")
        codes, _ = pd.factorize(labels.astype(str), sort=True)
        column = "cell_type"
    else:
        codes, column = np.zeros(n, dtype=np.int64), None
    sizes = np.bincount(codes)
    exact = max_cells * sizes / n
    quota = np.floor(exact).astype(np.int64)
    short = max_cells - int(quota.sum())
    if short:
        order = np.lexsort((np.arange(len(sizes)), -(exact - quota)))  # largest remainder, then code
        quota[order[:short]] += 1
    rng = np.random.default_rng(seed)
    keep = np.zeros(n, dtype=bool)
    for code in range(len(sizes)):
        members = np.flatnonzero(codes == code)
        keep[rng.choice(members, size=int(quota[code]), replace=False)] = True
    log.info("%s: max_cells %d: kept %d of %d cells (stratified by %s, seed %d)", where, max_cells,
             int(keep.sum()), n, column or "nothing", seed)
    record = {"max_cells": max_cells, "seed": int(seed), "n_cells_before": int(n),
              "n_cells_after": int(keep.sum()), "stratified_by": column}
    return adata[keep].copy(), record


# --------------------------------------------------------------------------------------------
# streaming: one h5ad file standardized block by block, never holding its counts
# --------------------------------------------------------------------------------------------

#: stored values read from disk per block by the streaming standardization (data + indices:
#: 8 bytes each, plus the block's transforms: a few hundred MB at most)
STREAM_BLOCK = 1 << 23


def h5ad_counts_group(path: str | os.PathLike, counts: str = "X"):
    """``(file, group)`` of the CSR counts matrix ``counts`` of an h5ad, or ``None`` when the file
    cannot be streamed (legacy layout, dense or CSC matrix, matrix missing: the in-memory reader
    then gives its own message). The caller closes the file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except READ_ERRORS:  # truncated or not HDF5: the callers' readers name the file in one line
        return None
    try:
        if f.attrs.get("encoding-type") != "anndata":
            raise KeyError("legacy")
        key = {"X": "X", "raw.X": "raw/X"}.get(counts, counts)
        group = f[key]
        if not isinstance(group, h5py.Group) or group.attrs.get("encoding-type") != "csr_matrix":
            raise KeyError("not csr")
    except (KeyError, OSError):
        f.close()
        return None
    return f, group


def h5ad_shape(path: str | os.PathLike, counts: str = "X") -> tuple[int, int, int] | None:
    """``(cells, genes, stored values)`` of an h5ad's CSR counts matrix, read from the file's
    metadata without loading the matrix; ``None`` when it is not a CSR h5ad matrix."""
    opened = h5ad_counts_group(path, counts)
    if opened is None:
        return None
    f, group = opened
    with f:
        n_obs, n_vars = (int(v) for v in group.attrs["shape"])
        return n_obs, n_vars, int(group["data"].shape[0])


class _StreamedCounts:
    """The counts of one h5ad (CSR) as :func:`standardize` transforms them, read in row blocks.

    Every block is put in canonical form, its duplicated genes summed (``codes``) and the
    ``condition_from_feature`` genes dropped (``drop``), exactly as the in-memory path transforms
    the whole matrix. :meth:`scan` checks the counts and computes per-cell totals/genes (and the
    feature's counts); :meth:`cell_stats` / :meth:`gene_cells` answer :func:`_quality_control`
    for the cells and genes an obs/var-only AnnData holds; :meth:`write` writes those cells x
    genes as CSR float32, block by block. Peak memory: one block (``block`` stored values) plus
    per-cell arrays.
    """

    def __init__(self, group, file_rows: np.ndarray, names: pd.Index, codes: np.ndarray | None,
                 n_merged: int, where: str, block: int = STREAM_BLOCK):
        self.group, self.file_rows, self.names = group, file_rows, names
        self.codes, self.n_merged, self.where = codes, n_merged, where
        self.block = int(block)
        self.indptr = group["indptr"][:].astype(np.int64)
        self.n_vars = int(group.attrs["shape"][1])
        self.drop = None  # genes (merged space) dropped after condition_from_feature
        self.var_names = None  # work genes (after the drop), set by the caller
        self.totals = self.n_genes = None
        self._gene_cells = None  # (cells, genes' cells) of the last gene_cells over every gene
        self._gene_totals = None  # (cells, genes' total counts) of the last gene_cells

    def _ranges(self, rows: np.ndarray):
        """Contiguous file-row ranges of at most ``block`` stored values holding ``rows``."""
        indptr, n = self.indptr, len(self.indptr) - 1
        i = 0
        while i < len(rows):
            r0 = int(rows[i])
            r1 = int(np.searchsorted(indptr, indptr[r0] + self.block, side="right")) - 1
            r1 = min(max(r1, r0 + 1), n)
            j = int(np.searchsorted(rows, r1, side="left"))
            yield r0, r1, rows[i:j] - r0, i, j
            i = j

    def _blocks(self, positions: np.ndarray, check: bool = False):
        """``(slice of positions, block)``: the work rows ``positions`` (increasing) in blocks,
        transformed (stored zeros dropped, duplicated genes summed)."""
        rows = self.file_rows[positions]
        data_ds, index_ds = self.group["data"], self.group["indices"]
        for r0, r1, local, i, j in self._ranges(rows):
            lo, hi = int(self.indptr[r0]), int(self.indptr[r1])
            indptr = self.indptr[r0:r1 + 1] - lo
            indices = index_ds[lo:hi]
            values = data_ds[lo:hi]
            X = sp.csr_matrix((values, indices, indptr), shape=(r1 - r0, self.n_vars))
            if len(local) < r1 - r0:
                X = X[local]
            X = _canonical(X)
            if check:
                check_integer_counts(X, where=self.where)
            X = _canonical(_merge_genes(X, self.codes, self.n_merged))
            yield slice(i, j), X

    def scan(self, hit: np.ndarray | None = None) -> np.ndarray | None:
        """One pass over every work row: the integer check, totals and genes per cell (after the
        dropped genes) and, with ``hit``, the feature's counts per cell."""
        n = len(self.file_rows)
        totals, n_genes = np.zeros(n), np.zeros(n, dtype=np.int64)
        feature = np.zeros(n) if hit is not None else None
        keep_cols = None
        for rows, X in self._blocks(np.arange(n), check=True):
            if hit is not None:
                feature[rows] = np.asarray(X[:, np.flatnonzero(hit)].sum(axis=1)).reshape(-1)
                if self.drop is not None:
                    keep_cols = keep_cols if keep_cols is not None else np.flatnonzero(~self.drop)
                    X = X[:, keep_cols]
            totals[rows] = np.asarray(X.sum(axis=1)).reshape(-1)
            n_genes[rows] = np.diff(X.indptr)
        self.totals, self.n_genes = totals, n_genes
        return feature

    def _work_blocks(self, adata: ad.AnnData):
        positions = self.names.get_indexer(adata.obs_names)
        if (positions < 0).any() or (np.diff(positions) <= 0).any():
            raise AssertionError("streamed standardization: cells out of file order")
        cols = self.var_names.get_indexer(adata.var_names)
        kept = np.flatnonzero(~self.drop) if self.drop is not None else None
        for rows, X in self._blocks(positions):
            if kept is not None:
                X = X[:, kept]
            yield rows, X, cols

    def cell_stats(self, adata: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
        positions = self.names.get_indexer(adata.obs_names)
        if adata.n_vars == len(self.var_names) and adata.var_names.equals(self.var_names):
            return self.totals[positions], self.n_genes[positions]
        last = self._gene_cells
        if last is not None and np.array_equal(last[0], positions):
            dropped = np.ones(len(self.var_names), dtype=bool)
            dropped[self.var_names.get_indexer(adata.var_names)] = False
            if not last[1][dropped].any():  # only genes without a count in these cells went
                return self.totals[positions], self.n_genes[positions]
        totals, n_genes = np.zeros(adata.n_obs), np.zeros(adata.n_obs, dtype=np.int64)
        for rows, X, cols in self._work_blocks(adata):
            X = X[:, cols]
            totals[rows] = np.asarray(X.sum(axis=1)).reshape(-1)
            n_genes[rows] = np.diff(X.indptr)
        return totals, n_genes

    def gene_cells(self, adata: ad.AnnData) -> np.ndarray:
        n_cells = np.zeros(len(self.var_names), dtype=np.int64)
        totals = np.zeros(len(self.var_names))
        for _, X, _ in self._work_blocks(adata):
            n_cells += np.bincount(X.indices, minlength=len(self.var_names))
            totals += np.bincount(X.indices, weights=X.data, minlength=len(self.var_names))
        positions = self.names.get_indexer(adata.obs_names)
        if adata.var_names.equals(self.var_names):
            self._gene_cells = (positions, n_cells)
        self._gene_totals = (positions, totals)
        return n_cells[self.var_names.get_indexer(adata.var_names)]

    def gene_totals(self, adata: ad.AnnData) -> np.ndarray:
        """Total counts per gene of these cells (from the pass of :meth:`gene_cells` when it read
        the same cells)."""
        last = getattr(self, "_gene_totals", None)
        if last is None or not np.array_equal(last[0], self.names.get_indexer(adata.obs_names)):
            self.gene_cells(adata)
            last = self._gene_totals
        return last[1][self.var_names.get_indexer(adata.var_names)]

    def write(self, adata: ad.AnnData, path: str | os.PathLike, compression: str | None) -> int:
        """Append X (CSR float32, the cells x genes of ``adata``) to the h5ad at ``path`` (written
        by anndata without X); returns the stored values written."""
        import h5py

        bound = int(self.n_genes[self.names.get_indexer(adata.obs_names)].sum())
        index_dtype = np.int64 if bound >= np.iinfo(np.int32).max else np.int32
        kwargs = {"compression": compression} if compression else {}
        with h5py.File(path, "a") as f:
            g = f.create_group("X")
            g.attrs["encoding-type"], g.attrs["encoding-version"] = "csr_matrix", "0.1.0"
            g.attrs["shape"] = np.array([adata.n_obs, adata.n_vars], dtype=np.int64)
            chunk = (1 << 16,)
            data = g.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=chunk, **kwargs)
            indices = g.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=chunk,
                                       **kwargs)
            indptr = np.zeros(adata.n_obs + 1, dtype=index_dtype)
            nnz = 0
            for rows, X, cols in self._work_blocks(adata):
                X = _canonical(X[:, cols]).astype(np.float32)
                m = X.nnz
                data.resize((nnz + m,))
                indices.resize((nnz + m,))
                data[nnz:], indices[nnz:] = X.data, X.indices
                indptr[rows.start + 1:rows.stop + 1] = X.indptr[1:].astype(np.int64) + nnz
                nnz += m
            g.create_dataset("indptr", data=indptr, **kwargs)
        return nnz


def _read_obs_var(f, counts: str, path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """obs, the counts matrix's var (``raw/var`` for raw.X, joined as :func:`_read_h5ad` does) and
    the per-cell obsm arrays of an h5ad, without its matrices."""
    from anndata.io import read_elem

    obs = read_elem(f["obs"])
    var = read_elem(f["var"])
    if counts == "raw.X":
        raw_var = read_elem(f["raw/var"])
        extra = [c for c in var.columns if c not in raw_var.columns]
        if extra and var.index.is_unique and raw_var.index.isin(var.index).all():
            raw_var = raw_var.join(var[extra])
        var = raw_var
    obsm = {}
    if "obsm" in f:
        for key in f["obsm"]:
            value = read_elem(f["obsm"][key])
            if isinstance(value, np.ndarray) and value.shape[0] == obs.shape[0]:
                obsm[key] = value
    return obs, var, obsm


def standardize_h5ad(
    path: str | os.PathLike,
    entry: dict,
    qc: dict | None,
    out: str | os.PathLike,
    source: str = "",
    name: str | None = None,
    raw_info: dict | None = None,
    local: bool = False,
    block: int = STREAM_BLOCK,
) -> ad.AnnData | None:
    """:func:`read_raw` + :func:`standardize` of one h5ad file, streamed: the file's counts are
    read in blocks of rows (twice or three times: checks and statistics, genes' cells when gene
    filters apply, then the write) and the standardized file is written block by block, so the
    peak memory is one block plus obs/var, whatever the file's size. Same checks, messages,
    steps and output as the in-memory path (a test compares them).

    Returns the standardized AnnData without ``X`` (obs, var, uns) after writing ``out``
    atomically, or ``None`` (nothing written) when the file cannot be streamed (not an anndata
    h5ad with CSR counts): the caller then takes the in-memory path.
    """
    import h5py

    from sclinbench.formats import format_problem
    from sclinbench.io import atomic_path, choose_compression

    path = Path(path)
    raw_info = dict(raw_info or {})
    name = name or entry.get("name") or "dataset"
    counts = entry.get("counts", "X")
    entry_where = f" of registry entry '{name}'"
    if not path.exists():
        if local:
            raise SclinbenchError(f"{path} does not exist; fix its path under files:{entry_where} and re-run.")
        raise SclinbenchError(f"{path} does not exist; download it (or fix its path in the registry entry) and re-run.")
    problem = format_problem(path, "h5ad", name, local=local)
    if problem:
        raise SclinbenchError(problem)
    opened = h5ad_counts_group(path, counts)
    if opened is None:
        try:  # a file HDF5 cannot open at all is refused here, in one line, not by the fallback
            h5py.File(path, "r").close()
        except READ_ERRORS as exc:
            raise unreadable(path, "h5ad", exc, local, entry_where) from exc
        return None
    f, group = opened
    try:
        with f:
            return _standardize_streamed(f, group, path, entry, qc, out, source, name, raw_info, counts,
                                         block, atomic_path, choose_compression)
    except SclinbenchError:
        raise
    except READ_ERRORS as exc:
        raise unreadable(path, "h5ad", exc, local, entry_where) from exc


def _standardize_streamed(f, group, path, entry, qc, out, source, name, raw_info, counts, block,
                          atomic_path, choose_compression):
    obs, var_in, obsm = _read_obs_var(f, counts, path)
    n_file, n_vars = obs.shape[0], var_in.shape[0]
    if n_file == 0 or n_vars == 0:
        what = "cells" if n_file == 0 else "genes"
        raise SclinbenchError(
            f"{path} holds 0 {what} ({n_file} cells x {n_vars} genes, read as h5ad, "
            f"counts: {counts}) of registry entry '{name}': the file itself is empty, so no threshold can "
            f"help; check that it is the right file (e.g. a Cell Ranger run that found no cells)."
        )
    rows = ood_row_filter(entry)
    keep = _rows_to_keep(obs, rows, path)
    file_rows = np.arange(n_file) if keep is None else np.flatnonzero(keep)
    if keep is not None:
        obs = obs.iloc[file_rows]
        obsm = {k: v[file_rows] for k, v in obsm.items()}
        log.info("%s: kept %d of %d cells while reading (donors matching %s in obs '%s')", path,
                 len(file_rows), n_file, rows["patterns"], rows["column"])
    file_obs = ((entry.get("files") or [{}])[0] or {}).get("obs") or {}
    for key, value in file_obs.items():
        obs[key] = pd.Categorical([str(value)] * len(obs))
    log.info("read %s: %d cells x %d genes (h5ad, %s; streamed in blocks of %d stored values)", path,
             len(obs), n_vars, counts, block)

    where = f"dataset '{name}'" + (f" ({source})" if source else "")
    raw_info = {"files": str(path), "format": "h5ad", "counts": counts, "n_obs_file": n_file, **raw_info}
    work = ad.AnnData(obs=obs.copy(), var=var_in.copy(), obsm=obsm)
    work.obs.index = work.obs.index.astype(str)
    if not work.obs_names.is_unique:
        log.warning("cell names are not unique; making them unique")
        work.obs_names_make_unique()
    var, codes = _plan_var(work.var, entry, where)
    work = ad.AnnData(obs=work.obs, var=var, obsm=dict(work.obsm))
    _map_obs(work, entry, where)
    stream = _StreamedCounts(group, file_rows, work.obs_names.copy(), codes, len(var),
                             where=f"{path} ({counts})", block=block)
    spec = entry.get("condition_from_feature")
    hit = None
    if spec:
        if (entry.get("columns") or {}).get("condition") is not None:
            raise SclinbenchError(
                f"{where}: set either columns.condition or condition_from_feature in the registry entry, not both."
            )
        hit = _feature_hit(work.var, spec, where)
        if spec.get("drop_feature", True):
            stream.drop = hit
    feature_counts = stream.scan(hit)
    if spec:
        _condition_obs(work.obs, spec, feature_counts, where)
        if stream.drop is not None:
            work = work[:, ~hit].copy()
    stream.var_names = work.var_names.copy()
    work = _standardize_cells(work, entry, qc, name, where, source, raw_info, counts, n_file, n_vars,
                              counts=stream)
    bound = int(stream.n_genes[stream.names.get_indexer(work.obs_names)].sum())
    compression = choose_compression(bound)
    with atomic_path(out) as tmp:
        work.write_h5ad(tmp, compression="gzip")  # obs, var, uns, obsm: X is written below
        nnz = stream.write(work, tmp, compression)
    log.info("%s: wrote %s (%d stored values, X %s)", where, out, nnz, compression or "uncompressed")
    return work
