# Annotate: label query cells with a pipeline fitted on a labelled reference -- the steps of the
# `sclinbench annotate` command inside the DAG. One job per entry of the config's `annotate:`
# (config/schema.yaml; `use_annotate` selects, and a config with `use_tasks` runs none unless it
# names them); the helpers live in sclinbench.tool.jobs (light: every process of a run parses this).

from sclinbench.tool import DEFAULT_PIPELINE
from sclinbench.tool import jobs as annotate_jobs

ANNOTATE = annotate_jobs.selected_jobs(config)
if workflow.is_main_process:  # checked once per run: the pipeline checks import scikit-learn
    annotate_jobs.check_jobs(ANNOTATE, REGISTRY, SPECS, f"the registry {config['registry']}")
ANNOTATE_PIPELINE = {
    name: job.get("pipeline") or DEFAULT_PIPELINE for name, job in ANNOTATE.items()
}


rule annotate:
    """Fit a pipeline on all cells of a reference, label every query cell (+ novelty), tables for the report."""
    input:
        unpack(lambda wc: annotate_jobs.job_inputs(ANNOTATE[wc.name], REGISTRY)),
    output:
        h5ad="results/annotate/{name}.h5ad",
        labels=report(
            "results/annotate/{name}.labels.tsv",
            caption="../report/annotate_labels.rst",
            category="Annotate",
            subcategory="{name}",
        ),
        top_genes=report(
            "results/annotate/{name}.top_genes.tsv",
            caption="../report/annotate_top_genes.rst",
            category="Annotate",
            subcategory="{name}",
        ),
        metrics=report(
            "results/annotate/{name}.metrics.tsv",
            caption="../report/annotate_metrics.rst",
            category="Annotate",
            subcategory="{name}",
        ),
    log:
        "logs/annotate/{name}.log",
    benchmark:
        "benchmarks/annotate/{name}.tsv"
    wildcard_constraints:
        name=r"[A-Za-z0-9_]+",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("annotate"),
        runtime=runtime("annotate"),
    params:
        code=code_fingerprint("annotate"),
        job=lambda wc: ANNOTATE[wc.name],
        pipeline=lambda wc: ANNOTATE_PIPELINE[wc.name],
        spec=lambda wc: PIPELINES[ANNOTATE_PIPELINE[wc.name]],
        reference_species=lambda wc: annotate_jobs.job_species(
            ANNOTATE[wc.name], "reference", REGISTRY
        ),
        query_species=lambda wc: annotate_jobs.job_species(ANNOTATE[wc.name], "query", REGISTRY),
        seed=SEED,
    script:
        "../scripts/annotate.py"


ANNOTATE_OUTPUTS = [
    f"results/annotate/{name}.{ext}"
    for name in ANNOTATE
    for ext in ("h5ad", "labels.tsv", "top_genes.tsv", "metrics.tsv")
]
REPORT_OUTPUTS = REPORT_OUTPUTS + ANNOTATE_OUTPUTS  # rule all builds them with the report
