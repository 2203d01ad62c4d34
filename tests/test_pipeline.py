"""Config entry -> Pipeline: structure, errors, signatures, leakage, and pbmc68k end-to-end."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from synthetic_counts import nb_counts

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.models import CentroidClassifier, InputAdapter, ShuffledLabels
from sclinbench.evaluate.pipeline import (
    STEP_NAMES,
    build_classifier,
    build_pipeline,
    build_preprocessing,
)
from sclinbench.evaluate.spec import PipelineSpec
from sclinbench.represent import (
    AnovaSelector,
    OffsetCSR,
    PCATransformer,
    RepresentationTransformer,
    ScaleClip,
)


def normalize_spec(entry):
    """The canonical sections of a plain entry: its PipelineSpec (the one constructor), as a dict."""
    return PipelineSpec.from_config("pipeline", entry).canonical()


def preprocessing_signature(entry):
    return PipelineSpec.from_config("pipeline", entry).preprocessing_key


FULL_SPEC = {
    "representation": {"name": "log1p", "target_sum": "median", "pseudocount": 1},
    "features": {"method": "hvg", "n_top": 20},
    "scale": {"max_value": 10},
    "reduction": {"method": "pca", "n_components": 5},
    "model": {"name": "logreg", "C": 0.5},
    "control": "none",
}


# ------------------------------------------------------------------------------------------------
# structure
# ------------------------------------------------------------------------------------------------
def test_full_spec_builds_the_five_steps():
    pipe = build_pipeline(FULL_SPEC, seed=3)
    assert tuple(name for name, _ in pipe.steps) == STEP_NAMES
    rep = pipe.named_steps["represent"]
    assert isinstance(rep, RepresentationTransformer)
    assert rep.name == "log1p" and rep.hvg == 20 and rep.params["target_sum"] == "median"
    assert pipe.named_steps["select"] == "passthrough"  # hvg lives in the representation step
    assert isinstance(pipe.named_steps["scale"], ScaleClip) and pipe.named_steps["scale"].max_value == 10
    pca = pipe.named_steps["reduce"]
    assert isinstance(pca, PCATransformer) and pca.n_components == 5 and pca.random_state == 3
    model = pipe.named_steps["model"]
    assert isinstance(model, InputAdapter) and model.estimator.C == 0.5


def test_minimal_spec_defaults_to_passthrough_steps():
    pipe = build_pipeline({"representation": {"name": "rankz"}, "model": {"name": "centroid"}})
    assert [pipe.named_steps[s] for s in ("select", "scale", "reduce")] == ["passthrough"] * 3
    assert isinstance(pipe.named_steps["model"], CentroidClassifier)


def test_anova_control_and_string_shorthands():
    pipe = build_pipeline(
        {"representation": "rankz", "features": {"method": "anova", "k": 10}, "scale": True,
         "model": "centroid", "control": "shuffled"},
        seed=5,
    )
    assert isinstance(pipe.named_steps["select"], AnovaSelector) and pipe.named_steps["select"].k == 10
    assert pipe.named_steps["scale"].max_value == 10
    ctrl = pipe.named_steps["model"]
    assert isinstance(ctrl, ShuffledLabels) and ctrl.random_state == 5


def test_embedding_is_passthrough_and_reads_obsm():
    spec = {"representation": {"name": "embedding", "obsm_key": "X_uce"}, "model": {"name": "knn"}}
    assert normalize_spec(spec)["representation"] == {"name": "embedding", "obsm_key": "X_uce"}
    pipe = build_pipeline(spec)
    assert pipe.named_steps["represent"] == "passthrough"
    rng = np.random.default_rng(0)
    E = rng.normal(size=(40, 8))
    y = np.repeat(["a", "b"], 20)
    E[y == "a"] += 3
    assert (pipe.fit(E, y).predict(E) == y).all()


def test_built_pipeline_runs_on_offsetcsr_end_to_end():
    X, y = nb_counts(seed=1)
    pipe = build_pipeline({"representation": {"name": "rankz"}, "features": {"method": "anova", "k": 12},
                           "model": {"name": "centroid"}}).fit(X[:100], y[:100])
    Xt = pipe[:-1].transform(X[100:])
    assert isinstance(Xt, OffsetCSR) and Xt.shape == (50, 12)
    assert (pipe.predict(X[100:]) == y[100:]).mean() > 0.9


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"representation": {"name": "tfidf"}, "model": {"name": "centroid"}},
         "representation.name.*'tfidf'.*valid: counts, log1p, sqrt, pearson, rankz, embedding"),
        ({"representation": {"name": "log1p", "target": 1}, "model": {"name": "centroid"}},
         "representation 'log1p' has no option 'target' \\(its options: target_sum, pseudocount\\)"),
        ({"representation": "rankz", "model": {"name": "logreg", "alpha": 2}},
         "model 'logreg' has no option 'alpha'.*'alpha' is an option of ridge"),
        ({"representation": "rankz", "features": {"method": "pca"}, "model": "centroid"},
         "features.method.*'pca'.*valid: none, hvg, anova"),
        ({"representation": "rankz", "reduction": {"method": "umap"}, "model": "centroid"},
         "reduction.method.*'umap'.*valid: none, pca"),
        ({"representation": "rankz", "model": {"name": "xgb"}}, "model.name.*'xgb'.*valid: logreg"),
        ({"representation": "rankz", "model": "centroid", "control": "permuted"},
         "control.*'permuted'.*valid: none, shuffled"),
        ({"representation": "rankz", "model": "centroid", "reduce": {}}, "unknown key.*reduce.*valid: representation"),
        ({"representation": "rankz"}, "'model' is required"),
        ({"representation": {"name": "embedding"}, "model": "knn"}, "obsm_key"),
        ({"representation": {"name": "embedding", "obsm_key": "X"}, "features": {"method": "hvg", "n_top": 5},
          "model": "knn"}, "hvg.*cannot follow representation 'embedding'"),
        ({"representation": "rankz", "features": {"method": "anova", "k": 0}, "model": "centroid"},
         "anova.*'k' must be a positive integer"),
        ({"representation": "rankz", "features": {"method": "hvg", "flavor": "seurat_v4"}, "model": "centroid"},
         "hvg flavor 'seurat_v4' is unknown; valid: pearson_residuals, seurat, cell_ranger, seurat_v3"),
        ({"representation": "rankz", "reduction": {"method": "pca", "n_components": 0}, "model": "centroid"},
         "n_components.*positive integer"),
        ({"representation": "rankz", "scale": "yes", "model": "centroid"}, "'scale' must be"),
        ({"representation": {"name": "log1p", "target_sum": "mean"}, "model": "centroid"}, "target_sum"),
        ({"representation": "rankz", "model": {"name": "logreg", "C": 0}}, "C must be a positive number"),
    ],
)
def test_bad_specs_raise_one_line_errors_naming_the_key(spec, match):
    with pytest.raises(SclinbenchError, match=match) as exc:
        build_pipeline(spec)
    assert "\n" not in str(exc.value)


def test_preprocessing_signature_ignores_model_and_control_only():
    a = {**FULL_SPEC, "model": {"name": "centroid"}}
    b = {**FULL_SPEC, "model": {"name": "knn", "n_neighbors": 3}, "control": "shuffled"}
    assert preprocessing_signature(a) == preprocessing_signature(b) == preprocessing_signature(FULL_SPEC)
    hash(preprocessing_signature(a))
    c = {**FULL_SPEC, "reduction": {"method": "pca", "n_components": 6}}
    assert preprocessing_signature(c) != preprocessing_signature(a)
    # equivalent spellings of the same preprocessing share a signature
    d1 = {"representation": {"name": "log1p"}, "model": "centroid"}
    d2 = {"representation": {"name": "log1p", "target_sum": 10000, "pseudocount": 1.0},
          "features": {"method": "none"}, "scale": False, "reduction": "none", "model": "ridge"}
    assert preprocessing_signature(d1) == preprocessing_signature(d2)
    assert normalize_spec(d2)["representation"]["target_sum"] == 1e4


def test_schema_filled_defaults_build_the_same_pipeline():
    """Validation with defaults (snakemake's validate) fills in the chosen options' defaults only,
    and the pipeline is the one the minimal entry gives."""
    import yaml
    from snakemake.utils import validate

    minimal = {"representation": {"name": "log1p"}, "features": {"method": "hvg", "n_top": 30},
               "reduction": {"method": "pca"}, "model": {"name": "logreg"}}
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["pipelines"] = {"p": {k: dict(v) for k, v in minimal.items()}}
    validate(cfg, str(REPO / "config" / "schema.yaml"))  # set_default=True
    filled = cfg["pipelines"]["p"]
    from sclinbench.evaluate.models import MODELS

    assert filled["model"]["max_iter"] == 1000 and set(filled["model"]) <= {"name", *MODELS["logreg"]}
    assert filled["features"] == {"method": "hvg", "n_top": 30, "flavor": "pearson_residuals"}
    assert normalize_spec(filled) == normalize_spec(minimal)
    assert str(build_pipeline(filled)) == str(build_pipeline(minimal))


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (REPO / "config" / "schema.yaml").exists(), reason="no config schema")
def test_every_configured_pipeline_builds_after_schema_validation():
    import yaml
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    grid = REPO / "config" / "grid.yaml"
    if grid.exists():
        cfg["pipelines"].update(yaml.safe_load(grid.read_text()).get("pipelines", {}))
    validate(cfg, str(REPO / "config" / "schema.yaml"))  # fills in the schema defaults
    for name, spec in cfg["pipelines"].items():
        assert len(build_pipeline(spec, seed=0).steps) == 5, name


def test_preprocessing_and_classifier_make_the_whole_pipeline():
    X, y = nb_counts(seed=2)
    pre, model = build_preprocessing(FULL_SPEC, seed=0), build_classifier(FULL_SPEC, seed=0)
    assert [n for n, _ in pre.steps] == list(STEP_NAMES[:-1])
    Xt = pre.fit_transform(X[:100], y[:100])
    model.fit(Xt, y[:100])
    whole = build_pipeline(FULL_SPEC, seed=0).fit(X[:100], y[:100])
    assert np.array_equal(model.predict(pre.transform(X[100:])), whole.predict(X[100:]))


# ------------------------------------------------------------------------------------------------
# leakage: the whole built pipeline
# ------------------------------------------------------------------------------------------------
def _fitted_state(est, prefix=""):
    """All fitted attributes (trailing underscore) of a pipeline, recursively."""
    out = {}
    steps = est.steps if hasattr(est, "steps") else [(prefix or "est", est)]
    for name, step in steps:
        if isinstance(step, str):
            continue
        for k, v in vars(step).items():
            if k.endswith("_") and not k.startswith("_"):
                if hasattr(v, "get_params") and hasattr(v, "fit"):
                    out.update(_fitted_state(v, f"{name}.{k}"))
                else:
                    out[f"{name}.{k}"] = v
    return out


LEAK_SPECS = {
    "log1p_median_hvg_scale_pca_logreg": FULL_SPEC,
    "pearson_hvg_anova_centroid": {"representation": {"name": "pearson"}, "features": {"method": "hvg", "n_top": 25},
                                   "scale": True, "model": {"name": "centroid"}},
    "rankz_anova_pca_lda": {"representation": "rankz", "features": {"method": "anova", "k": 20},
                            "reduction": {"method": "pca", "n_components": 4}, "model": "lda"},
    "sqrt_shuffled_knn": {"representation": {"name": "sqrt", "target_sum": "median"}, "model": "knn",
                          "control": "shuffled"},
}


@pytest.mark.parametrize("name", list(LEAK_SPECS))
def test_pipeline_fit_is_bit_identical_when_only_test_cells_change(name):
    X, y = nb_counts(seed=3)
    train, test = np.arange(100), np.arange(100, 150)
    D = X.toarray()
    D[test] = D[test][::-1] * 5 + 2  # perturb the test cells only
    Xp = sp.csr_matrix(D)
    a = build_pipeline(LEAK_SPECS[name], seed=0).fit(X[train], y[train])
    b = build_pipeline(LEAK_SPECS[name], seed=0).fit(Xp[train], y[train])
    sa, sb = _fitted_state(a), _fitted_state(b)
    assert sa.keys() == sb.keys() and len(sa) >= 5
    for k in sa:
        va, vb = sa[k], sb[k]
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype, k
            assert np.array_equal(va, vb, equal_nan=va.dtype.kind in "fc"), k
        else:
            assert va == vb, k
    # predictions for a cell do not depend on which other cells are predicted with it
    assert np.array_equal(a.predict(Xp)[train], a.predict(X[train]))


# ------------------------------------------------------------------------------------------------
# pbmc68k: real data, held-out split, well above the shuffled-labels control
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pbmc():
    sc = pytest.importorskip("scanpy")
    a = sc.datasets.pbmc68k_reduced()
    X = a.raw.X.tocsr().astype(np.float64)
    X.data = np.expm1(X.data)
    X = sp.csr_matrix(X.multiply(a.obs["n_counts"].to_numpy()[:, None] / 1e4))
    X.data = np.round(X.data)
    X.eliminate_zeros()
    y = a.obs["bulk_labels"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):  # stratified 30% held out
        idx = np.flatnonzero(y == label)
        test[rng.choice(idx, size=max(1, int(round(0.3 * idx.size))), replace=False)] = True
    return X.astype(np.float32), y, np.flatnonzero(~test), np.flatnonzero(test)


@pytest.mark.parametrize(
    "spec",
    [
        {"representation": {"name": "rankz"}, "model": {"name": "centroid"}},
        {"representation": {"name": "log1p"}, "scale": True, "reduction": {"method": "pca", "n_components": 30},
         "model": {"name": "logreg"}},
    ],
    ids=["rankz_centroid", "log1p_pca_logreg"],
)
def test_pbmc68k_macro_f1_well_above_shuffled_control(pbmc, spec):
    from sklearn.metrics import f1_score

    X, y, train, test = pbmc
    assert np.all(X.data == np.round(X.data)) and X.data.min() >= 1  # recovered integer counts
    real = build_pipeline(spec, seed=0).fit(X[train], y[train]).predict(X[test])
    ctrl = build_pipeline({**spec, "control": "shuffled"}, seed=0).fit(X[train], y[train]).predict(X[test])
    f1_real = f1_score(y[test], real, average="macro")
    f1_ctrl = f1_score(y[test], ctrl, average="macro")
    assert f1_real > 0.5, f1_real
    assert f1_ctrl < 0.2, f1_ctrl
    assert f1_real - f1_ctrl > 0.35


def test_repeats_belong_to_shuffled_controls_only():
    shuffled = normalize_spec({"representation": "rankz", "model": "centroid", "control": "shuffled"})
    assert shuffled["repeats"] == 5
    assert normalize_spec({"representation": "rankz", "model": "centroid", "control": "shuffled",
                           "repeats": 2})["repeats"] == 2
    assert normalize_spec({"representation": "rankz", "model": "centroid", "repeats": None})["repeats"] == 1
    with pytest.raises(SclinbenchError, match="'repeats' .* applies to control: shuffled only"):
        normalize_spec({"representation": "rankz", "model": "centroid", "repeats": 3})
    with pytest.raises(SclinbenchError, match="'repeats' must be a positive integer"):
        normalize_spec({"representation": "rankz", "model": "centroid", "control": "shuffled", "repeats": 0})


def test_specs_of_every_config_are_made_once_frozen_and_keyed_as_the_workflow_names_jobs():
    """parse_pipelines over the default run, the grid and nested.yaml: a spec per entry, frozen,
    picklable; its job_representation is the key rules/common.smk reads from an entry in a job's
    own snakemake; a spec passed on is the same object (never made again)."""
    import dataclasses
    import pickle

    import yaml

    from sclinbench.evaluate.spec import NestedSpec, parse_pipelines

    pipes = {}
    for name in ("config.yaml", "grid.yaml", "nested.yaml"):
        pipes.update(yaml.safe_load((REPO / "config" / name).read_text())["pipelines"])
    specs = parse_pipelines(pipes)
    assert list(specs) == list(pipes)
    for name, spec in specs.items():
        entry = pipes[name]
        assert spec.name == name
        assert spec.job_representation == ("nested" if "nested" in entry else entry["representation"]["name"])
        assert pickle.loads(pickle.dumps(spec)) == spec
    assert isinstance(specs["nested_linear"], NestedSpec)
    assert all(c == specs[n] for n, c in specs["nested_linear"].candidates.items())  # candidates as specs
    with pytest.raises(dataclasses.FrozenInstanceError):
        specs["rankz_centroid"].model = {"name": "knn"}
    assert parse_pipelines(specs)["rankz_centroid"] is specs["rankz_centroid"]
    assert PipelineSpec.from_config("x", specs["rankz_centroid"]) is specs["rankz_centroid"]
    # the keys that decide sharing
    a, b = specs["rankz_centroid"], specs["control_shuffled"]
    assert a.preprocessing_key == b.preprocessing_key and a.representation_key == b.representation_key
    assert specs["log1p_pca_logreg"].representation_key != a.representation_key
    assert a.canonical() == normalize_spec(pipes["rankz_centroid"]) and a.role == "method" and b.role == "control"


def test_a_bad_entry_in_a_config_is_one_line_naming_the_pipeline():
    from sclinbench.evaluate.spec import parse_pipelines

    with pytest.raises(SclinbenchError, match=r"^pipeline 'p' in the configuration: pipeline key 'model.name': "
                                              r"'nope' is unknown; valid: ") as exc:
        parse_pipelines({"p": {"representation": {"name": "rankz"}, "model": {"name": "nope"}}})
    assert "\n" not in str(exc.value)
    with pytest.raises(SclinbenchError, match=r"^pipeline 'n': candidate 'p': pipeline key 'model.name'"):
        parse_pipelines({"n": {"nested": {"candidates": ["p", "q"]}},
                         "p": {"representation": "rankz", "model": "nope"}, "q": {"representation": "rankz",
                                                                                "model": "centroid"}})
