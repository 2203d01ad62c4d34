"""Resumable, verified downloads with the standard library only.

:func:`fetch` streams a URL to ``<dest>.part``, resumes an interrupted transfer with an HTTP
``Range`` request, retries transient failures with exponential backoff, checks size and sha256
and only then renames the file onto ``dest``. A checksum that is not pinned in the config is
recorded in a lock file (TSV ``url, sha256, size, date``) on first download, and every later
download of the same URL must reproduce it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import http.client
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)

USER_AGENT = "sclinbench-fetch/0.1 (+https://github.com/; python-urllib)"
LOCK_COLUMNS = ("url", "sha256", "size", "date")

#: HTTP status codes worth retrying (timeouts, throttling, server errors).
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` delivered.

    Attributes
    ----------
    path
        The verified file.
    sha256
        Its sha256 (hex).
    size
        Its size in bytes.
    downloaded
        False when ``dest`` already existed and was only verified.
    """

    path: Path
    sha256: str
    size: int
    downloaded: bool


class _Retry(Exception):
    """A transient failure: try again (resuming from the partial file)."""

    def __init__(self, reason: str, kind: str = "network", status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # "network" (no connection), "server" (5xx), "transfer" (cut short)
        self.status = status


# --------------------------------------------------------------------------------------------
# checksums and the lock file
# --------------------------------------------------------------------------------------------


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks of ``chunk`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


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
        records[url] = {"sha256": sha, "size": int(size) if size else None, "date": date}
    return records


def read_lock(lockfile: str | os.PathLike) -> dict[str, dict]:
    """Read a checksum lock file into ``{url: {"sha256", "size", "date"}}`` (empty if absent)."""
    lockfile = Path(lockfile)
    if not lockfile.exists():
        return {}
    with _locked(lockfile, exclusive=False) as fh:
        return _parse_lock(fh.read(), lockfile)


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
                    f"{known['sha256']} on {known['date']}: the file changed upstream; check it, "
                    f"then delete its line from {lockfile} to accept the new version."
                )
            return
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            fh.write("\t".join(LOCK_COLUMNS) + "\n")
        date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        fh.write(f"{url}\t{sha256}\t{size}\t{date}\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.info("recorded sha256 %s for %s in %s", sha256, url, lockfile)


# --------------------------------------------------------------------------------------------
# the transfer
# --------------------------------------------------------------------------------------------


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """Parse ``bytes start-end/total`` into ``(start, total)`` (None where unknown)."""
    if not header or not header.startswith("bytes"):
        return None, None
    spec = header.split(None, 1)[-1]
    rng, _, total = spec.partition("/")
    start = None
    if "-" in rng and rng != "*":
        with contextlib.suppress(ValueError):
            start = int(rng.split("-", 1)[0])
    tot = None
    with contextlib.suppress(ValueError):
        tot = int(total)
    return start, tot


def _describe(exc: BaseException) -> tuple[str, str]:
    """Return ``(kind, reason)`` for a connection-level exception."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.gaierror):
        return "network", f"host name lookup failed ({reason.strerror or reason})"
    if isinstance(reason, ConnectionRefusedError):
        return "network", "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "network", "connection timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return "network", reason.strerror
    return "network", str(reason) or type(reason).__name__


class _Progress:
    """Log bytes, percentage and rate at most every ``every`` seconds."""

    def __init__(self, label: str, every: float):
        self.label, self.every = label, every
        self.t0 = self.last = time.monotonic()
        self.bytes_this_run = 0

    def update(self, done: int, total: int | None, added: int, force: bool = False) -> None:
        self.bytes_this_run += added
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        rate = self.bytes_this_run / max(now - self.t0, 1e-9) / 1e6
        if total:
            log.info(
                "%s: %.1f of %.1f MB (%.0f%%) at %.1f MB/s",
                self.label, done / 1e6, total / 1e6, 100 * done / total, rate,
            )
        else:
            log.info("%s: %.1f MB at %.1f MB/s", self.label, done / 1e6, rate)


def _transfer(
    url: str, part: Path, timeout: float, chunk: int, progress: _Progress, size: int | None
) -> None:
    """One attempt: (re)start or resume ``part``; raise :class:`_Retry` on transient failure."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        log.warning("%s is larger than the expected %d bytes; starting over", part, size)
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return  # complete already: only verification is left
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Range not satisfiable: the partial file is complete or not a prefix of this file.
            _, total = _content_range(exc.headers.get("Content-Range"))
            if total == offset:
                return
            log.warning("server refused to resume %s (HTTP 416); starting over", url)
            part.unlink()
            raise _Retry("HTTP 416 Range Not Satisfiable", kind="transfer") from exc
        if exc.code in _RETRY_STATUS:
            raise _Retry(f"HTTP {exc.code} {exc.reason}", kind="server", status=exc.code) from exc
        raise  # permanent HTTP error: handled by fetch()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        kind, reason = _describe(exc)
        raise _Retry(reason, kind=kind) from exc

    with response:
        status = getattr(response, "status", None) or 200
        total: int | None = None
        mode = "ab"
        if offset and status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                log.warning("server resumed %s at byte %s, not %d; starting over", url, start, offset)
                part.unlink()
                raise _Retry("server resumed at the wrong offset", kind="transfer")
        else:
            if offset:
                log.info("server ignored the Range request for %s; restarting from byte 0", url)
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if size is not None and total is not None and total != size:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            raise SclinbenchError(
                f"{url} is {total} bytes on the server but the registry expects {size}: the file "
                f"changed upstream or the URL is wrong; check it and update size/sha256."
            )
        done = offset
        try:
            with open(part, mode) as fh:
                while True:
                    block = response.read(chunk)
                    if not block:
                        break
                    fh.write(block)
                    done += len(block)
                    progress.update(done, total, len(block))
                fh.flush()
                os.fsync(fh.fileno())
        except (http.client.HTTPException, OSError) as exc:
            raise _Retry(
                f"connection lost after {done} bytes ({type(exc).__name__})", kind="transfer"
            ) from exc
    if total is not None and done < total:
        raise _Retry(f"connection closed after {done} of {total} bytes", kind="transfer")
    progress.update(done, total, 0, force=True)


def _expected_checksum(url: str, sha256: str | None, lockfile: Path | None) -> tuple[str | None, str]:
    """Pinned checksum wins; otherwise the lock-file record (if any). Returns (sha, origin)."""
    if sha256:
        return sha256.lower(), "the registry (sha256)"
    if lockfile is not None:
        record = read_lock(lockfile).get(url)
        if record:
            return record["sha256"], f"lock file {lockfile}"
    return None, ""


def _verify(path: Path, url: str, expected: str | None, origin: str, size: int | None,
            delete: bool) -> str:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        if delete:
            path.unlink()
        raise SclinbenchError(
            f"{url}: got {actual_size} bytes, expected {size}"
            + ("; the partial file was deleted, re-run to download again." if delete
               else f"; delete {path} and re-run to download it again.")
        )
    digest = sha256sum(path)
    if expected is not None and digest != expected:
        if delete:
            path.unlink()
        raise SclinbenchError(
            f"Checksum mismatch for {url}: sha256 {digest}, expected {expected} from {origin}"
            + ("; the download was deleted, re-run to download again (if it persists the file "
               "changed upstream)." if delete
               else f"; delete {path} and re-run to download it again.")
        )
    return digest


def fetch(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    size: int | None = None,
    lockfile: str | os.PathLike | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60,
    chunk: int = 1 << 20,
    progress_every: float = 5.0,
) -> FetchResult:
    """Download ``url`` to ``dest``: resumable, retried, verified, atomic.

    Parameters
    ----------
    url
        ``http(s)://`` (or ``file://``) address.
    dest
        Final path. Data are streamed to ``<dest>.part`` and renamed onto ``dest`` only after
        the size and checksum checks pass. An existing ``dest`` is verified, not downloaded.
    sha256
        Pinned checksum (hex). When None, the checksum recorded in ``lockfile`` is used; when
        that is missing too, the computed checksum is recorded there.
    size
        Expected size in bytes, or None.
    lockfile
        TSV with columns ``url, sha256, size, date`` shared by all downloads of a workflow;
        updated under an ``fcntl`` lock.
    retries
        Retries after the first attempt on connection errors, HTTP 408/429/5xx and truncated
        transfers. An attempt that received data resets the count.
    backoff
        Seconds before the first retry, doubled for each following one.
    timeout
        Socket timeout in seconds.
    chunk
        Read size in bytes.
    progress_every
        Seconds between progress log lines.

    Returns
    -------
    FetchResult

    Raises
    ------
    SclinbenchError
        HTTP 404 and other permanent HTTP errors (at once), server errors or no network after
        the retries, size or checksum mismatch (the partial file is deleted).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    lock_path = Path(lockfile) if lockfile is not None else None
    expected, origin = _expected_checksum(url, sha256, lock_path)

    if dest.exists():
        digest = _verify(dest, url, expected, origin, size, delete=False)
        if expected is None and lock_path is not None:
            record_lock(lock_path, url, digest, dest.stat().st_size)
        log.info("%s already present and verified (sha256 %s)", dest, digest)
        return FetchResult(dest, digest, dest.stat().st_size, downloaded=False)

    dest.parent.mkdir(parents=True, exist_ok=True)
    progress = _Progress(dest.name, progress_every)
    failures, attempts = 0, 0
    while True:
        attempts += 1
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, timeout, chunk, progress, size)
            break
        except urllib.error.HTTPError as exc:
            raise SclinbenchError(_http_error_message(url, exc.code, exc.reason, dest)) from None
        except _Retry as exc:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1
            if failures > retries:
                raise SclinbenchError(_give_up_message(url, exc, attempts, dest, expected)) from None
            wait = backoff * 2 ** max(failures - 1, 0)
            log.warning("%s: %s; retrying in %.1f s (attempt %d)", url, exc.reason, wait, attempts + 1)
            time.sleep(wait)

    digest = _verify(part, url, expected, origin, size, delete=True)
    final_size = part.stat().st_size
    os.replace(part, dest)
    if lock_path is not None and expected is None:
        record_lock(lock_path, url, digest, final_size)
    log.info("downloaded %s -> %s (%d bytes, sha256 %s)", url, dest, final_size, digest)
    return FetchResult(dest, digest, final_size, downloaded=True)


def _http_error_message(url: str, code: int, reason: str, dest: Path) -> str:
    if code in (404, 410):
        return (
            f"HTTP {code} {reason}: {url} does not exist (no point retrying); fix the URL in the "
            f"dataset registry or put the file by hand at {dest} and re-run."
        )
    if code in (401, 403):
        return (
            f"HTTP {code} {reason}: access to {url} is denied; check the URL, or download the "
            f"file by hand to {dest} and re-run."
        )
    return f"HTTP {code} {reason} for {url}; check the URL, or put the file by hand at {dest} and re-run."


def _give_up_message(url: str, exc: _Retry, attempts: int, dest: Path, expected: str | None) -> str:
    checksum = f" (sha256 {expected})" if expected else ""
    if exc.kind == "server":
        return (
            f"Server error {exc.reason} for {url} after {attempts} attempts; the server may be down: "
            f"try again later, or put the file by hand at {dest}{checksum} and re-run."
        )
    if exc.kind == "transfer":
        return (
            f"Download of {url} kept failing ({exc.reason}) after {attempts} attempts; re-run to "
            f"resume from {dest}.part, or put the file by hand at {dest}{checksum} and re-run."
        )
    return (
        f"Cannot reach {url} ({exc.reason}) after {attempts} attempts; without network, download "
        f"it elsewhere and put it at {dest}{checksum}, then re-run the same command."
    )
