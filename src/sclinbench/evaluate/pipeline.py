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
representation step. An entry is checked and made canonical once, as a
:class:`sclinbench.evaluate.spec.PipelineSpec`; the builders read its sections. What an entry may
say (:data:`~sclinbench.evaluate.spec.OPTIONS`, every option and its default) is defined there too.
"""

from __future__ import annotations

from sklearn.pipeline import Pipeline

from sclinbench.evaluate.models import ShuffledLabels, build_model
from sclinbench.evaluate.spec import PipelineSpec
from sclinbench.represent import (
    FEATURE_SELECTORS,
    AnovaSelector,
    PCATransformer,
    RepresentationTransformer,
    ScaleClip,
)

STEP_NAMES = ("represent", "select", "scale", "reduce", "model")


def _spec(spec):
    """``spec`` itself when it is a :class:`~sclinbench.evaluate.spec.PipelineSpec`; a mapping (a caller
    outside the workflow: a test, a notebook) goes through its one constructor."""
    return PipelineSpec.from_config("pipeline", spec)


def build_preprocessing(spec: PipelineSpec, seed: int = 0) -> Pipeline:
    """Unfitted ``Pipeline`` of the steps before the model: ``represent, select, scale, reduce``.

    Unused steps are ``"passthrough"``; for ``embedding`` the input is ``adata.obsm[obsm_key]``
    (the representation step passes it through), otherwise the raw counts (CSR, cells x genes).
    """
    s = _spec(spec)
    rep, feat = s.representation, s.features
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
    red = s.reduction
    # before PCA (which centres), sparse input is scaled in its exact sparse form (ScaleClip docs)
    scale = (ScaleClip(max_value=s.scale["max_value"], sparse_shift=red["method"] == "pca")
             if s.scale else "passthrough")
    reduce = (
        PCATransformer(n_components=red["n_components"], whiten=red["whiten"], random_state=seed,
                       svd_solver=red["svd_solver"])
        if red["method"] == "pca"
        else "passthrough"
    )
    return Pipeline(list(zip(STEP_NAMES[:-1], (represent, select, scale, reduce))))


def build_classifier(spec: PipelineSpec, seed: int = 0):
    """Unfitted model of a pipeline (wrapped in :class:`~sclinbench.evaluate.models.ShuffledLabels`
    for ``control: shuffled``)."""
    s = _spec(spec)
    model_params = {k: v for k, v in s.model.items() if k != "name"}
    model = build_model(s.model["name"], model_params, seed)
    if s.control == "shuffled":
        model = ShuffledLabels(model, random_state=seed)
    return model


def build_pipeline(spec: PipelineSpec, seed: int = 0) -> Pipeline:
    """scikit-learn ``Pipeline`` for one config pipeline.

    Parameters
    ----------
    spec
        The pipeline (:class:`sclinbench.evaluate.spec.PipelineSpec`, made from the entry once).
    seed
        Seed for PCA, the model (inner CV, LinearSVC) and the shuffled-labels control.

    Returns
    -------
    Unfitted ``Pipeline`` with steps ``represent, select, scale, reduce, model``
    (:func:`build_preprocessing` followed by :func:`build_classifier`). Its input is the raw counts
    (CSR, cells x genes) or, for ``embedding``, ``adata.obsm[obsm_key]``.
    """
    spec = _spec(spec)
    steps = build_preprocessing(spec, seed).steps
    return Pipeline([*steps, (STEP_NAMES[-1], build_classifier(spec, seed))])

