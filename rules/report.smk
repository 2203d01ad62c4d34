# Report: summary tables with CIs, published numbers beside ours (labelled), figures, provenance,
# and the Snakemake HTML report (snakemake --report results/report.html).

from sclinbench.plotting import FIGURES

TABLE_STEMS = ["summary", "best_linear", "cross_species_pairs", "cross_species_average",
               "published_comparison"] + [f"task~{t}" for t in TASKS]

FIGURE_REPORT = {
    "cross_species_heatmap": ("Cross-species", "Transfer matrix"),
    "cross_species_average": ("Cross-species", "Averages vs published"),
    "pipeline_scores": ("Scores", "Per pipeline"),
    "normalization_model": ("Scores", "Normalization x model"),
    "disease": ("Disease state", "Cell and donor level"),
    "novel_type": ("Novel cell types", "Detection"),
    "runtime_memory": ("Compute", "Runtime and memory"),
}
TABLE_REPORT = {
    "summary": ("Tables", "Summary", "tables.rst"),
    "cross_species_average": ("Tables", "Cross-species", "cross_species_tables.rst"),
    "cross_species_pairs": ("Tables", "Cross-species", "cross_species_tables.rst"),
    "published_comparison": ("Tables", "Published vs computed here", "published_comparison.rst"),
}


def _table_output(stem, ext):
    path = f"results/tables/{stem}.{ext}"
    if ext == "tsv" and stem in TABLE_REPORT:
        category, subcategory, caption = TABLE_REPORT[stem]
        return report(path, caption=f"../report/{caption}", category=category, subcategory=subcategory)
    return path


# The novel-type ROC panel uses the per-cell predictions of the first dataset with a novel-type task.
NOVEL = next(((d, t) for d, t in DATASET_TASKS if TASKS[t]["kind"] == "novel_type"), None)


rule provenance:
    """Package versions, config hash, git commit and dataset checksums of this run."""
    input:
        expand("resources/standardized/{dataset}.h5ad", dataset=DATASETS),
    output:
        json=report("results/provenance.json", caption="../report/provenance.rst", category="Provenance",
                    subcategory="Run"),
        md="results/provenance.md",
    params:
        config=config,
        datasets=DATASETS,
        repo_dir=workflow.basedir,
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
        tasks=list(TASKS),
        n_boot=config.get("report", {}).get("bootstrap", 2000),
        level=config.get("report", {}).get("ci", 0.95),
        seed=SEED,
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
        outdir="results/figures",
        benchmarks="benchmarks",
        novel_title=f"{NOVEL[0]} · {NOVEL[1]}" if NOVEL else None,
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
