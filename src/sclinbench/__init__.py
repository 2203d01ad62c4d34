"""sclinbench: normalization + linear models on single-cell foundation-model benchmarks.

The science lives here as plain functions and scikit-learn estimators, split the way scanpy
splits ``pp``/``tl``/``pl``:

- :mod:`sclinbench.data`       read, check and standardize datasets (one AnnData contract; a package)
- :mod:`sclinbench.data.synthetic`  the seeded multi-species synthetic atlas
- :mod:`sclinbench.data.orthologs`  gene orthology tables and mapping across species
- :mod:`sclinbench.represent`  normalizations / representations (functions + transformers)
- :mod:`sclinbench.evaluate.models`     classifiers (incl. the training-free centroid classifier) and controls
- :mod:`sclinbench.evaluate.pipeline`   named pipelines from config -> scikit-learn ``Pipeline``
- :mod:`sclinbench.evaluate.splits`     split tables (stratified, donor-held-out, cross-species, novel type)
- :mod:`sclinbench.tasks`      fit on train folds, predict every test cell
- :mod:`sclinbench.evaluate.metrics`    scores, bootstrap CIs, paired comparisons
- :mod:`sclinbench.report`     aggregation into tables
- :mod:`sclinbench.plotting`   figures

Nothing here imports Snakemake.
"""

from sclinbench.errors import SclinbenchError

__all__ = ["SclinbenchError"]
__version__ = "0.1.0"
