"""The paper's analyses beyond classification (Souza & Mehta 2026, Sec. III, VI, VII), as plain functions.

- :mod:`sclinbench.analyses.structure`: biological structure across species (pseudobulk rankz
  cosine to the reference species' same type against divergence; Spearman, bootstrap, permuted
  labels control).
- :mod:`sclinbench.analyses.manifold`: manifold linearity (Pearson r of Euclidean and Isomap
  geodesic distances on seeded subsamples, raw counts beside rankz and log1p).
- :mod:`sclinbench.analyses.tf_targets`: transcription-factor target recovery (PMI of "on" genes in
  TF-active cells, z-scored, BH FDR, validated against STRING; the paper's tuned grid beside one
  pre-declared setting and a permuted-activity control).
- :mod:`sclinbench.analyses.figures`: one figure per analysis; :mod:`sclinbench.analyses.plan`: the
  config's analyses, their datasets and files (light: imported when the workflow is parsed).

Each reads the standardized dataset (``resources/standardized/<dataset>.h5ad``: raw counts in ``X``,
obs ``cell_type`` and ``organism``); nothing here reads Snakemake objects.
"""
