"""sclinbench.workflow.io: temporaries left by a killed step are removed when the step next runs; logs of
failed steps are never empty."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from sclinbench.workflow.io import atomic_path, write_table


def test_stale_temporaries_of_a_killed_step_are_removed(tmp_path):
    out = tmp_path / "scores.tsv"
    # what a SIGKILL during write_table leaves: a hidden 0-byte (or partial) temporary
    stale = [tmp_path / ".scores.tsv.ab1_cd2z.part", tmp_path / ".scores.tsv.00000000.part"]
    for path in stale:
        path.write_bytes(b"")
    others = [tmp_path / ".scores.tsv.gz.ab1_cd2z.part",  # another output's temporary
              tmp_path / "scores.tsv.part",                 # a resumable download, not ours
              tmp_path / ".scores.tsv.short.part"]
    for path in others:
        path.write_bytes(b"keep")
    write_table(pd.DataFrame({"a": [1]}), out)
    assert out.read_text() == "a\n1\n"
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in others)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["scores.tsv"] + [p.name for p in others])


def test_a_killed_writer_leaves_only_its_temporary(tmp_path):
    out = tmp_path / "x.bin"
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]); from sclinbench.workflow.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    open(tmp, 'wb').write(b'half'); os._exit(9)\n")
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    subprocess.run([sys.executable, "-c", code, str(out), src], check=False)
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(leftovers) == 1 and not out.exists()
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"whole")
    assert out.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_unexpected_error_is_written_to_the_log(tmp_path):
    log = tmp_path / "job.log"
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from sclinbench.workflow.io import script_errors\n"
            "with script_errors(sys.argv[1]):\n    {}['reference_species']\n")
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    proc = subprocess.run([sys.executable, "-c", code, str(log), src], capture_output=True, text=True)
    assert proc.returncode != 0
    text = log.read_text()
    assert "KeyError: 'reference_species'" in text and "please report it" in text
