"""Label new cells with a benchmarked pipeline: fit on a reference, predict a query.

The steps, shared by ``sclinbench train`` / ``sclinbench annotate`` and the workflow's
``annotate`` rule:

1. :func:`read_counts` finds the raw integer counts of an h5ad (``X``, ``layers/counts`` or
   ``raw.X``; normalized matrices are refused with :func:`sclinbench.data.check_integer_counts`).
2. :func:`prepare_reference` standardizes the reference exactly as the workflow standardizes a
   dataset (:func:`sclinbench.data.standardize`: gene ids, duplicated genes summed, empty cells
   and genes removed), sets unlabelled cells aside and refuses labels with one cell.
3. :func:`fit` fits the pipeline (:func:`sclinbench.pipeline.build_pipeline`) twice: on a
   stratified ``1 - calibration_fraction`` of the reference cells, to score the held-out rest
   (their macro F1 and the distribution of their confidence calibrate the novelty flag), then on
   all reference cells for the model that labels the query.
4. :meth:`Annotator.annotate` maps the query onto the model's genes
   (:mod:`sclinbench.tool.genes`), predicts a label, its confidence (the largest class score:
   a probability for logistic models, the least-squares coefficient for the centroid model), a
   novelty score (the share of held-out reference cells that were at least as confident as
   this cell, subtracted from 1) and a novelty flag (confidence below the ``novelty_quantile``
   of the held-out reference cells, 1% by default).

Only pipelines ending in a linear model are accepted (:data:`~sclinbench.tool.portable.LINEAR_MODELS`):
their fitted state is a weight matrix, which makes the model file small and safe
(:mod:`sclinbench.tool.portable`) and gives the top genes per class by weight.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench import data
from sclinbench.errors import SclinbenchError
from sclinbench.io import sha256_file
from sclinbench.metrics import UNASSIGNED, classification_scores
from sclinbench.pipeline import build_pipeline, normalize_spec
from sclinbench.represent import RepresentationTransformer
from sclinbench.tool import (  # noqa: F401 (re-exported)
    DEFAULT_PIPELINE,
    JOB_DEFAULTS,
    QUERY_DEFAULTS,
    REFERENCE_DEFAULTS,
    portable,
)
from sclinbench.tool import genes as gene_match

log = logging.getLogger("sclinbench.annotate")

#: Where an h5ad's counts are looked for, in this order, by ``counts="auto"``.
COUNT_MATRICES = ("X", "layers/counts", "raw.X")


@functools.lru_cache(maxsize=1)
def _versions() -> tuple:
    import scipy
    import sklearn

    import sclinbench

    out = {"sclinbench": sclinbench.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
           "scikit-learn": sklearn.__version__, "pandas": pd.__version__}
    try:
        out["anndata"] = metadata.version("anndata")
    except metadata.PackageNotFoundError:
        out["anndata"] = "not installed"
    return tuple(out.items())


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    return dict(_versions())


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_h5ad(path, role: str) -> ad.AnnData:
    path = Path(path)
    if not path.exists():
        raise SclinbenchError(f"{role} file {path} does not exist")
    try:
        return ad.read_h5ad(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise SclinbenchError(f"cannot read {role} file {path} as h5ad ({detail}); is it an AnnData .h5ad file?") from exc


def _matrix(adata: ad.AnnData, key: str):
    """``(matrix, var)`` of ``X``, ``raw.X`` or ``layers/<name>``; ``(None, None)`` if absent."""
    if key == "X":
        return adata.X, adata.var
    if key == "raw.X":
        return (adata.raw.X, adata.raw.var) if adata.raw is not None else (None, None)
    if key.startswith("layers/"):
        name = key.split("/", 1)[1]
        return (adata.layers[name], adata.var) if name in adata.layers else (None, None)
    raise SclinbenchError(f"counts location {key!r} is not X, raw.X or layers/<name>")


def read_counts(adata: ad.AnnData, counts: str, where: str, option: str) -> tuple[sp.csr_matrix, pd.DataFrame, str]:
    """The raw integer counts of ``adata``: ``(CSR matrix, its var table, where they were)``.

    ``counts="auto"`` takes the first of :data:`COUNT_MATRICES` that holds non-negative integers;
    otherwise the named matrix must. Refusals name every matrix looked at and why.
    """
    keys = COUNT_MATRICES if counts == "auto" else (counts,)
    reasons = []
    for key in keys:
        X, var = _matrix(adata, key)
        if X is None:
            reasons.append(f"{key} absent")
            continue
        X = sp.csr_matrix(X) if not sp.isspmatrix_csr(X) else X
        try:
            data.check_integer_counts(X, where=key)
        except SclinbenchError as exc:
            text = str(exc)
            reason = text[len(key) + 1:].split(";")[0].split(":")[0].strip() if text.startswith(key) else text
            reasons.append(f"{key} {reason}")
            continue
        return X, var, key
    raise SclinbenchError(
        f"{where} holds no raw integer counts ({'; '.join(reasons)}); sclinbench normalizes the counts itself: "
        f"give a file with raw counts, or name the matrix holding them with {option} (e.g. layers/counts)"
    )


def _label_values(obs: pd.DataFrame, label: str, where: str, option: str) -> pd.Series:
    if label not in obs.columns:
        cols = ", ".join(map(str, obs.columns)) or "none"
        raise SclinbenchError(f"{where} has no obs column '{label}' ({option}); its obs columns are: {cols}")
    return obs[label]


# ------------------------------------------------------------------------------------------------
# the reference
# ------------------------------------------------------------------------------------------------
@dataclass
class Reference:
    """Standardized reference counts with their labels (``obs['cell_type']``)."""

    adata: ad.AnnData
    label: str
    source: str
    sha256: str
    n_set_aside: int = 0
    counts_key: str = "X"

    @property
    def labels(self) -> np.ndarray:
        return self.adata.obs["cell_type"].astype(str).to_numpy()


def prepare_reference(
    adata: ad.AnnData,
    label: str,
    *,
    source: str = "reference",
    sha256: str = "",
    counts: str = "auto",
    standardized: bool = False,
    min_cells_per_label: int = 0,
    organism: str | None = None,
) -> Reference:
    """Standardize a labelled reference and check its labels.

    Parameters
    ----------
    adata
        The reference as read from its file; or, with ``standardized=True``, a dataset already
        in the workflow's standardized form (``resources/standardized/<dataset>.h5ad``).
    label
        obs column holding the cell labels.
    source, sha256
        File and checksum recorded in the provenance.
    counts
        Where the raw counts are (``auto``: X, then layers/counts, then raw.X).
    standardized
        Skip standardization (the workflow's own datasets).
    organism
        Species of the reference (recorded in ``obs['organism']`` when the file has none).
    min_cells_per_label
        Drop (and log) labels with fewer reference cells; 0 keeps all. A label with one cell is
        refused unless dropped this way: it can be neither fitted and calibrated.

    Raises
    ------
    SclinbenchError
        No label column (the columns are listed), no raw counts, a label with one cell, fewer
        than two labels.
    """
    where = f"reference {source}"
    values = _label_values(adata.obs, label, where, "--label")
    missing = values.isna().to_numpy() | values.astype(str).str.strip().isin(["", "nan", "None"]).to_numpy()
    if standardized:
        missing |= values.astype(str).to_numpy() == data.UNKNOWN
    n_set_aside = int(missing.sum())
    if n_set_aside:
        log.warning("%s: %d cells have no '%s' label; they are set aside (not used, never a class)",
                    where, n_set_aside, label)
    if missing.all():
        raise SclinbenchError(f"{where}: no cell has a '{label}' label (--label); name the column holding the cell labels")
    if standardized:
        ref = adata[~missing].copy() if n_set_aside else adata
        ref.obs["cell_type"] = ref.obs[label].astype(str).astype("category")
        counts_key = "X"
    else:
        X, var, counts_key = read_counts(adata, counts, where, "--reference-counts")
        work = ad.AnnData(X=X, obs=adata.obs.copy(), var=var.copy())
        work = work[~missing].copy() if n_set_aside else work
        symbol_col = next((c for c in ("gene_symbols", "gene_symbol", "feature_name", "gene_name", "symbol")
                           if c in work.var.columns), None)
        id_col = next((c for c in ("gene_ids", "gene_id") if c in work.var.columns), None)
        kind = "ensembl" if gene_match.looks_ensembl(work.var_names) or (
            id_col and gene_match.looks_ensembl(work.var[id_col])) else "symbol"
        entry = {"columns": {"cell_type": label}, "gene_id": kind,
                 "var_columns": {"gene_id": id_col if kind == "ensembl" and not gene_match.looks_ensembl(work.var_names) else None,
                                 "gene_symbol": symbol_col}}
        if "organism" not in work.obs.columns:
            entry["organism"] = organism or "unspecified"
        if "donor_id" not in work.obs.columns:  # donors are not used here; say so instead of the registry hint
            work.obs["donor_id"] = data.UNKNOWN
        work.uns["sclinbench_raw"] = {"files": source, "sha256": sha256, "format": "h5ad", "counts": counts_key}
        ref = data.standardize(work, entry, {"min_counts": 1}, source=source, name="reference")
    ref.obs["cell_type"] = ref.obs["cell_type"].astype(str).astype("category")
    sizes = ref.obs["cell_type"].value_counts()
    if min_cells_per_label > 0:
        small = sizes.index[sizes < min_cells_per_label]
        if len(small):
            log.warning("%s: dropped %d labels with < %d cells: %s", where, len(small), min_cells_per_label,
                        ", ".join(map(str, small)))
            ref = ref[~ref.obs["cell_type"].isin(small).to_numpy()].copy()
            ref.obs["cell_type"] = ref.obs["cell_type"].cat.remove_unused_categories()
            sizes = ref.obs["cell_type"].value_counts()
    sizes = sizes[sizes > 0]
    singles = sorted(map(str, sizes.index[sizes < 2]))
    if singles:
        shown = ", ".join(repr(s) for s in singles[:5]) + (f" and {len(singles) - 5} more" if len(singles) > 5 else "")
        raise SclinbenchError(
            f"{where}: label {shown} of column '{label}' has only one cell; a label needs at least 2 (one to fit, "
            "one to calibrate): merge or remove it, or drop small labels with --min-cells-per-label 2"
        )
    if sizes.size < 2:
        raise SclinbenchError(f"{where}: column '{label}' has {sizes.size} label(s); at least 2 are needed to classify")
    if not sp.isspmatrix_csr(ref.X):
        ref.X = sp.csr_matrix(ref.X)
    return Reference(ref, label, source, sha256, n_set_aside, counts_key)


# ------------------------------------------------------------------------------------------------
# pipelines
# ------------------------------------------------------------------------------------------------
def check_spec(name: str, spec: dict) -> dict:
    """The normalized spec of a pipeline annotate can use (counts in, linear model out)."""
    if spec.get("role") == "control":
        raise SclinbenchError(f"pipeline '{name}' is a control (role: control); name a method pipeline to annotate with")
    s = normalize_spec({k: v for k, v in spec.items() if k not in ("description", "role")})
    if s["representation"]["name"] == "embedding":
        raise SclinbenchError(
            f"pipeline '{name}' reads an embedding (obsm), not counts; annotate needs a counts-based pipeline"
        )
    if s["control"] != "none":
        raise SclinbenchError(f"pipeline '{name}' is a control (control: {s['control']}); name a method pipeline")
    if s["model"]["name"] not in portable.LINEAR_MODELS:
        raise SclinbenchError(
            f"pipeline '{name}' ends in model '{s['model']['name']}'; annotate uses linear models "
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


def _fit_pipeline(spec: dict, X, y, seed: int, Z=None) -> portable.LinearPipeline:
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


# ------------------------------------------------------------------------------------------------
# the annotator
# ------------------------------------------------------------------------------------------------
@dataclass
class Annotator:
    """A fitted pipeline with its gene list, labels, novelty calibration and provenance."""

    pipeline: portable.LinearPipeline
    pipeline_name: str
    spec: dict
    gene_ids: np.ndarray
    gene_symbols: np.ndarray
    label_counts: dict[str, int]
    confidence_quantiles: np.ndarray
    novelty_quantile: float
    threshold: float
    calibration: dict
    provenance: dict = field(default_factory=dict)
    source: str = "fitted in memory"

    # -- fitting ------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        reference: Reference,
        spec: dict,
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
        held = _stratified_holdout(y, calibration_fraction, seed)
        rep = build_pipeline(s, seed).steps[0][1]
        Z = rep.fit(X).transform(X) if _stateless_representation(rep) else None
        cal = _fit_pipeline(s, X[~held], y[~held], seed, None if Z is None else Z[np.flatnonzero(~held)])
        y_cal, conf_cal, _ = cal.predict_scores(X[held])
        scores = classification_scores(y[held], y_cal)
        threshold = float(np.quantile(conf_cal, novelty_quantile))
        quantiles = np.quantile(conf_cal, _ecdf_grid())
        log.info("calibration: fitted on %d reference cells, %d held out: macro F1 %.3f, accuracy %.3f; "
                 "novelty threshold %.4g (confidence quantile %g)", int((~held).sum()), int(held.sum()),
                 scores["macro_f1"], scores["accuracy"], threshold, novelty_quantile)
        final = _fit_pipeline(s, X, y, seed, Z)
        labels, counts = np.unique(y, return_counts=True)
        var = adata.var
        symbols = var["gene_symbol"].astype(str).to_numpy() if "gene_symbol" in var.columns else adata.var_names.to_numpy()
        log.info("fitted %s on %d cells x %d genes, %d labels in %.1f s", pipeline_name, X.shape[0], X.shape[1],
                 labels.size, time.perf_counter() - t0)
        return cls(
            pipeline=final, pipeline_name=pipeline_name, spec=s,
            gene_ids=np.asarray(adata.var_names, dtype=object), gene_symbols=np.asarray(symbols, dtype=object),
            label_counts={str(k): int(v) for k, v in zip(labels, counts)},
            confidence_quantiles=quantiles, novelty_quantile=float(novelty_quantile), threshold=threshold,
            calibration={"n_fit_cells": int((~held).sum()), "n_heldout_cells": int(held.sum()),
                         "fraction": float(calibration_fraction), "seed": int(seed),
                         **{k: float(v) for k, v in scores.items()}},
            provenance={"reference": reference.source, "reference_sha256": reference.sha256,
                        "label_column": reference.label, "reference_counts": reference.counts_key,
                        "n_reference_cells": int(X.shape[0]), "n_reference_set_aside": int(reference.n_set_aside),
                        "fitted": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                        "versions": versions()},
        )

    # -- file ---------------------------------------------------------------------------------
    def save(self, path) -> None:
        meta = {
            "sclinbench_version": versions()["sclinbench"],
            "pipeline": self.pipeline_name, "spec": self.spec, "label_counts": self.label_counts,
            "novelty_quantile": self.novelty_quantile, "threshold": self.threshold,
            "calibration": self.calibration, "provenance": self.provenance,
        }
        arrays = {"gene_ids": np.asarray(self.gene_ids, dtype=str), "gene_symbols": np.asarray(self.gene_symbols, dtype=str),
                  "confidence_quantiles": self.confidence_quantiles}
        portable.save(path, self.pipeline, meta, arrays)

    @classmethod
    def load(cls, path) -> Annotator:
        """Read a model file, refusing one written by another sclinbench version."""
        pipe, meta, arrays = portable.load(path)
        this = versions()["sclinbench"]
        if meta.get("sclinbench_version") != this:
            raise SclinbenchError(
                f"model file {path} was written by sclinbench {meta.get('sclinbench_version')}, this is sclinbench "
                f"{this}; retrain it with `sclinbench train` (models are not carried across versions)"
            )
        try:
            gene_ids, gene_symbols = arrays["gene_ids"].astype(object), arrays["gene_symbols"].astype(object)
            self = cls(pipeline=pipe, pipeline_name=meta["pipeline"], spec=meta["spec"], gene_ids=gene_ids,
                       gene_symbols=gene_symbols, label_counts=meta["label_counts"],
                       confidence_quantiles=arrays["confidence_quantiles"], novelty_quantile=meta["novelty_quantile"],
                       threshold=meta["threshold"], calibration=meta["calibration"], provenance=meta["provenance"],
                       source=str(path))
        except KeyError as exc:
            raise SclinbenchError(f"model file {path} lacks {exc}; it is incomplete: retrain it with `sclinbench train`") from exc
        if len(gene_ids) != pipe.n_genes or len(gene_symbols) != len(gene_ids):
            raise SclinbenchError(
                f"model file {path} lists {len(gene_ids)} genes but its pipeline was fitted on {pipe.n_genes}; "
                "the file is damaged: retrain it with `sclinbench train`"
            )
        if set(map(str, pipe.classes_)) - set(self.label_counts):
            raise SclinbenchError(f"model file {path}: its classes and label counts disagree; retrain it")
        return self

    # -- prediction ---------------------------------------------------------------------------
    def match(self, query_var: pd.DataFrame, pairs=None, min_shared: int = 100, query_name: str = "query",
              reference_name: str | None = None) -> gene_match.GeneMatch:
        target = {"var_names": gene_match.clean_ids(self.gene_ids), "var['gene_symbol']": gene_match.clean_ids(self.gene_symbols)}
        return gene_match.match_genes(
            target, gene_match.gene_keys(query_var), target_ids=self.gene_ids, target_symbols=self.gene_symbols,
            pairs=pairs, min_shared=min_shared, query_name=query_name,
            reference_name=reference_name or (f"the model {self.source}" if self.source != "fitted in memory" else "the reference"),
        )

    def novelty(self, confidence: np.ndarray) -> np.ndarray:
        """1 - (share of held-out reference cells with confidence <= this one): 0 familiar, 1 novel."""
        q = self.confidence_quantiles
        grid = _ecdf_grid()
        # the ECDF at c is the largest grid level whose quantile is <= c
        ecdf = np.interp(confidence, q, grid, left=0.0, right=1.0)
        return 1.0 - ecdf

    def predict(self, counts: sp.csr_matrix) -> pd.DataFrame:
        """Label, confidence, novelty score and flag of each cell of ``counts`` (on the model's genes)."""
        counts = sp.csr_matrix(counts, dtype=np.float32)
        if counts.shape[1] != len(self.gene_ids):
            raise SclinbenchError(f"query counts have {counts.shape[1]} genes, the model {len(self.gene_ids)}")
        empty = np.diff(counts.indptr) == 0
        y, conf, _ = self.pipeline.predict_scores(counts)
        y = y.astype(object)
        conf = conf.astype(np.float64)
        y[empty] = UNASSIGNED
        conf[empty] = np.nan
        nov = self.novelty(np.nan_to_num(conf, nan=-np.inf))
        nov[empty] = np.nan
        flag = (conf < self.threshold) & ~empty
        if empty.any():
            log.warning("%d query cells have no counts on the model's genes: labelled '%s'", int(empty.sum()), UNASSIGNED)
        return pd.DataFrame({"label": y, "confidence": conf, "novelty_score": nov, "is_novel": flag})

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
# tables
# ------------------------------------------------------------------------------------------------
def label_table(pred: pd.DataFrame, label_counts: dict[str, int]) -> pd.DataFrame:
    """One row per label: query cells predicted, share, flagged novel, median confidence, reference cells."""
    rows = []
    n = max(len(pred), 1)
    for label in sorted(set(label_counts) | set(pred["label"].astype(str))):
        sel = pred["label"].astype(str) == label
        rows.append({
            "label": label, "n_cells": int(sel.sum()), "fraction": float(sel.sum() / n),
            "n_novel": int(pred.loc[sel, "is_novel"].sum()),
            "median_confidence": float(conf.median()) if len(conf := pred.loc[sel, "confidence"].dropna()) else float("nan"),
            "n_reference_cells": int(label_counts.get(label, 0)),
        })
    return pd.DataFrame(rows)


def truth_metrics(pred: pd.DataFrame, truth: pd.Series, reference_labels) -> pd.DataFrame:
    """Scores against known query labels, on the labels the reference shares (never mixed with novel ones).

    Rows: ``set`` ``query_shared_labels`` (macro F1, accuracy, ... over cells whose true label is a
    reference label; ``labels`` lists them), ``query_other_labels`` (cells of labels the reference
    lacks: share flagged novel, AUROC of the novelty score against the shared-label cells), and
    the count of cells without a true label (set aside).
    """
    from sklearn.metrics import roc_auc_score

    t = truth.astype(object).where(truth.notna(), None).to_numpy()
    t = np.array(["" if v is None else str(v) for v in t], dtype=object)
    known = set(map(str, reference_labels))
    no_truth = np.isin(t, ["", "nan", data.UNKNOWN])
    shared = ~no_truth & np.isin(t, list(known))
    other = ~no_truth & ~shared
    rows = []
    labels_shared = sorted(set(t[shared]))
    if shared.any():
        s = classification_scores(t[shared], pred["label"].astype(str).to_numpy()[shared])
        for metric, value in s.items():
            rows.append({"set": "query_shared_labels", "metric": metric, "value": value, "n_cells": int(shared.sum()),
                         "labels": ";".join(labels_shared)})
        rows.append({"set": "query_shared_labels", "metric": "novel_flag_rate",
                     "value": float(pred["is_novel"].to_numpy()[shared].mean()), "n_cells": int(shared.sum()),
                     "labels": ";".join(labels_shared)})
    if other.any():
        labels_other = ";".join(sorted(set(t[other])))
        rows.append({"set": "query_other_labels", "metric": "novel_flag_rate",
                     "value": float(pred["is_novel"].to_numpy()[other].mean()), "n_cells": int(other.sum()),
                     "labels": labels_other})
        nov = pred["novelty_score"].to_numpy(dtype=float)
        ok = (shared | other) & np.isfinite(nov)
        if shared[ok].any() and other[ok].any():
            rows.append({"set": "query_other_labels", "metric": "novelty_auroc",
                         "value": float(roc_auc_score(other[ok], nov[ok])), "n_cells": int(ok.sum()),
                         "labels": labels_other})
    rows.append({"set": "query_no_label", "metric": "n_cells", "value": float(no_truth.sum()),
                 "n_cells": int(no_truth.sum()), "labels": ""})
    return pd.DataFrame(rows, columns=["set", "metric", "value", "n_cells", "labels"])


def calibration_metrics(annotator: Annotator) -> pd.DataFrame:
    c = annotator.calibration
    labels = ";".join(sorted(annotator.label_counts))
    rows = [{"set": "reference_heldout", "metric": m, "value": float(c[m]), "n_cells": int(c["n_heldout_cells"]),
             "labels": labels}
            for m in ("macro_f1", "accuracy", "balanced_accuracy", "macro_precision", "macro_recall") if m in c]
    return pd.DataFrame(rows, columns=["set", "metric", "value", "n_cells", "labels"])


def _uns_safe(value):
    """A value anndata can write to h5ad (no None, dicts of str keys)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return {str(k): _uns_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return json.dumps(value) if any(isinstance(v, (dict, list, tuple)) or v is None for v in value) else list(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    return value


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

    def summary(self) -> str:
        pred = self.labels
        n = int(pred["n_cells"].sum())
        novel = int(pred["n_novel"].sum())
        g = self.genes_info or self.genes.summary()
        text = (f"labelled {n} cells with {self.annotator.pipeline_name} ({len(self.annotator.label_counts)} labels, "
                f"{g['n_shared']} of {g['n_reference_genes']} reference genes shared); {novel} ({100 * novel / max(n, 1):.1f}%) flagged novel; "
                f"held-out reference macro F1 {self.annotator.calibration['macro_f1']:.3f}")
        q = self.metrics[(self.metrics["set"] == "query_shared_labels") & (self.metrics["metric"] == "macro_f1")]
        if len(q):
            text += f"; query macro F1 {q['value'].iloc[0]:.3f} on {int(q['n_cells'].iloc[0])} cells of shared labels"
        return text


def annotate(
    query: ad.AnnData,
    *,
    annotator: Annotator | None = None,
    reference: Reference | None = None,
    pipeline_name: str = DEFAULT_PIPELINE,
    spec: dict | None = None,
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
) -> Result:
    """Label the cells of ``query`` (modified in place and returned in the :class:`Result`).

    Give either a fitted ``annotator`` (e.g. :meth:`Annotator.load`) or a ``reference`` with a
    pipeline ``spec``. With a reference the pipeline is fitted on the reference genes the query
    measures (so a cell's ranks cover the same genes on both sides); a saved model keeps its own
    gene list and the genes the query lacks count zero.

    Writes ``obs[f"{key_added}_label"]``, ``_confidence``, ``_novelty_score``, ``_is_novel`` and
    ``uns[key_added]`` (pipeline, spec, versions, reference and checksum, gene overlap, novelty
    calibration, label table, top genes, metrics).
    """
    t0 = time.perf_counter()
    if (annotator is None) == (reference is None):
        raise SclinbenchError("annotate needs either a reference (--reference, --label) or a model (--model), not both")
    counts, var, counts_key = read_counts(query, query_counts, query_name, "--query-counts")
    if truth is not None:
        truth_values = _label_values(query.obs, truth, query_name, "--truth")
    if annotator is None:
        if spec is None:
            raise SclinbenchError("annotate with a reference needs a pipeline spec")
        check_spec(pipeline_name, spec)
        rvar = reference.adata.var
        target = gene_match.gene_keys(rvar)
        symbols = rvar["gene_symbol"].astype(str).to_numpy() if "gene_symbol" in rvar.columns else rvar.index.to_numpy()
        full = gene_match.match_genes(
            target, gene_match.gene_keys(var), target_ids=rvar.index.to_numpy(dtype=object),
            target_symbols=np.asarray(symbols, dtype=object), pairs=pairs, min_shared=min_shared_genes,
            reference_name=f"reference {reference.source}", query_name=query_name,
        )
        match, keep = full.restricted()
        if keep.size < full.n_target:
            log.info("fitting on the %d reference genes the query measures (of %d)", keep.size, full.n_target)
        annotator = Annotator.fit(reference, spec, pipeline_name, seed=seed, calibration_fraction=calibration_fraction,
                                  novelty_quantile=novelty_quantile, genes=keep)
        genes_info = {**full.summary(), "n_genes_fitted": int(keep.size)}
    else:
        match = annotator.match(var, pairs=pairs, min_shared=min_shared_genes, query_name=query_name)
        if match.n_shared < 0.5 * match.n_target:
            log.warning("the query measures only %d of the model's %d genes; the others count zero, which shifts "
                        "rank-based representations: a reference with the query's genes fits better",
                        match.n_shared, match.n_target)
        genes_info = {**match.summary(), "n_genes_fitted": int(match.n_target)}
    pred = annotator.predict(match.apply(counts))
    pred.index = query.obs_names
    cols = {f"{key_added}_label": pd.Categorical(pred["label"].astype(str)),
            f"{key_added}_confidence": pred["confidence"].to_numpy(),
            f"{key_added}_novelty_score": pred["novelty_score"].to_numpy(),
            f"{key_added}_is_novel": pred["is_novel"].to_numpy(dtype=bool)}
    for name, values in cols.items():
        if name in query.obs.columns:
            log.warning("%s: obs column '%s' is replaced", query_name, name)
        query.obs[name] = values
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
        "versions": versions(),
        "query_counts": counts_key,
        "genes": genes_info,
        "novelty": {"quantile": annotator.novelty_quantile, "threshold": annotator.threshold,
                    "rule": f"{key_added}_is_novel = confidence < threshold (the {annotator.novelty_quantile:g} quantile "
                            "of held-out reference cells' confidence)"},
        "calibration": annotator.calibration,
        "labels": labels,
        "top_genes": top,
        "metrics": metrics,
        "annotated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **(provenance or {}),
    })
    return Result(query, labels, top, metrics, annotator, match, seconds, genes_info)


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------
def output_paths(out) -> dict[str, Path]:
    """``OUT.h5ad`` -> the h5ad and its tables ``OUT.labels.tsv``, ``OUT.top_genes.tsv``, ``OUT.metrics.tsv``."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".h5ad" else out
    return {"h5ad": out, "labels": Path(f"{stem}.labels.tsv"), "top_genes": Path(f"{stem}.top_genes.tsv"),
            "metrics": Path(f"{stem}.metrics.tsv")}


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(outputs: dict[str, Path], inputs: dict[str, str | Path | None]) -> None:
    """Refuse an output path that is one of the input files (it would be overwritten)."""
    for out_role, out in outputs.items():
        for in_role, path in inputs.items():
            if path and _same_file(Path(out), Path(path)):
                option = "--out" if out_role == "h5ad" else ("--model" if out_role == "model" else f"--out (its {out_role} table)")
                raise SclinbenchError(
                    f"{option} {out} is the {in_role} file; writing it would overwrite the {in_role}: choose another output path"
                )


def write_result(result: Result, paths: dict[str, Path], compression: str | None = None) -> None:
    """Write the labelled h5ad and its tables (each atomically: nothing half-written after a failure).

    ``compression``: ``None`` (anndata's default; fastest) or ``"gzip"`` (smaller files).
    """
    from sclinbench.io import atomic_path, write_table

    write_table(result.labels, paths["labels"])
    write_table(result.top_genes, paths["top_genes"])
    write_table(result.metrics, paths["metrics"])
    with atomic_path(paths["h5ad"]) as tmp:
        result.adata.write_h5ad(tmp, compression=compression)


# ------------------------------------------------------------------------------------------------
# the workflow's annotate jobs
# ------------------------------------------------------------------------------------------------
def select_cells(adata: ad.AnnData, subset: dict | None, exclude: dict | None, where: str) -> ad.AnnData:
    """Cells whose obs columns take one of the ``subset`` values and none of the ``exclude`` values."""
    keep = np.ones(adata.n_obs, dtype=bool)
    for rule, want in (("subset", True), ("exclude", False)):
        for column, values in ((subset if want else exclude) or {}).items():
            if column not in adata.obs.columns:
                raise SclinbenchError(
                    f"{where}: obs column '{column}' ({rule}) does not exist; obs columns are: "
                    f"{', '.join(map(str, adata.obs.columns))}"
                )
            hit = adata.obs[column].astype(str).isin([str(v) for v in values]).to_numpy()
            keep &= hit if want else ~hit
    if not keep.any():
        raise SclinbenchError(f"{where}: subset {subset or {}} / exclude {exclude or {}} keeps no cell")
    return adata if keep.all() else adata[keep].copy()


def run_job(name: str, job: dict, pipeline_name: str, spec: dict, *, reference, query, orthologs=None,
            outputs: dict, reference_species=None, query_species=None, seed: int = 0) -> Result:
    """One ``annotate:`` job of the workflow config (see config/schema.yaml): files in, files out.

    The reference is a standardized registry dataset (``resources/standardized/<dataset>.h5ad``),
    optionally subset; the query a standardized dataset or an h5ad file of raw counts.
    """
    job = {**JOB_DEFAULTS, **{k: v for k, v in job.items() if v is not None}}
    ref_job = {**REFERENCE_DEFAULTS, **job["reference"]}
    q_job = {**QUERY_DEFAULTS, **job["query"]}
    ref_adata = select_cells(read_h5ad(reference, "reference"), ref_job.get("subset"), ref_job.get("exclude"),
                             f"annotate job '{name}' reference")
    info = ref_adata.uns.get("sclinbench", {})
    ref = prepare_reference(ref_adata, ref_job["label"],
                            source=f"dataset {ref_job['dataset']} ({reference})", sha256=sha256_file(reference),
                            standardized=True, min_cells_per_label=ref_job["min_cells_per_label"])
    q_where = f"query {q_job.get('path') or 'dataset ' + q_job['dataset']}"
    q_adata = select_cells(read_h5ad(query, "query"), q_job.get("subset"), q_job.get("exclude"),
                           f"annotate job '{name}' {q_where}")
    pairs = gene_match.read_ortholog_table(orthologs, reference_species, query_species) if orthologs else None
    result = annotate(
        q_adata, reference=ref, pipeline_name=pipeline_name, spec=spec,
        query_counts=q_job["counts"] if q_job.get("path") else "X", pairs=pairs,
        min_shared_genes=job["min_shared_genes"], seed=seed,
        calibration_fraction=job["calibration_fraction"], novelty_quantile=job["novelty_quantile"],
        truth=q_job.get("truth"), key_added=job["key_added"], n_top_genes=job["top_genes"],
        query_name=q_where,
        provenance={"job": name, "query": str(query), "query_sha256": sha256_file(query),
                    "reference_source_sha256": str(info.get("sha256", "")) if hasattr(info, "get") else "",
                    "reference_species": reference_species or "", "query_species": query_species or "",
                    "orthologs": str(orthologs or "")},
    )
    write_result(result, {k: Path(v) for k, v in outputs.items()}, compression="gzip")
    log.info("annotate job %s: %s", name, result.summary())
    return result
