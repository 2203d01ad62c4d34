"""How the pipelines of one preprocessing key are evaluated over the blocks of a dataset.

Each group of pipelines sharing a preprocessing (:attr:`~sclinbench.evaluate.spec.PipelineSpec.
preprocessing_key`) gets one plan (:func:`plan_of`):

- :data:`VIEWS` -- a stateless representation (``rankz``; ``log1p`` / ``sqrt`` to a fixed
  ``target_sum``) followed by a training-free model on all genes (``centroid``, ``majority`` and
  their shuffled-label controls): every fold's and repeat's class means are summed over the
  blocks in one pass (:class:`ViewTarget`, only the fold's training cells enter them), a later
  pass scores each block's test cells;
- :data:`HVG` -- a stateless representation, Pearson-residual HVG selection (the default flavour)
  and any fitted steps: the HVG statistics over each fold's training cells are summed over the
  blocks (:class:`HvgFold`: gene sums and library sizes, residual means, residual variances),
  then the selected genes of all cells are kept and each fold goes on in memory
  (:class:`SharedFold` + :func:`fold_frames`) on its own genes;
- :data:`WHOLE` -- everything else (a representation fitted on the training cells, an imported
  embedding, donor pseudobulk, ANOVA, fitted steps on all genes, scanpy's HVG flavours): it needs
  every cell at once, so the dataset must be one block (in memory). A stateless representation
  is still computed once for all cells (:class:`SharedFold`); the others are fitted per fold
  (:class:`PerFold`).

Nothing fitted sees a test cell: every sum, statistic and fit of a fold is over its training
cells only; the test cells are only transformed and scored.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from sclinbench.evaluate.models import (
    CONSTANT_SCORE_MODELS,
    CentroidClassifier,
    ShuffledLabels,
    control_seed,
)
from sclinbench.evaluate.pipeline import build_classifier, build_preprocessing
from sclinbench.evaluate.predictions import fallback_cells, predict_cells, prediction_frame
from sclinbench.represent.offset import RowSubset, take
from sclinbench.represent.select import (
    HVG_FLAVORS,
    residual_stored_sums,
    residual_zero_sums,
    top_variable,
    training_sums,
)
from sclinbench.workflow.contracts import UNASSIGNED

log = logging.getLogger(__name__)

#: the plans (see the module docstring)
VIEWS = "views"
HVG = "hvg"
WHOLE = "whole"
#: the HVG flavour whose statistics add up over blocks of cells
BLOCK_HVG_FLAVOR = HVG_FLAVORS[0]
#: Models that take a :class:`RowSubset` view of their input (products only, no copy).
ROW_VIEW_MODELS = ("centroid", "majority")


def takes_row_views(spec) -> bool:
    """True if every step after the representation is passthrough and the model takes row views."""
    return (spec.features["method"] == "none" and spec.scale is None
            and spec.reduction["method"] == "none" and spec.model["name"] in ROW_VIEW_MODELS)


def repeats_of(spec) -> range:
    """The repeats of a pipeline (:class:`~sclinbench.evaluate.spec.PipelineSpec`): its label permutations
    for a shuffled-label control, else one."""
    return range(spec.repeats if spec.control == "shuffled" else 1)


def plan_of(names: list[str], normal: dict, split_kind: str, share_stateless: bool = True) -> tuple[str, str | None]:
    """``(plan, why)``: the plan of the pipelines ``names`` (one preprocessing key) and, for
    :data:`WHOLE`, why it needs every cell at once (``None`` otherwise)."""
    spec = normal[names[0]]
    if not share_stateless:
        return WHOLE, "the representation is fitted per fold (share_stateless=False)"
    if split_kind == "donor_pseudobulk":
        return WHOLE, "donor pseudobulk tasks sum the counts of each donor first"
    rep = build_preprocessing(spec).steps[0][1]
    if spec.representation["name"] == "embedding" or not rep.is_stateless():
        return WHOLE, (f"pipeline '{names[0]}': representation {spec.representation['name']} is fitted on the "
                       "training cells (or an embedding)")
    if rep.hvg is None:
        if all(takes_row_views(normal[n]) for n in names):
            return VIEWS, None
        return WHOLE, f"pipeline '{names[0]}': fitted steps on all genes need the representation of all cells"
    if rep.hvg_flavor != BLOCK_HVG_FLAVOR:
        return WHOLE, f"pipeline '{names[0]}': hvg flavor {rep.hvg_flavor} runs scanpy on the training cells"
    if spec.features["method"] == "anova":
        return WHOLE, f"pipeline '{names[0]}': anova needs the representation of all cells"
    return HVG, None


class ViewTarget:
    """One training-free model of one fold (a pipeline, a repeat), fitted from summed class means."""

    def __init__(self, k, fold, name, repeat, spec, seed, y_all, n_obs, n_genes):
        self.order = k
        self.fold, self.name, self.repeat, self.spec = fold, name, repeat, spec
        self.model = build_classifier(spec, seed)
        ytr = y_all[fold.itrain]
        self.inner = self.model
        if spec.control == "shuffled":  # as ShuffledLabels.fit: the labels of a seeded permutation
            draw = control_seed(seed, fold.fold, repeat)
            self.model.set_params(random_state=draw)
            self.model.permutation_ = np.random.default_rng(draw).permutation(ytr.shape[0])
            ytr = ytr[self.model.permutation_]
            self.inner = clone(self.model.estimator)
        self.code = None
        if isinstance(self.inner, CentroidClassifier):
            rows, codes = self.inner.training_codes(ytr)
            self.code = np.full(n_obs, -1, dtype=np.int32)
            self.code[fold.itrain[rows]] = codes
            self.weight = 1.0 / self.inner.class_counts_.astype(np.float64)
            self.means = np.zeros((self.inner.classes_.size, n_genes))
        else:  # majority: the training labels only (an empty matrix of the right shape)
            self.inner.fit(sp.csr_matrix((ytr.shape[0], n_genes), dtype=np.float32), ytr)
        self.n_genes = n_genes
        self.results = None
        self.fitted = False

    def add_block(self, start, stop, Z):
        """Add the block's training cells (representation ``Z`` of cells start:stop) to the means."""
        if self.code is None:
            return
        code = self.code[start:stop]
        local = np.flatnonzero(code >= 0)
        if not local.size:
            return
        c = code[local]
        V = sp.csr_matrix((self.weight[c], (c, np.arange(local.size))), shape=(self.means.shape[0], local.size))
        self.means += RowSubset(Z, local).rdot(V)

    def finish_fit(self):
        """The model from the summed class means (once; :meth:`predict_block` calls it)."""
        if self.fitted:
            return
        self.fitted = True
        if self.code is not None:
            self.inner.fit_class_means(self.means, self.n_genes)
            self.code = self.means = None
        if isinstance(self.model, ShuffledLabels):
            self.model.n_features_in_ = self.n_genes
            self.model.estimator_ = self.inner

    def predict_block(self, start, stop, Z):
        self.finish_fit()
        local, dest = self.fold.test_rows(start, stop)
        if not local.size:
            return
        y_pred, conf, scores, classes = predict_cells(self.model, RowSubset(Z, local))
        if self.results is None:
            n = self.fold.itest.size
            self.results = (np.full(n, UNASSIGNED, dtype=object), np.full(n, np.nan),
                            np.full((n, scores.shape[1]), np.nan), classes)
        self.results[0][dest], self.results[1][dest], self.results[2][dest] = y_pred, conf, scores

    def frame(self, y_all, donors_all, split_kind) -> pd.DataFrame:
        """The target's prediction rows; the model and its scores are dropped (nothing reads them after)."""
        self.finish_fit()
        fold = self.fold
        ytr, yte = y_all[fold.itrain], y_all[fold.itest]
        if self.results is None:  # a fold without test cells
            classes = np.asarray(self.model.classes_).astype(str)
            self.results = (np.empty(0, dtype=object), np.empty(0), np.empty((0, classes.size)), classes)
        y_pred, conf, scores, classes = self.results
        if self.spec.model["name"] in CONSTANT_SCORE_MODELS:
            scores, conf = np.zeros_like(scores), np.zeros_like(conf)
        self.model = self.inner = self.results = None
        return prediction_frame(fold.test_ids, fold.fold, fold.groups, self.name, self.repeat,
                                donors_all[fold.itest], yte, y_pred.astype(str), conf, scores, classes,
                                split_kind, np.isin(yte, np.unique(ytr)))


class HvgFold:
    """The Pearson-residual HVG statistics of one fold's training cells, summed over blocks."""

    def __init__(self, fold, n_top: int, n_genes: int, theta: float = 100.0):
        self.fold, self.n_top, self.theta = fold, int(n_top), theta
        self.gene_sums = np.zeros(n_genes)
        self.sums = self.sq = self.mean = None
        self.genes = None

    def add_gene_sums(self, start, stop, X):
        self.gene_sums += training_sums(X, self.fold.train_rows(start, stop))[0]

    def start(self, lib_all) -> bool:
        """After the gene sums: ``True`` if the residual passes are needed (else ``genes`` is set)."""
        self.expressed = np.flatnonzero(self.gene_sums > 0)
        if self.n_top >= self.expressed.size:
            if self.n_top > self.expressed.size:
                log.info(  # an adaptation to a small gene set, nothing to act on: the job log says it
                    "hvg: n_top=%d >= %d genes with training counts; keeping all %d",
                    self.n_top, self.expressed.size, self.expressed.size)
            self.genes = self.expressed
            return False
        self.n = self.fold.itrain.size
        self.total = float(self.gene_sums.sum())
        self.clip = float(np.sqrt(self.n))
        self.lib_all = lib_all
        self.sums = residual_zero_sums(lib_all[self.fold.itrain], self.gene_sums, self.total, self.theta,
                                       self.clip)
        return True

    def _stored(self, start, stop, X, mean=None):
        rows = self.fold.train_rows(start, stop)
        return residual_stored_sums(X, rows, self.lib_all[start + rows], self.gene_sums, self.total,
                                    self.theta, self.clip, mean)

    def add_means(self, start, stop, X):
        self.sums += self._stored(start, stop, X)

    def start_squares(self):
        self.mean = self.sums / self.n
        self.sq = residual_zero_sums(self.lib_all[self.fold.itrain], self.gene_sums, self.total, self.theta,
                                     self.clip, self.mean)

    def add_squares(self, start, stop, X):
        self.sq += self._stored(start, stop, X, self.mean)

    def finish(self):
        var = self.sq / self.n
        var[self.gene_sums == 0] = 0.0
        self.genes = top_variable(var, self.expressed, self.n_top)
        self.sums = self.sq = self.mean = self.lib_all = None


class PerFold:
    """The preprocessing of one fold fitted on the fold's training matrix (counts or embedding)."""

    def __init__(self, spec, seed, Xtr, Xte):
        self.spec, self.seed, self.Xtr, self.Xte = spec, seed, Xtr, Xte

    def fit_transform(self, ytr):
        pre = build_preprocessing(self.spec, self.seed)
        Ztr = pre.fit_transform(self.Xtr, ytr)
        return Ztr, pre.transform(self.Xte)


class SharedFold:
    """The preprocessing of one fold on a representation of all cells computed once.

    The representation step is fitted on the training counts only (HVG selection reads the
    training rows of the counts in place), or its genes are given (``genes``: selected from
    statistics summed over blocks, as columns of ``shared``); the fold's rows of those genes are
    taken -- row views for pipelines that need nothing else (``views``), copies otherwise -- and
    the remaining steps (ANOVA, scale, PCA) are fitted on the training rows.
    """

    def __init__(self, spec, seed, counts, shared, itrain, itest, views: bool, genes=None):
        self.spec, self.seed = spec, seed
        self.counts, self.shared, self.itrain, self.itest, self.views = counts, shared, itrain, itest, views
        self.genes = genes
        self._rows = None

    def _fold_rows(self):
        if self._rows is None and self.genes is not None:  # selected already (HvgFold)
            cols = None if self.genes.size == self.shared.shape[1] else self.genes
            self._rows = take(self.shared, self.itrain, cols), take(self.shared, self.itest, cols)
        if self._rows is None:
            rep = build_preprocessing(self.spec, self.seed).steps[0][1]
            if self.counts is None:  # released: the fit reads the number of genes only
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


def fold_frames(fitted, names, normal, seed, fold, ytr, yte, cell_ids, groups, donors, split_kind):
    """Fit the models of the pipelines ``names`` (one shared preprocessing ``fitted``) on one fold
    and predict its test cells; one :func:`~sclinbench.evaluate.predictions.prediction_frame` per
    pipeline and repeat."""
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
            y_pred, conf, scores, classes = predict_cells(model, Zte_r)
            if spec.model["name"] in CONSTANT_SCORE_MODELS:
                scores, conf = np.zeros_like(scores), np.zeros_like(conf)
            frames.append(prediction_frame(cell_ids, fold, groups, name, repeat, donors, yte, y_pred, conf,
                                           scores, classes, split_kind, in_training,
                                           fallback_cells(model, Zte_r)))
    return frames
