"""Several species onto one reference gene space, through an ortholog table.

The table is the tidy one of :mod:`sclinbench.data.orthologs` (one row per gene pair,
``homology_type`` in Ensembl's labels). Ensembl's ``one2many`` is symmetric: the "many" side can
be the reference or the other species; :func:`map_to_reference` handles both.

- :func:`one_to_one` -- the one-to-one pairs of a table.
- :func:`map_to_reference` -- per-species AnnData concatenated in reference gene space
  (``mode="one2one"`` keeps one-to-one pairs, ``"sum"`` sums a reference gene's orthologs).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.data.orthologs import ONE2MANY, ONE2ONE, ORTHOLOG_COLUMNS
from sclinbench.errors import SclinbenchError


def _check_table(table: pd.DataFrame) -> None:
    missing = [c for c in ORTHOLOG_COLUMNS if c not in table.columns]
    if missing:
        raise SclinbenchError(
            f"ortholog table lacks column(s) {missing}; it needs {ORTHOLOG_COLUMNS} (see sclinbench.data.orthologs.read_biomart)"
        )


def one_to_one(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``table`` that are one-to-one orthologs.

    Keeps ``homology_type == "ortholog_one2one"`` and, defensively, drops any gene that still occurs
    in more than one such row of the same species pair.

    Parameters
    ----------
    table
        Ortholog table (see module docstring).

    Returns
    -------
    The one-to-one rows (a copy, index reset).
    """
    _check_table(table)
    sub = table[table["homology_type"] == ONE2ONE]
    pair = ["reference_species", "other_species"]
    dup_ref = sub.duplicated(pair + ["reference_gene"], keep=False)
    dup_other = sub.duplicated(pair + ["other_gene"], keep=False)
    return sub[~(dup_ref | dup_other)].reset_index(drop=True)


def _pairs_for(table: pd.DataFrame, reference: str, species: str) -> pd.DataFrame:
    """Pairs reference gene -> species gene for one species, whichever way round the table is."""
    fwd = table[(table["reference_species"] == reference) & (table["other_species"] == species)]
    rev = table[(table["reference_species"] == species) & (table["other_species"] == reference)]
    rev = rev.rename(columns={"reference_gene": "other_gene", "other_gene": "reference_gene"})
    pairs = pd.concat([fwd, rev], ignore_index=True)[["reference_gene", "other_gene", "homology_type"]]
    if pairs.empty:
        available = sorted(set(zip(table["reference_species"].astype(str), table["other_species"].astype(str))))
        shown = ", ".join(f"{a}->{b}" for a, b in available[:6]) or "none"
        raise SclinbenchError(
            f"ortholog table has no rows for reference {reference!r} and species {species!r} "
            f"(it has: {shown}); add that species' table (e.g. read_biomart) or rename the species key"
        )
    return pairs.astype({"reference_gene": str, "other_gene": str}).drop_duplicates(["reference_gene", "other_gene"])


def _species_mapping(pairs: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Pairs usable in ``mode``: one2one -> unique on both sides; sum -> every other gene has one target."""
    if mode == "one2one":
        sub = pairs[pairs["homology_type"] == ONE2ONE]
        bad = sub.duplicated("reference_gene", keep=False) | sub.duplicated("other_gene", keep=False)
    else:
        sub = pairs[pairs["homology_type"].isin([ONE2ONE, ONE2MANY])]
        # an other-species gene orthologous to several reference genes cannot be summed into one of them
        bad = sub.duplicated("other_gene", keep=False)
    return sub[~bad]


def map_to_reference(
    adatas: dict[str, ad.AnnData], table: pd.DataFrame, reference: str, mode: str = "one2one"
) -> ad.AnnData:
    """Re-index every species' counts to reference gene ids and concatenate all species.

    Parameters
    ----------
    adatas
        ``{species: AnnData}`` with raw counts in ``X`` and gene ids as ``var_names``; the keys must
        match the species labels of ``table``.
    table
        Ortholog table (``reference_species, reference_gene, other_species, other_gene,
        homology_type``); rows may be oriented either way round (reference -> species or back).
    reference
        Key of the reference species; its gene ids become the output ``var_names``.
    mode
        ``"one2one"``: keep reference genes with a one-to-one ortholog in every species.
        ``"sum"``: also use one-to-many orthologs, summing the counts of the several species genes
        onto their reference gene; species genes orthologous to several reference genes (the
        other direction of one-to-many) and many-to-many pairs are not used. In both modes only
        reference genes present (and mapped) in every species are kept, in the reference's order.

    Returns
    -------
    AnnData with ``X`` sparse CSR (input dtype, i.e. integer counts stay integer), ``obs`` =
    concatenated obs of all species (``organism`` filled with the species key where missing; if
    cell names collide across species, every name gets the suffix ``-<species>``), ``var`` = the
    reference's var for the kept genes plus ``<species>_genes`` (``;``-joined species gene ids),
    ``obsm`` keys present in every species, and ``uns["orthologs"]`` with ``mode``, ``reference``,
    ``n_genes`` and per species ``n_genes_input``, ``n_genes_mapped`` (reference genes with a usable
    ortholog measured in that species, before intersecting species; for the reference: ``n_genes``)
    and ``n_genes_used`` (species genes contributing counts to the kept genes).
    """
    if mode not in ("one2one", "sum"):
        raise SclinbenchError(f"orthologs mode {mode!r} is not 'one2one' or 'sum'; choose one of those")
    if reference not in adatas:
        raise SclinbenchError(f"reference species {reference!r} is not among the datasets {list(adatas)}; fix 'reference'")
    _check_table(table)
    for name, adata in adatas.items():
        if not adata.var_names.is_unique:
            raise SclinbenchError(f"dataset {name!r}: var_names (gene ids) are not unique; make them unique before mapping")

    ref_var = adatas[reference].var_names
    ref_pos = pd.Series(np.arange(ref_var.size), index=ref_var)
    per_species: dict[str, pd.DataFrame] = {}
    mapped_sets = []
    for name, adata in adatas.items():
        if name == reference:
            continue
        pairs = _species_mapping(_pairs_for(table, reference, name), mode)
        present = pairs["reference_gene"].isin(ref_var) & pairs["other_gene"].isin(adata.var_names)
        if not pairs["other_gene"].isin(adata.var_names).any():
            example_data = adata.var_names[0] if adata.n_vars else "none"
            example_table = pairs["other_gene"].iloc[0] if len(pairs) else "none"
            raise SclinbenchError(
                f"dataset {name!r}: no gene id (var_names, e.g. {example_data!r}) matches the ortholog table's "
                f"other_gene (e.g. {example_table!r}); set var_names to the same gene ids (e.g. Ensembl)"
            )
        pairs = pairs[present]
        if pairs.empty:
            raise SclinbenchError(
                f"dataset {name!r}: no {mode} ortholog pair has both genes measured in {reference!r} and {name!r}; "
                f"check that {reference!r} var_names are the table's reference_gene ids"
            )
        per_species[name] = pairs
        mapped_sets.append(set(pairs["reference_gene"]))

    keep_mask = np.ones(ref_var.size, dtype=bool)
    for mapped in mapped_sets:
        keep_mask &= ref_var.isin(list(mapped))
    kept = ref_var[keep_mask]
    if kept.size == 0:
        raise SclinbenchError(
            f"no reference gene of {reference!r} has a {mode} ortholog in every species ({', '.join(per_species)}); "
            "drop the species with the fewest shared genes or use mode='sum'"
        )
    kept_pos = pd.Series(np.arange(kept.size), index=kept)

    blocks, obs_list, stats = [], [], {}
    for name, adata in adatas.items():
        X = adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
        X = sp.csr_matrix(X)
        if name == reference:
            rows = ref_pos[kept].to_numpy()
            cols = np.arange(kept.size)
            gene_lists = None
            n_used = kept.size
        else:
            pairs = per_species[name]
            pairs = pairs[pairs["reference_gene"].isin(kept)]
            rows = adata.var_names.get_indexer(pairs["other_gene"])
            cols = kept_pos[pairs["reference_gene"]].to_numpy()
            gene_lists = pairs.groupby("reference_gene")["other_gene"].agg(lambda s: ";".join(sorted(s)))
            n_used = int(pairs["other_gene"].nunique())
        M = sp.csr_matrix((np.ones(rows.size, dtype=X.dtype), (rows, cols)), shape=(adata.n_vars, kept.size))
        Y = sp.csr_matrix(X @ M)
        Y.sum_duplicates()
        Y.sort_indices()
        blocks.append(Y)
        obs = adata.obs.copy()
        if "organism" not in obs.columns:
            obs["organism"] = name
        obs_list.append((name, obs))
        stats[name] = {
            "n_genes_input": int(adata.n_vars),
            "n_genes_mapped": int(kept.size if name == reference else per_species[name]["reference_gene"].nunique()),
            "n_genes_used": int(n_used),
        }
        if gene_lists is not None:
            stats[name]["_genes"] = gene_lists

    obs = pd.concat([o for _, o in obs_list], axis=0)
    for col in obs.columns:  # concatenating categoricals with different categories gives object
        if any(col in o and isinstance(o[col].dtype, pd.CategoricalDtype) for _, o in obs_list):
            obs[col] = obs[col].astype("category")
    names = np.concatenate([o.index.astype(str).to_numpy() for _, o in obs_list])
    if pd.Index(names).has_duplicates:
        names = np.concatenate([(o.index.astype(str) + f"-{n}").to_numpy() for n, o in obs_list])
    obs.index = pd.Index(names)

    var = adatas[reference].var.loc[kept].copy()
    for name in per_species:
        var[f"{name}_genes"] = stats[name].pop("_genes").reindex(kept).fillna("").to_numpy(dtype=object)

    dtype = np.result_type(*[b.dtype for b in blocks])
    X = sp.vstack([b.astype(dtype) for b in blocks], format="csr")
    out = ad.AnnData(X=X, obs=obs, var=var)
    shared_obsm = set.intersection(*[set(a.obsm.keys()) for a in adatas.values()])
    for key in sorted(shared_obsm):
        parts = [np.asarray(adatas[n].obsm[key]) for n in adatas]
        if len({p.shape[1] for p in parts}) == 1:
            out.obsm[key] = np.vstack(parts)
    out.uns["orthologs"] = {
        "mode": mode,
        "reference": reference,
        "n_genes": int(kept.size),
        "species": stats,
    }
    return out
