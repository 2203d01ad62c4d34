"""sclinbench annotate vs CellTypist: macro F1 and time of train + annotate on the same files.

Reproduces the table of docs/annotate.md. Run from the repository root with the project's Python and
a throwaway CellTypist environment (never the project's: CellTypist 1.7.1 needs scikit-learn < 1.8):

    python3 -m venv /work/ctenv
    /work/ctenv/bin/pip install celltypist==1.7.1 'scikit-learn<1.8' scanpy
    .venv/bin/python docs/annotate_benchmark/compare_celltypist.py --celltypist-python /work/ctenv/bin/python \
        --workdir /tmp/annotate_benchmark --repeats 1 --large --liao /work/shared/data/liao2020-covid-balf \
        --out docs/annotate_benchmark/results.tsv

sclinbench rows (``--pipelines``, default all four): ``default`` = ``sclinbench train`` without
``--pipeline`` (what a user gets: nested selection among sclinbench.tool.catalog.TRAIN_CANDIDATES on
held-out reference donors, or cells with fewer than 3 donors; the chosen candidate, its inner
scores and the selection's seconds are read back from the model file into the TSV), then each
candidate fixed with ``--pipeline`` (:data:`FIXED`). The script checks that the default's F1 equals
its chosen candidate's fixed row (same pipeline, same seed).

Cases (every unit is one reference/query pair; both tools get the same two h5ad files of raw counts):

- ``pbmc68k``: scanpy's bundled pbmc68k_reduced (counts recovered as sclinbench.data.load_bundled
  does), split into stratified halves (reference / query) by ``bulk_labels``, seeds 0-4 (5 units).
- ``atlas_donors``: the synthetic atlas of config/datasets.yaml (entry ``atlas``), species alpha;
  two donors held out as the query, four folds (alpha_d1+d2, d3+d4, d5+d6, d7+d8; 4 units).
- ``atlas_species``: one species as the reference, another as the query, through the atlas's
  one-to-one orthologs (alpha->beta, alpha->gamma, beta->alpha, gamma->alpha; 4 units), scored on
  the labels the reference has (beta's species-only type_09 is never a reference label when alpha is).
  sclinbench maps the query with ``--orthologs``; CellTypist gets the query already mapped to the
  reference's gene ids by the same one-to-one table (sclinbench.tool.genes), because it matches
  genes by name only.
- ``--liao DIR``: real lavage cells of three COVID-19 patients (Liao et al. 2020: C144 mild, C146
  and C149 severe; the 10x files in DIR, read at benchmark time only), labelled with coarse lineages
  by the marker rule of liao_labels.py computed on all patients jointly (derived labels: see its
  docstring for the rule and its limitations); one patient as the reference, another as the query
  (C144->C146, C144->C149: mild -> severe; C146->C144, C149->C144; 4 units, no donors in a
  reference, so the default chooses on folds of cells).
- ``--large``: the atlas at 10x the cells (15,000 per species), held-out donors alpha_d7+d8 and
  alpha->beta (1 unit each: no interval).

Time = wall-clock seconds of train (read reference, fit, save the model) + annotate (read model and
query, predict, write the labelled h5ad), measured inside each tool's process after its imports
(best of ``--repeats`` runs; the modules sclinbench imports lazily on its first call are imported
beforehand, as ``import celltypist`` imports its own). "Whole process" is the wall time of the
runner process: interpreter start-up, imports, train and annotate (best of the repeats). Both run single-threaded
(OMP/OPENBLAS/MKL_NUM_THREADS=1). Macro F1 is computed with sclinbench.evaluate.metrics.classification_scores
on the query cells whose true label the reference has, for both tools; for sclinbench it is checked
against the value ``sclinbench annotate --truth`` wrote itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

from sclinbench.data import load_bundled  # noqa: E402
from sclinbench.data.synthetic import make_atlas  # noqa: E402
from sclinbench.evaluate.metrics import classification_scores  # noqa: E402
from sclinbench.tool import genes as gene_match  # noqa: E402

#: The fixed rows: sclinbench.tool.catalog.TRAIN_CANDIDATES, what the default chooses among.
FIXED = ["rankz_centroid", "log1p_pca_logreg", "pearson_pca_ridge"]
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _write(adata: ad.AnnData, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)
    return str(path)


def _counts_only(adata: ad.AnnData, label: str) -> ad.AnnData:
    """Counts, the label as ``cell_type`` and, when known, the donor as ``donor_id`` (the default's
    nested selection holds reference donors out; CellTypist ignores it)."""
    X = sp.csr_matrix(adata.X, dtype=np.float32)
    obs = pd.DataFrame({"cell_type": adata.obs[label].astype(str).to_numpy()}, index=adata.obs_names.astype(str))
    if "donor_id" in adata.obs.columns:
        obs["donor_id"] = adata.obs["donor_id"].astype(str).to_numpy()
    var = pd.DataFrame(index=adata.var_names.astype(str))
    if "gene_symbol" in adata.var.columns:
        var["gene_symbol"] = adata.var["gene_symbol"].astype(str).to_numpy()
    return ad.AnnData(X=X, obs=obs, var=var)


def pbmc_cases(work: Path, seeds=range(5)) -> list[dict]:
    a = _counts_only(load_bundled("pbmc68k_reduced"), "bulk_labels")
    y = a.obs["cell_type"].to_numpy()
    cases = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        query = np.zeros(a.n_obs, dtype=bool)
        for label in np.unique(y):
            idx = np.flatnonzero(y == label)
            query[rng.choice(idx, size=idx.size // 2, replace=False)] = True
        d = work / "pbmc68k" / f"seed{seed}"
        cases.append({"group": "pbmc68k", "unit": f"seed {seed}", "reference": _write(a[~query].copy(), d / "reference.h5ad"),
                      "query": _write(a[query].copy(), d / "query.h5ad")})
    return cases


def _atlas(cells_per_species: int | None = None):
    entry = yaml.safe_load(open(ROOT / "config" / "datasets.yaml"))["atlas"]["synthetic"]
    if cells_per_species:
        entry = {**entry, "cells_per_species": cells_per_species}
    return make_atlas(**entry)


def atlas_cases(work: Path, name: str, cells_per_species=None, folds=None, pairs=None) -> list[dict]:
    adatas, table = _atlas(cells_per_species)
    table_path = work / name / "orthologs.tsv"
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(table_path, sep="\t", index=False)
    cases = []
    alpha = _counts_only(adatas["alpha"], "cell_type")
    for held in folds or []:
        q = alpha.obs["donor_id"].isin(held).to_numpy()
        d = work / name / ("donors_" + "_".join(h.split("_")[-1] for h in held))
        cases.append({"group": f"{name}_donors", "unit": "+".join(held), "reference": _write(alpha[~q].copy(), d / "reference.h5ad"),
                      "query": _write(alpha[q].copy(), d / "query.h5ad")})
    for ref_sp, q_sp in pairs or []:
        d = work / name / f"{ref_sp}_to_{q_sp}"
        ref = _counts_only(adatas[ref_sp], "cell_type")
        query = _counts_only(adatas[q_sp], "cell_type")
        ortho = gene_match.read_ortholog_table(table_path, ref_sp, q_sp)
        match = gene_match.match_genes(
            gene_match.gene_keys(ref.var), gene_match.gene_keys(query.var), target_ids=ref.var_names.to_numpy(),
            target_symbols=ref.var["gene_symbol"].to_numpy(), pairs=ortho, min_shared=1)
        mapped = ad.AnnData(X=match.apply(query.X), obs=query.obs.copy(), var=pd.DataFrame(index=ref.var_names.copy()))
        cases.append({"group": f"{name}_species", "unit": f"{ref_sp}->{q_sp}",
                      "reference": _write(ref, d / "reference.h5ad"), "query": _write(query, d / "query.h5ad"),
                      "query_mapped": _write(mapped, d / "query_mapped_to_reference.h5ad"),
                      "extra": ["--reference-species", ref_sp, "--query-species", q_sp, "--orthologs", str(table_path)],
                      "n_shared_genes": match.n_shared})
    return cases


def run(cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:2]} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_s": wall}


def shared_f1(out_path: str, column: str, reference_path: str) -> tuple[float, int]:
    out = ad.read_h5ad(out_path)
    ref_labels = set(ad.read_h5ad(reference_path, backed="r").obs["cell_type"].astype(str))
    truth = out.obs["cell_type"].astype(str).to_numpy()
    keep = np.isin(truth, list(ref_labels))
    pred = out.obs[column].astype(str).to_numpy()
    return classification_scores(truth[keep], pred[keep])["macro_f1"], int(keep.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--celltypist-python", required=True, help="python of the throwaway CellTypist venv")
    ap.add_argument("--workdir", default="/tmp/annotate_benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pipelines", nargs="+", default=["default", *FIXED],
                    help="sclinbench pipelines to run; 'default' = train without --pipeline (it chooses)")
    ap.add_argument("--liao", metavar="DIR", help="add the real lavage case from the three Liao 2020 10x files "
                    "in DIR (e.g. /work/shared/data/liao2020-covid-balf; read at benchmark time only)")
    ap.add_argument("--large", action="store_true", help="add the 10x atlas cases")
    ap.add_argument("--only", nargs="+", help="case groups to run (default all)")
    ap.add_argument("--out", default=str(HERE / "results.tsv"))
    ap.add_argument("--summarize", metavar="TSV", help="only print the table of an earlier run's TSV")
    args = ap.parse_args()
    if args.summarize:
        print(markdown(summarize(pd.read_csv(args.summarize, sep="\t"))))
        return
    work = Path(args.workdir)
    env = {**os.environ, **THREADS}
    cases = pbmc_cases(work)
    folds = [["alpha_d1", "alpha_d2"], ["alpha_d3", "alpha_d4"], ["alpha_d5", "alpha_d6"], ["alpha_d7", "alpha_d8"]]
    pairs = [("alpha", "beta"), ("alpha", "gamma"), ("beta", "alpha"), ("gamma", "alpha")]
    cases += atlas_cases(work, "atlas", folds=folds, pairs=pairs)
    if args.large:
        cases += atlas_cases(work, "atlas_x10", cells_per_species=15000, folds=[["alpha_d7", "alpha_d8"]],
                             pairs=[("alpha", "beta")])
    if args.liao:
        from liao_labels import liao_cases  # noqa: PLC0415

        cases += liao_cases(work, Path(args.liao))
    if args.only:
        cases = [c for c in cases if c["group"] in args.only]
    rows = []
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    for case in cases:
        d = Path(case["reference"]).parent
        tools = [("celltypist", "default", [args.celltypist_python, str(HERE / "celltypist_runner.py")],
                  {"reference": case["reference"], "query": case.get("query_mapped", case["query"]), "label": "cell_type",
                   "model": str(d / "celltypist_model.pkl"), "out": str(d / "celltypist_out.h5ad")})]
        for pipeline in args.pipelines:
            tools.append(("sclinbench", pipeline, [sys.executable, str(HERE / "sclinbench_runner.py")],
                          {"reference": case["reference"], "query": case["query"], "label": "cell_type",
                           "model": str(d / f"sclinbench_{pipeline}.npz"), "out": str(d / f"sclinbench_{pipeline}.h5ad"),
                           "pipeline": pipeline, "config": str(HERE / "pipelines.yaml"), "extra": case.get("extra", []),
                           "donor": case.get("donor")}))
        for tool, pipeline, cmd, job in tools:
            runs = [run([*cmd, json.dumps(job)], env) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["train_s"] + r["annotate_s"])
            f1, n = shared_f1(job["out"], best["label_column"], case["reference"])
            if tool == "sclinbench":  # the number annotate reported itself
                m = pd.read_csv(Path(job["out"]).with_suffix(".metrics.tsv"), sep="\t")
                own = m[(m["set"] == "query_shared_labels") & (m["metric"] == "macro_f1")]["value"].iloc[0]
                assert abs(own - f1) < 1e-9, (own, f1)
            row = {"group": case["group"], "unit": case["unit"], "tool": tool, "pipeline": pipeline,
                   "macro_f1": f1, "n_query_cells_scored": n, "train_s": best["train_s"], "annotate_s": best["annotate_s"],
                   "total_s": best["train_s"] + best["annotate_s"], "import_s": best["import_s"],
                   "process_s": min(r["process_s"] for r in runs),
                   "n_repeats": args.repeats, "chosen": best.get("chosen", ""),
                   "selection_s": best.get("selection_s"), "inner_split": best.get("inner_split"),
                   "selection_scores": json.dumps(best.get("selection_scores")) if best.get("selection_scores") else ""}
            rows.append(row)
            print(f"{case['group']:>18} {case['unit']:<20} {tool:<10} {pipeline:<24} F1 {f1:.3f}  "
                  f"train {best['train_s']:.2f} s + annotate {best['annotate_s']:.2f} s", file=sys.stderr)
        chosen = rows[-len(tools):]
        default = [r for r in chosen if r["tool"] == "sclinbench" and r["pipeline"] == "default"]
        fixed = {r["pipeline"]: r for r in chosen if r["tool"] == "sclinbench" and r["pipeline"] != "default"}
        if default and default[0]["chosen"] in fixed:  # same pipeline, same seed: the same predictions
            same = abs(default[0]["macro_f1"] - fixed[default[0]["chosen"]]["macro_f1"]) < 1e-9
            print(f"  default chose {default[0]['chosen']}: F1 {'equals' if same else 'DIFFERS FROM'} its fixed row",
                  file=sys.stderr)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    df = pd.DataFrame(rows)
    df.to_csv(args.out, sep="\t", index=False)
    print(markdown(summarize(df)))


def markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per case group x tool/pipeline: mean (sd) macro F1 over units, median time, n; for the
    default, which candidate it chose (units per candidate); per row, the units meeting issue 24's goal
    (macro F1 >= CellTypist's and train + annotate at most a third of CellTypist's)."""
    out = []
    for (group, tool, pipeline), g in df.groupby(["group", "tool", "pipeline"], sort=False):
        ct = df[(df.group == group) & (df.tool == "celltypist")].set_index("unit")
        ratio = (ct.loc[g["unit"], "total_s"].to_numpy() / g["total_s"].to_numpy())
        diff = g["macro_f1"].to_numpy() - ct.loc[g["unit"], "macro_f1"].to_numpy()
        goal = (diff >= 0) & (ratio >= 3)  # issue 24: F1 >= CellTypist and at most a third of its time
        sd = g["macro_f1"].std(ddof=1) if len(g) >= 3 else float("nan")
        name = ("celltypist" if tool == "celltypist" else "sclinbench default (chosen)" if pipeline == "default"
                else f"sclinbench {pipeline}")
        chosen = ""
        if tool == "sclinbench" and pipeline == "default" and "chosen" in g.columns:
            counts = g["chosen"].value_counts()
            chosen = ", ".join(f"{n} {c}/{len(g)}" for n, c in counts.items())
        out.append({"case": group, "n units": len(g), "tool": name, "chosen": chosen,
                    "macro F1 mean": round(g["macro_f1"].mean(), 3),
                    "sd": round(sd, 3) if np.isfinite(sd) else "n<3",
                    "F1 - CellTypist (paired)": "" if tool == "celltypist" else f"{diff.mean():+.3f}",
                    "units >= CellTypist": "" if tool == "celltypist" else f"{int((diff >= 0).sum())}/{len(g)}",
                    "train + annotate s (median)": round(g["total_s"].median(), 2),
                    "speed-up vs CellTypist (median)": round(float(np.median(ratio)), 1),
                    "whole process s (median)": round(g["process_s"].median(), 2),
                    "units meeting the goal": "" if tool == "celltypist" else f"{int(goal.sum())}/{len(g)}"})
    return pd.DataFrame(out)


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t:.0f} s)", file=sys.stderr)
