"""Results follow the code: code fingerprints, job records, and the reruns a code change plans."""

import json
import re
import shutil
import sys
import textwrap
import types
from pathlib import Path

import pytest
from conftest import REPO, run_snakemake

from sclinbench.workflow import fingerprint as fpm
from sclinbench.workflow.fingerprint import CodeIndex
from sclinbench.workflow.records import code_provenance, log_job, read_job_records

# --------------------------------------------------------------------------- a toy package

TOY = {
    "__init__.py": '''
        """Toy package."""
        __version__ = "1.0"
    ''',
    "errors.py": '''
        class ToyError(Exception):
            pass
    ''',
    "core.py": '''
        """Core functions."""
        from __future__ import annotations

        import math

        from toy.errors import ToyError

        SCALE = 2  # a constant


        def used(x):
            """Docstring of used."""
            # a comment
            return helper(x) * SCALE


        def helper(x):
            if x < 0:
                raise ToyError("negative")
            return math.sqrt(x)


        def unused(x):
            return x + 1


        def shadow(SCALE):
            return SCALE  # a local, not the global SCALE


        def lazy():
            from toy.extra import far
            return far()
    ''',
    "extra.py": '''
        def far():
            return 42


        def other():
            return 0


        if __name__ == "__main__":
            print(other())
    ''',
    "registry.py": '''
        REGISTRY = {}


        def register(f):
            REGISTRY[f.__name__] = f
            return f


        @register
        def plugin():
            return "plugin"


        def lookup(name):
            return REGISTRY[name]
    ''',
    "dynamic.py": '''
        def a():
            return 1


        def b():
            return 2


        def by_name(name):
            return globals()[name]()
    ''',
    "sub/__init__.py": '''
        from .inner import exported
    ''',
    "sub/inner.py": '''
        from ..core import used


        def exported(x):
            return used(x) + 1


        def not_exported():
            return 3
    ''',
}

SCRIPTS = {
    "uses_core.py": "from toy.core import used\nprint(used(4))\n",
    "uses_module.py": "from toy import core\nprint(core.shadow(1), core.lazy())\n",
    "uses_module_as_value.py": "import toy.extra\nprint(getattr(toy.extra, 'far')())\n",
    "uses_registry.py": "from toy.registry import lookup\nprint(lookup('plugin')())\n",
    "uses_dynamic.py": "from toy.dynamic import by_name\nprint(by_name('a'))\n",
    "uses_sub.py": "from toy.sub import exported\nprint(exported(1))\n",
    "uses_errors.py": "from toy.errors import ToyError\nraise ToyError\n",
}


@pytest.fixture
def toy(tmp_path):
    pkg = tmp_path / "src" / "toy"
    for rel, text in TOY.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name, text in SCRIPTS.items():
        (scripts / name).write_text(text)
    return pkg, scripts


def _fingerprints(pkg, scripts):
    index = CodeIndex("toy", pkg)
    return {p.name: index.script(p) for p in sorted(scripts.glob("*.py"))}


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def _changed(before, after):
    return sorted(name for name in before if str(before[name]) != str(after[name]))


def test_only_the_definitions_a_script_reaches_count(toy):
    pkg, scripts = toy
    fp = _fingerprints(pkg, scripts)
    core = fp["uses_core.py"]
    assert set(core.modules) == {"core", "errors"}
    assert {"used", "helper", "SCALE", "math", "ToyError"} <= set(core.names["core"])
    assert "unused" not in core.names["core"] and "lazy" not in core.names["core"]
    assert str(core).startswith("sclinbench core:")
    # the attribute chain core.shadow / core.lazy is followed, and the import inside lazy()
    mod = fp["uses_module.py"]
    assert set(mod.names["core"]) >= {"shadow", "lazy"} and "used" not in mod.names["core"]
    assert mod.names["extra"] == ["far"]  # not other(), which only its __main__ block calls
    assert "SCALE" not in mod.names["core"]  # shadow's argument is local, not the global


def test_a_change_reruns_exactly_the_scripts_that_reach_it(toy):
    pkg, scripts = toy
    before = _fingerprints(pkg, scripts)
    _edit(pkg / "core.py", "return math.sqrt(x)", "return math.sqrt(x) + 0.0")
    after = _fingerprints(pkg, scripts)
    assert _changed(before, after) == ["uses_core.py", "uses_sub.py"]
    assert fpm.changed_modules(str(before["uses_core.py"]), str(after["uses_core.py"])) == ["core"]


def test_unused_code_docstrings_comments_and_layout_do_not_count(toy):
    pkg, scripts = toy
    before = _fingerprints(pkg, scripts)
    _edit(pkg / "core.py", "return x + 1", "return x + 2")  # unused() is reached by no script
    _edit(pkg / "core.py", '"""Docstring of used."""', '"""Another docstring."""\n    # more words')
    _edit(pkg / "core.py", "# a constant", "# the scale")
    _edit(pkg / "core.py", "return helper(x) * SCALE", "return (helper(x)\n            * SCALE)")
    _edit(pkg / "errors.py", "    pass", '    """Now documented."""')
    _edit(pkg / "sub/inner.py", "return 3", "return 4")
    assert _changed(before, _fingerprints(pkg, scripts)) == []


def test_the_static_view_takes_more_when_it_could_be_wrong(toy):
    pkg, scripts = toy
    fp = _fingerprints(pkg, scripts)
    # a module used as a value counts whole
    assert fp["uses_module_as_value.py"].names["extra"] == ["far", "other"]
    # globals() counts the whole module
    assert fp["uses_dynamic.py"].names["dynamic"] == ["a", "b", "by_name"]
    # a registering decorator runs at import time: the decorated function counts for every user
    assert "plugin" in fp["uses_registry.py"].names["registry"]
    before = fp
    _edit(pkg / "registry.py", 'return "plugin"', 'return "plugin 2"')
    _edit(pkg / "extra.py", "return 0", "return -1")
    _edit(pkg / "dynamic.py", "return 2", "return 3")
    assert _changed(before, _fingerprints(pkg, scripts)) == [
        "uses_dynamic.py", "uses_module_as_value.py", "uses_registry.py"]


def test_relative_imports_and_package_reexports_are_followed(toy):
    pkg, scripts = toy
    fp = _fingerprints(pkg, scripts)["uses_sub.py"]
    assert fp.names["sub"] == ["exported"]
    assert fp.names["sub.inner"] == ["exported", "used"]
    assert "not_exported" not in fp.names["sub.inner"]
    assert "used" in fp.names["core"]


def test_the_parse_time_cache_follows_every_edit(toy, tmp_path):
    pkg, scripts = toy
    cache = tmp_path / "cache.json"
    script = scripts / "uses_core.py"
    first = fpm.cached_code(CodeIndex("toy", pkg), script, cache)
    assert first == str(CodeIndex("toy", pkg).script(script)) and cache.exists()
    stored = json.loads(cache.read_text())
    stored[str(script.resolve())][1] = "poisoned"  # a hit is read from the cache...
    cache.write_text(json.dumps(stored))
    assert fpm.cached_code(CodeIndex("toy", pkg), script, cache) == "poisoned"
    _edit(pkg / "core.py", "return math.sqrt(x)", "return math.sqrt(x) + 0.0")  # ...until a file changes
    second = fpm.cached_code(CodeIndex("toy", pkg), script, cache)
    assert second == str(CodeIndex("toy", pkg).script(script)) != first
    (tmp_path / "a_file").write_text("")  # a cache that cannot be written: computed all the same
    assert fpm.cached_code(CodeIndex("toy", pkg), script, tmp_path / "a_file" / "cache.json") == second


def test_each_workflow_script_has_a_fingerprint_and_each_rule_passes_it():
    index = CodeIndex()
    scripts = sorted((REPO / "scripts").glob("*.py"))
    fps = {p.stem: index.script(p) for p in scripts}
    assert "fingerprint" not in " ".join(str(f) for f in fps.values())  # the bookkeeping is left out
    assert "represent.rank" in fps["evaluate"].modules
    assert not any(m.startswith("represent") for m in fps["score"].modules)
    assert "plotting" in fps["figures"].modules
    # figures, paper_figures, and the analyses' figures (sclinbench.analyses.figures uses the package style)
    assert [s for s, f in fps.items() if "plotting" in f.modules] == ["analyses", "figures", "paper_figures"]
    assert "score" in fps["score"].names["evaluate.metrics"] and "evaluate.metrics" not in fps["evaluate"].modules
    # every rule running a script passes that script's fingerprint as params.code (fetch: the bytes
    # of a download are checked by sha256, a change to download code need not fetch again; likewise
    # fetch_string, the STRING downloads of the analyses)
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            m = re.match(r"rule (\w+):", block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+)\.py"', block)
            if not m or not script or m.group(1) in ("fetch", "fetch_string"):
                continue
            assert f'code=code_fingerprint("{script.group(1)}")' in block, (smk.name, m.group(1))


def test_fingerprinting_is_cheap_and_imports_nothing_heavy():
    import subprocess

    code = ("import sys; sys.path.insert(0, sys.argv[1]); from sclinbench.workflow.fingerprint import script_code; "
            "[script_code(p) for p in sys.argv[2:]]; "
            "heavy = {'numpy', 'pandas', 'scanpy', 'sklearn', 'anndata'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code, str(REPO / "src"),
                    *map(str, (REPO / "scripts").glob("*.py"))], check=True)


# --------------------------------------------------------------------------- job records

def test_log_job_records_what_a_snakemake_job_runs(tmp_path, monkeypatch):
    import logging

    assert log_job() is None  # not in a Snakemake job
    sm = types.SimpleNamespace(rule="evaluate", params=types.SimpleNamespace(code="sclinbench a:1"),
                               input=["in.tsv"], output=["out.tsv"])
    monkeypatch.setattr(sys.modules["__main__"], "snakemake", sm, raising=False)
    logfile = tmp_path / "logs" / "evaluate" / "x.log"
    logfile.parent.mkdir(parents=True)
    logger = logging.getLogger("sclinbench.test_fingerprint")
    handler = logging.FileHandler(logfile)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        rec = log_job(logger)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert rec["rule"] == "evaluate" and rec["code"] == "sclinbench a:1" and rec["version"]
    (found,) = read_job_records(tmp_path / "logs")
    assert {k: found[k] for k in ("rule", "code", "input", "output")} == {
        "rule": "evaluate", "code": "sclinbench a:1", "input": ["in.tsv"], "output": ["out.tsv"]}


def test_code_provenance_follows_results_back_and_names_other_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for f in ("data.h5ad", "pred.tsv", "metrics.tsv", "old.tsv"):
        Path(f).write_text("x")
    records = [
        {"rule": "standardize", "code": "sclinbench data:1", "version": "0.1", "started_utc": "1",
         "input": [], "output": ["data.h5ad"]},
        {"rule": "evaluate", "code": "sclinbench represent:1 tasks:1", "version": "0.1",
         "started_utc": "2", "input": ["data.h5ad", "config.yaml"], "output": ["pred.tsv"]},
        {"rule": "metrics", "code": "sclinbench metrics:1", "version": "0.1", "started_utc": "3",
         "input": ["pred.tsv"], "output": ["metrics.tsv"]},
        {"rule": "metrics", "code": "sclinbench metrics:0", "version": "0.0", "started_utc": "0",
         "input": ["old.tsv"], "output": ["metrics.tsv"]},  # older record of the same file
    ]
    installed = {"standardize": "sclinbench data:1", "evaluate": "sclinbench represent:2 tasks:1",
                 "metrics": "sclinbench metrics:1"}
    prov = code_provenance(["metrics.tsv"], records, installed, version="0.2")
    assert prov["without_record"] == ["config.yaml"]
    assert [(o["rule"], o["file"], o["changed"]) for o in prov["other_code"]] == [
        ("evaluate", "pred.tsv", ["represent"])]
    assert prov["steps"]["metrics"]["made_by"] == [
        {"code": "sclinbench metrics:1", "version": "0.1", "files": 1, "installed_code": True}]
    assert set(prov["steps"]) == {"standardize", "evaluate", "metrics"}  # old.tsv is not reached

    from sclinbench.report import code_lines
    text = "\n".join(code_lines({"code": prov}))
    assert "1 of 3 result files" in text and "| evaluate | 1 | represent |" in text
    assert "`config.yaml`" in text
    clean = code_provenance(["metrics.tsv"], records, {**installed, "evaluate": records[1]["code"]})
    assert "All 3 result files" in "\n".join(code_lines({"code": clean}))


# --------------------------------------------------------------------------- the workflow

def _planned(proc) -> dict[str, list[str]]:
    """rule -> the reason lines of its planned jobs, from a dry run's output."""
    jobs: dict[str, list[str]] = {}
    rule = None
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            rule = m.group(1)
        m = re.match(r"^\s+reason: (.*)$", line)
        if m and rule:
            jobs.setdefault(rule, []).append(m.group(1))
            rule = None
    return jobs


@pytest.fixture(scope="module")
def finished_run(default_run, tmp_path_factory):
    """A copy of the finished default run (results, logs and Snakemake's records), to edit."""
    src, _ = default_run
    dest = tmp_path_factory.mktemp("fingerprint") / "wf"
    shutil.copytree(src, dest, symlinks=True)
    assert _planned(run_snakemake(dest, "-n")) == {}, "a copied finished run plans work"
    return dest


@pytest.fixture
def edit(finished_run):
    """Edit a package module of the copied run; undone (content and mtime) after the test."""
    saved = {}

    def _do(rel, old, new):
        path = finished_run / "src" / "sclinbench" / rel
        if path not in saved:
            saved[path] = (path.read_bytes(), path.stat())
        _edit(path, old, new)

    yield _do
    import os
    for path, (data, st) in saved.items():
        path.write_bytes(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


PARAMS = "Params have changed since last execution"
DOWNSTREAM = "Input files updated by another job"
workflow = pytest.mark.workflow


def _reasons(jobs, rule):
    return {r.split(":")[0] for r in jobs[rule]}


@workflow
def test_a_change_to_represent_reruns_evaluate_and_everything_after(finished_run, edit):
    edit("represent/normalize.py", 'must be > 0, got {pseudocount}")', 'must be > 0 (got {pseudocount})")')
    jobs = _planned(run_snakemake(finished_run, "-n"))
    # annotate (the config's annotate: jobs) fits pipelines with represent too, and the manifold
    # analysis represents its subsamples with log1p (shifted_log, the edited function)
    assert set(jobs) == {"evaluate", "score", "metrics", "figures", "provenance", "tables", "annotate",
                         "analysis_manifold", "analyses", "all"}
    assert len(jobs["evaluate"]) == 16 and len(jobs["score"]) == 8 and len(jobs["annotate"]) == 2
    assert _reasons(jobs, "evaluate") == _reasons(jobs, "annotate") == {PARAMS}
    assert all("represent.normalize:" in r and "now:" in r for r in jobs["evaluate"])
    for rule in ("score", "metrics", "figures", "provenance", "tables"):
        assert _reasons(jobs, rule) == {DOWNSTREAM}, (rule, jobs[rule])


@workflow
def test_a_change_to_metrics_reruns_score_not_evaluate(finished_run, edit):
    edit("evaluate/metrics.py", "    preds = _with_repeat(predictions)\n", "    preds = _with_repeat(predictions.copy())\n")
    jobs = _planned(run_snakemake(finished_run, "-n"))
    assert set(jobs) == {"score", "metrics", "figures", "provenance", "tables", "all"}
    assert len(jobs["score"]) == 8 and _reasons(jobs, "score") == {PARAMS}
    before, now = re.search(r"before: '([^']*)' now: '([^']*)'", jobs["score"][0]).groups()
    assert fpm.changed_modules(before, now) == ["evaluate.metrics"]


@workflow
def test_a_change_to_plotting_reruns_only_the_figures(finished_run, edit):
    edit("plotting/scores.py", 'fontsize=6.5, fontweight="normal",', 'fontsize=7, fontweight="normal",')
    jobs = _planned(run_snakemake(finished_run, "-n"))
    # provenance and tables follow: they record which code made the figures (results/README.md)
    assert set(jobs) == {"figures", "provenance", "tables", "all"}
    assert _reasons(jobs, "figures") == {PARAMS}
    assert _reasons(jobs, "provenance") == {DOWNSTREAM}


@workflow
def test_docstring_and_comment_changes_rerun_nothing(finished_run, edit):
    edit("represent/normalize.py", "    Equals ``log1p`` of the library-normalized counts",
         "    Equal to ``log1p`` of the library-normalized counts")
    edit("evaluate/metrics.py", "def score(", "# scores per fold\ndef score(")
    edit("plotting/scores.py", 'fontsize=6.5, fontweight="normal",', 'fontsize=6.5,  fontweight="normal",  # title')
    proc = run_snakemake(finished_run, "-n")
    assert _planned(proc) == {} and "Nothing to be done" in proc.stdout + proc.stderr


@workflow
def test_readme_names_results_made_by_other_code(finished_run, tmp_path):
    """With --rerun-triggers mtime nothing reruns for a code change; the README then says so."""
    wf = tmp_path / "wf"
    shutil.copytree(finished_run, wf, symlinks=True)  # this test runs jobs: its own copy
    _edit(wf / "src/sclinbench/represent/normalize.py", 'must be > 0, got {pseudocount}")',
          'must be > 0 (got {pseudocount})")')
    run_snakemake(wf, "--rerun-triggers", "mtime", "--forcerun", "provenance")
    readme = (wf / "results/README.md").read_text()
    assert re.search(r"\*\*16 of \d+ result files", readme) and "| evaluate | 16 | represent.normalize |" in readme
    prov = json.loads((wf / "results/provenance.json").read_text())["code"]
    assert {o["rule"] for o in prov["other_code"]} == {"evaluate"}
    assert prov["steps"]["figures"]["made_by"][0]["installed_code"]
    # and the default triggers remake exactly those
    jobs = _planned(run_snakemake(wf, "-n"))
    assert _reasons(jobs, "evaluate") == {PARAMS} and len(jobs["evaluate"]) == 16


@workflow
def test_default_run_readme_says_its_results_are_from_the_installed_code(default_run):
    workdir, _ = default_run
    readme = (workdir / "results/README.md").read_text()
    assert "result files these tables and figures were computed from that have a job record were " \
           "made by the installed sclinbench" in readme
    prov = json.loads((workdir / "results/provenance.json").read_text())["code"]
    assert prov["other_code"] == [] and prov["without_record"] == ["config/reference_results.tsv"]
    assert set(prov["steps"]) == {"synthesize", "standardize", "split", "evaluate", "score", "metrics",
                                  "figures"}
    assert prov["installed"]["evaluate"] == prov["steps"]["evaluate"]["made_by"][0]["code"]
