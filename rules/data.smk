# Data: fetch (url sources) / synthesize (synthetic sources) -> standardize -> one AnnData contract.
# Bundled datasets (scanpy's pbmc68k) and local files need no fetch step.

import os
from urllib.parse import urlparse


def _file_name(spec):
    return os.path.basename(urlparse(spec["url"]).path) if spec.get("url") else os.path.basename(spec["path"])


def _url_file(dataset, filename):
    for spec in REGISTRY[dataset].get("files", []):
        if spec.get("url") and _file_name(spec) == filename:
            return spec
    raise SclinbenchError(f"no file '{filename}' with a url in registry entry '{dataset}'")


ENSEMBL_NAMES = {}


def ensembl_name(organism):
    """'Homo sapiens' -> 'hsapiens' (Ensembl/BioMart dataset prefix)."""
    genus, species = organism.strip().split()[:2]
    return (genus[0] + species).lower()


def standardize_inputs(wildcards):
    entry = REGISTRY[wildcards.dataset]
    source = entry["source"]
    if source == "bundled":
        return []
    if source == "synthetic":
        return [f"resources/synthetic/{wildcards.dataset}"]
    if source == "url":
        return [f"resources/raw/{wildcards.dataset}/{_file_name(f)}" for f in entry["files"]]
    if source == "local":
        return [f["path"] for f in entry["files"]]
    # collection: members standardized separately, then mapped to the reference's genes
    members = entry["members"]
    inputs = [f"resources/standardized/{m}.h5ad" for m in members.values()]
    orth = entry.get("orthologs", {})
    if orth.get("source", "ensembl") == "ensembl":
        ref = ensembl_name(REGISTRY[members[entry["reference"]]]["organism"])
        release = orth.get("release", 112)
        inputs += [
            f"resources/orthologs/ensembl-{release}/{ref}__{ensembl_name(REGISTRY[m]['organism'])}.tsv"
            for org, m in members.items()
            if org != entry["reference"]
        ]
    elif orth.get("source") == "file":
        inputs.append(orth["path"])
    return inputs


rule fetch:
    """Download one file of a url dataset: resumable, retried, size/sha256-checked, atomic."""
    output:
        "resources/raw/{dataset}/{filename}",
    params:
        spec=lambda wc: _url_file(wc.dataset, wc.filename),
        lockfile="resources/checksums.lock.tsv",
    log:
        "logs/fetch/{dataset}/{filename}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=240,
    retries: 2
    conda:
        CONDA_ENV
    script:
        "../scripts/fetch.py"


rule synthesize:
    """The seeded synthetic multi-species atlas: per-species raw counts + orthology table."""
    output:
        directory("resources/synthetic/{dataset}"),
    params:
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
    log:
        "logs/ensembl_orthologs/{release}/{reference}__{other}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    retries: 2
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
        entry=lambda wc: REGISTRY[wc.dataset],
        registry=lambda wc: {
            m: REGISTRY[m] for m in REGISTRY[wc.dataset].get("members", {}).values()
        },
        qc=config.get("qc", {}),
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
