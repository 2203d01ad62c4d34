"""sclinbench.workflow.resources: declared mem_mb/runtime follow measured use; a dataset too large for the
memory available stops before anything loads it."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import copy_workflow, run_snakemake

from sclinbench.errors import SclinbenchError
from sclinbench.workflow import resources


def counts_file(path: Path, n_cells: int = 200, n_genes: int = 50, density: float = 0.2) -> Path:
    X = sp.random(n_cells, n_genes, density=density, format="csr", random_state=0, dtype=np.float32)
    X.data = np.ceil(X.data * 5)
    labels = np.repeat(["a", "b", "c", "d"], n_cells // 4)
    ad.AnnData(X=X, obs=pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(n_cells)]),
               var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)])).write_h5ad(path)
    return path


def test_input_size_reads_cells_and_stored_counts_from_metadata(tmp_path):
    path = counts_file(tmp_path / "x.h5ad")
    back = ad.read_h5ad(path)
    other = tmp_path / "table.tsv"
    other.write_text("a\tb\n" * 50_000)
    nnz, cells, other_mb, streamable = resources.input_size([path, other])
    assert (nnz, cells) == (back.X.nnz, 200)
    assert other_mb == pytest.approx(other.stat().st_size / 1e6)
    assert streamable
    dense = tmp_path / "dense.h5ad"
    ad.AnnData(X=np.ones((4, 3), dtype=np.float32)).write_h5ad(dense)
    assert resources.input_size([dense])[:2] == (0, 0)  # counted by its size instead
    assert resources.standardize_model([str(path)], "h5ad") == "standardize"
    assert resources.standardize_model([str(dense)], "h5ad") == "standardize_in_memory"
    assert resources.standardize_model([str(path), str(path)], "h5ad") == "standardize_in_memory"


def test_memory_grows_with_stored_counts_cells_and_attempt():
    model = resources.MODELS["evaluate"]
    small, large = model.mem_mb(nnz=10**6, cells=10**4), model.mem_mb(nnz=10**8, cells=10**6)
    assert large > small >= model.base_mb
    assert model.mem_mb(nnz=10**6, cells=10**4, attempt=2) == 2 * small
    assert model.runtime(nnz=10**9, attempt=2) == 2 * model.runtime(nnz=10**9)
    # the evaluate model is peak = a * nnz + b * cells + c with a the one named constant
    peak = model.peak_mb(nnz=10**8, cells=10**6)
    assert peak == pytest.approx(model.base_mb + (resources.EVALUATE_BYTES_PER_NNZ * 10**8
                                                  + resources.EVALUATE_BYTES_PER_CELL * 10**6) / 2**20)


def test_a_dataset_too_large_stops_with_the_estimate_and_the_fixes():
    cells, nnz = 1_000_000, 2_400_000_000
    rule, peak = resources.dataset_peak(cells, nnz)
    need = peak * resources.HEADROOM
    fit = resources.cells_that_fit(cells, nnz, 16_000)
    with pytest.raises(SclinbenchError) as info:
        resources.check_fits("scale", cells, nnz, 16_000, "--resources mem_mb=16000", where="/d/x.h5ad")
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"dataset 'scale' (/d/x.h5ad): 1,000,000 cells with 2,400,000,000 stored counts need an estimated "
        f"{need / 1024:.1f} GiB in its evaluate jobs, more than the 15.6 GiB available (--resources "
        f"mem_mb=16000); nothing was loaded. Run it on a machine with more memory, give more with "
        f"--resources mem_mb={int(np.ceil(need))}, or subsample it: max_cells: {fit} in its registry entry "
        f"(seeded, stratified by cell type)."
    )
    assert rule == "evaluate"
    # the suggested max_cells fits, and so does the dataset subsampled to it
    resources.check_fits("scale", cells, nnz, 16_000, "x", max_cells=fit)
    assert resources.dataset_peak(fit, nnz * fit // cells)[1] * resources.HEADROOM <= 16_000
    resources.check_fits("scale", cells, nnz, None, "")  # unknown limit: nothing checked


def test_from_a_billion_stored_counts_the_evaluate_job_is_modelled_streamed():
    """sclinbench.evaluate.engine reads such a dataset in blocks: its model holds no copy of the counts,
    and a suggested subsample below the threshold is checked against the in-memory model."""
    assert resources.evaluate_model(resources.STREAM_FROM_NNZ - 1) == "evaluate"
    assert resources.evaluate_model(resources.STREAM_FROM_NNZ) == "evaluate_streamed"
    cells, nnz = 1_000_000, 2_391_297_512  # the 1M synthetic case of docs/performance.md
    in_memory = resources.MODELS["evaluate"].peak_mb(nnz, cells) * resources.HEADROOM
    streamed = resources.dataset_peak(cells, nnz)[1] * resources.HEADROOM
    assert streamed < 24_000 < in_memory
    resources.check_fits("scale", cells, nnz, 24_000, "x")
    for limit in (3_500, 8_000, 16_000):
        fit = resources.cells_that_fit(cells, nnz, limit)
        assert resources.dataset_peak(fit, nnz * fit // cells)[1] * resources.HEADROOM <= limit
    # 3.5 GB: only a subsample read whole fits (below the threshold), the largest in thousands; 8 GB: a
    # streamed one
    small = resources.cells_that_fit(cells, nnz, 3_500)
    assert resources.evaluate_model(nnz * small // cells) == "evaluate"

    def in_memory_peak(n):
        return resources.MODELS["evaluate"].peak_mb(nnz * n // cells, n) * resources.HEADROOM

    assert in_memory_peak(small) <= 3_500
    assert small + 1000 > resources.STREAM_FROM_NNZ * cells // nnz or in_memory_peak(small + 1000) > 3_500
    assert resources.evaluate_model(nnz * resources.cells_that_fit(cells, nnz, 8_000) // cells) == "evaluate_streamed"


def test_a_job_whose_pipelines_cannot_stream_is_modelled_in_memory():
    """A large dataset whose evaluate job reads it whole (e.g. an ANOVA pipeline,
    sclinbench.evaluate.engine.why_not_streamed) is estimated, declared and checked as read whole."""
    cells, nnz = 1_000_000, 2_391_297_512
    assert resources.evaluate_model(nnz, streamable=False) == "evaluate"
    whole = resources.dataset_peak(cells, nnz, streamable=False)[1]
    assert whole == resources.MODELS["evaluate"].peak_mb(nnz, cells) > resources.dataset_peak(cells, nnz)[1]
    resources.check_fits("scale", cells, nnz, 24_000, "x")  # streamed: fits
    with pytest.raises(SclinbenchError, match=r"need an estimated 82\.6 GiB"):
        resources.check_fits("scale", cells, nnz, 24_000, "x", streamable=False)
    fit = resources.cells_that_fit(cells, nnz, 24_000, streamable=False)
    assert resources.MODELS["evaluate"].peak_mb(nnz * fit // cells, fit) * resources.HEADROOM <= 24_000


def _benchmark_jobs(dry_run: str) -> list[tuple[str, int, str]]:
    """(rule, declared mem_mb, benchmark file) of every job a dry run lists."""
    jobs = []
    for block in dry_run.split("\n\n"):
        rule, bench = re.search(r"rule (\w+):", block), re.search(r"benchmark: (\S+)", block)
        mem = re.search(r"resources: .*\bmem_mb=(\d+)", block)
        if rule and bench:
            assert mem, block
            jobs.append((rule.group(1), int(mem.group(1)), bench.group(1)))
    return jobs


@pytest.mark.workflow
def test_declared_memory_of_every_default_job_covers_its_peak_within_4x(default_run):
    """The default run's Snakemake records (benchmarks/<rule>/...tsv, max_rss) against the mem_mb
    each job declares (a forced dry run in the same folder evaluates the rules' resources on the
    very inputs those jobs read)."""
    workdir, _ = default_run
    proc = run_snakemake(workdir, "-n", "-F")
    jobs = _benchmark_jobs(proc.stdout + proc.stderr)
    records = sorted(str(p.relative_to(workdir)) for p in (workdir / "benchmarks").rglob("*.tsv"))
    assert sorted(b for _, _, b in jobs) == records  # every recorded job checked, none skipped
    assert len(jobs) >= 30
    rules_seen, problems = set(), []
    for rule, declared, bench in jobs:
        peak = float(pd.read_csv(workdir / bench, sep="\t")["max_rss"].max())
        rules_seen.add(rule)
        if not peak <= declared <= 4 * peak:
            problems.append(f"{bench}: declared {declared} MB, measured {peak:.0f} MB")
    assert not problems, problems
    assert {"standardize", "split", "evaluate", "score", "metrics", "figures", "tables"} <= rules_seen


@pytest.mark.workflow
def test_a_dataset_larger_than_the_memory_stops_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    path = counts_file(workdir / "mine.h5ad", n_cells=400, n_genes=100)
    nnz = ad.read_h5ad(path).X.nnz
    with open(workdir / "config/datasets.yaml", "a") as handle:
        handle.write(f"\nmydata:\n  source: local\n  files: [{{path: {path}}}]\n  gene_id: symbol\n"
                     "  columns: {cell_type: cell_type}\n")
    (workdir / "mine.yaml").write_text(
        "use_tasks: [mine]\ntasks:\n  mine: {kind: celltype, split: stratified, n_folds: 2, datasets: [mydata]}\n")
    limit = 500  # MiB: less than the evaluate job's own process
    proc = run_snakemake(workdir, "--configfile", "config/config.yaml", "mine.yaml",
                         "--resources", f"mem_mb={limit}", check=False)
    rule, peak = resources.dataset_peak(400, nnz)
    need = peak * resources.HEADROOM
    expected = (
        f"dataset 'mydata' ({path}): 400 cells with {nnz:,} stored counts need an estimated "
        f"{need / 1024:.1f} GiB in its evaluate jobs, more than the 0.5 GiB available (--resources "
        f"mem_mb={limit}); nothing was loaded. Run it on a machine with more memory, give more with "
        f"--resources mem_mb={int(np.ceil(need))}, or subsample it: max_cells: 1000 in its registry entry "
        f"(seeded, stratified by cell type)."
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert any(line.strip().endswith(expected) for line in text.splitlines()), text[-3000:]
    assert not (workdir / "resources" / "standardized").exists()  # stopped before any job


def test_max_cells_is_a_registry_key_the_schema_checks():
    from sclinbench.workflow.config import check

    schema = str(Path(__file__).resolve().parents[1] / "config" / "datasets.schema.yaml")
    entry = {"source": "local", "files": [{"path": "x.h5ad"}], "max_cells": 5000, "subsample_seed": 3}
    check(entry, schema, "registry entry 'x'")
    with pytest.raises(SclinbenchError, match="max_cells"):
        check({**entry, "max_cells": 0}, schema, "registry entry 'x'")


def test_a_downloaded_dataset_too_large_stops_before_it_is_read(tmp_path, monkeypatch):
    from sclinbench import data
    from sclinbench.data.datasets import standardized_dataset

    path = counts_file(tmp_path / "download.h5ad")
    entry = {"source": "url", "gene_id": "symbol", "columns": {"cell_type": "cell_type"},
             "files": [{"url": "https://example.org/download.h5ad"}]}
    monkeypatch.setattr(resources, "machine_memory_mb", lambda: 300.0)
    read = []
    monkeypatch.setattr(data, "standardize_h5ad", lambda *a, **k: read.append(a))
    with pytest.raises(SclinbenchError, match=r"^dataset 'dl' \(.*download\.h5ad\): 200 cells with .* more than "
                       r"the 0\.3 GiB available \(this machine's memory\); nothing was loaded\. .*max_cells: 1000"):
        standardized_dataset("dl", entry, [str(path)], {}, lockfile=str(tmp_path / "lock.tsv"),
                             out=str(tmp_path / "out.h5ad"))
    assert not read and not (tmp_path / "out.h5ad").exists()
