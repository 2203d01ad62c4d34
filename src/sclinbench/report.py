"""Tables, the results README and provenance from the tables of the score stage.

The score stage (:mod:`sclinbench.intervals`) has every pipeline's predictions of one dataset x task
and writes the numbers: pooled out-of-fold scores with intervals that resample what the split holds
out (``results/summary.tsv``) and paired differences on the same draws (``results/paired.tsv``).
This module only reads, selects and formats them (and ``results/metrics.tsv``, the per-fold scores,
and the published numbers of ``config/reference_results.tsv``).

Conventions (also stated in every written table):

- **Intervals**: a one-line statement in every table; units named per row; none from fewer than
  3 units (the per-unit values and "too few units for an interval" instead).
- **Selection**: the headline shows the pipelines declared before the run (config
  ``report: {declared: [...]}``) beside the best linear pipeline of the grid, which is marked
  "chosen on the evaluation folds: optimistic". kNN (family ``nonlinear``) is never in a linear
  table; novel-type tasks rank by novelty AUROC.
- **Controls**: every task where the best method does not beat the best control beyond the
  interval of their paired difference is flagged "no signal over control".
- **Cross-species** scores cover the labels both species share; averages leave out the same-species
  cross-validation unless asked (``includes_diagonal``), except the headline of tasks with
  ``protocol: paper``, which average every pair including it, as Souza & Mehta did.
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
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from sclinbench.errors import SclinbenchError
from sclinbench.download import sha256sum
from sclinbench.io import atomic_path, write_table
from sclinbench.intervals import MIN_UNITS, PAIRED_COLUMNS, SUMMARY_COLUMNS, TOO_FEW
from sclinbench.metrics import LABEL_COLUMNS, METRICS_TSV_COLUMNS

#: Columns of ``results/metrics.tsv`` (``repeat`` may be missing in older tables: read as 0).
METRICS_COLUMNS = tuple(METRICS_TSV_COLUMNS)
#: Classification scores in display order; other metrics (counts such as ``n_test_cells``) are
#: in the TSV tables but left out of the Markdown views.
SCORE_METRICS = ("macro_f1", "novelty_auroc", "balanced_accuracy", "accuracy", "macro_precision",
                 "macro_recall", "auroc_ovr", "macro_f1_all_target_labels", "known_accuracy")
METRIC_LABELS = {
    "macro_f1": "macro F1", "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy",
    "macro_precision": "macro precision", "macro_recall": "macro recall",
    "auroc_ovr": "AUROC (macro one-vs-rest)",
    "macro_f1_all_target_labels": "macro F1 over all target labels",
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
    if "repeat" not in metrics.columns:
        metrics = metrics.assign(repeat=0)
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
    out["repeat"] = pd.to_numeric(out["repeat"], errors="coerce").fillna(0).astype(int)
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


# --------------------------------------------------------------------------- summaries (score stage)

#: Columns of ``results/summary.tsv`` (one row per dataset x task x pipeline x group x metric).
SUMMARY_TSV_COLUMNS = (LABEL_COLUMNS + ["pipeline", "role", "family", "representation", "model"]
                       + [c for c in SUMMARY_COLUMNS if c != "pipeline"])
PAIRED_TSV_COLUMNS = LABEL_COLUMNS + PAIRED_COLUMNS
OPTIMISTIC = "chosen on the evaluation folds: optimistic"
NO_SIGNAL = "no signal over control"
SIGNAL = "beats the best control"
UNTESTED = "not testable: too few units"
#: Pipelines the tables show beside the best of the grid when the config declares none.
DEFAULT_DECLARED = ("rankz_centroid", "log1p_pca_logreg")
SCOPE_LABELS = {"": "", "same-species": "same-species cross-validation",
                "incl. same-species": "all pairs incl. same-species"}


def headline_metric(kind: str) -> str:
    """The metric that ranks pipelines of a task kind (novel types: novelty AUROC)."""
    return "novelty_auroc" if kind == "novel_type" else "macro_f1"


def headline_group(kind: str, protocol: str = "strict") -> str:
    """The summary group of a task's headline: cross-species tasks of the paper's protocol average
    every pair including the same-species one (as Souza & Mehta); everything else group ``""``."""
    return "incl. same-species" if kind == "cross_species" and protocol == "paper" else ""


def _strings(df: pd.DataFrame, cols) -> pd.DataFrame:
    for c in cols:
        if c in df.columns:
            df[c] = df[c].fillna("").astype(str)
    return df


def check_summary(summary: pd.DataFrame, where: str = "summary table") -> pd.DataFrame:
    """A cleaned copy of ``results/summary.tsv`` (numbers as float, labels as str) or a one-line error."""
    missing = [c for c in SUMMARY_TSV_COLUMNS if c not in summary.columns]
    if missing:
        raise SclinbenchError(f"{where}: missing column(s) {', '.join(missing)}; rerun the score and "
                              "metrics steps that write it")
    out = _strings(summary.copy(), LABEL_COLUMNS + ["pipeline", "role", "family", "representation", "model",
                                                    "group", "metric", "unit", "interval", "unit_values"])
    for c in ("value", "ci_low", "ci_high", "n_units", "n_repeats", "repeat_sd", "repeat_min", "repeat_max"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    return out


def read_summary(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"{path}: summary table not found; run the score/metrics steps first")
    return check_summary(pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False), where=str(path))


def read_paired(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"{path}: paired-comparison table not found; run the score/metrics steps first")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in PAIRED_TSV_COLUMNS if c not in df.columns]
    if missing:
        raise SclinbenchError(f"{path}: missing column(s) {', '.join(missing)}; rerun the metrics step")
    df = _strings(df, LABEL_COLUMNS + ["group", "a", "b", "metric", "unit", "interval", "verdict"])
    for c in ("difference", "ci_low", "ci_high", "n_units"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


def read_unseen(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"{path}: unseen-label table not found; run the metrics step first")
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "n" in df.columns:
        df["n"] = pd.to_numeric(df["n"], errors="coerce").fillna(0).astype(int)
    return df


def tasks_of(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x task: kind, split, protocol, headline metric and group."""
    t = summary[LABEL_COLUMNS].drop_duplicates().sort_values(["dataset", "task"]).reset_index(drop=True)
    t["metric"] = [headline_metric(k) for k in t["kind"]]
    t["group"] = [headline_group(k, p) for k, p in zip(t["kind"], t["protocol"])]
    return t


def headline_rows(summary: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Each task's headline rows (its headline group; its headline metric unless ``metric``)."""
    t = tasks_of(summary)
    if metric is not None:
        t["metric"] = metric
    keys = LABEL_COLUMNS + ["group", "metric"]
    return summary.merge(t[keys], on=keys, how="inner")


def summary_view(summary: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Summary rows at each task's headline group in the figure-friendly form
    (``mean`` = value, ``n`` = units), every metric."""
    s = check_summary(summary)
    if group is None:
        t = tasks_of(s)[LABEL_COLUMNS + ["group"]]
        s = s.merge(t, on=LABEL_COLUMNS + ["group"], how="inner")
    else:
        s = s[s["group"] == group]
    s = s[s["interval"] != "count (no interval)"]
    return s.rename(columns={"value": "mean", "n_units": "n"}).reset_index(drop=True)


def _pick_best(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows[rows["value"].notna()].sort_values(["dataset", "task", "value", "pipeline"],
                                                   ascending=[True, True, False, True])
    return rows.groupby(["dataset", "task"], sort=True).head(1).reset_index(drop=True)


def best_of_grid(summary: pd.DataFrame, family: str | None = "linear", metric: str | None = None,
                 exclude_representations: Iterable[str] = ("embedding",)) -> pd.DataFrame:
    """The best method pipeline of a family per dataset x task (never a control), by the headline
    metric of the task's headline group. It is chosen on the evaluation folds, which makes its
    score optimistic: rows carry ``selection`` saying so.

    ``family=None`` takes every family; kNN (``nonlinear``) is never the best of ``linear``.
    """
    s = headline_rows(check_summary(summary), metric)
    s = s[(s["role"] == "method") & ~s["representation"].isin(list(exclude_representations))]
    if family is not None:
        s = s[s["family"] == family]
    best = _pick_best(s)
    best["selection"] = OPTIMISTIC
    return best


def best_control(summary: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The control with the highest headline score per dataset x task."""
    s = headline_rows(check_summary(summary), metric)
    return _pick_best(s[s["role"] == "control"])


def paired_difference(paired: pd.DataFrame, dataset: str, task: str, group: str, metric: str,
                      a: str, b: str) -> dict | None:
    """``a - b`` from the paired table (stored once per unordered pair), or None."""
    p = paired[(paired["dataset"] == dataset) & (paired["task"] == task) & (paired["group"] == group)
               & (paired["metric"] == metric)]
    hit = p[(p["a"] == a) & (p["b"] == b)]
    sign = 1.0
    if hit.empty:
        hit, sign = p[(p["a"] == b) & (p["b"] == a)], -1.0
    if hit.empty:
        return None
    r = hit.iloc[0]
    lo, hi = (r["ci_low"], r["ci_high"]) if sign > 0 else (-r["ci_high"], -r["ci_low"])
    return {"difference": sign * r["difference"], "ci_low": lo, "ci_high": hi, "n_units": r["n_units"],
            "unit": r["unit"], "interval": r["interval"]}


def signal_over_control(summary: pd.DataFrame, paired: pd.DataFrame, family: str | None = "linear") -> pd.DataFrame:
    """Per dataset x task: does the best method beat the best control beyond the interval of their
    paired (same-draw) difference? ``signal`` is :data:`SIGNAL`, :data:`NO_SIGNAL` or
    :data:`UNTESTED` (fewer than 3 units)."""
    best, ctrl = best_of_grid(summary, family), best_control(summary)
    rows = []
    for r in best.itertuples(index=False):
        c = ctrl[(ctrl["dataset"] == r.dataset) & (ctrl["task"] == r.task)]
        if c.empty:
            continue
        c = c.iloc[0]
        d = paired_difference(paired, r.dataset, r.task, r.group, r.metric, r.pipeline, c["pipeline"])
        if d is None or not np.isfinite(d["ci_low"]):
            verdict = UNTESTED
        else:
            verdict = SIGNAL if d["ci_low"] > 0 else NO_SIGNAL
        rows.append({"dataset": r.dataset, "task": r.task, "metric": r.metric, "group": r.group,
                     "best": r.pipeline, "control": c["pipeline"],
                     "difference": np.nan if d is None else d["difference"],
                     "ci_low": np.nan if d is None else d["ci_low"],
                     "ci_high": np.nan if d is None else d["ci_high"], "signal": verdict})
    cols = ["dataset", "task", "metric", "group", "best", "control", "difference", "ci_low", "ci_high", "signal"]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- cross-species

def _pair_groups(groups: pd.Series) -> np.ndarray:
    return groups.str.fullmatch(r"[^>*]+->[^>*]+").to_numpy(bool)


def cross_species_pairs(summary: pd.DataFrame, metric: str = "macro_f1") -> pd.DataFrame:
    """Per pipeline and ordered species pair: the pooled score with its interval (over the target's
    donors or cells); the diagonal is the within-species cross-validation.

    Returns
    -------
    Columns ``dataset, task, protocol, pipeline, role, family, representation, model,
    training_species, target_species, same_species, metric, mean, ci_low, ci_high, n, unit``.
    """
    s = check_summary(summary)
    s = s[(s["kind"] == "cross_species") & (s["metric"] == metric)]
    s = s[_pair_groups(s["group"])]
    cols = ["dataset", "task", "protocol", "pipeline", "role", "family", "representation", "model",
            "training_species", "target_species", "same_species", "metric", "mean", "ci_low", "ci_high", "n",
            "unit"]
    if s.empty:
        return pd.DataFrame(columns=cols)
    pairs = [parse_species_pair(g, where="summary table") for g in s["group"]]
    s = s.assign(training_species=[a for a, _ in pairs], target_species=[b for _, b in pairs],
                 same_species=[a == b for a, b in pairs])
    return s.rename(columns={"value": "mean", "n_units": "n"})[cols].reset_index(drop=True)


def _only(values, what: str, hint: str) -> str:
    values = list(pd.unique(pd.Series(values)))
    if len(values) != 1:
        raise SclinbenchError(f"cross-species results: {len(values)} {what} ({', '.join(map(str, values))}); "
                              f"{hint}")
    return values[0]


def cross_species_matrix(summary: pd.DataFrame, pipeline: str, metric: str = "macro_f1",
                         dataset: str | None = None, task: str | None = None,
                         species_order: Iterable[str] | None = None) -> pd.DataFrame:
    """Training species (rows) x target species (columns) matrix of one pipeline's score.

    The diagonal is the within-species cross-validation; the off-diagonal cells are transfers
    (scored over the labels both species share). Missing pairs are NaN.
    """
    pairs = cross_species_pairs(summary, metric)
    if dataset is not None:
        pairs = pairs[pairs["dataset"] == dataset]
    if task is not None:
        pairs = pairs[pairs["task"] == task]
    pairs = pairs[pairs["pipeline"] == pipeline]
    if pairs.empty:
        raise SclinbenchError(f"cross-species results: no {metric!r} rows for pipeline {pipeline!r}"
                              f"{'' if dataset is None else ' on dataset ' + repr(dataset)}; "
                              "check the pipeline name and that a cross_species task ran")
    _only(pairs["dataset"], "datasets", "pass dataset=")
    _only(pairs["task"], "tasks", "pass task=")
    if species_order is None:
        species_order = sorted(pd.unique(pd.concat([pairs["training_species"], pairs["target_species"]])))
    order = list(species_order)
    mat = pairs.pivot(index="training_species", columns="target_species", values="mean")
    mat = mat.reindex(index=[s for s in order if s in mat.index], columns=[s for s in order if s in mat.columns])
    mat.index.name, mat.columns.name = "training species", "target species"
    return mat


def cross_species_average(summary: pd.DataFrame, include_diagonal: bool = False,
                          metric: str = "macro_f1") -> pd.DataFrame:
    """Mean score over target species, per training species and pipeline (score stage rows
    ``a->*`` and ``a->* incl. same-species``; interval over target species, none from < 3).

    Returns
    -------
    Columns ``dataset, task, kind, protocol, pipeline, role, family, representation, model,
    training_species, metric, includes_diagonal, mean, ci_low, ci_high, n, interval`` where
    ``metric`` is ``"<metric>_mean_over_targets"`` and ``n`` the number of target species.
    """
    s = check_summary(summary)
    suffix = "->* incl. same-species" if include_diagonal else "->*"
    s = s[(s["kind"] == "cross_species") & (s["metric"] == metric) & s["group"].str.endswith(suffix)]
    if not include_diagonal:
        s = s[~s["group"].str.contains("incl.")]
    cols = ["dataset", "task", "kind", "protocol", "pipeline", "role", "family", "representation", "model",
            "training_species", "metric", "includes_diagonal", "mean", "ci_low", "ci_high", "n", "interval"]
    if s.empty:
        return pd.DataFrame(columns=cols)
    s = s.assign(training_species=s["group"].str.slice(0, -len(suffix)), metric=f"{metric}_mean_over_targets",
                 includes_diagonal=bool(include_diagonal))
    return s.rename(columns={"value": "mean", "n_units": "n"})[cols].reset_index(drop=True)


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
            "note": [f"{pre}mean over {n} target species; {iv}" for pre, n, iv in
                     zip(note, o["n"], o["interval"] if "interval" in o.columns else
                         ["bootstrap interval over target species"] * len(o))],
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

def format_ci(mean: float, lo: float, hi: float, n: int | None = None, digits: int = 3,
              unit_values: str = "") -> str:
    """``"0.812 [0.801, 0.823]"``; without an interval (fewer than 3 units) the value, the per-unit
    values and ``"too few units for an interval"``; missing reads ``"–"``."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if n is not None and np.isfinite(n) and int(n) < MIN_UNITS or not (np.isfinite(lo) and np.isfinite(hi)):
        detail = f"{unit_values}; " if unit_values else ""
        count = f"n={int(n)}; " if n is not None and np.isfinite(n) else ""
        return f"{mean:.{digits}f} ({detail}{count}{TOO_FEW})"
    if hi - lo < 0.5 * 10 ** -digits:  # e.g. 8 of 8 donors right: a [1.000, 1.000] interval would read as certainty
        count = f" of the {int(n)} units" if n is not None and np.isfinite(n) else ""
        return f"{mean:.{digits}f} (every resample{count} gives {lo:.{digits}f}: no spread to show)"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def format_row(r, digits: int = 3) -> str:
    """A summary row as text: value [interval], and the spread over repeats of a shuffled control."""
    get = r.get if isinstance(r, Mapping) else (lambda k, d=None: getattr(r, k, d))
    value = get("value", get("mean"))
    n = get("n_units", get("n"))
    text = format_ci(value, get("ci_low"), get("ci_high"), n, digits, get("unit_values", "") or "")
    reps = get("n_repeats", 1)
    if reps is not None and np.isfinite(reps) and reps > 1 and np.isfinite(get("repeat_min", np.nan)):
        text += (f"; {int(reps)} repeats {get('repeat_min'):.{digits}f}–{get('repeat_max'):.{digits}f} "
                 f"(sd {get('repeat_sd'):.{digits}f})")
    return text


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


def interval_line(level: float = 0.95, n_boot: int | None = None) -> str:
    """The one line every table states about its intervals."""
    draws = f", {n_boot} draws" if n_boot else ""
    return (f"Intervals: {int(round(level * 100))}% percentile bootstrap (seeded{draws}) over the units the "
            "split holds out, named per row (held-out donors, with the metric recomputed from their "
            "pooled out-of-fold predictions; cells, or donors when there are >= 3, of a stratified "
            "cross-validation; species pairs; held-out types); fewer than 3 units: the per-unit values "
            "and 'too few units for an interval'.")


def score_label(metric: str, kind: str, group: str = "") -> str:
    """What a number is: the metric and, for cross-species rows, which pairs and labels it covers."""
    label = METRIC_LABELS.get(metric, metric)
    if kind != "cross_species":
        return label
    if metric == "macro_f1_all_target_labels":
        labels = ""
    elif metric in ("macro_f1", "macro_precision", "macro_recall", "accuracy", "balanced_accuracy", "auroc_ovr"):
        labels = ", shared labels"
    else:
        labels = ""
    scope = {"": "transfer pairs, excl. same-species", "same-species": "same-species cross-validation",
             "incl. same-species": "all pairs incl. same-species (paper's average)"}.get(
        group, "per species pair" if "->" in group else group)
    return f"{label} ({scope}{labels})"


def _metric_wide(rows: pd.DataFrame, metrics: Iterable[str] = SCORE_METRICS, kind: str = "",
                 group: str = "") -> pd.DataFrame:
    """Pipelines as rows, one "value [CI]" column per score metric present."""
    present = [m for m in metrics if m in set(rows["metric"])]
    s = rows[rows["metric"].isin(present)]
    base = ["pipeline", "role", "family", "representation", "model"]
    if s.empty:
        return pd.DataFrame(columns=base)
    s = s.assign(text=[format_row(r) for r in s.to_dict("records")])
    wide = s.pivot_table(index=base, columns="metric", values="text", aggfunc="first").reset_index()
    wide = wide[base + present].rename(columns={m: METRIC_LABELS.get(m, m) for m in present})
    main = s[s["metric"] == present[0]].set_index("pipeline")["value"]
    wide["_role"] = (wide["role"] == "control").astype(int)
    wide["_score"] = -wide["pipeline"].map(main).fillna(-np.inf)
    wide = wide.sort_values(["_role", "_score", "pipeline"]).drop(columns=["_role", "_score"])
    wide.columns.name = None
    return wide.reset_index(drop=True)


_METHOD_NOTE = (
    "Scores are computed from the pooled out-of-fold predictions (every test cell once; a fold whose "
    "test set holds one class has no macro F1 of its own). Cross-species tasks: transfer pairs train "
    "on every cell of the training species and are scored over the labels both species share "
    "(`macro_f1_all_target_labels` counts every target label); the same-species cross-validation is "
    "reported apart. Controls: majority class (constant scores, AUROC 0.5 by definition) and shuffled "
    "training labels (a new permutation per fold, repeated; mean over repeats, their range and sd beside). "
    "Under leave-one-donor-out splits both controls fall below chance (each fold's training set holds "
    "fewer samples of the held-out donor's class, so class-frequency rules anti-learn): read them as lower "
    "bounds there. "
    "'embedding' pipelines classify a user-supplied foundation-model embedding with a linear model "
    "fitted here (computed here, not published numbers)."
)


def _task_markdown(summary: pd.DataFrame, title: str, level: float = 0.95, n_boot: int | None = None) -> str:
    parts = [f"# {title}\n", _METHOD_NOTE + "\n", interval_line(level, n_boot) + "\n"]
    if summary.empty:
        parts.append("\nNo rows for this table in this run.\n")
        return "\n".join(parts)
    for r in tasks_of(summary).itertuples(index=False):
        s = summary[(summary["dataset"] == r.dataset) & (summary["task"] == r.task)]
        groups = [""] + (["same-species", "incl. same-species"] if r.kind == "cross_species" else [])
        for g in groups:
            part = s[(s["group"] == g) & (s["interval"] != "count (no interval)")]
            if part.empty:
                continue
            interval = "; ".join(pd.unique(part["interval"]))
            scope = f" — {SCOPE_LABELS.get(g, g)}" if g else (" — transfer pairs (excl. same-species)"
                                                              if r.kind == "cross_species" else "")
            parts.append(f"\n## {r.dataset} — {r.task} ({r.split_kind}, protocol: {r.protocol}){scope}\n")
            parts.append(f"Interval: {interval}.\n")
            parts.append(to_markdown(_metric_wide(part, kind=r.kind, group=g)))
    return "\n".join(parts)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def headline_table(summary: pd.DataFrame, paired: pd.DataFrame,
                   declared: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per dataset x task: the declared pipelines, the best linear pipeline of the grid
    (chosen on the evaluation folds: optimistic), every control, and whether the best beats the
    best control beyond the interval of their paired difference.

    Cross-species tasks get two rows, like beside like: the strict average over transfer pairs and
    the paper's average over every pair including the same-species one (``protocol`` column); the
    task's own protocol comes first.
    """
    s = check_summary(summary)
    declared = list(DEFAULT_DECLARED if declared is None else declared)
    controls = sorted(pd.unique(s.loc[s["role"] == "control", "pipeline"]))
    rows = []
    for t in tasks_of(s).itertuples(index=False):
        views = [(t.group, t.protocol)]
        if t.kind == "cross_species":
            other = ("", "strict") if t.group else ("incl. same-species", "paper")
            views.append(other)
        task_rows = s[(s["dataset"] == t.dataset) & (s["task"] == t.task) & (s["metric"] == t.metric)]
        for group, protocol in views:
            here = task_rows[task_rows["group"] == group]
            if here.empty:
                continue

            def cell(name):
                x = here[here["pipeline"] == name]
                return format_row(x.iloc[0].to_dict()) if len(x) else "not run"

            row = {"dataset": t.dataset, "task": t.task, "protocol": protocol, "split": t.split_kind,
                   "score": score_label(t.metric, t.kind, group)}
            for name in declared:
                row[f"{name} (declared)"] = cell(name)
            methods = here[(here["role"] == "method") & (here["family"] == "linear")
                           & (here["representation"] != "embedding") & here["value"].notna()]
            best = methods.sort_values(["value", "pipeline"], ascending=[False, True]).head(1)
            row["best linear of the grid (" + OPTIMISTIC + ")"] = (
                f"{best.iloc[0]['pipeline']}: {format_row(best.iloc[0].to_dict())}" if len(best) else "–")
            for c in controls:
                row[c] = cell(c)
            ctrl = here[(here["role"] == "control") & here["value"].notna()].sort_values(
                ["value", "pipeline"], ascending=[False, True]).head(1)
            verdict = "–"
            if len(best) and len(ctrl):
                d = paired_difference(paired, t.dataset, t.task, group, t.metric, best.iloc[0]["pipeline"],
                                      ctrl.iloc[0]["pipeline"])
                if d is None or not np.isfinite(d["ci_low"]):
                    verdict = UNTESTED
                else:
                    flag = SIGNAL if d["ci_low"] > 0 else NO_SIGNAL
                    verdict = (f"{flag} ({best.iloc[0]['pipeline']} − {ctrl.iloc[0]['pipeline']}: "
                               f"{format_ci(d['difference'], d['ci_low'], d['ci_high'])})")
            row["signal over control"] = verdict
            units = here["n_units"].dropna()
            row["n (unit)"] = f"{int(units.max())} ({here['unit'].iloc[0]})" if len(units) else "–"
            rows.append(row)
    return pd.DataFrame(rows)


def paired_view(paired: pd.DataFrame, summary: pd.DataFrame, declared: Iterable[str] | None = None,
                max_all_pairs: int = 8) -> pd.DataFrame:
    """The paired differences worth reading: every pair of method pipelines when a task has at most
    ``max_all_pairs`` of them, else every declared pipeline against every other; and every method
    against every control. Headline metric and group of each task."""
    declared = set(DEFAULT_DECLARED if declared is None else declared)
    if paired.empty:
        return paired.copy()
    s = check_summary(summary)
    out = []
    for t in tasks_of(s).itertuples(index=False):
        p = paired[(paired["dataset"] == t.dataset) & (paired["task"] == t.task) & (paired["group"] == t.group)
                   & (paired["metric"] == t.metric)]
        role = s[(s["dataset"] == t.dataset) & (s["task"] == t.task)].drop_duplicates("pipeline") \
            .set_index("pipeline")["role"]
        methods = {q for q, r in role.items() if r == "method"}
        keep = []
        for r in p.itertuples(index=False):
            ra, rb = role.get(r.a, "method"), role.get(r.b, "method")
            if ra == rb == "control":
                continue
            if ra == rb == "method" and len(methods) > max_all_pairs and not ({r.a, r.b} & declared):
                continue
            row = r._asdict()
            # read as "method - control" and "declared - other"
            if (ra == "control" and rb == "method") or (r.b in declared and r.a not in declared):
                row.update(a=r.b, b=r.a, difference=-r.difference, ci_low=-r.ci_high, ci_high=-r.ci_low,
                           verdict=r.verdict)
            keep.append(row)
        out.extend(keep)
    return pd.DataFrame(out, columns=paired.columns)


def write_tables(metrics: pd.DataFrame, summary: pd.DataFrame, paired: pd.DataFrame,
                 reference: pd.DataFrame | None, outdir: str | os.PathLike, tasks: Iterable[str] | None = None,
                 unseen: pd.DataFrame | None = None, declared: Iterable[str] | None = None,
                 level: float = 0.95, n_boot: int | None = None,
                 dataset_aliases: Mapping[str, str] | None = None,
                 counts: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Write the tables (TSV + Markdown) into ``outdir`` (atomically) from the score stage's tables.

    ``counts``: our dataset name -> the matrix its raw counts were read from
    (:func:`sclinbench.manifest.entry_counts`), shown in the published comparison.

    Files (always written, possibly with no rows, so the workflow's outputs are static):
    ``headline``, ``summary``, ``task~<task>``, ``best_linear``, ``cross_species_pairs``,
    ``cross_species_average``, ``cross_species_unseen``, ``published_comparison``,
    ``paired_comparison``. Every Markdown file states its interval method in one line.
    """
    outdir = Path(outdir)
    s = check_summary(summary)
    written: dict[str, Path] = {}
    iline = interval_line(level, n_boot) + "\n"

    def emit(stem: str, table: pd.DataFrame, markdown: str) -> None:
        write_table(table, outdir / f"{stem}.tsv")
        _write_text(markdown, outdir / f"{stem}.md")
        written[stem] = outdir / f"{stem}.tsv"

    head = headline_table(s, paired, declared)
    emit("headline", head, "# Headline: declared pipelines beside the best of the grid\n\n"
         + iline + "\nThe best of the grid is " + OPTIMISTIC + " (it was picked on the folds it is "
         "scored on). 'signal over control' uses the paired difference (same bootstrap draws) between "
         "the best linear pipeline and the best control.\n\n"
         + (to_markdown(head) if len(head) else "No method pipeline was scored in this run.\n"))

    emit("summary", s, _task_markdown(s, "All tasks: summary", level, n_boot))
    task_names = list(tasks) if tasks is not None else list(pd.unique(s["task"]))
    for task in task_names:
        part = s[s["task"] == task]
        emit(f"task~{_safe(task)}", part, _task_markdown(part, f"Task {task}", level, n_boot))

    best = best_of_grid(s, "linear")
    best_md = best.assign(score=[score_label(m, k, g) for m, k, g in zip(best["metric"], best["kind"], best["group"])],
                          value_ci=[format_row(r) for r in best.to_dict("records")])
    emit("best_linear", best,
         "# Best linear pipeline of the grid per dataset and task\n\n"
         f"Every row is {OPTIMISTIC}: the pipeline was picked on the folds it is scored on. Only the "
         "linear family (logistic regression, linear SVM, ridge, LDA, centroid) is eligible: never kNN, a "
         "control or a foundation-model embedding. Novel-type tasks rank by novelty AUROC.\n\n" + iline + "\n"
         + to_markdown(best_md[["dataset", "task", "protocol", "split_kind", "pipeline", "family", "score",
                                "value_ci", "n_units", "unit"]].rename(columns={"value_ci": "value [CI]"})))

    metric = "macro_f1"
    pairs = cross_species_pairs(s, metric)
    pair_md = ["# Cross-species transfer: training species (rows) x target species (columns)\n",
               f"{score_label(metric, 'cross_species', 'a->b')}: transfer pairs (trained on every cell of "
               "the training species) scored over the labels both species share. The diagonal (marked *) "
               "is the same-species cross-validation, not a transfer. The TSV also has the interval of "
               "every pair (over the target's donors, or cells) and `macro_f1_all_target_labels`.\n", iline]
    all_pairs = pd.concat([pairs, cross_species_pairs(s, "macro_f1_all_target_labels")], ignore_index=True)
    for (dataset, task, pipeline), p in pairs.groupby(["dataset", "task", "pipeline"], sort=True):
        mat = cross_species_matrix(s, pipeline, metric, dataset=dataset, task=task)
        shown = mat.apply(lambda col: [("–" if not np.isfinite(v) else f"{v:.3f}*" if r == col.name else f"{v:.3f}")
                                       for r, v in zip(mat.index, col)])
        pair_md.append(f"\n## {dataset} — {task} — {pipeline}\n")
        pair_md.append(to_markdown(shown.reset_index()))
    if pairs.empty:
        pair_md.append("\nNo cross-species task in this run.\n")
    emit("cross_species_pairs", all_pairs, "\n".join(pair_md))

    avg = pd.concat([cross_species_average(s, False, metric), cross_species_average(s, True, metric)],
                    ignore_index=True)
    avg_md = ["# Cross-species: mean over target species per training species\n",
              f"{score_label(metric, 'cross_species', 'a->b')}. Default rows leave the same-species score "
              "out; rows that include it (as the paper's averages do) are labelled. Interval over target "
              "species (none from fewer than 3).\n", iline]
    if len(avg):
        a = avg.assign(value=[format_row(r) for r in avg.to_dict("records")],
                       column=[f"{p} ({'incl.' if d else 'excl.'} same-species)"
                               for p, d in zip(avg["pipeline"], avg["includes_diagonal"])])
        for (dataset, task), t in a.groupby(["dataset", "task"], sort=True):
            wide = t.pivot_table(index="training_species", columns="column", values="value", aggfunc="first")
            order_cols = sorted(wide.columns, key=lambda c: ("incl." in c, c))
            wide = wide.reindex(columns=order_cols).reset_index()
            wide.columns.name = None
            avg_md.append(f"\n## {dataset} — {task}\n")
            avg_md.append(to_markdown(wide.rename(columns={"training_species": "training species"})))
    else:
        avg_md.append("\nNo cross-species task in this run.\n")
    emit("cross_species_average", avg, "\n".join(avg_md))

    u = unseen if unseen is not None else pd.DataFrame(columns=["dataset", "task", "pipeline", "group", "y_true",
                                                                "y_pred", "n"])
    if len(u) and "kind" in u.columns:
        u = u[u["kind"] == "cross_species"]
    if len(u) and "repeat" in u.columns:
        u = u[u["repeat"].astype(str) == "0"]
    u_md = ["# Cross-species: cells whose label the training species lacks\n",
            "They are never part of the headline score (which covers the shared labels). Per pipeline "
            "and pair: how many there are and what they were called (first repeat of a shuffled control).\n",
            iline.replace("Intervals:", "No intervals here (counts); elsewhere: intervals:")]
    if len(u):
        for (dataset, task, pipeline), t in u.groupby(["dataset", "task", "pipeline"], sort=True):
            u_md.append(f"\n## {dataset} — {task} — {pipeline}\n")
            u_md.append(to_markdown(t[["group", "y_true", "y_pred", "n"]].rename(
                columns={"group": "pair", "y_true": "true label", "y_pred": "called"})))
    else:
        u_md.append("\nNo cross-species cell had a label its training species lacks.\n")
    emit("cross_species_unseen", u, "\n".join(u_md))

    ref = reference if reference is not None else pd.DataFrame(columns=list(REFERENCE_COLUMNS))
    pub = published_table(ref, avg, dataset_aliases=dataset_aliases, counts=counts)
    pub_md = ["# Published foundation-model numbers beside ours\n",
              "Every column says its source: `published` (copied from the paper's figure, about "
              "+-0.01) or `computed here` (this run), and whether the same-species score is inside "
              "the average. Published averages do not say whether they include it (`unknown`); which "
              "label set they score over is not stated either (ours: the shared labels). "
              "`counts` names the matrix the numbers were computed from: ours as read by this run "
              "(registry `counts:`), published ones as their source states it (`not stated` when it "
              "does not).\n", iline]
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

    view = paired_view(paired, s, declared)
    paired_md = ["# Paired comparisons on identical folds and identical bootstrap draws\n",
                 "Difference a − b of each task's headline score, with the interval of the difference "
                 "(both pipelines resampled with the same draws of the held-out units). Every pair of "
                 "method pipelines (or, in a large grid, every declared pipeline against the others) and "
                 "every method against every control. All pairs and metrics: `results/paired.tsv`.\n", iline]
    if len(view):
        shown = view.assign(difference=[format_ci(d, lo, hi, n) for d, lo, hi, n in
                                        zip(view["difference"], view["ci_low"], view["ci_high"], view["n_units"])])
        paired_md.append(to_markdown(shown[["dataset", "task", "group", "metric", "a", "b", "difference", "verdict",
                                            "n_units", "unit"]]))
    else:
        paired_md.append("\nNo pair of pipelines to compare in this run.\n")
    emit("paired_comparison", view, "\n".join(paired_md) + "\n")
    return written


# --------------------------------------------------------------------------- results README

def write_results_readme(summary: pd.DataFrame, paired: pd.DataFrame, reference: pd.DataFrame | None,
                         path: str | os.PathLike, declared: Iterable[str] | None = None,
                         provenance: Mapping | None = None, level: float = 0.95, n_boot: int | None = None,
                         dataset_aliases: Mapping[str, str] | None = None,
                         counts: Mapping[str, str] | None = None) -> Path:
    """Write ``results/README.md``: the headline numbers of the run.

    One row per dataset x task: the declared pipelines, the best linear pipeline of the grid
    (marked optimistic), the controls, and the flag "no signal over control" where the best does
    not beat the best control beyond the interval of their paired difference; then the
    cross-species averages (ours without and with the same-species score; published foundation
    models, labelled).
    """
    s = check_summary(summary)
    head = headline_table(s, paired, declared)
    signal = signal_over_control(s, paired, "linear")
    flagged = signal[signal["signal"] != SIGNAL]
    lines = ["# sclinbench results\n",
             "Generated by the workflow from `results/summary.tsv` and `results/paired.tsv`; do not edit "
             "by hand.\n",
             "## Headline: declared pipelines beside the best of the grid\n",
             "Each row's `score` column says which number it is (novel-type tasks: novelty AUROC; "
             "cross-species: macro F1 over the labels both species share, on the transfer pairs, or — "
             "protocol `paper` — over every pair including the same-species one, as Souza & Mehta "
             f"average). The best of the grid is {OPTIMISTIC}.\n",
             interval_line(level, n_boot) + "\n",
             to_markdown(head) if len(head) else "No method pipeline was scored in this run.\n",
             "\n" + _METHOD_NOTE + "\n"]
    if len(flagged):
        lines.append("\n**" + NO_SIGNAL.capitalize() + " (or not testable)**: "
                     + "; ".join(f"{r.dataset} / {r.task}: {r.signal}" for r in flagged.itertuples(index=False))
                     + ". The best method does not beat the best control beyond the interval of their "
                       "paired difference there: do not read those numbers as a result.\n")
    avg = cross_species_average(s, False)
    if len(avg):
        avg_in = cross_species_average(s, True)
        ref = reference if reference is not None else pd.DataFrame(columns=list(REFERENCE_COLUMNS))
        pub = published_table(ref, pd.concat([avg, avg_in], ignore_index=True),
                              dataset_aliases=dataset_aliases, counts=counts)
        overall = published_wide(pub)[["dataset", "model", "source", "counts", "same-species score",
                                       "mean (species run here)", "mean (all its species)", "n species"]]
        lines += ["\n## Cross-species: macro F1 over shared labels, averaged over target species, then over "
                  "training species\n",
                  "Our averages leave the same-species score out unless the row says 'incl. same-species'. "
                  "Published numbers are read off a figure (about +-0.01); their source does not say whether "
                  "the same-species score is included nor which labels are scored. 'mean (species run here)' "
                  "averages every row over the same training species, those of this run. Cells of labels "
                  "the training species lacks: `tables/cross_species_unseen.md`.\n",
                  to_markdown(overall)]
    lines += ["\n## Files\n",
              "- `tables/`: every summary (TSV + Markdown), per task, the best of the grid, cross-species "
              "matrices, averages and unseen labels, paired comparisons, the published comparison.",
              "- `figures/`: PNG (300 dpi) and PDF of every figure.",
              "- `summary.tsv`: every pooled score with its interval; `paired.tsv`: every paired difference; "
              "`metrics.tsv`: one score per dataset x task x pipeline x fold (x group, repeat) x metric.",
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
