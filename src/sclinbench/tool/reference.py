"""The reference and the query as read from their files: raw counts, labels, standardization.

- :func:`read_h5ad` reads a file with one-line errors;
- :func:`read_counts` finds the raw integer counts of an h5ad (``X``, ``layers/counts`` or ``raw.X``;
  normalized matrices are refused with :func:`sclinbench.data.check_integer_counts`);
- :func:`prepare_reference` standardizes a labelled reference exactly as the workflow standardizes a
  dataset (:func:`sclinbench.data.standardize`), sets unlabelled cells aside and refuses labels
  with one cell.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench import data
from sclinbench.errors import SclinbenchError
from sclinbench.tool import genes as gene_match

log = logging.getLogger("sclinbench.annotate")

#: Where an h5ad's counts are looked for, in this order, by ``counts="auto"``.
COUNT_MATRICES = ("X", "layers/counts", "raw.X")


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_h5ad(path, role: str) -> ad.AnnData:
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"{role} file {path} does not exist")
    try:
        return ad.read_h5ad(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise SclinbenchError(f"cannot read {role} file {path} as h5ad ({detail}); is it an AnnData .h5ad file?") from exc


def _matrix(adata: ad.AnnData, key: str):
    """``(matrix, var)`` of ``X``, ``raw.X`` or ``layers/<name>``; ``(None, None)`` if absent."""
    if key == "X":
        return adata.X, adata.var
    if key == "raw.X":
        return (adata.raw.X, adata.raw.var) if adata.raw is not None else (None, None)
    if key.startswith("layers/"):
        name = key.split("/", 1)[1]
        return (adata.layers[name], adata.var) if name in adata.layers else (None, None)
    raise SclinbenchError(f"counts location {key!r} is not X, raw.X or layers/<name>")


def read_counts(adata: ad.AnnData, counts: str, where: str, option: str) -> tuple[sp.csr_matrix, pd.DataFrame, str]:
    """The raw integer counts of ``adata``: ``(CSR matrix, its var table, where they were)``.

    ``counts="auto"`` takes the first of :data:`COUNT_MATRICES` that holds non-negative integers;
    otherwise the named matrix must. Refusals name every matrix looked at and why.
    """
    keys = COUNT_MATRICES if counts == "auto" else (counts,)
    reasons = []
    for key in keys:
        X, var = _matrix(adata, key)
        if X is None:
            reasons.append(f"{key} absent")
            continue
        X = sp.csr_matrix(X) if not sp.isspmatrix_csr(X) else X
        try:
            data.check_integer_counts(X, where=key)
        except SclinbenchError as exc:
            text = str(exc)
            reason = text[len(key) + 1:].split(";")[0].split(":")[0].strip() if text.startswith(key) else text
            reasons.append(f"{key} {reason}")
            continue
        return X, var, key
    raise SclinbenchError(
        f"{where} holds no raw integer counts ({'; '.join(reasons)}); sclinbench normalizes the counts itself: "
        f"give a file with raw counts, or name the matrix holding them with {option} (e.g. layers/counts)"
    )


def _label_values(obs: pd.DataFrame, label: str, where: str, option: str) -> pd.Series:
    if label not in obs.columns:
        cols = ", ".join(map(str, obs.columns)) or "none"
        raise SclinbenchError(f"{where} has no obs column '{label}' ({option}); its obs columns are: {cols}")
    return obs[label]


# ------------------------------------------------------------------------------------------------
# the reference
# ------------------------------------------------------------------------------------------------
@dataclass
class Reference:
    """Standardized reference counts with their labels (``obs['cell_type']``)."""

    adata: ad.AnnData
    label: str
    source: str
    sha256: str
    n_set_aside: int = 0
    counts_key: str = "X"

    @property
    def labels(self) -> np.ndarray:
        return self.adata.obs["cell_type"].astype(str).to_numpy()


def prepare_reference(
    adata: ad.AnnData,
    label: str,
    *,
    source: str = "reference",
    sha256: str = "",
    counts: str = "auto",
    standardized: bool = False,
    min_cells_per_label: int = 0,
    organism: str | None = None,
) -> Reference:
    """Standardize a labelled reference and check its labels.

    Parameters
    ----------
    adata
        The reference as read from its file; or, with ``standardized=True``, a dataset already
        in the workflow's standardized form (``resources/standardized/<dataset>.h5ad``).
    label
        obs column holding the cell labels.
    source, sha256
        File and checksum recorded in the provenance.
    counts
        Where the raw counts are (``auto``: X, then layers/counts, then raw.X).
    standardized
        Skip standardization (the workflow's own datasets).
    organism
        Species of the reference (recorded in ``obs['organism']`` when the file has none).
    min_cells_per_label
        Drop (and log) labels with fewer reference cells; 0 keeps all. A label with one cell is
        refused unless dropped this way: it can be neither fitted and calibrated.

    Raises
    ------
    SclinbenchError
        No label column (the columns are listed), no raw counts, a label with one cell, fewer
        than two labels.
    """
    where = f"reference {source}"
    values = _label_values(adata.obs, label, where, "--label")
    missing = values.isna().to_numpy() | values.astype(str).str.strip().isin(["", "nan", "None"]).to_numpy()
    if standardized:
        missing |= values.astype(str).to_numpy() == data.UNKNOWN
    n_set_aside = int(missing.sum())
    if n_set_aside:
        log.warning("%s: %d cells have no '%s' label; they are set aside (not used, never a class)",
                    where, n_set_aside, label)
    if missing.all():
        raise SclinbenchError(f"{where}: no cell has a '{label}' label (--label); name the column holding the cell labels")
    if standardized:
        ref = adata[~missing].copy() if n_set_aside else adata
        ref.obs["cell_type"] = ref.obs[label].astype(str).astype("category")
        counts_key = "X"
    else:
        X, var, counts_key = read_counts(adata, counts, where, "--reference-counts")
        work = ad.AnnData(X=X, obs=adata.obs.copy(), var=var.copy())
        work = work[~missing].copy() if n_set_aside else work
        symbol_col = next((c for c in ("gene_symbols", "gene_symbol", "feature_name", "gene_name", "symbol")
                           if c in work.var.columns), None)
        id_col = next((c for c in ("gene_ids", "gene_id") if c in work.var.columns), None)
        kind = "ensembl" if gene_match.looks_ensembl(work.var_names) or (
            id_col and gene_match.looks_ensembl(work.var[id_col])) else "symbol"
        entry = {"columns": {"cell_type": label}, "gene_id": kind,
                 "var_columns": {"gene_id": id_col if kind == "ensembl" and not gene_match.looks_ensembl(work.var_names) else None,
                                 "gene_symbol": symbol_col}}
        if "organism" not in work.obs.columns:
            entry["organism"] = organism or "unspecified"
        if "donor_id" not in work.obs.columns:  # donors are not used here; say so instead of the registry hint
            work.obs["donor_id"] = data.UNKNOWN
        work.uns["sclinbench_raw"] = {"files": source, "sha256": sha256, "format": "h5ad", "counts": counts_key}
        ref = data.standardize(work, entry, {"min_counts": 1}, source=source, name="reference")
    ref.obs["cell_type"] = ref.obs["cell_type"].astype(str).astype("category")
    sizes = ref.obs["cell_type"].value_counts()
    if min_cells_per_label > 0:
        small = sizes.index[sizes < min_cells_per_label]
        if len(small):
            log.warning("%s: dropped %d labels with < %d cells: %s", where, len(small), min_cells_per_label,
                        ", ".join(map(str, small)))
            ref = ref[~ref.obs["cell_type"].isin(small).to_numpy()].copy()
            ref.obs["cell_type"] = ref.obs["cell_type"].cat.remove_unused_categories()
            sizes = ref.obs["cell_type"].value_counts()
    sizes = sizes[sizes > 0]
    singles = sorted(map(str, sizes.index[sizes < 2]))
    if singles:
        shown = ", ".join(repr(s) for s in singles[:5]) + (f" and {len(singles) - 5} more" if len(singles) > 5 else "")
        raise SclinbenchError(
            f"{where}: label {shown} of column '{label}' has only one cell; a label needs at least 2 (one to fit, "
            "one to calibrate): merge or remove it, or drop small labels with --min-cells-per-label 2"
        )
    if sizes.size < 2:
        raise SclinbenchError(f"{where}: column '{label}' has {sizes.size} label(s); at least 2 are needed to classify")
    if not sp.isspmatrix_csr(ref.X):
        ref.X = sp.csr_matrix(ref.X)
    return Reference(ref, label, source, sha256, n_set_aside, counts_key)


def reference_from_counts(counts: sp.csr_matrix, labels: np.ndarray, gene_ids, gene_symbols, *, label: str,
                          source: str, sha256: str, n_set_aside: int = 0, counts_key: str = "X") -> Reference:
    """A :class:`Reference` from counts kept in a model file: the same cells, genes and labels, in the
    same order, as the standardized reference the model was trained on (so a refit is the same fit)."""
    var = pd.DataFrame({"gene_symbol": np.asarray(gene_symbols, dtype=str)},
                       index=pd.Index(np.asarray(gene_ids, dtype=str)))
    obs = pd.DataFrame({"cell_type": pd.Categorical(np.asarray(labels, dtype=str))},
                       index=pd.Index([f"ref{i}" for i in range(counts.shape[0])]))
    return Reference(ad.AnnData(X=sp.csr_matrix(counts, dtype=np.float32), obs=obs, var=var), label, source,
                     sha256, n_set_aside, counts_key)
