"""Job records: what each workflow job ran, and which code made the results on disk.

Each job logs a record of what it ran (:func:`log_job`, called by
:func:`sclinbench.workflow.io.script_errors`): rule, code fingerprint
(:mod:`sclinbench.workflow.fingerprint`), package version, input and output files.
:func:`code_provenance` follows those records back from the final results through the files they
were computed from, which gives per step the code that made the files on disk and which of them
were made by other code than the installed one (``results/provenance.json``, ``results/README.md``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from sclinbench.workflow.fingerprint import PACKAGE, changed_modules

RECORD_MARK = "job record: "


def package_version() -> str:
    try:
        from sclinbench import __version__
        return str(__version__)
    except ImportError:  # pragma: no cover - the package always has a version
        return "unknown"


def log_job(logger: logging.Logger | None = None) -> dict | None:
    """Log what this Snakemake job runs with: rule, code fingerprint, version, input, output files.

    Called at the start of every script (:func:`sclinbench.workflow.io.script_errors`); reads the
    ``snakemake`` object Snakemake gives the script. Outside a Snakemake job it does nothing.
    """
    sm = getattr(sys.modules.get("__main__"), "snakemake", None)
    if sm is None or not hasattr(sm, "output"):
        return None
    record = {
        "rule": getattr(sm, "rule", None),
        "code": getattr(getattr(sm, "params", None), "code", None),
        "version": package_version(),
        "started_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": [str(f) for f in getattr(sm, "input", [])],
        "output": [str(f) for f in sm.output],
    }
    if record["code"] is not None and not isinstance(record["code"], str):
        record["code"] = str(record["code"])
    (logger or logging.getLogger(PACKAGE)).info("%s%s", RECORD_MARK, json.dumps(record, sort_keys=True))
    return record


def read_job_records(logs_dir: str | os.PathLike, max_lines: int = 20) -> list[dict]:
    """Every job record found near the top of a log file under ``logs_dir``."""
    records = []
    for path in sorted(Path(logs_dir).rglob("*")):
        if not path.is_file():
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for _, line in zip(range(max_lines), handle):
                    at = line.find(RECORD_MARK)
                    if at >= 0:
                        rec = json.loads(line[at + len(RECORD_MARK):])
                        rec["log"] = str(path)
                        records.append(rec)
                        break
        except (OSError, ValueError):
            continue
    return records


def code_provenance(results: Iterable[str], records: Iterable[Mapping],
                    installed: Mapping[str, str | None], version: str | None = None,
                    measurements: str | None = None) -> dict:
    """Which code made the files ``results`` were computed from, per step.

    Starting from ``results`` (files on disk), each file's job record (the newest that lists it as
    output) names the rule, code and version that made it and the files that job read; those are
    followed in turn. Files without a record are source files (config, bundled or local data) or
    were made without a record (before records existed, or their logs were deleted). Files under
    the folder ``measurements`` (Snakemake's benchmark records, read by the runtime figure) measure
    jobs rather than carry data, and are left out.

    Returns ``{"version", "installed", "steps": {rule: {"installed", "made_by": [{"code",
    "version", "files", "installed_code"}]}}, "other_code": [...], "without_record": [...]}``.
    """
    version = version or package_version()
    by_output: dict[str, Mapping] = {}
    for rec in sorted(records, key=lambda r: str(r.get("started_utc", ""))):
        for f in rec.get("output", []):
            by_output[os.path.normpath(f)] = rec  # the newest record of a file wins
    steps: dict[str, dict] = {}
    other, without = [], []
    seen: set[str] = set()
    skip = os.path.normpath(measurements) + os.sep if measurements else None
    todo = [os.path.normpath(f) for f in results]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        if skip and f.startswith(skip):
            continue
        rec = by_output.get(f)
        if rec is None or not os.path.exists(f):
            without.append(f)
            continue
        rule = str(rec.get("rule"))
        step = steps.setdefault(rule, {"installed": installed.get(rule), "made_by": []})
        key = (rec.get("code"), rec.get("version"))
        entry = next((m for m in step["made_by"] if (m["code"], m["version"]) == key), None)
        if entry is None:
            current = rec.get("code") is None and rule not in installed or (
                rule in installed and rec.get("code") == installed[rule])
            entry = {"code": key[0], "version": key[1], "files": 0, "installed_code": current}
            step["made_by"].append(entry)
        entry["files"] += 1
        if not entry["installed_code"]:
            other.append({"file": f, "rule": rule, "code": key[0], "version": key[1],
                          "installed": installed.get(rule),
                          "changed": changed_modules(key[0], installed.get(rule))})
        todo.extend(os.path.normpath(x) for x in rec.get("input", []))
    return {"version": version, "installed": dict(sorted(installed.items())),
            "steps": dict(sorted(steps.items())),
            "other_code": sorted(other, key=lambda o: (o["rule"], o["file"])),
            "without_record": sorted(without)}
