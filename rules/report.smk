# Report: summary tables with CIs, published numbers beside ours (labelled), figures, provenance,
# and the Snakemake HTML report (snakemake --report results/report.html).

from sclinbench.manifest import entry_counts


def job_benchmarks():
    """The benchmark records (benchmarks/<rule>/...) of every job the runtime figure shows: the
    data, split, evaluate, score, metrics and annotate steps of this run."""
    annotated = [job[role]["dataset"] for job in ANNOTATE.values() for role in ("reference", "query")
                 if job[role].get("dataset")]
    datasets = sorted(set(USED_DATASETS) | set(annotated))
    synthetic = [d for d in datasets if REGISTRY[d]["source"] == "synthetic"]
    return [
        *expand(rules.synthesize.benchmark, dataset=synthetic),
        *expand(rules.standardize.benchmark, dataset=datasets),
        *(expand(rules.split.benchmark, dataset=d, task=t)[0] for d, t in DATASET_TASKS),
        *(expand(rules.evaluate.benchmark, dataset=d, task=t, representation=r)[0]
          for d, t in DATASET_TASKS for r in task_representations(t)),
        *(expand(rules.score.benchmark, dataset=d, task=t)[0] for d, t in DATASET_TASKS),
        rules.metrics.benchmark,
        *expand(rules.annotate.benchmark, name=list(ANNOTATE)),
    ]


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
        benchmarks="benchmarks",  # Snakemake's records of the jobs: measurements, no data lineage
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
    """Tables (TSV + Markdown) of the score stage's pooled scores, intervals and paired differences:
    declared pipelines beside the best of the grid (marked optimistic), controls, published numbers."""
    input:
        metrics="results/metrics.tsv",
        summary="results/summary.tsv",
        paired="results/paired.tsv",
        unseen="results/unseen_labels.tsv",
        reference="config/reference_results.tsv",
        provenance="results/provenance.json",
    output:
        [_table_output(stem, ext) for stem in TABLE_STEMS for ext in ("tsv", "md")],
        readme="results/README.md",
    params:
        code=code_fingerprint("tables"),
        tasks=list(TASKS),
        declared=DECLARED,
        n_boot=REPORT.get("bootstrap", 2000),
        level=REPORT.get("ci", 0.95),
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
        summary="results/summary.tsv",
        reference="config/reference_results.tsv",
        novel=[f for d, t in NOVEL for f in predictions_of(d, t)],
        benchmarks=lambda wc: job_benchmarks(),
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
        novel={f"{d}/{t}": predictions_of(d, t) for d, t in NOVEL},
        benchmarks="benchmarks",
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
