"""House style, checked by the test command (and so by CI): ruff (rules in pyproject.toml) on the
Python tree and snakefmt on the Snakefile and rules/. Both come with the test extras."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def tool(name):
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it comes with the test extras (pip install -e '.[test]')")
    return found


def test_ruff_is_clean():
    out = subprocess.run([tool("ruff"), "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_are_snakefmt_clean():
    out = subprocess.run([tool("snakefmt"), "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_rule_declares_log_benchmark_threads_and_resources():
    """The catalog style: every rule that runs a job has log:, benchmark:, threads: and resources:
    (the target rule ``all`` only collects inputs)."""
    import re

    missing = []
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        text = path.read_text()
        starts = [(m.start(), m.group(1)) for m in re.finditer(r"^rule (\w+):", text, flags=re.M)]
        for i, (start, name) in enumerate(starts):
            block = text[start:starts[i + 1][0] if i + 1 < len(starts) else len(text)]
            head, _, body = block.partition("\n")
            block = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]  # up to the next top-level line
            if name == "all":
                continue
            lacks = [d for d in ("log:", "benchmark:", "threads:", "resources:") if f"\n    {d}" not in block]
            if lacks:
                missing.append(f"{path.name}: rule {name} lacks {', '.join(lacks)}")
    assert len(starts) > 0
    assert not missing, missing
