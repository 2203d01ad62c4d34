"""Write the STRING-format stand-in of config/string/ (run from the repository root: python config/string/make_fixture.py).

NOT STRING DATA. The machines this project is built and tested on cannot reach string-db.org, so
the fixture that drives the tests and the embedded default run is a *format stand-in*: files laid
out exactly as STRING v12.0's ``9606.protein.links.v12.0.txt.gz`` (space-separated ``protein1
protein2 combined_score``, every link listed both ways) and ``9606.protein.aliases.v12.0.txt.gz``
(tab-separated ``#string_protein_id alias source``), over the 765 gene symbols of scanpy's
``pbmc68k_reduced``, with protein ids ``9606.SCLBFIX<5 digits>`` that name no real protein and
links drawn at random (seed 0): each gene is linked to each of the four TFs below with probability
0.12, with a combined score uniform on 150..999, plus as many random gene-gene links. Target
recovery validated against it can only reach its base rate: it tests the code path, never biology.
The paper's run (config/paper.yaml) downloads the real files (checksummed, resources/checksums.lock.tsv).
"""

import gzip
from pathlib import Path

import numpy as np
import scanpy as sc

TFS = ["SPIB", "SPI1", "IRF8", "IRF7"]
OUT = Path(__file__).parent


def main() -> None:
    genes = sorted(map(str, sc.datasets.pbmc68k_reduced().raw.var_names))
    rng = np.random.default_rng(0)
    protein = {g: f"9606.SCLBFIX{i:05d}" for i, g in enumerate(genes)}
    links = {}
    for tf in TFS:
        for g in genes:
            if g != tf and rng.random() < 0.12:
                links[(protein[tf], protein[g])] = int(rng.integers(150, 1000))
    others = [g for g in genes if g not in TFS]
    for _ in range(len(links)):
        a, b = rng.choice(others, 2, replace=False)
        links[(protein[a], protein[b])] = int(rng.integers(150, 1000))
    rows = set()
    for (a, b), s in links.items():
        rows.add((a, b, s))
        rows.add((b, a, s))
    with gzip.GzipFile(OUT / "9606.protein.links.fixture.txt.gz", "wb", mtime=0) as fh:
        fh.write(("protein1 protein2 combined_score\n" + "".join(f"{a} {b} {s}\n" for a, b, s in sorted(rows))).encode())
    with gzip.GzipFile(OUT / "9606.protein.aliases.fixture.txt.gz", "wb", mtime=0) as fh:
        fh.write(("#string_protein_id\talias\tsource\n"
                  + "".join(f"{protein[g]}\t{g}\tsclinbench_fixture\n" for g in genes)).encode())


if __name__ == "__main__":
    main()
