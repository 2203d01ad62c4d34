"""Published foundation-model numbers beside ours (``config/reference_results.tsv``).

Published numbers never mix silently with ours: every row of a comparison carries ``source`` =
``published`` or ``computed here``. A foundation-model embedding supplied by the user and
classified by a linear model in this workflow is ``computed here``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from sclinbench.data.species import common_name
from sclinbench.errors import SclinbenchError

COMPUTED = "computed here"
PUBLISHED = "published"
REFERENCE_COLUMNS = ("model", "dataset", "task", "metric", "training_species", "value",
                     "includes_diagonal", "citation", "note", "counts")


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
        ``raw.X`` or ``layers/decontXcounts``; :func:`sclinbench.data.manifest.entry_counts`).

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
            "training_species": [common_name(s) for s in o["training_species"]],
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
        "training_species": [common_name(s) for s in ref["training_species"]],
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


def published_wide(table: pd.DataFrame, controls: bool = True, control_pipelines=()) -> pd.DataFrame:
    """One row per model (ours and published), one column per training species.

    Parameters
    ----------
    table
        Output of :func:`published_table`.
    controls
        Keep our control pipelines (only their without-diagonal rows are kept either way).
    control_pipelines
        The names of our pipelines with ``role: control`` (:func:`sclinbench.report.selection.controls_of`):
        published rows are never controls, and no name is one by itself.

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
    control = (t["source"] == COMPUTED) & t["model"].isin(list(control_pipelines))
    keep = ~(control & (t["includes_diagonal"] == "true")) & (controls | ~control)
    t = t[keep]
    is_control = {m for m, s in zip(t["model"], t["source"]) if s == COMPUTED and m in set(control_pipelines)}
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
    wide["_o"] = [(s != COMPUTED, "incl." in d, s == COMPUTED and m in is_control) for s, d, m in
                  zip(wide["source"], wide["same-species score"], wide["model"])]
    wide = wide.sort_values(["dataset", "_o", "mean (species run here)"],
                            ascending=[True, True, False]).drop(columns="_o")
    wide.columns.name = None
    return wide.reset_index(drop=True)
