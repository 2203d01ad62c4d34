"""Run workflows through ``profiles/slurm`` on a real (one-node) SLURM cluster.

Start the cluster first (root, Debian 12)::

    bash tests/cluster/start_cluster.sh
    .venv/bin/pytest tests/cluster -m cluster -q

Every test is skipped, with the reason, when ``sinfo`` is missing or no
SLURM node is usable. See tests/cluster/README.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_workflow  # tests/conftest.py: the workflow files, without results

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SLURM_PROFILE = REPO / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "profiles" / "default"
START_HINT = "start it with: sudo bash tests/cluster/start_cluster.sh"

# The test cluster has no accounting database (sacct does not work), so job
# states come from squeue; the status-check delays are lowered from the
# plugin's 40 s default only to keep the test short.
SLURM_ARGS = [
    "--executor", "slurm",
    "--slurm-status-command", "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "2",
    "--seconds-between-status-checks", "2",
]
# Files and folders of the project's workflow copied into a scratch directory.
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}


def cluster_down_reason() -> str | None:
    """Why the SLURM cluster cannot run jobs, or None when it can.

    Returns
    -------
    str or None
        A one-line reason suitable for ``pytest.skip``.
    """
    if shutil.which("sinfo") is None:
        return f"SLURM is not installed ('sinfo' not on PATH); {START_HINT}"
    try:
        proc = subprocess.run(
            ["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return f"'sinfo' timed out: slurmctld is not answering; {START_HINT}"
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no output"])[0]
        return f"SLURM cluster is not up (sinfo: {first}); {START_HINT}"
    states = {state.strip("*~#!%$@^-") for state in proc.stdout.split()}
    if not states & USABLE_NODE_STATES:
        return f"no usable SLURM node (sinfo node states: {sorted(states) or 'none'}); {START_HINT}"
    return None


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    """Skip the test unless a SLURM cluster with a usable node answers.

    With ``SCLINBENCH_REQUIRE_CLUSTER=1`` (CI) a missing cluster fails the test
    instead, so CI cannot pass by skipping.
    """
    reason = cluster_down_reason()
    if reason is not None:
        if os.environ.get("SCLINBENCH_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"SCLINBENCH_REQUIRE_CLUSTER=1 but {reason}")
        pytest.skip(reason)


def job_env() -> dict[str, str]:
    """Environment for snakemake, inherited by its jobs (sbatch --export=ALL).

    Puts this interpreter's venv first on PATH so shell commands in the jobs
    find the same ``python``/``snakemake`` as the submitting process.
    """
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = sys.prefix
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
        del env[var]  # never leak an enclosing allocation's settings into sbatch
    return env


def run_snakemake(workdir: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``python -m snakemake <args>`` in ``workdir``; fail with its log tail."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=job_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        slurm_logs = sorted((workdir / "logs" / "slurm").rglob("*.log"))
        tails = "\n".join(
            f"--- {log}\n{log.read_text(errors='replace')[-2000:]}" for log in slurm_logs[-3:]
        )
        pytest.fail(
            f"snakemake {' '.join(args)} failed in {workdir} (exit {proc.returncode})\n"
            f"--- stdout (tail)\n{proc.stdout[-4000:]}\n--- stderr (tail)\n{proc.stderr[-6000:]}\n"
            f"{tails}"
        )
    return proc


def assert_same_metrics(observed: pd.DataFrame, expected: pd.DataFrame, atol: float = 1e-9) -> None:
    """Assert two tidy metrics tables hold the same rows and values within ``atol``.

    Rows are matched on every column except ``value``; row order is ignored and
    NaN equals NaN.
    """
    assert list(observed.columns) == list(expected.columns)
    keys = [c for c in expected.columns if c != "value"]
    for name, table in (("observed", observed), ("expected", expected)):
        dup = table.duplicated(keys)
        assert not dup.any(), f"{name} metrics repeat a key: {table.loc[dup, keys].head(3).to_dict('records')}"
    merged = expected.astype({k: str for k in keys}).merge(
        observed.astype({k: str for k in keys}),
        on=keys, how="outer", suffixes=("_expected", "_observed"), indicator=True,
    )
    unmatched = merged[merged["_merge"] != "both"]
    assert unmatched.empty, f"rows only in one table:\n{unmatched[keys + ['_merge']].head(10)}"
    close = np.isclose(
        merged["value_observed"].astype(float), merged["value_expected"].astype(float),
        rtol=0.0, atol=atol, equal_nan=True,
    )
    assert close.all(), f"values differ by more than {atol}:\n{merged.loc[~close].head(10)}"


def test_assert_same_metrics_matches_on_keys_not_order() -> None:
    """The comparison ignores row order, tolerates 1e-12 and catches real changes."""
    expected = pd.DataFrame(
        {"pipeline": ["p", "p", "q"], "fold": [0, 1, 0], "metric": ["f1"] * 3, "value": [0.5, np.nan, 0.25]}
    )
    shuffled = expected.iloc[[2, 0, 1]].reset_index(drop=True)
    shuffled.loc[0, "value"] += 1e-12
    assert_same_metrics(shuffled, expected)
    changed = expected.copy()
    changed.loc[2, "value"] = 0.26
    with pytest.raises(AssertionError, match="differ"):
        assert_same_metrics(changed, expected)
    with pytest.raises(AssertionError, match="only in one table"):
        assert_same_metrics(expected.iloc[:2], expected)


def test_toy_workflow_runs_through_slurm_and_retries_with_more_memory(
    slurm_cluster: None, tmp_path: Path
) -> None:
    """3 jobs (probe a, probe b -> combine) each run as a SLURM job.

    ``probe b`` fails on purpose on attempt 1; ``retries: 2`` in the profile
    resubmits it and the rule's ``mem_mb = 200 * attempt`` /
    ``runtime = 2 * attempt`` must reach sbatch as 400 MB / 4 min.
    """
    shutil.copy(HERE / "Snakefile", tmp_path / "Snakefile")
    run_snakemake(
        tmp_path,
        ["--profile", str(SLURM_PROFILE), *SLURM_ARGS, "--config", "fail_first_attempt=b"],
        timeout=600,
    )
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t", dtype=str).set_index("sample")
    assert sorted(summary.index) == ["a", "b"]
    # every job was its own SLURM job, and found the submitting venv's python
    assert summary["slurm_job_id"].str.fullmatch(r"\d+").all(), summary
    assert summary["slurm_job_id"].nunique() == 2
    assert (summary["python_prefix"] == sys.prefix).all(), summary
    # first attempt: what the rule asked for
    assert summary.loc["a", ["attempt", "mem_mb", "slurm_min_memory", "slurm_time_limit"]].tolist() == [
        "1", "200", "200M", "2:00",
    ]
    # the retry asked SLURM for twice the memory and time
    assert summary.loc["b", ["attempt", "mem_mb", "slurm_min_memory", "slurm_time_limit"]].tolist() == [
        "2", "400", "400M", "4:00",
    ]


# The slice of the embedded default submitted by default: cell typing on both datasets (synthesize,
# standardize, split, evaluate of both representations, score). The whole default DAG
# through SLURM took ~430 s of a CI run limited to 20 minutes; SCLINBENCH_CLUSTER_CONFIGFILE runs a
# whole configuration both ways instead.
SLICE = [f"results/scores/dataset~{d}/task~celltype_stratified.tsv" for d in ("pbmc68k", "atlas")]


def test_project_workflow_on_slurm_matches_local_run(slurm_cluster: None, default_run, tmp_path: Path) -> None:
    """The project's own rules through profiles/slurm give the local run's numbers.

    By default the cell-typing slice of the embedded default (``SLICE``) is submitted and its score
    tables are compared with the test session's ``default_run`` (tests/conftest.py), so only the
    cluster run costs time here. ``SCLINBENCH_CLUSTER_CONFIGFILE`` (path relative to the repository)
    runs that whole configuration both ways and compares results/metrics.tsv.
    """
    configfile = os.environ.get("SCLINBENCH_CLUSTER_CONFIGFILE")
    extra = ["--configfile", configfile] if configfile else []
    if configfile:
        local = copy_workflow(tmp_path / "local")
        run_snakemake(local, ["--profile", str(LOCAL_PROFILE), "--cores", "2", *extra], timeout=3600)
        targets, compared = [], ["results/metrics.tsv"]
    else:
        local, _ = default_run
        targets = compared = SLICE
    cluster = copy_workflow(tmp_path / "slurm")
    run_snakemake(cluster, ["--profile", str(SLURM_PROFILE), *SLURM_ARGS, *extra, *targets], timeout=3600)
    for rel in compared:
        expected = pd.read_csv(local / rel, sep="\t")
        observed = pd.read_csv(cluster / rel, sep="\t")
        assert len(expected) > 0, f"the local run wrote an empty {rel}"
        assert_same_metrics(observed, expected, atol=1e-9)
