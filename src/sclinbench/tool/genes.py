"""Put a query's counts on a reference's gene list, within one species or through orthologs.

A reference defines the gene list a pipeline is fitted on (its ``var_names``, with symbols beside
them). A query is matched onto that list by whichever of its gene keys overlaps most: its
``var_names`` or a gene column (``gene_ids``, ``gene_symbols``, ``feature_name``...), against the
reference's ids or symbols. Across species the query's genes are first translated through
one-to-one orthologs (:func:`read_ortholog_table`). Reference genes the query lacks are zero;
query genes matching one reference gene several times (duplicated symbols) are summed, as the
workflow's standardization sums duplicated genes.

Rank-based representations rank a cell over ALL genes of the list, so the overlap matters: it is
reported (:meth:`GeneMatch.summary`) and too small an overlap is refused with the id type of each
side named (:func:`describe_ids`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.data import gene_space, orthologs
from sclinbench.data.species import ENSEMBL_GENE_PREFIXES, ensembl_prefix
from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)

#: var columns tried as gene keys (besides ``var_names``), in this order.
GENE_COLUMNS = ("gene_id", "gene_ids", "gene_symbol", "gene_symbols", "feature_name", "gene_name", "symbol")

_ENSEMBL = re.compile(r"^(ENS[A-Z]*G\d{6,})(?:\.\d+)?(?:_PAR_Y)?$")
def clean_ids(values) -> np.ndarray:
    """Gene keys as stripped strings, Ensembl versions removed (``ENSG00000141510.16`` -> ``ENSG00000141510``)."""
    out = pd.Index(values).astype(str).str.strip().to_numpy(dtype=object)
    out = np.array([_ENSEMBL.sub(r"\1", v) for v in out], dtype=object)
    out[np.isin(out, ["", "nan", "None", "NaN"])] = ""
    return out


def describe_ids(values) -> str:
    """What kind of gene ids ``values`` are, with an example (for error messages)."""
    vals = [v for v in clean_ids(values) if v]
    if not vals:
        return "no gene ids"
    sample = vals[: min(len(vals), 2000)]
    example = sample[0]
    ens = [v for v in sample if _ENSEMBL.match(v)]
    if len(ens) >= 0.5 * len(sample):
        prefix = re.match(r"^(ENS[A-Z]*G)", ens[0]).group(1)
        species = ENSEMBL_GENE_PREFIXES.get(prefix, f"prefix {prefix}")
        return f"Ensembl gene ids ({species}, e.g. {ens[0]})"
    letters = [v for v in sample if re.fullmatch(r"[A-Za-z][A-Za-z0-9\-\.]*", v) and any(c.isalpha() for c in v[1:])]
    if len(letters) >= 0.5 * len(sample):
        upper = np.mean([v == v.upper() for v in letters])
        capital = np.mean([v[0].isupper() and v[1:] != v[1:].upper() for v in letters])
        if upper >= 0.6:
            return f"gene symbols (upper case, human-style, e.g. {letters[0]})"
        if capital >= 0.6:
            return f"gene symbols (capitalized, mouse-style, e.g. {letters[0]})"
        return f"gene symbols (e.g. {letters[0]})"
    return f"gene ids like {example!r}"


def looks_ensembl(values) -> bool:
    vals = [v for v in clean_ids(values) if v][:2000]
    return bool(vals) and np.mean([bool(_ENSEMBL.match(v)) for v in vals]) >= 0.5


def gene_keys(var: pd.DataFrame) -> dict[str, np.ndarray]:
    """Candidate gene keys of a var table: ``var_names`` and every known gene column present."""
    keys = {"var_names": clean_ids(var.index)}
    for column in GENE_COLUMNS:
        if column in var.columns:
            keys[f"var['{column}']"] = clean_ids(var[column].astype(object).where(var[column].notna(), ""))
    return keys


def species_key(name: str) -> str:
    """``human`` / ``Homo sapiens`` / ``hsapiens`` -> ``hsapiens`` (the workflow's Ensembl table names)."""
    return ensembl_prefix(name, strict=False)


# ------------------------------------------------------------------------------------------------
# ortholog tables
# ------------------------------------------------------------------------------------------------
@dataclass
class OrthologPairs:
    """One-to-one ortholog pairs between two species ``a`` and ``b`` (either may be the reference)."""

    path: str
    a: str
    b: str
    a_gene: np.ndarray
    b_gene: np.ndarray
    a_symbol: np.ndarray
    b_symbol: np.ndarray

    def __len__(self) -> int:
        return len(self.a_gene)


def read_ortholog_table(path, reference_species: str | None = None, query_species: str | None = None) -> OrthologPairs:
    """The one-to-one pairs of an ortholog table between the reference and the query species.

    Reads every form :func:`sclinbench.data.orthologs.read_ortholog_table` accepts: the workflow's tables
    (``reference_species, reference_gene, other_species, other_gene, homology_type`` [+ symbols],
    e.g. the pinned Ensembl table ``resources/orthologs/ensembl-112/hsapiens__mmusculus.tsv``) and
    Ensembl BioMart web exports, CSV or TSV, optionally gzipped. Only
    ``ortholog_one2one`` rows are used (:func:`sclinbench.data.gene_space.one_to_one`). Which side is the
    reference is decided later by gene overlap; species names only pick the pair when the table
    holds several.
    """
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"ortholog table {path} does not exist (--orthologs); give the path of a one-to-one ortholog table")
    ref, other = reference_species or "reference", query_species or "query"
    try:
        table = orthologs.read_ortholog_table(path, ref, other)
    except SclinbenchError:
        if not (reference_species and query_species):
            raise
        try:  # a BioMart export is oriented from its own reference species: the query's, perhaps
            table = orthologs.read_ortholog_table(path, other, ref)
        except SclinbenchError:
            table = orthologs.read_ortholog_table(path, ref, other)  # the first error is the one to show
    one = gene_space.one_to_one(table)
    pairs = sorted(set(zip(one["reference_species"].astype(str), one["other_species"].astype(str))))
    if not pairs:
        raise SclinbenchError(f"ortholog table {path} has no ortholog_one2one rows; one-to-one orthologs are needed")
    if len(pairs) > 1:
        if not (reference_species and query_species):
            shown = ", ".join(f"{a}->{b}" for a, b in pairs[:6])
            raise SclinbenchError(
                f"ortholog table {path} holds several species pairs ({shown}); name the two with "
                "--reference-species and --query-species"
            )
        want = {species_key(reference_species), species_key(query_species)}
        chosen = [p for p in pairs if {species_key(p[0]), species_key(p[1])} == want]
        if not chosen:
            shown = ", ".join(f"{a}->{b}" for a, b in pairs[:6])
            raise SclinbenchError(
                f"ortholog table {path} has no pair {reference_species!r}-{query_species!r} (it has: {shown}); "
                "fix --reference-species/--query-species"
            )
        pairs = chosen[:1]
    a, b = pairs[0]
    sub = one[(one["reference_species"].astype(str) == a) & (one["other_species"].astype(str) == b)]

    def col(name):
        return clean_ids(sub[name].fillna("")) if name in sub.columns else np.full(len(sub), "", dtype=object)

    log.info("ortholog table %s: %d one-to-one pairs %s <-> %s", path, len(sub), a, b)
    return OrthologPairs(str(path), a, b, col("reference_gene"), col("other_gene"),
                         col("reference_symbol"), col("other_symbol"))


# ------------------------------------------------------------------------------------------------
# matching
# ------------------------------------------------------------------------------------------------
@dataclass
class GeneMatch:
    """Where each column of a query matrix goes in the target (reference) gene list.

    Attributes
    ----------
    target_ids, target_symbols
        The target gene list (reference ids and symbols), in order.
    source_to_target
        For each query column, the target position it adds to, or -1.
    """

    target_ids: np.ndarray
    target_symbols: np.ndarray
    source_to_target: np.ndarray
    matched_on: str
    reference_ids: str
    query_ids: str
    orthologs: dict = field(default_factory=dict)

    @property
    def n_target(self) -> int:
        return len(self.target_ids)

    @property
    def n_query(self) -> int:
        return len(self.source_to_target)

    @property
    def shared(self) -> np.ndarray:
        """Boolean mask over the target genes: measured in the query."""
        mask = np.zeros(self.n_target, dtype=bool)
        mask[self.source_to_target[self.source_to_target >= 0]] = True
        return mask

    @property
    def n_shared(self) -> int:
        return int(self.shared.sum())

    def apply(self, X) -> sp.csr_matrix:
        """Query counts (cells x query genes) -> counts on the target genes (missing genes 0)."""
        X = sp.csr_matrix(X)
        if X.shape[1] != self.n_query:
            raise SclinbenchError(f"query matrix has {X.shape[1]} genes, the gene match was built for {self.n_query}")
        if self.n_query == self.n_target and np.array_equal(self.source_to_target, np.arange(self.n_target)):
            return X.astype(np.float32, copy=False)  # the same genes in the same order
        rows = np.flatnonzero(self.source_to_target >= 0)
        M = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, self.source_to_target[rows])),
                          shape=(self.n_query, self.n_target))
        return sp.csr_matrix(X @ M, dtype=np.float32)  # a product has no duplicate entries

    def restricted(self) -> tuple[GeneMatch, np.ndarray]:
        """The match onto the shared target genes only, and their positions in the full target list."""
        keep = np.flatnonzero(self.shared)
        new_pos = np.full(self.n_target, -1)
        new_pos[keep] = np.arange(keep.size)
        s2t = np.where(self.source_to_target >= 0, new_pos[np.maximum(self.source_to_target, 0)], -1)
        return GeneMatch(self.target_ids[keep], self.target_symbols[keep], s2t, self.matched_on,
                         self.reference_ids, self.query_ids, dict(self.orthologs)), keep

    def summary(self) -> dict:
        """JSON/h5ad-friendly description (for ``uns`` and logs)."""
        out = {
            "n_reference_genes": int(self.n_target),
            "n_query_genes": int(self.n_query),
            "n_shared": int(self.n_shared),
            "fraction_of_reference": float(self.n_shared / max(self.n_target, 1)),
            "matched_on": self.matched_on,
            "reference_ids": self.reference_ids,
            "query_ids": self.query_ids,
        }
        for k, v in self.orthologs.items():
            out[f"orthologs_{k}"] = v
        return out


def _first_positions(keys: np.ndarray) -> pd.Series:
    """key -> first position (a Series indexed by key), ignoring empty keys."""
    keys = pd.Series(np.asarray(keys, dtype=object))
    keys = keys[keys != ""]
    keys = keys[~keys.duplicated()]
    return pd.Series(keys.index.to_numpy(), index=pd.Index(keys.to_numpy(), dtype=object))


def _lookup(pos: pd.Series, keys: np.ndarray) -> np.ndarray:
    """Target position of every key (-1 where absent or empty)."""
    idx = pos.index.get_indexer(pd.Index(np.asarray(keys, dtype=object), dtype=object))
    out = np.where(idx >= 0, pos.to_numpy()[np.maximum(idx, 0)], -1).astype(np.int64)
    out[np.asarray(keys, dtype=object) == ""] = -1
    return out


def match_genes(
    target: dict[str, np.ndarray],
    query: dict[str, np.ndarray],
    *,
    target_ids: np.ndarray,
    target_symbols: np.ndarray,
    pairs: OrthologPairs | None = None,
    min_shared: int = 100,
    reference_name: str = "reference",
    query_name: str = "query",
) -> GeneMatch:
    """Match query genes onto the target gene list by the key pair that overlaps most.

    Parameters
    ----------
    target, query
        Candidate keys (name -> array over genes), e.g. from :func:`gene_keys`.
    target_ids, target_symbols
        The target gene list written into the result.
    pairs
        One-to-one orthologs: query keys are translated to the reference species first (both table
        orientations and both gene-id / symbol columns are tried).
    min_shared
        Fewer shared genes raise :class:`SclinbenchError` naming the id type of both sides.
    reference_name, query_name
        Names of the two files for the messages.
    """
    target_pos = {name: _first_positions(keys) for name, keys in target.items()}
    best = None  # (n_shared, matched_on, source_to_target, translation info)
    translations = [(None, None, None)]
    if pairs is not None:
        translations = []
        for ref_side, q_side in (("a", "b"), ("b", "a")):
            for kind in ("gene", "symbol"):
                ref_col = getattr(pairs, f"{ref_side}_{kind}")
                q_col = getattr(pairs, f"{q_side}_{kind}")
                ok = (ref_col != "") & (q_col != "")
                if ok.any():
                    label = (f"{getattr(pairs, q_side)} {kind} -> {getattr(pairs, ref_side)} {kind} "
                             f"({int(ok.sum())} one-to-one pairs)")
                    mapping = pd.Series(ref_col[ok], index=pd.Index(q_col[ok], dtype=object))
                    mapping = mapping[~mapping.index.duplicated()]
                    translations.append((mapping, label, getattr(pairs, ref_side)))
    for q_name, q_keys in query.items():
        for translate, t_label, ref_species in translations:
            if translate is None:
                keys = q_keys
            else:
                keys = translate.reindex(pd.Index(q_keys, dtype=object)).fillna("").to_numpy(dtype=object)
            for t_name, pos in target_pos.items():
                s2t = _lookup(pos, keys)
                n = int(np.unique(s2t[s2t >= 0]).size)
                if best is None or n > best[0]:
                    on = f"query {q_name} = reference {t_name}"
                    if t_label:
                        on = f"query {q_name} through orthologs ({t_label}) = reference {t_name}"
                    best = (n, on, s2t, {"table": pairs.path, "reference_species": ref_species,
                                         "translation": t_label} if t_label else {})
    n_shared, on, s2t, orth = best
    ref_desc = describe_ids(target_ids)
    q_desc = describe_ids(next(iter(query.values())))
    if n_shared < min_shared:
        where = "" if pairs is None else f" through the one-to-one orthologs of {pairs.path} ({len(pairs)} pairs)"
        hint = (" give the query the reference's gene ids, or for another species add --reference-species, "
                "--query-species and --orthologs TABLE" if pairs is None else
                " check that the table's gene ids (or symbols) are those of the two files and that the "
                "species are the right way round")
        raise SclinbenchError(
            f"{query_name} shares {n_shared} of {len(target_ids)} genes with {reference_name}{where} "
            f"(at least {min_shared} needed, --min-shared-genes): {reference_name} uses {ref_desc}, "
            f"{query_name} uses {q_desc};{hint}"
        )
    match = GeneMatch(np.asarray(target_ids, dtype=object), np.asarray(target_symbols, dtype=object), s2t, on,
                      ref_desc, q_desc, orth)
    frac = n_shared / max(len(target_ids), 1)
    log.info("genes: %d of %d reference genes measured in the query (%.1f%%), matched on %s",
             n_shared, len(target_ids), 100 * frac, on)
    return match
