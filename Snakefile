# sclinbench: careful normalization + linear models on single-cell foundation-model benchmarks.
#
#   snakemake --cores 2                         the embedded offline default (config/config.yaml)
#   snakemake --cores 2 --configfile config/paper.yaml    the published benchmarks (needs internet)
#   snakemake --report results/report.html      the HTML report of a finished run
#
# Stages (one file each in rules/): data -> splits -> evaluate (represent + classify) -> score -> report.
# The science is in the package src/sclinbench; scripts/ only unpack snakemake.* and call it.

from snakemake.utils import min_version, validate

min_version("9.19")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/splits.smk"
include: "rules/evaluate.smk"
include: "rules/score.smk"
include: "rules/report.smk"


report: "report/workflow.rst"


rule all:
    input:
        "results/metrics.tsv",
        REPORT_OUTPUTS,
    default_target: True
