""":func:`standardize` — one registry entry (config/datasets.yaml) applied to an AnnData: obs and
var mapped to the contract, cells filtered, quality control, provenance in ``uns["sclinbench"]``;
:func:`subsample_cells` caps the number of cells.
"""

from __future__ import annotations

import json
import logging

import anndata as ad
import numpy as np
import pandas as pd

from sclinbench.data.counts import check_integer_counts
from sclinbench.data.genes import _standardize_var
from sclinbench.data.h5ad import _as_csr, _canonical
from sclinbench.data.obs import (
    DEFAULT_UNLABELLED,
    LABEL_COLUMNS,
    STANDARD_OBS,
    _condition_from_feature,
    _flag_ood,
    _map_obs,
    _obs_filter,
    _select_cells,
)
from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)

QC_KEYS = ("min_genes", "min_counts", "min_cells", "min_cells_per_label", "min_gene_counts")


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
    keep = _passing(checks, adata.n_obs, note)
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
    gene_checks = [("empty genes", n_cells > 0),
                   (f"genes in < {thresholds['min_cells']} cells", n_cells >= thresholds["min_cells"])]
    if thresholds["min_gene_counts"] > 0:  # label-free, over every cell kept so far (test cells too)
        gene_checks.append((f"genes with < {thresholds['min_gene_counts']} counts in total",
                            counts.gene_totals(adata) >= thresholds["min_gene_counts"]))
    keep_genes = _passing(gene_checks, adata.n_vars, note)
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


def _passing(checks, size: int, note) -> np.ndarray:
    """The mask of what passes every ``(label, ok)`` check; notes how many each check removes
    beyond the checks before it."""
    keep = np.ones(size, dtype=bool)
    for label, ok in checks:
        dropped = int((keep & ~ok).sum())
        if dropped:
            note(f"removed {dropped} {label}")
        keep &= ok
    return keep


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
