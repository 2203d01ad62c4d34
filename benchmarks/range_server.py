"""A small static file server on 127.0.0.1 with HTTP Range support, for the paper rehearsal.

    python benchmarks/range_server.py --root DIR [--port 0] [--drop-once NAME ...]

Serves the files under ``--root`` (GET and HEAD; ``Range: bytes=a-`` / ``a-b`` / ``-n`` answered
with 206 and ``Content-Range``; an unsatisfiable range with 416 and ``Content-Range: bytes */size``),
so ``sclinbench.download.fetch`` can resume an interrupted transfer exactly as against a real
server. ``drop_once``: the first GET of each named file (path relative to the root) sends the
headers of the whole file and then only the first half of its bytes before closing the connection,
so the client's resume path is exercised. Every request is recorded (``RangeServer.requests``:
path, Range header, status, bytes sent, dropped) for the rehearsal's report.
"""

from __future__ import annotations

import argparse
import http.server
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "sclinbench-rehearsal/0.1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the server records every request itself
        pass

    def _record(self, **kw):
        with self.server.lock:
            self.server.requests.append({"path": self._rel, "range": self.headers.get("Range") or "", **kw})

    def _target(self) -> Path | None:
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        self._rel = rel
        path = (self.server.root / rel).resolve()
        if self.server.root not in path.parents or not path.is_file():
            return None
        return path

    def _send_range(self, head_only: bool):
        path = self._target()
        if path is None:
            self.send_error(404, "no such file")
            self._record(status=404, sent=0, dropped=False)
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        header = self.headers.get("Range")
        if header:
            m = _RANGE.match(header.strip())
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:  # suffix: the last n bytes
                    start, end = max(size - int(m.group(2)), 0), size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self._record(status=416, sent=0, dropped=False)
                    return
                status = 206
        length = end - start + 1
        drop = False
        if not head_only and status == 200:
            with self.server.lock:
                if self._rel in self.server.drop_once:
                    self.server.drop_once.discard(self._rel)
                    drop = True
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if drop:
            self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        if not head_only:
            limit = length // 2 if drop else length
            with open(path, "rb") as fh:
                fh.seek(start)
                while sent < limit:
                    block = fh.read(min(1 << 20, limit - sent))
                    if not block:
                        break
                    try:
                        self.wfile.write(block)
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    sent += len(block)
            if drop:
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(2)  # the client sees the transfer cut short
        self._record(status=status, sent=sent, dropped=drop)

    def do_GET(self):  # noqa: N802
        self._send_range(head_only=False)

    def do_HEAD(self):  # noqa: N802
        self._send_range(head_only=True)


class RangeServer(http.server.ThreadingHTTPServer):
    """``RangeServer(root, port=0, drop_once=())``; ``start()`` serves in a daemon thread, ``url(rel)``."""

    daemon_threads = True

    def __init__(self, root: str | os.PathLike, port: int = 0, drop_once=()):
        super().__init__(("127.0.0.1", port), _Handler)
        self.root = Path(root).resolve()
        self.drop_once = set(drop_once)
        self.dropped_planned = sorted(self.drop_once)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{rel.lstrip('/')}"

    def start(self) -> RangeServer:
        self._thread = threading.Thread(target=self.serve_forever, name="range-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--drop-once", nargs="*", default=[], help="files (relative to --root) cut short once")
    args = p.parse_args(argv)
    server = RangeServer(args.root, args.port, args.drop_once)
    print(f"serving {server.root} at http://127.0.0.1:{server.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
