"""The workflow's ``annotate:`` jobs: which of them a run builds, their input files and species.

Read when the Snakefile is parsed, in every process of a run (a cluster job's own snakemake too),
so this module imports none of the pipeline code (scikit-learn); :func:`check_jobs` (once per run, in the main process) is
the only part that needs the pipeline code.
"""

from __future__ import annotations

from sclinbench.data.species import ensembl_prefix
from sclinbench.errors import SclinbenchError
from sclinbench.tool import DEFAULT_PIPELINE


def job_species(job: dict, role: str, registry: dict) -> str | None:
    """Species of a job's reference or query: its ``species`` key, else the registry entry's ``organism``."""
    part = job[role]
    return part.get("species") or (registry.get(part.get("dataset"), {}) or {}).get("organism")


def selected_jobs(config: dict) -> dict:
    """The ``annotate:`` jobs a run builds: those named by ``use_annotate``; without it all of them,
    unless the config replaces the task set with ``use_tasks`` (then none: the default jobs are
    examples on the embedded atlas, and a config of one's own may have another registry)."""
    jobs = config.get("annotate") or {}
    names = config.get("use_annotate")
    if names is None:
        return {} if config.get("use_tasks") else dict(jobs)
    unknown = [n for n in names if n not in jobs]
    if unknown:
        raise SclinbenchError(f"use_annotate names {unknown[0]!r}, which is not under 'annotate:' "
                              f"(known: {', '.join(sorted(jobs)) or 'none'})")
    return {n: jobs[n] for n in names}


def check_jobs(jobs: dict, registry: dict, pipelines: dict, registry_name: str = "the registry") -> None:
    """One-line errors for ``annotate:`` jobs naming an unknown dataset or pipeline, or lacking a species."""
    for name, job in jobs.items():
        for role in ("reference", "query"):
            dataset = job[role].get("dataset")
            if dataset is not None and dataset not in registry:
                raise SclinbenchError(
                    f"annotate job '{name}': {role} dataset '{dataset}' is not in {registry_name} "
                    f"(known: {', '.join(sorted(registry))})"
                )
        pipeline = job.get("pipeline") or DEFAULT_PIPELINE
        if pipeline not in pipelines:
            raise SclinbenchError(
                f"annotate job '{name}' names pipeline '{pipeline}', which is not under 'pipelines:' "
                f"(known: {', '.join(sorted(pipelines))})"
            )
        from sclinbench.tool.annotate import check_spec  # scikit-learn: only where the check runs

        check_spec(pipeline, pipelines[pipeline])
        orth = job.get("orthologs")
        if orth and orth.get("source") == "file" and not orth.get("path"):
            raise SclinbenchError(f"annotate job '{name}': orthologs {{source: file}} needs path: TABLE")
        if orth and orth.get("source") == "ensembl":
            for role in ("reference", "query"):
                if not job_species(job, role, registry):
                    raise SclinbenchError(
                        f"annotate job '{name}': orthologs {{source: ensembl}} needs the {role}'s species; set "
                        f"{role}.species (e.g. Homo sapiens)"
                    )


def job_inputs(job: dict, registry: dict) -> dict[str, str]:
    """Input files of an ``annotate:`` job: reference, query and (across species) the ortholog table."""
    query = job["query"]
    inputs = {
        "reference": f"resources/standardized/{job['reference']['dataset']}.h5ad",
        "query": query["path"] if query.get("path") else f"resources/standardized/{query['dataset']}.h5ad",
    }
    orth = job.get("orthologs")
    if orth and orth.get("source") == "file":
        inputs["orthologs"] = orth["path"]
    elif orth:
        ref = ensembl_prefix(job_species(job, "reference", registry), strict=False)
        other = ensembl_prefix(job_species(job, "query", registry), strict=False)
        inputs["orthologs"] = f"resources/orthologs/ensembl-{orth.get('release', 112)}/{ref}__{other}.tsv"
    return inputs
