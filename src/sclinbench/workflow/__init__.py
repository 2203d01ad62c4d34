"""The ground floor every stage stands on: the workflow's own machinery, no science.

- :mod:`~sclinbench.workflow.config`      the config checked against ``config/schema.yaml``
- :mod:`~sclinbench.workflow.contracts`   the files between the stages: columns, readers, writers
- :mod:`~sclinbench.workflow.resources`   the memory and runtime model of the jobs
- :mod:`~sclinbench.workflow.io`          atomic writes, checksums, logging, script entry points
- :mod:`~sclinbench.workflow.fingerprint` the package code a script runs (``params.code``)
- :mod:`~sclinbench.workflow.records`     job records and which code made the results

Light by design: importing this package imports only the standard library (the Snakefile reads
fingerprints at parse time), so it re-exports nothing.
"""
