"""Helpers shared by the analyses: labelled cells, the published numbers."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sclinbench.errors import SclinbenchError

log = logging.getLogger("sclinbench.analyses")

#: Columns of config/published_analyses.tsv (the paper's numbers, shown marked "published").
PUBLISHED_COLUMNS = ["analysis", "dataset", "key", "statistic", "value", "detail", "source"]


def labelled_cells(obs: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """Boolean mask of cells with a label in ``column`` (missing labels are set aside, logged)."""
    if column not in obs.columns:
        raise SclinbenchError(f"{where}: obs has no column '{column}' (columns: {', '.join(map(str, obs.columns))}); "
                              f"standardize the dataset with a {column} column")
    values = obs[column]
    mask = values.notna().to_numpy() & (values.astype(str).str.len() > 0).to_numpy()
    if (~mask).any():
        log.info("%s: %d cells without %s set aside (unlabelled)", where, int((~mask).sum()), column)
    return mask


def read_published(path) -> pd.DataFrame:
    """The paper's published analysis numbers (config/published_analyses.tsv)."""
    table = pd.read_csv(path, sep="\t", comment="#", dtype={"key": str})
    missing = [c for c in PUBLISHED_COLUMNS if c not in table.columns]
    if missing:
        raise SclinbenchError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(PUBLISHED_COLUMNS)}")
    return table[PUBLISHED_COLUMNS]
