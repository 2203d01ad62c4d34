"""The checksum lock file: the sha256 and size each downloaded URL had the first time.

A checksum that is not pinned in the config is recorded here (TSV ``url, sha256, size, date``) on
first download (:func:`record_lock`, by :func:`sclinbench.data.download.fetch`), and every later
download of the same URL must reproduce it; :func:`forget` removes a record to re-pin a file
(``python -m sclinbench.data.download forget URL``). Readers and writers hold a file lock.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from sclinbench.errors import SclinbenchError

LOCK_COLUMNS = ("url", "sha256", "size", "date")


DEFAULT_LOCKFILE = "resources/checksums.lock.tsv"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# checksums and the lock file
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(lockfile: Path, exclusive: bool) -> Iterator:
    """Open ``lockfile`` (created if missing) holding an fcntl lock for the block."""
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with open(lockfile, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            fh.seek(0)
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _parse_lock(text: str, lockfile: Path) -> dict[str, dict]:
    records: dict[str, dict] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\n").split("\t")
        if fields[0] == "url":  # header
            continue
        if len(fields) != len(LOCK_COLUMNS):
            raise SclinbenchError(
                f"Lock file {lockfile} line {lineno} has {len(fields)} fields, expected "
                f"{len(LOCK_COLUMNS)} ({', '.join(LOCK_COLUMNS)}); fix or delete that line."
            )
        url, sha, size, date = fields
        records[url] = {"sha256": sha, "size": int(size) if size else None, "date": date, "line": lineno}
    return records


def read_lock(lockfile: str | os.PathLike) -> dict[str, dict]:
    """Read a checksum lock file into ``{url: {"sha256", "size", "date"}}`` (empty if absent)."""
    lockfile = Path(lockfile)
    if not lockfile.exists():
        return {}
    with _locked(lockfile, exclusive=False) as fh:
        return _parse_lock(fh.read(), lockfile)


def repin_advice(lockfile: str | os.PathLike, url: str, line: int | None = None) -> str:
    """How to drop the lock record of ``url`` so that the next download is recorded anew."""
    where = f"line {line} of {lockfile}" if line else f"the line of {url} in {lockfile}"
    return (
        f"re-pin it with: {shlex.quote(sys.executable)} -m sclinbench.data.download forget {shlex.quote(url)} "
        f"--lockfile {shlex.quote(str(lockfile))} (or delete {where}), then re-run"
    )


def forget(lockfile: str | os.PathLike, url: str) -> int:
    """Remove the record of ``url`` from ``lockfile`` (under the lock); return how many lines went."""
    lockfile = Path(lockfile)
    if not lockfile.exists():
        return 0
    with _locked(lockfile, exclusive=True) as fh:
        lines = fh.read().splitlines(keepends=True)
        keep = [line for line in lines if line.split("\t", 1)[0] != url or line.startswith("#")]
        removed = len(lines) - len(keep)
        if removed:
            fh.seek(0)
            fh.truncate()
            fh.writelines(keep)
            fh.flush()
            os.fsync(fh.fileno())
    return removed


def record_lock(lockfile: str | os.PathLike, url: str, sha256: str, size: int) -> None:
    """Record ``url -> sha256`` in ``lockfile`` unless present; refuse a conflicting record.

    The read-compare-append runs under an exclusive ``fcntl`` lock so concurrent jobs that
    download the same URL agree on one checksum.
    """
    lockfile = Path(lockfile)
    with _locked(lockfile, exclusive=True) as fh:
        records = _parse_lock(fh.read(), lockfile)
        known = records.get(url)
        if known is not None:
            if known["sha256"] != sha256:
                raise SclinbenchError(
                    f"{url} now has sha256 {sha256} but lock file {lockfile} recorded "
                    f"{known['sha256']} on {known['date']}: the file changed upstream (or the record "
                    f"is wrong); check it, then {repin_advice(lockfile, url, known.get('line'))}."
                )
            return
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            fh.write("\t".join(LOCK_COLUMNS) + "\n")
        date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fh.write(f"{url}\t{sha256}\t{size}\t{date}\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.info("recorded sha256 %s for %s in %s", sha256, url, lockfile)
