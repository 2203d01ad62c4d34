# sclinbench: careful normalization + linear models on single-cell foundation-model benchmarks.
#
#   snakemake --cores 2                         the embedded offline default (config/config.yaml)
#   snakemake --cores 2 --configfile config/paper.yaml    the published benchmarks (needs internet)
#   snakemake --report results/report.html      the HTML report of a finished run
#
# Stages (one file each in rules/): data -> splits -> evaluate (represent + classify) -> score -> report;
# analyses (structure, manifold, TF targets) read the standardized data beside them.
# The science is in the package src/sclinbench; scripts/ only unpack snakemake.* and call it.

from snakemake.utils import min_version, validate

min_version("9.19")


configfile: f"{workflow.basedir}/config/config.yaml"


import sys

sys.path.insert(0, f"{workflow.basedir}/src")  # the package, also when it is not pip-installed


# A readable one-line message first (naming the key), then snakemake's own validation.
from sclinbench.workflow.config import check as check_config

check_config(
    config,
    f"{workflow.basedir}/config/schema.yaml",
    "the configuration (config/config.yaml + --config/--configfile)",
)
validate(config, f"{workflow.basedir}/config/schema.yaml", set_default=False)  # defaults: package


include: "rules/common.smk"


# Offline, before anything is downloaded: every task x dataset against what is known about the files.
from sclinbench.data.manifest import check_tasks

check_tasks(TASKS, REGISTRY, f"{workflow.basedir}/config/paper_manifest.yaml")


include: "rules/data.smk"
include: "rules/splits.smk"
include: "rules/evaluate.smk"
include: "rules/score.smk"
include: "rules/analyses.smk"
include: "rules/report.smk"
include: "rules/annotate.smk"


# Aggregation steps that read the small score tables (seconds, < 0.5 GiB each, also at 1M cells): on
# a cluster they run on the submit host instead of costing a SLURM job and a stage barrier each.
localrules:
    metrics,
    tables,
    figures,
    provenance,
    analyses,


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        "results/metrics.tsv",
        REPORT_OUTPUTS,
        rules.analyses.output if ANALYSES else [],


onsuccess:
    where_results_are()
