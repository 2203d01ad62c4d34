"""One table per workflow run: every job's wall time, peak memory, declared memory and throughput.

    python benchmarks/job_table.py /work/scale/run_200k [--watch run/watch-....jobs.tsv] [--tsv out.tsv]

Reads, in the run folder (the folder snakemake ran in):

- ``benchmarks/**/*.tsv``: Snakemake's ``benchmark:`` records (``s`` wall seconds, ``cpu_time``,
  ``max_rss`` in MiB). Snakemake samples the RSS every 0.5 s for the first ~15 s of a job and every
  30 s after that, so ``max_rss`` of a long job can be below its real peak.
- ``.snakemake/log/*.snakemake.log``: the resources each job declared (``mem_mb``, ``runtime``) as
  Snakemake printed them when it scheduled the job, and the jobs that failed (``Error in rule``).
  The latest log that mentions a job wins.
- ``watch-*.jobs.tsv`` of benchmarks/watch.py (the newest, or ``--watch``): the exact peak of each
  job's process (kernel ``VmHWM``), jobs it stopped, and the machine's load average over each job
  (from the matching ``.timeline.tsv``). Optional.
- ``results/splits/dataset~D/task~T.tsv.gz``: cells and folds of each evaluate job, for
  ``cells/s`` = cells x folds / wall seconds (the issue's throughput definition).

A job is named by its log/benchmark path without ``logs/`` / ``benchmarks/`` and the suffix, e.g.
``evaluate/dataset~scale/task~celltype_stratified/representation~rankz``.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from pathlib import Path

import pandas as pd

GiB = 2**30


def _job_of(path: str, prefix: str) -> str:
    path = path.strip()
    if path.startswith(prefix + "/"):
        path = path[len(prefix) + 1:]
    return re.sub(r"\.(tsv|log)$", "", path)


def read_benchmarks(run: Path) -> pd.DataFrame:
    rows = []
    for f in sorted((run / "benchmarks").rglob("*.tsv")):
        df = pd.read_csv(f, sep="\t", na_values=["-", "NA", ""])
        if "s" not in df.columns or df.empty:
            continue
        last = df.iloc[-1]  # one row per run of the job (repeats: the last)
        rows.append({"job": _job_of(str(f.relative_to(run)), "benchmarks"), "wall_s": float(last["s"]),
                     "cpu_s": float(last.get("cpu_time", float("nan"))),
                     "snakemake_max_rss_gib": float(last.get("max_rss", float("nan"))) * 2**20 / GiB,
                     "benchmark_mtime": f.stat().st_mtime})
    return pd.DataFrame(rows)


_RESOURCE = re.compile(r"(\w+)=([^,]+)")


def _log_blocks(text: str):
    """The job blocks of a snakemake log: ``rule X:`` (scheduled) and ``Error in rule X:`` (failed),
    each with its indented ``key: value`` lines."""
    block = None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        err = re.match(r"^Error in rule (\w+):$", line)
        if m or err:
            if block:
                yield block
            block = {"rule": (m or err).group(1), "failed": bool(err)}
        elif block is not None and line.startswith("    "):
            key, _, value = line.strip().partition(": ")
            if key in ("log", "benchmark"):
                block[key] = value.split(",")[0].split(" (")[0].strip()  # "(check log file(s) ...)"
            elif key == "resources":
                block.update({k: v.strip() for k, v in _RESOURCE.findall(value)})
        elif block is not None and line.strip():
            yield block
            block = None
    if block:
        yield block


def read_declared(run: Path) -> pd.DataFrame:
    """Per job: rule, declared mem_mb / runtime, and whether its last attempt failed."""
    jobs: dict[str, dict] = {}
    for log in sorted(glob.glob(str(run / ".snakemake" / "log" / "*.snakemake.log"))):
        for block in _log_blocks(Path(log).read_text(errors="replace")):
            if block["rule"] == "all":
                continue
            if block.get("benchmark"):
                name = _job_of(block["benchmark"], "benchmarks")
            elif block.get("log"):
                name = _job_of(block["log"], "logs")
            else:
                continue
            rec = jobs.setdefault(name, {"job": name})
            if block["failed"]:
                rec["failed_in"] = Path(log).name
            else:  # (re)scheduled: a later failure of this attempt sets failed_in again
                rec.update({"rule": block["rule"], "mem_mb": block.get("mem_mb"),
                            "runtime_min": block.get("runtime"), "failed_in": ""})
    out = pd.DataFrame(list(jobs.values()))
    for col in ("mem_mb", "runtime_min"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce")
    return out


def read_watch(run: Path, watch: str | None) -> pd.DataFrame:
    files = [watch] if watch else sorted(glob.glob(str(run / "watch-*.jobs.tsv")))
    frames = []
    for f in files:
        if not f or not os.path.exists(f):
            continue
        w = pd.read_csv(f, sep="\t", keep_default_na=False)
        w = w[~w["label"].str.startswith("cmd: ")]  # snakemake itself, helpers
        timeline = f.replace(".jobs.tsv", ".timeline.tsv")
        loads = []
        if os.path.exists(timeline):
            tl = pd.read_csv(timeline, sep="\t", usecols=[0, 1])
            for _, r in w.iterrows():
                sel = tl[(tl["t_s"] >= r["start_s"]) & (tl["t_s"] <= r["end_s"] + 5)]
                loads.append(sel["load1"].mean() if len(sel) else float("nan"))
        else:
            loads = [float("nan")] * len(w)
        frames.append(pd.DataFrame({"job": w["label"], "watch_wall_s": w["wall_s"], "peak_hwm_gib": w["peak_hwm_gib"],
                                    "stopped": w["stopped"], "load1": loads}))
    if not frames:
        return pd.DataFrame(columns=["job", "watch_wall_s", "peak_hwm_gib", "stopped", "load1"])
    # the latest watch file that saw a job wins
    return pd.concat(frames, ignore_index=True).drop_duplicates("job", keep="last")


def _error_line(log: Path) -> str:
    """': <the last error line of the job's log>' (sclinbench's one-line errors), or ''."""
    if not log.exists():
        return ""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if " ERROR " in ln or "Error" in ln]
    if not lines:
        return ""
    msg = lines[-1].split(" ERROR ", 1)[-1]
    return ": " + (msg if len(msg) <= 220 else msg[:217] + "...")


def split_sizes(run: Path, job: str) -> tuple[int, int] | None:
    m = re.match(r"evaluate/dataset~(\w+)/task~(\w+)/", job)
    if not m:
        return None
    path = run / "results" / "splits" / f"dataset~{m.group(1)}" / f"task~{m.group(2)}.tsv.gz"
    if not path.exists():
        return None
    s = pd.read_csv(path, sep="\t", usecols=["cell_id", "fold"], dtype={"cell_id": str})
    return s["cell_id"].nunique(), s["fold"].nunique()


def job_table(run: str | os.PathLike, watch: str | None = None) -> pd.DataFrame:
    run = Path(run)
    b, d, w = read_benchmarks(run), read_declared(run), read_watch(run, watch)
    t = pd.DataFrame({"job": sorted(set(b.get("job", [])) | set(d.get("job", [])) | set(w.get("job", [])))})
    for part in (b, d, w):
        if not part.empty:
            t = t.merge(part, on="job", how="left")
    for col in ("wall_s", "watch_wall_s", "snakemake_max_rss_gib", "peak_hwm_gib", "mem_mb", "runtime_min", "load1",
                "cpu_s"):
        if col not in t.columns:
            t[col] = float("nan")
    for col in ("stopped", "failed_in", "rule"):
        if col not in t.columns:
            t[col] = ""
    t["stopped"] = t["stopped"].fillna("")
    t["failed_in"] = t["failed_in"].fillna("")
    status = []
    for _, r in t.iterrows():
        if r["stopped"]:
            status.append("stopped by watch: " + r["stopped"])
        elif r["failed_in"]:
            status.append("FAILED" + _error_line(run / "logs" / f"{r['job']}.log"))
        elif pd.notna(r["wall_s"]) or r.get("rule") == "provenance":
            status.append("ok")
        else:
            status.append("not finished")
    t["status"] = status
    t["wall_s"] = t["wall_s"].where(t["wall_s"].notna(), t["watch_wall_s"])  # killed/no-benchmark jobs
    t["peak_gib"] = t[["snakemake_max_rss_gib", "peak_hwm_gib"]].max(axis=1)
    t["declared_over_peak"] = t["mem_mb"] * 1e6 / (t["peak_gib"] * GiB)
    rates = []
    for _, r in t.iterrows():
        size = split_sizes(run, r["job"]) if r["job"].startswith("evaluate/") else None
        rates.append(size[0] * size[1] / r["wall_s"] if size and r["status"] == "ok" and r["wall_s"] > 0 else float("nan"))
    t["cells_x_folds_per_s"] = rates
    order = {"standardize": 0, "split": 1, "evaluate": 2, "score": 3, "metrics": 4, "figures": 5, "provenance": 6, "tables": 7}
    t["_o"] = [order.get(j.split("/")[0], 9) for j in t["job"]]
    return t.sort_values(["_o", "job"]).drop(columns="_o").reset_index(drop=True)


def format_table(t: pd.DataFrame) -> str:
    def num(x, fmt):
        return "" if pd.isna(x) else format(x, fmt)

    lines = ["| job | wall s | peak RSS GiB (exact, watch) | max_rss GiB (snakemake) | declared mem_mb | declared / peak "
             "| cells x folds / s | load avg | status |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for _, r in t.iterrows():
        lines.append(f"| {r['job']} | {num(r['wall_s'], ',.1f')} | {num(r['peak_hwm_gib'], '.2f')} | "
                     f"{num(r['snakemake_max_rss_gib'], '.2f')} | {num(r['mem_mb'], ',.0f')} | "
                     f"{num(r['declared_over_peak'], ',.1f')} | {num(r['cells_x_folds_per_s'], ',.0f')} | "
                     f"{num(r['load1'], '.2f')} | {r['status']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="the folder snakemake ran in")
    p.add_argument("--watch", help="benchmarks/watch.py jobs file (default: every watch-*.jobs.tsv, newest wins)")
    p.add_argument("--tsv", help="also write the table as TSV")
    args = p.parse_args(argv)
    if not Path(args.run).is_dir():
        print(f"job_table: {args.run} is not a folder", file=sys.stderr)
        return 2
    t = job_table(args.run, args.watch)
    if t.empty:
        print(f"job_table: no benchmark records, snakemake logs or watch files in {args.run}", file=sys.stderr)
        return 1
    print(format_table(t))
    for f in [args.watch] if args.watch else sorted(glob.glob(str(Path(args.run) / "watch-*.jobs.tsv"))):
        w = pd.read_csv(f, sep="\t", keep_default_na=False)
        sm = w[w["label"].str.contains("snakemake")]
        if len(sm):
            print(f"\nwhole run ({Path(f).name}): {sm['wall_s'].iloc[0]:,.1f} s wall (the snakemake process)")
    print("\npeak RSS: kernel VmHWM of the job's process (benchmarks/watch.py); max_rss: Snakemake's sampled record "
          "(every 30 s after the first 15 s). declared / peak uses the larger of the two. cells x folds / s: "
          "evaluate jobs, cells and folds of the task's split table over the job's wall time. load avg: the "
          "machine's 1-min load average over the job (2 cores).")
    if args.tsv:
        t.to_csv(args.tsv, sep="\t", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
