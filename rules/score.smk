# Score: per-fold metrics, pooled out-of-fold scores with intervals that resample what the split
# holds out, and paired differences (same draws for every pipeline) for one dataset x task; then
# one tidy table of each for the run.


rule score:
    """Per-fold scores; pooled scores + bootstrap intervals over held-out units; paired differences."""
    input:
        lambda wc: predictions_of(wc.dataset, wc.task),
    output:
        scores="results/scores/dataset~{dataset}/task~{task}.tsv",
        summary="results/scores/dataset~{dataset}/task~{task}.summary.tsv",
        paired="results/scores/dataset~{dataset}/task~{task}.paired.tsv",
        per_class="results/scores/dataset~{dataset}/task~{task}.per_class.tsv",
        confusion="results/scores/dataset~{dataset}/task~{task}.confusion.tsv",
        unseen="results/scores/dataset~{dataset}/task~{task}.unseen.tsv",
    log:
        "logs/score/dataset~{dataset}/task~{task}.log",
    benchmark:
        "benchmarks/score/dataset~{dataset}/task~{task}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("score"),
        runtime=runtime("score"),
    params:
        code=code_fingerprint("score"),
        task=lambda wc: {**TASKS[wc.task], "name": wc.task},
        n_boot=REPORT.get("bootstrap", 2000),
        level=REPORT.get("ci", 0.95),
        seed=SEED,
    script:
        "../scripts/score.py"


rule metrics:
    """results/metrics.tsv (per fold), summary.tsv (pooled + intervals), paired.tsv, unseen_labels.tsv."""
    input:
        scores=SCORE_FILES,
        summary=[f.replace(".tsv", ".summary.tsv") for f in SCORE_FILES],
        paired=[f.replace(".tsv", ".paired.tsv") for f in SCORE_FILES],
        unseen=[f.replace(".tsv", ".unseen.tsv") for f in SCORE_FILES],
    output:
        scores="results/metrics.tsv",
        summary="results/summary.tsv",
        paired="results/paired.tsv",
        unseen="results/unseen_labels.tsv",
    log:
        "logs/metrics.log",
    benchmark:
        "benchmarks/metrics.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=mem_mb("metrics"),
        runtime=runtime("metrics"),
    params:
        code=code_fingerprint("metrics"),
        datasets=[d for d, _ in DATASET_TASKS],
        tasks={t: TASKS[t] for _, t in DATASET_TASKS},
        task_of=[t for _, t in DATASET_TASKS],
        pipelines=PIPELINES,
    script:
        "../scripts/metrics.py"
