"""Fit on training cells, predict every test cell, score the predictions with intervals.

One module per idea, from the ground up:

- :mod:`~sclinbench.evaluate.splits`    split tables (stratified, donor-held-out, cross-species, novel type)
- :mod:`~sclinbench.evaluate.clustered` the Leiden-clustered logistic regression
- :mod:`~sclinbench.evaluate.models`    classifiers (incl. the training-free centroid) and controls
- :mod:`~sclinbench.evaluate.spec`      pipeline and nested-selection specs from the config
- :mod:`~sclinbench.evaluate.pipeline`  a spec -> a scikit-learn ``Pipeline``
- :mod:`~sclinbench.evaluate.predictions` a fitted model's labels and scores -> the prediction table's rows
- :mod:`~sclinbench.evaluate.blocks`    the cells in blocks: read from an h5ad, or an AnnData in memory (one block)
- :mod:`~sclinbench.evaluate.plans`     how one preprocessing is evaluated over the blocks (summed class means,
  summed HVG statistics, or every cell at once)
- :mod:`~sclinbench.evaluate.engine`    the one evaluation engine: :func:`~sclinbench.evaluate.engine.evaluate`
  (in memory) and :func:`~sclinbench.evaluate.engine.evaluate_file` (from a file) run the same passes
- :mod:`~sclinbench.evaluate.metrics`   scores per fold, per class, confusion; the metrics tables
- :mod:`~sclinbench.evaluate.few_units` means and intervals over few units
- :mod:`~sclinbench.evaluate.intervals` pooled scores, unit-bootstrap intervals, paired differences
- :mod:`~sclinbench.evaluate.nested`    nested selection of a pipeline by inner folds

Importing the package imports none of them: each is imported where it is used.
"""
