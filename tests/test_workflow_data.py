"""The data stage through the real workflow: raw paths, downloads, hand-placed files, names, labels,
users' ortholog tables, stale locks (issue 12). Downloads come from a loopback HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import REPO, copy_workflow, paper_configfiles, run_snakemake

pytestmark = pytest.mark.workflow

PATIENTS = REPO / "tests" / "data" / "liao2020" / "patients"
C144 = PATIENTS / "C144_subset_filtered_feature_bc_matrix.h5"
C146 = PATIENTS / "C146_subset_filtered_feature_bc_matrix.h5"
TENX = "filtered_feature_bc_matrix.h5"


class _Files(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        body = body if body is not None else b"not found"
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def files_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    httpd.daemon_threads = True
    httpd.files, httpd.requests = {}, []
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def workdir(tmp_path):
    return copy_workflow(tmp_path / "wf")


def _add_registry(workdir: Path, text: str) -> None:
    with open(workdir / "config" / "datasets.yaml", "a") as fh:
        fh.write("\n" + text)


def _task_config(workdir: Path, dataset: str, extra: str = "") -> str:
    (workdir / "mine.yaml").write_text(
        f"use_tasks: [mine]\ntasks:\n  mine: {{kind: celltype, split: stratified, n_folds: 3, datasets: [{dataset}]}}\n"
        + extra)
    return "mine.yaml"


def _sclinbench_lines(proc) -> list[str]:
    text = proc.stdout + proc.stderr
    return [line for line in text.splitlines() if "sclinbench error" in line or "SclinbenchError" in line]


def _tenx_entry(name: str, base: str, sha: dict | None = None) -> str:
    sha = sha or {}
    lines = [f"{name}:", "  source: url", "  format: 10x_h5", "  organism: Homo sapiens",
             "  columns: {donor_id: donor_id}", "  var_columns: {gene_symbol: gene_symbols}", "  files:"]
    for run, donor in (("run1", "C144"), ("run2", "C146")):
        lines.append(f"    - url: {base}/{run}/outs/{TENX}")
        if run in sha:
            lines.append(f"      sha256: {sha[run]}")
        lines.append(f"      obs: {{donor_id: {donor}}}")
    return "\n".join(lines) + "\n"


def test_two_same_named_url_files_are_both_fetched_and_read(workdir, files_server):
    """Issue 12: two files named filtered_feature_bc_matrix.h5 collapsed into one raw file (exit 0)."""
    base, httpd = files_server
    httpd.files = {f"/run1/outs/{TENX}": C144.read_bytes(), f"/run2/outs/{TENX}": C146.read_bytes()}
    _add_registry(workdir, _tenx_entry("two_runs", base))
    extra = _task_config(workdir, "two_runs")  # a task names it: its downloads are in the summary line
    proc = run_snakemake(workdir, "resources/standardized/two_runs.h5ad", "--configfile", "config/config.yaml", extra)
    assert sorted(httpd.requests) == [f"/run1/outs/{TENX}", f"/run2/outs/{TENX}"]
    raw = sorted((workdir / "resources" / "raw" / "two_runs").iterdir())
    assert len(raw) == 2 and all(p.name.endswith(f"-{TENX}") for p in raw)
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in raw} == {
        hashlib.sha256(C144.read_bytes()).hexdigest(), hashlib.sha256(C146.read_bytes()).hexdigest()}
    std = ad.read_h5ad(workdir / "resources" / "standardized" / "two_runs.h5ad")
    assert std.obs["donor_id"].value_counts().to_dict() == {"C146": 180, "C144": 120}  # each patient once
    barcodes = pd.Series(std.obs_names).str.split("_", n=1).str[1]
    assert not barcodes.groupby(std.obs["donor_id"].to_numpy()).apply(set).pipe(
        lambda s: s["C144"] & s["C146"])  # no cell under two donors
    lock = (workdir / "resources" / "checksums.lock.tsv").read_text().splitlines()
    assert len(lock) == 3  # header + one record per file
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("sclinbench warning:")]
    assert len(warnings) == 1 and "2 of 2 download(s) have no sha256" in warnings[0] and "2 use plain http://" in warnings[0]


def test_404_is_requested_once_even_with_snakemake_retries(workdir, files_server):
    """Issue 12: a 404 was retried 3 times by Snakemake (profiles/slurm sets retries: 2)."""
    base, httpd = files_server
    # the CELLxGENE keys of a registry entry (issue 14 adds them to the schema; added here for the test)
    schema = workdir / "config" / "datasets.schema.yaml"
    schema.write_text(schema.read_text().replace(
        "\nproperties:\n", "\nproperties:\n  collection_id: {type: string}\n  dataset_version_id: {type: string}\n", 1))
    _add_registry(workdir, f"gone:\n  source: url\n  format: h5ad\n  files: [{{url: {base}/gone.h5ad}}]\n"
                           "  collection_id: 0aab20b3-c30c-4606-bd2e-d20dae739c45\n")
    proc = run_snakemake(workdir, "resources/standardized/gone.h5ad", "--retries", "2", check=False)
    assert proc.returncode != 0
    assert httpd.requests == ["/gone.h5ad"]
    lines = _sclinbench_lines(proc)
    assert any("HTTP 404" in line and "https://cellxgene.cziscience.com/collections/0aab20b3-c30c-4606-bd2e-d20dae739c45"
               in line and "a newer version may replace this URL" in line for line in lines), lines


def test_hand_placed_raw_file_is_verified_before_use(workdir):
    """Issue 12: another patient's file placed under the expected name was accepted."""
    sys.path.insert(0, str(REPO / "src"))
    from sclinbench.data.registry import raw_path

    base = "http://127.0.0.1:9"  # nothing listens: the fetch must not run at all
    sha = {"run1": hashlib.sha256(C144.read_bytes()).hexdigest(), "run2": hashlib.sha256(C146.read_bytes()).hexdigest()}
    _add_registry(workdir, _tenx_entry("placed", base, sha))
    paths = [workdir / raw_path("placed", f"{base}/{run}/outs/{TENX}") for run in ("run1", "run2")]
    for path, source in zip(paths, (C144, C144)):  # the second is the wrong patient
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, path)
    proc = run_snakemake(workdir, "resources/standardized/placed.h5ad", check=False)
    lines = _sclinbench_lines(proc)
    assert proc.returncode != 0 and any("Checksum mismatch" in line and str(paths[1].name) in line for line in lines), lines
    assert paths[1].exists()  # the user's file is not deleted
    assert not (workdir / "resources/standardized/placed.h5ad").exists()

    # unpinned: accepted, its checksum recorded, and the log names it
    registry = (workdir / "config" / "datasets.yaml").read_text().replace(f"      sha256: {sha['run2']}\n", "")
    (workdir / "config" / "datasets.yaml").write_text(registry)
    shutil.copy(C146, paths[1])
    run_snakemake(workdir, "resources/standardized/placed.h5ad")
    log = (workdir / "logs" / "standardize" / "placed.log").read_text()
    assert "accepted unverified" in log and paths[1].name in log
    lock = (workdir / "resources" / "checksums.lock.tsv").read_text()
    assert hashlib.sha256(C146.read_bytes()).hexdigest() in lock
    std = ad.read_h5ad(workdir / "resources/standardized/placed.h5ad")
    assert std.uns["sclinbench"]["verified"] == "registry, unverified"


@pytest.mark.parametrize("case, registry, needles", [
    ("space", "my data:\n  source: bundled\n  bundled: pbmc68k_reduced\n",
     ["'my data'", "names must match [A-Za-z0-9_]+"]),
    ("dotdot", "../escape:\n  source: bundled\n  bundled: pbmc68k_reduced\n",
     ["'../escape'", "names must match [A-Za-z0-9_]+"]),
    ("slash_url", "dirurl:\n  source: url\n  format: h5ad\n  files: [{url: 'https://example.org/data/'}]\n",
     ["registry entry 'dirurl'", "names a directory"]),
    ("dotdot_url", "dirurl:\n  source: url\n  format: h5ad\n  files: [{url: 'https://example.org/data/..'}]\n",
     ["registry entry 'dirurl'", "names a directory"]),
    ("missing_local", "lost:\n  source: local\n  files: [{path: data/lost.h5ad}]\n",
     ["local file 'data/lost.h5ad' (files[0].path) does not exist"]),
])
def test_registry_problems_are_caught_when_the_snakefile_is_parsed(workdir, case, registry, needles):
    """Issue 12: these surfaced as MissingInputException or IsADirectoryError during the run."""
    _add_registry(workdir, registry)
    name = registry.split(":", 1)[0]
    extra = _task_config(workdir, "lost" if case == "missing_local" else "pbmc68k")
    proc = run_snakemake(workdir, "-n", "--configfile", "config/config.yaml", extra, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-2000:]
    assert "MissingInputException" not in text and "IsADirectoryError" not in text
    for needle in needles:
        assert needle in text, (needle, text[-2000:], name)


def test_unlabelled_cells_are_set_aside_through_the_workflow(workdir):
    """NaN / 'unknown' labels: counted in the log and the standardized file, never scored as a class."""
    rng = np.random.default_rng(0)
    n = 150
    types = np.repeat(["B", "NK", "T"], n // 3)
    means = np.full((3, 60), 0.3)
    for k in range(3):
        means[k, k * 20:(k + 1) * 20] = 8.0
    X = rng.poisson(means[np.repeat(np.arange(3), n // 3)]).astype(np.float32)
    labels = types.astype(object)
    labels[rng.choice(n, 20, replace=False)] = np.nan
    labels[np.flatnonzero(pd.isna(labels) == False)[:5]] = "Unknown"  # noqa: E712
    n_unlabelled = int(pd.isna(labels).sum()) + 5
    adata = ad.AnnData(X=sp.csr_matrix(X), obs=pd.DataFrame({"ct": labels}, index=[f"c{i}" for i in range(n)]),
                       var=pd.DataFrame(index=[f"G{j}" for j in range(60)]))
    adata.write_h5ad(workdir / "unl.h5ad")
    _add_registry(workdir, "unl:\n  source: local\n  files: [{path: unl.h5ad}]\n  gene_id: symbol\n"
                           "  columns: {cell_type: ct}\n")
    stale = workdir / "resources" / "standardized" / ".unl.h5ad.k1ll3d_x.part"  # left by a SIGKILL
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    extra = _task_config(workdir, "unl")
    run_snakemake(workdir, "results/scores/dataset~unl/task~mine.tsv", "--configfile", "config/config.yaml", extra)
    assert not stale.exists()
    std = ad.read_h5ad(workdir / "resources/standardized/unl.h5ad")
    assert json.loads(std.uns["sclinbench"]["unlabelled"]) == {"cell_type": n_unlabelled}
    assert "split" in "".join(p.name for p in (workdir / "logs").iterdir())
    split_log = (workdir / "logs/split/dataset~unl/task~mine.log").read_text()
    assert f"{n_unlabelled} of {n} cells of unl have no 'cell_type'" in split_log
    scores = pd.read_csv(workdir / "results/scores/dataset~unl/task~mine.tsv", sep="\t", keep_default_na=False)
    f1 = scores[scores.metric == "macro_f1"].groupby("pipeline")["value"].mean()
    assert f1["rankz_centroid"] == pytest.approx(1.0)
    n_test = scores[(scores.metric == "n_test_cells") & (scores.repeat == 0)].groupby("pipeline")["value"].sum()
    assert (n_test == n - n_unlabelled).all()


def test_cross_species_example_of_the_readme(workdir):
    """Two local files + a collection + a BioMart CSV as it comes, run exactly as the README says."""
    shutil.copytree(REPO / "tests" / "data" / "cross_species", workdir / "tests" / "data" / "cross_species")
    readme = (REPO / "README.md").read_text()
    command = ".venv/bin/snakemake --cores 2 --configfile config/config.yaml tests/data/cross_species/config.yaml"
    assert command in readme
    run_snakemake(workdir, "--configfile", "config/config.yaml", "tests/data/cross_species/config.yaml")
    m = pd.read_csv(workdir / "results/metrics.tsv", sep="\t", keep_default_na=False)
    assert set(m.dataset) == {"my_cross_species"}
    f1 = m[(m.metric == "macro_f1")]
    off = f1[f1.group.isin(["Homo sapiens->Mus musculus", "Mus musculus->Homo sapiens"])]
    by = off.groupby("pipeline")["value"].mean()
    assert by["rankz_centroid"] > by["control_shuffled"] + 0.3, by
    std = ad.read_h5ad(workdir / "resources/standardized/my_cross_species.h5ad")
    assert std.n_obs == 300 and json.loads(std.uns["sclinbench"]["unlabelled"]) == {"cell_type": 6}
    assert std.var_names.str.startswith("ENSG").all() and std.n_vars > 150
    assert (workdir / "results/figures/cross_species_heatmap.png").stat().st_size > 10_000


def test_paper_dry_run_warns_once_about_unpinned_downloads(workdir):
    proc = run_snakemake(workdir, "-n", "--configfile", *paper_configfiles(workdir))
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("sclinbench warning:")]
    assert len(warnings) == 1 and "have no sha256 in the registry" in warnings[0], warnings


def _bootstrap(workdir: Path, env_extra: dict) -> subprocess.CompletedProcess:
    shutil.copy2(REPO / "bootstrap", workdir / "bootstrap")
    env = {**os.environ, "PYTHON": "/bin/false", **env_extra}  # stop before any install
    return subprocess.run(["bash", "./bootstrap", "run"], cwd=workdir, capture_output=True, text=True, env=env,
                          timeout=60)


def test_bootstrap_run_notices_a_stale_lock(workdir):
    """Issue 12: after SIGKILL the README's 'run it again' failed with LockException until --unlock."""
    locks = workdir / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text(str(workdir / "results/metrics.tsv"))
    proc = _bootstrap(workdir, {})
    assert proc.returncode == 3
    assert "lock" in proc.stderr and ".venv/bin/snakemake --unlock" in proc.stderr
    assert not (workdir / ".venv").exists()
    # a snakemake running in the folder holds a live lock: no advice to unlock it
    sleeper = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 30"], cwd=workdir)
    try:
        proc = _bootstrap(workdir, {})
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode != 3 and "--unlock" not in proc.stderr


def test_readme_example_registry_is_the_shipped_one():
    import re

    import yaml

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Cross-species with your own data", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    shipped = yaml.safe_load((REPO / "tests/data/cross_species/datasets.yaml").read_text())
    assert yaml.safe_load(block) == shipped
