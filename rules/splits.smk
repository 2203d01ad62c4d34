# Splits: one table per dataset x task, shared by every pipeline (paired comparisons are valid).


rule split:
    """Which cells train and which test, per fold (stratified, donor, cross-species, novel type)."""
    input:
        "resources/standardized/{dataset}.h5ad",
    output:
        "results/splits/dataset~{dataset}/task~{task}.tsv.gz",
    params:
        code=code_fingerprint("split"),
        task=lambda wc: {**TASKS[wc.task], "name": wc.task},
        seed=SEED,
    log:
        "logs/split/dataset~{dataset}/task~{task}.log",
    benchmark:
        "benchmarks/split/dataset~{dataset}/task~{task}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/split.py"
