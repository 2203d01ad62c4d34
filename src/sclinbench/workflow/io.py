"""Small I/O helpers shared by the stages: atomic writes, checksums, logging, script entry points."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sclinbench.errors import SclinbenchError

log = logging.getLogger("sclinbench")
#: Third-party loggers kept at WARNING in the job logs (matplotlib's PDF font subsetting logs
#: hundreds of INFO lines per figure).
QUIET_LOGGERS = ("fontTools", "matplotlib")


def _temp_pattern(name: str) -> re.Pattern:
    # tempfile.mkstemp(prefix=".<name>.", suffix=".part"): 8 characters of [a-z0-9_] in between
    return re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.part")


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporaries that :func:`atomic_path` left next to ``path`` when a run was killed.

    Only this output's own temporaries match (``.<name>.<8 characters>.part``); one output has one
    writer at a time (the job that is about to write it), so none of them is in use.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = _temp_pattern(path.name)
    removed = []
    for child in path.parent.iterdir():
        if pattern.fullmatch(child.name) and child.is_file():
            with contextlib.suppress(FileNotFoundError):
                child.unlink()
                removed.append(child)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run: %s", len(removed),
                 ", ".join(p.name for p in removed))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    A killed or failing step therefore never leaves a half-written output behind; the hidden
    temporaries a killed step leaves (SIGKILL, out of memory) are removed when the step next runs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; outputs should be as readable as any file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks of ``chunk`` bytes.

    A folder (a Matrix Market directory) hashes its files in name order: each file's name and
    sha256 in turn.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(child.name.encode())
            digest.update(sha256_file(child, chunk).encode())
        return digest.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of a text (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()


def write_table(df, path: str | os.PathLike, **kwargs) -> None:
    """Write a TSV (gzip if the name ends in .gz) atomically.

    gzip at level 1: a million-row predictions table spends half its write time compressing at
    level 9 for files ~15% smaller; ``mtime=0`` keeps the bytes independent of the write time.
    """
    path = Path(path)
    compression = {"method": "gzip", "compresslevel": 1, "mtime": 0} if path.suffix == ".gz" else None
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, compression=compression, **kwargs)


#: matrices with at least this many stored values are written uncompressed: gzip of a multi-GB
#: counts matrix dominates the write time of the standardize step and saves little
COMPRESS_BELOW_NNZ = 1 << 24


def choose_compression(nnz: int) -> str | None:
    """``"gzip"`` for a matrix of fewer than :data:`COMPRESS_BELOW_NNZ` stored values, else None."""
    return "gzip" if nnz < COMPRESS_BELOW_NNZ else None


def _stored(X) -> int:
    if X is None:
        return 0
    nnz = getattr(X, "nnz", None)
    return int(nnz) if nnz is not None else int(getattr(X, "size", 0))


def write_h5ad(adata, path: str | os.PathLike) -> None:
    """Write an AnnData atomically: gzip-compressed unless its X is large (:func:`choose_compression`)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression=choose_compression(_stored(adata.X)))


def setup_logging(logfile: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log to ``logfile`` (truncated) at ``level`` and to stderr.

    With a log file (a workflow job), stderr -- the console of the snakemake run -- gets warnings
    and errors only: the job record and progress lines belong in the job's log. Without one,
    stderr gets everything at ``level``.
    """
    console = logging.StreamHandler(sys.stderr)
    if logfile:
        console.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [console]
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    for name in QUIET_LOGGERS:  # libraries whose INFO lines say nothing about the step
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


@contextlib.contextmanager
def script_errors(logfile: str | os.PathLike | None = None) -> Iterator[None]:
    """Run a workflow step; turn a :class:`SclinbenchError` into one line and exit code 1.

    Unexpected exceptions keep their traceback (that is a bug to report, not a user error); it
    is written to the log file too, so the log of a failed job is never empty.
    """
    setup_logging(logfile)
    from sclinbench.workflow.records import log_job

    log_job(log)  # the code this job runs with, for results/provenance.json
    try:
        yield
    except SclinbenchError as exc:
        log.error("%s", exc)
        print(f"sclinbench error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        if logfile:  # the traceback also goes to stderr when the exception propagates
            import traceback

            for handler in logging.getLogger().handlers:
                handler.flush()
            with open(logfile, "a") as fh:
                fh.write("unexpected error (a bug in sclinbench, or an input it does not check yet: please "
                         "report it with this log)\n" + traceback.format_exc())
        raise


def limit_threads(n: int):
    """Context manager: BLAS / OpenMP pools (threadpoolctl) and numba's kernels use at most ``n``
    threads, the job's declared ``threads``."""
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    return threadpool_limits(int(n))
