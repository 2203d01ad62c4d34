"""The workflow's ``annotate`` rule: a registry reference (optionally subset) labels a query, files in, files out."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np

from sclinbench.errors import SclinbenchError
from sclinbench.tool import JOB_DEFAULTS, QUERY_DEFAULTS, REFERENCE_DEFAULTS
from sclinbench.tool import genes as gene_match
from sclinbench.tool.annotate import Result, annotate
from sclinbench.tool.output import write_result
from sclinbench.tool.reference import prepare_reference, read_h5ad
from sclinbench.workflow.io import sha256_file

log = logging.getLogger("sclinbench.annotate")


def select_cells(adata: ad.AnnData, subset: dict | None, exclude: dict | None, where: str) -> ad.AnnData:
    """Cells whose obs columns take one of the ``subset`` values and none of the ``exclude`` values."""
    keep = np.ones(adata.n_obs, dtype=bool)
    for rule, want in (("subset", True), ("exclude", False)):
        for column, values in ((subset if want else exclude) or {}).items():
            if column not in adata.obs.columns:
                raise SclinbenchError(
                    f"{where}: obs column '{column}' ({rule}) does not exist; obs columns are: "
                    f"{', '.join(map(str, adata.obs.columns))}"
                )
            hit = adata.obs[column].astype(str).isin([str(v) for v in values]).to_numpy()
            keep &= hit if want else ~hit
    if not keep.any():
        raise SclinbenchError(f"{where}: subset {subset or {}} / exclude {exclude or {}} keeps no cell")
    return adata if keep.all() else adata[keep].copy()


def run_job(name: str, job: dict, pipeline_name: str, spec: dict, *, reference, query, orthologs=None,
            outputs: dict, reference_species=None, query_species=None, seed: int = 0) -> Result:
    """One ``annotate:`` job of the workflow config (see config/schema.yaml): files in, files out.

    The reference is a standardized registry dataset (``resources/standardized/<dataset>.h5ad``),
    optionally subset; the query a standardized dataset or an h5ad file of raw counts.
    """
    job = {**JOB_DEFAULTS, **{k: v for k, v in job.items() if v is not None}}
    ref_job = {**REFERENCE_DEFAULTS, **job["reference"]}
    q_job = {**QUERY_DEFAULTS, **job["query"]}
    ref_adata = select_cells(read_h5ad(reference, "reference"), ref_job.get("subset"), ref_job.get("exclude"),
                             f"annotate job '{name}' reference")
    info = ref_adata.uns.get("sclinbench", {})
    ref = prepare_reference(ref_adata, ref_job["label"],
                            source=f"dataset {ref_job['dataset']} ({reference})", sha256=sha256_file(reference),
                            standardized=True, min_cells_per_label=ref_job["min_cells_per_label"])
    q_where = f"query {q_job.get('path') or 'dataset ' + q_job['dataset']}"
    q_adata = select_cells(read_h5ad(query, "query"), q_job.get("subset"), q_job.get("exclude"),
                           f"annotate job '{name}' {q_where}")
    pairs = gene_match.read_ortholog_table(orthologs, reference_species, query_species) if orthologs else None
    result = annotate(
        q_adata, reference=ref, pipeline_name=pipeline_name, spec=spec,
        query_counts=q_job["counts"] if q_job.get("path") else "X", pairs=pairs,
        min_shared_genes=job["min_shared_genes"], seed=seed,
        calibration_fraction=job["calibration_fraction"], novelty_quantile=job["novelty_quantile"],
        truth=q_job.get("truth"), key_added=job["key_added"], n_top_genes=job["top_genes"],
        query_name=q_where,
        provenance={"job": name, "query": str(query), "query_sha256": sha256_file(query),
                    "reference_source_sha256": str(info.get("sha256", "")) if hasattr(info, "get") else "",
                    "reference_species": reference_species or "", "query_species": query_species or "",
                    "orthologs": str(orthologs or "")},
    )
    write_result(result, {k: Path(v) for k, v in outputs.items()}, compression="gzip")
    log.info("annotate job %s: %s", name, result.summary())
    return result
