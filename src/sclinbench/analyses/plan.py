"""The config's ``analyses:``: which run, on which datasets, with which settings and files.

Light on purpose (no numpy, pandas or scikit-learn): every process of a run parses
rules/analyses.smk, which calls this module. :data:`DEFAULTS` is the one definition of every
option's default; config/schema.yaml states the same values (tests/test_analyses_config.py keeps
them equal).
"""

from __future__ import annotations

import copy

from sclinbench.data.registry import raw_name
from sclinbench.errors import SclinbenchError
from sclinbench.workflow.resources import Model, input_size

ANALYSES = ("structure", "manifold", "tf_targets")

DEFAULTS: dict[str, dict] = {
    "structure": {"datasets": [], "species": {}, "min_cells": 10, "n_boot": 200, "n_permutations": 20},
    "manifold": {"datasets": [], "n_cells": 500, "n_types": 7, "k": [5, 10, 15, 30, 45],
                 "representations": ["counts", "rankz", "log1p"], "n_draws": 5},
    "tf_targets": {"datasets": [], "tfs": [], "string": {}, "min_score": 400, "fdr": 0.05,
                   "declared": {"quantile": 0.9, "min_frequency": 0.05},
                   "grid": {"quantiles": [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
                            "min_frequencies": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1]},
                   "n_permutations": 20, "n_boot": 100},
}
#: Where downloaded STRING files go: resources/string/<8 hex of the URL's hash>-<file name>.
STRING_DIR = "resources/string"


#: Memory and runtime of the analysis rules (the models of :mod:`sclinbench.workflow.resources`, kept here so
#: that the other rules' code fingerprints do not change with them; docs/performance.md): the
#: counts read whole, their library fractions (structure), rankz and its "on" matrix (tf_targets);
#: manifold densifies only its subsamples of n_cells cells. Measured (benchmarks/bench_analyses.py,
#: 2 cores, 2026-12-07): structure 71,200 cells / 74M stored counts 27 s at 2.56 GiB; tf_targets
#: 50,000 cells / 120M stored counts / 13.7M STRING links 449 s at 5.22 GiB.
MODELS: dict[str, Model] = {
    "analysis_structure": Model(base_mb=500, per_nnz=28, per_cell=200, runtime_floor=15, seconds_per_nnz=3 * 4e-7),
    "analysis_manifold": Model(base_mb=600, per_nnz=14, per_cell=100, runtime_floor=15, seconds_per_nnz=3 * 2e-8),
    "analysis_tf_targets": Model(base_mb=600, per_nnz=44, per_cell=500, per_input_mb=8, runtime_floor=15,
                                 seconds_per_nnz=3 * 4e-6),
    "analyses": Model(base_mb=420, per_input_mb=10, runtime_floor=10),
}


def job_mem_mb(rule: str, paths, attempt: int = 1) -> int:
    nnz, cells, other, _ = input_size(paths)
    return MODELS[rule].mem_mb(nnz, cells, other, attempt)


def job_runtime(rule: str, paths, attempt: int = 1) -> int:
    nnz, _, _, _ = input_size(paths)
    return MODELS[rule].runtime(nnz, attempt)


def _filled(name: str, given: dict) -> dict:
    out = copy.deepcopy(DEFAULTS[name])
    for key, value in (given or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key in ("declared", "grid"):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def selected(config: dict) -> dict[str, dict]:
    """name -> settings (defaults filled) of the analyses this run makes: those named by
    ``use_analyses``; without it all of them, unless the config replaces the task set with
    ``use_tasks`` (then none: the default analyses run on the embedded datasets)."""
    given = config.get("analyses") or {}
    names = config.get("use_analyses")
    if names is None:
        names = [] if config.get("use_tasks") else [n for n in ANALYSES if n in given]
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise SclinbenchError(f"use_analyses names {unknown[0]!r}; the analyses are {', '.join(ANALYSES)}")
    return {n: _filled(n, given.get(n) or {}) for n in ANALYSES if n in names}


def datasets(plan: dict, name: str) -> list[str]:
    return list(plan.get(name, {}).get("datasets") or [])


def is_url(value: str) -> bool:
    return str(value).split("://", 1)[0] in ("http", "https", "file") and "://" in str(value)


def string_path(value: str) -> str:
    """The local file of a STRING entry: the path itself, or where its URL is downloaded to."""
    return f"{STRING_DIR}/{raw_name(value)}" if is_url(value) else str(value)


def string_files(plan: dict) -> dict[str, str]:
    """``{"links": path, "aliases": path}`` the tf_targets jobs read ({} without tf_targets datasets)."""
    settings = plan.get("tf_targets")
    if not settings or not settings["datasets"]:
        return {}
    string = settings.get("string") or {}
    missing = [k for k in ("links", "aliases") if not string.get(k)]
    if missing:
        raise SclinbenchError(f"analyses: tf_targets: string: {missing[0]} is not set; give the path or URL of "
                              f"STRING's 9606.protein.{missing[0]}.v12.0.txt.gz")
    return {k: string_path(string[k]) for k in ("links", "aliases")}


def string_download(plan: dict, filename: str) -> dict:
    """``{url, sha256, size}`` of the STRING download saved as ``resources/string/<filename>``."""
    string = (plan.get("tf_targets") or {}).get("string") or {}
    for key in ("links", "aliases"):
        value = string.get(key)
        if value and is_url(value) and raw_name(value) == filename:
            return {"url": value, "sha256": (string.get("sha256") or {}).get(key),
                    "size": (string.get("size") or {}).get(key)}
    raise SclinbenchError(f"no STRING download named {filename!r} in analyses: tf_targets: string")


def check(plan: dict, registry: dict, where: str = "the registry") -> None:
    """One-line errors for analyses naming unknown datasets (before any job)."""
    for name, settings in plan.items():
        for dataset in settings["datasets"]:
            if dataset not in registry:
                raise SclinbenchError(f"analyses: {name}: datasets names {dataset!r}, which is not in {where} "
                                      f"(known: {', '.join(sorted(registry))})")
    for dataset in datasets(plan, "structure"):
        entry = plan["structure"]["species"].get(dataset)
        if not entry or not entry.get("divergence"):
            raise SclinbenchError(f"analyses: structure: species: {dataset}: divergence is not set; give each "
                                  f"species' divergence from the reference, e.g. {{Mus musculus: 90}}")
        if not (entry.get("reference") or registry[dataset].get("reference")):
            raise SclinbenchError(f"analyses: structure: species: {dataset}: no reference species (set reference:)")
    if datasets(plan, "tf_targets") and not plan["tf_targets"]["tfs"]:
        raise SclinbenchError("analyses: tf_targets: tfs is empty; name the transcription factors (gene symbols)")
    string_files(plan)


def structure_params(plan: dict, registry: dict, dataset: str) -> dict:
    """The keyword arguments of :func:`sclinbench.analyses.structure.structure_analysis` for one dataset."""
    s = plan["structure"]
    entry = s["species"][dataset]
    return {"reference": str(entry.get("reference") or registry[dataset]["reference"]),
            "divergence": dict(entry["divergence"]), "divergence_unit": str(entry.get("unit", "")),
            "min_cells": s["min_cells"], "n_boot": s["n_boot"], "n_permutations": s["n_permutations"]}


def manifold_params(plan: dict) -> dict:
    m = plan["manifold"]
    return {"n_cells": m["n_cells"], "n_types": m["n_types"], "k": list(m["k"]),
            "representations": list(m["representations"]), "n_draws": m["n_draws"]}


def tf_params(plan: dict) -> dict:
    t = plan["tf_targets"]
    return {"tfs": list(t["tfs"]), "min_score": t["min_score"], "fdr": t["fdr"],
            "quantile": t["declared"]["quantile"], "min_frequency": t["declared"]["min_frequency"],
            "grid_quantiles": list(t["grid"]["quantiles"]), "grid_min_frequencies": list(t["grid"]["min_frequencies"]),
            "n_permutations": t["n_permutations"], "n_boot": t["n_boot"],
            "string_source": str((t.get("string") or {}).get("source", ""))}
