"""Scores of predictions: per fold, and the tables of the score stage.

Label sets of the macro averages (macro F1, precision, recall):

- within a dataset: scikit-learn's default, the union of true and predicted labels;
- cross-species transfer pairs (the headline ``macro_f1``): the labels the training species and
  the target share -- the target cells whose true label the training species has, scored with
  scikit-learn ``labels=`` that shared set, so a prediction of any other label is an error for its
  cell and adds no class; ``macro_f1_all_target_labels`` scores every target cell over every target
  label (a label the training species lacks is then a class no cell can get right).

The explicit ``"unassigned"`` prediction is never a label of its own, it only counts as an error
for the cell's true class. A test set with fewer than two classes has no macro average (those
metrics are NaN, never a 1.0 from one trivially right class); its ``accuracy`` stays.

Everything here is computed from a weighted confusion matrix (:func:`confusion_metrics`), so the
same code scores a fold, the pooled out-of-fold predictions and every bootstrap draw of
:mod:`sclinbench.evaluate.intervals`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from sclinbench.workflow.contracts import (
    CALL_COLUMNS,
    FOLD_SCORE_COLUMNS,
    LABEL_COLUMNS,
    METRICS_TSV_COLUMNS,
    PAIRED_TSV_COLUMNS,
    PER_CLASS_COLUMNS,
    PIPELINE_COLUMNS,
    SCORE_PREFIX,
    SUMMARY_TSV_COLUMNS,
    UNASSIGNED,
    UNSEEN_TSV_COLUMNS,
    is_diagonal,
    read_task_table,
)

#: Metrics computed from the confusion matrix, in display order.
CONFUSION_METRICS = ("macro_f1", "accuracy", "balanced_accuracy", "macro_precision", "macro_recall")
#: Label-set modes of :func:`confusion_metrics`.
LABEL_MODES = ("union", "truth")


# --------------------------------------------------------------------------- confusion metrics

def label_index(*label_arrays) -> list[str]:
    """Sorted labels of the given arrays, without ``"unassigned"``."""
    labels: set[str] = set()
    for a in label_arrays:
        labels |= set(np.asarray(a, dtype=str))
    return sorted(labels - {UNASSIGNED})


def encode(values, labels: list[str]) -> np.ndarray:
    """Codes of ``values`` in ``labels``; ``"unassigned"`` and unknown labels get ``len(labels)``."""
    lookup = {lab: i for i, lab in enumerate(labels)}
    other = len(labels)
    return np.fromiter((lookup.get(v, other) for v in np.asarray(values, dtype=str)), dtype=np.int64,
                       count=len(values))


def confusion_metrics(C: np.ndarray, mode: str = "union") -> dict[str, np.ndarray]:
    """Macro F1/precision/recall, accuracy, balanced accuracy of weighted confusion matrices.

    Parameters
    ----------
    C
        ``(..., L + 1, L + 1)`` counts or weights: rows true label, columns predicted label, index
        ``L`` = ``"unassigned"`` (or any label outside the index). The leading axes are draws.
    mode
        ``"union"``: the macro averages run over every label that is true or predicted (scikit-learn's
        default); ``"truth"``: over the labels that are true in ``C`` only (scikit-learn ``labels=``
        the true labels; predictions of other labels are errors that add no class).

    Returns
    -------
    Metric name -> array of the leading shape; macro metrics are NaN where fewer than two labels
    are true, every metric is NaN where ``C`` is empty.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"mode must be one of {LABEL_MODES}, got {mode!r}")
    C = np.asarray(C, dtype=np.float64)
    L = C.shape[-1] - 1
    tp = np.diagonal(C, axis1=-2, axis2=-1)[..., :L]
    support = C.sum(axis=-1)[..., :L]
    predicted = C.sum(axis=-2)[..., :L]
    total = C.sum(axis=(-2, -1))
    true_set = support > 0
    include = true_set if mode == "truth" else true_set | (predicted > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), 0.0)
        denom = support + predicted
        f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        n_inc = include.sum(axis=-1)
        n_true = true_set.sum(axis=-1)
        ok = n_true >= 2
        out = {
            "macro_f1": np.where(ok, (f1 * include).sum(-1) / np.maximum(n_inc, 1), np.nan),
            "accuracy": np.where(total > 0, tp.sum(-1) / np.where(total > 0, total, 1), np.nan),
            "balanced_accuracy": np.where(ok, (recall * true_set).sum(-1) / np.maximum(n_true, 1), np.nan),
            "macro_precision": np.where(ok, (precision * include).sum(-1) / np.maximum(n_inc, 1), np.nan),
            "macro_recall": np.where(ok, (recall * include).sum(-1) / np.maximum(n_inc, 1), np.nan),
        }
    return out


def confusion_matrix_codes(t: np.ndarray, p: np.ndarray, n_labels: int,
                           weights: np.ndarray | None = None) -> np.ndarray:
    """``(L + 1) x (L + 1)`` confusion counts of true codes ``t`` and predicted codes ``p``."""
    k = n_labels + 1
    flat = np.bincount(t * k + p, weights=weights, minlength=k * k)
    return flat.reshape(k, k)


def classification_scores(y_true, y_pred, mode: str = "union") -> dict[str, float]:
    """Macro F1/precision/recall, accuracy and balanced accuracy of one set of predictions.

    ``mode`` chooses the label set of the macro averages (see :func:`confusion_metrics`).
    """
    y_true, y_pred = np.asarray(y_true, dtype=str), np.asarray(y_pred, dtype=str)
    labels = label_index(y_true) if mode == "truth" else label_index(y_true, y_pred)
    C = confusion_matrix_codes(encode(y_true, labels), encode(y_pred, labels), len(labels))
    return {k: float(v) for k, v in confusion_metrics(C, mode).items()}


def auroc_ovr(y_true, scores: pd.DataFrame, labels=None) -> float:
    """Macro one-vs-rest AUROC over the true classes that have a score and both outcomes.

    Each class is scored over the cells with a finite score for it (a fold whose model lacks the
    class has NaN there). ``labels`` restricts the classes (e.g. the shared labels of a
    cross-species pair).
    """
    y_true = np.asarray(y_true, dtype=str)
    keep = None if labels is None else set(labels)
    values = []
    for column in scores.columns:
        label = column[len(SCORE_PREFIX):]
        if keep is not None and label not in keep:
            continue
        s = scores[column].to_numpy(dtype=float)
        ok = np.isfinite(s)
        positive = y_true[ok] == label
        if positive.all() or not positive.any():
            continue
        values.append(roc_auc_score(positive, s[ok]))
    return float(np.mean(values)) if values else float("nan")


# --------------------------------------------------------------------------- per-fold scores

def score_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith(SCORE_PREFIX) and df[c].notna().any()]


def _in_training(df: pd.DataFrame) -> np.ndarray:
    if "label_in_training" in df.columns:
        return df["label_in_training"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    trained = {c[len(SCORE_PREFIX):] for c in score_columns(df)}
    return np.isin(df["y_true"].to_numpy(str), list(trained))


def n_fallback(df: pd.DataFrame) -> int:
    """Test rows scored by their model's fallback (the predictions' ``fallback`` column; 0 for a
    table without it)."""
    if "fallback" not in df.columns:
        return 0
    return int(df["fallback"].astype(str).str.lower().isin(["true", "1"]).sum())


#: Counts among the per-fold scores: reported summed, without an interval.
COUNT_METRICS = ("n_test_cells", "n_unassigned", "n_fallback", "n_test_classes")


def score_rows(df: pd.DataFrame, kind: str, group: str = "") -> dict[str, float]:
    """Every score of one set of test rows (one fold, or one species pair of a fold).

    Counts: ``n_test_cells``, ``n_unassigned`` (the explicit ``"unassigned"`` calls),
    ``n_fallback`` (cells scored by the model's fallback model, :func:`n_fallback`)."""
    cols = score_columns(df)
    y_true, y_pred = df["y_true"].to_numpy(str), df["y_pred"].to_numpy(str)
    out: dict[str, float] = {"n_test_cells": float(len(df)),
                             "n_unassigned": float((y_pred == UNASSIGNED).sum()),
                             "n_fallback": float(n_fallback(df))}
    if kind == "novel_type":
        novel = df["novel"].to_numpy(bool)
        known = ~novel
        out.update(classification_scores(y_true[known], y_pred[known]))
        out["n_test_classes"] = float(len(set(y_true[known])))
        out["known_accuracy"] = out["accuracy"]
        conf = df["score"].to_numpy(float)
        conf = np.where(np.isfinite(conf), conf, -np.inf)  # unscored cells are the most "novel"
        out["novelty_auroc"] = float(roc_auc_score(novel, -conf)) if novel.any() and known.any() else float("nan")
        out["auroc_ovr"] = auroc_ovr(y_true[known], df.loc[known, cols])
        return out
    if kind == "cross_species" and not is_diagonal(group):
        shared = _in_training(df)
        out.update(classification_scores(y_true[shared], y_pred[shared], mode="truth"))
        out["auroc_ovr"] = auroc_ovr(y_true[shared], df.loc[shared, cols], labels=set(y_true[shared]))
        out["macro_f1_all_target_labels"] = classification_scores(y_true, y_pred, mode="truth")["macro_f1"]
        out["n_cells_unseen_label"] = float((~shared).sum())
        out["n_shared_labels"] = float(len(set(y_true[shared])))
        out["n_test_classes"] = out["n_shared_labels"]
        return out
    out.update(classification_scores(y_true, y_pred))
    out["n_test_classes"] = float(len(set(y_true)))
    out["auroc_ovr"] = auroc_ovr(y_true, df[cols])
    return out


def score(predictions: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Tidy per-fold scores (``pipeline, fold, group, repeat, metric, value``).

    ``group`` separates the parts of a fold that must not be averaged together: each ordered
    species pair of a cross-species task (the same-species diagonal ``a->a`` is its own group), the
    held-out type of a novel-type fold; ``""`` otherwise. ``repeat`` numbers the label
    permutations of a shuffled-label control (0 for every other pipeline). A fold whose test set
    has one class gets NaN macro metrics (see the module docstring); the pooled out-of-fold scores
    of :mod:`sclinbench.evaluate.intervals` are the numbers to report.
    """
    preds = _with_repeat(predictions)
    rows = []
    by = ["pipeline", "fold", "repeat", "group"] if kind in ("cross_species", "novel_type") else \
        ["pipeline", "fold", "repeat"]
    for key, df in preds.groupby(by, sort=True, observed=True):
        group = str(key[3]) if len(key) > 3 else ""
        for metric, value in score_rows(df, kind, group).items():
            rows.append((key[0], int(key[1]), group, int(key[2]), metric, value))
    return pd.DataFrame(rows, columns=FOLD_SCORE_COLUMNS)


def _with_repeat(predictions: pd.DataFrame) -> pd.DataFrame:
    return predictions if "repeat" in predictions.columns else predictions.assign(repeat=0)


def per_class(predictions: pd.DataFrame, kind: str) -> pd.DataFrame:
    """F1 and support per true label, pipeline, fold and repeat (and species pair).

    ``in_training`` says whether the fold's model was trained on the label: for cross-species folds
    it marks the target species' labels that the training species lacks (left out of the headline
    ``macro_f1``); for novel-type folds the held-out type.
    """
    preds = _with_repeat(predictions)
    rows = []
    by = ["pipeline", "fold", "repeat", "group"]
    for key, df in preds.groupby(by, sort=True, observed=True):
        group = str(key[3]) if kind in ("cross_species", "novel_type") else ""
        y_true, y_pred = df["y_true"].to_numpy(str), df["y_pred"].to_numpy(str)
        trained = set(y_true[_in_training(df)])
        labels = sorted(set(y_true))
        codes_t, codes_p = encode(y_true, labels), encode(y_pred, labels)
        C = confusion_matrix_codes(codes_t, codes_p, len(labels))
        tp, support, predicted = np.diag(C)[:-1], C.sum(1)[:-1], C.sum(0)[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1), 0.0)
        rows += [(key[0], int(key[1]), group, int(key[2]), lab, float(fi), int(si), lab in trained)
                 for lab, fi, si in zip(labels, f1, support)]
    return pd.DataFrame(rows, columns=PER_CLASS_COLUMNS)


def confusion(predictions: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Confusion counts summed over folds: ``pipeline, repeat, group, y_true, y_pred, n`` (non-zero)."""
    preds = _with_repeat(predictions)
    if kind not in ("cross_species", "novel_type"):
        preds = preds.assign(group="")
    counts = (preds.groupby(CALL_COLUMNS[:-1], sort=True, observed=True)
              .size().rename("n").reset_index())
    return counts[CALL_COLUMNS]


def unseen_labels(predictions: pd.DataFrame) -> pd.DataFrame:
    """What cells of a label their fold's training lacked were called: ``true -> predicted -> n``.

    Columns ``pipeline, repeat, group, y_true, y_pred, n``: cross-species cells of a label the
    training species does not have (never part of the headline score) and the cells of a novel-type
    fold's held-out type.
    """
    preds = _with_repeat(predictions)
    unseen = preds[~_in_training(preds)]
    if unseen.empty:
        return pd.DataFrame(columns=CALL_COLUMNS)
    return (unseen.groupby(CALL_COLUMNS[:-1], sort=True, observed=True)
            .size().rename("n").reset_index()[CALL_COLUMNS])


# --------------------------------------------------------------------------- results/*.tsv

def pipeline_labels(pipelines: dict, name: str) -> dict:
    """role, family, representation and model of a pipeline entry (for the tidy tables)."""
    from sclinbench.evaluate.models import model_family

    spec = pipelines[name]
    if "nested" in spec:  # nested selection: its candidates' family (sclinbench.evaluate.nested)
        from sclinbench.evaluate.spec import NESTED, NestedSpec

        return {"role": spec.get("role", "method"), "family": NestedSpec.from_config(name, spec, pipelines).family,
                "representation": NESTED, "model": NESTED}
    return {"role": spec.get("role", "method"), "family": model_family(spec["model"]["name"]),
            "representation": spec["representation"]["name"], "model": spec["model"]["name"]}


def assemble(score_files, datasets, task_names, tasks: dict, pipelines: dict,
             kind: str = "scores") -> pd.DataFrame:
    """One tidy table of the run from the per dataset x task files of the score stage.

    ``kind="scores"``: ``results/metrics.tsv`` (every per-fold score, :data:`METRICS_TSV_COLUMNS`);
    ``"summary"``/``"paired"``: ``results/summary.tsv`` / ``results/paired.tsv`` (pooled scores with
    their intervals, paired differences), labelled by dataset, task (kind, split, protocol) and
    pipeline entry.
    """
    frames = []
    for path, dataset, task in zip(score_files, datasets, task_names):
        df = read_task_table(path)
        spec = tasks[task]
        labels = {"dataset": dataset, "task": task, "kind": spec["kind"], "split_kind": spec["split"],
                  "protocol": spec.get("protocol", "strict")}
        if kind == "scores":
            for i, col in enumerate(("dataset", "task", "kind", "split_kind")):
                df.insert(i, col, labels[col])
            info = {p: pipeline_labels(pipelines, p) for p in pd.unique(df["pipeline"])}
            for col in ("role", "representation", "model"):
                df[col] = [info[p][col] for p in df["pipeline"]]
            if "repeat" not in df.columns:
                df["repeat"] = 0
            frames.append(df[METRICS_TSV_COLUMNS])
            continue
        for i, col in enumerate(LABEL_COLUMNS):
            df.insert(i, col, labels[col])
        if kind == "summary":
            info = {p: pipeline_labels(pipelines, p) for p in pd.unique(df["pipeline"])}
            pos = df.columns.get_loc("pipeline") + 1
            for j, col in enumerate(PIPELINE_COLUMNS):
                df.insert(pos + j, col, [info[p][col] for p in df["pipeline"]])
        frames.append(df)
    if not frames:
        columns = {"scores": METRICS_TSV_COLUMNS, "summary": SUMMARY_TSV_COLUMNS, "paired": PAIRED_TSV_COLUMNS,
                   "unseen": UNSEEN_TSV_COLUMNS}[kind]
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)
