"""A fitted linear pipeline as plain arrays: the same predictions, a file that is safe to load.

:func:`from_pipeline` turns a fitted :func:`sclinbench.evaluate.pipeline.build_pipeline` pipeline into a
:class:`LinearPipeline`: the package's own transformers (representation, ANOVA selection, scaling,
PCA) with their fitted attributes, and a :class:`LinearScorer` holding the classifier's
coefficients. Both ``sclinbench annotate`` paths (``--reference``: fit, then predict; ``--model``:
load, then predict) predict through this one object, so a saved model gives exactly the
predictions of the in-memory one.

The file format (:func:`save` / :func:`load`) is one ``.npz`` archive: numeric and string arrays
plus a JSON document ``__meta__``. It is read with ``numpy.load(allow_pickle=False)``, and steps are
rebuilt only from an allowlist of the package's classes, so loading a file never runs code from it.
"""

from __future__ import annotations

import json
import numbers
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy import special

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.models import CentroidClassifier, InputAdapter
from sclinbench.represent import (
    AnovaSelector,
    OffsetCSR,
    PCATransformer,
    RepresentationTransformer,
    ScaleClip,
)
from sclinbench.workflow.io import atomic_path

FORMAT = "sclinbench-model"
#: The model format this sclinbench writes. 1: sclinbench 0.1.0 (no calibrated probabilities);
#: 2: + the temperature of the calibrated probabilities, optionally the reference counts.
FORMAT_VERSION = 2
#: The formats :func:`load` reads (older ones are refused by the caller with the command that rebuilds them).
READABLE_FORMATS = (2,)


class FormatVersionError(SclinbenchError):
    """A model file of a format this sclinbench does not read; ``meta`` is its metadata."""

    def __init__(self, message: str, meta: dict):
        super().__init__(message)
        self.meta = meta
#: The classes a model file may name (nothing else is ever instantiated when loading).
STEP_CLASSES = {c.__name__: c for c in (RepresentationTransformer, AnovaSelector, ScaleClip, PCATransformer)}
#: Models whose fitted state is a weight matrix (the ones annotate and train accept).
LINEAR_MODELS = ("centroid", "logreg", "linear_svm", "ridge", "lda")


def _scores(X, W: np.ndarray) -> np.ndarray:
    if isinstance(X, OffsetCSR):
        return X.dot(W)
    if sp.issparse(X):
        return np.asarray(sp.csr_matrix(X) @ W)
    return np.asarray(X, dtype=np.float64) @ W


class LinearScorer:
    """Class scores ``X @ coef.T + intercept``; probabilities for logistic models.

    ``kind``: ``"proba"`` (logistic regression, LDA: softmax over classes, or the logistic
    function for two classes, as scikit-learn's ``predict_proba``) or ``"decision"`` (centroid
    coefficients, SVM and ridge decision values; two classes: ``[-d, d]``).
    """

    def __init__(self, classes, coef, intercept, kind: str):
        self.classes_ = np.asarray(classes).astype(str)
        # 2-D always: scikit-learn >= 1.8 gives a two-class RidgeClassifier a 1-D coef_
        self.coef_ = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        self.intercept_ = np.asarray(intercept, dtype=np.float64).reshape(-1)
        if kind not in ("proba", "decision"):
            raise ValueError(f"kind must be proba or decision, got {kind!r}")
        self.kind = kind

    @classmethod
    def from_estimator(cls, model) -> LinearScorer:
        if isinstance(model, CentroidClassifier):
            if getattr(model, "basis", "cells") != "cells":
                raise SclinbenchError(
                    f"model centroid with basis {model.basis} rankz's its input inside the model, which a "
                    f"model file cannot hold; annotate with basis: cells (e.g. the pipeline rankz_centroid)"
                )
            return cls(model.classes_, model.coef_, np.zeros(model.coef_.shape[0]), "decision")
        if isinstance(model, InputAdapter):
            est = model.estimator_
            if hasattr(est, "best_estimator_"):  # GridSearchCV over C
                est = est.best_estimator_
            name = type(est).__name__
            if name in ("LogisticRegression", "LogisticRegressionCV", "LinearDiscriminantAnalysis"):
                kind = "proba"
            elif name in ("LinearSVC", "RidgeClassifier"):
                kind = "decision"
            else:
                raise SclinbenchError(
                    f"model {name} has no weight matrix; annotate uses linear models ({', '.join(LINEAR_MODELS)})"
                )
            return cls(est.classes_, est.coef_, est.intercept_, kind)
        raise SclinbenchError(
            f"model {type(model).__name__} has no weight matrix; annotate uses linear models "
            f"({', '.join(LINEAR_MODELS)}), not controls"
        )

    def class_scores(self, Z) -> np.ndarray:
        """n_cells x n_classes scores (probabilities for ``kind="proba"``)."""
        d = _scores(Z, self.coef_.T) + self.intercept_
        if self.coef_.shape[0] == 1 and self.classes_.size == 2:
            d = d.reshape(-1)
            if self.kind == "proba":
                p = special.expit(d)
                return np.column_stack([1.0 - p, p])
            return np.column_stack([-d, d])
        if self.kind == "proba":
            return special.softmax(d, axis=1)
        return d


class LinearPipeline:
    """Fitted preprocessing steps (the package's transformers) followed by a :class:`LinearScorer`."""

    def __init__(self, steps: list[tuple[str, object]], scorer: LinearScorer):
        self.steps = steps
        self.scorer = scorer

    @property
    def classes_(self) -> np.ndarray:
        return self.scorer.classes_

    @property
    def n_genes(self) -> int:
        first = self.steps[0][1] if self.steps else None
        return int(first.n_features_in_) if first is not None else int(self.scorer.coef_.shape[1])

    def transform(self, X):
        for _, step in self.steps:
            X = step.transform(X)
        return X

    def predict_scores(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(y_pred, confidence, scores)``: argmax class, its score, the n x k class scores."""
        S = self.scorer.class_scores(self.transform(X))
        best = np.argmax(S, axis=1)
        return self.classes_[best], S[np.arange(S.shape[0]), best], S

    def gene_weights(self) -> np.ndarray:
        """Weights (classes x input genes) of the composed linear map from representation to scores.

        The steps after the representation are linear maps (column selection, per-gene scaling,
        PCA projection with optional whitening), so the class score of a cell is, up to a
        constant, ``weights @ representation(cell)``. The clipping of ``scale`` is ignored. Genes
        a selection step drops get weight 0.
        """
        W = self.scorer.coef_.copy()
        rep = None
        for _name, step in reversed(self.steps):
            if isinstance(step, PCATransformer):
                comp = step.components_
                if step.whiten:
                    comp = comp / np.sqrt(step.explained_variance_)[:, None]
                W = W @ comp
            elif isinstance(step, ScaleClip):
                W = W / step.std_
            elif isinstance(step, AnovaSelector):
                full = np.zeros((W.shape[0], step.n_features_in_))
                full[:, step.genes_] = W
                W = full
            elif isinstance(step, RepresentationTransformer):
                rep = step
        if rep is not None and W.shape[1] != rep.n_features_in_:
            full = np.zeros((W.shape[0], rep.n_features_in_))
            full[:, rep.genes_] = W
            W = full
        return W


def from_pipeline(pipe) -> LinearPipeline:
    """:class:`LinearPipeline` of a fitted ``build_pipeline`` pipeline (refuses non-linear models)."""
    steps = []
    for name, est in pipe.steps[:-1]:
        if est is None or (isinstance(est, str) and est == "passthrough"):
            continue
        if type(est).__name__ not in STEP_CLASSES:
            raise SclinbenchError(f"pipeline step '{name}' ({type(est).__name__}) cannot be saved")
        steps.append((name, est))
    return LinearPipeline(steps, LinearScorer.from_estimator(pipe.steps[-1][1]))


# ------------------------------------------------------------------------------------------------
# the file
# ------------------------------------------------------------------------------------------------
def _jsonable(value):
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (str, type(None))):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    raise TypeError(f"cannot store {type(value).__name__} in a model file")


def _array(value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == object:
        arr = arr.astype(str)
    return arr


def save(path, pipeline: LinearPipeline, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``pipeline`` + ``meta`` (JSON) + extra ``arrays`` to one ``.npz`` file, atomically."""
    store: dict[str, np.ndarray] = {}
    steps = []
    for i, (name, step) in enumerate(pipeline.steps):
        fitted = {}
        for attr, value in vars(step).items():
            if not attr.endswith("_") or attr.startswith("_"):
                continue
            if isinstance(value, np.ndarray):
                key = f"step{i}/{attr}"
                store[key] = _array(value)
                fitted[attr] = {"array": key}
            else:
                fitted[attr] = {"value": _jsonable(value)}
        steps.append({"name": name, "class": type(step).__name__, "params": _jsonable(step.get_params()),
                      "fitted": fitted})
    sc = pipeline.scorer
    store["scorer/classes"] = _array(sc.classes_)
    store["scorer/coef"] = sc.coef_
    store["scorer/intercept"] = sc.intercept_
    for key, value in arrays.items():
        store[f"data/{key}"] = _array(value)
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **_jsonable(meta),
           "steps": steps, "scorer": {"kind": sc.kind}}
    store["__meta__"] = np.array(json.dumps(doc, sort_keys=True))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **store)


def load(path) -> tuple[LinearPipeline, dict, dict[str, np.ndarray]]:
    """Read a model file written by :func:`save`: ``(pipeline, meta, arrays)``.

    Raises :class:`SclinbenchError` when the file is not a sclinbench model, holds pickled
    objects or names a class outside :data:`STEP_CLASSES`; :class:`FormatVersionError` when its
    format is not one of :data:`READABLE_FORMATS`.
    """
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"model file {path} does not exist (--model); create it with `sclinbench train`")
    if not zipfile.is_zipfile(path):
        raise SclinbenchError(f"model file {path} is not a sclinbench model (not an .npz archive); "
                              "create one with `sclinbench train`")
    try:
        with np.load(path, allow_pickle=False) as npz:
            store = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise SclinbenchError(f"model file {path} holds pickled Python objects; refusing to load it "
                                  "(sclinbench model files hold arrays and JSON only)") from exc
        raise SclinbenchError(f"model file {path} is not a sclinbench model ({str(exc)[:120]}); "
                              "create one with `sclinbench train`") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SclinbenchError(f"model file {path} is not a sclinbench model (not an .npz archive: "
                              f"{str(exc)[:100]}); create one with `sclinbench train`") from exc
    if "__meta__" not in store:
        raise SclinbenchError(f"model file {path} is an .npz archive without sclinbench metadata; "
                              "create one with `sclinbench train`")
    try:
        meta = json.loads(str(store.pop("__meta__")))
    except json.JSONDecodeError as exc:
        raise SclinbenchError(f"model file {path}: its metadata is not valid JSON; the file is damaged") from exc
    if meta.get("format") != FORMAT:
        raise SclinbenchError(f"model file {path} is not a sclinbench model (format {meta.get('format')!r})")
    if meta.get("format_version") not in READABLE_FORMATS:
        raise FormatVersionError(
            f"model file {path} has model format {meta.get('format_version')!r}, this sclinbench reads format "
            f"{', '.join(map(str, READABLE_FORMATS))}; retrain it with `sclinbench train`", meta
        )
    steps = []
    try:
        for spec in meta["steps"]:
            cls = STEP_CLASSES.get(spec["class"])
            if cls is None:
                raise SclinbenchError(f"model file {path} names an unknown step class {spec['class']!r}; refusing to load it")
            step = cls(**spec["params"])
            for attr, ref in spec["fitted"].items():
                setattr(step, attr, store[ref["array"]] if "array" in ref else ref["value"])
            steps.append((spec["name"], step))
        scorer = LinearScorer(store["scorer/classes"], store["scorer/coef"], store["scorer/intercept"],
                              meta["scorer"]["kind"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SclinbenchError(f"model file {path} is incomplete or damaged ({type(exc).__name__}: {exc}); "
                              "retrain it with `sclinbench train`") from exc
    arrays = {k[len("data/"):]: v for k, v in store.items() if k.startswith("data/")}
    return LinearPipeline(steps, scorer), meta, arrays
