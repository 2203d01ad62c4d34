"""Gene orthology tables: read, checked and tidied (mapping species onto it: :mod:`sclinbench.data.gene_space`).

An ortholog table has one row per gene pair:

``reference_species, reference_gene, other_species, other_gene, homology_type``

plus, when known, ``reference_symbol``, ``other_symbol`` and ``orthology_confidence``.
``homology_type`` uses Ensembl's labels (``ortholog_one2one``, ``ortholog_one2many``,
``ortholog_many2many``). Note that Ensembl's ``one2many`` is symmetric: the "many" side can be the
reference or the other species; :func:`sclinbench.data.gene_space.map_to_reference` handles both.

Ensembl BioMart tables come from :func:`read_biomart` (a web export) or from the pinned query
:func:`ensembl_biomart_query_url`, downloaded by :func:`sclinbench.data.download.fetch` and parsed with
:func:`parse_biomart_tsv`. A user's own table (``orthologs: {source: file}`` in the registry) is
read by :func:`read_ortholog_table`, which accepts this pair table, a BioMart export as it comes,
or any pair table with a column mapping.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd

from sclinbench.data.species import biomart_display_names, biomart_names, ensembl_prefix
from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)

__all__ = [
    "ORTHOLOG_COLUMNS",
    "read_ortholog_table",
    "ENSEMBL_ARCHIVE_HOSTS",
    "read_biomart",
    "ensembl_biomart_query_url",
    "parse_biomart_tsv",
]

ORTHOLOG_COLUMNS = ["reference_species", "reference_gene", "other_species", "other_gene", "homology_type"]
#: keys of ``orthologs.columns`` in the registry: canonical column -> the user's column
MAPPABLE_COLUMNS = ("reference_gene", "other_gene", "homology_type", "reference_species", "other_species",
                    "reference_symbol", "other_symbol")
ONE2ONE = "ortholog_one2one"
ONE2MANY = "ortholog_one2many"

#: Ensembl release -> archive host serving that release's BioMart.
#: Ensembl archive sites are named ``<three-letter month><year>.archive.ensembl.org`` after the
#: month of the release (see https://www.ensembl.org/info/website/archives/ and biomaRt's
#: ``listEnsemblArchives()``). Archives are kept for several years, not forever; for a release not
#: listed here pass ``host=`` explicitly.
ENSEMBL_ARCHIVE_HOSTS: dict[int, str] = {
    100: "apr2020.archive.ensembl.org",
    101: "aug2020.archive.ensembl.org",
    102: "nov2020.archive.ensembl.org",
    103: "feb2021.archive.ensembl.org",
    104: "may2021.archive.ensembl.org",
    105: "dec2021.archive.ensembl.org",
    106: "apr2022.archive.ensembl.org",
    107: "jul2022.archive.ensembl.org",
    108: "oct2022.archive.ensembl.org",
    109: "feb2023.archive.ensembl.org",
    110: "jul2023.archive.ensembl.org",
    111: "jan2024.archive.ensembl.org",
    112: "may2024.archive.ensembl.org",
    113: "oct2024.archive.ensembl.org",
    114: "may2025.archive.ensembl.org",
    115: "sep2025.archive.ensembl.org",
}

def _open_text(path: str | os.PathLike) -> str:
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"ortholog table {path} does not exist; fetch it first")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return fh.read()


def _tidy(df: pd.DataFrame, reference_species: str, other_species: str) -> pd.DataFrame:
    """Canonical pair table from columns reference_gene, other_gene, homology_type (+ optional extras)."""
    df = df.copy()
    for col in ("reference_gene", "other_gene", "homology_type"):
        df[col] = df[col].astype("string").str.strip()
    df = df[df["other_gene"].notna() & (df["other_gene"] != "") & df["reference_gene"].notna()]
    df = df[df["homology_type"].fillna("").str.startswith("ortholog_")]
    out = pd.DataFrame(
        {
            "reference_species": str(reference_species),
            "reference_gene": df["reference_gene"].astype(str).to_numpy(),
            "other_species": str(other_species),
            "other_gene": df["other_gene"].astype(str).to_numpy(),
            "homology_type": df["homology_type"].astype(str).to_numpy(),
        }
    )
    for col in ("reference_symbol", "other_symbol"):
        if col in df:
            out[col] = df[col].astype("string").fillna("").str.strip().to_numpy(dtype=object)
    if "orthology_confidence" in df:
        out["orthology_confidence"] = pd.to_numeric(df["orthology_confidence"], errors="coerce").to_numpy()
    return out.drop_duplicates(["reference_gene", "other_gene"]).reset_index(drop=True)


def read_biomart(path: str | os.PathLike, reference_species: str, other_species: str,
                 require_species: bool = False) -> pd.DataFrame:
    """Read an Ensembl BioMart homology export (web interface, CSV or TSV, optionally gzipped).

    Expected columns (BioMart display names): ``Gene stable ID``, ``<Other> gene stable ID``,
    ``<Other> homology type`` and optionally ``Gene name``, ``<Other> gene name``,
    ``<Other> orthology confidence [0 low, 1 high]``, where ``<Other>`` is e.g. ``Mouse``.
    Rows without an ortholog and non-ortholog homology types are dropped.

    Parameters
    ----------
    path
        The export, e.g. ``ensembl_biomart_human_to_mouse.csv.gz``.
    reference_species, other_species
        Labels written into the table; they must match the keys of the AnnData dict given to
        :func:`map_to_reference` (e.g. ``"human"``, ``"mouse"``). ``other_species`` also picks the
        ``<Other>`` columns when the export holds several species (common names, binomials
        like ``Mus musculus`` and Ensembl prefixes are recognised).
    require_species
        Refuse a single-species export whose species is recognisably not ``other_species``.

    Returns
    -------
    Ortholog table (``ORTHOLOG_COLUMNS`` + ``reference_symbol``, ``other_symbol``,
    ``orthology_confidence`` when present).
    """
    text = _open_text(path)
    first = text.split("\n", 1)[0]
    sep = "\t" if first.count("\t") > first.count(",") else ","
    df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str)
    if "Gene stable ID" not in df.columns:
        raise SclinbenchError(
            f"{path}: no column 'Gene stable ID' (found {list(df.columns)[:4]}...); export it from BioMart "
            "with the attribute 'Gene stable ID' and header row"
        )
    prefixes = sorted(
        {m.group(1) for c in df.columns if (m := re.fullmatch(r"(.+) gene stable ID", c)) and c != "Gene stable ID"}
    )
    if not prefixes:
        raise SclinbenchError(f"{path}: no '<Species> gene stable ID' column; export the homologue attributes")
    wanted = biomart_names(other_species)
    if len(prefixes) == 1:
        prefix = prefixes[0]
        known = biomart_display_names()
        if require_species and prefix.lower() in known and prefix.lower() not in wanted:
            raise SclinbenchError(
                f"{path}: is a BioMart export of {prefix} homologues, but it is used for {other_species!r}; "
                f"give the export for that species (orthologs.path)"
            )
    else:
        matches = [p for p in prefixes if p.lower() in wanted]
        if len(matches) != 1:
            raise SclinbenchError(
                f"{path}: holds homologues of several species ({', '.join(prefixes)}); "
                f"other_species={other_species!r} must name one of them"
            )
        prefix = matches[0]
    homology = f"{prefix} homology type"
    if homology not in df.columns:
        raise SclinbenchError(f"{path}: no column {homology!r}; export the homology type attribute")
    renamed = {
        "Gene stable ID": "reference_gene",
        f"{prefix} gene stable ID": "other_gene",
        homology: "homology_type",
        "Gene name": "reference_symbol",
        f"{prefix} gene name": "other_symbol",
    }
    conf = [c for c in df.columns if c.startswith(f"{prefix} orthology confidence")]
    if conf:
        renamed[conf[0]] = "orthology_confidence"
    df = df[list(c for c in renamed if c in df.columns)].rename(columns=renamed)
    return _tidy(df, reference_species, other_species)


def _biomart_attributes(reference_species: str, other_species: str) -> tuple[str, list[str]]:
    ref = ensembl_prefix(reference_species)
    other = ensembl_prefix(other_species)
    if ref == other:
        raise SclinbenchError(f"reference_species and other_species are both {ref!r}; give two different species")
    attributes = [
        "ensembl_gene_id",
        "external_gene_name",
        f"{other}_homolog_ensembl_gene",
        f"{other}_homolog_associated_gene_name",
        f"{other}_homolog_orthology_type",
        f"{other}_homolog_orthology_confidence",
    ]
    return f"{ref}_gene_ensembl", attributes


_BIOMART_CANONICAL = [
    "reference_gene", "reference_symbol", "other_gene", "other_symbol", "homology_type", "orthology_confidence",
]


def ensembl_biomart_query_url(
    reference_species: str, other_species: str, release: int, host: str | None = None
) -> str:
    """URL of a BioMart query for the homologues of ``reference_species`` genes in ``other_species``.

    The query runs on the Ensembl archive site of the pinned ``release`` (see
    :data:`ENSEMBL_ARCHIVE_HOSTS`), so the answer does not change when Ensembl releases again. It
    returns TSV with a header and a completion stamp (``[success]`` as the last line); parse it with
    :func:`parse_biomart_tsv`. Columns, in order: gene stable ID, gene name, other gene stable ID,
    other gene name, homology type, orthology confidence.

    Parameters
    ----------
    reference_species, other_species
        Common names (``human``, ``mouse``...), binomials (``Homo sapiens``) or Ensembl dataset
        prefixes (``hsapiens``).
    release
        Ensembl release, e.g. ``110``.
    host
        Override the archive host (e.g. ``"jul2023.archive.ensembl.org"``) for releases not in
        :data:`ENSEMBL_ARCHIVE_HOSTS`.

    Returns
    -------
    ``https://<host>/biomart/martservice?query=<url-encoded XML>``
    """
    dataset, attributes = _biomart_attributes(reference_species, other_species)
    if host is None:
        try:
            host = ENSEMBL_ARCHIVE_HOSTS[int(release)]
        except (KeyError, ValueError, TypeError):
            known = f"{min(ENSEMBL_ARCHIVE_HOSTS)}-{max(ENSEMBL_ARCHIVE_HOSTS)}"
            raise SclinbenchError(
                f"Ensembl release {release!r} has no known archive host (known: {known}); pass host= "
                "(e.g. 'jul2023.archive.ensembl.org', see https://www.ensembl.org/info/website/archives/)"
            ) from None
    host = re.sub(r"^https?://", "", str(host)).rstrip("/")
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE Query>'
        '<Query virtualSchemaName="default" formatter="TSV" header="1" uniqueRows="1" count="" '
        'datasetConfigVersion="0.6" completionStamp="1">'
        f'<Dataset name="{dataset}" interface="default">'
        + "".join(f'<Attribute name="{a}"/>' for a in attributes)
        + "</Dataset></Query>"
    )
    return f"https://{host}/biomart/martservice?query=" + urllib.parse.quote(xml, safe="")


def parse_biomart_tsv(
    path: str | os.PathLike, reference_species: str, other_species: str, require_complete: bool = True
) -> pd.DataFrame:
    """Parse the answer of :func:`ensembl_biomart_query_url` into an ortholog table.

    Parameters
    ----------
    path
        The downloaded answer (optionally gzipped).
    reference_species, other_species
        Labels written into the table (keys of the AnnData dict of :func:`map_to_reference`).
    require_complete
        Require BioMart's completion stamp (``[success]`` as last line); BioMart can end a
        transfer early without an HTTP error, so a missing stamp means a truncated table.

    Returns
    -------
    Ortholog table with ``reference_symbol``, ``other_symbol`` and ``orthology_confidence``.
    """
    text = _open_text(path)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise SclinbenchError(f"{path}: empty BioMart answer; delete it and fetch again")
    if "ERROR" in lines[0] and "\t" not in lines[0]:
        raise SclinbenchError(f"{path}: BioMart returned an error ({lines[0][:160]}); check species and release")
    complete = lines[-1].strip() == "[success]"
    if complete:
        lines = lines[:-1]
    elif require_complete:
        raise SclinbenchError(
            f"{path}: BioMart answer lacks the '[success]' completion stamp (truncated transfer); delete it and fetch again"
        )
    header = lines[0].split("\t")
    if len(header) != len(_BIOMART_CANONICAL):
        raise SclinbenchError(
            f"{path}: expected {len(_BIOMART_CANONICAL)} tab-separated columns from the sclinbench BioMart query, "
            f"found {len(header)} ({header[:3]}...); build the URL with ensembl_biomart_query_url"
        )
    df = pd.read_csv(io.StringIO("\n".join(lines[1:])), sep="\t", header=None, names=_BIOMART_CANONICAL, dtype=str)
    return _tidy(df, reference_species, other_species)


_ACCEPTED_FORMS = (
    "accepted forms: (1) a pair table with columns " + ", ".join(ORTHOLOG_COLUMNS) + "; (2) an Ensembl "
    "BioMart export as it comes (CSV or TSV, optionally gzipped) with 'Gene stable ID', '<Species> gene "
    "stable ID' and '<Species> homology type'; (3) any CSV/TSV of gene pairs with orthologs.columns: "
    "{reference_gene: <column>, other_gene: <column>, homology_type: <column>} in the registry entry"
)


def _read_delimited(path: str | os.PathLike) -> pd.DataFrame:
    text = _open_text(path)
    first = text.split("\n", 1)[0]
    sep = "\t" if first.count("\t") > first.count(",") else ","
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SclinbenchError(f"ortholog table {path} cannot be read as CSV or TSV ({str(exc).splitlines()[0][:120]}); "
                              f"{_ACCEPTED_FORMS}") from None


def _derived_homology(df: pd.DataFrame) -> pd.Series:
    """one2one / one2many / many2many from how often each gene occurs in the pairs."""
    ref_n = df.groupby("reference_gene")["other_gene"].transform("nunique")
    other_n = df.groupby("other_gene")["reference_gene"].transform("nunique")
    kind = np.where((ref_n == 1) & (other_n == 1), ONE2ONE,
                    np.where((ref_n == 1) | (other_n == 1), ONE2MANY, "ortholog_many2many"))
    return pd.Series(kind, index=df.index)


def read_ortholog_table(
    path: str | os.PathLike,
    reference_species: str,
    other_species: str,
    columns: dict | None = None,
    where: str = "",
) -> pd.DataFrame:
    """Read a user's ortholog table in any accepted form into the canonical pair table.

    Forms, tried in this order:

    1. ``columns`` given: any CSV/TSV of gene pairs; ``columns`` maps the canonical names
       (``reference_gene``, ``other_gene``, optional ``homology_type``, ``reference_species``,
       ``other_species``, ``reference_symbol``, ``other_symbol``) onto the table's columns.
       Without a ``homology_type`` column the type is derived from the pairs (a gene pair is
       one-to-one when neither gene has another partner in the table).
    2. The canonical pair table (:data:`ORTHOLOG_COLUMNS`).
    3. An Ensembl BioMart export as it comes (:func:`read_biomart`).

    Parameters
    ----------
    path
        CSV or TSV (optionally gzipped); the separator is taken from the header line.
    reference_species, other_species
        Species labels written into the rows when the table has no species columns.
    columns
        ``orthologs.columns`` of the registry entry.
    where
        Names the registry entry in messages.

    Raises
    ------
    SclinbenchError
        The table matches no form: the message names the missing columns, the columns the table
        has and the accepted forms.
    """
    prefix = f"{where}: " if where else ""
    df = _read_delimited(path)
    have = ", ".join(map(str, df.columns[:12])) + (", ..." if len(df.columns) > 12 else "")
    if columns:
        unknown = sorted(set(columns) - set(MAPPABLE_COLUMNS))
        if unknown:
            raise SclinbenchError(f"{prefix}orthologs.columns has unknown key(s) {', '.join(unknown)}; "
                                  f"allowed: {', '.join(MAPPABLE_COLUMNS)}")
        needed = [k for k in ("reference_gene", "other_gene") if not columns.get(k)]
        if needed:
            raise SclinbenchError(f"{prefix}orthologs.columns must name {' and '.join(needed)}; {_ACCEPTED_FORMS}")
        missing = [f"{k}: {v!r}" for k, v in columns.items() if v and v not in df.columns]
        if missing:
            raise SclinbenchError(
                f"{prefix}ortholog table {path} has no column(s) {', '.join(missing)} (orthologs.columns); "
                f"its columns are: {have}"
            )
        out = pd.DataFrame({k: df[v] for k, v in columns.items() if v})
        out = out[out["reference_gene"].notna() & out["other_gene"].notna()]
        if "homology_type" not in out:
            out["homology_type"] = _derived_homology(out).to_numpy()
            counts = out["homology_type"].value_counts().to_dict()
            log.info(
                "%s: no homology_type column; derived from the pairs: %s", path, counts)
        else:
            types = out["homology_type"].astype("string").str.strip()
            plain = {"one2one": ONE2ONE, "one2many": ONE2MANY, "many2many": "ortholog_many2many",
                     "1:1": ONE2ONE, "1:n": ONE2MANY, "n:1": ONE2MANY, "n:m": "ortholog_many2many"}
            out["homology_type"] = types.map(lambda t: plain.get(str(t).lower(), t) if pd.notna(t) else t)
            values = out["homology_type"].dropna().astype(str)
            odd = sorted(set(values[~values.str.startswith("ortholog_")]))
            if odd and len(odd) == values.nunique():
                raise SclinbenchError(
                    f"{prefix}ortholog table {path}: homology_type column {columns['homology_type']!r} holds "
                    f"{', '.join(map(repr, odd[:5]))}; expected Ensembl's ortholog_one2one, ortholog_one2many, "
                    f"ortholog_many2many (or one2one, one2many, many2many), or leave homology_type out of "
                    f"orthologs.columns to derive it from the pairs"
                )
            if odd:
                log.warning("%s: rows with homology type %s are not orthologs and are not used", path,
                            ", ".join(odd[:10]))
        if "reference_species" not in out:
            out["reference_species"] = str(reference_species)
        if "other_species" not in out:
            out["other_species"] = str(other_species)
        return _tidy_with_species(out)
    if all(c in df.columns for c in ORTHOLOG_COLUMNS):
        return _tidy_with_species(df)
    if "Gene stable ID" in df.columns:
        return read_biomart(path, reference_species, other_species, require_species=True)
    missing = [c for c in ORTHOLOG_COLUMNS if c not in df.columns]
    raise SclinbenchError(
        f"{prefix}ortholog table {path} lacks column(s) {', '.join(missing)} and is no BioMart export (no "
        f"'Gene stable ID'); its columns are: {have}. {_ACCEPTED_FORMS[0].upper()}{_ACCEPTED_FORMS[1:]}"
    )


def _tidy_with_species(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical rows from a table that names the species of every row."""
    parts = []
    for (ref, other), rows in df.groupby(["reference_species", "other_species"], sort=False):
        parts.append(_tidy(rows, ref, other))
    if not parts:
        return pd.DataFrame(columns=ORTHOLOG_COLUMNS)
    return pd.concat(parts, ignore_index=True)


