"""The benchmark's pipelines as a tool: label new cells (``sclinbench train`` / ``annotate``).

- :mod:`sclinbench.tool.annotate`  reference -> fitted annotator -> labelled query (+ tables)
- :mod:`sclinbench.tool.genes`     query genes onto the reference gene list, within or across species
- :mod:`sclinbench.tool.portable`  a fitted linear pipeline as arrays; the safe model file
- :mod:`sclinbench.tool.catalog`   the pipelines, tasks and datasets the command line can name
"""
