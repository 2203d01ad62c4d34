"""Derive the cross-species example of the README ("cross-species with your own data").

Usage (from the repository root):

    .venv/bin/python tests/data/cross_species/make_cross_species.py \
        /work/shared/data/orthologs/ensembl_biomart_human_to_mouse.csv.gz tests/data/cross_species

Writes, seeded and deterministic:

- ``human_mouse_biomart.csv``: lines of the real Ensembl BioMart export, byte for byte, header
  included (the export "as it comes"): 200 human genes with a one-to-one mouse ortholog, the
  complete one-to-many groups of 6 more human genes, 20 human genes without a mouse ortholog.
- ``human.h5ad``: 150 cells (3 cell types x 2 donors x 25) over the human genes of the table plus
  20 human-only genes; var index = Ensembl ids, var ``feature_name`` = symbols; obs ``cell_type``,
  ``donor``.
- ``mouse.h5ad``: 150 cells over the mouse orthologs of the table plus 20 mouse genes absent from
  it; var index = gene symbols, var ``gene_ids`` = Ensembl ids; obs ``celltype``, ``mouse_id``;
  6 cells are labelled ``unknown`` (set aside, never a class).

Counts are seeded Poisson draws: each cell type has 15 marker genes (4-fold up); a mouse gene has
the expression of its human ortholog times a per-gene factor (lognormal, sigma 0.4), so labels
transfer across species through the one-to-one orthologs.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

SEED = 0
TYPES = ["B cell", "T cell", "monocyte"]


def main(source: str, folder: str) -> None:
    out = Path(folder)
    with gzip.open(source, "rt", newline="") as fh:
        lines = fh.read().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    df = pd.read_csv(source, dtype=str, keep_default_na=False)
    assert len(df) == len(body)
    human, hname, mouse, mname, kind = ("Gene stable ID", "Gene name", "Mouse gene stable ID",
                                        "Mouse gene name", "Mouse homology type")
    rng = np.random.default_rng(SEED)
    named = df[(df[hname] != "") & (df[mname] != "")]
    one = named[named[kind] == "ortholog_one2one"]
    one = one[~one[mname].duplicated(keep=False) & ~one[hname].duplicated(keep=False)]
    chosen = set(rng.choice(np.sort(one[human].unique()), size=200, replace=False))
    many = named[named[kind] == "ortholog_one2many"]
    sizes = many.groupby(human)[mouse].nunique()
    groups = [g for g in np.sort(sizes.index[sizes == 2]) if not df.loc[df[mouse].isin(many.loc[many[human] == g, mouse]), human].nunique() > 1]
    chosen |= set(rng.choice(groups, size=6, replace=False))
    lonely = df[(df[kind] == "") & (df[hname] != "")]
    lonely_genes = set(rng.choice(np.sort(lonely[human].unique()), size=20, replace=False))
    rows = np.flatnonzero(df[human].isin(chosen | lonely_genes).to_numpy())
    (out / "human_mouse_biomart.csv").write_text(header + "".join(body[i] for i in rows), newline="")

    table = df.iloc[rows]
    pairs = table[table[kind] != ""]
    human_genes = list(dict.fromkeys(table[human]))  # the table's order
    extra_h = [g for g in np.sort(one[human].unique()) if g not in chosen][:20]
    human_all = human_genes + extra_h
    symbols = dict(zip(df[human], df[hname]))
    mouse_genes = list(dict.fromkeys(pairs[mouse]))
    mouse_sym = dict(zip(df[mouse], df[mname]))
    extra_m = [g for g in np.sort(one[mouse].unique()) if g not in set(pairs[mouse])][:20]
    mouse_all = mouse_genes + extra_m

    n_h = len(human_all)
    base = rng.gamma(0.6, 1.5, size=n_h)
    means = np.tile(base, (3, 1))
    for k in range(3):
        markers = rng.choice(len(human_genes), size=15, replace=False)
        means[k, markers] *= 4.0
    h_index = {g: j for j, g in enumerate(human_all)}
    factor = rng.lognormal(0, 0.4, size=len(mouse_all))
    m_means = np.empty((3, len(mouse_all)))
    pair_of = dict(zip(pairs[mouse], pairs[human]))
    for j, g in enumerate(mouse_all):
        source_gene = pair_of.get(g)
        m_means[:, j] = (means[:, h_index[source_gene]] if source_gene else rng.gamma(0.6, 1.5)) * factor[j]

    def cells(mu, donors):
        labels = np.repeat(np.tile(TYPES, len(donors)), 25)
        donor = np.repeat(donors, 75)
        k = np.array([TYPES.index(t) for t in labels])
        size = rng.lognormal(0, 0.3, size=len(labels))[:, None] * 2.0
        X = rng.poisson(mu[k] * size).astype(np.int32)
        return sp.csr_matrix(X), labels, donor

    X, labels, donor = cells(means, ["H1", "H2"])
    hum = ad.AnnData(X=X, obs=pd.DataFrame({"cell_type": pd.Categorical(labels), "donor": pd.Categorical(donor)},
                                           index=[f"h{i:03d}" for i in range(X.shape[0])]),
                     var=pd.DataFrame({"feature_name": [symbols[g] for g in human_all]}, index=human_all))
    hum.write_h5ad(out / "human.h5ad", compression="gzip")

    X, labels, donor = cells(m_means, ["M1", "M2"])
    labels = labels.astype(object)
    labels[rng.choice(len(labels), size=6, replace=False)] = "unknown"
    mus = ad.AnnData(X=X, obs=pd.DataFrame({"celltype": pd.Categorical(labels), "mouse_id": pd.Categorical(donor)},
                                           index=[f"m{i:03d}" for i in range(X.shape[0])]),
                     var=pd.DataFrame({"gene_ids": mouse_all}, index=[mouse_sym[g] for g in mouse_all]))
    mus.write_h5ad(out / "mouse.h5ad", compression="gzip")
    print(f"table rows {len(rows)} ({table[kind].replace('', '(none)').value_counts().to_dict()}); "
          f"human {hum.shape}, mouse {mus.shape}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
