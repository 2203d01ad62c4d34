# Report: tables, figures, provenance and the Snakemake report (filled in with issue 5).

REPORT_OUTPUTS = []
