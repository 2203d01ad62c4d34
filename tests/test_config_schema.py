"""config/schema.yaml accepts exactly what the package accepts for the keys of issue 9."""

from pathlib import Path

import pytest
import yaml

from sclinbench.config import schema_errors
from sclinbench.errors import SclinbenchError
from sclinbench.pipeline import DEFAULT_SHUFFLED_REPEATS, build_pipeline, normalize_spec
from sclinbench.splits import DIAGONAL_SPLITS, PROTOCOLS, SPLIT_KINDS, DEFAULT_DIAGONAL, diagonal_spec

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
TASK = SCHEMA["$defs"]["task"]["properties"]


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
    assert SCHEMA["$defs"]["pipeline"]["properties"]["repeats"]["default"] is None
    assert normalize_spec({"representation": "rankz", "model": "centroid", "control": "shuffled"})["repeats"] \
        == DEFAULT_SHUFFLED_REPEATS


@pytest.mark.parametrize("diagonal, ok", [
    ("none", True), ({"split": "donor", "n_folds": 4}, True), ({"split": "stratified"}, True),
    ({"split": "none"}, False), ({"split": "loo"}, False), ({"n_folds": 1}, False), ({"folds": 3}, False),
    (None, False),
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


def test_the_papers_exact_pipeline_builds():
    spec = yaml.safe_load((ROOT / "config/paper_pipeline.yaml").read_text())["pipelines"]["paper_rankz_anova_pca_logreg"]
    pipe = build_pipeline(spec)
    assert pipe.named_steps["select"].k == 20000
    assert pipe.named_steps["reduce"].n_components == 220 and pipe.named_steps["reduce"].whiten
    assert pipe.named_steps["model"].estimator.class_weight == "balanced"
