# Evaluate: one job per dataset x task x representation. Inside: every fold, every pipeline with that
# representation (shared preprocessing fitted once per fold), every test cell predicted.


rule evaluate:
    """Fit representation + feature selection + reduction + model on train folds; predict test cells."""
    input:
        data="resources/standardized/{dataset}.h5ad",
        splits="results/splits/dataset~{dataset}/task~{task}.tsv.gz",
    output:
        "results/predictions/dataset~{dataset}/task~{task}/representation~{representation}.parquet",
    log:
        "logs/evaluate/dataset~{dataset}/task~{task}/representation~{representation}.log",
    benchmark:
        "benchmarks/evaluate/dataset~{dataset}/task~{task}/representation~{representation}.tsv"
    conda:
        CONDA_ENV
    threads: threads("evaluate")  # 1 for small datasets (jobs side by side), every core for large ones
    resources:
        mem_mb=evaluate_mem_mb,  # in blocks from 1e8 stored counts when its pipelines allow it
        runtime=evaluate_runtime,
    params:
        code=code_fingerprint("evaluate"),
        task=lambda wc: {**TASKS[wc.task], "name": wc.task},
        pipelines=lambda wc: representation_pipelines(wc.task, wc.representation),
        seed=SEED,
    script:
        "../scripts/evaluate.py"


rule evaluate_nested:
    """Nested pipelines: per outer fold, choose among the candidates by an inner split of the
    training cells only, refit the winner on them and predict the test cells; which won, beside
    the scores."""
    input:
        data="resources/standardized/{dataset}.h5ad",
        splits="results/splits/dataset~{dataset}/task~{task}.tsv.gz",
    output:
        predictions="results/predictions/dataset~{dataset}/task~{task}/representation~nested.parquet",
        selection="results/scores/dataset~{dataset}/task~{task}.selection.tsv",
    log:
        "logs/evaluate/dataset~{dataset}/task~{task}/representation~nested.log",
    benchmark:
        "benchmarks/evaluate/dataset~{dataset}/task~{task}/representation~nested.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=lambda wc, input, attempt: job_resources.job_mem_mb(
            "evaluate", list(input), attempt, False
        ),
        runtime=lambda wc, input, attempt: job_resources.job_runtime(
            "evaluate", list(input), attempt, False
        ),
    params:
        code=code_fingerprint("evaluate_nested"),
        task=lambda wc: {**TASKS[wc.task], "name": wc.task},
        pipelines=lambda wc: nested_pipelines(wc.task),
        seed=SEED,
    script:
        "../scripts/evaluate_nested.py"
