"""Tables, the published comparison, the results README and provenance, from the score stage's tables.

The score stage (:mod:`sclinbench.evaluate.intervals`) has every pipeline's predictions of one dataset x task
and writes the numbers: pooled out-of-fold scores with intervals that resample what the split holds
out (``results/summary.tsv``) and paired differences on the same draws (``results/paired.tsv``).
This package only reads, selects and formats them (and ``results/metrics.tsv``, the per-fold scores,
and the published numbers of ``config/reference_results.tsv``).

Conventions (also stated in every written table):

- **Intervals**: a one-line statement in every table; units named per row; none from fewer than
  3 units (the per-unit values and "too few units for an interval" instead).
- **Selection**: the headline shows the pipelines declared before the run (config
  ``report: {declared: [...]}``) beside the best linear pipeline of the grid, which is marked
  "chosen on the evaluation folds: optimistic". kNN (family ``nonlinear``) is never in a linear
  table; novel-type tasks rank by novelty AUROC.
- **Controls**: every task where the best method does not beat the best control beyond the
  interval of their paired difference is flagged "no signal over control".
- **Cross-species** scores cover the labels both species share; averages leave out the same-species
  cross-validation unless asked (``includes_diagonal``), except the headline of tasks with
  ``protocol: paper``, which average every pair including it, as Souza & Mehta did.
- **Published** numbers never mix silently with ours: every row of a comparison carries
  ``source`` = ``published`` or ``computed here``. A foundation-model embedding supplied by the user
  and classified by a linear model in this workflow is ``computed here``.

One module per thing it writes:

- :mod:`~sclinbench.report.selection`  which rows a table shows (headline, best of grid, controls)
- :mod:`~sclinbench.report.markdown`   how a number is written (value [interval], Markdown tables)
- :mod:`~sclinbench.report.tables`     ``results/tables/*`` (:func:`write_tables`)
- :mod:`~sclinbench.report.published`  published numbers beside ours (:func:`published_table`)
- :mod:`~sclinbench.report.nested`   which candidate each outer fold of a nested pipeline chose
- :mod:`~sclinbench.report.readme`     ``results/README.md`` (:func:`write_results_readme`)
- :mod:`~sclinbench.report.provenance` ``results/provenance.json|md`` (:func:`provenance`)
"""

from sclinbench.report.markdown import (
    METRIC_LABELS,
    format_ci,
    format_row,
    interval_line,
    score_label,
    to_markdown,
)
from sclinbench.report.nested import nested_vs_candidates, read_selection, selection_markdown
from sclinbench.report.provenance import code_lines, config_hash, provenance, write_provenance
from sclinbench.report.published import (
    COMPUTED,
    PUBLISHED,
    REFERENCE_COLUMNS,
    published_table,
    published_wide,
    read_reference,
)
from sclinbench.report.readme import write_results_readme
from sclinbench.report.selection import (
    NO_SIGNAL,
    OPTIMISTIC,
    SIGNAL,
    UNTESTED,
    best_control,
    best_of_grid,
    controls_of,
    cross_species_average,
    cross_species_matrix,
    cross_species_pairs,
    headline_group,
    headline_metric,
    headline_rows,
    paired_difference,
    signal_over_control,
    summary_view,
    tasks_of,
)
from sclinbench.report.tables import headline_table, paired_view, write_tables
from sclinbench.workflow.contracts import DEFAULT_DECLARED

__all__ = [
    "COMPUTED", "DEFAULT_DECLARED", "METRIC_LABELS", "NO_SIGNAL", "OPTIMISTIC", "PUBLISHED",
    "REFERENCE_COLUMNS", "SIGNAL", "UNTESTED", "best_control", "best_of_grid", "controls_of", "code_lines",
    "config_hash", "cross_species_average", "cross_species_matrix", "cross_species_pairs", "format_ci",
    "format_row", "headline_group", "headline_metric", "headline_rows", "headline_table",
    "interval_line", "nested_vs_candidates", "paired_difference", "paired_view", "provenance", "published_table",
    "published_wide", "read_reference", "read_selection", "score_label", "selection_markdown", "signal_over_control", "summary_view",
    "tasks_of", "to_markdown", "write_provenance", "write_results_readme", "write_tables"
]
