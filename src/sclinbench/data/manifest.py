"""What is known about the paper's files before they are downloaded, and checks against it.

``config/paper_manifest.yaml`` records, per dataset of the paper configuration, facts about the
real files -- cells in the file, cells and donors after the held-out-donor filter, where the raw
counts are, the label and donor columns, the CELLxGENE schema version, collection and dataset
version -- each with its source; a fact nobody could find is ``value: null`` with the reason.
Its schema is ``config/paper_manifest.schema.yaml``.

- :func:`task_problems` / :func:`check_tasks` -- offline, when the Snakefile is parsed: every task x
  dataset is checked against the manifest, and a task that cannot run (no cells, fewer donors
  than its split needs, too few cells for two classes of ``min_cells_per_class``, counts in a
  matrix the file does not have, gene symbols where the file has none) stops the run with one
  line naming the dataset, the task, the number and the fix.
- :func:`check_download` -- after download, before standardization: the real file is compared with
  the manifest (cells, held-out donors and cells, schema version, collection and dataset version
  from ``uns["citation"]``, matrices, columns, gene symbols); every difference is a warning that
  names both numbers.
- :func:`describe` / :func:`check_standardized` -- after standardization: per species, the cells,
  cell types and donors found, and the counts after quality control against the manifest.

A manifest entry applies only to a registry entry that downloads exactly the manifest's files
(or, for a collection, has the same members), so a user's own registry is never judged by facts
about other files. Only exact values can make a task fail; ``at_least`` bounds and unknown
(``null``) facts never do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sclinbench.data.obs import task_label
from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)

FACT_KEYS = ("n_cells", "n_cells_held_out", "n_donors", "n_donors_held_out", "n_genes",
             "n_cells_after_qc", "n_types_after_qc", "schema_version", "matrices", "raw_counts",
             "label_column", "donor_column", "gene_symbols", "common_types")
#: splits that hold whole donors out, and the fewest donors each needs (``None`` = ``n_folds``)
DONOR_SPLITS = {"donor": None, "donor_pseudobulk": 2, "leave_one_donor_out": 2}
#: the fewest cells per class a split needs, where it is not n_folds (a stratified hold-out: 2)
MIN_CELLS_PER_CLASS = {"stratified_holdout": 2}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NOT_SYMBOL = re.compile(r"^ENS[A-Z]*G\d+(\.\d+)?$|_ENS[A-Z]*G\d+")


@dataclass(frozen=True)
class Fact:
    """One fact about a file: an exact ``value``, or only a lower bound ``at_least``, or unknown."""

    value: Any = None
    at_least: int | None = None
    source: str = ""
    note: str = ""
    counted_with: str = ""
    extra: Mapping = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.value is not None

    def shown(self) -> str:
        if self.value is not None:
            return _num(self.value)
        if self.at_least is not None:
            return f">= {_num(self.at_least)}"
        return "unknown"


@dataclass(frozen=True)
class Problem:
    """A task that cannot run on a dataset, and what to do about it."""

    task: str
    dataset: str
    reason: str
    fix: str

    def line(self) -> str:
        return f"task '{self.task}' cannot run on dataset '{self.dataset}': {self.reason}; {self.fix}"


class Manifest:
    """The parsed manifest: per dataset its facts (group defaults merged in), sources, totals."""

    def __init__(self, raw: Mapping, path: str | Path):
        self.path = Path(path)
        self.sources = {k: dict(v) for k, v in (raw.get("sources") or {}).items()}
        self.groups = {k: dict(v) for k, v in (raw.get("groups") or {}).items()}
        self.totals = [dict(t) for t in raw.get("totals") or []]
        self.datasets: dict[str, dict] = {}
        for name, spec in (raw.get("datasets") or {}).items():
            merged = dict(self.groups.get(spec.get("group"), {})) if spec.get("group") else {}
            merged.update(spec)
            self.datasets[name] = merged

    def cite(self, source) -> str:
        keys = [source] if isinstance(source, str) else list(source or [])
        return "; ".join(self.sources.get(k, {}).get("cite", k) for k in keys)

    def fact(self, dataset: str, key: str) -> Fact:
        raw = self.datasets.get(dataset, {}).get(key)
        if not isinstance(raw, Mapping):
            return Fact()
        rest = {k: v for k, v in raw.items() if k not in ("value", "at_least", "source", "note", "counted_with")}
        return Fact(value=raw.get("value"), at_least=raw.get("at_least"), source=self.cite(raw.get("source")),
                    note=raw.get("note", ""), counted_with=raw.get("counted_with", ""), extra=rest)

    def applies(self, dataset: str, entry: Mapping) -> bool:
        """Whether the manifest's facts about ``dataset`` describe the files of this registry entry."""
        spec = self.datasets.get(dataset)
        if spec is None or not isinstance(entry, Mapping):
            return False
        if entry.get("source") == "collection":
            return sorted((entry.get("members") or {}).values()) == sorted(spec.get("members") or [])
        files = [f.get("url") or f.get("path") for f in entry.get("files") or []]
        return sorted(map(str, files)) == sorted(map(str, spec.get("files") or []))

    def where(self, fact: Fact) -> str:
        shown = f"{self.path.parent.name}/{self.path.name}"
        return f"{shown}: {fact.source}" if fact.source else shown


def load(path: str | Path) -> Manifest | None:
    """The manifest at ``path`` (validated against ``paper_manifest.schema.yaml`` beside it), or
    ``None`` when there is no such file."""
    import yaml

    from sclinbench.workflow.config import check

    path = Path(path)
    if not path.exists():
        return None
    with open(path) as handle:
        raw = yaml.safe_load(handle) or {}
    schema = path.with_name("paper_manifest.schema.yaml")
    if schema.exists():
        check(raw, str(schema), f"manifest {path}")
    manifest = Manifest(raw, path)
    for name, spec in manifest.datasets.items():
        for key in FACT_KEYS:
            value = spec.get(key)
            if isinstance(value, Mapping):
                for source in [value.get("source")] if isinstance(value.get("source"), str) else value.get("source") or []:
                    if source not in manifest.sources:
                        raise SclinbenchError(f"manifest {path}: datasets.{name}.{key} cites source "
                                              f"'{source}', which is not under 'sources:'")
    return manifest


# --------------------------------------------------------------------------------------------
# offline: tasks against the manifest
# --------------------------------------------------------------------------------------------


def _held_out(entry: Mapping, spec: Mapping) -> bool | None:
    """True: the entry keeps the manifest's held-out donors only; False: every donor; None: another filter."""
    if not entry.get("ood_only"):
        return False
    pattern = spec.get("held_out_donors")
    return True if pattern and list(entry.get("ood_donors") or []) == [pattern] else None


def _cells_and_donors(m: Manifest, name: str, entry: Mapping) -> tuple[Fact, Fact, str]:
    """The cell and donor facts of the cells a registry entry keeps, and the word for its donors."""
    spec = m.datasets[name]
    held = _held_out(entry, spec)
    if held is None:
        return Fact(), Fact(), ""
    if held:
        return m.fact(name, "n_cells_held_out"), m.fact(name, "n_donors_held_out"), "held-out "
    return m.fact(name, "n_cells"), m.fact(name, "n_donors"), ""


def _dataset_problems(m: Manifest, task: str, spec: Mapping, name: str, entry: Mapping,
                      unverified: list[str] | None = None) -> list[Problem]:
    problems: list[Problem] = []
    remove = f"remove '{name}' from tasks.{task}.datasets"

    def add(fact: Fact, reason: str, fix: str) -> None:
        problems.append(Problem(task, name, f"{reason} ({m.where(fact)})", fix))

    counts, matrices = entry.get("counts", "X"), m.fact(name, "matrices")
    if (entry.get("format", "h5ad") == "h5ad" and matrices.known and isinstance(matrices.value, list)
            and counts not in matrices.value):
        add(matrices, f"counts: {counts}, but the file holds {', '.join(matrices.value)}",
            f"set counts: to one of them in the registry entry '{name}'")
    symbols = m.fact(name, "gene_symbols")
    if (entry.get("gene_id") == "symbol" and symbols.known and symbols.extra.get("all_symbols") is False
            and (entry.get("var_columns") or {}).get("gene_symbol") == symbols.value):
        add(symbols, f"gene_id: symbol, but var '{symbols.value}' is not a gene symbol for every gene"
                     + (f" ({symbols.note})" if symbols.note else ""),
            f"index genes by Ensembl id (gene_id: ensembl) in the registry entry '{name}'")

    cells, donors, whose = _cells_and_donors(m, name, entry)
    kind, split = spec.get("kind"), spec.get("split")
    if cells.known and int(cells.value) == 0:
        add(cells, f"0 cells from {whose or 'any '}donors", remove)
        return problems
    n_folds = int(spec.get("n_folds", 5))
    if split in DONOR_SPLITS:
        need = DONOR_SPLITS[split] or n_folds
        if not donors.known and donors.at_least is not None and donors.at_least < need and unverified is not None:
            unverified.append(f"{name}/{task}: {donors.shown()} {whose}donors known, split {split} needs {need}")
        if donors.known and int(donors.value) < need:
            fix = ("use split: leave_one_donor_out (one fold per donor, needs 2) or lower n_folds, or "
                   + remove) if split == "donor" and int(donors.value) >= 2 else (
                f"{remove} (report it with a stratified task instead)")
            add(donors, f"{_num(donors.value)} {whose}donor{'s' if donors.value != 1 else ''}, split {split}"
                        + (f" with n_folds={n_folds}" if split == "donor" else "") + f" needs {need}", fix)
    if kind in ("celltype", "disease", "novel_type") and cells.known:
        classes = 3 if kind == "novel_type" else 2
        per_class = max(int(spec.get("min_cells_per_class", 0) or 0),
                        n_folds if split == "stratified" else 1, MIN_CELLS_PER_CLASS.get(split, 1))
        if int(cells.value) < classes * per_class:
            add(cells, f"{_num(cells.value)} cells{' from held-out donors' if whose else ''} cannot hold {classes} classes of "
                       f">= {per_class} cells (min_cells_per_class / n_folds)",
                f"lower the task's min_cells_per_class or {remove}")
    types = m.fact(name, "n_types_after_qc")
    if kind in ("celltype", "novel_type", "cross_species") and task_label(spec) == "cell_type" and types.known:
        classes = 3 if kind == "novel_type" else 2
        if int(types.value) < classes:
            add(types, f"{_num(types.value)} cell type(s) after quality control, a {kind} task needs {classes}",
                remove)
    return problems


def task_problems(tasks: Mapping[str, Mapping], registry: Mapping[str, Mapping], manifest: Manifest,
                  unverified: list[str] | None = None) -> list[Problem]:
    """Every task x dataset that the manifest shows cannot run (empty when all can).

    ``unverified`` (a list) collects the pairs that only a lower bound leaves open, e.g. ">= 2
    held-out donors known" for a 3-fold donor split.
    """
    problems: list[Problem] = []
    for task, spec in tasks.items():
        for name in spec.get("datasets") or []:
            entry = registry.get(name) or {}
            if entry.get("source") == "collection":
                members = dict(entry.get("members") or {})
                wanted = spec.get("organisms") or list(members)
                left = []
                for organism in wanted:
                    member = members.get(organism)
                    if member in manifest.datasets and manifest.applies(member, registry.get(member, {})):
                        cells, _, whose = _cells_and_donors(manifest, member, registry[member])
                        if cells.known and int(cells.value) == 0:
                            problems.append(Problem(task, name, f"member {member} has 0 cells from {whose or 'any '}donors "
                                                    f"({manifest.where(cells)})", f"drop {organism} from the task's organisms"))
                            continue
                    left.append(organism)
                if spec.get("kind") == "cross_species" and len(left) < 2 <= len(wanted):
                    problems.append(Problem(task, name, f"only {len(left)} organism(s) with cells",
                                            "a cross-species task needs 2"))
                continue
            if name in manifest.datasets and manifest.applies(name, entry):
                problems += _dataset_problems(manifest, task, spec, name, entry, unverified)
    return problems


def check_tasks(tasks: Mapping[str, Mapping], registry: Mapping[str, Mapping], path: str | Path) -> None:
    """Stop (``SclinbenchError``, one line) when a task cannot run on one of its datasets.

    Called when the Snakefile is parsed, so ``snakemake -n`` stops before anything is downloaded.
    Does nothing when there is no manifest at ``path`` or none of its datasets is used.
    """
    manifest = load(path)
    if manifest is None:
        return
    unverified: list[str] = []
    problems = task_problems(tasks, registry, manifest, unverified)
    if unverified and not problems:
        import sys

        print(f"sclinbench: {len(unverified)} task x dataset pair(s) could not be verified offline and may "
              f"stop after download ({'; '.join(unverified[:4])}{'; ...' if len(unverified) > 4 else ''}); "
              f"see {manifest.path}", file=sys.stderr)
    if problems:
        more = ""
        if len(problems) > 1:
            others = ", ".join(f"{p.dataset}/{p.task}" for p in problems[1:6])
            more = f" (and {len(problems) - 1} more: {others}{', ...' if len(problems) > 6 else ''})"
        raise SclinbenchError(problems[0].line() + more)


# --------------------------------------------------------------------------------------------
# after download: the real file against the manifest
# --------------------------------------------------------------------------------------------


def _num(value) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _read_elem(node):
    from anndata.io import read_elem

    return read_elem(node)


def inspect_h5ad(path: str | Path, donor_column: str | None = None, label_column: str | None = None,
                 symbol_column: str | None = None) -> dict:
    """Cheap facts of an h5ad file, read with h5py without loading its matrices.

    Returns ``n_cells``, ``obs_columns``, ``donors`` (the donor column's values, when asked and
    present), ``label_present``, ``matrices``, ``schema_version`` and ``citation`` (``uns``),
    ``collection_id`` / ``dataset_version_id`` (parsed from the citation), ``n_genes`` and the
    values of ``symbol_column`` (var, else raw.var).
    """
    import h5py

    from sclinbench.data.h5ad import _h5ad_matrices

    out: dict = {}
    with h5py.File(path, "r") as f:
        if f.attrs.get("encoding-type") != "anndata" or "obs" not in f:
            return {"legacy": True}
        obs = f["obs"]
        index = obs.attrs.get("_index", "_index")
        out["n_cells"] = int(obs[index].shape[0]) if index in obs else None
        out["obs_columns"] = [str(c) for c in obs.attrs.get("column-order", [])]
        if donor_column and donor_column in obs:
            out["donors"] = _read_elem(obs[donor_column])
        out["label_present"] = bool(label_column and label_column in obs)
        out["matrices"] = _h5ad_matrices(f)
        uns = f.get("uns")
        for key in ("schema_version", "citation"):
            if uns is not None and key in uns:
                value = _read_elem(uns[key])
                out[key] = value.decode() if isinstance(value, bytes) else str(value)
        citation = out.get("citation", "")
        version = re.search(r"datasets\.cellxgene\.cziscience\.com/(" + _UUID.pattern + r")\.", citation)
        collection = re.search(r"/collections/(" + _UUID.pattern + ")", citation)
        out["dataset_version_id"] = version.group(1) if version else None
        out["collection_id"] = collection.group(1) if collection else None
        var = f["var"]
        out["n_genes"] = int(var[var.attrs.get("_index", "_index")].shape[0])
        if symbol_column:
            for group in (var, f.get("raw/var")):
                if group is not None and symbol_column in group:
                    out["symbols"] = [str(s) for s in _read_elem(group[symbol_column])]
                    break
    return out


def _count_10x_h5(path: str | Path) -> int | None:
    import h5py

    with h5py.File(path, "r") as f:
        if "matrix" in f and "barcodes" in f["matrix"]:
            return int(f["matrix/barcodes"].shape[0])
        for group in f.values():  # Cell Ranger v2: one group per genome
            if "barcodes" in group:
                return int(group["barcodes"].shape[0])
    return None


def _compare(name: str, what: str, found, fact: Fact, where: str) -> str | None:
    """A warning when ``found`` differs from an exact fact or is below its lower bound."""
    if found is None:
        return None
    if fact.known and found != fact.value:
        return (f"dataset '{name}': {what} is {_num(found)} in the downloaded file, the manifest says "
                f"{_num(fact.value)} ({where})")
    if not fact.known and fact.at_least is not None and isinstance(found, int) and found < fact.at_least:
        return (f"dataset '{name}': {what} is {_num(found)} in the downloaded file, the manifest says "
                f"at least {_num(fact.at_least)} ({where})")
    return None


def check_download(name: str, entry: Mapping, paths: Sequence[str | Path], path: str | Path) -> list[str]:
    """Warnings (one line each) where the downloaded file(s) of ``name`` differ from the manifest.

    Runs before standardization and reads only metadata (obs columns, uns, var), never the
    counts matrix. Returns ``[]`` when the manifest does not describe these files.
    """
    manifest = load(path)
    if manifest is None or name not in manifest.datasets or not manifest.applies(name, entry):
        return []
    if entry.get("source") not in ("url", "local"):
        return []
    m, spec, warnings = manifest, manifest.datasets[name], []

    def compare(what, found, key):
        fact = m.fact(name, key)
        line = _compare(name, what, found, fact, m.where(fact))
        if line:
            warnings.append(line)

    fmt = entry.get("format", "h5ad")
    if fmt == "10x_h5":
        counted = [_count_10x_h5(p) for p in paths]
        compare("the number of cells", sum(counted) if None not in counted else None, "n_cells")
        compare("the number of donors", len(entry.get("files") or []), "n_donors")
        return warnings
    if fmt != "h5ad":
        return warnings
    columns = entry.get("columns") or {}
    donor_column = columns.get("donor_id") or "donor_id"
    label_column = columns.get("cell_type") or "cell_type"
    symbol_column = (entry.get("var_columns") or {}).get("gene_symbol")
    facts = [inspect_h5ad(p, donor_column, label_column, symbol_column) for p in paths]
    if any(f.get("legacy") for f in facts):
        log.info("dataset '%s': pre-0.8 h5ad layout, manifest checks of the file skipped", name)
        return warnings
    compare("the number of cells", sum(f["n_cells"] for f in facts), "n_cells")
    donors = [d for f in facts if f.get("donors") is not None for d in list(f["donors"])]
    if any(f.get("donors") is not None for f in facts):
        import pandas as pd

        from sclinbench.data.reading import _ood_mask

        values = pd.Series(donors, dtype=object)
        compare("the number of donors", int(values.dropna().nunique()), "n_donors")
        if _held_out(entry, spec):
            held = _ood_mask(values, list(entry.get("ood_donors")))
            compare(f"the number of cells of held-out donors ({spec.get('held_out_donors')})", int(held.sum()),
                    "n_cells_held_out")
            compare(f"the number of held-out donors ({spec.get('held_out_donors')})",
                    int(values[held].nunique()), "n_donors_held_out")
    else:
        fact = m.fact(name, "donor_column")
        if fact.known:
            warnings.append(f"dataset '{name}': the downloaded file has no obs column '{donor_column}', the "
                            f"manifest says its donors are in obs '{fact.value}' ({m.where(fact)})")
    label = m.fact(name, "label_column")
    if label.known and not all(f["label_present"] for f in facts):
        warnings.append(f"dataset '{name}': the downloaded file has no obs column '{label_column}' "
                        f"(columns.cell_type), the manifest says labels are in obs '{label.value}' ({m.where(label)})")
    matrices = m.fact(name, "matrices")
    if matrices.known:
        missing = [x for x in matrices.value if not all(x in f["matrices"] for f in facts)]
        if missing:
            warnings.append(f"dataset '{name}': the downloaded file has no {', '.join(missing)} (it has "
                            f"{', '.join(facts[0]['matrices'])}), the manifest says it has {', '.join(matrices.value)} "
                            f"({m.where(matrices)})")
    version = m.fact(name, "schema_version")
    found = facts[0].get("schema_version")
    if version.known and found is not None and found.split(".")[0] != str(version.value).split(".")[0]:
        warnings.append(f"dataset '{name}': CELLxGENE schema {found} in the downloaded file, the manifest says "
                        f"{version.value}.x ({m.where(version)}); check where organism, raw counts and "
                        f"feature names are in this schema")
    for key in ("collection_id", "dataset_version_id"):
        expected = entry.get(key) or spec.get(key)
        found = facts[0].get(key)
        if expected and found and found != expected:
            warnings.append(f"dataset '{name}': uns['citation'] of the downloaded file names {key} {found}, "
                            f"the registry and manifest say {expected}")
    compare("the number of genes", facts[0].get("n_genes"), "n_genes")
    if symbol_column and facts[0].get("symbols") is not None:
        symbols = facts[0]["symbols"]
        bad = sum(1 for s in symbols if _NOT_SYMBOL.search(s))
        log.info("dataset '%s': %d of %d var '%s' values are not gene symbols (Ensembl ids or "
                 "SYMBOL_ENSG...); genes are indexed by %s", name, bad, len(symbols), symbol_column,
                 entry.get("gene_id", "auto"))
        fact = m.fact(name, "gene_symbols")
        if fact.known and fact.extra.get("all_symbols") is True and bad:
            warnings.append(f"dataset '{name}': {bad:,} of {len(symbols):,} var '{symbol_column}' values are "
                            f"not gene symbols, the manifest says all are ({m.where(fact)})")
    elif symbol_column:
        warnings.append(f"dataset '{name}': the downloaded file has no var column '{symbol_column}' "
                        f"(var_columns.gene_symbol)")
    return warnings


# --------------------------------------------------------------------------------------------
# after standardization: what the file really holds, per species
# --------------------------------------------------------------------------------------------


def describe(adata, name: str, max_donors: int = 8) -> list[str]:
    """One line per organism: cells, cell types and donors found in a standardized dataset."""
    obs = adata.obs
    organisms = obs["organism"].astype(str) if "organism" in obs.columns else None
    groups = sorted(set(organisms)) if organisms is not None else ["all"]
    lines = []
    for organism in groups:
        part = obs if organisms is None else obs[(organisms == organism).to_numpy()]
        text = f"dataset '{name}', {organism}: {len(part):,} cells"
        if "cell_type" in part.columns:
            types = part["cell_type"].astype(str)
            text += f", {types.nunique()} cell types"
        if "donor_id" in part.columns:
            donors = sorted(set(part["donor_id"].astype(str)))
            known = [d for d in donors if d != "unknown"]
            shown = ", ".join(known[:max_donors]) + (", ..." if len(known) > max_donors else "")
            text += (f", {len(known)} donors ({shown})" if known else ", donors unknown (no donor column)")
        lines.append(text)
    return lines


def check_standardized(name: str, entry: Mapping, adata, path: str | Path) -> list[str]:
    """Warnings where a standardized dataset differs from the manifest's counts after QC."""
    import json

    manifest = load(path)
    if manifest is None or name not in manifest.datasets or not manifest.applies(name, entry):
        return []
    info = adata.uns.get("sclinbench", {}) if hasattr(adata.uns, "get") else {}
    qc = info.get("qc", "") if hasattr(info, "get") else ""
    ours = ", ".join(f"{k}={v}" for k, v in json.loads(qc).items()) if qc else "this run's qc"
    warnings = []
    for key, what, found in (("n_cells_after_qc", "cells", adata.n_obs),
                             ("n_types_after_qc", "cell types",
                              int(adata.obs["cell_type"].astype(str).nunique()) if "cell_type" in adata.obs else None)):
        fact = manifest.fact(name, key)
        if found is not None and fact.known and found != fact.value:
            counted = f", counted with {fact.counted_with}" if fact.counted_with else ""
            warnings.append(f"dataset '{name}': {found:,} {what} after quality control ({ours}), the manifest "
                            f"says {_num(fact.value)} ({manifest.where(fact)}{counted})")
    common = manifest.fact(name, "common_types")
    if common.known and "organism" in adata.obs and "cell_type" in adata.obs:
        obs = adata.obs.astype({"organism": str, "cell_type": str})
        shared = set.intersection(*[set(g["cell_type"]) for _, g in obs.groupby("organism")])
        if shared != set(common.value):
            warnings.append(f"dataset '{name}': cell types common to every organism are "
                            f"{', '.join(sorted(shared)) or 'none'}, the manifest says "
                            f"{', '.join(sorted(common.value))} ({manifest.where(common)})")
    return warnings


def entry_counts(registry: Mapping[str, Mapping], names: Iterable[str]) -> dict[str, str]:
    """Dataset name -> where its raw counts were read (registry ``counts``; a collection joins its
    members'), for the published comparison."""
    out = {}
    for name in names:
        entry = registry.get(name) or {}
        if entry.get("source") == "collection":
            kinds = sorted({(registry.get(m) or {}).get("counts", "X") for m in (entry.get("members") or {}).values()})
            out[name] = ", ".join(kinds) or "X"
        elif entry.get("source") == "bundled":
            out[name] = "bundled (counts recovered from log-normalized raw.X)"
        elif entry.get("source") == "synthetic":
            out[name] = "synthetic counts"
        else:
            out[name] = entry.get("counts", "X")
    return out
