# Annotate: label query cells with a pipeline fitted on a labelled reference -- the steps of the
# `sclinbench annotate` command inside the DAG. One job per entry of the config's `annotate:`.

from sclinbench.tool.annotate import DEFAULT_PIPELINE

ANNOTATE = config.get("annotate") or {}


def _annotate_species(job, role):
    part = job[role]
    return part.get("species") or REGISTRY.get(part.get("dataset"), {}).get("organism")


def _check_annotate():
    for name, job in ANNOTATE.items():
        for role in ("reference", "query"):
            dataset = job[role].get("dataset")
            if dataset is not None and dataset not in REGISTRY:
                raise SclinbenchError(
                    f"annotate job '{name}': {role} dataset '{dataset}' is not in the registry {config['registry']} "
                    f"(known: {', '.join(sorted(REGISTRY))})"
                )
        pipeline = job.get("pipeline") or DEFAULT_PIPELINE
        if pipeline not in PIPELINES:
            raise SclinbenchError(
                f"annotate job '{name}' names pipeline '{pipeline}', which is not under 'pipelines:' "
                f"(known: {', '.join(sorted(PIPELINES))})"
            )
        orth = job.get("orthologs")
        if orth and orth.get("source") == "file" and not orth.get("path"):
            raise SclinbenchError(f"annotate job '{name}': orthologs {{source: file}} needs path: TABLE")
        if orth and orth.get("source") == "ensembl":
            for role in ("reference", "query"):
                if not _annotate_species(job, role):
                    raise SclinbenchError(
                        f"annotate job '{name}': orthologs {{source: ensembl}} needs the {role}'s species; set "
                        f"{role}.species (e.g. Homo sapiens)"
                    )


_check_annotate()


def annotate_inputs(wildcards):
    job = ANNOTATE[wildcards.name]
    query = job["query"]
    inputs = {
        "reference": f"resources/standardized/{job['reference']['dataset']}.h5ad",
        "query": query["path"] if query.get("path") else f"resources/standardized/{query['dataset']}.h5ad",
    }
    orth = job.get("orthologs")
    if orth and orth.get("source") == "file":
        inputs["orthologs"] = orth["path"]
    elif orth:
        ref = ensembl_name(_annotate_species(job, "reference"))
        other = ensembl_name(_annotate_species(job, "query"))
        inputs["orthologs"] = f"resources/orthologs/ensembl-{orth.get('release', 112)}/{ref}__{other}.tsv"
    return inputs


def _annotate_report(name):
    return report(f"results/annotate/{{name}}.{name}.tsv", caption=f"../report/annotate_{name}.rst",
                  category="Annotate", subcategory="{name}")


rule annotate:
    """Fit a pipeline on all cells of a reference, label every query cell (+ novelty), tables for the report."""
    input:
        unpack(annotate_inputs),
    output:
        h5ad="results/annotate/{name}.h5ad",
        labels=_annotate_report("labels"),
        top_genes=_annotate_report("top_genes"),
        metrics=_annotate_report("metrics"),
    params:
        job=lambda wc: ANNOTATE[wc.name],
        pipeline=lambda wc: ANNOTATE[wc.name].get("pipeline") or DEFAULT_PIPELINE,
        spec=lambda wc: PIPELINES[ANNOTATE[wc.name].get("pipeline") or DEFAULT_PIPELINE],
        reference_species=lambda wc: _annotate_species(ANNOTATE[wc.name], "reference"),
        query_species=lambda wc: _annotate_species(ANNOTATE[wc.name], "query"),
        seed=SEED,
    wildcard_constraints:
        name=r"[A-Za-z0-9_]+",
    log:
        "logs/annotate/{name}.log",
    benchmark:
        "benchmarks/annotate/{name}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(factor=12.0),
        runtime=runtime(factor=5.0),
    conda:
        CONDA_ENV
    script:
        "../scripts/annotate.py"


ANNOTATE_OUTPUTS = [f"results/annotate/{name}.{ext}" for name in ANNOTATE
                    for ext in ("h5ad", "labels.tsv", "top_genes.tsv", "metrics.tsv")]
REPORT_OUTPUTS = REPORT_OUTPUTS + ANNOTATE_OUTPUTS  # rule all builds them with the report
