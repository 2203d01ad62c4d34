# Score: metrics per pipeline x fold (x species pair) for one dataset x task; then one tidy table.


rule score:
    """Macro F1, accuracy, balanced accuracy, precision, recall, AUROC (+ task-specific) per fold."""
    input:
        lambda wc: predictions_of(wc.dataset, wc.task),
    output:
        scores="results/scores/dataset~{dataset}/task~{task}.tsv",
        per_class="results/scores/dataset~{dataset}/task~{task}.per_class.tsv",
        confusion="results/scores/dataset~{dataset}/task~{task}.confusion.tsv",
    params:
        code=code_fingerprint("score"),
        task=lambda wc: {**TASKS[wc.task], "name": wc.task},
    log:
        "logs/score/dataset~{dataset}/task~{task}.log",
    benchmark:
        "benchmarks/score/dataset~{dataset}/task~{task}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(factor=10.0),
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/score.py"


rule metrics:
    """results/metrics.tsv: every score of the run in one tidy table, labelled by its config entries."""
    input:
        SCORE_FILES,
    output:
        "results/metrics.tsv",
    params:
        code=code_fingerprint("metrics"),
        datasets=[d for d, _ in DATASET_TASKS],
        tasks={t: TASKS[t] for _, t in DATASET_TASKS},
        task_of=[t for _, t in DATASET_TASKS],
        pipelines=PIPELINES,
    log:
        "logs/metrics.log",
    benchmark:
        "benchmarks/metrics.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/metrics.py"
