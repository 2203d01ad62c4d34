"""Build the standardized AnnData of one registry entry, whatever its source.

Sources: ``bundled`` (shipped with an installed package), ``url`` / ``local`` (files),
``synthetic`` (the seeded atlas) and ``collection`` (several species mapped to a reference
species' genes through orthologs). Single datasets go through :func:`sclinbench.data.standardize`;
multi-species ones are then mapped with :func:`sclinbench.orthologs.map_to_reference`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import pandas as pd

from sclinbench import data, orthologs
from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)


def _standardize_species(adatas: dict, qc: dict, source: str) -> dict:
    out = {}
    for species, adata in adatas.items():
        member = {"columns": {"cell_type": "cell_type", "donor_id": "donor_id", "condition": "condition",
                              "organism": "organism"}, "gene_id": "symbol"}
        out[species] = data.standardize(adata, member, qc, source=f"{source}:{species}", name=f"{source}:{species}")
    return out


def standardized_dataset(name: str, entry: dict, inputs: list[str], qc: dict,
                         registry: dict | None = None) -> ad.AnnData:
    """The standardized AnnData of registry entry ``name``.

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
    """
    source = entry["source"]
    if source == "bundled":
        adata = data.load_bundled(entry["bundled"])
        return data.standardize(adata, entry, qc, source=f"bundled:{entry['bundled']}", name=name)
    if source in ("url", "local"):
        files = entry["files"]
        adata = data.read_raw(inputs, entry.get("format", "h5ad"), counts=entry.get("counts", "X"),
                              file_obs=[f.get("obs", {}) for f in files], rows=data.ood_row_filter(entry))
        return data.standardize(adata, entry, qc, source=", ".join(f.get("url") or f.get("path") for f in files),
                                name=name)
    if source == "synthetic":
        folder = Path(inputs[0])
        table = pd.read_csv(folder / "orthologs.tsv", sep="\t")
        species = sorted(p.stem for p in folder.glob("*.h5ad"))
        adatas = {s: ad.read_h5ad(folder / f"{s}.h5ad") for s in species}
        adatas = _standardize_species(adatas, qc, source=f"synthetic:{name}")
        reference = entry.get("reference") or table["reference_species"].iloc[0]
        return orthologs.map_to_reference(adatas, table, reference,
                                          mode=entry.get("orthologs", {}).get("mode", "one2one"))
    if source == "collection":
        members = entry["members"]
        n = len(members)
        adatas = {org: ad.read_h5ad(path) for org, path in zip(members, inputs[:n])}
        tables = [pd.read_csv(p, sep="\t") for p in inputs[n:]]
        if not tables:
            raise SclinbenchError(f"collection '{name}' has no ortholog table: set orthologs.source")
        table = pd.concat(tables, ignore_index=True)
        reference = entry["reference"]
        # tables name species the Ensembl way; the collection names them by its member keys
        table = _rename_species(table, members, registry or {}, reference)
        return orthologs.map_to_reference(adatas, table, reference,
                                          mode=entry.get("orthologs", {}).get("mode", "one2one"))
    raise SclinbenchError(f"registry entry '{name}' has unknown source '{source}'")


def _rename_species(table: pd.DataFrame, members: dict, registry: dict, reference: str) -> pd.DataFrame:
    names = {}
    for org, member in members.items():
        organism = registry.get(member, {}).get("organism", org)
        names[organism] = org
        genus, species = (organism.split() + [""])[:2]
        names[(genus[:1] + species).lower()] = org
    table = table.copy()
    table["reference_species"] = table["reference_species"].map(lambda s: names.get(s, s))
    table["other_species"] = table["other_species"].map(lambda s: names.get(s, s))
    return table


def fetch_ensembl_orthologs(reference: str, other: str, release: int, dest: str) -> None:
    """Download the BioMart ortholog table ``reference -> other`` at ``release`` into ``dest`` (TSV)."""
    from sclinbench.download import fetch
    from sclinbench.io import write_table

    url = orthologs.ensembl_biomart_query_url(reference, other, release)
    raw = Path(dest).with_suffix(".biomart.txt")
    fetch(url, raw)
    table = orthologs.parse_biomart_tsv(raw, reference, other)
    write_table(table, dest)
    log.info("%s -> %s (Ensembl %d): %d ortholog pairs", reference, other, release, len(table))


def dataset_checksums(standardized: dict[str, str]) -> dict[str, str]:
    """Dataset name -> sha256 of its source file(s) (as recorded at standardization), else of the
    standardized file itself (bundled and synthetic data have no download)."""
    from sclinbench.report import sha256_file

    out = {}
    for name, path in standardized.items():
        info = ad.read_h5ad(path, backed="r").uns.get("sclinbench", {})
        source = info.get("sha256") if hasattr(info, "get") else None
        if isinstance(source, (list, tuple)) or hasattr(source, "tolist"):
            source = ",".join(map(str, list(source)))
        out[name] = f"source {source}" if source else f"standardized {sha256_file(path)}"
    return out
