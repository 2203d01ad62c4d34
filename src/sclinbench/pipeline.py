"""Config pipeline entries -> scikit-learn ``Pipeline``.

One ``pipelines:`` entry of the config::

    representation: {name: rankz}       # or {name: log1p, target_sum: 10000, pseudocount: 1},
                                        #    {name: embedding, obsm_key: X_uce}
    features: {method: none}            # none | hvg (n_top, flavor) | anova (k)
    scale: false                        # or true / {max_value: 10}
    reduction: {method: none}           # none | pca (n_components, whiten)
    model: {name: centroid}             # + params, e.g. {name: logreg, C: 1.0}
    control: none                       # none | shuffled (wrap the model in ShuffledLabels)
    repeats: 5                          # shuffled only: permutations per fold (each its own seed)

becomes ``Pipeline([("represent", ...), ("select", ...), ("scale", ...), ("reduce", ...),
("model", ...)])``; unused steps are ``"passthrough"``. Every stateful step is fitted on the
training cells only. For ``embedding`` the pipeline's input is ``adata.obsm[obsm_key]`` instead of
the counts; HVG selection is count-based and happens inside the
representation step.
"""

from __future__ import annotations

import json
import numbers

from sklearn.pipeline import Pipeline

from sclinbench.errors import SclinbenchError, refuse_foreign_options
from sclinbench.models import MODELS, ShuffledLabels, build_model
from sclinbench.represent import (
    FEATURE_SELECTORS,
    REDUCTIONS,
    REPRESENTATIONS,
    AnovaSelector,
    PCATransformer,
    RepresentationTransformer,
    ScaleClip,
)
from sclinbench.represent.pca import check_svd_solver
from sclinbench.represent.select import check_hvg_flavor

SPEC_KEYS = ("representation", "features", "scale", "reduction", "model", "control", "repeats", "description",
             "role")
#: Marks an option without a default (it must be given).
REQUIRED = "<required>"
#: Every choice of every pipeline section and its options (name -> default), the one definition the
#: config schema is tested against (tests/test_config_schema.py). ``representation`` and ``model``
#: choose by ``name``, ``features`` and ``reduction`` by ``method``.
OPTIONS: dict[str, dict[str, dict]] = {
    "representation": {**REPRESENTATIONS, "embedding": {"obsm_key": REQUIRED}},
    "features": FEATURE_SELECTORS,
    "reduction": REDUCTIONS,
    "model": MODELS,
}
CHOICE_KEYS = {"representation": "name", "features": "method", "reduction": "method", "model": "name"}
#: ``scale: true`` means these options; ``scale: {max_value: ...}`` sets them.
SCALE_OPTIONS = {"max_value": 10.0}
#: Label permutations per fold of a shuffled-label control (``repeats:``), when not given.
DEFAULT_SHUFFLED_REPEATS = 5
ROLES = ("method", "control")
CONTROLS = ("none", "shuffled")
STEP_NAMES = ("represent", "select", "scale", "reduce", "model")


def _section(spec: dict, key: str, default: dict, name_key: str) -> dict:
    """A spec section as a dict; a bare string means ``{name_key: string}``."""
    value = spec.get(key, default)
    if value is None:
        value = default
    if isinstance(value, str):
        value = {name_key: value}
    if not isinstance(value, dict):
        raise SclinbenchError(
            f"pipeline key '{key}' must be a mapping like {{{name_key}: ...}}, got {value!r}"
        )
    if name_key not in value:
        raise SclinbenchError(f"pipeline key '{key}' needs '{name_key}'")
    return dict(value)


def _check_keys(where: str, given: dict, valid) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise SclinbenchError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(valid) if valid else 'none'}"
        )


def _choice(spec: dict, key: str, default: dict | None = None) -> dict:
    """One section of a spec: its choice, the options given for it (checked against
    :data:`OPTIONS`) and the defaults of the others.

    An option that belongs to another choice (``model: {name: logreg, alpha: 2}``) is an error that
    names the choices it does belong to -- never silently dropped.
    """
    name_key = CHOICE_KEYS[key]
    registry = OPTIONS[key]
    section = _section(spec, key, default or {}, name_key)
    name = section[name_key]
    if name not in registry:
        raise SclinbenchError(
            f"pipeline key '{key}.{name_key}': '{name}' is unknown; valid: {', '.join(registry)}"
        )
    options = registry[name]
    given = {k: v for k, v in section.items() if k != name_key}
    refuse_foreign_options(registry, key, name, given, prefix=f"pipeline key '{key}': ")
    missing = [k for k, v in options.items() if v is REQUIRED and k not in given]
    if missing:
        raise SclinbenchError(f"{key} '{name}' needs {', '.join(map(repr, missing))}")
    return {name_key: name, **{k: v for k, v in options.items() if v is not REQUIRED}, **given}


def _numbers_as_float(d: dict) -> dict:
    """Copy of ``d`` with int values turned into float (so 10000 and 1e4 are the same setting)."""
    return {
        k: float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v for k, v in d.items()
    }


def _int_param(where: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise SclinbenchError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return int(value)


def normalize_spec(spec: dict) -> dict:
    """Validate a pipeline spec and return it in canonical form (every section a dict).

    Every section's options are checked against :data:`OPTIONS`, the defaults of the chosen
    option filled in: an option of another choice (``target_sum`` under ``rankz``, ``alpha`` under
    ``logreg``) or of no choice raises :class:`SclinbenchError` naming the key, the choice and the
    valid options. ``description`` and ``role`` are accepted and not used here. Canonical specs
    normalize to themselves.
    """
    if not isinstance(spec, dict):
        raise SclinbenchError(f"a pipeline entry must be a mapping, got {type(spec).__name__}")
    _check_keys("pipeline", spec, SPEC_KEYS)
    if "representation" not in spec:
        raise SclinbenchError("pipeline: key 'representation' is required (e.g. {name: rankz})")
    if "model" not in spec:
        raise SclinbenchError("pipeline: key 'model' is required (e.g. {name: centroid})")
    role = spec.get("role", "method")
    if role not in ROLES:
        raise SclinbenchError(f"pipeline key 'role': '{role}' is unknown; valid: {', '.join(ROLES)}")

    rep = _choice(spec, "representation")
    if rep["name"] == "embedding":
        if not isinstance(rep.get("obsm_key"), str) or not rep["obsm_key"]:
            raise SclinbenchError(
                "representation 'embedding' needs 'obsm_key' (the adata.obsm key, e.g. X_uce)"
            )
    else:
        rep = {"name": rep["name"], **_numbers_as_float({k: v for k, v in rep.items() if k != "name"})}

    feat = _choice(spec, "features", {"method": "none"})
    if feat["method"] == "hvg":
        feat["n_top"] = _int_param("features 'hvg'", "n_top", feat["n_top"])
        check_hvg_flavor(feat["flavor"])
        if rep["name"] == "embedding":
            raise SclinbenchError(
                "features 'hvg' selects genes from counts and cannot follow representation 'embedding'; "
                "use features: {method: none} or {method: anova, k: ...}"
            )
    elif feat["method"] == "anova":
        feat["k"] = _int_param("features 'anova'", "k", feat["k"])

    scale = spec.get("scale", False)
    if scale is None or scale is False:
        scale = None
    elif scale is True:
        scale = dict(SCALE_OPTIONS)
    elif isinstance(scale, dict):
        _check_keys("scale", scale, tuple(SCALE_OPTIONS))
        scale = _numbers_as_float({**SCALE_OPTIONS, **scale})
    else:
        raise SclinbenchError(f"pipeline key 'scale' must be false, true or {{max_value: 10}}, got {scale!r}")

    red = _choice(spec, "reduction", {"method": "none"})
    if red["method"] == "pca":
        red["n_components"] = _int_param("reduction 'pca'", "n_components", red["n_components"])
        red["whiten"] = bool(red["whiten"])
        check_svd_solver(red["svd_solver"])

    model = _choice(spec, "model")
    if model["name"] == "centroid" and model.get("basis") == "pseudobulk_rankz" and (
            rep["name"] != "counts" or feat["method"] != "none" or scale is not None or red["method"] != "none"):
        raise SclinbenchError(
            "model 'centroid' with basis pseudobulk_rankz builds its profiles from raw counts and rankz's "
            "each cell itself: use representation: {name: counts} and no features, scale or reduction"
        )

    control = spec.get("control", "none")
    control = "none" if control in (None, False) else control
    if control not in CONTROLS:
        raise SclinbenchError(
            f"pipeline key 'control': '{control}' is unknown; valid: {', '.join(CONTROLS)}"
        )
    repeats = spec.get("repeats")
    if repeats is None:
        repeats = DEFAULT_SHUFFLED_REPEATS if control == "shuffled" else 1
    repeats = _int_param("pipeline", "repeats", repeats)
    if control != "shuffled" and repeats != 1:
        raise SclinbenchError(
            f"pipeline key 'repeats' ({repeats}) applies to control: shuffled only (a deterministic "
            "pipeline gives the same predictions every time); remove it"
        )
    return {
        "representation": rep,
        "features": feat,
        "scale": scale,
        "reduction": red,
        "model": model,
        "control": control,
        "repeats": repeats,
    }


def build_preprocessing(spec: dict, seed: int = 0) -> Pipeline:
    """Unfitted ``Pipeline`` of the steps before the model: ``represent, select, scale, reduce``.

    Unused steps are ``"passthrough"``; for ``embedding`` the input is ``adata.obsm[obsm_key]``
    (the representation step passes it through), otherwise the raw counts (CSR, cells x genes).
    """
    s = normalize_spec(spec)
    rep, feat = s["representation"], s["features"]
    if rep["name"] == "embedding":
        represent = "passthrough"
    else:
        params = {k: v for k, v in rep.items() if k != "name"}
        represent = RepresentationTransformer(
            rep["name"],
            params=params or None,
            hvg=feat["n_top"] if feat["method"] == "hvg" else None,
            hvg_flavor=feat.get("flavor", FEATURE_SELECTORS["hvg"]["flavor"]),
        )
        represent.resolved_params()  # fail at build time on bad parameters
    select = AnovaSelector(k=feat["k"]) if feat["method"] == "anova" else "passthrough"
    red = s["reduction"]
    # before PCA (which centres), sparse input is scaled in its exact sparse form (ScaleClip docs)
    scale = (ScaleClip(max_value=s["scale"]["max_value"], sparse_shift=red["method"] == "pca")
             if s["scale"] else "passthrough")
    reduce = (
        PCATransformer(n_components=red["n_components"], whiten=red["whiten"], random_state=seed,
                       svd_solver=red["svd_solver"])
        if red["method"] == "pca"
        else "passthrough"
    )
    return Pipeline(list(zip(STEP_NAMES[:-1], (represent, select, scale, reduce))))


def build_classifier(spec: dict, seed: int = 0):
    """Unfitted model of a pipeline entry (wrapped in :class:`~sclinbench.models.ShuffledLabels`
    for ``control: shuffled``)."""
    s = normalize_spec(spec)
    model_params = {k: v for k, v in s["model"].items() if k != "name"}
    model = build_model(s["model"]["name"], model_params, seed)
    if s["control"] == "shuffled":
        model = ShuffledLabels(model, random_state=seed)
    return model


def build_pipeline(spec: dict, seed: int = 0) -> Pipeline:
    """scikit-learn ``Pipeline`` for one config pipeline entry.

    Parameters
    ----------
    spec
        The pipeline entry (see the module docstring).
    seed
        Seed for PCA, the model (inner CV, LinearSVC) and the shuffled-labels control.

    Returns
    -------
    Unfitted ``Pipeline`` with steps ``represent, select, scale, reduce, model``
    (:func:`build_preprocessing` followed by :func:`build_classifier`). Its input is the raw counts
    (CSR, cells x genes) or, for ``embedding``, ``adata.obsm[obsm_key]``.
    """
    steps = build_preprocessing(spec, seed).steps
    return Pipeline([*steps, (STEP_NAMES[-1], build_classifier(spec, seed))])


def preprocessing_signature(spec: dict) -> str:
    """Hashable key of everything in ``spec`` except the model and the control.

    Two specs with the same signature have identical preprocessing (given the same seed and
    training cells), so a caller may fit the preprocessing once per fold and reuse it for several
    models (see :func:`build_preprocessing`).
    """
    s = normalize_spec(spec)
    pre = {k: s[k] for k in ("representation", "features", "scale", "reduction")}
    return json.dumps(pre, sort_keys=True, default=str)
