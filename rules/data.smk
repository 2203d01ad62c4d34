# Data: fetch (url sources) / synthesize (synthetic sources) -> standardize -> one AnnData contract.
# Bundled datasets (scanpy's pbmc68k) and local files need no fetch step.


rule fetch:
    """Download one file of a url dataset: resumable, retried within a deadline, content-, size- and
    sha256-checked, atomic. The fetch retries by itself (download: in the config), so Snakemake
    never repeats it: retries 0 here wins over --retries and profiles/slurm's retries: 2."""
    output:
        "resources/raw/{dataset}/{filename}",
    log:
        "logs/fetch/{dataset}/{filename}.log",
    benchmark:
        "benchmarks/fetch/{dataset}/{filename}.tsv"
    retries: 0
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=240,
    params:
        spec=lambda wc: _url_file(wc.dataset, wc.filename),
        format=lambda wc: REGISTRY[wc.dataset].get("format", "h5ad"),
        hint=lambda wc: _fetch_hint(wc.dataset, wc.filename),
        previous=lambda wc: _previous_raw_path(wc.dataset, wc.filename),
        lockfile=LOCKFILE,
    script:
        "../scripts/fetch.py"


rule synthesize:
    """The seeded synthetic multi-species atlas: per-species raw counts + orthology table."""
    output:
        directory("resources/synthetic/{dataset}"),
    log:
        "logs/synthesize/{dataset}.log",
    benchmark:
        "benchmarks/synthesize/{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("synthesize"),
        runtime=runtime("synthesize"),
    params:
        code=code_fingerprint("synthesize"),
        synthetic=lambda wc: REGISTRY[wc.dataset].get("synthetic", {}),
    script:
        "../scripts/synthesize.py"


rule ensembl_orthologs:
    """One-to-one (and one-to-many) orthologs between two species, Ensembl BioMart at a pinned release."""
    output:
        "resources/orthologs/ensembl-{release}/{reference}__{other}.tsv",
    log:
        "logs/ensembl_orthologs/{release}/{reference}__{other}.log",
    benchmark:
        "benchmarks/ensembl_orthologs/{release}/{reference}__{other}.tsv"
    retries: 0  # the download retries by itself
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        code=code_fingerprint("ensembl_orthologs"),
    script:
        "../scripts/ensembl_orthologs.py"


rule standardize:
    """Raw file(s) -> resources/standardized/<dataset>.h5ad: integer counts, standard obs/var names."""
    input:
        standardize_inputs,
    output:
        "resources/standardized/{dataset}.h5ad",
    log:
        "logs/standardize/{dataset}.log",
    benchmark:
        "benchmarks/standardize/{dataset}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=standardize_mem_mb,
        runtime=standardize_runtime,
    params:
        code=code_fingerprint("standardize"),
        entry=lambda wc: REGISTRY[wc.dataset],
        registry=lambda wc: {
            m: REGISTRY[m] for m in REGISTRY[wc.dataset].get("members", {}).values()
        },
        qc=config.get("qc", {}),
        lockfile=LOCKFILE,  # raw files (also those placed by hand) are verified before they are read
    script:
        "../scripts/standardize.py"
