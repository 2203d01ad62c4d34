"""Time and peak memory of the analysis jobs at the paper's sizes (issue 21; docs/performance.md).

- structure: eight synthetic species (``sclinbench.data.synthetic.make_atlas``, 7 cell types) mapped to
  the reference's one-to-one orthologs, 71,202 cells (the paper's eight testis files after QC,
  config/paper_manifest.yaml) on ~6,000 genes (the paper: 6,077 common orthologs);
- tf_targets: ``--tf-cells`` synthetic cells x 20,000 genes (~2,400 detected per cell,
  ``make_dataset.py``) for a bone-marrow-sized file, five TFs, and a STRING-format links file of
  ``--links`` lines (STRING v12.0 human has ~13.7M) with its aliases;
- manifold: the default settings on the same file.

Each job runs as the rule runs it (``run_job`` on an h5ad, in a fresh process); wall time and the
process's peak RSS (``ru_maxrss``) are printed. Generated data go to ``--work`` (outside git).

    nice -n 10 python benchmarks/bench_analyses.py --work /work/scale/analyses
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

JOB = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
from sclinbench.analyses import {module}
t = time.perf_counter()
{module}.run_job(*json.loads(sys.argv[1]), **json.loads(sys.argv[2]))
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run(module: str, args: list, kwargs: dict) -> dict:
    code = JOB.format(src=str(REPO / "src"), module=module)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args), json.dumps(kwargs)], check=True,
                         capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
                                                              "PATH": "/usr/bin:/bin"})
    wall = time.perf_counter() - t
    compute, peak_kib = out.stdout.split()[-2:]     # the job process's own peak RSS (KiB)
    return {"job": module, "wall_s": round(wall, 1), "compute_s": round(float(compute), 1),
            "peak_gib": round(int(peak_kib) / 2**20, 2)}


def make_structure_data(path: Path, cells: int, genes: int) -> dict:
    import numpy as np

    from sclinbench.data.gene_space import map_to_reference
    from sclinbench.data.synthetic import make_atlas
    from sclinbench.workflow.io import write_h5ad

    species = ["human", "chimpanzee", "gorilla", "macaque", "marmoset", "mouse", "opossum", "platypus"]
    myr = [0, 6, 10, 25, 35, 90, 160, 177]
    adatas, table = make_atlas(seed=0, species=species, divergence=[0.9 * m / 177 for m in myr],
                               n_genes=genes, n_cell_types=7, cells_per_species=cells // len(species),
                               library_median=3000.0, lost_fraction=0.01, one2many_fraction=0.01)
    adata = map_to_reference(adatas, table, "human")
    write_h5ad(adata, path)
    return {"cells": adata.n_obs, "genes": adata.n_vars, "nnz": int(adata.X.nnz),
            "divergence": dict(zip(species[1:], myr[1:])), "mean_nnz_per_cell": float(np.diff(adata.X.indptr).mean())}


def make_string(work: Path, genes: list[str], tfs: list[str], lines: int) -> tuple[Path, Path]:
    import numpy as np

    rng = np.random.default_rng(0)
    prot = [f"9606.BENCH{i:06d}" for i in range(len(genes))]
    links, aliases = work / "links.txt.gz", work / "aliases.txt.gz"
    with gzip.open(aliases, "wt", compresslevel=1) as fh:
        fh.write("#string_protein_id\talias\tsource\n")
        for p, g in zip(prot, genes):
            fh.write(f"{p}\t{g}\tbench\n{p}\t{g}_alt\tbench\n")
    with gzip.open(links, "wt", compresslevel=1) as fh:
        fh.write("protein1 protein2 combined_score\n")
        block = 1_000_000
        prot = np.array(prot)
        for start in range(0, lines, block):
            n = min(block, lines - start)
            a, b = rng.integers(0, len(prot), n), rng.integers(0, len(prot), n)
            s = rng.integers(150, 1000, n)
            fh.write("".join(f"{x} {y} {z}\n" for x, y, z in zip(prot[a], prot[b], s)))
    return links, aliases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--structure-cells", type=int, default=71202)
    ap.add_argument("--structure-genes", type=int, default=6300)
    ap.add_argument("--tf-cells", type=int, default=50000)
    ap.add_argument("--links", type=int, default=13_700_000)
    ap.add_argument("--skip", nargs="*", default=[])
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "src"))
    import yaml

    defaults = yaml.safe_load((REPO / "config/config.yaml").read_text())["analyses"]
    results = []
    if "structure" not in args.skip:
        h5 = args.work / "structure.h5ad"
        facts = make_structure_data(h5, args.structure_cells, args.structure_genes)
        print("structure data:", json.dumps({k: v for k, v in facts.items() if k != "divergence"}), flush=True)
        params = {"reference": "human", "divergence": facts["divergence"], "divergence_unit": "Myr",
                  "min_cells": 10, "n_boot": defaults["structure"]["n_boot"],
                  "n_permutations": defaults["structure"]["n_permutations"]}
        results.append({**run("structure", [str(h5), "bench", params, str(args.work / "s.tsv"),
                                            str(args.work / "s.spearman.tsv")], {}), **facts, "divergence": None})
        print(results[-1], flush=True)
    if "tf_targets" not in args.skip or "manifold" not in args.skip:
        h5 = args.work / "bone_marrow.h5ad"
        if not h5.exists():
            subprocess.run([sys.executable, str(REPO / "benchmarks/make_dataset.py"), "--cells", str(args.tf_cells),
                            "--out", str(h5)], check=True)
        import anndata as ad

        var = ad.read_h5ad(h5, backed="r").var_names.tolist()
        tfs = var[100:105]
        if "tf_targets" not in args.skip:
            links, aliases = make_string(args.work, var, tfs, args.links)
            t = defaults["tf_targets"]
            params = {"tfs": tfs, "min_score": t["min_score"], "fdr": t["fdr"], "quantile": t["declared"]["quantile"],
                      "min_frequency": t["declared"]["min_frequency"], "n_permutations": t["n_permutations"],
                      "n_boot": t["n_boot"], "string_source": "bench"}
            results.append(run("tf_targets", [str(h5), "bench", params, str(links), str(aliases),
                                              str(args.work / "t.tsv"), str(args.work / "t.grid.tsv"),
                                              str(args.work / "t.genes.tsv")], {}))
            results[-1].update(cells=args.tf_cells, links=args.links)
            print(results[-1], flush=True)
        if "manifold" not in args.skip:
            m = defaults["manifold"]
            params = {k: m[k] for k in ("n_cells", "n_types", "k", "representations", "n_draws")}
            results.append(run("manifold", [str(h5), "bench", params, str(args.work / "m.tsv"),
                                            str(args.work / "m.summary.tsv")], {}))
            print(results[-1], flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
