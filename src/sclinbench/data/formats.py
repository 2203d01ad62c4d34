"""What a file really is, read from its content (never from its name or the registry's ``format``).

:func:`sniff` looks at the first bytes and, for HDF5, at the top-level groups: an AnnData h5ad, a
Cell Ranger HDF5 matrix (v2 or v3 layout), a loom file, a Matrix Market file or directory, gzip,
an HTML or XML page (what a server sends instead of the file when something is wrong), empty.

Two uses:

- :func:`check_download` decides whether a finished download is the kind of file asked for
  before its checksum is trusted or recorded (an error page is a failed attempt, not a file);
- :func:`format_problem` turns "read as h5ad but it is a 10x file" into the one line that says
  which format the file is and what to set.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from sclinbench.errors import SclinbenchError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"

#: what each kind is called in messages
DESCRIPTION = {
    "h5ad": "an AnnData h5ad file",
    "10x_h5": "a Cell Ranger HDF5 matrix (10x_h5)",
    "loom": "a loom file",
    "hdf5": "an HDF5 file that is neither AnnData h5ad nor a Cell Ranger matrix",
    "hdf5_unreadable": "an HDF5 file whose header cannot be read (truncated or corrupt)",
    "mtx": "a Matrix Market directory (Cell Ranger matrix.mtx.gz, features.tsv.gz, barcodes.tsv.gz)",
    "mtx_file": "a single Matrix Market file",
    "directory": "a directory without matrix.mtx(.gz)",
    "gzip": "a gzip-compressed file",
    "gzip_unreadable": "a gzip file that cannot be decompressed (truncated or corrupt)",
    "zip": "a zip archive",
    "html": "a web page (HTML)",
    "xml": "an XML document",
    "json": "a JSON document",
    "text": "a text file",
    "empty": "an empty file (0 bytes)",
    "binary": "a binary file of unknown type",
    "missing": "missing",
}
#: kinds that are never data: what a server sends when it cannot send the file
ERROR_BODIES = ("html", "xml", "json", "empty")
HDF5_KINDS = ("h5ad", "10x_h5", "loom", "hdf5")


@dataclass(frozen=True)
class Sniffed:
    """The kind of a file (a key of :data:`DESCRIPTION`) and a short detail for messages."""

    kind: str
    detail: str = ""

    def describe(self) -> str:
        text = DESCRIPTION.get(self.kind, self.kind)
        if not self.detail:
            return text
        return f"{text[:-1]}, {self.detail})" if text.endswith(")") else f"{text} ({self.detail})"


def _hdf5_signature(fh, size: int) -> bool:
    """HDF5 puts its signature at byte 0, 512, 1024, 2048, ... (after an optional user block)."""
    offset = 0
    while offset + len(HDF5_MAGIC) <= size:
        fh.seek(offset)
        if fh.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
            return True
        offset = 512 if offset == 0 else offset * 2
        if offset > (1 << 30):  # a user block larger than 1 GiB is not a real case
            break
    return False


def _sniff_hdf5(path: Path) -> Sniffed:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
            if f.attrs.get("encoding-type") == "anndata" or {"X", "obs", "var"} <= keys or {"obs", "var"} <= keys:
                return Sniffed("h5ad")
            if "matrix" in keys and isinstance(f["matrix"], h5py.Group) and {"barcodes", "data", "indptr"} <= set(f["matrix"]):
                return Sniffed("10x_h5", "Cell Ranger v3 layout")
            for key in keys:  # Cell Ranger v2: one group per genome
                node = f[key]
                if isinstance(node, h5py.Group) and {"barcodes", "data", "indices", "indptr", "shape"} <= set(node):
                    return Sniffed("10x_h5", f"Cell Ranger v2 layout, genome {key}")
            if "matrix" in keys and "row_attrs" in keys:
                return Sniffed("loom")
            shown = ", ".join(sorted(keys)[:6]) or "none"
            return Sniffed("hdf5", f"top-level keys: {shown}")
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return Sniffed("hdf5_unreadable", first)


def _text_kind(head: bytes) -> Sniffed | None:
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()  # UTF-8 byte-order mark, leading blank lines
    low = text[:512].lower()
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in low[:256]:
        title = ""
        start = low.find(b"<title>")
        if start >= 0:
            end = low.find(b"</title>", start)
            title = text[start + 7:end if end > 0 else start + 87].decode("utf-8", "replace").strip()
        return Sniffed("html", f"title: {title[:80]}" if title else "")
    if low.startswith(b"<"):
        first = text[:100].decode("utf-8", "replace").splitlines()
        return Sniffed("xml", f"starts: {first[0][:80] if first else ''}")
    if low.startswith(b"%%matrixmarket"):
        return Sniffed("mtx_file")
    if low.startswith((b"{", b"[")) and b"\x00" not in low:
        return Sniffed("json", f"starts: {text[:80].decode('utf-8', 'replace').splitlines()[0]}")
    return None


def _is_text(head: bytes) -> bool:
    if not head:
        return False
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut at the end of the sample
    return True


def sniff(path: str | os.PathLike) -> Sniffed:
    """The kind of file at ``path``, from its content.

    Returns
    -------
    :class:`Sniffed` whose ``kind`` is one of ``h5ad``, ``10x_h5``, ``loom``, ``hdf5``,
    ``hdf5_unreadable``, ``mtx`` (directory), ``mtx_file``, ``directory``, ``gzip``,
    ``gzip_unreadable``, ``zip``, ``html``, ``xml``, ``json``, ``text``, ``empty``, ``binary``,
    ``missing``.
    """
    path = Path(path)
    if not path.exists():
        return Sniffed("missing")
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if names & {"matrix.mtx", "matrix.mtx.gz"}:
            return Sniffed("mtx")
        return Sniffed("directory", f"holds {', '.join(sorted(names)[:5]) or 'nothing'}")
    size = path.stat().st_size
    if size == 0:
        return Sniffed("empty")
    with open(path, "rb") as fh:
        head = fh.read(4096)
        is_hdf5 = head.startswith(HDF5_MAGIC) or _hdf5_signature(fh, size)
    if is_hdf5:
        return _sniff_hdf5(path)
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as fh:
                inner = fh.read(4096)
        except (OSError, EOFError, zlib.error) as exc:
            return Sniffed("gzip_unreadable", str(exc).splitlines()[0][:80] if str(exc) else "")
        kind = _text_kind(inner)
        if kind is not None and kind.kind in ("mtx_file", "html"):
            return Sniffed(kind.kind, "gzip-compressed" + (f", {kind.detail}" if kind.detail else ""))
        return Sniffed("gzip", "holds text" if _is_text(inner) else "")
    if head.startswith(ZIP_MAGIC):
        return Sniffed("zip")
    kind = _text_kind(head)
    if kind is not None:
        return kind
    return Sniffed("text") if _is_text(head) else Sniffed("binary")


class ContentError(SclinbenchError):
    """A file is not what was asked for (an error page, a truncated header, the wrong family)."""


def check_download(path: str | os.PathLike, expect: str | None, name: str | None = None) -> Sniffed:
    """Refuse a download that cannot be the file asked for; return what it is otherwise.

    Parameters
    ----------
    path
        The downloaded file (the ``.part`` before it is accepted).
    expect
        The registry ``format`` of the file (``h5ad``, ``10x_h5``, ``mtx``), ``"text"`` for a text
        answer (a BioMart table), or None for any non-error content.
    name
        The file's final name: a name ending in ``.gz`` must be gzip.

    Raises
    ------
    ContentError
        An HTML/XML/JSON page or an empty body; for ``h5ad``/``10x_h5`` anything but a readable
        HDF5 file; for a ``.gz`` name anything but readable gzip.
    """
    found = sniff(path)
    if found.kind in ERROR_BODIES:
        raise ContentError(f"the server sent {found.describe()} instead of the file")
    name = name or Path(path).name
    if expect in ("h5ad", "10x_h5"):
        if found.kind == "hdf5_unreadable":
            raise ContentError(f"the download is {found.describe()}")
        if found.kind not in HDF5_KINDS:
            raise ContentError(f"the download is {found.describe()}, not HDF5 (an {expect} file is HDF5)")
        return found
    if name.endswith(".gz") and found.kind not in ("gzip", "mtx_file", "html"):
        if found.kind == "gzip_unreadable":
            raise ContentError(f"the download is {found.describe()}")
        raise ContentError(f"the download is {found.describe()}, not gzip as its name ({name}) says")
    if found.kind == "gzip_unreadable":
        raise ContentError(f"the download is {found.describe()}")
    if expect == "text" and found.kind not in ("text", "gzip"):
        raise ContentError(f"the download is {found.describe()}, not text")
    return found


def _set_format(entry_name: str | None) -> str:
    return f" in registry entry '{entry_name}'" if entry_name else " in the registry entry"


def format_problem(path: str | os.PathLike, declared: str, entry_name: str | None = None,
                   local: bool = False) -> str | None:
    """A one-line message when ``path`` cannot be read as ``declared``; None when it can be tried.

    Parameters
    ----------
    path
        A raw file or Matrix Market directory.
    declared
        The registry ``format`` (``h5ad``, ``10x_h5`` or ``mtx``).
    entry_name
        The registry entry, named in the message.
    local
        The file is the user's own (``source: local``): never advise deleting it.
    """
    found = sniff(path)
    where = _set_format(entry_name)
    if found.kind == declared or (declared == "h5ad" and found.kind == "h5ad"):
        return None
    fix_bad = ("replace it with the right file (it is your own file: nothing was deleted)" if local
               else "delete it and re-run to download it again")
    if found.kind == "missing":
        return None  # the caller names a missing file
    if found.kind in ("h5ad", "10x_h5", "mtx"):
        extra = " (and counts: if the raw counts are not in X)" if found.kind == "h5ad" else ""
        return f"{path} is {found.describe()}, not {declared}: set format: {found.kind}{extra}{where}."
    if found.kind == "mtx_file":
        return (
            f"{path} is {found.describe()}; format mtx reads the whole Cell Ranger folder (matrix.mtx.gz, "
            f"features.tsv.gz, barcodes.tsv.gz): put the three files in one folder, give that folder as "
            f"path: and set format: mtx{where} (source: local)."
        )
    if found.kind == "loom":
        return (
            f"{path} is {found.describe()}, which sclinbench does not read: convert it once with "
            f"python -c \"import anndata; anndata.read_loom('{path}').write_h5ad('converted.h5ad')\" and list "
            f"the .h5ad{where}."
        )
    if found.kind == "hdf5":
        return (
            f"{path} is {found.describe()}; sclinbench reads AnnData h5ad (format: h5ad) and Cell Ranger "
            f"HDF5 (format: 10x_h5): check the file{where}."
        )
    if found.kind in ("gzip", "gzip_unreadable") and declared in ("h5ad", "10x_h5"):
        return (
            f"{path} is {found.describe()}, not {declared}: decompress it (gunzip) and list the "
            f"decompressed file{where}."
        )
    if found.kind == "zip":
        return f"{path} is {found.describe()}: unpack it and list the file inside{where}."
    if found.kind in ERROR_BODIES:
        return f"{path} is {found.describe()}, not a {declared} data file: {fix_bad}."
    if found.kind == "directory":
        return (
            f"{path} is {found.describe()}; format {declared} expects a file (format: mtx reads a Cell Ranger "
            f"Matrix Market folder){where}."
        )
    if declared == "mtx":
        return None  # let the Matrix Market reader say what is missing
    if found.kind in ("text", "binary"):
        return f"{path} is {found.describe()}, not {declared}: check format:{where}, or the file ({fix_bad})."
    return None  # hdf5_unreadable and the rest: the reader's error says truncated or corrupt
