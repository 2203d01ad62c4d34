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
the counts (see :func:`embedding_key`); HVG selection is count-based and happens inside the
representation step.
"""

from __future__ import annotations

import json
import numbers

from sklearn.pipeline import Pipeline

from sclinbench.errors import SclinbenchError
from sclinbench.models import MODELS, ShuffledLabels, build_model
from sclinbench.represent import (
    HVG_FLAVORS,
    REPRESENTATIONS,
    AnovaSelector,
    PCATransformer,
    RepresentationTransformer,
    ScaleClip,
)

SPEC_KEYS = ("representation", "features", "scale", "reduction", "model", "control", "repeats", "description",
             "role")
#: Label permutations per fold of a shuffled-label control (``repeats:``), when not given.
DEFAULT_SHUFFLED_REPEATS = 5
REPRESENTATION_KEYS = ("name", *dict.fromkeys(k for d in REPRESENTATIONS.values() for k in d), "obsm_key")
FEATURE_KEYS = ("method", "n_top", "flavor", "k")
REDUCTION_KEYS = ("method", "n_components", "whiten")
FEATURE_METHODS = ("none", "hvg", "anova")
REDUCTION_METHODS = ("none", "pca")
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

    Keys that belong to another choice of the same section (e.g. ``target_sum`` under
    ``rankz``, ``k`` under ``hvg``) are dropped: a config validated against ``config/schema.yaml``
    carries every default. Keys no choice knows raise :class:`SclinbenchError` naming the key and
    listing valid values. ``description`` and ``role`` are accepted and not used here.
    """
    if not isinstance(spec, dict):
        raise SclinbenchError(f"a pipeline entry must be a mapping, got {type(spec).__name__}")
    _check_keys("pipeline", spec, SPEC_KEYS)
    if "representation" not in spec:
        raise SclinbenchError("pipeline: key 'representation' is required (e.g. {name: rankz})")
    if "model" not in spec:
        raise SclinbenchError("pipeline: key 'model' is required (e.g. {name: centroid})")

    rep = _section(spec, "representation", {}, "name")
    rep_names = [*REPRESENTATIONS, "embedding"]
    if rep["name"] not in rep_names:
        raise SclinbenchError(
            f"pipeline key 'representation.name': '{rep['name']}' is unknown; valid: {', '.join(rep_names)}"
        )
    _check_keys(f"representation '{rep['name']}'", rep, REPRESENTATION_KEYS)
    if rep["name"] == "embedding":
        if not isinstance(rep.get("obsm_key"), str) or not rep["obsm_key"]:
            raise SclinbenchError(
                "representation 'embedding' needs 'obsm_key' (the adata.obsm key, e.g. X_uce)"
            )
        rep = {"name": "embedding", "obsm_key": rep["obsm_key"]}
    else:
        defaults = REPRESENTATIONS[rep["name"]]
        applicable = {k: v for k, v in rep.items() if k in defaults}
        rep = {"name": rep["name"], **defaults, **_numbers_as_float(applicable)}

    feat = _section(spec, "features", {"method": "none"}, "method")
    if feat["method"] not in FEATURE_METHODS:
        raise SclinbenchError(
            f"pipeline key 'features.method': '{feat['method']}' is unknown; valid: {', '.join(FEATURE_METHODS)}"
        )
    _check_keys(f"features '{feat['method']}'", feat, FEATURE_KEYS)
    if feat["method"] == "hvg":
        feat = {
            "method": "hvg",
            "n_top": _int_param("features 'hvg'", "n_top", feat.get("n_top", 2000)),
            "flavor": feat.get("flavor", HVG_FLAVORS[0]),
        }
        if feat["flavor"] not in HVG_FLAVORS:
            raise SclinbenchError(
                f"pipeline key 'features.flavor': '{feat['flavor']}' is unknown; valid: {', '.join(HVG_FLAVORS)}"
            )
        if rep["name"] == "embedding":
            raise SclinbenchError(
                "features 'hvg' selects genes from counts and cannot follow representation 'embedding'; "
                "use features: {method: none} or {method: anova, k: ...}"
            )
    elif feat["method"] == "anova":
        if "k" not in feat:
            raise SclinbenchError("features 'anova' needs 'k' (number of features to keep)")
        feat = {"method": "anova", "k": _int_param("features 'anova'", "k", feat["k"])}
    else:
        feat = {"method": "none"}

    scale = spec.get("scale", False)
    if scale is None or scale is False:
        scale = None
    elif scale is True:
        scale = {"max_value": 10.0}
    elif isinstance(scale, dict):
        _check_keys("scale", scale, ("max_value",))
        scale = _numbers_as_float({"max_value": scale.get("max_value", 10.0)})
    else:
        raise SclinbenchError(f"pipeline key 'scale' must be false, true or {{max_value: 10}}, got {scale!r}")

    red = _section(spec, "reduction", {"method": "none"}, "method")
    if red["method"] not in REDUCTION_METHODS:
        raise SclinbenchError(
            f"pipeline key 'reduction.method': '{red['method']}' is unknown; valid: {', '.join(REDUCTION_METHODS)}"
        )
    _check_keys(f"reduction '{red['method']}'", red, REDUCTION_KEYS)
    if red["method"] == "pca":
        red = {
            "method": "pca",
            "n_components": _int_param("reduction 'pca'", "n_components", red.get("n_components", 50)),
            "whiten": bool(red.get("whiten", False)),
        }
    else:
        red = {"method": "none"}

    model = _section(spec, "model", {}, "name")
    if model["name"] not in MODELS:
        raise SclinbenchError(
            f"pipeline key 'model.name': '{model['name']}' is unknown; valid: {', '.join(MODELS)}"
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
            hvg_flavor=feat.get("flavor", HVG_FLAVORS[0]),
        )
        represent.resolved_params()  # fail at build time on bad parameters
    select = AnovaSelector(k=feat["k"]) if feat["method"] == "anova" else "passthrough"
    scale = ScaleClip(max_value=s["scale"]["max_value"]) if s["scale"] else "passthrough"
    red = s["reduction"]
    reduce = (
        PCATransformer(n_components=red["n_components"], whiten=red["whiten"], random_state=seed)
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
