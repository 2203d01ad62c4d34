"""What an annotation writes, in the conventions users expect.

- obs ``<key>_label``, ``_confidence`` (the calibrated probability of the label, in [0, 1], for every
  pipeline: :mod:`sclinbench.tool.calibrate`), ``_score`` (the pipeline's own top class score),
  ``_novelty_score``, ``_is_novel``;
- obsm ``<key>_scores`` and ``<key>_probabilities``: one column per reference label (a DataFrame,
  so the label names travel with the matrix), the raw class scores and the calibrated probabilities;
- CellTypist's columns beside them (``predicted_labels``, ``conf_score`` and, with majority voting,
  ``over_clustering`` and ``majority_voting``: :mod:`sclinbench.tool.voting`), so code written for
  ``celltypist.annotate(...).to_adata()`` reads the output unchanged;
- the tables (:func:`label_table`, :func:`truth_metrics`, :func:`calibration_metrics`) and the files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from sclinbench import data
from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.metrics import classification_scores

log = logging.getLogger("sclinbench.annotate")

#: CellTypist's obs columns (``AnnotationResult.to_adata()`` with its default empty prefix).
CELLTYPIST_COLUMNS = ("predicted_labels", "conf_score", "over_clustering", "majority_voting")


def write_columns(query: ad.AnnData, pred: pd.DataFrame, scores: np.ndarray, proba: np.ndarray, classes,
                  key: str, where: str, voting: pd.DataFrame | None = None) -> list[str]:
    """Write the obs and obsm entries of the module docstring; return the obs columns written."""
    classes = [str(c) for c in classes]
    cols = {f"{key}_label": pd.Categorical(pred["label"].astype(str)),
            f"{key}_confidence": pred["confidence"].to_numpy(dtype=float),
            f"{key}_score": pred["score"].to_numpy(dtype=float),
            f"{key}_novelty_score": pred["novelty_score"].to_numpy(dtype=float),
            f"{key}_is_novel": pred["is_novel"].to_numpy(dtype=bool),
            "predicted_labels": pd.Categorical(pred["label"].astype(str)),
            "conf_score": pred["confidence"].to_numpy(dtype=float)}
    if voting is not None:
        cols["over_clustering"] = pd.Categorical(voting["over_clustering"].astype(str))
        cols["majority_voting"] = pd.Categorical(voting["majority_voting"].astype(str))
    for name, values in cols.items():
        if name in query.obs.columns:
            log.warning("%s: obs column '%s' is replaced", where, name)
        query.obs[name] = values
    for name, M in ((f"{key}_scores", scores), (f"{key}_probabilities", proba)):
        if name in query.obsm:
            log.warning("%s: obsm '%s' is replaced", where, name)
        query.obsm[name] = pd.DataFrame(np.asarray(M, dtype=np.float64), index=query.obs_names, columns=classes)
    return list(cols)


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


def calibration_metrics(annotator) -> pd.DataFrame:
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


def write_result(result, paths: dict[str, Path], compression: str | None = None) -> None:
    """Write the labelled h5ad and its tables (each atomically: nothing half-written after a failure).

    ``compression``: ``None`` (anndata's default; fastest) or ``"gzip"`` (smaller files).
    """
    from sclinbench.workflow.io import atomic_path, write_table

    write_table(result.labels, paths["labels"])
    write_table(result.top_genes, paths["top_genes"])
    write_table(result.metrics, paths["metrics"])
    with atomic_path(paths["h5ad"]) as tmp:
        result.adata.write_h5ad(tmp, compression=compression)
