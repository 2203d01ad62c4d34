"""Label new cells with a benchmarked pipeline: fit on a reference, predict a query.

The steps, shared by ``sclinbench train`` / ``sclinbench annotate`` and the workflow's
``annotate`` rule:

1. :mod:`sclinbench.tool.reference` reads the raw counts and standardizes the labelled reference
   exactly as the workflow standardizes a dataset.
2. :meth:`Annotator.fit` fits the pipeline (:func:`sclinbench.evaluate.pipeline.build_pipeline`) twice: on a
   stratified ``1 - calibration_fraction`` of the reference cells, to score the held-out rest
   (their macro F1, the distribution of their top class score, which calibrates the novelty
   flag, and their class scores, which calibrate the probabilities: :mod:`sclinbench.tool.calibrate`),
   then on all reference cells for the model that labels the query.
3. :func:`annotate` maps the query onto the reference genes (:mod:`sclinbench.tool.genes`). When
   the query lacks some of them, the pipeline is fitted on the genes it has -- from the reference
   file with ``--reference``, from the reference counts kept in the model file with ``--model``
   (:mod:`sclinbench.tool.modelfile`), the same fit either way -- and the cost is measured: the
   held-out reference macro F1 with the shared genes against that with all genes.
4. :meth:`Annotator.predict_matrices` gives per cell the label, its calibrated probability
   (``confidence``), the pipeline's raw top score, a novelty score (1 - the share of held-out
   reference cells whose top score was at most this cell's) and a novelty flag (top score below the
   ``novelty_quantile`` of the held-out reference cells, 1% by default), plus the class score and
   probability matrices; :mod:`sclinbench.tool.output` writes them in sclinbench's and
   CellTypist's conventions, :mod:`sclinbench.tool.voting` adds majority voting.

Only pipelines ending in a linear model are accepted (:data:`~sclinbench.tool.portable.LINEAR_MODELS`):
their fitted state is a weight matrix, which makes the model file small and safe
(:mod:`sclinbench.tool.portable`) and gives the top genes per class by weight.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.metrics import UNASSIGNED, classification_scores
from sclinbench.evaluate.pipeline import build_pipeline
from sclinbench.represent import RepresentationTransformer
from sclinbench.tool import (  # noqa: F401 (re-exported)
    DEFAULT_PIPELINE,
    JOB_DEFAULTS,
    QUERY_DEFAULTS,
    REFERENCE_DEFAULTS,
    calibrate,
    modelfile,
    portable,
    voting,
)
from sclinbench.tool import genes as gene_match
from sclinbench.tool.output import (  # noqa: F401 (re-exported)
    _uns_safe,
    calibration_metrics,
    check_outputs,
    label_table,
    output_paths,
    truth_metrics,
    write_columns,
    write_result,
)
from sclinbench.tool.reference import (  # noqa: F401 (re-exported)
    COUNT_MATRICES,
    Reference,
    _label_values,
    prepare_reference,
    read_counts,
    read_h5ad,
    reference_from_counts,
)
from sclinbench.workflow.io import sha256_file  # noqa: F401 (re-exported)

log = logging.getLogger("sclinbench.annotate")


# ------------------------------------------------------------------------------------------------
# pipelines
# ------------------------------------------------------------------------------------------------
def check_spec(name: str, spec):
    """The :class:`~sclinbench.evaluate.spec.PipelineSpec` of a pipeline annotate can use (counts in, linear
    model out), from a config entry, the canonical spec of a model file, or a spec (kept as it is)."""
    from sclinbench.evaluate.spec import PipelineSpec

    role = spec.role if isinstance(spec, PipelineSpec) else spec.get("role")
    if role == "control":
        raise SclinbenchError(f"pipeline '{name}' is a control (role: control); name a method pipeline to annotate with")
    if not isinstance(spec, PipelineSpec):
        spec = {k: v for k, v in spec.items() if k != "role"}  # refused above; a model file has none
    s = PipelineSpec.from_config(name, spec)
    if s.representation["name"] == "embedding":
        raise SclinbenchError(
            f"pipeline '{name}' reads an embedding (obsm), not counts; annotate needs a counts-based pipeline"
        )
    if s.control != "none":
        raise SclinbenchError(f"pipeline '{name}' is a control (control: {s.control}); name a method pipeline")
    if s.model["name"] not in portable.LINEAR_MODELS:
        raise SclinbenchError(
            f"pipeline '{name}' ends in model '{s.model['name']}'; annotate uses linear models "
            f"({', '.join(portable.LINEAR_MODELS)}), whose weights can be saved and inspected"
        )
    return s


def _stateless_representation(step) -> bool:
    """True when fitting the representation learns nothing from the cells (per-cell transforms)."""
    if not isinstance(step, RepresentationTransformer) or step.hvg is not None:
        return False
    if step.name in ("rankz", "counts"):
        return True
    if step.name in ("log1p", "sqrt"):
        return (step.params or {}).get("target_sum", 1e4) != "median"
    return False


def _stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out cells: ``round(fraction * n)`` per label, at least 1 and at most n - 1."""
    rng = np.random.default_rng(seed)
    held = np.zeros(y.size, dtype=bool)
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        k = int(np.clip(round(fraction * idx.size), 1, idx.size - 1))
        held[rng.choice(idx, size=k, replace=False)] = True
    return held


def _fit_pipeline(spec, X, y, seed: int, Z=None) -> portable.LinearPipeline:
    """Fit ``build_pipeline(spec)`` on ``X, y``; with ``Z`` (the stateless representation of ``X``,
    computed once for all reference cells) only the steps after the representation are fitted."""
    from sklearn.pipeline import Pipeline

    pipe = build_pipeline(spec, seed)
    if Z is None:
        pipe.fit(X, y)
    else:
        represent = pipe.steps[0][1].fit(X)
        rest = Pipeline(pipe.steps[1:]).fit(Z, y)
        pipe = Pipeline([(pipe.steps[0][0], represent), *rest.steps])
    return portable.from_pipeline(pipe)


def _ecdf_grid() -> np.ndarray:
    return np.linspace(0.0, 1.0, 1001)


def _heldout(s, X, y: np.ndarray, seed: int, fraction: float, novelty_quantile: float, Z=None) -> dict:
    """Fit on a stratified ``1 - fraction`` of the cells, score the rest: the calibration of :meth:`Annotator.fit`."""
    held = _stratified_holdout(y, fraction, seed)
    cal = _fit_pipeline(s, X[~held], y[~held], seed, None if Z is None else Z[np.flatnonzero(~held)])
    y_cal, top, S = cal.predict_scores(X[held])
    scores = classification_scores(y[held], y_cal)
    L = calibrate.logits(S, cal.scorer.kind)
    truth = np.searchsorted(cal.classes_, y[held].astype(str))  # every label has fitted cells (stratified)
    temperature = calibrate.fit_temperature(L, truth)
    quality = calibrate.calibration_quality(L, truth, seed)
    log.info("calibration: fitted on %d reference cells, %d held out: macro F1 %.3f, accuracy %.3f; novelty "
             "threshold %.4g (score quantile %g); probabilities: temperature %.4g, cross-fitted ECE %.3f",
             int((~held).sum()), int(held.sum()), scores["macro_f1"], scores["accuracy"],
             float(np.quantile(top, novelty_quantile)), novelty_quantile, temperature, quality["ece"])
    return {"threshold": float(np.quantile(top, novelty_quantile)), "quantiles": np.quantile(top, _ecdf_grid()),
            "temperature": temperature,
            "calibration": {"n_fit_cells": int((~held).sum()), "n_heldout_cells": int(held.sum()),
                            "fraction": float(fraction), "seed": int(seed),
                            **{k: float(v) for k, v in scores.items()},
                            "probability": {**quality, "temperature": float(temperature)}}}


def _target(ids, symbols) -> dict[str, np.ndarray]:
    """The keys a query is matched on: the reference's gene ids and symbols (both annotate paths)."""
    return {"var_names": gene_match.clean_ids(ids), "var['gene_symbol']": gene_match.clean_ids(symbols)}


# ------------------------------------------------------------------------------------------------
# the annotator
# ------------------------------------------------------------------------------------------------
@dataclass
class Annotator:
    """A fitted pipeline with its gene list, labels, calibration, provenance and (optionally) reference counts."""

    pipeline: portable.LinearPipeline
    pipeline_name: str
    spec: dict  # the canonical sections (PipelineSpec.canonical), as a model file keeps them
    gene_ids: np.ndarray
    gene_symbols: np.ndarray
    label_counts: dict[str, int]
    confidence_quantiles: np.ndarray
    novelty_quantile: float
    threshold: float
    calibration: dict
    temperature: float = 1.0
    provenance: dict = field(default_factory=dict)
    source: str = "fitted in memory"
    reference_counts: sp.csr_matrix | None = None
    reference_labels: np.ndarray | None = None

    # -- fitting ------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        reference: Reference,
        spec,
        pipeline_name: str,
        *,
        seed: int = 0,
        calibration_fraction: float = 0.2,
        novelty_quantile: float = 0.01,
        genes: np.ndarray | None = None,
    ) -> Annotator:
        """Fit ``spec`` on ``reference`` (see the module docstring).

        Parameters
        ----------
        genes
            Positions of the reference genes to use (e.g. those the query measures); default all.
        """
        if not 0 < calibration_fraction < 1:
            raise SclinbenchError(f"calibration fraction must be in (0, 1), got {calibration_fraction}")
        if not 0 < novelty_quantile < 0.5:
            raise SclinbenchError(f"novelty quantile must be in (0, 0.5), got {novelty_quantile}")
        s = check_spec(pipeline_name, spec)
        t0 = time.perf_counter()
        adata = reference.adata if genes is None else reference.adata[:, genes]
        X = sp.csr_matrix(adata.X, dtype=np.float32)
        y = reference.labels
        rep = build_pipeline(s, seed).steps[0][1]
        Z = rep.fit(X).transform(X) if _stateless_representation(rep) else None
        held = _heldout(s, X, y, seed, calibration_fraction, novelty_quantile, Z)
        final = _fit_pipeline(s, X, y, seed, Z)
        labels, counts = np.unique(y, return_counts=True)
        var = adata.var
        symbols = var["gene_symbol"].astype(str).to_numpy() if "gene_symbol" in var.columns else adata.var_names.to_numpy()
        log.info("fitted %s on %d cells x %d genes, %d labels in %.1f s", pipeline_name, X.shape[0], X.shape[1],
                 labels.size, time.perf_counter() - t0)
        return cls(
            pipeline=final, pipeline_name=pipeline_name, spec=s.canonical(),
            gene_ids=np.asarray(adata.var_names, dtype=object), gene_symbols=np.asarray(symbols, dtype=object),
            label_counts={str(k): int(v) for k, v in zip(labels, counts)},
            confidence_quantiles=held["quantiles"], novelty_quantile=float(novelty_quantile),
            threshold=held["threshold"], temperature=held["temperature"], calibration=held["calibration"],
            provenance={"reference": reference.source, "reference_sha256": reference.sha256,
                        "label_column": reference.label, "reference_counts": reference.counts_key,
                        "n_reference_cells": int(X.shape[0]), "n_reference_set_aside": int(reference.n_set_aside),
                        "fitted": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                        "versions": modelfile.versions()},
            reference_counts=X, reference_labels=np.asarray(y, dtype=object),
        )

    def stored_reference(self) -> Reference | None:
        """The reference this model was fitted on, from the counts it keeps (None without them)."""
        if self.reference_counts is None:
            return None
        p = self.provenance
        return reference_from_counts(self.reference_counts, self.reference_labels, self.gene_ids, self.gene_symbols,
                                     label=str(p.get("label_column", "cell_type")), source=str(p.get("reference", "")),
                                     sha256=str(p.get("reference_sha256", "")),
                                     n_set_aside=int(p.get("n_reference_set_aside", 0)),
                                     counts_key=str(p.get("reference_counts", "X")))

    # -- file ---------------------------------------------------------------------------------
    def save(self, path, with_reference_counts: bool = True) -> None:
        """Write the model file (:mod:`sclinbench.tool.modelfile`)."""
        modelfile.save(self, path, with_counts=with_reference_counts)

    @classmethod
    def load(cls, path) -> Annotator:
        """Read a model file (any sclinbench version writing a readable format; see :mod:`~sclinbench.tool.modelfile`)."""
        return modelfile.load(cls, path)

    # -- prediction ---------------------------------------------------------------------------
    def match(self, query_var: pd.DataFrame, pairs=None, min_shared: int = 100, query_name: str = "query",
              reference_name: str | None = None) -> gene_match.GeneMatch:
        return gene_match.match_genes(
            _target(self.gene_ids, self.gene_symbols), gene_match.gene_keys(query_var), target_ids=self.gene_ids,
            target_symbols=self.gene_symbols, pairs=pairs, min_shared=min_shared, query_name=query_name,
            reference_name=reference_name or (f"the model {self.source}" if self.source != "fitted in memory" else "the reference"),
        )

    def novelty(self, score: np.ndarray) -> np.ndarray:
        """1 - (share of held-out reference cells with top score <= this one): 0 familiar, 1 novel."""
        # the ECDF at c is the largest grid level whose quantile is <= c
        return 1.0 - np.interp(score, self.confidence_quantiles, _ecdf_grid(), left=0.0, right=1.0)

    def predict_matrices(self, counts: sp.csr_matrix) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """``(per-cell table, class scores, calibrated class probabilities)`` of ``counts`` (on the model's genes).

        The table: ``label``, ``confidence`` (calibrated probability of the label), ``score`` (the
        pipeline's top class score), ``novelty_score``, ``is_novel``. Cells without counts are
        ``unassigned`` with NaN numbers.
        """
        counts = sp.csr_matrix(counts, dtype=np.float32)
        if counts.shape[1] != len(self.gene_ids):
            raise SclinbenchError(f"query counts have {counts.shape[1]} genes, the model {len(self.gene_ids)}")
        empty = np.diff(counts.indptr) == 0
        y, score, S = self.pipeline.predict_scores(counts)
        P = calibrate.probabilities(calibrate.logits(S, self.pipeline.scorer.kind), self.temperature)
        best = np.argmax(S, axis=1)
        conf = P[np.arange(P.shape[0]), best]
        y = y.astype(object)
        score = score.astype(np.float64)
        S = np.asarray(S, dtype=np.float64).copy()
        y[empty] = UNASSIGNED
        for arr in (score, conf, S, P):
            arr[empty] = np.nan
        nov = self.novelty(np.nan_to_num(score, nan=-np.inf))
        nov[empty] = np.nan
        flag = (score < self.threshold) & ~empty
        if empty.any():
            log.warning("%d query cells have no counts on the model's genes: labelled '%s'", int(empty.sum()), UNASSIGNED)
        table = pd.DataFrame({"label": y, "confidence": conf, "score": score, "novelty_score": nov, "is_novel": flag})
        return table, S, P

    def predict(self, counts: sp.csr_matrix) -> pd.DataFrame:
        """The per-cell table of :meth:`predict_matrices`."""
        return self.predict_matrices(counts)[0]

    def top_genes(self, n: int = 20) -> pd.DataFrame:
        """The ``n`` genes with the largest positive weight for each class (linear models)."""
        W = self.pipeline.gene_weights()
        rows = []
        for k, label in enumerate(self.pipeline.classes_):
            order = np.argsort(-W[k], kind="stable")[:n]
            for rank, j in enumerate(order, start=1):
                if W[k, j] <= 0:
                    break
                rows.append({"label": str(label), "rank": rank, "gene_id": str(self.gene_ids[j]),
                             "gene_symbol": str(self.gene_symbols[j]), "weight": float(W[k, j])})
        return pd.DataFrame(rows, columns=["label", "rank", "gene_id", "gene_symbol", "weight"])


# ------------------------------------------------------------------------------------------------
# one annotation, in memory
# ------------------------------------------------------------------------------------------------
@dataclass
class Result:
    """What :func:`annotate` produces: the labelled query and its tables."""

    adata: ad.AnnData
    labels: pd.DataFrame
    top_genes: pd.DataFrame
    metrics: pd.DataFrame
    annotator: Annotator
    genes: gene_match.GeneMatch
    seconds: float
    genes_info: dict = field(default_factory=dict)
    low_confidence: dict = field(default_factory=dict)

    def summary(self) -> str:
        pred = self.labels
        n = int(pred["n_cells"].sum())
        novel = int(pred["n_novel"].sum())
        g = self.genes_info or self.genes.summary()
        text = (f"labelled {n} cells with {self.annotator.pipeline_name} ({len(self.annotator.label_counts)} labels, "
                f"{g['n_shared']} of {g['n_reference_genes']} reference genes shared); {novel} ({100 * novel / max(n, 1):.1f}%) flagged novel; "
                f"held-out reference macro F1 {self.annotator.calibration['macro_f1']:.3f}")
        low = self.low_confidence
        if low:
            text += (f"; {low['n_below']} ({100 * low['fraction_below']:.1f}%) below calibrated confidence "
                     f"{low['threshold']:g}")
        q = self.metrics[(self.metrics["set"] == "query_shared_labels") & (self.metrics["metric"] == "macro_f1")]
        if len(q):
            text += f"; query macro F1 {q['value'].iloc[0]:.3f} on {int(q['n_cells'].iloc[0])} cells of shared labels"
        return text


def fit_for_query(reference: Reference, spec, pipeline_name: str, full: gene_match.GeneMatch, *, seed: int,
                  calibration_fraction: float, novelty_quantile: float,
                  all_genes_calibration: dict | None = None) -> tuple[Annotator, gene_match.GeneMatch, dict]:
    """Fit on the reference genes the query measures (``full``: the query matched onto all of them).

    Both annotate paths call this with the same reference, so they fit the same model. When genes
    are missing, the cost is the held-out reference macro F1 with all genes (``all_genes_calibration``,
    a model's own; computed here when not given) minus that with the shared genes; it is logged and
    returned in the gene summary.
    """
    spec = check_spec(pipeline_name, spec)  # a model file's canonical spec -> PipelineSpec; a spec as it is
    match, keep = full.restricted()
    n_missing = full.n_target - keep.size
    annotator = Annotator.fit(reference, spec, pipeline_name, seed=seed, calibration_fraction=calibration_fraction,
                              novelty_quantile=novelty_quantile, genes=keep)
    info = {**full.summary(), "n_genes_fitted": int(keep.size), "n_missing": int(n_missing),
            "fraction_missing": float(n_missing / max(full.n_target, 1)), "refitted_on_shared_genes": bool(n_missing)}
    if n_missing:
        if all_genes_calibration is None:
            X = sp.csr_matrix(reference.adata.X, dtype=np.float32)
            rep = build_pipeline(spec, seed).steps[0][1]
            Z = rep.fit(X).transform(X) if _stateless_representation(rep) else None
            all_genes_calibration = _heldout(spec, X, reference.labels, seed, calibration_fraction, novelty_quantile,
                                             Z)["calibration"]
        f1_all, f1_shared = float(all_genes_calibration["macro_f1"]), float(annotator.calibration["macro_f1"])
        info.update({"heldout_macro_f1_all_genes": f1_all, "heldout_macro_f1_shared_genes": f1_shared,
                     "macro_f1_cost": f1_all - f1_shared})
        log.warning("the query lacks %d of the %d reference genes (%.1f%%): %s fitted on the %d it measures; "
                    "held-out reference macro F1 %.3f with them, %.3f with all genes (cost %.3f)", n_missing,
                    full.n_target, 100 * info["fraction_missing"], pipeline_name, keep.size, f1_shared, f1_all,
                    f1_all - f1_shared)
    return annotator, match, info


def annotate(
    query: ad.AnnData,
    *,
    annotator: Annotator | None = None,
    reference: Reference | None = None,
    pipeline_name: str = DEFAULT_PIPELINE,
    spec=None,
    query_counts: str = "auto",
    pairs: gene_match.OrthologPairs | None = None,
    min_shared_genes: int = 100,
    seed: int = 0,
    calibration_fraction: float = 0.2,
    novelty_quantile: float = 0.01,
    truth: str | None = None,
    key_added: str = "sclinbench",
    n_top_genes: int = 20,
    query_name: str = "query",
    provenance: dict | None = None,
    confidence_threshold: float = calibrate.CONFIDENCE_THRESHOLD,
    majority_voting: bool = False,
    over_clustering: str | None = None,
) -> Result:
    """Label the cells of ``query`` (modified in place and returned in the :class:`Result`).

    Give either a fitted ``annotator`` (e.g. :meth:`Annotator.load`) or a ``reference`` with a
    pipeline ``spec``. Either way the pipeline that labels the query is fitted on the reference
    genes the query measures (:func:`fit_for_query`; a model refits from the reference counts it
    keeps, with its own seed and calibration settings), so both give the same labels. A model saved
    without reference counts counts the missing genes as zero (a warning says so).

    Writes obs, obsm and the CellTypist columns (:mod:`sclinbench.tool.output`; with
    ``majority_voting``, ``over_clustering`` and ``majority_voting``: :mod:`sclinbench.tool.voting`)
    and ``uns[key_added]`` (pipeline, spec, versions, reference and checksum, gene overlap and its
    cost, novelty and probability calibration, the share of cells below ``confidence_threshold``,
    label table, top genes, metrics).
    """
    t0 = time.perf_counter()
    if (annotator is None) == (reference is None):
        raise SclinbenchError("annotate needs either a reference (--reference, --label) or a model (--model), not both")
    if not 0 < confidence_threshold < 1:
        raise SclinbenchError(f"--confidence-threshold must be in (0, 1), got {confidence_threshold}")
    counts, var, counts_key = read_counts(query, query_counts, query_name, "--query-counts")
    if truth is not None:
        truth_values = _label_values(query.obs, truth, query_name, "--truth")
    if annotator is None:
        if spec is None:
            raise SclinbenchError("annotate with a reference needs a pipeline spec")
        spec = check_spec(pipeline_name, spec)
        rvar = reference.adata.var
        ids = rvar.index.to_numpy(dtype=object)
        symbols = np.asarray(rvar["gene_symbol"].astype(str) if "gene_symbol" in rvar.columns else ids, dtype=object)
        full = gene_match.match_genes(
            _target(ids, symbols), gene_match.gene_keys(var), target_ids=ids, target_symbols=symbols, pairs=pairs,
            min_shared=min_shared_genes, reference_name=f"reference {reference.source}", query_name=query_name,
        )
        annotator, match, genes_info = fit_for_query(reference, spec, pipeline_name, full, seed=seed,
                                                     calibration_fraction=calibration_fraction,
                                                     novelty_quantile=novelty_quantile)
    else:
        full = annotator.match(var, pairs=pairs, min_shared=min_shared_genes, query_name=query_name)
        stored = annotator.stored_reference() if full.n_shared < full.n_target else None
        if stored is not None:
            model, c = annotator, annotator.calibration
            annotator, match, genes_info = fit_for_query(stored, model.spec, model.pipeline_name, full,
                                                         seed=int(c["seed"]), calibration_fraction=float(c["fraction"]),
                                                         novelty_quantile=model.novelty_quantile,
                                                         all_genes_calibration=c)
            annotator.source, annotator.provenance = model.source, {**model.provenance, "refitted": annotator.provenance["fitted"]}
        else:
            match = full
            n_missing = full.n_target - full.n_shared
            genes_info = {**full.summary(), "n_genes_fitted": int(full.n_target), "n_missing": int(n_missing),
                          "fraction_missing": float(n_missing / max(full.n_target, 1)), "refitted_on_shared_genes": False}
            if n_missing:
                log.warning("the query lacks %d of the model's %d genes (%.1f%%) and the model %s keeps no reference "
                            "counts to refit on the others: they count zero, which shifts rank-based representations, "
                            "so labels can differ from `annotate --reference` (cost not measured); retrain without "
                            "--no-reference-counts", n_missing, full.n_target, 100 * genes_info["fraction_missing"],
                            annotator.source)
    pred, S, P = annotator.predict_matrices(match.apply(counts))
    pred.index = query.obs_names
    vote = None
    if majority_voting or over_clustering:
        vote = voting.vote(pred["label"].astype(str).to_numpy(), counts, query, over_clustering, seed=seed)
    write_columns(query, pred, S, P, annotator.pipeline.classes_, key_added, query_name, vote)
    low = calibrate.low_confidence(pred["confidence"].to_numpy(), confidence_threshold)
    log.info("%s: %d of %d cells (%.1f%%) have a calibrated confidence below %g", query_name, low["n_below"],
             low["n_cells"], 100 * low["fraction_below"], confidence_threshold)
    labels = label_table(pred, annotator.label_counts)
    top = annotator.top_genes(n_top_genes)
    metrics = calibration_metrics(annotator)
    if truth is not None:
        metrics = pd.concat([metrics, truth_metrics(pred, truth_values, annotator.label_counts)], ignore_index=True)
    seconds = time.perf_counter() - t0
    query.uns[key_added] = _uns_safe({
        "pipeline": annotator.pipeline_name,
        "spec": json.dumps(annotator.spec, sort_keys=True),
        "model": annotator.source,
        **{k: v for k, v in annotator.provenance.items() if k != "versions"},
        "fitted_with": annotator.provenance.get("versions", {}),
        "versions": modelfile.versions(),
        "query_counts": counts_key,
        "genes": genes_info,
        "classes": [str(c) for c in annotator.pipeline.classes_],
        "novelty": {"quantile": annotator.novelty_quantile, "threshold": annotator.threshold,
                    "rule": f"{key_added}_is_novel = {key_added}_score < threshold (the {annotator.novelty_quantile:g} "
                            "quantile of held-out reference cells' top class score)"},
        "confidence": {**low, "temperature": annotator.temperature,
                       "rule": f"{key_added}_confidence = conf_score = softmax(logits / temperature) of the label; "
                               "temperature fitted on held-out reference cells"},
        "calibration": annotator.calibration,
        "majority_voting": {"clusters": int(vote["over_clustering"].nunique()),
                            "source": over_clustering or "leiden over-clustering"} if vote is not None else {},
        "labels": labels,
        "top_genes": top,
        "metrics": metrics,
        "annotated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **(provenance or {}),
    })
    return Result(query, labels, top, metrics, annotator, match, seconds, genes_info, low)
