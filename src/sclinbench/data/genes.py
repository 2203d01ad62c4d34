"""Genes of the standardized AnnData: ``var`` indexed by a stable gene id (Ensembl versions
stripped) with ``gene_id`` and ``gene_symbol`` columns, duplicated genes summed.
"""

from __future__ import annotations

import logging
import re

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.data.h5ad import _as_csr
from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)

_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*G\d+)\.\d+(?:_PAR_Y)?$")


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
