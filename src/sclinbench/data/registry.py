"""Checks of the dataset registry that run when the Snakefile is parsed, and raw-file naming.

Everything here raises :class:`~sclinbench.errors.SclinbenchError` with the fix before any job
starts: names that cannot be file names, URLs that name a directory, the same file listed twice,
a ``source: local`` file that is not there. It also gives every registry file its own raw path
(:func:`raw_name`), the one summary line about unpinned and plain-HTTP downloads
(:func:`download_summary`) and the hint appended to a 404 of a CELLxGENE file (:func:`fetch_hint`).
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from sclinbench.errors import SclinbenchError
from sclinbench.workflow.io import sha256_text

NAME_PATTERN = "[A-Za-z0-9_]+"
_NAME = re.compile(NAME_PATTERN)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
URL_SCHEMES = ("http", "https", "file")
CELLXGENE_COLLECTIONS = "https://cellxgene.cziscience.com/collections/"


def check_name(name, kind: str, source: str) -> None:
    """Refuse a dataset or task name that cannot be part of an output path."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        suggestion = _SAFE.sub("_", str(name).replace("-", "_").replace(".", "_")).strip("_") or "my_data"
        raise SclinbenchError(
            f"{kind} name {str(name)!r} in {source} is not allowed: names must match {NAME_PATTERN} "
            f"(letters, digits, underscore; they become file names); rename it, e.g. {suggestion!r}"
        )


def url_file_name(url: str) -> str:
    """The last path segment of ``url`` (percent-decoded), as the server would name the file."""
    return unquote(posixpath.basename(urlparse(url).path))


def check_url(url: str, where: str) -> None:
    """Refuse a URL that cannot name one file: wrong scheme, no path, ending in ``/``, ``.`` or ``..``."""
    parsed = urlparse(url)
    if parsed.scheme not in URL_SCHEMES:
        raise SclinbenchError(
            f"{where}: url {url!r} does not start with {', '.join(s + '://' for s in URL_SCHEMES)}; "
            f"give the full address of the file"
        )
    if parsed.scheme != "file" and not parsed.netloc:
        raise SclinbenchError(f"{where}: url {url!r} has no host name; give the full address of the file")
    path = parsed.path
    last = path.rstrip("/").rsplit("/", 1)[-1] if path else ""
    if not path or path.endswith("/") or last in (".", "..") or unquote(last) in (".", ".."):
        raise SclinbenchError(
            f"{where}: url {url!r} names a directory, not a file (it ends in '/', '.' or '..'); "
            f"give the address of the file itself, e.g. .../filtered_feature_bc_matrix.h5"
        )
    if ".." in unquote(path).split("/"):
        raise SclinbenchError(
            f"{where}: url {url!r} contains a '..' segment; give the address of the file without '..'"
        )


def raw_name(url: str) -> str:
    """File name of a download under ``resources/raw/<dataset>/``: ``<8 hex of sha256(url)>-<name>``.

    Two registry files with the same last path segment (Cell Ranger's
    ``filtered_feature_bc_matrix.h5`` in two folders) get two names; reordering the files of an
    entry keeps each name.
    """
    base = _SAFE.sub("_", url_file_name(url)).strip("._") or "file"
    return f"{sha256_text(url)[:8]}-{base[:100]}"


def raw_path(dataset: str, url: str) -> str:
    return f"resources/raw/{dataset}/{raw_name(url)}"


def legacy_raw_path(dataset: str, entry: dict, url: str) -> str | None:
    """Where sclinbench < 0.2 put this download (``resources/raw/<dataset>/<last segment>``), if that
    name was unique in the entry (otherwise the old file is ambiguous and is not reused)."""
    name = os.path.basename(urlparse(url).path)
    if not name:
        return None
    same = [f for f in entry.get("files") or [] if f.get("url")
            and os.path.basename(urlparse(f["url"]).path) == name]
    return f"resources/raw/{dataset}/{name}" if len(same) == 1 else None


def url_file(dataset: str, entry: dict, filename: str) -> dict:
    """The file spec of entry ``dataset`` whose raw name is ``filename``."""
    for spec in entry.get("files") or []:
        if spec.get("url") and raw_name(spec["url"]) == filename:
            return spec
    known = ", ".join(raw_name(f["url"]) for f in entry.get("files") or [] if f.get("url")) or "none"
    raise SclinbenchError(f"no file '{filename}' with a url in registry entry '{dataset}' (its files: {known})")


def used_datasets(registry: dict, datasets) -> list[str]:
    """The datasets a run needs: those of its tasks plus the members of collections among them."""
    out, stack = [], list(datasets)
    while stack:
        name = stack.pop(0)
        if name in out or name not in registry:
            continue
        out.append(name)
        stack.extend((registry[name].get("members") or {}).values())
    return out


def check_registry(registry: dict, source: str, used=(), workdir: str | os.PathLike | None = None) -> None:
    """Checks that need no download, run when the Snakefile is parsed.

    Parameters
    ----------
    registry
        Name -> entry (already validated against config/datasets.schema.yaml).
    source
        The registry file, named in messages.
    used
        Datasets this run needs (see :func:`used_datasets`): only their local files must exist.
    workdir
        Directory relative ``path:`` values are read from (snakemake's working directory).
    """
    workdir = Path(workdir or os.getcwd())
    for name, entry in registry.items():
        check_name(name, "dataset", source)
        where = f"registry entry '{name}' in {source}"
        seen: dict[str, int] = {}
        for i, spec in enumerate(entry.get("files") or []):
            key = spec.get("url") or spec.get("path")
            if spec.get("url"):
                check_url(spec["url"], f"{where}, files[{i}]")
            if key in seen:
                raise SclinbenchError(
                    f"{where}: files[{seen[key]}] and files[{i}] are the same file ({key}); its cells would "
                    f"be counted twice: list each file once"
                )
            seen[key] = i
        for organism, member in (entry.get("members") or {}).items():
            if member not in registry:
                raise SclinbenchError(
                    f"{where}: member {member!r} (members.{organism}) is not in the registry; add it or fix the name"
                )
        orth = entry.get("orthologs") or {}
        if name in used and orth.get("source") == "file":
            paths = orth.get("path")
            if not paths:
                raise SclinbenchError(f"{where}: orthologs.source is file but orthologs.path is not set; give the table's path")
            for p in paths.values() if isinstance(paths, dict) else [paths]:
                _must_exist(p, workdir, f"{where}: ortholog table", "orthologs.path")
    for name in used:
        entry = registry.get(name) or {}
        if entry.get("source") != "local":
            continue
        for i, spec in enumerate(entry.get("files") or []):
            _must_exist(spec["path"], workdir, f"registry entry '{name}' in {source}: local file",
                        f"files[{i}].path")


def _must_exist(path: str, workdir: Path, what: str, key: str) -> None:
    full = Path(path) if Path(path).is_absolute() else workdir / path
    if not full.exists():
        rel = "" if Path(path).is_absolute() else f" (relative paths are read from {workdir})"
        raise SclinbenchError(f"{what} {path!r} ({key}) does not exist{rel}; fix {key} or put the file there")


def download_summary(registry: dict, used, lock: dict | None = None) -> str | None:
    """One line about the downloads of this run that nothing pins and those over plain HTTP.

    ``lock`` is the lock file's ``{url: record}`` (see :func:`sclinbench.data.lock.read_lock`):
    a file recorded there is checked against that record, but it was trusted on first use.
    """
    lock = lock or {}
    urls = [(name, spec["url"], spec) for name in used
            for spec in (registry.get(name) or {}).get("files") or [] if spec.get("url")]
    if not urls:
        return None
    unpinned = [(n, u) for n, u, s in urls if not s.get("sha256")]
    recorded = [u for _, u in unpinned if u in lock]
    plain = [(n, u) for n, u, _ in urls if urlparse(u).scheme == "http"]
    parts = []
    if unpinned:
        shown = ", ".join(sorted({n for n, _ in unpinned})[:4]) + (", ..." if len({n for n, _ in unpinned}) > 4 else "")
        parts.append(
            f"{len(unpinned)} of {len(urls)} download(s) have no sha256 in the registry ({shown}); "
            f"{len(recorded)} of them are checked against the checksum recorded in resources/checksums.lock.tsv "
            f"on first download, the rest will be recorded when downloaded (trust on first use): add sha256: "
            f"to pin them"
        )
    if plain:
        shown = ", ".join(sorted({n for n, _ in plain})[:4])
        parts.append(f"{len(plain)} use plain http:// without transport security ({shown}): use https:// where the server offers it")
    return "sclinbench warning: " + "; ".join(parts) if parts else None


def fetch_hint(entry: dict, spec: dict) -> str | None:
    """Text appended to a 404/410 of this file: where a retired CELLxGENE dataset version went.

    Uses the optional keys ``collection_id`` and ``dataset_version_id`` of the file or the entry;
    None when neither is there.
    """
    collection = spec.get("collection_id") or entry.get("collection_id")
    version = spec.get("dataset_version_id") or entry.get("dataset_version_id")
    if not collection and not version:
        return None
    text = "this file"
    if version:
        text += f" is CELLxGENE dataset version {version}"
    if collection:
        text += (" and" if version else "") + f" belongs to CELLxGENE collection {CELLXGENE_COLLECTIONS}{collection}"
    return text + ("; CELLxGENE retires dataset versions, a newer version may replace this URL "
                   "(open the collection, copy the new .h5ad link into the registry, remove its sha256/size)")
