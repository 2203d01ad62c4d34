"""Build the standardized AnnData of one registry entry, whatever its source.

Sources: ``bundled`` (shipped with an installed package), ``url`` / ``local`` (files),
``synthetic`` (the seeded atlas) and ``collection`` (several species mapped to a reference
species' genes through orthologs). Single datasets go through :func:`sclinbench.data.standardize`;
multi-species ones are then mapped with :func:`sclinbench.data.gene_space.map_to_reference`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import pandas as pd

from sclinbench import data
from sclinbench.data import gene_space, orthologs
from sclinbench.data.species import ensembl_prefix
from sclinbench.errors import SclinbenchError
from sclinbench.workflow.io import sha256_file

log = logging.getLogger(__name__)


def _standardize_species(adatas: dict, qc: dict, source: str) -> dict:
    out = {}
    for species, adata in adatas.items():
        member = {"columns": {"cell_type": "cell_type", "donor_id": "donor_id", "condition": "condition",
                              "organism": "organism"}, "gene_id": "symbol"}
        out[species] = data.standardize(adata, member, qc, source=f"{source}:{species}", name=f"{source}:{species}")
    return out


def verify_inputs(name: str, entry: dict, inputs: list[str], lockfile: str | None) -> tuple[list[str], list[str]]:
    """Check every raw file before it is read; return ``(sha256s, how each was checked)``.

    A downloaded file may have been placed by hand (the fetch step never runs when its output
    exists), so it is checked like a download (:func:`sclinbench.data.download.verify_present`): content,
    size and sha256 against the registry or the lock file; a file nothing pins is recorded in the
    lock file with a warning naming it. A local file is checked against the registry's sha256/size
    when given (it is never deleted or recorded).
    """
    from sclinbench.data.download import verify_present

    digests, how = [], []
    for spec, path in zip(entry["files"], inputs):
        if spec.get("url"):
            digest, checked = verify_present(path, spec["url"], spec.get("sha256"), spec.get("size"),
                                             lockfile, expect=entry.get("format", "h5ad"))
        else:
            p = Path(path)
            if not p.exists():
                raise SclinbenchError(f"local file {path} of registry entry '{name}' does not exist; fix its path: under files:")
            digest = sha256_file(p)
            checked = "local"
            if spec.get("size") is not None and p.is_file() and p.stat().st_size != spec["size"]:
                raise SclinbenchError(
                    f"local file {path} of registry entry '{name}' is {p.stat().st_size} bytes but the registry "
                    f"says size: {spec['size']}: check that it is the right file, or correct size:"
                )
            if spec.get("sha256") and p.is_file():
                if digest != spec["sha256"].lower():
                    raise SclinbenchError(
                        f"local file {path} of registry entry '{name}' has sha256 {digest}, the registry pins "
                        f"{spec['sha256']}: check that it is the right file (your own file: nothing was changed), "
                        f"or correct sha256:"
                    )
                checked = "local, registry sha256"
        digests.append(digest)
        how.append(checked)
    return digests, how


def standardized_dataset(name: str, entry: dict, inputs: list[str], qc: dict,
                         registry: dict | None = None, lockfile: str | None = None,
                         out: str | None = None) -> ad.AnnData:
    """The standardized AnnData of registry entry ``name``.

    With ``out``, a single h5ad file with CSR counts (url/local sources) is standardized streamed
    (:func:`sclinbench.data.standardize_h5ad`): written to ``out`` block by block, and the
    returned AnnData has no ``X`` (obs, var, uns of the written file). Otherwise the caller
    writes the returned AnnData.

    Parameters
    ----------
    name, entry
        Registry name and entry.
    inputs
        The rule's input files: raw files (url/local), the synthetic directory, or, for a
        collection, the members' standardized files followed by ortholog tables.
    qc
        Quality-control thresholds (config ``qc:``).
    registry
        Registry entries of a collection's members.
    lockfile
        The checksum lock file of downloads (url sources): raw files are verified against it.
    """
    source = entry["source"]
    if source == "bundled":
        adata = data.load_bundled(entry["bundled"])
        return data.standardize(adata, entry, qc, source=f"bundled:{entry['bundled']}", name=name)
    if source in ("url", "local"):
        files = entry["files"]
        digests, how = verify_inputs(name, entry, inputs, lockfile)
        source_text = ", ".join(f.get("url") or f.get("path") for f in files)
        if source == "url":  # local files were checked when the workflow started; downloads are now
            from sclinbench.workflow import resources

            shape = resources.raw_shape(inputs, entry.get("counts", "X"))
            if shape:
                resources.check_fits(name, *shape, resources.machine_memory_mb(), "this machine's memory",
                                     where=", ".join(inputs), max_cells=entry.get("max_cells"))
        if out and len(inputs) == 1 and entry.get("format", "h5ad") == "h5ad":
            streamed = data.standardize_h5ad(inputs[0], entry, qc, out, source=source_text,
                                             name=name, local=source == "local",
                                             raw_info={"sha256": digests[0], "verified": how[0]})
            if streamed is not None:
                return streamed
        adata = data.read_raw(inputs, entry.get("format", "h5ad"), counts=entry.get("counts", "X"),
                              file_obs=[f.get("obs", {}) for f in files], checksum=False,
                              local=source == "local", entry_name=name,
                              rows=data.ood_row_filter(entry))
        adata.uns["sclinbench_raw"]["sha256"] = ", ".join(digests)
        adata.uns["sclinbench_raw"]["verified"] = ", ".join(how)
        return data.standardize(adata, entry, qc, source=source_text, name=name)
    if source == "synthetic":
        folder = Path(inputs[0])
        table = pd.read_csv(folder / "orthologs.tsv", sep="\t")
        species = sorted(p.stem for p in folder.glob("*.h5ad"))
        adatas = {s: ad.read_h5ad(folder / f"{s}.h5ad") for s in species}
        adatas = _standardize_species(adatas, qc, source=f"synthetic:{name}")
        reference = entry.get("reference") or table["reference_species"].iloc[0]
        return gene_space.map_to_reference(adatas, table, reference,
                                          mode=entry.get("orthologs", {}).get("mode", "one2one"))
    if source == "collection":
        members = entry["members"]
        n = len(members)
        adatas = {org: ad.read_h5ad(path) for org, path in zip(members, inputs[:n])}
        reference = entry["reference"]
        orth = entry.get("orthologs") or {}
        if orth.get("source") == "file":
            table = _user_tables(name, entry, inputs[n:])
        else:
            tables = [pd.read_csv(p, sep="\t") for p in inputs[n:]]
            if not tables:
                raise SclinbenchError(f"collection '{name}' has no ortholog table: set orthologs.source")
            table = pd.concat(tables, ignore_index=True)
        # tables name species the Ensembl way; the collection names them by its member keys
        table = _rename_species(table, members, registry or {}, reference)
        mapped = gene_space.map_to_reference(adatas, table, reference, mode=orth.get("mode", "one2one"))
        unlabelled = {c: int(mapped.obs[c].isna().sum()) for c in data.LABEL_COLUMNS if c in mapped.obs.columns}
        mapped.uns["sclinbench"] = {
            "dataset": name,
            "source": ", ".join(f"{org}: {m}" for org, m in members.items()),
            "orthologs": data._json({k: v for k, v in orth.items()}),
            "unlabelled": data._json(unlabelled),
        }
        return mapped
    raise SclinbenchError(f"registry entry '{name}' has unknown source '{source}'")


def _user_tables(name: str, entry: dict, paths: list[str]) -> pd.DataFrame:
    """The collection's own ortholog table(s) (``orthologs: {source: file, path: ...}``), any accepted form."""
    members = entry["members"]
    reference = entry["reference"]
    orth = entry["orthologs"]
    spec = orth.get("path")
    others = [org for org in members if org != reference]
    where = f"registry entry '{name}'"
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(others))
        if unknown:
            raise SclinbenchError(f"{where}: orthologs.path names {', '.join(map(repr, unknown))}, which is not a "
                                  f"non-reference member ({', '.join(others)})")
        lacking = [org for org in others if org not in spec]
        if lacking:
            raise SclinbenchError(f"{where}: orthologs.path gives no table for {', '.join(map(repr, lacking))}; "
                                  f"give one per non-reference member")
        pairs = [(org, spec[org]) for org in others]
    else:
        pairs = [(org, spec) for org in others]
    tables = []
    for org, path in pairs:
        table = orthologs.read_ortholog_table(path, reference, org, columns=orth.get("columns"), where=where)
        log.info("%s: ortholog table %s for %s: %d pairs (%s)", name, path, org, len(table),
                 ", ".join(f"{k} {v}" for k, v in table["homology_type"].value_counts().items()))
        tables.append(table)
    table = pd.concat(tables, ignore_index=True).drop_duplicates(
        ["reference_species", "reference_gene", "other_species", "other_gene"])
    return table


def _rename_species(table: pd.DataFrame, members: dict, registry: dict, reference: str) -> pd.DataFrame:
    names = {}
    for org, member in members.items():
        organism = registry.get(member, {}).get("organism", org)
        names[organism] = org
        names[ensembl_prefix(organism, strict=False)] = org
    table = table.copy()
    table["reference_species"] = table["reference_species"].map(lambda s: names.get(s, s))
    table["other_species"] = table["other_species"].map(lambda s: names.get(s, s))
    return table


def fetch_ensembl_orthologs(reference: str, other: str, release: int, dest: str) -> None:
    """Download the BioMart ortholog table ``reference -> other`` at ``release`` into ``dest`` (TSV)."""
    from sclinbench.data.download import fetch
    from sclinbench.workflow.io import write_table

    url = orthologs.ensembl_biomart_query_url(reference, other, release)
    raw = Path(dest).with_suffix(".biomart.txt")
    fetch(url, raw, expect="text")
    table = orthologs.parse_biomart_tsv(raw, reference, other)
    write_table(table, dest)
    log.info("%s -> %s (Ensembl %d): %d ortholog pairs", reference, other, release, len(table))


def dataset_checksums(standardized: dict[str, str]) -> dict[str, str]:
    """Dataset name -> sha256 of its source file(s) (as recorded at standardization), else of the
    standardized file itself (bundled and synthetic data have no download)."""
    out = {}
    for name, path in standardized.items():
        info = ad.read_h5ad(path, backed="r").uns.get("sclinbench", {})
        source = info.get("sha256") if hasattr(info, "get") else None
        if isinstance(source, (list, tuple)) or hasattr(source, "tolist"):
            source = ",".join(map(str, list(source)))
        out[name] = f"source {source}" if source else f"standardized {sha256_file(path)}"
    return out
