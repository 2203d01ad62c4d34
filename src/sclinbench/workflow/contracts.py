"""The files passed between the stages: their columns, and how each one is read back.

Every writer builds its table with the columns named here and every reader checks them here, so a
contract changes in one place (docs/DESIGN.md describes the same files in words):

=====================================================  ==========================  ==================
file                                                   columns                     written by
=====================================================  ==========================  ==================
``results/splits/dataset~D/task~T.tsv.gz``             :data:`SPLIT_COLUMNS`       ``splits``
``results/predictions/.../representation~R.parquet``   :data:`PREDICTION_COLUMNS`  ``evaluate``
                                                       + ``s:<label>`` scores      (:func:`write_predictions`)
``results/scores/dataset~D/task~T.tsv``                :data:`FOLD_SCORE_COLUMNS`  ``metrics.score``
``... .per_class.tsv``                                 :data:`PER_CLASS_COLUMNS`   ``metrics``
``... .confusion.tsv`` / ``.unseen.tsv``               :data:`CALL_COLUMNS`        ``metrics``
``... .summary.tsv`` / ``.paired.tsv``                 :data:`SUMMARY_COLUMNS` /   ``intervals``
                                                       :data:`PAIRED_COLUMNS`
``results/metrics.tsv``                                :data:`METRICS_TSV_COLUMNS` ``metrics.assemble``
``results/summary.tsv`` / ``paired.tsv`` /             :data:`SUMMARY_TSV_COLUMNS` ``metrics.assemble``
``unseen_labels.tsv``                                  (``PAIRED_``, ``UNSEEN_``)
``results/tables/<stem>.tsv|md``                       stems :data:`TABLES`        ``report``
``results/figures/<stem>.png|pdf``                     stems :data:`FIGURES`       ``plotting``
``results/paper/<name>.png|pdf|tsv``                   names :data:`PAPER_FIGURES` ``paper_figures``
=====================================================  ==========================  ==================

The tables of the run (``results/*.tsv``) carry :data:`LABEL_COLUMNS` (which dataset and task a row
is about) and, per pipeline, its ``role`` (``method`` or ``control``), model ``family``,
``representation`` and ``model``: readers tell controls and methods apart by ``role``, never by a
pipeline's name.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sclinbench.errors import SclinbenchError

log = logging.getLogger("sclinbench")

# --------------------------------------------------------------------------- per dataset x task

#: One row per cell per fold it is used in (``role``: train / test).
SPLIT_COLUMNS = ["cell_id", "fold", "role", "split_kind", "group"]
#: The explicit prediction for a cell a model cannot score (counted as wrong, never a label).
UNASSIGNED = "unassigned"
#: Prefix of the per-class score columns of a predictions table (``s:<label>``).
SCORE_PREFIX = "s:"
#: One row per test cell per fold, pipeline and repeat, then the ``s:<label>`` columns (sorted).
#: ``fallback``: the cell was scored by its model's fallback (``leiden_logreg``: its cluster has
#: no model of its own), False for every other model.
PREDICTION_COLUMNS = ["cell_id", "fold", "group", "pipeline", "repeat", "donor_id", "y_true", "y_pred",
                      "score", "novel", "label_in_training", "fallback"]
#: Per-fold scores of one dataset x task (the score stage's ``task~T.tsv``).
FOLD_SCORE_COLUMNS = ["pipeline", "fold", "group", "repeat", "metric", "value"]
#: F1 and support per true label.
PER_CLASS_COLUMNS = ["pipeline", "fold", "group", "repeat", "label", "f1", "support", "in_training"]
#: Counts of (true label, call): the confusion counts and the calls of unseen labels.
CALL_COLUMNS = ["pipeline", "repeat", "group", "y_true", "y_pred", "n"]
#: Pooled scores with their intervals (:func:`sclinbench.evaluate.intervals.summarize_predictions`).
SUMMARY_COLUMNS = ["pipeline", "group", "metric", "value", "ci_low", "ci_high", "n_units", "unit",
                   "interval", "unit_values", "n_repeats", "repeat_sd", "repeat_min", "repeat_max"]
#: Same-draw paired differences ``a - b`` (every unordered pair, ``a < b`` by name).
PAIRED_COLUMNS = ["group", "a", "b", "metric", "difference", "ci_low", "ci_high", "n_units", "unit",
                  "interval", "verdict"]

# --------------------------------------------------------------------------- the run's tables

#: Which dataset and task a row of the run's tables is about.
LABEL_COLUMNS = ["dataset", "task", "kind", "split_kind", "protocol"]
#: What a row of the run's tables says about its pipeline (from the pipeline's config entry).
PIPELINE_COLUMNS = ["role", "family", "representation", "model"]
ROLES = ("method", "control")
#: ``results/metrics.tsv``: every per-fold score.
METRICS_TSV_COLUMNS = ["dataset", "task", "kind", "split_kind", "group", "pipeline", "role",
                       "representation", "model", "fold", "repeat", "metric", "value"]
#: ``results/summary.tsv``: one row per dataset x task x pipeline x group x metric.
SUMMARY_TSV_COLUMNS = (LABEL_COLUMNS + ["pipeline"] + PIPELINE_COLUMNS
                       + [c for c in SUMMARY_COLUMNS if c != "pipeline"])
PAIRED_TSV_COLUMNS = LABEL_COLUMNS + PAIRED_COLUMNS
UNSEEN_TSV_COLUMNS = LABEL_COLUMNS + CALL_COLUMNS

#: The report stage's tables (``results/tables/<stem>.tsv`` and ``.md``), besides one
#: ``task~<task>`` table per task.
TABLES = ("headline", "summary", "best_linear", "cross_species_pairs", "cross_species_average",
          "cross_species_unseen", "published_comparison", "paired_comparison")
#: Pipelines the headline shows beside the best of the grid when the config's ``report.declared``
#: names none (those of them that are configured).
DEFAULT_DECLARED = ("rankz_centroid", "log1p_pca_logreg")
#: The figures (``results/figures/<stem>.png`` and ``.pdf``).
FIGURES = ("cross_species_heatmap", "cross_species_average", "pipeline_scores",
           "normalization_model", "disease", "novel_type", "runtime_memory")
#: The figures of Souza & Mehta 2026 by name (``results/paper/<name>.png|pdf|tsv``; config
#: ``report.paper_figures``: name -> tasks; docs/paper_figures.md).
PAPER_FIGURES = ("tabula_sapiens", "spermatogenesis_matrix", "spermatogenesis_by_species", "infection",
                 "novel_types")

_NUMBERS = ("value", "ci_low", "ci_high", "repeat_sd", "repeat_min", "repeat_max")


def task_table_stem(task: str) -> str:
    """The stem of a task's own table, ``task~<task>`` (characters unsafe in file names as ``_``)."""
    return "task~" + "".join(c if c.isalnum() or c in "-_." else "_" for c in str(task))


# --------------------------------------------------------------------------- groups

def parse_species_pair(group: str, where: str = "metrics table") -> tuple[str, str]:
    """Split a cross-species group ``"<train>-><test>"`` into ``(train, test)``."""
    parts = str(group).split("->")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise SclinbenchError(f"{where}: cross-species group {group!r} is not '<train_species>-><test_"
                              "species>'; fix the group column written by the score step")
    return parts[0].strip(), parts[1].strip()


def is_diagonal(group: str) -> bool:
    """A cross-species group ``a->a``: the same-species cross-validation, not a transfer."""
    a, _, b = str(group).partition("->")
    return a == b


# --------------------------------------------------------------------------- readers

def _bools(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values
    return values.astype(str).str.lower().isin(["true", "1"])


def read_splits(path: str | os.PathLike) -> pd.DataFrame:
    """A split table (:data:`SPLIT_COLUMNS`; ids and groups stay strings)."""
    return pd.read_csv(path, sep="\t", dtype={"cell_id": str, "group": str}, keep_default_na=False)


#: Columns of a predictions table stored as Parquet dictionaries (a few distinct strings each,
#: repeated over folds, pipelines and repeats); read back as strings ("" where the cell has none).
PREDICTION_LABEL_COLUMNS = ("cell_id", "group", "pipeline", "donor_id", "y_true", "y_pred")
#: Integer and boolean columns of a predictions table; ``score`` and ``s:<label>`` are float64
#: (the models' probabilities as computed: float32 would change the scores computed from them).
PREDICTION_INTEGER_COLUMNS = ("fold", "repeat")
PREDICTION_BOOLEAN_COLUMNS = ("novel", "label_in_training", "fallback")


def _label_values(values: pd.Series) -> pd.Categorical:
    # the strings a TSV round trip gave: str() of each value, "" for a missing one
    values = values.astype(object)
    return pd.Categorical(values.where(values.notna(), "").astype(str))


def typed_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """A predictions table with the column types of its Parquet file: labels and ids categorical,
    ``fold``/``repeat`` int64, the flags bool, ``score`` and ``s:<label>`` float64."""
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise SclinbenchError(f"predictions table: missing column(s) {', '.join(missing)}; it must have "
                              f"{', '.join(PREDICTION_COLUMNS)} (sclinbench.evaluate.engine.assemble writes them)")
    out = {}
    for column in predictions.columns:
        values = predictions[column]
        if column in PREDICTION_LABEL_COLUMNS:
            out[column] = _label_values(values)
        elif column in PREDICTION_INTEGER_COLUMNS:
            out[column] = values.to_numpy(dtype=np.int64)
        elif column in PREDICTION_BOOLEAN_COLUMNS:
            out[column] = _bools(values).to_numpy()
        elif column == "score" or column.startswith(SCORE_PREFIX):
            out[column] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        else:
            out[column] = values.to_numpy()
    return pd.DataFrame(out, columns=predictions.columns)


def write_predictions(predictions: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a predictions table (:data:`PREDICTION_COLUMNS` + ``s:<label>``) as Parquet.

    Typed columns (:func:`typed_predictions`), zstd-compressed; written to a temporary file that is
    renamed onto ``path`` only when complete (:func:`sclinbench.workflow.io.atomic_path`), so a killed job
    leaves no half-written table. Logs a line before and one after (rows, bytes, seconds).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sclinbench.workflow.io import atomic_path

    path = Path(path)
    t0 = time.perf_counter()
    log.info("writing predictions: %d rows x %d columns to %s", len(predictions), predictions.shape[1], path)
    table = pa.Table.from_pandas(typed_predictions(predictions), preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    log.info("wrote predictions %s: %d rows, %d bytes in %.1f s", path, table.num_rows, path.stat().st_size,
             time.perf_counter() - t0)


def _read_parquet_predictions(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        df = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SclinbenchError(f"{path}: not a readable Parquet predictions table ({first}); delete it and "
                              "rerun its evaluate step") from None
    for column in df.columns:
        if isinstance(df[column].dtype, pd.CategoricalDtype):
            df[column] = df[column].astype(object)  # plain strings, like a TSV's (groupby keeps no empty labels)
    return df


def _read_tsv_predictions(path: Path) -> pd.DataFrame:
    # tables of earlier versions (.tsv / .tsv.gz)
    return pd.read_csv(path, sep="\t", dtype={"cell_id": str, "group": str, "y_true": str, "y_pred": str,
                                              "donor_id": str},
                       keep_default_na=False, na_values={"score": ["", "nan", "NaN"]},
                       low_memory=False)  # one type per column (class scores mix numbers and NaN)


def read_predictions(paths) -> pd.DataFrame:
    """Read and concatenate prediction tables: the Parquet files :func:`write_predictions` writes
    (and the TSVs, ``.tsv`` or ``.tsv.gz``, of earlier versions).

    ``paths``: one path or several. Labels and ids are strings (``""`` where a cell has none),
    ``fold``/``repeat`` int, the flags bool, the scores float (NaN where a fold's model lacks a
    class). Every consumer (score, figures, nested, benchmarks, tests) reads predictions here.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = []
    for p in paths:
        p = _existing(p, "predictions table", "evaluate step")
        frames.append(_read_parquet_predictions(p) if p.suffix == ".parquet" else _read_tsv_predictions(p))
    out = pd.concat(frames, ignore_index=True)
    for column in out.columns:
        if column == "score" or column.startswith(SCORE_PREFIX):
            out[column] = pd.to_numeric(out[column], errors="coerce")
    out["novel"] = _bools(out["novel"])
    if "label_in_training" in out.columns:
        out["label_in_training"] = _bools(out["label_in_training"])
    # tables written before the column existed: no model had a fallback then
    out["fallback"] = _bools(out["fallback"]) if "fallback" in out.columns else False
    if "repeat" not in out.columns:
        out["repeat"] = 0
    return out


def read_task_table(path: str | os.PathLike) -> pd.DataFrame:
    """One of the score stage's per dataset x task tables (scores, summary, paired, calls)."""
    return pd.read_csv(path, sep="\t", dtype={"group": str, "a": str, "b": str, "unit_values": str},
                       keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in _NUMBERS})


def _strings(df: pd.DataFrame, cols) -> pd.DataFrame:
    for c in cols:
        if c in df.columns:
            df[c] = df[c].fillna("").astype(str)
    return df


def _existing(path: str | os.PathLike, what: str, step: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"{path}: {what} not found; run the {step} first")
    return path


def check_metrics(metrics: pd.DataFrame, where: str = "metrics table") -> pd.DataFrame:
    """Return a cleaned copy of a tidy metrics table or raise :class:`SclinbenchError`.

    Parameters
    ----------
    metrics
        Table with the columns of :data:`METRICS_TSV_COLUMNS` (extra columns are kept; a missing
        ``repeat`` is read as 0).
    where
        Name used in error messages (usually the file path).

    Returns
    -------
    Copy with ``group`` as str ("" when empty), ``fold`` as int and ``value`` as float.
    """
    if "repeat" not in metrics.columns:
        metrics = metrics.assign(repeat=0)
    missing = [c for c in METRICS_TSV_COLUMNS if c not in metrics.columns]
    if missing:
        raise SclinbenchError(f"{where}: missing column(s) {', '.join(missing)}; "
                              f"expected {', '.join(METRICS_TSV_COLUMNS)}")
    out = metrics.copy()
    for col in ("dataset", "task", "kind", "split_kind", "group", "pipeline", "role",
                "representation", "model", "metric"):
        out[col] = out[col].fillna("").astype(str)
    value = pd.to_numeric(out["value"], errors="coerce")
    bad = value.isna() & out["value"].notna() & ~out["value"].astype(str).str.lower().isin(
        ["nan", "", "na"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SclinbenchError(f"{where}: row {i + 1} column value: {out['value'].iloc[i]!r} is not a "
                              "number; rerun the score step that wrote it")
    out["value"] = value.astype(float)
    fold = pd.to_numeric(out["fold"], errors="coerce")
    if fold.isna().any():
        i = int(np.flatnonzero(fold.isna().to_numpy())[0])
        raise SclinbenchError(f"{where}: row {i + 1} column fold: {out['fold'].iloc[i]!r} is not an "
                              "integer fold number")
    out["fold"] = fold.astype(int)
    out["repeat"] = pd.to_numeric(out["repeat"], errors="coerce").fillna(0).astype(int)
    roles = set(out["role"]) - set(ROLES)
    if roles:
        raise SclinbenchError(f"{where}: column role has {sorted(roles)}; use 'method' or 'control'")
    cross = out["kind"] == "cross_species"
    for group in pd.unique(out.loc[cross, "group"]):
        parse_species_pair(group, where=where)
    return out


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check ``results/metrics.tsv`` (see :func:`check_metrics`)."""
    path = _existing(path, "metrics table", "score/aggregate steps")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return check_metrics(df, where=str(path))


def check_summary(summary: pd.DataFrame, where: str = "summary table") -> pd.DataFrame:
    """A cleaned copy of ``results/summary.tsv`` (numbers as float, labels as str) or a one-line error."""
    missing = [c for c in SUMMARY_TSV_COLUMNS if c not in summary.columns]
    if missing:
        raise SclinbenchError(f"{where}: missing column(s) {', '.join(missing)}; rerun the score and "
                              "metrics steps that write it")
    out = _strings(summary.copy(), LABEL_COLUMNS + ["pipeline"] + PIPELINE_COLUMNS
                   + ["group", "metric", "unit", "interval", "unit_values"])
    for c in ("value", "ci_low", "ci_high", "n_units", "n_repeats", "repeat_sd", "repeat_min", "repeat_max"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    return out


def read_summary(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check ``results/summary.tsv`` (see :func:`check_summary`)."""
    path = _existing(path, "summary table", "score/metrics steps")
    return check_summary(pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False), where=str(path))


def read_paired(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check ``results/paired.tsv`` (:data:`PAIRED_TSV_COLUMNS`)."""
    path = _existing(path, "paired-comparison table", "score/metrics steps")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in PAIRED_TSV_COLUMNS if c not in df.columns]
    if missing:
        raise SclinbenchError(f"{path}: missing column(s) {', '.join(missing)}; rerun the metrics step")
    df = _strings(df, LABEL_COLUMNS + ["group", "a", "b", "metric", "unit", "interval", "verdict"])
    for c in ("difference", "ci_low", "ci_high", "n_units"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def read_unseen(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``results/unseen_labels.tsv`` (:data:`UNSEEN_TSV_COLUMNS`)."""
    path = _existing(path, "unseen-label table", "metrics step")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "n" in df.columns:
        df["n"] = pd.to_numeric(df["n"], errors="coerce").fillna(0).astype(int)
    return df
