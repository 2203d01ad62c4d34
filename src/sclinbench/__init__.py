"""sclinbench: normalization + linear models on single-cell foundation-model benchmarks.

The science lives here as plain functions and scikit-learn estimators, in stage packages that
each stand on the ones below them (docs/DESIGN.md, "Module APIs"):

- :mod:`sclinbench.workflow`   the workflow's own machinery: stage contracts, config, resources, I/O,
                               code fingerprints and job records
- :mod:`sclinbench.represent`  normalizations / representations (functions + transformers)
- :mod:`sclinbench.data`       fetch, read, check and standardize datasets (one AnnData contract),
                               species, orthologs, the synthetic atlas
- :mod:`sclinbench.evaluate`   splits, models, pipelines, fit on train folds and predict every test
                               cell, metrics, intervals, nested selection
- :mod:`sclinbench.report`     aggregation into tables, the results README, provenance
- :mod:`sclinbench.tool`       the pipelines as a tool (``sclinbench train`` / ``annotate``)
- :mod:`sclinbench.plotting`   figures
- :mod:`sclinbench.analyses`   the paper's analyses beyond classification

Nothing here imports Snakemake.
"""

from sclinbench.errors import SclinbenchError

__all__ = ["SclinbenchError"]
__version__ = "0.1.0"
