"""Resumable, verified downloads with the standard library only.

:func:`fetch` streams a URL to ``<dest>.part``, resumes an interrupted transfer with an HTTP
``Range`` request, retries transient failures with exponential backoff within a deadline, checks
that the content is the kind of file asked for (an HTML error page is a failed attempt), checks
size and sha256 and only then renames the file onto ``dest``. A checksum that is not pinned in
the config is recorded in a lock file (TSV ``url, sha256, size, date``; :mod:`sclinbench.data.lock`)
on first download, and every later download of the same URL must reproduce it; ``python -m sclinbench.data.download forget
URL`` removes a record to re-pin a file. :func:`verify_present` checks a file that is already
there (placed by hand) the same way before it is used.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sclinbench.data.lock import DEFAULT_LOCKFILE, forget, read_lock, record_lock, repin_advice
from sclinbench.errors import SclinbenchError
from sclinbench.workflow.io import sha256_file

log = logging.getLogger(__name__)

USER_AGENT = "sclinbench-fetch/0.1 (+https://github.com/; python-urllib)"

#: HTTP status codes worth retrying (timeouts, throttling, server errors).
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
#: Seconds a download may go without receiving any data, over all its attempts, before it gives up.
DEFAULT_DEADLINE = 180.0


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


class _Permanent(Exception):
    """A failure that no retry can fix (an untrusted TLS certificate)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _certificate_problem(exc: BaseException) -> ssl.SSLError | None:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return reason
    if isinstance(reason, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(reason):
        return reason
    return None


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
    url: str, part: Path, timeout: float, chunk: int, progress: _Progress, size: int | None,
    expect: str | None = None,
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
        bad_certificate = _certificate_problem(exc)
        if bad_certificate is not None:
            detail = getattr(bad_certificate, "verify_message", None) or str(bad_certificate)
            raise _Permanent(
                f"The TLS certificate of {urllib.parse.urlsplit(url).hostname} could not be verified "
                f"({detail}) for {url}: no point retrying. If a proxy or firewall intercepts HTTPS, point "
                f"SSL_CERT_FILE at its CA certificate; otherwise check the URL (never switch to http://)."
            ) from exc
        kind, reason = _describe(exc)
        raise _Retry(reason, kind=kind) from exc

    with response:
        status = getattr(response, "status", None) or 200
        content_type = (response.headers.get("Content-Type") or "").lower()
        if expect not in (None, "text") and content_type.startswith("text/html"):
            raise _Retry(f"the server sent a web page (HTML, Content-Type {content_type}) instead of the file",
                         kind="content")
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


def _expected_checksum(url: str, sha256: str | None, lockfile: Path | None) -> tuple[str | None, str, dict]:
    """Pinned checksum wins; otherwise the lock-file record (if any). Returns (sha, origin, record)."""
    if sha256:
        return sha256.lower(), "the registry (sha256)", {}
    if lockfile is not None:
        record = read_lock(lockfile).get(url)
        if record:
            return record["sha256"], f"lock file {lockfile} (recorded {record['date']})", record
    return None, "", {}


def _verify(path: Path, url: str, expected: str | None, origin: str, size: int | None,
            delete: bool, lockfile: Path | None = None, record: dict | None = None) -> str:
    """Size and sha256 of ``path`` against the expectation; raise with the fix on a mismatch."""
    record = record or {}
    from_lock = bool(record)
    if size is None and from_lock:
        size = record.get("size")
    actual_size = path.stat().st_size
    repin = (f"; if the file now served is right (it changed upstream, or the record is wrong), "
             f"{repin_advice(lockfile, url, record.get('line'))}") if from_lock else ""
    if size is not None and actual_size != size:
        if delete:
            path.unlink()
        if delete:
            tail = "; the download was deleted" + (repin or ", re-run to download again")
        else:
            tail = (f"; {path} is not that file: replace it with the right one, or delete {path} and re-run "
                    f"to download it" + repin)
        raise SclinbenchError(
            f"{url}: got {actual_size} bytes, expected {size}" + (" from " + origin if from_lock else "") + tail + "."
        )
    digest = sha256_file(path)
    if expected is not None and digest != expected:
        if delete:
            path.unlink()
        if delete:
            tail = ("; the download was deleted" + (repin if from_lock else
                    ", re-run to download again (if it persists, the file changed upstream: check it and "
                    "update sha256/size in the registry)"))
        else:
            tail = (f"; {path} is not that file (placed by hand?): replace it with the right one, or delete "
                    f"{path} and re-run to download it" + repin)
        raise SclinbenchError(
            f"Checksum mismatch for {url}: sha256 {digest}, expected {expected} from {origin}{tail}."
        )
    return digest


def _content_check(path: Path, expect: str | None, name: str) -> None:
    from sclinbench.data.formats import check_download

    check_download(path, expect, name=name)


def verify_present(
    path: str | os.PathLike,
    url: str,
    sha256: str | None = None,
    size: int | None = None,
    lockfile: str | os.PathLike | None = None,
    expect: str | None = None,
) -> tuple[str, str]:
    """Verify a file that is already at its place (downloaded earlier or placed by hand).

    Checks the content kind (``expect``: the registry format), then size and sha256 against the
    registry pin or the lock-file record. A file nothing can verify is accepted, its checksum is
    recorded in ``lockfile`` (so later runs check it) and a warning names it.

    Returns
    -------
    ``(sha256, how)`` where ``how`` is ``"registry"``, ``"lock"`` or ``"unverified"``.

    Raises
    ------
    SclinbenchError
        Wrong content, size or checksum, naming the file, the URL and what to do. The file is
        not deleted (it may be the user's only copy).
    """
    from sclinbench.data.formats import ContentError

    path = Path(path)
    lock_path = Path(lockfile) if lockfile is not None else None
    try:
        _content_check(path, expect, url_name(url))
    except ContentError as exc:
        raise SclinbenchError(
            f"{path} is not the file of {url}: {str(exc).replace('the server sent', 'it holds').replace('the download is', 'it is')}; "
            f"replace it with the right file, or delete it and re-run to download it."
        ) from None
    expected, origin, record = _expected_checksum(url, sha256, lock_path)
    digest = _verify(path, url, expected, origin, size, delete=False, lockfile=lock_path, record=record)
    if expected is not None:
        return digest, "registry" if sha256 else "lock"
    if size is not None:
        log.info("%s: size %d bytes matches the registry (no sha256 pinned)", path, size)
    if lock_path is None:
        log.info("%s: nothing pins its sha256 (%s)", path, digest)
        return digest, "unverified"
    record_lock(lock_path, url, digest, path.stat().st_size)
    log.warning(
        "%s was not downloaded here (no checksum recorded in %s) and the registry pins no sha256 for %s: "
        "accepted unverified, sha256 %s now recorded so later runs check it; if you placed it by hand, make sure "
        "it is that file (add sha256: %s to the registry to pin it)",
        path, lock_path, url, digest, digest,
    )
    return digest, "unverified"


def url_name(url: str) -> str:
    """The last path segment of ``url`` (used to check ``.gz`` names)."""
    return os.path.basename(urllib.parse.urlsplit(url).path)


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
    expect: str | None = None,
    hint: str | None = None,
    deadline: float | None = DEFAULT_DEADLINE,
    previous: str | os.PathLike | None = None,
) -> FetchResult:
    """Download ``url`` to ``dest``: resumable, retried within a deadline, content-checked, verified, atomic.

    Parameters
    ----------
    url
        ``http(s)://`` (or ``file://``) address.
    dest
        Final path. Data are streamed to ``<dest>.part`` and renamed onto ``dest`` only after
        the content, size and checksum checks pass. An existing ``dest`` is verified
        (:func:`verify_present`), not downloaded.
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
        transfers. An attempt that received data resets the count. A body that is not the file
        (an HTML page) is retried once.
    backoff
        Seconds before the first retry, doubled for each following one.
    timeout
        Socket timeout in seconds (shortened to what is left of ``deadline``).
    chunk
        Read size in bytes.
    progress_every
        Seconds between progress log lines.
    expect
        What the file must be (:func:`sclinbench.data.formats.check_download`): the registry format
        (``h5ad``, ``10x_h5``, ``mtx``), ``"text"``, or None (anything but an error page).
    hint
        Appended to the message of an HTTP 404/410 or of a body that is not the file (e.g. where
        a retired dataset version went).
    deadline
        Seconds the download may go without receiving data, over all attempts, before it gives
        up with the message saying what to do; None = only ``retries`` bound it. A transfer that
        keeps receiving data never hits it, however long the file.
    previous
        Where an earlier version of the workflow kept this file: if ``dest`` is missing and
        ``previous`` verifies, it is moved onto ``dest`` instead of downloading again.

    Returns
    -------
    FetchResult

    Raises
    ------
    SclinbenchError
        HTTP 404/410 and other permanent HTTP errors and untrusted TLS certificates (at once),
        server errors or no network after the retries or the deadline, a body that is not the
        file, size or checksum mismatch (the partial file is deleted, nothing is recorded).
    """
    from sclinbench.data.formats import ContentError

    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    lock_path = Path(lockfile) if lockfile is not None else None

    if not dest.exists() and previous is not None and Path(previous).is_file():
        try:
            verify_present(previous, url, sha256, size, lock_path, expect)
        except SclinbenchError as exc:
            log.warning("not reusing %s from an earlier version of the workflow: %s", previous, exc)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(previous, dest)
            log.info("moved %s (verified) to %s instead of downloading it again", previous, dest)

    if dest.exists():
        digest, how = verify_present(dest, url, sha256, size, lock_path, expect)
        log.info("%s already present and verified (sha256 %s, checked against: %s)", dest, digest, how)
        return FetchResult(dest, digest, dest.stat().st_size, downloaded=False)

    expected, origin, record = _expected_checksum(url, sha256, lock_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    progress = _Progress(dest.name, progress_every)
    failures, attempts, content_failures = 0, 0, 0
    last_data = time.monotonic()
    while True:
        attempts += 1
        attempt_timeout = timeout
        if deadline is not None:
            attempt_timeout = max(min(timeout, deadline - (time.monotonic() - last_data)), 0.05)
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, attempt_timeout, chunk, progress, size, expect)
            try:
                _content_check(part, expect, dest.name)
            except ContentError as exc:
                part.unlink()
                raise _Retry(str(exc), kind="content") from None
            break
        except urllib.error.HTTPError as exc:
            raise SclinbenchError(_http_error_message(url, exc.code, exc.reason, dest, hint)) from None
        except _Permanent as exc:
            raise SclinbenchError(exc.message) from None
        except _Retry as exc:
            now = time.monotonic()
            if exc.kind == "content":
                content_failures += 1
                give_up = content_failures > min(retries, 1)
            else:
                after = part.stat().st_size if part.exists() else 0
                if after > before:
                    failures, last_data = 0, now
                else:
                    failures += 1
                give_up = failures > retries
            out_of_time = deadline is not None and now - last_data >= deadline
            if give_up or out_of_time:
                raise SclinbenchError(_give_up_message(url, exc, attempts, dest, expected, lock_path, hint,
                                                       deadline if out_of_time and not give_up else None)) from None
            wait = backoff * 2 ** max(max(failures, content_failures) - 1, 0)
            if deadline is not None:
                wait = max(min(wait, deadline - (now - last_data)), 0)
            log.warning("%s: %s; retrying in %.1f s (attempt %d)", url, exc.reason, wait, attempts + 1)
            time.sleep(wait)

    digest = _verify(part, url, expected, origin, size, delete=True, lockfile=lock_path, record=record)
    final_size = part.stat().st_size
    os.replace(part, dest)
    if lock_path is not None and expected is None:
        record_lock(lock_path, url, digest, final_size)
    log.info("downloaded %s -> %s (%d bytes, sha256 %s)", url, dest, final_size, digest)
    return FetchResult(dest, digest, final_size, downloaded=True)


def _http_error_message(url: str, code: int, reason: str, dest: Path, hint: str | None = None) -> str:
    if code in (404, 410):
        return (
            f"HTTP {code} {reason}: {url} does not exist (no point retrying); fix the URL in the "
            f"dataset registry or put the file by hand at {dest} and re-run."
            + (f" Note: {hint}." if hint else "")
        )
    if code in (401, 403):
        return (
            f"HTTP {code} {reason}: access to {url} is denied; check the URL, or download the "
            f"file by hand to {dest} and re-run."
        )
    return f"HTTP {code} {reason} for {url}; check the URL, or put the file by hand at {dest} and re-run."


def _give_up_message(url: str, exc: _Retry, attempts: int, dest: Path, expected: str | None,
                     lockfile: Path | None = None, hint: str | None = None,
                     deadline: float | None = None) -> str:
    checksum = f" (sha256 {expected})" if expected else ""
    n = f"{attempts} attempt" + ("s" if attempts != 1 else "")
    tries = (f"after {n}, {deadline:g} s without receiving data (the download deadline, "
             f"download: deadline: in the config)" if deadline is not None else f"after {n}")
    if exc.kind == "content":
        recorded = f"; nothing was recorded in {lockfile}" if lockfile is not None else ""
        return (
            f"{url} did not send the file: {exc.reason} ({tries}){recorded}. Open the URL in a browser to "
            f"see what the server says; fix the URL in the registry, or download the file by hand and put "
            f"it at {dest}{checksum}, then re-run." + (f" Note: {hint}." if hint else "")
        )
    if exc.kind == "server":
        return (
            f"Server error {exc.reason} for {url} {tries}; the server may be down: "
            f"try again later, or put the file by hand at {dest}{checksum} and re-run."
        )
    if exc.kind == "transfer":
        return (
            f"Download of {url} kept failing ({exc.reason}) {tries}; re-run to "
            f"resume from {dest}.part, or put the file by hand at {dest}{checksum} and re-run."
        )
    return (
        f"Cannot reach {url} ({exc.reason}) {tries}; without network, download "
        f"it elsewhere and put it at {dest}{checksum}, then re-run the same command."
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m sclinbench.data.download forget URL [--lockfile PATH]``: re-pin a file."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sclinbench.data.download",
                                     description="Manage the checksum lock file of sclinbench downloads.")
    sub = parser.add_subparsers(dest="command", required=True)
    forget_cmd = sub.add_parser("forget", help="remove the recorded checksum of URL(s): the next download is recorded anew")
    forget_cmd.add_argument("urls", nargs="+", metavar="URL")
    forget_cmd.add_argument("--lockfile", default=DEFAULT_LOCKFILE, help=f"default: {DEFAULT_LOCKFILE}")
    args = parser.parse_args(argv)
    status = 0
    for url in args.urls:
        n = forget(args.lockfile, url)
        if n:
            print(f"removed the record of {url} from {args.lockfile}; the next download records its checksum anew")
        else:
            print(f"{args.lockfile} has no record of {url}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
