# Data: fetch (url sources) / synthesize (synthetic sources) -> standardize -> one AnnData contract.
# Bundled datasets (scanpy's pbmc68k) and local files need no fetch step.

rule fetch:
    """Download one file of a url dataset: resumable, retried within a deadline, content-, size- and
    sha256-checked, atomic. The fetch retries by itself (download: in the config), so Snakemake
    never repeats it: retries 0 here wins over --retries and profiles/slurm's retries: 2."""
    output:
        "resources/raw/{dataset}/{filename}",
    params:
        spec=lambda wc: _url_file(wc.dataset, wc.filename),
        format=lambda wc: REGISTRY[wc.dataset].get("format", "h5ad"),
        hint=lambda wc: _fetch_hint(wc.dataset, wc.filename),
        previous=lambda wc: _previous_raw_path(wc.dataset, wc.filename),
        lockfile=LOCKFILE,
    log:
        "logs/fetch/{dataset}/{filename}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=240,
    retries: 0
    conda:
        CONDA_ENV
    script:
        "../scripts/fetch.py"


rule synthesize:
    """The seeded synthetic multi-species atlas: per-species raw counts + orthology table."""
    output:
        directory("resources/synthetic/{dataset}"),
    params:
        code=code_fingerprint("synthesize"),
        synthetic=lambda wc: REGISTRY[wc.dataset].get("synthetic", {}),
    log:
        "logs/synthesize/{dataset}.log",
    benchmark:
        "benchmarks/synthesize/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        CONDA_ENV
    script:
        "../scripts/synthesize.py"


rule ensembl_orthologs:
    """One-to-one (and one-to-many) orthologs between two species, Ensembl BioMart at a pinned release."""
    output:
        "resources/orthologs/ensembl-{release}/{reference}__{other}.tsv",
    params:
        code=code_fingerprint("ensembl_orthologs"),
    log:
        "logs/ensembl_orthologs/{release}/{reference}__{other}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    retries: 0  # the download retries by itself
    conda:
        CONDA_ENV
    script:
        "../scripts/ensembl_orthologs.py"


rule standardize:
    """Raw file(s) -> resources/standardized/<dataset>.h5ad: integer counts, standard obs/var names."""
    input:
        standardize_inputs,
    output:
        "resources/standardized/{dataset}.h5ad",
    params:
        code=code_fingerprint("standardize"),
        entry=lambda wc: REGISTRY[wc.dataset],
        registry=lambda wc: {
            m: REGISTRY[m] for m in REGISTRY[wc.dataset].get("members", {}).values()
        },
        qc=config.get("qc", {}),
        lockfile=LOCKFILE,  # raw files (also those placed by hand) are verified before they are read
    log:
        "logs/standardize/{dataset}.log",
    benchmark:
        "benchmarks/standardize/{dataset}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(factor=4.0),
        runtime=runtime(),
    conda:
        CONDA_ENV
    script:
        "../scripts/standardize.py"
