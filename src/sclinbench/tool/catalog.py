"""What the command line can name: the workflow's pipelines, tasks and datasets.

The names come from the workflow's configuration: ``config/config.yaml`` (the default run),
``config/grid.yaml`` (the opt-in grid of pipelines), any ``--config`` files (merged on top, as
``snakemake --configfile`` merges them) and the dataset registry the config names. The workflow
folder is, in this order: ``--workflow DIR``, the environment variable ``SCLINBENCH_WORKFLOW``,
the checkout the package is imported from (an editable install, ``pip install -e .``), the
current folder. A non-editable install outside a checkout has only :data:`BUILTIN_PIPELINES`
(the default pipeline; a test keeps it identical to its config entry) and whatever ``--config``
files name.

One-line descriptions: an entry's ``description:`` key, else the comment on its line in the
YAML file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sclinbench.errors import SclinbenchError

#: Pipelines available without a workflow checkout (identical to their config/config.yaml entries).
BUILTIN_PIPELINES = {
    "rankz_centroid": {
        "representation": {"name": "rankz"},
        "model": {"name": "centroid"},
    },
}
#: What ``sclinbench train`` (and ``annotate --reference``) choose among when no ``--pipeline`` is
#: given: nested selection on the reference (:func:`sclinbench.evaluate.nested.choose_for_reference`, held-out reference
#: donors, or cells with fewer than 3), each entry identical to its config/config.yaml or
#: config/grid.yaml entry (a test checks). Small on purpose: choosing costs 3 fits per candidate.
TRAIN_CANDIDATES = {
    "rankz_centroid": BUILTIN_PIPELINES["rankz_centroid"],
    "log1p_pca_logreg": {
        "representation": {"name": "log1p", "target_sum": 10000},
        "features": {"method": "hvg", "n_top": 2000},
        "scale": {"max_value": 10},
        "reduction": {"method": "pca", "n_components": 50},
        "model": {"name": "logreg", "C": 1.0},
    },
    "pearson_pca_ridge": {
        "representation": {"name": "pearson", "theta": 100},
        "features": {"method": "hvg", "n_top": 2000},
        "reduction": {"method": "pca", "n_components": 50},
        "model": {"name": "ridge"},
    },
}
BUILTIN_DESCRIPTIONS = {
    "rankz_centroid": "Souza & Mehta 2026: rank -> inverse-normal -> L2, training-free centroids",
}


def _is_workflow(path: Path) -> bool:
    return (path / "Snakefile").is_file() and (path / "config" / "config.yaml").is_file()


def find_workflow(explicit: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """``(workflow folder or None, how it was found)``."""
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not _is_workflow(path):
            raise SclinbenchError(f"--workflow {explicit}: no Snakefile and config/config.yaml there; give the sclinbench checkout")
        return path, "--workflow"
    env = os.environ.get("SCLINBENCH_WORKFLOW")
    if env:
        path = Path(env).expanduser().resolve()
        if not _is_workflow(path):
            raise SclinbenchError(f"SCLINBENCH_WORKFLOW={env}: no Snakefile and config/config.yaml there; fix or unset it")
        return path, "SCLINBENCH_WORKFLOW"
    checkout = Path(__file__).resolve().parents[3]  # <checkout>/src/sclinbench/tool/catalog.py
    if _is_workflow(checkout):
        return checkout, "the checkout sclinbench is installed from"
    cwd = Path.cwd()
    if _is_workflow(cwd):
        return cwd, "the current folder"
    return None, "none found"


def _line_comments(path: Path) -> dict[tuple[str, str], str]:
    """``(top-level key, entry name) -> comment`` for lines like ``  name:   # comment``."""
    out: dict[tuple[str, str], str] = {}
    section = None
    top = re.compile(r"^([A-Za-z0-9_]+):")
    entry = re.compile(r"^  ([A-Za-z0-9_]+):[^#]*#\s*(.+?)\s*$")
    last = None
    for line in path.read_text().splitlines():
        if last is not None and out[last].count("(") > out[last].count(")"):
            m = re.search(r"#\s*(.+?)\s*$", line)  # a parenthesis continued on the next line's comment
            if m:
                out[last] += " " + m.group(1)
                continue
        last = None
        m = top.match(line)
        if m:
            section = m.group(1)
            m2 = re.match(r"^([A-Za-z0-9_]+):[^#]*#\s*(.+?)\s*$", line)
            if m2:
                out[(None, m2.group(1))] = m2.group(2)
            continue
        m = entry.match(line)
        if m and section:
            out[(section, m.group(1))] = m.group(2)
            last = (section, m.group(1))
    return out


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as fh:
            value = yaml.load(fh, Loader=_LOADER) or {}
    except yaml.YAMLError as exc:
        raise SclinbenchError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(value, dict):
        raise SclinbenchError(f"{path} does not hold a mapping of keys")
    return value


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def spec_summary(spec) -> str:
    """``rankz -> centroid``; ``log1p(target_sum=10000) -> hvg 2000 -> scale 10 -> pca 50 -> logreg(C=1)``
    of a :class:`~sclinbench.evaluate.spec.PipelineSpec` or of a catalog entry (made a spec here, where it is listed)."""
    from sclinbench.evaluate.spec import PipelineSpec

    try:
        s = PipelineSpec.from_config("pipeline", spec).canonical()
    except SclinbenchError as exc:
        return f"(invalid: {exc})"

    def fmt(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    rep = s["representation"]
    params = {k: v for k, v in rep.items() if k != "name"}
    parts = [rep["name"] + (f"({', '.join(f'{k}={fmt(v)}' for k, v in params.items())})" if rep["name"] in ("log1p", "sqrt", "embedding") else "")]
    f = s["features"]
    if f["method"] == "hvg":
        parts.append(f"hvg {f['n_top']}")
    elif f["method"] == "anova":
        parts.append(f"anova {f['k']}")
    if s["scale"]:
        parts.append(f"scale {fmt(s['scale']['max_value'])}")
    r = s["reduction"]
    if r["method"] == "pca":
        parts.append(f"pca {r['n_components']}" + (" whitened" if r["whiten"] else ""))
    m = s["model"]
    shown = {k: v for k, v in m.items() if k in ("C", "alpha", "n_neighbors") and k != "name"}
    parts.append(m["name"] + (f"({', '.join(f'{k}={fmt(v)}' for k, v in shown.items())})" if shown else ""))
    text = " -> ".join(parts)
    if s["control"] != "none":
        text += f" [control: {s['control']} labels]"
    return text


@dataclass
class Entry:
    name: str
    description: str
    source: str
    spec: dict = field(default_factory=dict)
    detail: str = ""


@dataclass
class Catalog:
    workflow: Path | None
    found_by: str
    pipelines: dict[str, Entry]
    tasks: dict[str, Entry]
    datasets: dict[str, Entry]
    config: dict

    def pipeline(self, name: str) -> tuple[str, dict]:
        if name not in self.pipelines:
            known = ", ".join(sorted(self.pipelines))
            where = (f"the workflow at {self.workflow}" if self.workflow else
                     "the built-in pipelines (no workflow checkout found: pass --workflow DIR or --config FILE)")
            raise SclinbenchError(f"pipeline '{name}' is not defined in {where}; known pipelines: {known} "
                                  "(`sclinbench list pipelines` describes them)")
        return name, self.pipelines[name].spec


def load(workflow: str | os.PathLike | None = None, configs=(), datasets_too: bool = True,
         grid_too: bool = True) -> Catalog:
    """The pipelines, tasks and (with ``datasets_too``) datasets the command line can name
    (with ``grid_too`` also the pipelines of config/grid.yaml)."""
    root, found_by = find_workflow(workflow)
    pipelines: dict[str, Entry] = {}
    tasks: dict[str, Entry] = {}
    datasets: dict[str, Entry] = {}
    config: dict = {}
    files: list[Path] = []
    if root is None:
        for name, spec in BUILTIN_PIPELINES.items():
            pipelines[name] = Entry(name, BUILTIN_DESCRIPTIONS.get(name, ""), "built-in", spec)
    else:
        files.append(root / "config" / "config.yaml")
        grid = root / "config" / "grid.yaml"
        if grid_too and grid.is_file():
            comments = _line_comments(grid)
            for name, spec in (_read_yaml(grid).get("pipelines") or {}).items():
                pipelines[name] = Entry(name, (spec or {}).get("description") or comments.get(("pipelines", name), ""),
                                        "config/grid.yaml (opt-in grid)", spec)
    files += [Path(c) for c in configs]
    for path in files:
        if not path.is_file():
            raise SclinbenchError(f"config file {path} does not exist (--config)")
        doc = _read_yaml(path)
        config = _merge(config, doc)
        comments = _line_comments(path)
        label = str(path.relative_to(root)) if root and path.resolve().is_relative_to(root) else str(path)
        for name, spec in (doc.get("pipelines") or {}).items():
            old = pipelines.get(name)
            desc = (spec or {}).get("description") or comments.get(("pipelines", name)) or (old.description if old else "")
            pipelines[name] = Entry(name, desc, label, spec or {})
        for name, spec in (doc.get("tasks") or {}).items():
            spec = spec or {}
            desc = spec.get("description") or comments.get(("tasks", name), "")
            detail = f"{spec.get('kind', '?')}, split {spec.get('split', '?')}, datasets {', '.join(spec.get('datasets') or [])}"
            tasks[name] = Entry(name, desc, label, spec, detail)
    if config.get("use_tasks"):
        tasks = {k: v for k, v in tasks.items() if k in config["use_tasks"]}
    if datasets_too and (root is not None or config.get("registry")):
        registry = Path(config.get("registry", "config/datasets.yaml"))
        if not registry.is_absolute() and root is not None and not registry.is_file():
            registry = root / registry  # as the workflow reads it: this folder first, then the checkout
        if registry.is_file():
            for name, entry in _read_yaml(registry).items():
                entry = entry or {}
                detail = f"{entry.get('source', '?')}" + (f", {entry['organism']}" if entry.get("organism") else "")
                datasets[name] = Entry(name, str(entry.get("description", "")), str(registry.name), entry, detail)
    return Catalog(root, found_by, pipelines, tasks, datasets, config)
