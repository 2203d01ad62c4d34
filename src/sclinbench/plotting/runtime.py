"""Runtime and memory of the workflow's jobs, read from Snakemake's benchmark files."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from sclinbench.errors import SclinbenchError
from sclinbench.plotting.styling import (
    DOUBLE_COLUMN,
    OKABE_ITO,
    _new_figure,
    placeholder_figure,
    style,
)


def read_benchmarks(root: str | os.PathLike | Iterable[str | os.PathLike],
                    folder: str | os.PathLike = "benchmarks") -> pd.DataFrame:
    """Read Snakemake ``benchmark:`` files ``benchmarks/<rule>/<...>.tsv`` (or ``benchmarks/<rule>.tsv``).

    Parameters
    ----------
    root
        The ``benchmarks`` folder (every file in it), or the files themselves (e.g. the benchmark
        records a rule declares as input).
    folder
        For a list of files: the benchmarks folder they are under (the rule is the first part of
        the path below it).

    Returns
    -------
    Columns ``rule, job, s, max_rss`` (+ the other benchmark columns); ``-``/``NA`` become NaN.
    """
    if isinstance(root, (str, os.PathLike)):
        folder = Path(root)
        files = sorted(folder.rglob("*.tsv")) if folder.exists() else []
    else:
        folder = Path(folder)
        files = sorted(Path(f) for f in root)
    rel = [Path(os.path.relpath(f, folder)) for f in files]
    rules = [r.parts[0] if len(r.parts) > 1 else r.stem for r in rel]
    jobs = [str(Path(*r.parts[1:]).with_suffix("")) if len(r.parts) > 1 else r.stem for r in rel]
    frames = []
    for f, rule, job in zip(files, rules, jobs):
        try:
            df = pd.read_csv(f, sep="\t", na_values=["-", "NA", ""])
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
            raise SclinbenchError(f"{f}: not a Snakemake benchmark table ({exc}); delete it and "
                                  "rerun the rule") from None
        if "s" not in df.columns:
            raise SclinbenchError(f"{f}: no column 's'; expected a Snakemake benchmark file")
        frames.append(df.assign(rule=rule, job=job))
    if not frames:
        return pd.DataFrame(columns=["rule", "job", "s", "max_rss"])
    out = pd.concat(frames, ignore_index=True)
    for col in ("s", "max_rss", "max_vms", "max_uss", "max_pss", "cpu_time", "mean_load"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce")
    front = ["rule", "job", "s", "max_rss"]
    return out[front + [c for c in out.columns if c not in front]]


def runtime_memory(benchmarks: pd.DataFrame) -> Figure:
    """Wall time and peak memory (max RSS) per rule: one dot per job, a tick at the median.

    Both axes are logarithmic when the values span more than a factor 50, so a median is a mark,
    never a bar (a bar's length on a log axis means nothing).

    Parameters
    ----------
    benchmarks
        Output of :func:`read_benchmarks`.
    """
    if benchmarks is None or benchmarks.empty or benchmarks["s"].notna().sum() == 0:
        return placeholder_figure("Runtime and memory",
                                  "No benchmark files: the workflow's rules write "
                                  "benchmarks/<rule>/<job>.tsv when run by Snakemake.")
    b = benchmarks.copy()
    b["mem_mb"] = b["max_rss"] if "max_rss" in b.columns else np.nan
    order = b.groupby("rule")["s"].sum().sort_values().index.tolist()
    counts = b.groupby("rule").size()
    height = 0.9 + 0.2 * len(order)
    with style():
        fig = _new_figure(DOUBLE_COLUMN, max(height, 1.8))
        ax_t, ax_m = fig.subplots(1, 2, sharey=True)
        rng = np.random.default_rng(0)
        for i, rule in enumerate(order):
            r = b[b["rule"] == rule]
            jitter = rng.uniform(-0.18, 0.18, len(r))
            for ax, col in ((ax_t, "s"), (ax_m, "mem_mb")):
                v = r[col].to_numpy(float)
                ok = np.isfinite(v) & (v > 0)
                if not ok.any():
                    continue
                ax.scatter(v[ok], i + jitter[ok], s=6, color=OKABE_ITO["sky_blue"], zorder=2, linewidths=0)
                ax.scatter([np.median(v[ok])], [i], marker="|", s=160, linewidths=1.6, color=OKABE_ITO["blue"],
                           zorder=3)
        ax_t.set_yticks(range(len(order)), [f"{r} (n={counts[r]})" for r in order])
        ax_t.set_ylim(-0.6, len(order) - 0.4)
        for ax, col, what in ((ax_t, "s", "wall-clock time per job (s"), (ax_m, "mem_mb", "peak memory per job (max RSS, MB")):
            v = b[col].to_numpy(float)
            v = v[np.isfinite(v) & (v > 0)]
            log = v.size and v.max() / v.min() > 50
            if log:
                ax.set_xscale("log")
                # plain numbers at 1-2-5 steps instead of crowded "3x10^0" minor labels
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                ax.set_xlim(left=0)
            ax.set_xlabel(what + (", log scale)" if log else ")"))
            ax.xaxis.grid(True, linewidth=0.3, color="#DDDDDD", which="major", zorder=0)
            ax.set_axisbelow(True)
        if not b["mem_mb"].notna().any():
            ax_m.text(0.5, 0.5, "max_rss not recorded", transform=ax_m.transAxes, ha="center")
        ax_t.set_title("Runtime per rule (dots = jobs, | = median)", fontsize=7)
        ax_m.set_title("Memory per rule", fontsize=7)
    return fig
