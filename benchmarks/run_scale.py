"""Run one local h5ad through the real workflow (benchmarks/scale_config.yaml), watched, then print
the job table.

    python benchmarks/run_scale.py --registry /work/scale/synthetic_200k.registry.yaml \
        --run /work/scale/run_200k --cores 2

The workflow is run inside a copy of itself in ``--run`` (Snakefile, rules, scripts, config, src,
envs, report, profiles; what tests/conftest.py copy_workflow copies), so a run of many hours
measures the code as it was when it started, whatever happens to the checkout meanwhile
(``snakemake -s <repo>/Snakefile --directory <run>`` would work too). The copy is made once; a
later call reuses it (``--fresh-copy`` replaces the code, keeping results).

The run goes through benchmarks/watch.py (exact per-job peak memory; a job above ``--limit-gib``
is stopped before the kernel's OOM killer picks a process), then benchmarks/job_table.py prints the
table. Exit code: snakemake's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKFLOW_PARTS = ["Snakefile", "rules", "scripts", "config", "src", "envs", "report", "profiles"]


def copy_workflow(dest: Path, fresh: bool = False) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src, dst = REPO / part, dest / part
        if dst.exists() and not fresh:
            continue
        if dst.is_dir():
            shutil.rmtree(dst)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dst)
    (dest / "benchmarks").mkdir(exist_ok=True)
    for f in HERE.glob("*.yaml"):  # scale_config.yaml, scale_registry.yaml (snakemake writes *.tsv here)
        shutil.copy2(f, dest / "benchmarks" / f.name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", help="registry snippet written by make_dataset.py (<file>.registry.yaml); "
                                      "default: benchmarks/scale_registry.yaml (data/scale.h5ad in --run)")
    p.add_argument("--run", required=True, help="run folder (a copy of the workflow is made there)")
    p.add_argument("--config", dest="configs", nargs="+", default=["benchmarks/scale_config.yaml"],
                   help="config files over config/config.yaml, relative to the repository (default "
                        "benchmarks/scale_config.yaml; the paper's pipeline: benchmarks/paper_scale_config.yaml, "
                        "which adds config/paper.yaml itself)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--limit-gib", type=float, default=20.0, help="stop a job above this RSS (default 20)")
    p.add_argument("--fresh-copy", action="store_true", help="replace the workflow code in --run")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="-- extra snakemake arguments")
    args = p.parse_args(argv)
    run = Path(args.run).resolve()
    copy_workflow(run, fresh=args.fresh_copy)
    snakemake = Path(sys.executable).with_name("snakemake")
    extra = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    # targets / extra options first: --configfile and --config take every value that follows them
    configs = [c for c in args.configs]
    if any(Path(c).name == "paper_scale_config.yaml" for c in configs) and "config/paper.yaml" not in configs:
        configs.insert(0, "config/paper.yaml")  # it declares the paper's pipelines
    cmd = [str(snakemake), *extra, "--cores", str(args.cores), "--configfile", "config/config.yaml", *configs]
    if args.registry:
        cmd += ["--config", f"registry={Path(args.registry).resolve()}"]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    print(f"run_scale: in {run}: {' '.join(cmd)}  (load average {os.getloadavg()[0]:.2f})", flush=True)
    rc = subprocess.call([sys.executable, str(HERE / "watch.py"), "--out", str(run / f"watch-{stamp}"),
                          "--limit-gib", str(args.limit_gib), "--", *cmd], cwd=run)
    print(f"run_scale: snakemake exit code {rc} (load average {os.getloadavg()[0]:.2f})", flush=True)
    subprocess.call([sys.executable, str(HERE / "job_table.py"), str(run)])  # every watch file, newest wins
    return rc


if __name__ == "__main__":
    sys.exit(main())
