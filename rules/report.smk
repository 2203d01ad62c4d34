# Report: summary tables with CIs, published numbers beside ours (labelled), figures, provenance,
# and the Snakemake HTML report (snakemake --report results/report.html).

from sclinbench.manifest import entry_counts

rule provenance:
    """Package versions, config hash, git commit, dataset checksums, and which code made each result."""
    input:
        datasets=expand("resources/standardized/{dataset}.h5ad", dataset=DATASETS),
        results=lambda wc: [*rules.metrics.output, *rules.figures.output],  # after them: what made them
    output:
        json=report("results/provenance.json", caption="../report/provenance.rst", category="Provenance",
                    subcategory="Run"),
        md="results/provenance.md",
    params:
        code=code_fingerprint("provenance"),
        installed_code=lambda wc: {r.name: r.params.code for r in workflow.rules if hasattr(r.params, "code")},
        logs="logs",
        config=config,
        datasets=DATASETS,
    log:
        "logs/provenance.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/provenance.py"


rule tables:
    """Summary tables (TSV + Markdown) with 95% bootstrap CIs; published numbers beside ours."""
    input:
        metrics="results/metrics.tsv",
        reference="config/reference_results.tsv",
        provenance="results/provenance.json",
    output:
        [_table_output(stem, ext) for stem in TABLE_STEMS for ext in ("tsv", "md")],
        readme="results/README.md",
    params:
        code=code_fingerprint("tables"),
        tasks=list(TASKS),
        n_boot=config.get("report", {}).get("bootstrap", 2000),
        level=config.get("report", {}).get("ci", 0.95),
        seed=SEED,
        counts=entry_counts(REGISTRY, DATASETS),  # which counts produced each dataset's numbers
    log:
        "logs/tables.log",
    benchmark:
        "benchmarks/tables.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        CONDA_ENV
    script:
        "../scripts/tables.py"


rule figures:
    """Every figure as PNG (300 dpi) and PDF, placeholders where a run has no data for one."""
    input:
        metrics="results/metrics.tsv",
        reference="config/reference_results.tsv",
        novel=predictions_of(*NOVEL) if NOVEL else [],
    output:
        [
            report(f"results/figures/{stem}.png", caption=f"../report/{stem}.rst",
                   category=FIGURE_REPORT[stem][0], subcategory=FIGURE_REPORT[stem][1])
            for stem in FIGURES
        ],
        [f"results/figures/{stem}.pdf" for stem in FIGURES],
    params:
        code=code_fingerprint("figures"),
        outdir=lambda wildcards, output: os.path.dirname(output[0]),
        benchmarks="benchmarks",
        novel_title=f"{NOVEL[0]} · {NOVEL[1]}" if NOVEL else None,
        novel_dataset=NOVEL[0] if NOVEL else None,
        n_boot=config.get("report", {}).get("bootstrap", 2000),
        seed=SEED,
    log:
        "logs/figures.log",
    benchmark:
        "benchmarks/figures.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        CONDA_ENV
    script:
        "../scripts/figures.py"


REPORT_OUTPUTS = rules.tables.output + rules.figures.output + rules.provenance.output
