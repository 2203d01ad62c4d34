# Shared helpers: the dataset registry, the dataset x task x representation grid, resources.

from pathlib import Path

import yaml

from sclinbench.data import registry as registry_checks
from sclinbench.errors import SclinbenchError
from sclinbench.data.species import ensembl_prefix
from sclinbench.workflow.config import load_yaml


def workflow_file(path):
    """A file of the workflow itself (config/, report/): read from the checkout the Snakefile is in,
    never from the folder the run writes to (--directory). Relative to that folder, so a run in the
    checkout names it as before (config/reference_results.tsv) and no absolute path is recorded."""
    return os.path.relpath(Path(workflow.basedir) / path)


def config_file(path, key):
    """A file a config names (key, e.g. registry). A relative path is read from the run's folder
    (--directory, where a user's own config and files are) or, when no such file is there, from the
    workflow's checkout (the files the default config names, e.g. config/datasets.yaml)."""
    if Path(path).is_absolute():
        candidates = [Path(path)]
    else:
        candidates = [Path.cwd() / path, Path(workflow.basedir) / path]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise SclinbenchError(
        f"{key} '{path}' does not exist (looked in {' and '.join(str(c.parent) for c in candidates)}): "
        f"set '{key}:' in the config to a file there or to an absolute path"
    )


def _load_registry(path):
    path = config_file(path, "registry")
    registry = load_yaml(path, "the registry") or {}
    schema = Path(workflow_file("config/datasets.schema.yaml"))
    for name, entry in registry.items():
        registry_checks.check_name(
            name, "dataset", str(path)
        )  # before the schema: names become paths
        if not isinstance(entry, dict):
            raise SclinbenchError(f"registry entry '{name}' in {path} is not a mapping")
        # the main process checks every entry; a job's own snakemake (cluster, group job) reads
        # the same files, and the check (a YAML schema per entry) dominated its start-up
        if schema.exists() and workflow.is_main_process:
            check_config(entry, str(schema), f"registry entry '{name}' in {path}")
    return registry


REGISTRY = _load_registry(config["registry"])
PIPELINES = config["pipelines"]
if config.get("use_tasks"):
    _unknown = [t for t in config["use_tasks"] if t not in config["tasks"]]
    if _unknown:
        raise SclinbenchError(
            f"use_tasks names {_unknown[0]!r}, which is not under 'tasks:' "
            f"(known: {', '.join(sorted(config['tasks']))})"
        )
TASKS = {t: config["tasks"][t] for t in config.get("use_tasks") or config["tasks"]}
SEED = config.get("seed", 0)


LOCKFILE = "resources/checksums.lock.tsv"


def task_pipelines(task):
    """name -> spec of the pipelines a task runs: its `pipelines` (default all) minus its
    `exclude_pipelines`."""
    names = TASKS[task].get("pipelines") or list(PIPELINES)
    skip = set(TASKS[task].get("exclude_pipelines") or [])
    return {name: PIPELINES[name] for name in names if name not in skip}


def _check_names():
    for task, spec in TASKS.items():
        for dataset in spec["datasets"]:
            if dataset not in REGISTRY:
                raise SclinbenchError(
                    f"task '{task}' lists dataset '{dataset}', which is not in the registry "
                    f"{config['registry']} (known: {', '.join(sorted(REGISTRY))})"
                )
        for key in ("pipelines", "exclude_pipelines"):
            for name in spec.get(key) or []:
                if name not in PIPELINES:
                    raise SclinbenchError(
                        f"task '{task}' {key} lists pipeline '{name}', which is not under 'pipelines:' "
                        f"(known: {', '.join(sorted(PIPELINES))})"
                    )
        if not task_pipelines(task):
            raise SclinbenchError(
                f"task '{task}' runs no pipeline: exclude_pipelines removes every one it would run; "
                f"remove names from tasks.{task}.exclude_pipelines"
            )


_check_names()


# Every pipeline entry as a typed spec (sclinbench.evaluate.spec: PipelineSpec / NestedSpec), made and checked
# once, in the main process, before any job (options, HVG flavour packages, nested candidates);
# jobs get the config's own entries as params (unchanged values) and make their specs from them.
if workflow.is_main_process:  # checked once per run: importing scikit-learn costs each job ~1 s
    from sclinbench.evaluate.spec import parse_pipelines

    SPECS = parse_pipelines(PIPELINES)
else:
    SPECS = None
# what needs no download is checked now, before any job starts: URLs, duplicate files, local files
USED_DATASETS = registry_checks.used_datasets(
    REGISTRY, sorted({d for s in TASKS.values() for d in s["datasets"]})
)
registry_checks.check_registry(REGISTRY, config["registry"], used=USED_DATASETS)


def _download_summary():
    """One warning line per run (main process only) about unpinned and plain-HTTP downloads."""
    if not workflow.is_main_process:
        return
    from sclinbench.data.lock import read_lock

    try:
        lock = read_lock(LOCKFILE)
    except SclinbenchError:
        lock = {}
    line = registry_checks.download_summary(REGISTRY, USED_DATASETS, lock)
    if line:
        print(line, file=sys.stderr)


_download_summary()


def pipeline_representation(name):
    """The representation a pipeline's evaluate job is named after ("nested" for nested selection):
    the spec's job_representation. A job's own snakemake (cluster, group job) has no specs (the
    main process checked the entries) and reads the same key from the entry."""
    if SPECS is not None:
        return SPECS[name].job_representation
    spec = PIPELINES[name]
    return "nested" if "nested" in spec else spec["representation"]["name"]


def task_representations(task):
    return sorted({pipeline_representation(name) for name in task_pipelines(task)})


def representation_pipelines(task, representation):
    """The pipelines evaluated by one job: those of the task with this representation."""
    return {
        name: spec
        for name, spec in task_pipelines(task).items()
        if pipeline_representation(name) == representation
    }


def nested_pipelines(task):
    """The task's nested pipelines, their candidates resolved to entries (evaluate_nested's job)."""
    return {
        name: {
            **spec,
            "nested": {
                **spec["nested"],
                "candidates": {c: PIPELINES[c] for c in spec["nested"]["candidates"]},
            },
        }
        for name, spec in representation_pipelines(task, "nested").items()
    }


# the task's own pipelines (task_pipelines: `pipelines` minus `exclude_pipelines`)
NESTED_TASKS = [
    (d, t) for t, spec in TASKS.items() for d in spec["datasets"] if nested_pipelines(t)
]
SELECTION_FILES = [f"results/scores/dataset~{d}/task~{t}.selection.tsv" for d, t in NESTED_TASKS]


DATASET_TASKS = [(d, t) for t, spec in TASKS.items() for d in spec["datasets"]]
DATASETS = sorted({d for d, _ in DATASET_TASKS})


def predictions_of(dataset, task):
    return [
        f"results/predictions/dataset~{dataset}/task~{task}/representation~{r}.parquet"
        for r in task_representations(task)
    ]


SCORE_FILES = [f"results/scores/dataset~{d}/task~{t}.tsv" for d, t in DATASET_TASKS]


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    task=r"[A-Za-z0-9_]+",
    representation=r"counts|log1p|sqrt|pearson|rankz|embedding",
    release=r"\d+",
    reference=r"[a-z]+",
    other=r"[a-z]+",


# Resources: every rule's mem_mb / runtime from the measured models of sclinbench.workflow.resources
# (input cells and stored counts read from the h5ad metadata, other inputs by size) x attempt, so a
# retry (profiles/slurm sets retries) asks for more.
from sclinbench.workflow import resources as job_resources


def mem_mb(rule):
    def _mem(wildcards, input, attempt):
        return job_resources.job_mem_mb(rule, list(input), attempt)

    return _mem


def threads(rule):
    def _threads(wildcards, input):
        return job_resources.job_threads(rule, list(input))

    return _threads


def runtime(rule):
    def _runtime(wildcards, input, attempt):
        return job_resources.job_runtime(rule, list(input), attempt)

    return _runtime


def _standardize_rule(wildcards, input):
    entry = REGISTRY[wildcards.dataset]
    return job_resources.standardize_model(list(input), entry.get("format", "h5ad"))


def standardize_mem_mb(wildcards, input, attempt):
    return job_resources.job_mem_mb(_standardize_rule(wildcards, input), list(input), attempt)


def standardize_runtime(wildcards, input, attempt):
    return job_resources.job_runtime(_standardize_rule(wildcards, input), list(input), attempt)


def _memory_limit():
    """(MiB, what it is) one job may use: --resources mem_mb, else this machine's memory when jobs
    run here; (None, "") on a cluster without --resources."""
    given = workflow.global_resources.get("mem_mb")
    given = getattr(given, "value", given)
    if isinstance(given, (int, float)) and given > 0:
        return given, f"--resources mem_mb={given}"
    if workflow.local_exec:
        total = job_resources.machine_memory_mb()
        if total:
            return total, "this machine's memory"
    return None, ""


def _streamable_evaluations():
    """(task, representation) -> whether its evaluate jobs can read a large dataset in blocks
    (sclinbench.evaluate.engine.why_not_streamed). Main process only (it imports scikit-learn); a job's
    own snakemake inside its allocation needs no resource estimate."""
    if not workflow.is_main_process:
        return {}
    from sclinbench.evaluate.engine import why_not_streamed

    return {
        (t, r): why_not_streamed(
            {n: SPECS[n] for n in representation_pipelines(t, r)}, TASKS[t].get("split", "")
        )
        is None
        for t in TASKS
        for r in task_representations(t)
        if r != "nested"  # read whole (evaluate_nested)
    }


STREAMABLE = _streamable_evaluations()


def evaluate_mem_mb(wildcards, input, attempt):
    streamable = STREAMABLE.get((wildcards.task, wildcards.representation), True)
    return job_resources.job_mem_mb("evaluate", list(input), attempt, streamable)


def evaluate_runtime(wildcards, input, attempt):
    streamable = STREAMABLE.get((wildcards.task, wildcards.representation), True)
    return job_resources.job_runtime("evaluate", list(input), attempt, streamable)


def _check_datasets_fit():
    """Before any job: every local h5ad dataset's estimated peak against the memory limit."""
    if not workflow.is_main_process:
        return
    limit, source = _memory_limit()
    for name in USED_DATASETS:
        entry = REGISTRY[name]
        if entry["source"] != "local" or entry.get("format", "h5ad") != "h5ad":
            continue
        paths = [f["path"] for f in entry.get("files") or []]
        shape = job_resources.raw_shape(paths, entry.get("counts", "X"))
        if shape:
            job_resources.check_fits(
                name,
                *shape,
                limit,
                source,
                where=", ".join(paths),
                max_cells=entry.get("max_cells"),
                streamable=all(
                    ok for (t, _), ok in STREAMABLE.items() if name in TASKS[t]["datasets"]
                ),
            )


_check_datasets_fit()


CONDA_ENV = "../envs/sclinbench.yaml"


from sclinbench.workflow.fingerprint import script_code


def code_fingerprint(script):
    """params value: the package code scripts/<script>.py runs; a change to that code reruns the rule."""
    return script_code(f"{workflow.basedir}/scripts/{script}.py")


# --- data stage ---------------------------------------------------------------------------------


def _url_file(dataset, filename):
    return registry_checks.url_file(dataset, REGISTRY[dataset], filename)


def _fetch_hint(dataset, filename):
    return registry_checks.fetch_hint(REGISTRY[dataset], _url_file(dataset, filename)) or ""


def _previous_raw_path(dataset, filename):
    """Where sclinbench kept this download before raw files got one path each (reused if it verifies)."""
    spec = _url_file(dataset, filename)
    return registry_checks.legacy_raw_path(dataset, REGISTRY[dataset], spec["url"]) or ""


def standardize_inputs(wildcards):
    entry = REGISTRY[wildcards.dataset]
    source = entry["source"]
    if source == "bundled":
        return []
    if source == "synthetic":
        return [f"resources/synthetic/{wildcards.dataset}"]
    if source == "url":  # one path per file: two files of the same name never collapse into one
        return [registry_checks.raw_path(wildcards.dataset, f["url"]) for f in entry["files"]]
    if source == "local":
        return [f["path"] for f in entry["files"]]
    # collection: members standardized separately, then mapped to the reference's genes
    members = entry["members"]
    inputs = [f"resources/standardized/{m}.h5ad" for m in members.values()]
    orth = entry.get("orthologs", {})
    if orth.get("source", "ensembl") == "ensembl":
        ref = ensembl_prefix(REGISTRY[members[entry["reference"]]]["organism"])
        release = orth.get("release", 112)
        inputs += [
            f"resources/orthologs/ensembl-{release}/{ref}__{ensembl_prefix(REGISTRY[m]['organism'])}.tsv"
            for org, m in members.items()
            if org != entry["reference"]
        ]
    elif orth.get("source") == "file":
        paths = orth["path"]
        inputs += list(paths.values()) if isinstance(paths, dict) else [paths]
    return inputs


# --- report stage -------------------------------------------------------------------------------

from sclinbench.workflow.contracts import DEFAULT_DECLARED, FIGURES, TABLES, task_table_stem

REPORT = config.get("report", {})
# pipelines shown in the headline beside the best of the grid (declared before the run)
DECLARED = REPORT.get("declared", [p for p in DEFAULT_DECLARED if p in PIPELINES])
_undeclared = [p for p in DECLARED if p not in PIPELINES]
if _undeclared:
    raise SclinbenchError(
        f"report.declared names {_undeclared[0]!r}, which is not under 'pipelines:' "
        f"(known: {', '.join(sorted(PIPELINES))})"
    )

TABLE_STEMS = [
    *TABLES,
    *(task_table_stem(t) for t in TASKS),
    *(["nested_selection"] if NESTED_TASKS else []),
]

# The paper's figures (results/paper/): those of report.paper_figures with a task of this run,
# each with its tasks of this run (a name not under tasks: is an error: a typo, not a choice).
for _name, _tasks in REPORT.get("paper_figures", {}).items():
    for _t in _tasks:
        if _t not in config["tasks"]:
            raise SclinbenchError(
                f"report.paper_figures.{_name} names task {_t!r}, which is not under 'tasks:' "
                f"(known: {', '.join(sorted(config['tasks']))})"
            )
PAPER_FIGURES = {
    name: [t for t in tasks if t in TASKS]
    for name, tasks in REPORT.get("paper_figures", {}).items()
    if any(t in TASKS for t in tasks)
}

FIGURE_REPORT = {
    "cross_species_heatmap": ("Cross-species", "Transfer matrix"),
    "cross_species_average": ("Cross-species", "Averages vs published"),
    "pipeline_scores": ("Scores", "Per pipeline"),
    "normalization_model": ("Scores", "Normalization x model"),
    "disease": ("Disease state", "Cell and donor level"),
    "novel_type": ("Novel cell types", "Detection"),
    "runtime_memory": ("Compute", "Runtime and memory"),
}
TABLE_REPORT = {
    "headline": ("Tables", "Headline", "headline.rst"),
    "summary": ("Tables", "Summary", "tables.rst"),
    "cross_species_average": ("Tables", "Cross-species", "cross_species_tables.rst"),
    "cross_species_pairs": ("Tables", "Cross-species", "cross_species_tables.rst"),
    "cross_species_unseen": ("Tables", "Cross-species", "cross_species_tables.rst"),
    "published_comparison": ("Tables", "Published vs computed here", "published_comparison.rst"),
    "paired_comparison": ("Tables", "Paired comparisons", "paired_comparison.rst"),
}


def _table_output(stem, ext):
    path = f"results/tables/{stem}.{ext}"
    if ext == "tsv" and stem in TABLE_REPORT:
        category, subcategory, caption = TABLE_REPORT[stem]
        return report(
            path, caption=f"../report/{caption}", category=category, subcategory=subcategory
        )
    return path


# The novel-type figure draws the ROC curves of every dataset x novel-type task from its predictions.
NOVEL = [(d, t) for d, t in DATASET_TASKS if TASKS[t]["kind"] == "novel_type"]


def job_benchmarks():
    """Benchmark records the runtime figure shows (called once every step is defined): the
    data, split, evaluate, score, metrics and annotate steps of this run, one file per job."""
    annotated = [
        job[role]["dataset"]
        for job in ANNOTATE.values()
        for role in ("reference", "query")
        if job[role].get("dataset")
    ]
    datasets = sorted(set(USED_DATASETS) | set(annotated))
    synthetic = [d for d in datasets if REGISTRY[d]["source"] == "synthetic"]
    return [
        *expand(rules.synthesize.benchmark, dataset=synthetic),
        *expand(rules.standardize.benchmark, dataset=datasets),
        *(expand(rules.split.benchmark, dataset=d, task=t)[0] for d, t in DATASET_TASKS),
        *(
            expand(rules.evaluate.benchmark, dataset=d, task=t, representation=r)[0]
            for d, t in DATASET_TASKS
            for r in task_representations(t)
        ),
        *(expand(rules.score.benchmark, dataset=d, task=t)[0] for d, t in DATASET_TASKS),
        rules.metrics.benchmark,
        *expand(rules.annotate.benchmark, name=list(ANNOTATE)),
    ]


def where_results_are():
    """The last lines of a successful run: where to look (the results' README, the HTML report)."""
    readme = Path("results/README.md")
    if not readme.exists() or "--dry-run" in sys.argv or "-n" in sys.argv:
        return
    html = Path("results/report.html")
    print(
        f"sclinbench: results in {readme.resolve()} (tables: results/tables/, figures: results/figures/)"
    )
    if html.exists() and html.stat().st_mtime >= readme.stat().st_mtime:
        print(f"sclinbench: HTML report: {html.resolve()}")
    else:
        print(
            "sclinbench: for the HTML report run the same command with --report results/report.html "
            "(./bootstrap run does both)"
        )


# --- analyses (rules/analyses.smk) -------------------------------------------------------------

from sclinbench.analyses import plan as analyses_plan

ANALYSES = analyses_plan.selected(config)
analyses_plan.check(ANALYSES, REGISTRY, f"the registry {config['registry']}")
_STRING = (ANALYSES.get("tf_targets") or {}).get("string") or {}
# a local STRING file is read from the run's folder or, when not there, from the checkout (the
# default config's stand-in in config/string/); a URL is downloaded to resources/string/
STRING_FILES = {
    key: (
        path
        if analyses_plan.is_url(_STRING[key])
        else os.path.relpath(config_file(path, f"analyses: tf_targets: string: {key}"))
    )
    for key, path in analyses_plan.string_files(ANALYSES).items()
}
ANALYSIS_LEVEL = REPORT.get("ci", 0.95)


def analysis_mem_mb(rule):
    def _mem(wildcards, input, attempt):
        return analyses_plan.job_mem_mb(rule, list(input), attempt)

    return _mem


def analysis_runtime(rule):
    def _runtime(wildcards, input, attempt):
        return analyses_plan.job_runtime(rule, list(input), attempt)

    return _runtime


def _analysis_inputs(name, suffixes):
    return {
        stem: [
            f"results/analyses/{name}/dataset~{d}{suffix}.tsv"
            for d in analyses_plan.datasets(ANALYSES, name)
        ]
        for stem, suffix in suffixes.items()
    }


ANALYSIS_INPUTS = {
    **_analysis_inputs("structure", {"structure": "", "structure_spearman": ".spearman"}),
    **_analysis_inputs("manifold", {"manifold": "", "manifold_summary": ".summary"}),
    **_analysis_inputs(
        "tf_targets", {"tf_targets": "", "tf_targets_grid": ".grid", "tf_targets_genes": ".genes"}
    ),
}
ANALYSIS_TABLES = [
    "structure",
    "structure_spearman",
    "manifold",
    "manifold_summary",
    "tf_targets",
    "tf_targets_grid",
    "tf_targets_genes",
]
ANALYSIS_FIGURES = ["structure", "manifold", "tf_targets"]
