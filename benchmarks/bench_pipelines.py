"""Performance of the product at scale: the workflow's own DAG vs the scanpy standard pipeline.

    python benchmarks/bench_pipelines.py --cells 10000 100000 1000000 --work /path/outside/git

For every size N, in one run:

1. ``make_dataset.py`` writes a local h5ad of N synthetic cells (``synthetic_cells.py``: 20,000
   genes, ~2,400 detected per cell, 15 types, 8 donors), unless it exists.
2. ``run_scale.py`` runs the real workflow on it (``scale_config.yaml``: task
   ``celltype_stratified``, 5 folds, the default pipelines) with exact per-job peaks
   (``watch.py``): standardize, split, one evaluate job per representation, score, metrics... These
   are the numbers a user gets: each job's wall time, CPU time (Snakemake's ``benchmark:`` record)
   and peak memory, and cells x folds / s of the evaluate jobs.
3. ``bench_scanpy.py`` runs the scanpy standard pipeline (normalize_total, log1p, 2,000 seurat
   HVG, scale, PCA 50, logistic regression; fitted per fold on the training cells) on the SAME
   standardized file and the same split table, in a fresh process, step by step, unless its
   estimated peak exceeds the memory available (then it says so).

It prints the per-job table, a per-size comparison (wall per fold, peak, macro F1 of the same
test cells scored with the workflow's metric), the ratios and the log-log slope of each evaluate
job's wall time over N, and writes everything as JSON (``--json``). It is a measurement script:
no test times anything.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from measure import MEMORY_HEADROOM, loadavg, machine, memory_budget_bytes  # noqa: E402

#: Workflow pipelines compared with the scanpy standard, and the evaluate job that runs each.
OURS = {"rankz_centroid": "rankz", "log1p_pca_logreg": "log1p"}
TASK = "celltype_stratified"
GiB = 2**30


def _size_name(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def macro_f1(y_true, y_pred) -> float:
    """Macro F1 over the true and predicted labels: the workflow's pooled cell-type score."""
    from sclinbench.evaluate.metrics import classification_scores

    return classification_scores(y_true, y_pred)["macro_f1"]


def h5ad_nnz(path: Path) -> tuple[int, int]:
    """(cells, stored values of X) of an h5ad, read from the file's metadata without loading X."""
    import h5py

    with h5py.File(path, "r") as f:
        X = f["X"]
        if isinstance(X, h5py.Dataset):
            return int(X.shape[0]), int(np.prod(X.shape))
        return int(X.attrs["shape"][0]), int(X["data"].shape[0])


def scanpy_peak_estimate(n_cells: int, nnz: int, train_fraction: float = 0.8, n_top_genes: int = 2000) -> float:
    """Rough peak of bench_scanpy (bytes): the float32 CSR counts (8 bytes per value) plus the
    fold's training and test copies with their normalized versions, plus the dense scaled HVG
    matrices (float32 train, float64 test) and ~0.5 GiB of libraries. Printed beside the measured
    peak so the estimate can be checked."""
    sparse = 8.0 * nnz * (1.0 + 2.0)
    dense = n_cells * n_top_genes * (4.0 * train_fraction + 8.0 * (1 - train_fraction)) * 2.0
    return 0.5 * GiB + sparse + dense


def ours_rows(run: Path) -> list[dict]:
    from job_table import job_table

    t = job_table(run)
    rows = []
    for _, r in t.iterrows():
        rows.append({"job": r["job"], "wall_s": _f(r["wall_s"]), "cpu_s": _f(r.get("cpu_s")),
                     "peak_gib": _f(r["peak_gib"]), "mem_mb": _f(r.get("mem_mb")),
                     "cells_x_folds_per_s": _f(r["cells_x_folds_per_s"]), "status": r["status"]})
    return rows


def _f(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def ours_scores(run: Path) -> dict[str, dict]:
    """Macro F1 (pooled over folds, repeat 0) and folds of each compared pipeline, from its
    predictions file."""
    from sclinbench.workflow.contracts import read_predictions

    out = {}
    for name, rep in OURS.items():
        path = run / f"results/predictions/dataset~scale/task~{TASK}/representation~{rep}.parquet"
        if not path.exists():
            continue
        p = read_predictions([path])
        p = p[(p["pipeline"] == name) & (p["repeat"] == 0)]
        out[name] = {"macro_f1": macro_f1(p["y_true"], p["y_pred"]), "folds": int(p["fold"].nunique())}
    return out


def run_size(n: int, work: Path, cores: int, scanpy_folds: int | None, limit_gib: float) -> dict:
    data = work / f"synthetic_{_size_name(n)}.h5ad"
    registry = data.with_suffix(".registry.yaml")
    if not data.exists() or not registry.exists():
        subprocess.run([sys.executable, str(HERE / "make_dataset.py"), "--cells", str(n), "--out", str(data)],
                       check=True)
    run = work / f"run_{_size_name(n)}"
    rc = subprocess.call([sys.executable, str(HERE / "run_scale.py"), "--registry", str(registry), "--run", str(run),
                          "--cores", str(cores), "--limit-gib", str(limit_gib), "--fresh-copy"])
    result = {"n_cells": n, "run": str(run), "workflow_exit_code": rc, "jobs": ours_rows(run),
              "ours": ours_scores(run)}
    std = run / "resources/standardized/scale.h5ad"
    splits = run / f"results/splits/dataset~scale/task~{TASK}.tsv.gz"
    if not (std.exists() and splits.exists()):
        result["scanpy"] = {"skipped": "the workflow did not write the standardized file and split table"}
        return result
    cells, nnz = h5ad_nnz(std)
    estimate, budget = scanpy_peak_estimate(cells, nnz), memory_budget_bytes()
    if estimate > budget:
        result["scanpy"] = {"skipped": f"estimated peak {estimate / GiB:.1f} GiB > {budget / GiB:.1f} GiB available "
                                       f"(MemAvailable minus {MEMORY_HEADROOM / GiB:.0f} GiB)",
                            "estimate_gib": estimate / GiB}
        return result
    out = work / f"scanpy_{_size_name(n)}.json"
    cmd = [sys.executable, str(HERE / "bench_scanpy.py"), "--data", str(std), "--splits", str(splits),
           "--threads", str(cores), "--json", str(out)]
    if scanpy_folds:
        cmd += ["--folds", str(scanpy_folds)]
    if subprocess.call(cmd, stdout=subprocess.DEVNULL) != 0 or not out.exists():
        result["scanpy"] = {"skipped": "bench_scanpy.py failed (see its messages above)"}
        return result
    s = json.loads(out.read_text())
    s["macro_f1"] = macro_f1(s.pop("y_true"), s.pop("y_pred"))
    s["estimate_gib"] = estimate / GiB
    result["scanpy"] = s
    return result


def comparison(results: list[dict]) -> list[dict]:
    """Per size and compared pipeline: wall per fold, peak, macro F1, ratios to scanpy."""
    rows = []
    for r in results:
        jobs = {j["job"]: j for j in r["jobs"]}
        s = r.get("scanpy", {})
        s_fold = s["wall_s"] / s["folds_run"] if "wall_s" in s else None
        for name, rep in OURS.items():
            j = jobs.get(f"evaluate/dataset~scale/task~{TASK}/representation~{rep}")
            sc = r["ours"].get(name)
            if not j or j["wall_s"] is None or not sc:
                continue
            o_fold = j["wall_s"] / sc["folds"]
            rows.append({
                "n_cells": r["n_cells"], "pipeline": name, "job_wall_s": j["wall_s"], "job_cpu_s": j["cpu_s"],
                "job_peak_gib": j["peak_gib"], "cells_x_folds_per_s": j["cells_x_folds_per_s"],
                "macro_f1": sc["macro_f1"], "scanpy_wall_per_fold_s": s_fold,
                "scanpy_peak_gib": s["peak_bytes"] / GiB if "peak_bytes" in s else None,
                "scanpy_macro_f1": s.get("macro_f1"),
                "speedup_vs_scanpy": s_fold / o_fold if s_fold else None,
                "f1_minus_scanpy": sc["macro_f1"] - s["macro_f1"] if "macro_f1" in s else None,
            })
    return rows


def slopes(rows: list[dict]) -> dict[str, float]:
    """Least-squares slope of log(evaluate wall) on log(cells), per pipeline (1 = linear)."""
    out = {}
    for name in OURS:
        pts = [(r["n_cells"], r["job_wall_s"]) for r in rows if r["pipeline"] == name and r["job_wall_s"]]
        if len(pts) >= 2 and len({n for n, _ in pts}) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            out[name] = float(np.polyfit(x, y, 1)[0])
    return out


def _num(x, fmt):
    return "" if x is None else format(x, fmt)


def format_report(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_bytes'] / GiB:.0f} GiB; cores used {doc['cores']}; "
             f"load average before {doc['load_average_before']}", ""]
    for r in doc["results"]:
        lines += [f"## {r['n_cells']:,} cells: workflow jobs ({r['run']}, exit code {r['workflow_exit_code']})", "",
                  "| job | wall s | CPU s | peak GiB | declared mem_mb | cells x folds / s | status |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for j in r["jobs"]:
            lines.append(f"| {j['job']} | {_num(j['wall_s'], '.1f')} | {_num(j['cpu_s'], '.1f')} | "
                         f"{_num(j['peak_gib'], '.2f')} | {_num(j['mem_mb'], ',.0f')} | "
                         f"{_num(j['cells_x_folds_per_s'], ',.0f')} | {j['status']} |")
        s = r.get("scanpy", {})
        lines.append("")
        if "skipped" in s:
            lines.append(f"scanpy standard: skipped: {s['skipped']}")
        else:
            lines += [f"scanpy standard ({s['folds_run']} fold(s), fresh process; peak estimate {s['estimate_gib']:.1f} GiB):", "",
                      "| step | wall s | CPU s | peak GiB |", "|---|---:|---:|---:|"]
            lines += [f"| {st['step']} | {st['time_s']:.1f} | {st['cpu_s']:.1f} | {st['peak_bytes'] / GiB:.2f} |"
                      for st in s["steps"]]
        lines.append("")
    lines += ["## Comparison (evaluate job of the workflow vs scanpy standard, per fold, same cells)", "",
              "| cells | pipeline | job wall s | peak GiB | cells x folds / s | macro F1 | scanpy s / fold | "
              "scanpy peak GiB | scanpy macro F1 | speed-up | F1 - scanpy |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in doc["comparison"]:
        lines.append(f"| {c['n_cells']:,} | {c['pipeline']} | {c['job_wall_s']:.1f} | {_num(c['job_peak_gib'], '.2f')} | "
                     f"{_num(c['cells_x_folds_per_s'], ',.0f')} | {c['macro_f1']:.3f} | "
                     f"{_num(c['scanpy_wall_per_fold_s'], '.1f')} | {_num(c['scanpy_peak_gib'], '.2f')} | "
                     f"{_num(c['scanpy_macro_f1'], '.3f')} | {_num(c['speedup_vs_scanpy'], '.1f')} | "
                     f"{_num(c['f1_minus_scanpy'], '+.3f')} |")
    lines += ["", "log-log slope of evaluate wall time over cells (1 = linear): "
              + (", ".join(f"{k} {v:.2f}" for k, v in doc["slopes"].items()) or "needs two sizes")]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--work", required=True, help="folder for data and run folders (outside git)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--scanpy-folds", type=int, default=1, help="folds of the scanpy run (default 1; 0 = all)")
    p.add_argument("--limit-gib", type=float, default=20.0, help="watch.py stops a job above this RSS")
    p.add_argument("--json", help="write the whole result here")
    args = p.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), "cores": args.cores, "load_average_before": loadavg(), "results": []}
    for n in sorted(args.cells):
        doc["results"].append(run_size(n, work, args.cores, args.scanpy_folds or None, args.limit_gib))
    doc["comparison"] = comparison(doc["results"])
    doc["slopes"] = slopes(doc["comparison"])
    doc["load_average_after"] = loadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str))
    print(format_report(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
