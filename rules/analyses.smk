# Analyses beyond classification (Souza & Mehta 2026, Sec. III, VI, VII): structure across species,
# manifold linearity, transcription-factor target recovery. One job per analysis x dataset, reading
# the standardized dataset (the one loading path), then one `analyses` job writing
# results/analyses/*.tsv, the figures and the README section. `analyses:` in the config
# (config/schema.yaml) says which datasets; `use_analyses` selects, and a config with `use_tasks`
# runs none unless it names them. The helpers live in sclinbench.analyses.plan (light).
# (ANALYSES, STRING_FILES, the inputs and resources: rules/common.smk)


rule analysis_structure:
    """Pseudobulk rankz of each species x type, cosine to the reference's same type vs divergence."""
    input:
        h5ad="resources/standardized/{dataset}.h5ad",
    output:
        table="results/analyses/structure/dataset~{dataset}.tsv",
        summary="results/analyses/structure/dataset~{dataset}.spearman.tsv",
    log:
        "logs/analyses/structure/dataset~{dataset}.log",
    benchmark:
        "benchmarks/analyses/structure/dataset~{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("analysis_structure"),
        runtime=analysis_runtime("analysis_structure"),
    params:
        code=code_fingerprint("analysis_structure"),
        settings=lambda wc: analyses_plan.structure_params(ANALYSES, REGISTRY, wc.dataset),
        seed=SEED,
        level=ANALYSIS_LEVEL,
    script:
        "../scripts/analysis_structure.py"


rule analysis_manifold:
    """Pearson r of Euclidean vs Isomap geodesic distances on seeded subsamples, per k and representation."""
    input:
        h5ad="resources/standardized/{dataset}.h5ad",
    output:
        table="results/analyses/manifold/dataset~{dataset}.tsv",
        summary="results/analyses/manifold/dataset~{dataset}.summary.tsv",
    log:
        "logs/analyses/manifold/dataset~{dataset}.log",
    benchmark:
        "benchmarks/analyses/manifold/dataset~{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("analysis_manifold"),
        runtime=analysis_runtime("analysis_manifold"),
    params:
        code=code_fingerprint("analysis_manifold"),
        settings=lambda wc: analyses_plan.manifold_params(ANALYSES),
        seed=SEED,
        level=ANALYSIS_LEVEL,
    script:
        "../scripts/analysis_manifold.py"


rule fetch_string:
    """Download one STRING file (human links or aliases): resumable, content- and sha256-checked
    (pinned in the config, else recorded in resources/checksums.lock.tsv on first download)."""
    output:
        f"{analyses_plan.STRING_DIR}/{{filename}}",
    log:
        "logs/fetch_string/{filename}.log",
    benchmark:
        "benchmarks/fetch_string/{filename}.tsv"
    retries: 0  # the download retries by itself
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=240,
    params:
        spec=lambda wc: analyses_plan.string_download(ANALYSES, wc.filename),
        lockfile=LOCKFILE,
    script:
        "../scripts/fetch_string.py"


rule analysis_tf_targets:
    """PMI of 'on' genes in TF-active cells (rankz), BH FDR, validated against STRING; tuned grid,
    declared setting and permuted-activity controls."""
    input:
        h5ad="resources/standardized/{dataset}.h5ad",
        links=STRING_FILES.get("links", []),
        aliases=STRING_FILES.get("aliases", []),
    output:
        table="results/analyses/tf_targets/dataset~{dataset}.tsv",
        grid="results/analyses/tf_targets/dataset~{dataset}.grid.tsv",
        genes="results/analyses/tf_targets/dataset~{dataset}.genes.tsv",
    log:
        "logs/analyses/tf_targets/dataset~{dataset}.log",
    benchmark:
        "benchmarks/analyses/tf_targets/dataset~{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("analysis_tf_targets"),
        runtime=analysis_runtime("analysis_tf_targets"),
    params:
        code=code_fingerprint("analysis_tf_targets"),
        settings=lambda wc: analyses_plan.tf_params(ANALYSES),
        seed=SEED,
        level=ANALYSIS_LEVEL,
    script:
        "../scripts/analysis_tf_targets.py"


rule analyses:
    """results/analyses/*.tsv (every dataset), the three figures and the README section."""
    input:
        **ANALYSIS_INPUTS,
        published=workflow_file("config/published_analyses.tsv"),
    output:
        [f"results/analyses/{stem}.tsv" for stem in ANALYSIS_TABLES],
        [
            report(
                f"results/analyses/{stem}.png",
                caption=f"../report/analyses_{stem}.rst",
                category="Analyses",
                subcategory=stem,
            )
            for stem in ANALYSIS_FIGURES
        ],
        [f"results/analyses/{stem}.pdf" for stem in ANALYSIS_FIGURES],
        section="results/analyses/analyses.md",
    log:
        "logs/analyses/analyses.log",
    benchmark:
        "benchmarks/analyses/analyses.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=analysis_mem_mb("analyses"),
        runtime=analysis_runtime("analyses"),
    params:
        code=code_fingerprint("analyses"),
        outdir=lambda wildcards, output: os.path.dirname(output.section),
        level=ANALYSIS_LEVEL,
    script:
        "../scripts/analyses.py"
