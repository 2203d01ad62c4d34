"""What produced a run: package versions, config hash, git commit, dataset checksums, and code.

``results/provenance.json`` / ``provenance.md``; :func:`code_lines` is the section of the results
README that says which code made the results on disk.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

import pandas as pd

from sclinbench.report.markdown import to_markdown, write_text
from sclinbench.workflow.io import sha256_text

DEFAULT_PACKAGES = ("sclinbench", "snakemake", "scanpy", "anndata", "scikit-learn", "numpy",
                    "scipy", "pandas", "matplotlib", "h5py", "pyarrow", "pyyaml")


def config_hash(config: Mapping) -> str:
    """sha256 of the config as canonical JSON (sorted keys), independent of YAML formatting."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return sha256_text(text)


def _git(repo_dir: Path, *args: str) -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def provenance(config: Mapping, datasets_checksums: Mapping[str, str],
               packages: Iterable[str] = DEFAULT_PACKAGES, repo_dir: str | os.PathLike = ".",
               extra: Mapping | None = None, code: Mapping | None = None) -> dict:
    """What produced these results: versions, config hash, git commit, dataset checksums, code.

    Parameters
    ----------
    config
        The workflow config as loaded (a dict).
    datasets_checksums
        Dataset name -> sha256 of its raw file (as recorded at fetch/standardize time).
    packages
        Distribution names whose installed versions are recorded (``"not installed"`` if absent).
    repo_dir
        Git work tree of the workflow; commit is ``"unknown"`` outside git.
    extra
        Anything else to record (merged at the top level).
    code
        Which code made each step's files (:func:`sclinbench.workflow.records.code_provenance`),
        recorded under ``"code"``.
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    repo = Path(repo_dir)
    commit = _git(repo, "rev-parse", "HEAD") or "unknown"
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    prov = {
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": commit,
        "git_dirty": None if dirty is None else bool(dirty),
        "config_sha256": config_hash(config),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": versions,
        "datasets_sha256": {str(k): str(v) for k, v in sorted(datasets_checksums.items())},
    }
    if code is not None:
        prov["code"] = dict(code)
    if extra:
        prov.update(dict(extra))
    return prov


def code_lines(prov: Mapping | None) -> list[str]:
    """Markdown: which code made the results on disk, and any file made by other code than the installed."""
    code = (prov or {}).get("code")
    if not code:
        return []
    version = code.get("version", "unknown")
    other = code.get("other_code", [])
    n_recorded = sum(m["files"] for step in code.get("steps", {}).values() for m in step["made_by"])
    lines = ["## Code that made these results\n"]
    if other:
        rows = {}
        for o in other:
            row = rows.setdefault(o["rule"], {"step": o["rule"], "files": 0, "changed modules": set(),
                                              "made by version": set(), "e.g.": f"`{o['file']}`"})
            row["files"] += 1
            row["changed modules"].update(o["changed"] or ["(not fingerprinted)"])
            row["made by version"].add(str(o["version"]))
        table = pd.DataFrame([{**r, "changed modules": ", ".join(sorted(r["changed modules"])),
                               "made by version": ", ".join(sorted(r["made by version"]))}
                              for r in rows.values()])
        lines += [f"**{len(other)} of {n_recorded} result files (and whatever was computed from them) were "
                  f"made by other code than the installed sclinbench {version}.** Run `snakemake` with "
                  "its default rerun triggers (not `--rerun-triggers mtime`) to remake them.\n",
                  to_markdown(table)]
    else:
        lines.append(f"All {n_recorded} result files these tables and figures were computed from that have "
                     f"a job record were made by the installed sclinbench {version} (per-step code "
                     "fingerprints in `provenance.json`).")
    without = code.get("without_record", [])
    if without:
        shown = ", ".join(f"`{f}`" for f in without[:5]) + (f" and {len(without) - 5} more" if len(without) > 5 else "")
        lines.append(f"\nWithout a job record (source files, or results whose log is gone): {shown}.")
    return lines + [""]


def write_provenance(prov: Mapping, json_path: str | os.PathLike,
                     md_path: str | os.PathLike | None = None) -> None:
    """Write :func:`provenance` output as JSON and (optionally) a Markdown summary, atomically."""
    write_text(json.dumps(prov, indent=2, sort_keys=True, default=str) + "\n", json_path)
    if md_path is None:
        return
    lines = ["# Provenance\n",
             f"- created (UTC): {prov.get('created_utc', 'unknown')}",
             f"- git commit: `{prov.get('git_commit', 'unknown')}`"
             + (" (work tree had uncommitted changes)" if prov.get("git_dirty") else ""),
             f"- config sha256: `{prov.get('config_sha256', 'unknown')}`",
             f"- Python {prov.get('python', '?')} on {prov.get('platform', '?')}\n",
             "## Packages\n",
             to_markdown(pd.DataFrame(sorted(prov.get("packages", {}).items()),
                                      columns=["package", "version"])),
             "\n## Datasets (sha256 of the raw file)\n",
             to_markdown(pd.DataFrame(sorted(prov.get("datasets_sha256", {}).items()),
                                      columns=["dataset", "sha256"]))]
    if prov.get("code"):
        steps = [{"step": rule, "installed code": f"`{step['installed']}`",
                  "files made by it": sum(m["files"] for m in step["made_by"] if m["installed_code"]),
                  "by other code": sum(m["files"] for m in step["made_by"] if not m["installed_code"])}
                 for rule, step in prov["code"].get("steps", {}).items()]
        lines += ["\n" + "\n".join(code_lines(prov)), to_markdown(pd.DataFrame(steps))]
    write_text("\n".join(lines), md_path)
