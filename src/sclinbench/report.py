"""Tables, the results README and provenance from ``results/metrics.tsv``.

Everything here works on the tidy metrics table (one value per row, columns
:data:`METRICS_COLUMNS`) and on the published numbers of ``config/reference_results.tsv``.

Conventions (also stated in every written table):

- **Summaries** are a mean over *units* with a seeded 95% percentile-bootstrap interval over those
  units. The unit is the fold for tasks without groups; for grouped tasks it is the group (a
  training->target species pair for cross-species, a held-out cell type for novel-type tasks),
  each group first averaged over its folds, so every group weighs the same.
- **Cross-species** averages leave out the same-species diagonal (``a->a``, a held-out split of
  the training species) unless asked; rows that include it say so (``includes_diagonal``).
- **Published** numbers never mix silently with ours: every row of a comparison carries
  ``source`` = ``published`` or ``computed here``. A foundation-model embedding supplied by the user
  and classified by a linear model in this workflow is ``computed here``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import zlib
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from sclinbench.errors import SclinbenchError
from sclinbench.download import sha256sum
from sclinbench.io import atomic_path, write_table
from sclinbench.metrics import CI_SUFFIXES, METRICS_TSV_COLUMNS, POOLED_FOLD, bootstrap_ci

METRICS_COLUMNS = tuple(METRICS_TSV_COLUMNS)
#: Columns that identify one summary row (one pipeline's score on one task of one dataset).
SUMMARY_KEYS = ["dataset", "task", "kind", "split_kind", "pipeline", "role", "representation",
                "model", "metric"]
#: Classification scores in display order; other metrics (counts such as ``n_test_cells``) are
#: summarised in the TSV tables but left out of the Markdown views.
SCORE_METRICS = ("macro_f1", "balanced_accuracy", "accuracy", "macro_precision", "macro_recall",
                 "auroc_ovr", "macro_f1_shared", "novelty_auroc", "known_accuracy")
METRIC_LABELS = {
    "macro_f1": "macro F1", "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy",
    "macro_precision": "macro precision", "macro_recall": "macro recall",
    "auroc_ovr": "AUROC (macro one-vs-rest)", "macro_f1_shared": "macro F1 (shared labels)",
    "novelty_auroc": "novelty AUROC", "known_accuracy": "accuracy on known types",
}
CONTROL_PIPELINES = ("control_majority", "control_shuffled")
COMPUTED = "computed here"
PUBLISHED = "published"
REFERENCE_COLUMNS = ("model", "dataset", "task", "metric", "training_species", "value",
                     "includes_diagonal", "citation", "note", "counts")
#: Binomial (lower case) -> common name, so ``Homo sapiens->Mus musculus`` groups line up with the
#: common names used by the published tables.
SPECIES_COMMON_NAMES = {
    "homo sapiens": "human", "pan troglodytes": "chimpanzee", "gorilla gorilla": "gorilla",
    "macaca mulatta": "macaque", "callithrix jacchus": "marmoset", "mus musculus": "mouse",
    "monodelphis domestica": "opossum", "ornithorhynchus anatinus": "platypus",
    "gallus gallus": "chicken",
}
DEFAULT_PACKAGES = ("sclinbench", "snakemake", "scanpy", "anndata", "scikit-learn", "numpy",
                    "scipy", "pandas", "matplotlib", "h5py", "pyyaml")
_TRUE = {"true", "yes", "1"}


# --------------------------------------------------------------------------- reading / checks

def check_metrics(metrics: pd.DataFrame, where: str = "metrics table") -> pd.DataFrame:
    """Return a cleaned copy of a tidy metrics table or raise :class:`SclinbenchError`.

    Parameters
    ----------
    metrics
        Table with the columns of :data:`METRICS_COLUMNS` (extra columns are kept).
    where
        Name used in error messages (usually the file path).

    Returns
    -------
    Copy with ``group`` as str ("" when empty), ``fold`` as int and ``value`` as float.
    """
    missing = [c for c in METRICS_COLUMNS if c not in metrics.columns]
    if missing:
        raise SclinbenchError(f"{where}: missing column(s) {', '.join(missing)}; "
                              f"expected {', '.join(METRICS_COLUMNS)}")
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
    roles = set(out["role"]) - {"method", "control"}
    if roles:
        raise SclinbenchError(f"{where}: column role has {sorted(roles)}; use 'method' or 'control'")
    cross = out["kind"] == "cross_species"
    for group in pd.unique(out.loc[cross, "group"]):
        parse_species_pair(group, where=where)
    return out


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check ``results/metrics.tsv`` (see :func:`check_metrics`)."""
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"{path}: metrics table not found; run the score/aggregate steps first")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    return check_metrics(df, where=str(path))


def parse_species_pair(group: str, where: str = "metrics table") -> tuple[str, str]:
    """Split a cross-species group ``"<train>-><test>"`` into ``(train, test)``."""
    parts = str(group).split("->")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise SclinbenchError(f"{where}: cross-species group {group!r} is not '<train_species>-><test_"
                              "species>'; fix the group column written by the score step")
    return parts[0].strip(), parts[1].strip()


def common_species_name(name: str) -> str:
    """Common lower-case species name (``"Homo sapiens"`` -> ``"human"``; others lower-cased)."""
    key = " ".join(str(name).replace("_", " ").split()).lower()
    return SPECIES_COMMON_NAMES.get(key, key)


# --------------------------------------------------------------------------- bootstrap / summary

def _key_seed(seed: int, key: Iterable) -> np.random.Generator:
    """A generator that depends on ``seed`` and the row key only (not on row order)."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(map(str, key)).encode())])


def bootstrap_mean(values, n_boot: int = 2000, level: float = 0.95,
                   rng: np.random.Generator | int = 0) -> tuple[float, float, float, int]:
    """Mean and percentile-bootstrap interval of the mean of ``values``.

    Parameters
    ----------
    values
        One number per unit (fold, species pair, ...); non-finite values are dropped.
    n_boot
        Bootstrap resamples.
    level
        Coverage of the interval (0.95 = 95%).
    rng
        Seed or generator.

    Returns
    -------
    ``(mean, ci_low, ci_high, n)``; with one unit the interval collapses to the value, with none
    everything is NaN and ``n`` is 0.
    """
    n = int(np.isfinite(np.asarray(values, dtype=float)).sum())
    mean, lo, hi = bootstrap_ci(values, n_boot=n_boot, ci=level, seed=rng)
    return mean, lo, hi, n


def _is_diagonal(df: pd.DataFrame) -> np.ndarray:
    cross = (df["kind"] == "cross_species").to_numpy()
    diag = np.zeros(len(df), dtype=bool)
    if cross.any():
        pairs = [parse_species_pair(g) for g in df.loc[cross, "group"]]
        diag[cross] = [a == b for a, b in pairs]
    return diag


def _unit_name(kind: str, grouped: bool, include_diagonal: bool) -> str:
    if kind == "cross_species":
        return "species pair (incl. same-species)" if include_diagonal else \
            "species pair (excl. same-species)"
    if kind == "novel_type":
        return "held-out type"
    return "group" if grouped else "fold"


def summarize(metrics: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
              include_diagonal: bool = False) -> pd.DataFrame:
    """Mean and bootstrap CI per dataset x task x split kind x pipeline x metric.

    Parameters
    ----------
    metrics
        Tidy metrics (:data:`METRICS_COLUMNS`).
    n_boot, level, seed
        Bootstrap resamples, interval coverage and seed. Each row draws from a generator seeded by
        ``seed`` and its own key, so adding a pipeline never changes another row's interval.
    include_diagonal
        Cross-species only: also average the same-species pairs (``a->a``). Off by default.

    Returns
    -------
    DataFrame with :data:`SUMMARY_KEYS` and ``mean, ci_low, ci_high, n, n_folds, unit``:
    ``n`` units (folds, or groups each averaged over their folds) entered the mean;
    ``n_folds`` is the largest number of folds behind one unit.
    """
    m = check_metrics(metrics)
    if not include_diagonal:
        m = m[~_is_diagonal(m)]
    # scores pooled over leave-one-out folds (fold -1) bring their own interval as sibling rows
    is_ci = m["metric"].str.endswith(CI_SUFFIXES)
    pooled_ci = m[is_ci & (m["fold"] == POOLED_FOLD)]
    m = m[~is_ci]
    columns = SUMMARY_KEYS + ["mean", "ci_low", "ci_high", "n", "n_folds", "unit"]
    if m.empty:
        return pd.DataFrame(columns=columns)
    m = m.assign(_grouped=m["group"] != "")
    m["_unit"] = np.where(m["_grouped"], m["group"], m["fold"].astype(str))
    # sorted units: the bootstrap draws must not depend on the order of the input rows
    units = (m.groupby(SUMMARY_KEYS + ["_unit"], sort=True)
             .agg(value=("value", "mean"), n_folds=("fold", "nunique"), grouped=("_grouped", "any"))
             .reset_index())
    ci_of = {(*k[:-1], k[-1]): v for k, v in
             pooled_ci.set_index(SUMMARY_KEYS)["value"].items()} if len(pooled_ci) else {}
    n_held_out = (m[(m["metric"] == "accuracy") & (m["fold"] >= 0)]
                  .groupby(["dataset", "task", "pipeline"])["fold"].nunique().to_dict())
    rows = []
    for key, df in units.groupby(SUMMARY_KEYS, sort=True):
        kind = key[SUMMARY_KEYS.index("kind")]
        if list(df["_unit"]) == [str(POOLED_FOLD)]:
            metric = key[-1]
            lo = ci_of.get((*key[:-1], metric + CI_SUFFIXES[0]), float("nan"))
            hi = ci_of.get((*key[:-1], metric + CI_SUFFIXES[1]), float("nan"))
            d, t, p = (key[SUMMARY_KEYS.index(c)] for c in ("dataset", "task", "pipeline"))
            rows.append((*key, float(df["value"].iloc[0]), lo, hi, n_held_out.get((d, t, p), 1),
                         1, "held-out donor (pooled)"))
            continue
        mean, lo, hi, n = bootstrap_mean(df["value"].to_numpy(), n_boot=n_boot, level=level,
                                         rng=_key_seed(seed, key))
        rows.append((*key, mean, lo, hi, n, int(df["n_folds"].max()),
                     _unit_name(kind, bool(df["grouped"].any()), include_diagonal)))
    return pd.DataFrame(rows, columns=columns)


def best_linear(summary: pd.DataFrame, metric: str = "macro_f1",
                exclude_representations: Iterable[str] = ("embedding",)) -> pd.DataFrame:
    """The best method pipeline per dataset x task x split kind (never a control).

    Parameters
    ----------
    summary
        Output of :func:`summarize`.
    metric
        Metric that ranks pipelines (highest mean wins; ties go to the alphabetically first name).
    exclude_representations
        Representations that are not "linear pipelines on expression" (by default imported
        foundation-model embeddings, which are compared separately).

    Returns
    -------
    One summary row per dataset x task x split kind.
    """
    s = summary[(summary["metric"] == metric) & (summary["role"] == "method")
                & ~summary["representation"].isin(list(exclude_representations))
                & summary["mean"].notna()]
    if s.empty:
        return summary.iloc[0:0].copy()
    s = s.sort_values(["dataset", "task", "split_kind", "mean", "pipeline"],
                      ascending=[True, True, True, False, True])
    return s.groupby(["dataset", "task", "split_kind"], sort=True).head(1).reset_index(drop=True)


# --------------------------------------------------------------------------- cross-species

def cross_species_pairs(metrics: pd.DataFrame, metric: str = "macro_f1") -> pd.DataFrame:
    """Per pipeline and ordered species pair: the mean over folds of one metric.

    Returns
    -------
    Columns ``dataset, task, pipeline, role, representation, model, training_species,
    target_species, same_species, metric, mean, n_folds``.
    """
    m = check_metrics(metrics)
    m = m[(m["kind"] == "cross_species") & (m["metric"] == metric)]
    cols = ["dataset", "task", "pipeline", "role", "representation", "model", "training_species",
            "target_species", "same_species", "metric", "mean", "n_folds"]
    if m.empty:
        return pd.DataFrame(columns=cols)
    pairs = [parse_species_pair(g) for g in m["group"]]
    m = m.assign(training_species=[a for a, _ in pairs], target_species=[b for _, b in pairs])
    keys = ["dataset", "task", "pipeline", "role", "representation", "model", "training_species",
            "target_species"]
    out = (m.groupby(keys, sort=False)
           .agg(mean=("value", "mean"), n_folds=("fold", "nunique")).reset_index())
    out["same_species"] = out["training_species"] == out["target_species"]
    out["metric"] = metric
    return out[cols]


def _only(values, what: str, hint: str) -> str:
    values = list(pd.unique(pd.Series(values)))
    if len(values) != 1:
        raise SclinbenchError(f"cross-species metrics: {len(values)} {what} ({', '.join(map(str, values))}); "
                              f"{hint}")
    return values[0]


def cross_species_matrix(metrics: pd.DataFrame, pipeline: str, metric: str = "macro_f1",
                         dataset: str | None = None, task: str | None = None,
                         species_order: Iterable[str] | None = None) -> pd.DataFrame:
    """Training species (rows) x target species (columns) matrix of one pipeline's mean score.

    The diagonal is the held-out same-species split; the off-diagonal cells are the
    cross-species transfers. Missing pairs are NaN.

    Parameters
    ----------
    metrics
        Tidy metrics.
    pipeline, metric
        Which pipeline and metric.
    dataset, task
        Needed only when the table holds more than one cross-species dataset or task.
    species_order
        Order of rows and columns; default: order of first appearance.
    """
    pairs = cross_species_pairs(metrics, metric)
    if dataset is not None:
        pairs = pairs[pairs["dataset"] == dataset]
    if task is not None:
        pairs = pairs[pairs["task"] == task]
    pairs = pairs[pairs["pipeline"] == pipeline]
    if pairs.empty:
        raise SclinbenchError(f"cross-species metrics: no {metric!r} rows for pipeline {pipeline!r}"
                              f"{'' if dataset is None else ' on dataset ' + repr(dataset)}; "
                              "check the pipeline name and that a cross_species task ran")
    _only(pairs["dataset"], "datasets", "pass dataset=")
    _only(pairs["task"], "tasks", "pass task=")
    if species_order is None:
        species_order = list(pd.unique(pd.concat([pairs["training_species"], pairs["target_species"]])))
    order = list(species_order)
    mat = pairs.pivot(index="training_species", columns="target_species", values="mean")
    mat = mat.reindex(index=[s for s in order if s in mat.index],
                      columns=[s for s in order if s in mat.columns])
    mat.index.name, mat.columns.name = "training species", "target species"
    return mat


def cross_species_average(metrics: pd.DataFrame, include_diagonal: bool = False,
                          metric: str = "macro_f1", n_boot: int = 2000, level: float = 0.95,
                          seed: int = 0) -> pd.DataFrame:
    """Mean score over target species, per training species and pipeline.

    Parameters
    ----------
    metrics
        Tidy metrics; only ``kind == "cross_species"`` rows are used.
    include_diagonal
        ``False`` (default): average the *other* species only. ``True``: also the held-out
        same-species split; such rows are labelled ``includes_diagonal=True``.
    metric
        Per-pair metric to average (each pair first averaged over its folds).
    n_boot, level, seed
        Bootstrap over target species for the interval.

    Returns
    -------
    Columns ``dataset, task, kind, pipeline, role, representation, model, training_species,
    metric, includes_diagonal, mean, ci_low, ci_high, n`` where ``metric`` is
    ``"<metric>_mean_over_targets"`` and ``n`` the number of target species averaged.
    """
    pairs = cross_species_pairs(metrics, metric)
    if not include_diagonal:
        pairs = pairs[~pairs["same_species"]]
    cols = ["dataset", "task", "kind", "pipeline", "role", "representation", "model",
            "training_species", "metric", "includes_diagonal", "mean", "ci_low", "ci_high", "n"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    keys = ["dataset", "task", "pipeline", "role", "representation", "model", "training_species"]
    rows = []
    for key, df in pairs.groupby(keys, sort=False):
        df = df.sort_values("target_species")  # draws independent of input row order
        mean, lo, hi, n = bootstrap_mean(df["mean"].to_numpy(), n_boot=n_boot, level=level,
                                         rng=_key_seed(seed, (*key, include_diagonal)))
        row = dict(zip(keys, key))
        row.update(kind="cross_species", metric=f"{metric}_mean_over_targets",
                   includes_diagonal=bool(include_diagonal), mean=mean, ci_low=lo, ci_high=hi, n=n)
        rows.append(row)
    return pd.DataFrame(rows)[cols]


# --------------------------------------------------------------------------- published numbers

def read_reference(path: str | os.PathLike, schema_path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read and validate the published-results table (``config/reference_results.tsv``).

    Parameters
    ----------
    path
        Tab-separated file with the columns of :data:`REFERENCE_COLUMNS`.
    schema_path
        JSON schema (YAML) of one row; default ``reference_results.schema.yaml`` next to ``path``.

    Returns
    -------
    DataFrame with ``value`` as float and the other columns as str.

    Raises
    ------
    SclinbenchError
        One line naming the file, the row (file line number) and the column at fault.
    """
    import jsonschema
    import yaml

    path = Path(path)
    schema_path = Path(schema_path) if schema_path else path.with_name("reference_results.schema.yaml")
    if not path.exists():
        raise SclinbenchError(f"{path}: published-results table not found; restore it from git or "
                              "point the config at your own table")
    if not schema_path.exists():
        raise SclinbenchError(f"{schema_path}: schema of the published-results table not found; "
                              "pass schema_path=")
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment=None)
    required = list(schema.get("required", []))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SclinbenchError(f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                              f"{chr(9).join(required)} (tab-separated)")
    props = schema.get("properties", {})
    if schema.get("additionalProperties") is False:
        extra = [c for c in df.columns if c not in props]
        if extra:
            raise SclinbenchError(f"{path}: unknown column(s) {', '.join(extra)}; allowed: "
                                  f"{', '.join(props)}")
    numeric = [c for c, p in props.items() if p.get("type") in ("number", "integer")]
    validator = jsonschema.Draft202012Validator(schema)
    records = []
    for i, rec in enumerate(df.to_dict("records")):
        line = i + 2  # header is line 1
        for col in numeric:
            try:
                rec[col] = float(rec[col])
            except (TypeError, ValueError):
                raise SclinbenchError(f"{path}: line {line} column {col}: {rec[col]!r} is not a number; "
                                      "write the value as e.g. 0.44") from None
        errors = sorted(validator.iter_errors(rec), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            col = err.absolute_path[0] if err.absolute_path else "?"
            raise SclinbenchError(f"{path}: line {line} column {col}: {err.message}; fix it to match "
                                  f"{schema_path.name}")
        records.append(rec)
    out = pd.DataFrame(records, columns=list(df.columns))
    dup = out.duplicated(["model", "dataset", "task", "metric", "training_species"], keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise SclinbenchError(f"{path}: line {i + 2} repeats model/dataset/task/metric/training_species "
                              "of an earlier row; keep one value per published number")
    out["value"] = out["value"].astype(float)
    return out


def published_table(reference: pd.DataFrame, ours: pd.DataFrame,
                    dataset_aliases: Mapping[str, str] | None = None,
                    only_matching: bool = True,
                    counts: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Published numbers and ours side by side, one row per number, each with its ``source``.

    Parameters
    ----------
    reference
        Output of :func:`read_reference`.
    ours
        Output(s) of :func:`cross_species_average` (concatenate the with/without-diagonal
        tables to show both; each row keeps its ``includes_diagonal``).
    dataset_aliases
        Our dataset name -> the reference's dataset name (e.g. ``{"atlas": "spermatogenesis"}``).
    only_matching
        Keep only published rows whose dataset, task kind and metric appear in ``ours``.
    counts
        Our dataset name -> the matrix its raw counts were read from (registry ``counts``, e.g.
        ``raw.X`` or ``layers/decontXcounts``; :func:`sclinbench.manifest.entry_counts`).

    Returns
    -------
    Columns ``source, dataset, task, metric, training_species, model, counts, includes_diagonal,
    value, ci_low, ci_high, n, citation, note``. ``model`` is the pipeline name for our rows;
    ``counts`` says which counts produced the number (ours: from ``counts``, "not recorded" when
    not given; published: the reference's ``counts`` column, e.g. "not stated");
    ``includes_diagonal`` is ``true``/``false``/``unknown``; species use common names.
    """
    aliases = dict(dataset_aliases or {})
    cols = ["source", "dataset", "task", "metric", "training_species", "model", "counts", "includes_diagonal",
            "value", "ci_low", "ci_high", "n", "citation", "note"]
    mine = pd.DataFrame(columns=cols)
    if len(ours):
        o = ours
        note = np.where(o["representation"] == "embedding",
                        "foundation-model embedding supplied by the user; linear model fitted here; ",
                        "")
        mine = pd.DataFrame({
            "source": COMPUTED,
            "dataset": [aliases.get(d, d) for d in o["dataset"]],
            "task": o["kind"].to_numpy(),
            "metric": o["metric"].to_numpy(),
            "training_species": [common_species_name(s) for s in o["training_species"]],
            "model": o["pipeline"].to_numpy(),
            "counts": [str((counts or {}).get(d, "not recorded")) for d in o["dataset"]],
            "includes_diagonal": np.where(o["includes_diagonal"].astype(bool), "true", "false"),
            "value": o["mean"].astype(float).to_numpy(),
            "ci_low": o["ci_low"].astype(float).to_numpy(),
            "ci_high": o["ci_high"].astype(float).to_numpy(),
            "n": o["n"].astype(int).to_numpy(),
            "citation": "this workflow (sclinbench)",
            "note": [f"{pre}mean over {n} target species; 95% bootstrap CI over target species"
                     for pre, n in zip(note, o["n"])],
        })
    ref = reference.copy()
    if only_matching:
        keys = set(zip(mine["dataset"], mine["task"], mine["metric"]))
        mask = np.array([k in keys for k in zip(ref["dataset"], ref["task"], ref["metric"])], dtype=bool)
        ref = ref[mask]
    pub = pd.DataFrame({
        "source": PUBLISHED, "dataset": ref["dataset"].to_numpy(), "task": ref["task"].to_numpy(),
        "metric": ref["metric"].to_numpy(),
        "training_species": [common_species_name(s) for s in ref["training_species"]],
        "model": ref["model"].to_numpy(),
        "counts": (ref["counts"].replace("", "not stated").to_numpy() if "counts" in ref.columns
                   else "not stated"),
        "includes_diagonal": ref["includes_diagonal"].to_numpy(),
        "value": ref["value"].astype(float).to_numpy(), "ci_low": np.nan, "ci_high": np.nan,
        "n": pd.NA, "citation": ref["citation"].to_numpy(), "note": ref["note"].to_numpy(),
    })
    parts = [p for p in (mine, pub) if len(p)]
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def _diag_label(flag: str) -> str:
    return {"true": "incl. same-species", "false": "excl. same-species"}.get(
        str(flag).lower(), "same-species unknown")


def published_wide(table: pd.DataFrame, controls: bool = True) -> pd.DataFrame:
    """One row per model (ours and published), one column per training species.

    Parameters
    ----------
    table
        Output of :func:`published_table`.
    controls
        Keep our control pipelines (only their without-diagonal rows are kept either way).

    Returns
    -------
    Columns ``dataset, model, source, counts, same-species score`` then one column per training species,
    then ``mean (species run here)`` (over the species that this run has, so ours and published
    are averaged over the same species) and ``mean (all its species)`` with ``n species``.
    Our rows come first.
    """
    base = ["dataset", "model", "source", "counts", "same-species score"]
    if table.empty:
        return pd.DataFrame(columns=base)
    t = table.copy()
    if not controls:
        t = t[~t["model"].isin(CONTROL_PIPELINES) | (t["source"] != COMPUTED)]
    t = t[~(t["model"].isin(CONTROL_PIPELINES) & (t["includes_diagonal"] == "true"))]
    t["same-species score"] = [_diag_label(d) for d in t["includes_diagonal"]]
    t["counts"] = t["counts"].fillna("not recorded").astype(str) if "counts" in t.columns else "not recorded"
    species = list(pd.unique(t["training_species"]))
    ours = t[t["source"] == COMPUTED]
    here = {(d, s) for d, s in zip(ours["dataset"], ours["training_species"])}
    t["_here"] = [(d, s) in here for d, s in zip(t["dataset"], t["training_species"])]
    wide = t.pivot_table(index=base, columns="training_species", values="value", aggfunc="first")
    wide = wide.reindex(columns=species)
    stats = t.groupby(base).agg(**{"n species": ("value", "size")})
    stats["mean (species run here)"] = t[t["_here"]].groupby(base)["value"].mean()
    stats["mean (all its species)"] = t.groupby(base)["value"].mean()
    wide = wide.join(stats[["mean (species run here)", "mean (all its species)", "n species"]])
    wide = wide.reset_index()
    wide["_o"] = [(s != COMPUTED, "incl." in d, m in CONTROL_PIPELINES) for s, d, m in
                  zip(wide["source"], wide["same-species score"], wide["model"])]
    wide = wide.sort_values(["dataset", "_o", "mean (species run here)"],
                            ascending=[True, True, False]).drop(columns="_o")
    wide.columns.name = None
    return wide.reset_index(drop=True)


# --------------------------------------------------------------------------- formatting

def format_ci(mean: float, lo: float, hi: float, n: int | None = None, digits: int = 3) -> str:
    """``"0.812 [0.801, 0.823]"``; a single unit reads ``"0.812 (n=1)"``; missing reads ``"–"``."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if n is not None and int(n) < 2 or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.{digits}f} (n={int(n) if n is not None else 1})"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def to_markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (floats to ``digits`` decimals, NaN as ``–``)."""
    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "–" if not np.isfinite(v) else f"{v:.{digits}f}"
        if v is None or v is pd.NA:
            return "–"
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _write_text(text: str, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _metric_wide(summary: pd.DataFrame, metrics: Iterable[str] = SCORE_METRICS) -> pd.DataFrame:
    """Pipelines as rows, one "mean [CI]" column per score metric present."""
    present = [m for m in metrics if m in set(summary["metric"])]
    s = summary[summary["metric"].isin(present)]
    base = ["pipeline", "role", "representation", "model"]
    if s.empty:
        return pd.DataFrame(columns=base)
    s = s.assign(text=[format_ci(a, b, c, n) for a, b, c, n in
                       zip(s["mean"], s["ci_low"], s["ci_high"], s["n"])])
    wide = s.pivot_table(index=base, columns="metric", values="text", aggfunc="first").reset_index()
    wide = wide[base + present].rename(columns={m: METRIC_LABELS.get(m, m) for m in present})
    main = s[s["metric"] == present[0]].set_index("pipeline")["mean"]
    wide["_role"] = (wide["role"] == "control").astype(int)
    wide["_score"] = -wide["pipeline"].map(main).fillna(-np.inf)
    wide = wide.sort_values(["_role", "_score", "pipeline"]).drop(columns=["_role", "_score"])
    wide.columns.name = None
    return wide.reset_index(drop=True)


_METHOD_NOTE = (
    "Mean over units with a 95% percentile-bootstrap interval over the same units (seeded). The unit is "
    "the fold; for cross-species tasks it is the training->target species pair and for novel-type "
    "tasks the held-out type, each averaged over its folds first. Cross-species rows leave out the "
    "same-species (held-out) pairs. Controls (majority class, shuffled labels) are listed last. "
    "'embedding' pipelines classify a user-supplied foundation-model embedding with a linear model "
    "fitted here (computed here, not published numbers)."
)


def _task_markdown(summary: pd.DataFrame, title: str) -> str:
    parts = [f"# {title}\n", _METHOD_NOTE + "\n"]
    for (dataset, task, split_kind), s in summary.groupby(["dataset", "task", "split_kind"], sort=True):
        unit = ", ".join(pd.unique(s["unit"]))
        n = int(s.loc[s["metric"] == "macro_f1", "n"].max()) if (s["metric"] == "macro_f1").any() \
            else int(s["n"].max())
        parts.append(f"\n## {dataset} — {task} ({split_kind}; unit: {unit}; n = {n})\n")
        parts.append(to_markdown(_metric_wide(s)))
    if summary.empty:
        parts.append("\nNo rows for this table in this run.\n")
    return "\n".join(parts)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def write_tables(metrics: pd.DataFrame, reference: pd.DataFrame | None, outdir: str | os.PathLike,
                 tasks: Iterable[str] | None = None, metric: str = "macro_f1", n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0,
                 dataset_aliases: Mapping[str, str] | None = None,
                 counts: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Write the summary tables (TSV + Markdown) into ``outdir`` (atomically).

    Files (always written, possibly with no rows, so the workflow's outputs are static):

    - ``summary.tsv|.md`` — every dataset x task x pipeline x metric (:func:`summarize`).
    - ``task~<task>.tsv|.md`` — the same, one file per task (``tasks``: names to write even if
      they have no rows; default the tasks in ``metrics``).
    - ``best_linear.tsv|.md`` — best method pipeline per dataset x task (:func:`best_linear`).
    - ``cross_species_pairs.tsv|.md`` — per ordered species pair (diagonal flagged).
    - ``cross_species_average.tsv|.md`` — per training species, without and with the diagonal.
    - ``published_comparison.tsv|.md`` — ours beside ``reference`` with a ``source`` column.

    Returns
    -------
    File stem (e.g. ``"summary"``) -> TSV path; the Markdown file sits beside it.
    """
    outdir = Path(outdir)
    m = check_metrics(metrics)
    summary = summarize(m, n_boot=n_boot, level=level, seed=seed)
    written: dict[str, Path] = {}

    def emit(stem: str, table: pd.DataFrame, markdown: str) -> None:
        write_table(table, outdir / f"{stem}.tsv")
        _write_text(markdown, outdir / f"{stem}.md")
        written[stem] = outdir / f"{stem}.tsv"

    emit("summary", summary, _task_markdown(summary, "All tasks: summary"))
    task_names = list(tasks) if tasks is not None else list(pd.unique(m["task"]))
    for task in task_names:
        s = summary[summary["task"] == task]
        emit(f"task~{_safe(task)}", s, _task_markdown(s, f"Task {task}"))

    best = best_linear(summary, metric=metric)
    best_md = best.assign(**{METRIC_LABELS.get(metric, metric): [
        format_ci(a, b, c, n) for a, b, c, n in zip(best["mean"], best["ci_low"], best["ci_high"], best["n"])]})
    emit("best_linear", best,
         f"# Best linear pipeline per dataset and task ({METRIC_LABELS.get(metric, metric)})\n\n"
         "Controls and foundation-model embeddings are never chosen.\n\n"
         + to_markdown(best_md[["dataset", "task", "split_kind", "pipeline", "representation", "model",
                                METRIC_LABELS.get(metric, metric), "unit"]]))

    pairs = cross_species_pairs(m, metric)
    pair_md = ["# Cross-species transfer: training species (rows) x target species (columns)\n",
               f"{METRIC_LABELS.get(metric, metric)}, mean over folds. The diagonal (marked *) is a "
               "held-out split of the training species itself, not a cross-species transfer.\n"]
    for (dataset, task, pipeline), p in pairs.groupby(["dataset", "task", "pipeline"], sort=True):
        mat = cross_species_matrix(m, pipeline, metric, dataset=dataset, task=task)
        shown = mat.apply(lambda col: [("–" if not np.isfinite(v) else
                                        f"{v:.3f}*" if r == col.name else f"{v:.3f}")
                                       for r, v in zip(mat.index, col)])
        pair_md.append(f"\n## {dataset} — {task} — {pipeline}\n")
        pair_md.append(to_markdown(shown.reset_index()))
    if pairs.empty:
        pair_md.append("\nNo cross-species task in this run.\n")
    emit("cross_species_pairs", pairs, "\n".join(pair_md))

    avg = pd.concat([cross_species_average(m, False, metric, n_boot, level, seed),
                     cross_species_average(m, True, metric, n_boot, level, seed)], ignore_index=True)
    avg_md = ["# Cross-species: mean over target species per training species\n",
              "Default rows leave the same-species (held-out) score out; rows that include it are "
              "labelled. 95% bootstrap CI over target species.\n"]
    if len(avg):
        a = avg.assign(value=[format_ci(x, y, z, n) for x, y, z, n in
                              zip(avg["mean"], avg["ci_low"], avg["ci_high"], avg["n"])],
                       column=[f"{p} ({'incl.' if d else 'excl.'} same-species)"
                               for p, d in zip(avg["pipeline"], avg["includes_diagonal"])])
        for (dataset, task), t in a.groupby(["dataset", "task"], sort=True):
            wide = t.pivot_table(index="training_species", columns="column", values="value",
                                 aggfunc="first")
            order_rows = list(pd.unique(t["training_species"]))
            order_cols = sorted(wide.columns, key=lambda c: ("incl." in c, c))
            wide = wide.reindex(index=order_rows, columns=order_cols).reset_index()
            wide.columns.name = None
            avg_md.append(f"\n## {dataset} — {task}\n")
            avg_md.append(to_markdown(wide.rename(columns={"training_species": "training species"})))
    else:
        avg_md.append("\nNo cross-species task in this run.\n")
    emit("cross_species_average", avg, "\n".join(avg_md))

    ref = reference if reference is not None else pd.DataFrame(columns=list(REFERENCE_COLUMNS))
    pub = published_table(ref, avg, dataset_aliases=dataset_aliases, counts=counts)
    pub_md = ["# Published foundation-model numbers beside ours\n",
              "Every column says its source: `published` (copied from the paper's figure, about "
              "+-0.01) or `computed here` (this run), and whether the same-species score is inside "
              "the average. Published averages do not say whether they include it (`unknown`). "
              "`counts` names the matrix the numbers were computed from: ours as read by this run "
              "(registry `counts:`), published ones as their source states it (`not stated` when it "
              "does not).\n"]
    if len(pub):
        pub_md.append(to_markdown(published_wide(pub)))
        cites = pub.loc[pub["source"] == PUBLISHED, ["model", "citation"]].drop_duplicates()
        if len(cites):
            pub_md.append("\nSources:\n")
            pub_md.extend(f"- {mod}: {cit}" for mod, cit in zip(cites["model"], cites["citation"]))
        if not (pub["source"] == PUBLISHED).any():
            pub_md.append("\nNo published numbers match the datasets of this run"
                          f" ({', '.join(sorted(set(pub['dataset'])))}).\n")
    else:
        pub_md.append("\nNo cross-species results in this run, so nothing to compare.\n")
    emit("published_comparison", pub, "\n".join(pub_md) + "\n")

    paired = paired_table(m, metric=metric, n_boot=n_boot, seed=seed)
    paired_md = ["# Paired comparisons on identical folds\n",
                 f"Difference in {METRIC_LABELS.get(metric, metric)} (a - b) per dataset and task, over the "
                 "folds (and species pairs) both pipelines share; 95% bootstrap CI over those pairs; "
                 "'a better' counts the pairs where a scored higher. Cross-species rows leave the "
                 "same-species pairs out.\n"]
    paired_md.append(to_markdown(paired) if len(paired) else "\nFewer than two method pipelines in this run.\n")
    emit("paired_comparison", paired, "\n".join(paired_md) + "\n")
    return written


def paired_table(metrics: pd.DataFrame, metric: str = "macro_f1", n_boot: int = 2000,
                 seed: int = 0) -> pd.DataFrame:
    """Every pair of method pipelines (never controls) compared on the same folds, per dataset x task."""
    from itertools import combinations

    from sclinbench.metrics import paired_comparison

    m = metrics[(metrics["role"] == "method") & (metrics["fold"] >= 0)]
    m = m[~_is_diagonal(m)] if len(m) else m
    frames = []
    for (dataset, task), part in m.groupby(["dataset", "task"], sort=True):
        for a, b in combinations(sorted(pd.unique(part["pipeline"])), 2):
            frames.append(paired_comparison(part, a, b, metric=metric, n_boot=n_boot, seed=seed))
    cols = ["dataset", "task", "a", "b", "metric", "mean_difference", "ci_low", "ci_high", "n", "a_better"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------- results README

def write_results_readme(metrics: pd.DataFrame, reference: pd.DataFrame | None,
                         path: str | os.PathLike, metric: str = "macro_f1",
                         provenance: Mapping | None = None, n_boot: int = 2000,
                         level: float = 0.95, seed: int = 0,
                         dataset_aliases: Mapping[str, str] | None = None,
                         counts: Mapping[str, str] | None = None) -> Path:
    """Write ``results/README.md``: the headline numbers of the run in one table.

    One row per dataset x task x split kind: the best linear pipeline, its mean [95% CI] and the
    two controls beside it, then the cross-species averages (ours without and with the same-species
    score; published foundation models, labelled) and a pointer to the detailed tables.
    """
    m = check_metrics(metrics)
    summary = summarize(m, n_boot=n_boot, level=level, seed=seed)
    s = summary[summary["metric"] == metric]
    best = best_linear(summary, metric=metric)
    label = METRIC_LABELS.get(metric, metric)
    rows = []
    for r in best.itertuples(index=False):
        here = s[(s["dataset"] == r.dataset) & (s["task"] == r.task) & (s["split_kind"] == r.split_kind)]
        ctrl = {}
        for c in CONTROL_PIPELINES:
            x = here[here["pipeline"] == c]
            ctrl[c] = format_ci(*x[["mean", "ci_low", "ci_high", "n"]].iloc[0]) if len(x) else "not run"
        rows.append({"dataset": r.dataset, "task": r.task, "split": r.split_kind,
                     "best linear pipeline": r.pipeline,
                     f"{label} mean [95% CI]": format_ci(r.mean, r.ci_low, r.ci_high, r.n),
                     "majority-class control": ctrl["control_majority"],
                     "shuffled-label control": ctrl["control_shuffled"],
                     "n (unit)": f"{int(r.n)} ({r.unit})"})
    lines = ["# sclinbench results\n",
             "Generated by the workflow from `results/metrics.tsv`; do not edit by hand.\n",
             f"## Headline: best linear pipeline per dataset and task ({label})\n",
             to_markdown(pd.DataFrame(rows)) if rows else "No method pipeline was scored in this run.\n",
             "\n" + _METHOD_NOTE + "\n"]
    avg = cross_species_average(m, False, metric, n_boot, level, seed)
    if len(avg):
        avg_in = cross_species_average(m, True, metric, n_boot, level, seed)
        ref = reference if reference is not None else pd.DataFrame(columns=list(REFERENCE_COLUMNS))
        pub = published_table(ref, pd.concat([avg, avg_in], ignore_index=True),
                              dataset_aliases=dataset_aliases, counts=counts)
        overall = published_wide(pub)[["dataset", "model", "source", "counts", "same-species score",
                                       "mean (species run here)", "mean (all its species)",
                                       "n species"]]
        lines += [f"\n## Cross-species: {label} averaged over target species, then over training species\n",
                  "Our averages leave the same-species score out unless the row says "
                  "'incl. same-species'. Published numbers are read off a figure (about +-0.01); "
                  "their source does not say whether the same-species score is included. "
                  "'mean (species run here)' averages every row over the same training species, "
                  "those of this run.\n",
                  to_markdown(overall)]
    lines += ["\n## Files\n",
              "- `tables/`: every summary (TSV + Markdown), per task, cross-species matrices and "
              "averages, the published comparison.",
              "- `figures/`: PNG (300 dpi) and PDF of every figure.",
              "- `metrics.tsv`: one score per dataset x task x pipeline x fold (x group) x metric.",
              "- `provenance.json` / `provenance.md`: package versions, config hash, git commit, "
              "dataset checksums.\n"]
    if provenance:
        lines += ["## Provenance\n",
                  f"- git commit: `{provenance.get('git_commit', 'unknown')}`",
                  f"- config sha256: `{provenance.get('config_sha256', 'unknown')}`",
                  f"- sclinbench {provenance.get('packages', {}).get('sclinbench', 'unknown')}, "
                  f"Python {provenance.get('python', 'unknown')}\n"] + code_lines(provenance)
    return _write_text("\n".join(lines), path)


# --------------------------------------------------------------------------- provenance

sha256_file = sha256sum  # hex sha256 of a file, read in chunks (one implementation, in download.py)


def config_hash(config: Mapping) -> str:
    """sha256 of the config as canonical JSON (sorted keys), independent of YAML formatting."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _git(repo_dir: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def provenance(config: Mapping, datasets_checksums: Mapping[str, str],
               packages: Iterable[str] = DEFAULT_PACKAGES, repo_dir: str | os.PathLike = ".",
               extra: Mapping | None = None, code: Mapping | None = None) -> dict:
    """What produced these results: versions, config hash, git commit, dataset checksums, code.

    Parameters
    ----------
    config
        The workflow config as loaded (a dict).
    datasets_checksums
        Dataset name -> sha256 of its raw file (as recorded at fetch/standardize time).
    packages
        Distribution names whose installed versions are recorded (``"not installed"`` if absent).
    repo_dir
        Git work tree of the workflow; commit is ``"unknown"`` outside git.
    extra
        Anything else to record (merged at the top level).
    code
        Which code made each step's files (:func:`sclinbench.fingerprint.code_provenance`),
        recorded under ``"code"``.
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    repo = Path(repo_dir)
    commit = _git(repo, "rev-parse", "HEAD") or "unknown"
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    prov = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": commit,
        "git_dirty": None if dirty is None else bool(dirty),
        "config_sha256": config_hash(config),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": versions,
        "datasets_sha256": {str(k): str(v) for k, v in sorted(datasets_checksums.items())},
    }
    if code is not None:
        prov["code"] = dict(code)
    if extra:
        prov.update(dict(extra))
    return prov


def code_lines(prov: Mapping | None) -> list[str]:
    """Markdown: which code made the results on disk, and any file made by other code than the installed."""
    code = (prov or {}).get("code")
    if not code:
        return []
    version = code.get("version", "unknown")
    other = code.get("other_code", [])
    n_recorded = sum(m["files"] for step in code.get("steps", {}).values() for m in step["made_by"])
    lines = ["## Code that made these results\n"]
    if other:
        rows = {}
        for o in other:
            row = rows.setdefault(o["rule"], {"step": o["rule"], "files": 0, "changed modules": set(),
                                              "made by version": set(), "e.g.": f"`{o['file']}`"})
            row["files"] += 1
            row["changed modules"].update(o["changed"] or ["(not fingerprinted)"])
            row["made by version"].add(str(o["version"]))
        table = pd.DataFrame([{**r, "changed modules": ", ".join(sorted(r["changed modules"])),
                               "made by version": ", ".join(sorted(r["made by version"]))}
                              for r in rows.values()])
        lines += [f"**{len(other)} of {n_recorded} result files (and whatever was computed from them) were "
                  f"made by other code than the installed sclinbench {version}.** Run `snakemake` with "
                  "its default rerun triggers (not `--rerun-triggers mtime`) to remake them.\n",
                  to_markdown(table)]
    else:
        lines.append(f"All {n_recorded} result files these tables and figures were computed from that have "
                     f"a job record were made by the installed sclinbench {version} (per-step code "
                     "fingerprints in `provenance.json`).")
    without = code.get("without_record", [])
    if without:
        shown = ", ".join(f"`{f}`" for f in without[:5]) + (f" and {len(without) - 5} more" if len(without) > 5 else "")
        lines.append(f"\nWithout a job record (source files, or results whose log is gone): {shown}.")
    return lines + [""]


def write_provenance(prov: Mapping, json_path: str | os.PathLike,
                     md_path: str | os.PathLike | None = None) -> None:
    """Write :func:`provenance` output as JSON and (optionally) a Markdown summary, atomically."""
    _write_text(json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n", json_path)
    if md_path is None:
        return
    lines = ["# Provenance\n",
             f"- created (UTC): {prov.get('created_utc', 'unknown')}",
             f"- git commit: `{prov.get('git_commit', 'unknown')}`"
             + (" (work tree had uncommitted changes)" if prov.get("git_dirty") else ""),
             f"- config sha256: `{prov.get('config_sha256', 'unknown')}`",
             f"- Python {prov.get('python', '?')} on {prov.get('platform', '?')}\n",
             "## Packages\n",
             to_markdown(pd.DataFrame(sorted(prov.get("packages", {}).items()),
                                      columns=["package", "version"])),
             "\n## Datasets (sha256 of the raw file)\n",
             to_markdown(pd.DataFrame(sorted(prov.get("datasets_sha256", {}).items()),
                                      columns=["dataset", "sha256"]))]
    if prov.get("code"):
        steps = [{"step": rule, "installed code": f"`{step['installed']}`",
                  "files made by it": sum(m["files"] for m in step["made_by"] if m["installed_code"]),
                  "by other code": sum(m["files"] for m in step["made_by"] if not m["installed_code"])}
                 for rule, step in prov["code"].get("steps", {}).items()]
        lines += ["\n" + "\n".join(code_lines(prov)), to_markdown(pd.DataFrame(steps))]
    _write_text("\n".join(lines), md_path)


# --------------------------------------------------------------------------- standalone HTML

def write_html_gallery(figures: Mapping[str, str | os.PathLike], path: str | os.PathLike,
                       title: str = "sclinbench figures",
                       captions: Mapping[str, str] | None = None,
                       tables: Mapping[str, str | os.PathLike] | None = None) -> Path:
    """A single self-contained HTML page with every figure embedded (PNG as base64 data URIs).

    Opens offline in any browser (no Snakemake needed), e.g. to look at a run on a cluster.

    Parameters
    ----------
    figures
        Name -> PNG path, shown in this order.
    path
        Output ``.html``.
    title
        Page title and heading.
    captions
        Name -> caption text (plain text).
    tables
        Name -> Markdown/TSV file shown verbatim (preformatted) below the figures.
    """
    import base64
    import html

    captions = dict(captions or {})
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "figure{margin:2em 0;border-top:1px solid #ddd;padding-top:1em}"
             "img{max-width:100%;height:auto}figcaption{font-size:0.9em;color:#444}"
             "pre{font-size:0.75em;overflow-x:auto;background:#f6f6f6;padding:0.5em}</style>",
             "</head><body>", f"<h1>{html.escape(title)}</h1>"]
    for name, png in figures.items():
        png = Path(png)
        if not png.exists():
            raise SclinbenchError(f"{png}: figure not found; run the figures step first")
        raw = png.read_bytes()
        data = base64.b64encode(raw).decode("ascii")
        # show figures at their print proportions: a 7.2-in (double-column) figure fills the page
        px = int.from_bytes(raw[16:20], "big") if raw[12:16] == b"IHDR" else 2160
        pct = max(20, min(100, round(100 * px / 2160)))
        parts.append(f"<figure id='{html.escape(name)}'><h2>{html.escape(name)}</h2>"
                     f"<img alt='{html.escape(name)}' style='width:{pct}%' "
                     f"src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(captions.get(name, ''))}</figcaption></figure>")
    for name, table in (tables or {}).items():
        parts.append(f"<section><h2>{html.escape(name)}</h2><pre>"
                     f"{html.escape(Path(table).read_text())}</pre></section>")
    parts.append("</body></html>")
    return _write_text("\n".join(parts) + "\n", path)
