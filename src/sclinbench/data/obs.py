"""Cell metadata of the standardized AnnData: the standard obs columns, labels (a cell without one
is unlabelled, never a class), the condition read from a feature's counts, obs filters and the
flag of out-of-distribution donors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)

STANDARD_OBS = ("cell_type", "donor_id", "condition", "organism")

UNKNOWN = "unknown"

#: obs columns holding labels a task predicts: a cell without one is unlabelled (NaN), never a class
LABEL_COLUMNS = ("cell_type", "condition")

#: label values that mean "no label" (case-insensitive; registry key ``unlabelled:`` replaces them);
#: NaN and empty strings are always unlabelled
DEFAULT_UNLABELLED = ("unknown", "unassigned", "nan", "na", "n/a", "none")


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
    (:func:`sclinbench.evaluate.splits.task_cells`); how many, and what they were, is logged.
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


#: The obs column each task kind predicts when the task names no ``label`` (the standard columns).
DEFAULT_LABEL = {"celltype": "cell_type", "disease": "condition", "cross_species": "cell_type",
                 "novel_type": "cell_type"}


def task_label(spec: dict) -> str:
    """The obs column a task predicts (``label`` in the task spec, else the kind's default)."""
    return spec.get("label") or DEFAULT_LABEL[spec["kind"]]
