"""Fit every pipeline on the training cells of each fold and predict every test cell.

One call evaluates all pipelines of one dataset x task that share a job (in the workflow: the
pipelines with the same representation). Pipelines with identical preprocessing (everything but
the model) share one fitted preprocessing per fold, so adding a model costs only the model fit.

Nothing fitted sees a test cell: each fold's preprocessing and models are fitted on
``X[train]`` and ``y[train]`` only, then applied to ``X[test]``.

Stateless per-cell transforms are computed ONCE per dataset, not per fold: ``rankz`` and
library-size normalization to a fixed ``target_sum`` (+ ``log1p`` / ``sqrt``) compute every cell
from its own counts alone (:meth:`RepresentationTransformer.is_stateless`), so the representation
of all cells is computed before the folds and each fold takes its rows -- no test cell informs
anything a training cell gets, and the predictions are identical to computing it per fold
(``share_stateless=False``; tests/test_evaluate.py compares the two). Everything fitted stays per
fold on the training cells: the median target sum, HVG selection (from the training counts),
Pearson-residual gene fractions, scaling, PCA, ANOVA and the models. Not shared: donor pseudobulk
tasks (counts are summed per donor BEFORE the transform) and imported embeddings (no transform).

Memory: the counts are never copied whole. A shared representation reuses the index arrays of
the counts; training and test cells of a training-free pipeline (representation + centroid or
majority model) are row views (:class:`~sclinbench.represent.offset.RowSubset`) of it; a
pipeline with gene selection selects the fold's genes over all cells first and copies only the
selected columns' rows. Every test cell of the split
table appears exactly once per fold, pipeline and repeat in the output; a cell a model cannot score
gets the explicit prediction ``"unassigned"`` (which every metric counts as wrong).

Controls: a shuffled-label pipeline (``control: shuffled``) is fitted ``repeats`` times per fold,
each time on its own permutation of the training labels (seed from seed, fold and repeat,
:func:`sclinbench.evaluate.models.control_seed`); label-dependent preprocessing (ANOVA feature selection)
is then fitted on the same permuted labels, so the control never sees the real labels. Models of
:data:`sclinbench.evaluate.models.CONSTANT_SCORE_MODELS` (majority class) write one constant score for
every class and cell.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.pipeline import Pipeline

from sclinbench.data.obs import task_label
from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.clustered import LeidenLogisticRegression
from sclinbench.evaluate.models import (
    CONSTANT_SCORE_MODELS,
    CentroidClassifier,
    ShuffledLabels,
    control_seed,
)
from sclinbench.evaluate.pipeline import build_classifier, build_preprocessing
from sclinbench.evaluate.splits import iter_folds
from sclinbench.represent.offset import RowSubset, take
from sclinbench.workflow.contracts import PREDICTION_COLUMNS, SCORE_PREFIX, UNASSIGNED

log = logging.getLogger(__name__)


def input_matrix(adata, spec, dataset: str = "dataset"):
    """The matrix a pipeline (:class:`~sclinbench.evaluate.spec.PipelineSpec`) starts from: raw counts (``X``)
    or an imported embedding (``obsm``)."""
    rep = spec.representation
    if rep["name"] != "embedding":
        return adata.X if sp.issparse(adata.X) else sp.csr_matrix(adata.X)
    key = rep.get("obsm_key")
    if key not in adata.obsm:
        raise SclinbenchError(
            f"embedding '{key}' is not in obsm of dataset '{dataset}' (obsm keys: "
            f"{', '.join(adata.obsm.keys()) or 'none'}); set representation.obsm_key to one of them"
        )
    return np.asarray(adata.obsm[key], dtype=np.float32)


def pseudobulk(X, y: np.ndarray, donors: np.ndarray):
    """Sum counts (or average embeddings) per donor; returns (matrix, labels, donor ids)."""
    uniq, inverse = np.unique(donors, return_inverse=True)
    indicator = sp.csr_matrix((np.ones(len(donors), dtype=np.float32), (inverse, np.arange(len(donors)))),
                              shape=(len(uniq), len(donors)))
    if sp.issparse(X):
        summed = sp.csr_matrix(indicator @ X)
    else:
        sizes = np.asarray(indicator.sum(axis=1)).ravel()
        summed = np.asarray(indicator @ X) / sizes[:, None]
    labels = pd.Series(y).groupby(inverse).agg(lambda s: s.iloc[0]).to_numpy()
    return summed, labels, uniq


def class_scores(model, X) -> tuple[np.ndarray, np.ndarray]:
    """Per-class scores of a fitted classifier: probabilities if it has them, else decision values."""
    classes = np.asarray(model.classes_).astype(str)
    if hasattr(model, "predict_proba"):
        try:
            return np.asarray(model.predict_proba(X), dtype=float), classes
        except (AttributeError, NotImplementedError):
            pass
    scores = np.asarray(model.decision_function(X), dtype=float)
    if scores.ndim == 1:  # binary decision function: score of the positive class
        scores = np.column_stack([-scores, scores])
    return scores, classes


def _predict(model, Z) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predicted labels, confidence score and class-score matrix; NaN scores -> unassigned."""
    scores, classes = class_scores(model, Z)
    inner = _inner(model)
    # their predict is the argmax of these scores: not computed twice
    if isinstance(inner, (CentroidClassifier, LeidenLogisticRegression)):
        y_pred = np.asarray(inner.classes_[np.argmax(scores, axis=1)]).astype(object).astype(str)
    else:
        y_pred = np.asarray(model.predict(Z)).astype(object).astype(str)
    bad = ~np.isfinite(scores).all(axis=1)
    y_pred[bad] = UNASSIGNED
    conf = np.where(bad, np.nan, np.nanmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1))
    return y_pred, conf, scores, classes


def _inner(model):
    """The fitted classifier itself (inside a shuffled-label control)."""
    return model.estimator_ if isinstance(model, ShuffledLabels) else model


def fallback_cells(model, Z) -> np.ndarray:
    """True for the test cells ``Z`` a fitted model scored with its fallback model (a
    ``leiden_logreg`` cell whose cluster has no model); all False for every other model."""
    inner = _inner(model)
    if isinstance(inner, LeidenLogisticRegression):
        return inner.fallback_mask(Z)
    return np.zeros(Z.shape[0], dtype=bool)


def _indexer(obs_names: pd.Index, ids: np.ndarray, dataset: str) -> np.ndarray:
    idx = obs_names.get_indexer(ids)
    if (idx < 0).any():
        missing = ids[idx < 0][0]
        raise SclinbenchError(
            f"cell '{missing}' of the split table is not in dataset '{dataset}' ({int((idx < 0).sum())} "
            f"missing): the split file is stale; delete results/splits/dataset~{dataset} and re-run"
        )
    return idx


#: Models that take a :class:`RowSubset` view of their input (products only, no copy).
_ROW_VIEW_MODELS = ("centroid", "majority")


def _takes_row_views(spec) -> bool:
    """True if every step after the representation is passthrough and the model takes row views."""
    return (spec.features["method"] == "none" and spec.scale is None
            and spec.reduction["method"] == "none" and spec.model["name"] in _ROW_VIEW_MODELS)


class _PerFold:
    """The preprocessing of one fold fitted on the fold's training matrix (counts or embedding)."""

    def __init__(self, spec, seed, Xtr, Xte):
        self.spec, self.seed, self.Xtr, self.Xte = spec, seed, Xtr, Xte

    def fit_transform(self, ytr):
        pre = build_preprocessing(self.spec, self.seed)
        Ztr = pre.fit_transform(self.Xtr, ytr)
        return Ztr, pre.transform(self.Xte)


class _SharedFold:
    """The preprocessing of one fold on a representation of all cells computed once.

    The representation step is fitted on the training counts only (HVG selection reads the
    training rows of the counts in place); its gene selection is applied to the shared
    representation of all cells, then the fold's rows are taken -- row views for pipelines that
    need nothing else (``views``), copies of the selected columns otherwise -- and the remaining
    steps (ANOVA, scale, PCA) are fitted on the training rows.
    """

    def __init__(self, spec, seed, counts, shared, itrain, itest, views: bool, genes=None):
        self.spec, self.seed = spec, seed
        self.counts, self.shared, self.itrain, self.itest, self.views = counts, shared, itrain, itest, views
        self.genes = genes  # the fold's genes as columns of ``shared``, when selected beforehand
        self._rows = None

    def _fold_rows(self):
        if self._rows is None and self.genes is not None:  # selected already (sclinbench.evaluate.streamed)
            cols = None if self.genes.size == self.shared.shape[1] else self.genes
            self._rows = take(self.shared, self.itrain, cols), take(self.shared, self.itest, cols)
        if self._rows is None:
            rep = build_preprocessing(self.spec, self.seed).steps[0][1]
            if self.counts is None:  # released (evaluate's release_counts): fit reads the gene count only
                if rep.fit_reads_counts():
                    raise AssertionError(f"representation '{rep.name}' needs the counts it was not given")
                rep.fit(sp.csr_matrix((len(self.itrain), self.shared.shape[1]), dtype=np.float32))
            else:
                rep.fit(RowSubset(self.counts, self.itrain))
            if self.views:
                Z = rep.select_genes(self.shared)
                self._rows = RowSubset(Z, self.itrain), RowSubset(Z, self.itest)
            else:  # the fold's rows of the selected genes, copied in one pass
                cols = None if rep._all_genes() else rep.genes_
                self._rows = take(self.shared, self.itrain, cols), take(self.shared, self.itest, cols)
        return self._rows

    def fit_transform(self, ytr):
        Rtr, Rte = self._fold_rows()
        rest = [step for _, step in build_preprocessing(self.spec, self.seed).steps[1:] if step != "passthrough"]
        if not rest:
            return Rtr, Rte
        pre = Pipeline([(f"step{i}", step) for i, step in enumerate(rest)])
        Ztr = pre.fit_transform(Rtr, ytr)
        return Ztr, pre.transform(Rte)


def evaluate(adata, splits: pd.DataFrame, pipelines: dict, task: dict, seed: int = 0,
             dataset: str = "dataset", share_stateless: bool = True, release_counts: bool = False) -> pd.DataFrame:
    """Predictions of every pipeline for every test cell of every fold.

    Parameters
    ----------
    adata
        Standardized dataset (raw counts in ``X``).
    splits
        The task's split table (:func:`sclinbench.evaluate.splits.make_splits`).
    pipelines
        ``name -> PipelineSpec`` (:func:`sclinbench.evaluate.spec.parse_pipelines`).
    task
        The task spec (``kind``, ``split``, ``label``...).
    share_stateless
        Compute stateless representations once for all cells (default) instead of once per fold
        (``False``): the same predictions, computed faster (see the module docstring).
    release_counts
        The caller hands ``adata`` over: once the shared representations are computed, its
        counts are dropped (``adata.X = None``) when no fold reads them (every pipeline on a
        shared stateless representation without HVG selection; see
        ``RepresentationTransformer.fit_reads_counts``). The same predictions, with the counts'
        values freed before the folds (the rankz matrix shares their indices).

    Returns
    -------
    DataFrame with :data:`PREDICTION_COLUMNS` and one ``s:<label>`` column of class scores per
    label (NaN where the fold's model lacks the label). ``repeat`` numbers the label permutations
    of a shuffled-label control (0 for every other pipeline); ``donor_id`` is the cell's donor (the
    sample itself for pseudobulk rows); ``label_in_training`` says whether the cell's true label
    is among the training labels of its fold (False for cells of a label the training species
    lacks, and for the held-out type of a novel-type fold); ``fallback`` whether the model scored
    the cell with its fallback model (a ``leiden_logreg`` cell whose cluster has no model; False
    for every other model).
    """
    label = task_label(task)
    # fixed-width strings: np.unique / isin / searchsorted of every fit are ~10x faster than on objects
    y_all = np.asarray(adata.obs[label].astype(str).to_numpy(), dtype=str)
    split_kind = str(splits["split_kind"].iloc[0])
    donor_level = split_kind == "donor_pseudobulk"
    donors_all = (adata.obs["donor_id"].astype(str).to_numpy() if "donor_id" in adata.obs.columns
                  else np.full(adata.n_obs, "unknown", dtype=object))

    normal, by_signature = group_pipelines(pipelines)

    inputs = {sig: input_matrix(adata, normal[names[0]], dataset) for sig, names in by_signature.items()}
    # stateless representations of all cells, computed once (see the module docstring); keyed by
    # the representation's spec, so pipelines that differ after the representation share it too
    shared_rep: dict[str, object] = {}
    shared_of: dict[str, str] = {}
    counts_read = not share_stateless or donor_level  # does any fold read its input (counts, or an embedding)?
    if share_stateless and not donor_level:
        for sig, names in by_signature.items():
            rep_spec = normal[names[0]].representation
            if rep_spec["name"] == "embedding":
                counts_read = True
                continue
            rep = build_preprocessing(normal[names[0]], seed).steps[0][1]
            counts_read = counts_read or rep.fit_reads_counts()
            if not rep.is_stateless():
                continue
            key = normal[names[0]].representation_key
            if key not in shared_rep:
                t0 = time.perf_counter()
                shared_rep[key] = rep.represent_all(inputs[sig])
                log.info("representation %s of all %d cells computed once for all folds in %.1f s",
                         rep_spec["name"], adata.n_obs, time.perf_counter() - t0)
            shared_of[sig] = key
    # released when every signature starts from a shared stateless representation whose fit reads
    # the number of genes only
    if release_counts and not counts_read:
        inputs = dict.fromkeys(inputs)
        adata.X = None
        log.info("counts released: every fold starts from the representation of all cells")
    frames = []
    n_folds = splits["fold"].nunique()
    for k, (fold, test_groups, train_ids, test_ids) in enumerate(iter_folds(splits), start=1):
        t0 = time.perf_counter()
        itrain, itest = _indexer(adata.obs_names, train_ids, dataset), _indexer(adata.obs_names, test_ids, dataset)
        log.info("starting fold %d/%d: %d train, %d test cells, %d pipeline(s)", k, n_folds, len(itrain),
                 len(itest), len(pipelines))
        for sig, names in by_signature.items():
            spec0 = normal[names[0]]
            X = inputs[sig]
            ytr, yte = y_all[itrain], y_all[itest]
            cell_ids, groups, donors = test_ids, test_groups, donors_all[itest]
            if sig in shared_of:
                fitted = _SharedFold(spec0, seed, X, shared_rep[shared_of[sig]], itrain, itest,
                                     views=all(_takes_row_views(normal[n]) for n in names))
            else:
                Xtr, Xte = X[itrain], X[itest]
                if donor_level:
                    Xtr, ytr, _ = pseudobulk(Xtr, ytr, donors_all[itrain])
                    Xte, yte, cell_ids = pseudobulk(Xte, yte, donors_all[itest])
                    groups = donors = np.asarray(cell_ids)
                fitted = _PerFold(spec0, seed, Xtr, Xte)
            frames += fold_frames(fitted, names, normal, seed, fold, ytr, yte, cell_ids, groups, donors,
                                  split_kind)
            del fitted
        log.info("fold %d/%d done in %.1f s", k, n_folds, time.perf_counter() - t0)
    return assemble(frames)


def group_pipelines(pipelines: dict) -> tuple[dict, dict[str, list[str]]]:
    """``(name -> PipelineSpec, preprocessing key -> names)``: pipelines with the same
    :attr:`~sclinbench.evaluate.spec.PipelineSpec.preprocessing_key` share one fitted preprocessing per fold.
    Mappings (a caller outside the workflow) are made specs by :func:`sclinbench.evaluate.spec.parse_pipelines`."""
    from sclinbench.evaluate.spec import parse_pipelines

    normal = parse_pipelines(pipelines)
    by_signature: dict[str, list[str]] = {}
    for name, spec in normal.items():
        by_signature.setdefault(spec.preprocessing_key, []).append(name)
    return normal, by_signature


def prediction_frame(cell_ids, fold, groups, name, repeat, donors, yte, y_pred, conf, scores, classes,
                     split_kind: str, in_training, fallback=False) -> pd.DataFrame:
    """The rows of one pipeline x fold x repeat (:data:`PREDICTION_COLUMNS` + class scores);
    ``fallback``: per cell, scored by the model's fallback (:func:`fallback_cells`)."""
    frame = pd.DataFrame({
        "cell_id": np.asarray(cell_ids, dtype=object), "fold": fold, "group": groups,
        "pipeline": name, "repeat": repeat, "donor_id": np.asarray(donors, dtype=object),
        "y_true": yte, "y_pred": y_pred, "score": conf,
    })
    frame["novel"] = frame["y_true"] == frame["group"] if split_kind == "novel_type" else False
    frame["label_in_training"] = in_training
    frame["fallback"] = np.asarray(fallback, dtype=bool) if np.ndim(fallback) else bool(fallback)
    return pd.concat([frame, pd.DataFrame(scores, columns=[SCORE_PREFIX + c for c in classes])], axis=1)


def fold_frames(fitted, names, normal, seed, fold, ytr, yte, cell_ids, groups, donors, split_kind):
    """Fit the models of the pipelines ``names`` (one shared preprocessing ``fitted``) on one fold
    and predict its test cells; one :func:`prediction_frame` per pipeline and repeat."""
    frames = []
    in_training = np.isin(yte, np.unique(ytr))
    Ztr, Zte = fitted.fit_transform(ytr)
    for name in names:
        spec = normal[name]
        shuffled = spec.control == "shuffled"
        for repeat in repeats_of(spec):
            model = build_classifier(spec, seed)
            Ztr_r, Zte_r = Ztr, Zte
            if shuffled:
                draw = control_seed(seed, fold, repeat)
                model.set_params(random_state=draw)
                if spec.features["method"] == "anova":  # label-dependent: permuted labels too
                    perm = np.random.default_rng(draw).permutation(len(ytr))
                    Ztr_r, Zte_r = fitted.fit_transform(ytr[perm])
            model.fit(Ztr_r, ytr)
            y_pred, conf, scores, classes = _predict(model, Zte_r)
            if spec.model["name"] in CONSTANT_SCORE_MODELS:
                scores, conf = np.zeros_like(scores), np.zeros_like(conf)
            frames.append(prediction_frame(cell_ids, fold, groups, name, repeat, donors, yte, y_pred, conf,
                                           scores, classes, split_kind, in_training,
                                           fallback_cells(model, Zte_r)))
    return frames


def repeats_of(spec) -> range:
    """The repeats of a pipeline (:class:`~sclinbench.evaluate.spec.PipelineSpec`): its label permutations
    for a shuffled-label control, else one."""
    return range(spec.repeats if spec.control == "shuffled" else 1)


def assemble(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One prediction table: :data:`PREDICTION_COLUMNS`, then the class-score columns sorted."""
    out = pd.concat(frames, ignore_index=True)
    score_cols = sorted(c for c in out.columns if c.startswith(SCORE_PREFIX))
    return out[PREDICTION_COLUMNS + score_cols]
