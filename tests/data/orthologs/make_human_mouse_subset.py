"""Derive tests/data/orthologs/human_mouse_subset.tsv.gz from the shared Ensembl BioMart export.

Usage (from the repository root):

    .venv/bin/python tests/data/orthologs/make_human_mouse_subset.py \
        /work/shared/data/orthologs/ensembl_biomart_human_to_mouse.csv.gz \
        tests/data/orthologs/human_mouse_subset.tsv.gz

Selection (seeded, deterministic): a few named immune genes, then random human genes per category
(1500 with a one-to-one mouse ortholog, 250 with one-to-many, 120 with many-to-many, 400 without
any mouse ortholog), then every one-to-many row sharing a human or mouse gene id with a selected row is added
(repeatedly), so that no one-to-many group is cut in half (many-to-many families are not closed:
some are hundreds of rows). Rows keep the
original columns and order; the output is tab-separated and gzipped with mtime 0 (reproducible bytes).
Prints the counts recorded in PROVENANCE.md, computed with the csv module only.
"""

from __future__ import annotations

import collections
import csv
import gzip
import io
import sys

import numpy as np
import pandas as pd

NAMED = ["CD4", "CD8A", "MS4A1", "PTPRC", "CD14", "CD3E", "NKG7", "LYZ"]
PER_TYPE = {"ortholog_one2one": 1500, "ortholog_one2many": 250, "ortholog_many2many": 60, "": 400}
SEED = 0


def main(source: str, dest: str) -> None:
    df = pd.read_csv(source, dtype=str, keep_default_na=False)
    human, mouse, kind = "Gene stable ID", "Mouse gene stable ID", "Mouse homology type"
    rng = np.random.default_rng(SEED)
    chosen = set(df.loc[df["Gene name"].isin(NAMED), human])
    for homology, n in PER_TYPE.items():
        genes = np.sort(df.loc[df[kind] == homology, human].unique())
        chosen |= set(rng.choice(genes, size=n, replace=False))
    selected = df[human].isin(chosen)
    one2many = df[kind] == "ortholog_one2many"
    while True:  # complete one-to-many groups: add one2many rows sharing a human or mouse gene
        mice = set(df.loc[selected, mouse]) - {""}
        humans = set(df.loc[selected, human])
        grown = selected | (one2many & (df[human].isin(humans) | df[mouse].isin(mice)))
        if grown.sum() == selected.sum():
            break
        selected = grown
    out = df[selected]
    buffer = io.StringIO()
    out.to_csv(buffer, sep="\t", index=False, lineterminator="\n")
    with open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue().encode("utf-8"))

    # independent recount with the csv module
    with gzip.open(dest, "rt", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    counts = collections.Counter(r[kind] or "(no ortholog)" for r in rows)
    print(f"rows: {len(rows)}")
    for key, value in sorted(counts.items()):
        print(f"{key}: {value}")
    print(f"human genes: {len({r[human] for r in rows})}")
    print(f"mouse genes: {len({r[mouse] for r in rows if r[mouse]})}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
