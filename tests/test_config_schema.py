"""config/schema.yaml accepts exactly what the package accepts: task keys, and every pipeline option
(choices, options per choice, defaults) against the package's registry."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.pipeline import build_pipeline
from sclinbench.evaluate.spec import DEFAULT_SHUFFLED_REPEATS, PipelineSpec
from sclinbench.evaluate.splits import (
    DEFAULT_DIAGONAL,
    DEFAULT_DIAGONAL_FRACTION,
    DIAGONAL_SPLITS,
    HOLDOUT_DEFAULTS,
    PROTOCOLS,
    SPLIT_KINDS,
    diagonal_spec,
)
from sclinbench.workflow.config import schema_errors

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
TASK = SCHEMA["$defs"]["task"]["properties"]


def normalize_spec(entry):
    """The canonical sections of a plain entry: its PipelineSpec (the one constructor), as a dict."""
    return PipelineSpec.from_config("pipeline", entry).canonical()



def _config(**task):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["tasks"] = {"t": {"kind": "cross_species", "split": "cross_species", "datasets": ["atlas"], **task}}
    return cfg


def test_enums_match_the_package():
    assert TASK["split"]["enum"] == list(SPLIT_KINDS)
    assert TASK["protocol"]["enum"] == list(PROTOCOLS) and TASK["protocol"]["default"] == "strict"
    obj = TASK["diagonal"]["oneOf"][1]["properties"]
    assert obj["split"]["enum"] == list(DIAGONAL_SPLITS)
    assert TASK["diagonal"]["default"] == DEFAULT_DIAGONAL
    # defaults of keys that apply to some splits only are in the descriptions (a schema default
    # would be filled into every diagonal / task by snakemake's validate with set_default)
    assert "default" not in obj["test_fraction"] and f"{DEFAULT_DIAGONAL_FRACTION} when not given" in \
        obj["test_fraction"]["description"]
    assert "default" not in obj["n_folds"] and f"{DEFAULT_DIAGONAL['n_folds']} when not given" in obj["n_folds"]["description"]
    assert "default" not in TASK["n_repeats"] and f"{HOLDOUT_DEFAULTS['n_repeats']} when not given" in \
        TASK["n_repeats"]["description"]
    assert TASK["test_fraction"]["default"] == HOLDOUT_DEFAULTS["test_fraction"]
    assert SCHEMA["$defs"]["pipeline"]["properties"]["repeats"]["default"] is None
    assert normalize_spec({"representation": "rankz", "model": "centroid", "control": "shuffled"})["repeats"] \
        == DEFAULT_SHUFFLED_REPEATS


@pytest.mark.parametrize("diagonal, ok", [
    ("none", True), ({"split": "donor", "n_folds": 4}, True), ({"split": "stratified"}, True),
    ({"split": "none"}, False), ({"split": "loo"}, False), ({"n_folds": 1}, False), ({"folds": 3}, False),
    (None, False), ({"split": "stratified_holdout", "test_fraction": 0.1}, True),
    ({"split": "stratified_holdout"}, True), ({"split": "stratified_holdout", "n_folds": 5}, False),
    ({"split": "stratified", "test_fraction": 0.1}, False), ({"test_fraction": 0.1}, False),
    ({"split": "stratified_holdout", "test_fraction": 1.0}, False),
])
def test_diagonal_accepted_by_schema_iff_by_package(diagonal, ok):
    schema_ok = not schema_errors(_config(diagonal=diagonal), str(ROOT / "config/schema.yaml"))
    try:
        diagonal_spec({"diagonal": diagonal, "name": "t"})
        package_ok = True
    except SclinbenchError:
        package_ok = False
    assert schema_ok == package_ok == ok


def test_report_declared_and_new_task_keys_validate():
    cfg = _config(min_donors_per_class=2, protocol="paper")
    cfg["report"]["declared"] = ["rankz_centroid"]
    assert not schema_errors(cfg, str(ROOT / "config/schema.yaml"))
    assert schema_errors(_config(protocol="lenient"), str(ROOT / "config/schema.yaml"))


def test_the_paper_configuration_declares_the_papers_pipelines():
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert not (ROOT / "config/paper_pipeline.yaml").exists()          # no opt-in file any more
    pipes = paper["pipelines"]
    pipe = build_pipeline(pipes["paper_rankz_anova_pca_logreg"])
    assert pipe.named_steps["represent"].name == "rankz"
    assert pipe.named_steps["select"].k == 20000
    assert pipe.named_steps["scale"].max_value is None                 # StandardScaler: no clipping
    assert pipe.named_steps["reduce"].n_components == 220 and pipe.named_steps["reduce"].whiten
    model = pipe.named_steps["model"].estimator
    assert model.class_weight == "balanced" and model.max_iter == 1000 and model.C == 1.0
    centroid = build_pipeline(pipes["paper_pseudobulk_centroid"]).named_steps["model"]
    assert centroid.basis == "pseudobulk_rankz"
    assert set(pipes) <= set(paper["report"]["declared"])
    cfg = {**yaml.safe_load((ROOT / "config/config.yaml").read_text()), **paper}
    cfg["pipelines"] = {**yaml.safe_load((ROOT / "config/config.yaml").read_text())["pipelines"], **pipes}
    assert not schema_errors(cfg, str(ROOT / "config/schema.yaml"))
    tasks = paper["tasks"]
    ts = tasks["ts_celltype_stratified"]
    assert (ts["split"], ts["n_repeats"], ts["test_fraction"], ts["min_cells_per_class"]) == \
        ("stratified_holdout", 5, 0.2, 100)
    assert tasks["spermatogenesis_cross_species"]["diagonal"] == {"split": "stratified_holdout", "test_fraction": 0.1}
    assert (tasks["infection_cell_paper"]["split"], tasks["infection_cell_paper"]["n_folds"]) == ("stratified", 10)
    assert {t for t, s in tasks.items() if s.get("protocol") == "paper"} == \
        {"ts_celltype_stratified", "spermatogenesis_cross_species", "infection_cell_paper"}


# --------------------------------------------------------------------------- one source of truth for options

def schema_disagreements(schema: dict, options: dict) -> list[str]:
    """Every way config/schema.yaml's pipeline sections differ from the package's option registry
    (``sclinbench.evaluate.spec.OPTIONS``): choices, options per choice, defaults, required options."""
    from sclinbench.evaluate.spec import CHOICE_KEYS, REQUIRED

    defs = schema["$defs"]

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    problems = []
    for section, registry in options.items():
        key = CHOICE_KEYS[section]
        sec = defs[section]
        enum = sec["properties"][key]["enum"]
        if enum != list(registry):
            problems.append(f"{section}.{key}: schema {enum}, package {list(registry)}")
        branches = {b["if"]["properties"][key]["const"]: b["then"] for b in sec.get("allOf", [])}
        for choice in sorted(set(branches) ^ set(registry)):
            problems.append(f"{section} '{choice}': {'no options in the schema' if choice in registry else 'not in the package'}")
        for choice in sorted(set(branches) & set(registry)):
            then = branches[choice]
            if then.get("additionalProperties") is not False:
                problems.append(f"{section} '{choice}': the schema allows options the package does not have")
            props = {k: resolve(v) for k, v in then.get("properties", {}).items() if k != key}
            want = registry[choice]
            for opt in sorted(set(props) ^ set(want)):
                problems.append(f"{section} '{choice}' option '{opt}': only in the {'schema' if opt in props else 'package'}")
            for opt in sorted(set(props) & set(want)):
                if want[opt] is REQUIRED:
                    if opt not in then.get("required", []) or "default" in props[opt]:
                        problems.append(f"{section} '{choice}' option '{opt}': required in the package, not in the schema")
                elif props[opt].get("default", "<none>") != want[opt]:
                    problems.append(f"{section} '{choice}' option '{opt}': default {props[opt].get('default', '<none>')!r} "
                                    f"in the schema, {want[opt]!r} in the package")
    return problems


def test_schema_pipeline_sections_are_the_package_options():
    from sclinbench.evaluate.spec import CONTROLS, OPTIONS, ROLES, SCALE_OPTIONS
    from sclinbench.represent import HVG_FLAVORS

    assert schema_disagreements(SCHEMA, OPTIONS) == []
    pipe = SCHEMA["$defs"]["pipeline"]["properties"]
    assert pipe["control"]["enum"] == list(CONTROLS) and pipe["role"]["enum"] == list(ROLES)
    scale = pipe["scale"]["oneOf"][1]["properties"]
    assert {k: v["default"] for k, v in scale.items()} == SCALE_OPTIONS
    hvg = next(b["then"] for b in SCHEMA["$defs"]["features"]["allOf"] if b["if"]["properties"]["method"]["const"] == "hvg")
    assert hvg["properties"]["flavor"]["enum"] == list(HVG_FLAVORS)


def test_a_schema_package_disagreement_is_caught():
    import copy

    from sclinbench.evaluate.spec import OPTIONS

    schema = copy.deepcopy(SCHEMA)
    logreg = next(b["then"] for b in schema["$defs"]["model"]["allOf"] if b["if"]["properties"]["name"]["const"] == "logreg")
    logreg["properties"]["max_iter"]["default"] = 5000      # the disagreement issue 13 found
    logreg["properties"]["alpha"] = {"type": "number"}       # an option of ridge offered to logreg
    schema["$defs"]["features"]["allOf"].pop()               # anova's options gone from the schema
    problems = schema_disagreements(schema, OPTIONS)
    assert "model 'logreg' option 'max_iter': default 5000 in the schema, 1000 in the package" in problems
    assert "model 'logreg' option 'alpha': only in the schema" in problems
    assert "features 'anova': no options in the schema" in problems
    options = copy.deepcopy(OPTIONS)
    options["model"]["knn"]["leaf_size"] = 30                # a package option the schema lacks
    assert schema_disagreements(SCHEMA, options) == ["model 'knn' option 'leaf_size': only in the package"]


@pytest.mark.parametrize("section, entry, bad", [
    ("model", {"name": "logreg", "alpha": 2}, "alpha"),
    ("model", {"name": "centroid", "C": 1.0}, "C"),
    ("model", {"name": "majority", "max_dense_elements": 10}, "max_dense_elements"),
    ("representation", {"name": "rankz", "target_sum": 10000}, "target_sum"),
    ("features", {"method": "hvg", "k": 100}, "k"),
    ("reduction", {"method": "none", "n_components": 5}, "n_components"),
])
def test_an_option_of_another_choice_is_refused_by_schema_and_package(section, entry, bad):
    cfg = _config()
    spec = {"representation": {"name": "rankz"}, "model": {"name": "centroid"}, section: entry}
    cfg["pipelines"] = {"p": spec}
    errors = schema_errors(cfg, str(ROOT / "config/schema.yaml"))
    assert errors and f"'{bad}' at pipelines.p.{section} is not an option of {section} '{entry.get('name', entry.get('method'))}'" in errors[0]
    with pytest.raises(SclinbenchError, match=f"has no option '{bad}'"):
        normalize_spec(spec)
    if section == "model":
        from sclinbench.evaluate.models import build_model

        with pytest.raises(SclinbenchError, match=f"model '{entry['name']}' has no option '{bad}'"):
            build_model(entry["name"], {k: v for k, v in entry.items() if k != "name"})


def test_every_hvg_flavour_selects_genes_and_a_missing_package_is_one_line():
    import importlib.util

    from synthetic_counts import nb_counts

    from sclinbench.represent import select_hvg

    X, _ = nb_counts(seed=0)
    for flavor in ("pearson_residuals", "seurat", "cell_ranger"):
        genes = select_hvg(X, 10, flavor=flavor)
        assert len(genes) == 10 and (np.diff(genes) > 0).all(), flavor
    spec = {"representation": "log1p", "features": {"method": "hvg", "flavor": "seurat_v3"}, "model": "centroid"}
    if importlib.util.find_spec("skmisc") is None:
        with pytest.raises(SclinbenchError, match="needs the package scikit-misc, which is not installed: pip install"):
            normalize_spec(spec)
    else:
        assert len(select_hvg(X, 10, flavor="seurat_v3")) == 10


def test_pipeline_spec_fields_are_the_schema_keys_and_the_package_options():
    """The typed spec adds no place where options are defined: its fields are the schema's pipeline
    keys (SPEC_KEYS, the sections of OPTIONS), a nested spec's the nested options."""
    import dataclasses

    from sclinbench.evaluate.spec import (
        NESTED_KEYS,
        NESTED_OPTIONS,
        OPTIONS,
        SECTIONS,
        SPEC_KEYS,
        NestedSpec,
    )

    props = set(SCHEMA["$defs"]["pipeline"]["properties"])
    fields = {f.name for f in dataclasses.fields(PipelineSpec)} - {"name"}
    assert fields == set(SPEC_KEYS) == props - {"nested"}
    assert set(SECTIONS) == set(SPEC_KEYS) - {"role", "description"} and set(OPTIONS) < set(SECTIONS)
    nested_fields = {f.name for f in dataclasses.fields(NestedSpec)} - {"name"}
    assert nested_fields == set(NESTED_OPTIONS) | set(NESTED_KEYS) - {"nested"}
    assert {f.name: f.default for f in dataclasses.fields(NestedSpec) if f.name in NESTED_OPTIONS
            and f.name != "candidates"} == {k: v for k, v in NESTED_OPTIONS.items() if k != "candidates"}
