"""A seeded multi-species single-cell atlas whose truth is known.

The model, in order (all "log" are natural logs):

1. **Shared programs** in the reference gene space (``n_genes`` genes): a gene baseline
   ``b_g ~ N(0, baseline_sd)`` plus type effects ``E_t``: cell types are grouped into lineages
   (``type i -> lineage i % n_lineages``) with sparse lineage effects (shared by the lineage's types,
   so sibling types are confusable), sparse type effects (``type_effect_sd``) and ``n_markers``
   up-regulated markers per type (log2 fold change 0.5-1 x ``marker_log2fc``).
   ``n_cell_types`` types are shared by all species; one extra type (the *species-only* type,
   ``type_<n_cell_types + 1>``, by default in the second species only, never in the reference, so a
   model trained on the reference meets it as a novel type) belongs to a lineage as well: it
   resembles some known types without being one of them.
2. **Species**: species ``s`` with divergence ``d`` in [0, 1) has log profiles
   ``b_g + d * gene_noise * z_g + sqrt(1 - d^2) * E_t + d * E'_t``, where ``z_g ~ N(0, 1)`` is a
   gene-level shift (same for all types) and ``E'`` an independent species-specific draw of the type
   effects: a fraction ``d^2`` of the type-program variance is rewired, so transfer from the
   reference gets harder with ``d`` while staying far above chance. The reference has ``d = 0``.
3. **Orthology** of every other species to the reference: a fraction of reference genes is lost
   (reference-specific), a fraction is duplicated into 2-3 copies (one-to-many; the reference
   expression is split between copies by Dirichlet shares, so the copies *sum* to the ortholog's
   expression), the rest are one-to-one; the species also has its own genes with independent profiles.
   Gene ids are species-specific (``BETA_G00001``...) and shuffled relative to the reference.
4. **Disease**: about half of the donors of every species are ``disease``; in their cells of
   ``n_affected_types`` cell types, ``n_disease_genes`` reference genes (with orthologs in every
   species; all copies of a one-to-many ortholog) are up-regulated by ``disease_log2fc``.
5. **Counts**: per donor a gene-wise log-normal batch factor (``donor_sd``) and a log-normal library
   scale; per cell a log-normal library size (median ``library_median``, sd ``library_sd``);
   counts ~ negative binomial with mean ``library size x profile proportion`` and inverse dispersion
   ``nb_theta`` (drawn as gamma-Poisson), stored as CSR int32.

Everything is derived from ``seed`` through independent streams per component, so e.g. changing
``cells_per_species`` does not change the gene programs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError
from sclinbench.workflow.io import write_h5ad, write_table

__all__ = ["make_atlas", "write_atlas", "ORTHOLOG_COLUMNS"]

#: Columns of an ortholog table (one row per gene pair), shared with :mod:`sclinbench.data.orthologs`.
ORTHOLOG_COLUMNS = ["reference_species", "reference_gene", "other_species", "other_gene", "homology_type"]

ONE2ONE = "ortholog_one2one"
ONE2MANY = "ortholog_one2many"

# component ids for independent random streams
_PROGRAMS, _ORTHOLOGY, _DISEASE, _CELLS, _SPECIES_NOISE = 1, 2, 3, 4, 5
_CHUNK_ENTRIES = 4_000_000  # cells x genes drawn densely at a time


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *keys])


def _check_params(species, divergence, n_genes, n_cell_types, cells_per_species, n_donors,
                  species_only_in, fractions, n_disease_genes, n_affected_types) -> None:
    if len(species) < 2:
        raise SclinbenchError(f"make_atlas: species={list(species)} needs at least 2 species (the first is the reference)")
    if len(set(species)) != len(species):
        raise SclinbenchError(f"make_atlas: species={list(species)} contains duplicates; give distinct names")
    if len(divergence) != len(species):
        raise SclinbenchError(
            f"make_atlas: divergence has {len(divergence)} values for {len(species)} species; give one per species"
        )
    if any(not 0 <= d < 1 for d in divergence):
        raise SclinbenchError(f"make_atlas: divergence={list(divergence)} must be in [0, 1)")
    if n_cell_types < 2:
        raise SclinbenchError(f"make_atlas: n_cell_types={n_cell_types} must be >= 2")
    if n_donors < 2:
        raise SclinbenchError(f"make_atlas: n_donors={n_donors} must be >= 2 (healthy and disease donors)")
    if species_only_in is not None and species_only_in not in species:
        raise SclinbenchError(f"make_atlas: species_only_in={species_only_in!r} is not one of species={list(species)}")
    for name, value in fractions.items():
        if not 0 <= value < 0.5:
            raise SclinbenchError(f"make_atlas: {name}={value} must be in [0, 0.5)")
    if n_affected_types > n_cell_types:
        raise SclinbenchError(f"make_atlas: n_affected_types={n_affected_types} exceeds n_cell_types={n_cell_types}")
    min_cells = 10 * (n_cell_types + 1)
    if cells_per_species < min_cells:
        raise SclinbenchError(
            f"make_atlas: cells_per_species={cells_per_species} is too small for {n_cell_types} cell types; use >= {min_cells}"
        )
    if n_genes < 10 * max(n_disease_genes, 10):
        raise SclinbenchError(f"make_atlas: n_genes={n_genes} is too small; use >= {10 * max(n_disease_genes, 10)}")


def _type_names(n: int) -> list[str]:
    return [f"type_{i + 1:02d}" for i in range(n)]


def _programs(rng, n_genes, n_types_total, baseline_sd, n_markers, type_effect_sd, marker_lfc):
    """Gene baselines, type effects (types x genes, log scale) and the lineage of each type."""
    n_lineages = max(2, int(round((n_types_total - 1) / 3)))
    lineage = np.arange(n_types_total) % n_lineages
    baseline = rng.normal(0.0, baseline_sd, n_genes)
    lin_effect = rng.normal(0.0, 1.0, (n_lineages, n_genes)) * (rng.random((n_lineages, n_genes)) < 0.08)
    type_effect = rng.normal(0.0, type_effect_sd, (n_types_total, n_genes)) * (rng.random((n_types_total, n_genes)) < 0.05)
    for t in range(n_types_total):
        markers = rng.choice(n_genes, size=min(n_markers, n_genes), replace=False)
        type_effect[t, markers] += rng.uniform(0.5, 1.0, markers.size) * marker_lfc * np.log(2.0)
    return baseline, lin_effect[lineage] + type_effect, lineage


def _orthology(rng, n_genes, lost_fraction, one2many_fraction):
    """Per reference gene: number of copies in the other species (0 = lost, 1 = one2one, 2-3 = one2many)."""
    n_lost = int(round(lost_fraction * n_genes))
    n_dup = int(round(one2many_fraction * n_genes))
    order = rng.permutation(n_genes)
    copies = np.ones(n_genes, dtype=int)
    copies[order[:n_lost]] = 0
    dup = order[n_lost:n_lost + n_dup]
    copies[dup] = np.where(rng.random(n_dup) < 0.7, 2, 3)
    return copies


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    raw = weights / weights.sum() * total
    counts = np.floor(raw).astype(int)
    rest = total - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts


def _species_genes(name, is_reference, copies, shares, n_specific, n_genes, rng):
    """Gene table of one species: id, symbol, reference gene index (-1 = species-specific), share."""
    if is_reference:
        ref_idx = np.arange(n_genes)
        share = np.ones(n_genes)
        suffix = np.array([""] * n_genes, dtype=object)
    else:
        ref_idx = np.repeat(np.arange(n_genes), copies)
        share = np.concatenate([shares[g] for g in range(n_genes) if copies[g] > 0]) if ref_idx.size else np.zeros(0)
        suffix = np.concatenate(
            [[""] if copies[g] == 1 else list("abc"[: copies[g]]) for g in range(n_genes) if copies[g] > 0]
        ).astype(object)
        ref_idx = np.concatenate([ref_idx, np.full(n_specific, -1)])
        share = np.concatenate([share, np.ones(n_specific)])
        suffix = np.concatenate([suffix, np.array([""] * n_specific, dtype=object)])
        order = rng.permutation(ref_idx.size)  # species gene order is unrelated to the reference's
        ref_idx, share, suffix = ref_idx[order], share[order], suffix[order]
    n = ref_idx.size
    ids = np.array([f"{name.upper()}_G{j + 1:05d}" for j in range(n)], dtype=object)
    symbols = np.empty(n, dtype=object)
    k_specific = 0
    for j in range(n):
        g = ref_idx[j]
        if g < 0:
            k_specific += 1
            symbols[j] = f"{name[:3].capitalize()}sp{k_specific:04d}"
        elif is_reference:
            symbols[j] = f"SYN{g + 1:05d}"
        else:
            symbols[j] = f"Syn{g + 1:05d}{suffix[j]}"
    return ids, symbols, ref_idx, share


def _sample_counts(rng, means: np.ndarray, theta: float) -> np.ndarray:
    """Negative binomial counts with the given means (gamma-Poisson), int32."""
    lam = rng.gamma(theta, means / theta)
    return rng.poisson(lam).astype(np.int32)


def make_atlas(
    seed: int = 0,
    species: Sequence[str] = ("alpha", "beta", "gamma"),
    divergence: Sequence[float] = (0.0, 0.3, 0.6),
    n_genes: int = 2000,
    n_cell_types: int = 8,
    cells_per_species: int = 1500,
    n_donors: int = 4,
    *,
    species_only_in: str | None = None,
    species_only_fraction: float = 0.05,
    rare_ratio: float = 0.2,
    lost_fraction: float = 0.05,
    one2many_fraction: float = 0.07,
    specific_fraction: float = 0.05,
    baseline_sd: float = 1.8,
    n_markers: int = 10,
    marker_log2fc: float = 2.0,
    type_effect_sd: float = 0.8,
    gene_noise: float = 1.0,
    n_disease_genes: int = 30,
    n_affected_types: int = 2,
    disease_log2fc: float = 1.0,
    donor_sd: float = 0.2,
    library_median: float = 800.0,
    library_sd: float = 0.5,
    nb_theta: float = 5.0,
) -> tuple[dict[str, ad.AnnData], pd.DataFrame]:
    """Generate a synthetic multi-species atlas with known truth.

    Parameters
    ----------
    seed
        Seed of every random draw; the same seed gives identical output.
    species
        Species names; the first is the reference of the orthology table.
    divergence
        One value per species in [0, 1): how far it departs from the shared programs (the
        reference normally 0; see the module docstring). Larger means harder cross-species transfer.
    n_genes
        Number of reference genes (other species have a slightly different number).
    n_cell_types
        Cell types shared by all species (named ``type_01``...). One more type
        (``type_<n_cell_types + 1>``) exists in ``species_only_in`` only.
    cells_per_species
        Cells per species (exact).
    n_donors
        Donors per species (``<species>_d1``...); ``n_donors // 2`` of them are ``disease``.
    species_only_in
        Species holding the extra type; default the second species (never the reference unless given,
        so a classifier trained on the reference has to meet it as a novel type).
    species_only_fraction
        Fraction of that species' cells in the extra type.
    rare_ratio
        Abundance of the rarest shared type relative to the most common (geometric spacing).
    lost_fraction, one2many_fraction, specific_fraction
        Per non-reference species: fraction of reference genes without ortholog, fraction duplicated
        into 2-3 copies, and number of species-specific genes as a fraction of ``n_genes``.
    baseline_sd
        Spread of gene baselines (natural log scale).
    n_markers, marker_log2fc, type_effect_sd
        Marker genes per cell type, their maximal log2 fold change, and the sd of the sparse
        (5% of genes) type effects (natural log scale).
    gene_noise
        Per unit of divergence: sd of the species' gene-level log shift.
    n_disease_genes, n_affected_types, disease_log2fc
        The disease program: reference genes, cell types where it acts, and its log2 fold change.
    donor_sd
        sd of the per-donor, per-gene log batch factor.
    library_median, library_sd
        Per-cell library size: log-normal with this median (counts) and log-scale sd.
    nb_theta
        Negative binomial inverse dispersion (smaller = noisier).

    Returns
    -------
    adatas
        ``{species: AnnData}``; ``X`` CSR int32 raw counts; ``obs``: ``cell_type``, ``donor_id``,
        ``condition`` (``healthy``/``disease``), ``organism``; ``var`` (index = gene id):
        ``gene_id``, ``gene_symbol`` and truth columns ``reference_gene`` (``""`` for species-specific),
        ``homology`` and ``disease_program``; ``uns["synthetic_truth"]``: parameters, disease genes,
        affected types, disease donors, the species-only type and its species.
    orthologs
        One row per (reference gene, other gene) pair: ``reference_species, reference_gene,
        other_species, other_gene, homology_type`` (``ortholog_one2one``/``ortholog_one2many``),
        ``reference_symbol, other_symbol``.

    Examples
    --------
    >>> adatas, orthologs = make_atlas(seed=0)
    >>> adatas["beta"].obs["cell_type"].nunique()
    9
    """
    species = [str(s) for s in species]
    divergence = [float(d) for d in divergence]
    if species_only_in is None:
        species_only_in = species[1] if len(species) > 1 else None
    _check_params(
        species, divergence, n_genes, n_cell_types, cells_per_species, n_donors, species_only_in,
        {"lost_fraction": lost_fraction, "one2many_fraction": one2many_fraction,
         "specific_fraction": specific_fraction, "species_only_fraction": species_only_fraction},
        n_disease_genes, n_affected_types,
    )
    reference = species[0]
    n_total_types = n_cell_types + 1
    type_names = _type_names(n_total_types)
    extra_type = type_names[-1]
    params = {
        "seed": int(seed), "species": species, "divergence": divergence, "n_genes": int(n_genes),
        "n_cell_types": int(n_cell_types), "cells_per_species": int(cells_per_species),
        "n_donors": int(n_donors), "species_only_in": species_only_in,
        "species_only_fraction": float(species_only_fraction), "rare_ratio": float(rare_ratio),
        "lost_fraction": float(lost_fraction), "one2many_fraction": float(one2many_fraction),
        "specific_fraction": float(specific_fraction), "baseline_sd": float(baseline_sd),
        "n_markers": int(n_markers), "marker_log2fc": float(marker_log2fc),
        "type_effect_sd": float(type_effect_sd), "gene_noise": float(gene_noise),
        "n_disease_genes": int(n_disease_genes), "n_affected_types": int(n_affected_types),
        "disease_log2fc": float(disease_log2fc), "donor_sd": float(donor_sd),
        "library_median": float(library_median), "library_sd": float(library_sd), "nb_theta": float(nb_theta),
    }

    # 1. shared programs and type abundances
    rng = _rng(seed, _PROGRAMS)
    program_args = (n_total_types, baseline_sd, n_markers, type_effect_sd, marker_log2fc)
    baseline, effects, lineage = _programs(rng, n_genes, *program_args)
    shared = baseline[None, :] + effects
    abundance = np.geomspace(1.0, rare_ratio, n_cell_types)[rng.permutation(n_cell_types)]

    # 3. orthology of each non-reference species
    copies, shares = {}, {}
    for i, name in enumerate(species[1:], start=1):
        r = _rng(seed, _ORTHOLOGY, i)
        copies[name] = _orthology(r, n_genes, lost_fraction, one2many_fraction)
        shares[name] = [r.dirichlet(np.full(c, 2.0)) if c > 1 else np.ones(c) for c in copies[name]]

    # 4. disease program: reference genes with an ortholog in every species, reasonably expressed
    r = _rng(seed, _DISEASE)
    affected = np.sort(r.choice(n_cell_types, size=n_affected_types, replace=False))
    has_all = np.all([copies[s] > 0 for s in species[1:]], axis=0)
    level = shared[affected].max(axis=0)
    candidates = np.flatnonzero(has_all & (level >= np.median(level)))
    disease_ref = np.sort(r.choice(candidates, size=min(n_disease_genes, candidates.size), replace=False))
    disease_shift = disease_log2fc * np.log(2.0)

    adatas: dict[str, ad.AnnData] = {}
    ortholog_rows = []
    ref_ids = None
    ref_symbols = None
    for i, name in enumerate(species):
        is_ref = i == 0
        r_genes = _rng(seed, _ORTHOLOGY, i, 1)
        n_specific = 0 if is_ref else int(round(specific_fraction * n_genes))
        ids, symbols, ref_idx, share = _species_genes(
            name, is_ref, copies.get(name), shares.get(name), n_specific, n_genes, r_genes
        )
        if is_ref:
            ref_ids, ref_symbols = ids, symbols

        # 2. species profiles (types x species genes), log scale
        r_noise = _rng(seed, _SPECIES_NOISE, i)
        d = divergence[i]
        _, own_effects, _ = _programs(r_noise, n_genes, *program_args)
        noisy = (baseline + d * gene_noise * r_noise.normal(size=n_genes))[None, :] + (
            np.sqrt(1.0 - d**2) * effects + d * own_effects
        )
        specific = ref_idx < 0
        log_prof = np.empty((n_total_types, ids.size))
        log_prof[:, ~specific] = noisy[:, ref_idx[~specific]] + np.log(share[~specific])[None, :]
        if specific.any():
            own_base, own_effects, _ = _programs(r_noise, int(specific.sum()), *program_args)
            log_prof[:, specific] = own_base[None, :] + own_effects
        is_disease_gene = np.isin(ref_idx, disease_ref)

        # cells: types, donors, conditions
        r_cells = _rng(seed, _CELLS, i)
        present = list(range(n_cell_types)) + ([n_cell_types] if name == species_only_in else [])
        weights = abundance.copy()
        if name == species_only_in:
            weights = np.append(weights / weights.sum() * (1 - species_only_fraction), species_only_fraction)
        type_counts = _largest_remainder(weights, cells_per_species)
        donors = [f"{name}_d{k + 1}" for k in range(n_donors)]
        disease_donor = np.zeros(n_donors, dtype=bool)
        disease_donor[r_cells.permutation(n_donors)[: n_donors // 2]] = True
        donor_size = r_cells.dirichlet(np.full(n_donors, 20.0))
        cell_type = np.repeat(np.asarray(present), type_counts)
        cell_donor = np.empty(cells_per_species, dtype=int)
        start = 0
        for t_count in type_counts:
            p = r_cells.dirichlet(donor_size * 50.0)
            cell_donor[start:start + t_count] = r_cells.choice(n_donors, size=t_count, p=p)
            start += t_count
        order = r_cells.permutation(cells_per_species)
        cell_type, cell_donor = cell_type[order], cell_donor[order]

        donor_log_factor = r_cells.normal(0.0, donor_sd, (n_donors, ids.size))
        donor_lib_scale = np.exp(r_cells.normal(0.0, 0.15, n_donors))
        lib = np.exp(r_cells.normal(np.log(library_median), library_sd, cells_per_species))
        lib *= donor_lib_scale[cell_donor]

        # 5. counts, one (donor, type) group at a time
        X_blocks, cell_index = [], []
        for k in range(n_donors):
            for t in present:
                cells = np.flatnonzero((cell_donor == k) & (cell_type == t))
                if cells.size == 0:
                    continue
                logp = log_prof[t] + donor_log_factor[k]
                if disease_donor[k] and t in affected:
                    logp = logp + disease_shift * is_disease_gene
                prop = np.exp(logp - logp.max())
                prop /= prop.sum()
                step = max(1, _CHUNK_ENTRIES // ids.size)  # bound the dense block in memory
                for lo in range(0, cells.size, step):
                    chunk = cells[lo:lo + step]
                    counts = _sample_counts(r_cells, lib[chunk, None] * prop[None, :], nb_theta)
                    X_blocks.append(sp.csr_matrix(counts))
                    cell_index.append(chunk)
        perm = np.concatenate(cell_index)
        X = sp.vstack(X_blocks, format="csr")
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(perm.size)
        X = X[inverse].astype(np.int32)
        X.sort_indices()

        obs = pd.DataFrame(
            {
                "cell_type": pd.Categorical([type_names[t] for t in cell_type], categories=[type_names[t] for t in present]),
                "donor_id": pd.Categorical([donors[k] for k in cell_donor], categories=donors),
                "condition": pd.Categorical(
                    np.where(disease_donor[cell_donor], "disease", "healthy"), categories=["healthy", "disease"]
                ),
                "organism": pd.Categorical([name] * cells_per_species),
            },
            index=pd.Index([f"{name}_c{j + 1:05d}" for j in range(cells_per_species)], name=None),
        )
        if is_ref:
            homology = np.full(ids.size, "self", dtype=object)
        else:
            n_copies = np.where(specific, 0, copies[name][np.maximum(ref_idx, 0)])
            homology = np.where(specific, "species_specific", np.where(n_copies > 1, ONE2MANY, ONE2ONE))
        var = pd.DataFrame(
            {
                "gene_id": ids,
                "gene_symbol": symbols,
                "reference_gene": np.where(specific, "", ref_ids[np.maximum(ref_idx, 0)]).astype(object),
                "homology": homology.astype(object),
                "disease_program": is_disease_gene,
            },
            index=pd.Index(ids, name=None),
        )
        truth = {
            "params": {k: (v if v is not None else "") for k, v in params.items()},
            "reference_species": reference,
            "species": name,
            "divergence": d,
            "disease_reference_genes": [str(g) for g in ref_ids[disease_ref]],
            "disease_genes": [str(g) for g in ids[is_disease_gene]],
            "disease_log2fc": float(disease_log2fc),
            "affected_cell_types": [type_names[t] for t in affected],
            "disease_donors": [donors[k] for k in range(n_donors) if disease_donor[k]],
            "species_only_cell_type": extra_type,
            "species_only_in": species_only_in,
            "cell_type_lineage": {type_names[t]: int(lineage[t]) for t in range(n_total_types)},
        }
        adatas[name] = ad.AnnData(X=X, obs=obs, var=var, uns={"synthetic_truth": truth})

        if not is_ref:
            keep = ~specific
            ortholog_rows.append(
                pd.DataFrame(
                    {
                        "reference_species": reference,
                        "reference_gene": ref_ids[ref_idx[keep]],
                        "other_species": name,
                        "other_gene": ids[keep],
                        "homology_type": homology[keep],
                        "reference_symbol": ref_symbols[ref_idx[keep]],
                        "other_symbol": symbols[keep],
                    }
                )
            )
    orthologs = (
        pd.concat(ortholog_rows, ignore_index=True)
        .sort_values(["other_species", "reference_gene", "other_gene"], kind="stable")
        .reset_index(drop=True)
    )
    return adatas, orthologs


def write_atlas(outdir: str | os.PathLike, **params) -> dict[str, Path]:
    """Generate an atlas with :func:`make_atlas` and write it to ``outdir``.

    Writes ``<species>.h5ad`` per species and ``orthologs.tsv`` (atomically).

    Parameters
    ----------
    outdir
        Output directory (created if needed).
    **params
        Passed to :func:`make_atlas` (``seed``, ``species``, ...).

    Returns
    -------
    ``{species: path, "orthologs": path}`` of the written files.
    """
    outdir = Path(outdir)
    adatas, orthologs = make_atlas(**params)
    paths: dict[str, Path] = {}
    for name, adata in adatas.items():
        paths[name] = outdir / f"{name}.h5ad"
        write_h5ad(adata, paths[name])
    paths["orthologs"] = outdir / "orthologs.tsv"
    write_table(orthologs, paths["orthologs"])
    return paths
