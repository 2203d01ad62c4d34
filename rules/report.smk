# Report: summary tables with CIs, published numbers beside ours (labelled), figures, provenance,
# and the Snakemake HTML report (snakemake --report results/report.html).

from sclinbench.data.manifest import entry_counts


rule provenance:
    """Package versions, config hash, git commit, dataset checksums, and which code made each result."""
    input:
        datasets=expand("resources/standardized/{dataset}.h5ad", dataset=DATASETS),
        results=lambda wc: [*rules.metrics.output, *rules.figures.output],  # after them: what made them
    output:
        json=report(
            "results/provenance.json",
            caption="../report/provenance.rst",
            category="Provenance",
            subcategory="Run",
        ),
        md="results/provenance.md",
    log:
        "logs/provenance.log",
    benchmark:
        "benchmarks/provenance.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("provenance"),
        runtime=runtime("provenance"),
    params:
        code=code_fingerprint("provenance"),
        installed_code=lambda wc: {
            r.name: r.params.code for r in workflow.rules if hasattr(r.params, "code")
        },
        logs="logs",
        benchmarks="benchmarks",  # Snakemake's records of the jobs: measurements, no data lineage
        config=config,
        datasets=DATASETS,
    script:
        "../scripts/provenance.py"


rule tables:
    """Tables (TSV + Markdown) of the score stage's pooled scores, intervals and paired differences:
    declared pipelines beside the best of the grid (marked optimistic), controls, published numbers.
    """
    input:
        metrics="results/metrics.tsv",
        summary="results/summary.tsv",
        paired="results/paired.tsv",
        unseen="results/unseen_labels.tsv",
        reference=workflow_file("config/reference_results.tsv"),
        provenance="results/provenance.json",
        analyses=rules.analyses.output.section if ANALYSES else [],  # its section of README.md
        selection=SELECTION_FILES,  # nested pipelines: the candidate each outer fold chose
    output:
        [_table_output(stem, ext) for stem in TABLE_STEMS for ext in ("tsv", "md")],
        readme="results/README.md",
    log:
        "logs/tables.log",
    benchmark:
        "benchmarks/tables.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("tables"),
        runtime=runtime("tables"),
    params:
        code=code_fingerprint("tables"),
        tasks=list(TASKS),
        declared=DECLARED,
        n_boot=REPORT.get("bootstrap", 2000),
        level=REPORT.get("ci", 0.95),
        counts=entry_counts(REGISTRY, DATASETS),  # which counts produced each dataset's numbers
        selection_datasets=[d for d, _ in NESTED_TASKS],
        selection_tasks=[t for _, t in NESTED_TASKS],
    script:
        "../scripts/tables.py"


rule figures:
    """Every figure as PNG (300 dpi) and PDF, placeholders where a run has no data for one."""
    input:
        metrics="results/metrics.tsv",
        summary="results/summary.tsv",
        reference=workflow_file("config/reference_results.tsv"),
        novel=[f for d, t in NOVEL for f in predictions_of(d, t)],
        benchmarks=lambda wc: job_benchmarks(),
    output:
        [
            report(
                f"results/figures/{stem}.png",
                caption=f"../report/{stem}.rst",
                category=FIGURE_REPORT[stem][0],
                subcategory=FIGURE_REPORT[stem][1],
            )
            for stem in FIGURES
        ],
        [f"results/figures/{stem}.pdf" for stem in FIGURES],
    log:
        "logs/figures.log",
    benchmark:
        "benchmarks/figures.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("figures"),
        runtime=runtime("figures"),
    params:
        code=code_fingerprint("figures"),
        outdir=lambda wildcards, output: os.path.dirname(output[0]),
        novel={f"{d}/{t}": predictions_of(d, t) for d, t in NOVEL},
        benchmarks="benchmarks",
    script:
        "../scripts/figures.py"


if PAPER_FIGURES:

    rule paper_figures:
        """The figures of Souza & Mehta 2026 by name (config report.paper_figures): ours beside the
        published numbers, each figure as PNG (300 dpi) + PDF with the tidy TSV of every number it shows.
        """
        input:
            summary="results/summary.tsv",
            reference=workflow_file("config/reference_results.tsv"),
        output:
            [
                report(
                    f"results/paper/{name}.png",
                    caption=f"../report/paper_{name}.rst",
                    category="Paper figures",
                    subcategory=name,
                )
                for name in PAPER_FIGURES
            ],
            [f"results/paper/{name}.pdf" for name in PAPER_FIGURES],
            [
                report(
                    f"results/paper/{name}.tsv",
                    caption="../report/paper_figure_table.rst",
                    category="Paper figures",
                    subcategory=name,
                )
                for name in PAPER_FIGURES
            ],
        log:
            "logs/paper_figures.log",
        benchmark:
            "benchmarks/paper_figures.tsv"
        conda:
            CONDA_ENV
        threads: 1
        resources:
            mem_mb=mem_mb("figures"),
            runtime=runtime("figures"),
        params:
            code=code_fingerprint("paper_figures"),
            outdir="results/paper",
            figures=PAPER_FIGURES,
            declared=DECLARED,
        script:
            "../scripts/paper_figures.py"


REPORT_OUTPUTS = (
    rules.tables.output
    + rules.figures.output
    + rules.provenance.output
    + (rules.paper_figures.output if PAPER_FIGURES else [])
)
