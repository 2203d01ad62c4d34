"""Memory (``mem_mb``) and runtime (minutes) of every workflow step, from measured records.

One model per rule, every constant here (rules/*.smk only name the rule)::

    peak MiB = base + (per_nnz * stored counts + per_cell * cells) / 2**20 + per_input_mb * other MB
    mem_mb   = ceil(peak * HEADROOM) * attempt
    runtime  = ceil(max(floor, seconds_per_nnz * stored counts / 60) * attempt)   (minutes)

``stored counts`` and ``cells`` are read from the h5ad inputs' metadata (the CSR matrix's
``shape`` attribute and the length of ``X/data``), never by loading a matrix; other inputs count
by their size in MB. ``attempt`` (1, 2, 3 with ``retries: 2`` in profiles/slurm) asks a retried
job for more.

Where the numbers come from (Snakemake's ``benchmarks/<rule>/...tsv`` ``max_rss`` of the embedded
default run, and the exact peaks of benchmarks/run_scale.py on 10k, 100k, 200k and 1M synthetic
cells, 20,000 genes, ~2,400 detected genes per cell): see the comment of each model.
:data:`EVALUATE_BYTES_PER_NNZ` is the one number to recalibrate when the evaluate step changes.

:func:`check_fits` stops a dataset whose estimated peak exceeds the memory available before
anything loads it (``max_cells:`` in the registry entry subsamples it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sclinbench.errors import SclinbenchError

MIB = 1 << 20
#: declared memory / modelled peak: the models fit the measured peaks; this covers the spread
#: between runs, library versions and platforms
HEADROOM = 1.25

#: Bytes per stored count of the evaluate job (the largest job of a dataset). Measured exactly
#: (benchmarks/bench_evaluate.py, ru_maxrss; the rule's watch.py peaks agree) with the shared
#: stateless representations and row views of issue 10, ~2,400 stored counts per cell: rankz job
#: 3.51 / 6.71 GiB and log1p_pca_logreg job 4.18 / 7.56 GiB at 100k / 200k cells (239M / 478M
#: stored counts): the counts (8 B), the shared representation (4 B) and a fold's copies of the
#: selected genes. 16 B + 700 MiB + 2,000 B per cell covered them (and 1.0 GiB at 10k). The paper's exact
#: pipeline (fitted steps on all 20k genes: a fold's copy of its training rows of the representation,
#: the implicit z-score PCA) peaks at 8.52 GiB on 129k cells / 308M stored counts read whole (issue 20,
#: benchmarks/paper_scale_config.yaml), which needs 21 B; 7.37 GiB once the counts are released (no fold reads
#: them), kept at 21 B for jobs that also hold an HVG pipeline. Recalibrate here (one number) when evaluate changes.
EVALUATE_BYTES_PER_NNZ = 21.0
#: Bytes per cell of the evaluate job beside the counts (obs, split table, predictions). 2,000 B
#: covered the scale runs (one test set per cell, ~2,400 counts per cell) but not the paper run: in
#: the 100% rehearsal (benchmarks/paper_rehearsal.py --fraction 1, ~750 counts per cell) 18 of 150
#: evaluate jobs peaked above their declaration (at most by 38%: the spermatogenesis cross-species
#: rankz job, 79k cells predicted ~57 times each, 3.11 GiB against 2,422 MB). 20,000 B covers every
#: one of them by 7% or more (docs/performance.md).
EVALUATE_BYTES_PER_CELL = 20000.0
#: Datasets with at least this many stored counts (~40k cells of ~2,400 genes) are evaluated in
#: blocks of cells read from the file (:mod:`sclinbench.evaluate.engine`, :class:`~sclinbench.evaluate.blocks.FileBlocks`) instead of whole: at 200k cells
#: as fast at half the memory (rankz job 64 s / 3.5 GiB instead of 62 s / 6.7 GiB, log1p 104 s /
#: 3.7 GiB instead of 109 s / 7.6 GiB), at 1M cells the only way to fit (the counts take 19 GB).
STREAM_FROM_NNZ = 100_000_000
#: The streamed evaluate job (:data:`MODELS` ``"evaluate_streamed"``).
STREAMED_BASE_MB = 2700.0
STREAMED_BYTES_PER_NNZ = 4.0
STREAMED_BYTES_PER_CELL = 3000.0
#: The streamed evaluation holds the blocks' representation between its first and last pass when
#: it takes at most this much (8 B per stored count + 16 B per cell; 200k cells of ~2,400 genes:
#: 3.6 GiB); above, the last pass reads the file again and recomputes it.
STREAMED_HOLD_BYTES = 4 << 30
STREAMED_HELD_BYTES_PER_NNZ = 8.0  # float32 value + int32 index of the representation
STREAMED_HELD_BYTES_PER_CELL = 16.0  # the offset and the row pointer


def streamed_held_bytes(nnz: int, cells: int, n_representations: int = 1) -> float:
    """Bytes of the blocks' representations that the streamed evaluation holds between passes."""
    return n_representations * (STREAMED_HELD_BYTES_PER_NNZ * nnz + STREAMED_HELD_BYTES_PER_CELL * cells)


@dataclass(frozen=True)
class Model:
    """Peak memory and runtime of one rule as a function of its inputs."""

    base_mb: float  # the process (Python, scanpy/sklearn imports) with a tiny input
    per_nnz: float = 0.0  # bytes per stored count of the h5ad inputs
    per_cell: float = 0.0  # bytes per cell of the h5ad inputs
    per_input_mb: float = 0.0  # MB per MB of the other inputs
    runtime_floor: float = 10.0  # minutes
    seconds_per_nnz: float = 0.0  # wall seconds per stored count (x3 margin included)
    holds_representation: bool = False  # the streamed evaluation: streamed_held_bytes up to STREAMED_HOLD_BYTES

    def peak_mb(self, nnz: int = 0, cells: int = 0, other_mb: float = 0.0) -> float:
        """Modelled peak (MiB) of the job."""
        held = streamed_held_bytes(nnz, cells) if self.holds_representation else 0.0
        held = held if held <= STREAMED_HOLD_BYTES else 0.0  # above the cap it is recomputed, not held
        return (self.base_mb + (self.per_nnz * nnz + self.per_cell * cells + held) / MIB
                + self.per_input_mb * other_mb)

    def mem_mb(self, nnz: int = 0, cells: int = 0, other_mb: float = 0.0, attempt: int = 1) -> int:
        return int(math.ceil(self.peak_mb(nnz, cells, other_mb) * HEADROOM)) * int(attempt)

    def runtime(self, nnz: int = 0, attempt: int = 1) -> int:
        return int(math.ceil(max(self.runtime_floor, self.seconds_per_nnz * nnz / 60) * attempt))


# Default run (snakemake --cores 2, 2026-12-01): max_rss of every job 147-517 MB. Scale runs:
# split 0.20 / 0.25 / 0.34 GiB at 10k / 100k / 200k cells (obs only); score 0.22 / 0.70 GiB at
# 10k / 100k cells (5 folds; inputs 11 / 108 MB of predictions); standardize streamed
# 0.56 GiB at 200k, in memory (bundled, synthetic, several files, 10x/mtx) 10.9 GiB at 200k
# (478M stored counts: ~22 B each), the embedded atlas 0.16 GiB exact (benchmarks/watch.py; its
# 1-s job's Snakemake max_rss reads 114-140 MB); evaluate: EVALUATE_BYTES_PER_NNZ.
MODELS: dict[str, Model] = {
    "synthesize": Model(base_mb=300, runtime_floor=15),
    # streamed single h5ad: one block + per-cell arrays + obs; 200k: 30.8 s, 1M: see the note
    "standardize": Model(base_mb=420, per_cell=1500, runtime_floor=15, seconds_per_nnz=3 * 1.0e-7),
    # base: the bundled pbmc68k (no input file) peaks at 343-403 MB (Snakemake max_rss, 2026-12-07)
    "standardize_in_memory": Model(base_mb=360, per_nnz=24, per_cell=1500, per_input_mb=6,
                                   runtime_floor=15, seconds_per_nnz=3 * 3.0e-7),
    "split": Model(base_mb=300, per_cell=800, runtime_floor=10),
    "evaluate": Model(base_mb=700, per_nnz=EVALUATE_BYTES_PER_NNZ, per_cell=EVALUATE_BYTES_PER_CELL,
                      runtime_floor=15, seconds_per_nnz=3 * 1.4e-6),
    # from STREAM_FROM_NNZ stored counts (sclinbench.evaluate.engine on FileBlocks): one block of counts and its
    # representation (~2 GiB), arrays per cell and fold, predictions; with HVG the selected genes of
    # all cells and a fold's copies of them (per_nnz). Measured at 1M cells: see the note.
    "evaluate_streamed": Model(base_mb=STREAMED_BASE_MB, per_nnz=STREAMED_BYTES_PER_NNZ,
                               per_cell=STREAMED_BYTES_PER_CELL, runtime_floor=15,
                               seconds_per_nnz=3 * 1.4e-6, holds_representation=True),
    "annotate": Model(base_mb=420, per_nnz=EVALUATE_BYTES_PER_NNZ, per_cell=EVALUATE_BYTES_PER_CELL,
                      runtime_floor=15, seconds_per_nnz=3 * 1.4e-6),
    # per MB of Parquet predictions (read back as strings): 200k cells x 5 folds, 181 MiB of
    # inputs, peak 1.88 GiB (2026-12-07; with TSV.gz inputs 5 MB per MB covered it)
    "score": Model(base_mb=300, per_input_mb=12, runtime_floor=10),
    "metrics": Model(base_mb=300, per_input_mb=10, runtime_floor=10),
    "tables": Model(base_mb=300, per_input_mb=10, runtime_floor=15),
    "figures": Model(base_mb=420, per_input_mb=10, runtime_floor=15),
    "provenance": Model(base_mb=300, runtime_floor=10),
}


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(c for c in p.rglob("*") if c.is_file())
        elif p.exists():
            out.append(p)
    return out


def input_size(paths: Iterable[str | os.PathLike]) -> tuple[int, int, float, bool]:
    """``(stored counts, cells, MB of other inputs, every h5ad streamable)`` of a job's inputs.

    h5ad files with a CSR ``X`` count by their metadata (cells, stored values); every other file
    (and an h5ad whose ``X`` is dense or CSC) by its size in MB.
    """
    from sclinbench.data.h5ad import h5ad_shape

    nnz = cells = 0
    other = 0.0
    streamable = True
    for path in _files(paths):
        shape = None
        if path.suffix == ".h5ad":
            try:
                shape = h5ad_shape(path)
            except OSError:
                shape = None
        if shape is None:
            other += path.stat().st_size / 1e6
            streamable = streamable and path.suffix != ".h5ad"
        else:
            cells += shape[0]
            nnz += shape[2]
    return nnz, cells, other, streamable


def standardize_model(paths: list[str], fmt: str) -> str:
    """Which standardize model applies: streamed for one h5ad with CSR counts, else in memory."""
    if len(paths) == 1 and fmt == "h5ad" and Path(paths[0]).suffix == ".h5ad":
        from sclinbench.data.h5ad import h5ad_shape

        try:
            if h5ad_shape(paths[0]) is not None:
                return "standardize"
        except OSError:
            pass
    return "standardize_in_memory"


def evaluate_model(nnz: int, streamable: bool = True) -> str:
    """The model of an evaluate job on a dataset of ``nnz`` stored counts: streamed from
    :data:`STREAM_FROM_NNZ` when its pipelines can be (``streamable``:
    :func:`sclinbench.evaluate.engine.why_not_streamed` is ``None``), else in memory."""
    return "evaluate_streamed" if streamable and nnz >= STREAM_FROM_NNZ else "evaluate"


def _model(rule: str, nnz: int, streamable: bool = True) -> Model:
    return MODELS[evaluate_model(nnz, streamable) if rule == "evaluate" else rule]


def job_mem_mb(rule: str, paths: Iterable[str | os.PathLike], attempt: int = 1, streamable: bool = True) -> int:
    nnz, cells, other, _ = input_size(paths)
    return _model(rule, nnz, streamable).mem_mb(nnz, cells, other, attempt)


#: Evaluate jobs with at least this many stored counts take every core they are given (numba
#: kernels, the BLAS of the PCA covariance); smaller ones take one, so that they run side by side.
PARALLEL_FROM_NNZ = 50_000_000
#: Threads asked for by a large job; Snakemake caps it at --cores (or the node's CPUs).
MAX_THREADS = 64


def job_threads(rule: str, paths: Iterable[str | os.PathLike]) -> int:
    """Threads of a job: :data:`MAX_THREADS` for an evaluate / annotate job on a large dataset, else 1."""
    if rule not in ("evaluate", "annotate"):
        return 1
    nnz, _, _, _ = input_size(paths)
    return MAX_THREADS if nnz >= PARALLEL_FROM_NNZ else 1


def job_runtime(rule: str, paths: Iterable[str | os.PathLike], attempt: int = 1, streamable: bool = True) -> int:
    nnz, _, _, _ = input_size(paths)
    return _model(rule, nnz, streamable).runtime(nnz, attempt)


# --------------------------------------------------------------------------------------------
# will it fit? (before anything is loaded)
# --------------------------------------------------------------------------------------------


def machine_memory_mb() -> float | None:
    """Memory of this machine (MiB): MemTotal, or the cgroup's limit when smaller."""
    total = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) / 1024
                    break
    except OSError:
        return None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and total is not None:
            total = min(total, int(text) / MIB)
    return total


def dataset_peak(cells: int, nnz: int, streamable: bool = True) -> tuple[str, float]:
    """The dataset's heaviest job and its modelled peak (MiB) for ``cells`` x ``nnz``
    (``streamable``: every evaluate job of the dataset can read it in blocks)."""
    peaks = {rule: _model(rule, nnz, streamable).peak_mb(nnz, cells)
             for rule in ("evaluate", "standardize", "split")}
    rule = max(peaks, key=peaks.get)
    return rule, peaks[rule]


def cells_that_fit(cells: int, nnz: int, limit_mb: float, streamable: bool = True) -> int:
    """The most cells (same stored counts per cell) whose modelled peak x HEADROOM fits in
    ``limit_mb``, rounded down to a thousand (at least 1,000)."""
    per_cell_nnz = nnz / max(cells, 1)
    # the subsample may fall below STREAM_FROM_NNZ: the most cells read whole, then the streamed range
    whole = int((STREAM_FROM_NNZ - 1) // per_cell_nnz) if per_cell_nnz and streamable else cells
    fits = []
    for name, lo, hi in (("evaluate", 1, whole), ("evaluate_streamed", whole + 1, cells)):
        model = MODELS[name]
        n = (limit_mb / HEADROOM - model.base_mb) / ((model.per_nnz * per_cell_nnz + model.per_cell) / MIB)
        n = int(min(n, hi, cells) // 1000) * 1000
        if n >= lo:
            fits.append(n)
    return max([1000, *fits])


def check_fits(name: str, cells: int, nnz: int, limit_mb: float | None, limit_source: str,
               where: str = "", max_cells: int | None = None, streamable: bool = True) -> None:
    """Stop, with a one-line message, a dataset whose heaviest job would not fit.

    Parameters
    ----------
    name
        Registry entry.
    cells, nnz
        Cells and stored counts of its raw file(s), from their metadata.
    limit_mb
        Memory available to one job (MiB): ``--resources mem_mb`` or the machine's memory;
        ``None`` = unknown (nothing checked).
    limit_source
        Names the limit in the message (e.g. ``"--resources mem_mb=8000"``).
    where
        The file(s), for the message.
    max_cells
        The entry's ``max_cells:`` (the estimate uses the subsampled size).
    streamable
        Every evaluate job of the dataset can read it in blocks (:func:`evaluate_model`).

    Raises
    ------
    SclinbenchError
        Estimated peak x :data:`HEADROOM` above ``limit_mb``.
    """
    if not limit_mb or not cells:
        return
    if max_cells and max_cells < cells:
        nnz = int(nnz * max_cells / cells)
        cells = int(max_cells)
    rule, peak = dataset_peak(cells, nnz, streamable)
    need = peak * HEADROOM
    if need <= limit_mb:
        return
    fit = cells_that_fit(cells, nnz, limit_mb, streamable)
    raise SclinbenchError(
        f"dataset '{name}'{f' ({where})' if where else ''}: {cells:,} cells with {nnz:,} stored counts need "
        f"an estimated {need / 1024:.1f} GiB in its {rule} jobs, more than the {limit_mb / 1024:.1f} GiB "
        f"available ({limit_source}); nothing was loaded. Run it on a machine with more memory, give more "
        f"with --resources mem_mb={int(math.ceil(need))}, or subsample it: max_cells: {fit} in its registry "
        f"entry (seeded, stratified by cell type)."
    )


def raw_shape(paths: Iterable[str | os.PathLike], counts: str = "X") -> tuple[int, int] | None:
    """``(cells, stored counts)`` summed over h5ad files with CSR counts, from their metadata;
    ``None`` when one of them is not such a file (its size is then unknown before reading)."""
    from sclinbench.data.h5ad import h5ad_shape

    cells = nnz = 0
    for path in paths:
        if Path(path).suffix != ".h5ad" or not Path(path).is_file():
            return None
        try:
            shape = h5ad_shape(path, counts)
        except OSError:
            return None
        if shape is None:
            return None
        cells += shape[0]
        nnz += shape[2]
    return cells, nnz
