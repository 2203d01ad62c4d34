"""envs/sclinbench.yaml (the --sdm conda environment of every rule) lists every runtime dependency."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: pip name -> conda-forge name, where they differ
CONDA_NAME = {"matplotlib": "matplotlib-base", "igraph": "python-igraph"}
#: import name -> distribution name
DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "pyyaml", "skmisc": "scikit-misc"}
#: imported only behind an ImportError with a message (optional features) or by the benchmark script
OPTIONAL = {"skmisc", "numba"}
#: runs the jobs; not needed inside the job environment
RUNNER = {"snakemake"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower()


def _pyproject() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_name(d) for d in deps}


def _environment() -> set[str]:
    env = yaml.safe_load((ROOT / "envs" / "sclinbench.yaml").read_text())
    return {_name(d) for d in env["dependencies"] if isinstance(d, str)}


def _imports() -> set[str]:
    found = set()
    for path in [*(ROOT / "src" / "sclinbench").glob("*.py"), *(ROOT / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("sclinbench", "__future__")}


def test_environment_lists_every_dependency_of_pyproject():
    env = _environment()
    missing = {d for d in _pyproject() - RUNNER if CONDA_NAME.get(d, d) not in env}
    assert not missing, f"envs/sclinbench.yaml lacks {sorted(missing)} (in pyproject.toml)"


def test_every_third_party_import_is_a_declared_dependency():
    declared = _pyproject()
    env = _environment()
    for module in sorted(_imports() - OPTIONAL):
        dist = DISTRIBUTION.get(module, module)
        assert dist in declared, f"{module} is imported but not in pyproject.toml dependencies"
        assert CONDA_NAME.get(dist, dist) in env, f"{module} is imported but not in envs/sclinbench.yaml"
