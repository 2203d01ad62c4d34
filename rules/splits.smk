# Splits: one table per dataset x task, shared by every pipeline (paired comparisons are valid).


rule split:
    """Which cells train and which test, per fold (stratified, donor, cross-species, novel type)."""
    input:
        "resources/standardized/{dataset}.h5ad",
    output:
        "results/splits/dataset~{dataset}/task~{task}.tsv.gz",
    log:
        "logs/split/dataset~{dataset}/task~{task}.log",
    benchmark:
        "benchmarks/split/dataset~{dataset}/task~{task}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("split"),
        runtime=runtime("split"),
    params:
        code=code_fingerprint("split"),
        task=lambda wc: {**TASKS[wc.task], "name": wc.task},
        seed=SEED,
    script:
        "../scripts/split.py"
