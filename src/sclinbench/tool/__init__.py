"""The benchmark's pipelines as a tool: label new cells (``sclinbench train`` / ``annotate``).

- :mod:`sclinbench.tool.annotate`  reference -> fitted annotator -> labelled query (+ tables)
- :mod:`sclinbench.tool.genes`     query genes onto the reference gene list, within or across species
- :mod:`sclinbench.tool.portable`  a fitted linear pipeline as arrays; the safe model file
- :mod:`sclinbench.tool.reference`, :mod:`~sclinbench.tool.calibrate`, :mod:`~sclinbench.tool.output`,
  :mod:`~sclinbench.tool.voting`, :mod:`~sclinbench.tool.modelfile`, :mod:`~sclinbench.tool.rule`: the parts of it
- :mod:`sclinbench.tool.catalog`   the pipelines, tasks and datasets the command line can name
"""

#: The pipeline ``annotate`` and ``train`` use when none is named (a ``pipelines:`` entry of config/config.yaml).
DEFAULT_PIPELINE = "rankz_centroid"
#: Defaults of an ``annotate:`` job of the workflow config (config/schema.yaml states the same; a test checks)
#: and of the command's options. Kept here, free of heavy imports, for ``sclinbench --help``.
JOB_DEFAULTS = {"min_shared_genes": 100, "calibration_fraction": 0.2, "novelty_quantile": 0.01,
                "key_added": "sclinbench", "top_genes": 20}
REFERENCE_DEFAULTS = {"label": "cell_type", "min_cells_per_label": 0}
QUERY_DEFAULTS = {"counts": "auto"}
#: The calibrated probability below which ``annotate`` counts a cell as low-confidence (CellTypist's ``p_thres``).
CONFIDENCE_THRESHOLD = 0.5
