import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_PARTS = ["Snakefile", "rules", "scripts", "config", "src", "envs", "report", "profiles"]


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (no results, no resources) in ``dest``.

    ``__pycache__`` is copied with its modification times: the jobs import the copy's ``src`` (the
    scripts put it first on ``sys.path``), and numba's on-disk cache of the package's kernels
    (``*.nbi``/``*.nbc``, checked against the source file's time and size, as ``*.pyc`` are) then
    loads instead of compiling again in every copy (2-7 s per kernel and job process). A test that
    edits a source file in the copy changes its time, so that file is compiled afresh."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dest / part)
    return dest


def paper_configfiles(workdir: Path) -> list[str]:
    """``--configfile`` arguments of the paper configuration in ``workdir``.

    config/paper.yaml holds donors out one at a time (``split: leave_one_donor_out``). While the
    workflow's schema does not know that split yet, a stand-in file runs those tasks as a 2-fold
    donor split instead -- the same requirement (>= 2 donors) for the manifest check.
    """
    import yaml

    schema = yaml.safe_load((workdir / "config" / "schema.yaml").read_text())
    if "leave_one_donor_out" in schema["$defs"]["task"]["properties"]["split"]["enum"]:
        return ["config/paper.yaml"]
    paper = yaml.safe_load((workdir / "config" / "paper.yaml").read_text())
    stand_in = {"tasks": {name: {"split": "donor", "n_folds": 2} for name, spec in paper["tasks"].items()
                          if spec.get("split") == "leave_one_donor_out"}}
    (workdir / "lodo_stand_in.yaml").write_text(yaml.safe_dump(stand_in))
    return ["config/paper.yaml", "lodo_stand_in.yaml"]


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True,
                          env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The embedded default workflow, run once per test process (once per pytest-xdist worker
    with TEST_WORKERS=N)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("default_run"))
    proc = run_snakemake(workdir)
    return workdir, proc
