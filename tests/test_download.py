"""fetch() against a loopback HTTP server with fault injection (no outside network)."""

from __future__ import annotations

import hashlib
import http.server
import logging
import shlex
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sclinbench.data.download import fetch
from sclinbench.data.lock import read_lock, record_lock
from sclinbench.errors import SclinbenchError
from sclinbench.workflow.io import sha256_file

# 300 kB of non-repeating bytes: the transfer spans several chunks.
PAYLOAD = bytes(
    (i * 7919 + (i >> 8)) % 251 for i in range(300_000)
)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = dict(backoff=0.001, timeout=5, chunk=16_384)
DATA = Path(__file__).parent / "data"
H5_FIXTURE = DATA / "liao2020" / "C146_subset_filtered_feature_bc_matrix.h5"
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Service Unavailable - Zero size object</title></head>"
             b"<body><h1>The server is busy</h1></body></html>\n")


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD under paths that select a behaviour:

    /ok          honours Range
    /drop        first response is cut off half-way, later ones honour Range
    /norange     first response is cut off, later ones ignore Range (200 + full body)
    /missing     404
    /gone        410
    /error       500 always
    /flaky       503 twice, then OK
    /html        200 with an HTML error page (Content-Type text/html)
    /htmlbin     200 with an HTML error page sent as application/octet-stream
    /h5          the real Cell Ranger fixture (state["h5"] replaces it)
    /hang        accepts the request, never answers
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server API)
        state = self.server.state
        path = self.path.split("?")[0]
        state["requests"].append((path, self.headers.get("Range")))
        count = sum(1 for p, _ in state["requests"] if p == path)
        if path == "/missing":
            return self._status(404)
        if path == "/gone":
            return self._status(410)
        if path in ("/html", "/htmlbin"):
            return self._body(HTML_PAGE, "text/html; charset=utf-8" if path == "/html" else "application/octet-stream")
        if path == "/h5":
            return self._body(state.get("h5", H5_FIXTURE.read_bytes()), "application/octet-stream")
        if path == "/hang":
            state["release"].wait(20)
            return None
        if path == "/error":
            return self._status(500)
        if path == "/flaky" and count <= 2:
            return self._status(503)
        cut = path in ("/drop", "/norange") and count == 1
        honour_range = path != "/norange"
        self._send(cut=cut, honour_range=honour_range)

    def _body(self, body: bytes, content_type: str):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _status(self, code):
        body = b"nope"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _send(self, cut: bool, honour_range: bool):
        start = 0
        rng = self.headers.get("Range")
        if rng and honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.wfile.write(body)
        self.close_connection = True


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = {"requests": [], "release": threading.Event()}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, httpd.state
    httpd.state["release"].set()
    httpd.shutdown()
    httpd.server_close()


def test_clean_download_verifies_and_logs_progress(server, tmp_path, caplog):
    base, state = server
    dest = tmp_path / "raw" / "file.bin"
    with caplog.at_level(logging.INFO, logger="sclinbench.data.download"):
        result = fetch(f"{base}/ok", dest, sha256=PAYLOAD_SHA, size=len(PAYLOAD),
                       progress_every=0, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert result.sha256 == PAYLOAD_SHA and result.size == len(PAYLOAD) and result.downloaded
    assert not (tmp_path / "raw" / "file.bin.part").exists()
    assert state["requests"] == [("/ok", None)]
    assert any("MB/s" in r.getMessage() and "%" in r.getMessage() for r in caplog.records)


def test_dropped_connection_resumes_with_range(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    fetch(f"{base}/drop", dest, sha256=PAYLOAD_SHA, **FAST)
    assert sha256_file(dest) == PAYLOAD_SHA
    ranges = [r for p, r in state["requests"] if p == "/drop"]
    assert ranges[0] is None
    assert ranges[1] == f"bytes={len(PAYLOAD) // 2}-"  # resumed where the cut happened


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    fetch(f"{base}/norange", dest, sha256=PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD  # not the half file + the full file appended
    assert [r is not None for p, r in state["requests"]] == [False, True]


def test_wrong_checksum_leaves_nothing_behind(server, tmp_path):
    base, _ = server
    dest_dir = tmp_path / "raw"
    with pytest.raises(SclinbenchError, match="Checksum mismatch") as err:
        fetch(f"{base}/ok", dest_dir / "file.bin", sha256="0" * 64, **FAST)
    assert f"{base}/ok" in str(err.value)
    assert list(dest_dir.iterdir()) == []


def test_wrong_size_leaves_nothing_behind(server, tmp_path):
    base, _ = server
    with pytest.raises(SclinbenchError, match="expects 12"):
        fetch(f"{base}/ok", tmp_path / "file.bin", size=12, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_404_fails_at_once_naming_the_url(server, tmp_path):
    base, state = server
    with pytest.raises(SclinbenchError) as err:
        fetch(f"{base}/missing", tmp_path / "file.bin", retries=3, **FAST)
    message = str(err.value)
    assert "404" in message and f"{base}/missing" in message and "\n" not in message
    assert len(state["requests"]) == 1  # no retries for a missing file
    assert list(tmp_path.iterdir()) == []


def test_500_fails_after_retries(server, tmp_path):
    base, state = server
    with pytest.raises(SclinbenchError) as err:
        fetch(f"{base}/error", tmp_path / "file.bin", retries=2, **FAST)
    message = str(err.value)
    assert "500" in message and f"{base}/error" in message and "after 3 attempts" in message
    assert len(state["requests"]) == 3


def test_transient_503_is_retried(server, tmp_path):
    base, state = server
    fetch(f"{base}/flaky", tmp_path / "file.bin", sha256=PAYLOAD_SHA, retries=3, **FAST)
    assert len(state["requests"]) == 3


def test_no_network_names_url_and_where_to_put_the_file(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dest = tmp_path / "raw" / "file.bin"
    url = f"http://127.0.0.1:{port}/file.bin"
    with pytest.raises(SclinbenchError) as err:
        fetch(url, dest, retries=1, **FAST)
    message = str(err.value)
    assert url in message and str(dest) in message and "re-run" in message
    assert "connection refused" in message and "\n" not in message


def test_lockfile_records_then_verifies(server, tmp_path):
    base, _ = server
    lock = tmp_path / "checksums.tsv"
    url = f"{base}/ok"
    first = fetch(url, tmp_path / "a.bin", lockfile=lock, **FAST)
    assert read_lock(lock)[url]["sha256"] == PAYLOAD_SHA == first.sha256
    assert read_lock(lock)[url]["size"] == len(PAYLOAD)
    assert lock.read_text().splitlines()[0] == "url\tsha256\tsize\tdate"

    # A second download of the same URL must reproduce the recorded checksum ...
    fetch(url, tmp_path / "b.bin", lockfile=lock, **FAST)
    assert len(lock.read_text().splitlines()) == 2  # header + one record, not duplicated

    # ... and a recorded checksum that differs is refused, leaving nothing behind.
    other = tmp_path / "other.tsv"
    record_lock(other, url, "f" * 64, len(PAYLOAD))
    with pytest.raises(SclinbenchError, match="Checksum mismatch.*lock file"):
        fetch(url, tmp_path / "c.bin", lockfile=other, **FAST)
    assert not (tmp_path / "c.bin").exists() and not (tmp_path / "c.bin.part").exists()


def test_conflicting_lock_record_is_refused(tmp_path):
    lock = tmp_path / "checksums.tsv"
    record_lock(lock, "http://x/y", "a" * 64, 3)
    record_lock(lock, "http://x/y", "a" * 64, 3)  # same record: accepted, not duplicated
    with pytest.raises(SclinbenchError, match="changed upstream"):
        record_lock(lock, "http://x/y", "b" * 64, 3)
    assert len(lock.read_text().splitlines()) == 2


def test_existing_destination_is_verified_not_downloaded(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    result = fetch(f"{base}/ok", dest, sha256=PAYLOAD_SHA, **FAST)
    assert not result.downloaded and state["requests"] == []
    dest.write_bytes(b"corrupt")
    with pytest.raises(SclinbenchError, match="delete .*file.bin and re-run"):
        fetch(f"{base}/ok", dest, sha256=PAYLOAD_SHA, **FAST)


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    base, state = server
    dest = tmp_path / "file.bin"
    Path(str(dest) + ".part").write_bytes(PAYLOAD[:1000])
    fetch(f"{base}/ok", dest, sha256=PAYLOAD_SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert state["requests"] == [("/ok", "bytes=1000-")]


# ---------------------------------------------------------------------------- issue 12


H5_SHA = hashlib.sha256(H5_FIXTURE.read_bytes()).hexdigest()


def test_html_error_page_is_a_failed_attempt_and_never_recorded(server, tmp_path):
    """A 200 answer with an HTML page for an unpinned file was accepted and its checksum locked."""
    base, state = server
    lock = tmp_path / "checksums.lock.tsv"
    for path in ("/html", "/htmlbin"):  # with and without an honest Content-Type
        with pytest.raises(SclinbenchError) as err:
            fetch(f"{base}{path}", tmp_path / "raw" / "x.h5", lockfile=lock, expect="10x_h5", **FAST)
        message = str(err.value)
        assert "web page (HTML" in message and f"{base}{path}" in message and "nothing was recorded" in message
        assert "\n" not in message
        assert list((tmp_path / "raw").iterdir()) == []  # neither the file nor a .part
        assert read_lock(lock) == {}
    assert sum(p == "/htmlbin" for p, _ in state["requests"]) == 2  # retried once, then the message
    result = fetch(f"{base}/h5", tmp_path / "raw" / "x.h5", lockfile=lock, expect="10x_h5", **FAST)
    assert result.sha256 == H5_SHA and read_lock(lock)[f"{base}/h5"]["sha256"] == H5_SHA


def test_a_non_hdf5_body_is_refused_for_h5ad(server, tmp_path):
    base, _ = server
    with pytest.raises(SclinbenchError, match="not HDF5"):
        fetch(f"{base}/ok", tmp_path / "x.h5ad", expect="h5ad", lockfile=tmp_path / "lock.tsv", **FAST)
    assert read_lock(tmp_path / "lock.tsv") == {}


def test_lock_mismatch_says_how_to_repin_and_that_works(server, tmp_path):
    base, state = server
    lock = tmp_path / "checksums.lock.tsv"
    url = f"{base}/h5"
    state["h5"] = HTML_PAGE * 3 + PAYLOAD[:1000]  # an old bad record (as before this fix)
    record_lock(lock, url, hashlib.sha256(state["h5"]).hexdigest(), len(state["h5"]))
    del state["h5"]
    with pytest.raises(SclinbenchError) as err:
        fetch(url, tmp_path / "x.h5", lockfile=lock, expect="10x_h5", **FAST)
    message = str(err.value)
    assert f"line 2 of {lock}" in message and "-m sclinbench.data.download forget" in message
    command = message.split("re-pin it with: ", 1)[1].split(" (or delete", 1)[0]
    argv = shlex.split(command)
    assert argv[0] == sys.executable and argv[1:4] == ["-m", "sclinbench.data.download", "forget"]
    proc = subprocess.run(argv, capture_output=True, text=True)  # the command exactly as printed
    assert proc.returncode == 0, proc.stderr
    assert url not in read_lock(lock)
    fetch(url, tmp_path / "x.h5", lockfile=lock, expect="10x_h5", **FAST)
    assert read_lock(lock)[url]["sha256"] == H5_SHA


def test_forget_removes_only_that_url(tmp_path):
    from sclinbench.data.lock import forget

    lock = tmp_path / "lock.tsv"
    record_lock(lock, "http://x/a", "a" * 64, 1)
    record_lock(lock, "http://x/ab", "b" * 64, 2)
    assert forget(lock, "http://x/a") == 1 and forget(lock, "http://x/a") == 0
    assert list(read_lock(lock)) == ["http://x/ab"]


@pytest.mark.parametrize("path, code", [("/missing", 404), ("/gone", 410)])
def test_404_and_410_carry_the_hint_and_are_not_retried(server, tmp_path, path, code):
    base, state = server
    hint = "this file belongs to CELLxGENE collection https://cellxgene.cziscience.com/collections/abc"
    with pytest.raises(SclinbenchError) as err:
        fetch(f"{base}{path}", tmp_path / "x.h5ad", retries=3, hint=hint, **FAST)
    assert str(code) in str(err.value) and hint in str(err.value)
    assert len(state["requests"]) == 1
    with pytest.raises(SclinbenchError) as err:
        fetch(f"{base}{path}", tmp_path / "x.h5ad", retries=3, **FAST)
    assert "CELLxGENE" not in str(err.value)


@pytest.fixture
def https_server():
    """A loopback HTTPS server whose certificate is self-signed (no system trusts it)."""
    connections = []

    class Server(http.server.ThreadingHTTPServer):
        def get_request(self):
            sock, addr = super().get_request()
            connections.append(addr)
            return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(DATA / "tls" / "localhost.crt", DATA / "tls" / "localhost.key")
    httpd = Server(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = {"requests": [], "release": threading.Event()}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}", connections
    httpd.shutdown()
    httpd.server_close()


def test_untrusted_certificate_is_not_retried(https_server, tmp_path):
    base, connections = https_server
    with pytest.raises(SclinbenchError) as err:
        fetch(f"{base}/ok", tmp_path / "x.bin", retries=3, **FAST)
    message = str(err.value)
    assert "certificate" in message and "no point retrying" in message and "SSL_CERT_FILE" in message
    assert len(connections) == 1


def test_deadline_bounds_a_hanging_server(server, tmp_path):
    """A server that accepts and never answers: the deadline, not retries x timeout, decides."""
    base, state = server
    with pytest.raises(SclinbenchError) as err:
        fetch(f"{base}/hang", tmp_path / "x.bin", retries=50, backoff=0.001, timeout=30, deadline=0.3)
    message = str(err.value)
    assert "timed out" in message and "without receiving data" in message and "download: deadline:" in message
    assert len(state["requests"]) == 1  # the attempt's timeout was cut to what was left of the deadline


def test_hand_placed_file_is_verified_like_a_download(tmp_path, caplog):
    """A raw file put in place by hand (the fetch never runs then) is checked before use."""
    from sclinbench.data.download import verify_present

    url = "https://example.org/GSM4339774_C146_filtered_feature_bc_matrix.h5"
    placed = tmp_path / "x.h5"
    placed.write_bytes((DATA / "liao2020" / "patients" / "C144_subset_filtered_feature_bc_matrix.h5").read_bytes())
    with pytest.raises(SclinbenchError) as err:  # another patient's file under the expected name
        verify_present(placed, url, sha256=H5_SHA, lockfile=tmp_path / "lock.tsv", expect="10x_h5")
    message = str(err.value)
    assert "Checksum mismatch" in message and str(placed) in message and "placed by hand" in message
    assert placed.exists()  # never deleted
    placed.write_bytes(H5_FIXTURE.read_bytes())
    assert verify_present(placed, url, sha256=H5_SHA, expect="10x_h5")[1] == "registry"
    lock = tmp_path / "lock.tsv"
    with caplog.at_level("WARNING"):
        digest, how = verify_present(placed, url, lockfile=lock, expect="10x_h5")
    assert how == "unverified" and read_lock(lock)[url]["sha256"] == digest == H5_SHA
    assert str(placed) in caplog.text and "accepted unverified" in caplog.text
    assert verify_present(placed, url, lockfile=lock, expect="10x_h5")[1] == "lock"
    placed.write_bytes(HTML_PAGE)
    with pytest.raises(SclinbenchError, match="web page"):
        verify_present(placed, url, lockfile=lock, expect="10x_h5")


def test_file_from_the_previous_raw_path_is_reused(server, tmp_path):
    base, state = server
    old = tmp_path / "raw" / "file.bin"
    old.parent.mkdir()
    old.write_bytes(PAYLOAD)
    dest = tmp_path / "raw" / "1234abcd-file.bin"
    result = fetch(f"{base}/ok", dest, sha256=PAYLOAD_SHA, previous=old, **FAST)
    assert not result.downloaded and dest.read_bytes() == PAYLOAD and not old.exists()
    assert state["requests"] == []
