"""Run a command (a snakemake run) and record the exact peak memory of every job it starts; stop a
job before it takes the machine down.

    python benchmarks/watch.py --out /work/scale/run_200k/watch -- \
        snakemake -s Snakefile --directory /work/scale/run_200k --cores 2 ...

Why: Snakemake's ``benchmark:`` records sample the job's RSS every 0.5 s for the first ~15 s and
then only every 30 s, so the ``max_rss`` of a long job can miss its peak, and a job that is killed
(out of memory, or by this script) leaves no record at all. This script reads every descendant
process's kernel high-water mark (``VmHWM`` in ``/proc/<pid>/status``, exact, not sampled) every
``--interval`` seconds; a process is named by the ``logs/...`` file it holds open (the workflow's
scripts log to ``logs/<rule>/<wildcards>.log``), else by its command line.

Safety: a process of the command's tree whose RSS passes ``--limit-gib`` (default 20 GiB of the
machine's 24), or the largest one when ``MemAvailable`` falls under ``--min-available-gib``
(default 1.5 GiB; other users share the machine), is stopped (SIGTERM, SIGKILL 5 s later) and the
stop is recorded. Only processes of the tree this script started are ever signalled.

Writes ``<out>.jobs.tsv`` (per process: label, pid, start, end, wall, peak VmHWM, why stopped) and
``<out>.timeline.tsv`` (every 5 s: time, load average, MemAvailable, RSS of each running job).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GiB = 2**30


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                stat = fh.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(root: int) -> list[int]:
    kids, out, stack = _children_map(), [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(kids.get(pid, []))
    return out


def _status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _label(pid: int) -> str | None:
    """The logs/... file the process holds open (rule/wildcards), else its command line."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if "/logs/" in target and target.endswith(".log"):
                return target.split("/logs/", 1)[1][: -len(".log")]
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    if not cmd:
        return None
    return "cmd: " + cmd[:160]


def _mem_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        time.sleep(0.1)
        if not Path(f"/proc/{pid}").exists():
            return
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ")[1].startswith("Z"):
                    return
        except OSError:
            return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="prefix of the .jobs.tsv and .timeline.tsv written")
    p.add_argument("--limit-gib", type=float, default=20.0, help="stop a process above this RSS (default 20)")
    p.add_argument("--min-available-gib", type=float, default=1.5,
                   help="stop the largest process when MemAvailable falls under this (default 1.5)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between readings (default 0.5)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- command ...")
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("give the command after --")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd)
    t0 = time.time()
    jobs: dict[int, dict] = {}  # pid -> record
    timeline = open(f"{out}.timeline.tsv", "w")
    timeline.write("t_s\tload1\tmem_available_gib\ttree_rss_gib\tjobs\n")
    last_line = -1e9
    try:
        while proc.poll() is None:
            now = time.time() - t0
            tree = [pid for pid in descendants(proc.pid) if pid != os.getpid()]
            alive = set()
            for pid in tree:
                try:
                    st = _status(pid)
                except OSError:
                    continue
                if "VmRSS" not in st:
                    continue
                alive.add(pid)
                rec = jobs.get(pid)
                if rec is None:
                    rec = jobs[pid] = {"label": None, "start": now, "end": now, "hwm": 0, "rss": 0, "stopped": ""}
                if rec["label"] is None or rec["label"].startswith("cmd: "):
                    lab = _label(pid)
                    if lab and (rec["label"] is None or not lab.startswith("cmd: ")):
                        rec["label"] = lab
                rec["end"] = now
                rec["hwm"] = max(rec["hwm"], st.get("VmHWM", 0))
                rec["rss"] = st["VmRSS"]
            running = [(pid, jobs[pid]) for pid in alive if pid != proc.pid]
            avail = _mem_available()
            for pid, rec in running:
                if rec["rss"] > args.limit_gib * GiB and not rec["stopped"]:
                    rec["stopped"] = f"RSS {rec['rss'] / GiB:.1f} GiB > limit {args.limit_gib} GiB at {now:.0f} s"
                    print(f"watch: stopping pid {pid} ({rec['label']}): {rec['stopped']}", file=sys.stderr, flush=True)
                    _stop(pid)
            if running and avail < args.min_available_gib * GiB:
                pid, rec = max(running, key=lambda pr: pr[1]["rss"])
                if not rec["stopped"]:
                    rec["stopped"] = (f"MemAvailable {avail / GiB:.1f} GiB < {args.min_available_gib} GiB at "
                                      f"{now:.0f} s, RSS {rec['rss'] / GiB:.1f} GiB")
                    print(f"watch: stopping pid {pid} ({rec['label']}): {rec['stopped']}", file=sys.stderr, flush=True)
                    _stop(pid)
            if now - last_line >= 5:
                last_line = now
                desc = " ".join(f"{(r['label'] or '?').replace(' ', '_')}={r['rss'] / GiB:.2f}"
                                for _, r in running if r["rss"] > 200 * 2**20)
                tree_rss = sum(jobs[pid]["rss"] for pid in alive)
                timeline.write(f"{now:.1f}\t{os.getloadavg()[0]:.2f}\t{avail / GiB:.2f}\t{tree_rss / GiB:.2f}\t{desc}\n")
                timeline.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
    finally:
        timeline.close()
        with open(f"{out}.jobs.tsv", "w") as fh:
            fh.write("label\tpid\tstart_s\tend_s\twall_s\tpeak_hwm_gib\tstopped\n")
            for pid, r in sorted(jobs.items(), key=lambda kv: kv[1]["start"]):
                if r["hwm"] < 50 * 2**20 and not r["stopped"]:
                    continue  # shells, tiny helpers
                fh.write(f"{r['label'] or '?'}\t{pid}\t{r['start']:.1f}\t{r['end']:.1f}\t{r['end'] - r['start']:.1f}\t"
                         f"{r['hwm'] / GiB:.3f}\t{r['stopped']}\n")
    print(f"watch: exit code {proc.returncode}; per-process peaks in {out}.jobs.tsv", file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
