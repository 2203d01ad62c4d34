"""A run that stays apart: the workflow of a checkout, the user's config and data in a folder of their own.

    snakemake -s <checkout>/Snakefile --directory myproject --configfile myproject/mine.yaml

The workflow's own files (config/, report/, envs/, scripts/) are read from the checkout; results/,
resources/, logs/ and benchmarks/ are written to the project folder; the user's relative paths
(``registry: my_datasets.yaml``, a local h5ad named in it) are read from the project folder.
"""

import hashlib
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO, SNAKEMAKE, copy_workflow

pytestmark = pytest.mark.workflow

REGISTRY = """\
mine:
  description: 150 human cells of tests/data/cross_species, copied into the project folder
  source: local
  files: [{path: data/human.h5ad}]     # relative: read from the project folder
  organism: Homo sapiens
  columns: {cell_type: cell_type, donor_id: donor}
  gene_id: ensembl
  var_columns: {gene_symbol: feature_name}
"""

CONFIG = """\
registry: my_datasets.yaml             # relative: read from the project folder
use_tasks: [mine_celltype]
tasks:
  mine_celltype: {kind: celltype, split: stratified, n_folds: 3, datasets: [mine]}
"""


def _files(root):
    """Relative path -> sha256 of every file under root (Python's byte cache aside)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _snakemake(cwd, checkout, *args):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run([*SNAKEMAKE, "--cores", "2", "-s", str(checkout / "Snakefile"), *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture
def apart(tmp_path):
    """A checkout, an empty project folder with the user's config, registry and h5ad, and a third
    folder snakemake is started from."""
    checkout = copy_workflow(tmp_path / "sclinbench")
    project = tmp_path / "myproject"
    (project / "data").mkdir(parents=True)
    shutil.copy(REPO / "tests/data/cross_species/human.h5ad", project / "data/human.h5ad")
    (project / "my_datasets.yaml").write_text(REGISTRY)
    (project / "mine.yaml").write_text(CONFIG)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return checkout, project, elsewhere


def test_run_in_a_project_folder_writes_there_and_not_into_the_checkout(apart):
    checkout, project, elsewhere = apart
    before = _files(checkout)
    args = ("--directory", str(project), "--configfile", str(project / "mine.yaml"))
    proc = _snakemake(elsewhere, checkout, *args)
    assert proc.returncode == 0, proc.stderr[-6000:]

    m = pd.read_csv(project / "results/metrics.tsv", sep="\t")
    assert set(m.dataset) == {"mine"} and set(m.task) == {"mine_celltype"}
    f1 = m[m.metric == "macro_f1"].groupby("pipeline")["value"].mean()
    assert f1["rankz_centroid"] > f1["control_shuffled"] + 0.3, f1
    for path in ("resources/standardized/mine.h5ad", "results/tables/summary.tsv", "results/README.md",
                 "results/figures/pipeline_scores.png", "results/provenance.json", "logs/figures.log",
                 "benchmarks/tables.tsv"):
        assert (project / path).is_file(), path
    # the published numbers and captions came from the checkout: the tables name them
    assert "published" in (project / "results/tables/published_comparison.md").read_text().lower()

    assert _files(checkout) == before, "the run wrote into the checkout"
    assert not any(elsewhere.iterdir()), "the run wrote into the folder it was started from"
    assert not (checkout / ".snakemake").exists()

    again = _snakemake(elsewhere, checkout, *args, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_a_registry_that_is_nowhere_is_one_line_naming_both_folders(apart):
    checkout, project, elsewhere = apart
    (project / "mine.yaml").write_text(CONFIG.replace("my_datasets.yaml", "not_there.yaml"))
    proc = _snakemake(elsewhere, checkout, "-n", "--directory", str(project),
                      "--configfile", str(project / "mine.yaml"))
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    line = next(line for line in text.splitlines() if "not_there.yaml" in line)
    assert str(project) in line and str(checkout) in line, line
    assert not (project / "results").exists()


def test_sclinbench_list_reads_the_project_registry_like_the_workflow(apart):
    """`sclinbench list --config mine.yaml` in the project folder shows the project's datasets."""
    checkout, project, _ = apart
    env = {**os.environ, "SCLINBENCH_WORKFLOW": str(checkout)}
    cmd = [sys.executable, "-m", "sclinbench", "list", "datasets", "--config", "mine.yaml"]
    out = subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "mine" in out.stdout and "pbmc68k" not in out.stdout, out.stdout
    default = subprocess.run(cmd[:-2], cwd=project, capture_output=True, text=True, env=env, timeout=120)
    assert "pbmc68k" in default.stdout, default.stdout   # no --config: the checkout's registry
