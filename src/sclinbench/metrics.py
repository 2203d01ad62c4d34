"""Scores of predictions, bootstrap confidence intervals and paired comparisons.

Macro averages follow scikit-learn's default label set (the union of true and predicted labels,
as in the published evaluations); the explicit ``"unassigned"`` prediction is never a label of its
own, it only counts as an error for the cell's true class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


UNASSIGNED = "unassigned"   # the explicit prediction for a cell a model cannot score
SCORE_PREFIX = "s:"          # prefix of the per-class score columns of a predictions table
METRIC_COLUMNS = ["pipeline", "fold", "group", "metric", "value"]


def _labels(y_true: np.ndarray, y_pred: np.ndarray) -> list[str]:
    return sorted((set(y_true) | set(y_pred)) - {UNASSIGNED})


def classification_scores(y_true, y_pred) -> dict[str, float]:
    """Macro F1/precision/recall, accuracy and balanced accuracy of one set of predictions."""
    y_true, y_pred = np.asarray(y_true, dtype=str), np.asarray(y_pred, dtype=str)
    labels = _labels(y_true, y_pred)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro",
                                                 zero_division=0)
    true_labels = sorted(set(y_true))
    recalls = [np.mean(y_pred[y_true == c] == c) for c in true_labels]
    return {
        "macro_f1": float(f), "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "macro_precision": float(p), "macro_recall": float(r),
    }


def auroc_ovr(y_true, scores: pd.DataFrame) -> float:
    """Macro one-vs-rest AUROC over the true classes that have a score and both outcomes."""
    y_true = np.asarray(y_true, dtype=str)
    values = []
    for column in scores.columns:
        label = column[len(SCORE_PREFIX):]
        s = scores[column].to_numpy(dtype=float)
        positive = y_true == label
        if positive.all() or not positive.any() or not np.isfinite(s).all():
            continue
        values.append(roc_auc_score(positive, s))
    return float(np.mean(values)) if values else float("nan")


def _score_group(df: pd.DataFrame, kind: str) -> dict[str, float]:
    score_cols = [c for c in df.columns if c.startswith(SCORE_PREFIX) and df[c].notna().any()]
    y_true, y_pred = df["y_true"].to_numpy(str), df["y_pred"].to_numpy(str)
    out: dict[str, float] = {"n_test_cells": float(len(df)),
                             "n_unassigned": float((y_pred == UNASSIGNED).sum())}
    if kind == "novel_type":
        novel = df["novel"].to_numpy(bool)
        known = ~novel
        out.update(classification_scores(y_true[known], y_pred[known]))
        out["known_accuracy"] = out["accuracy"]
        conf = df["score"].to_numpy(float)
        conf = np.where(np.isfinite(conf), conf, -np.inf)  # unscored cells are the most "novel"
        out["novelty_auroc"] = float(roc_auc_score(novel, -conf)) if novel.any() and known.any() else float("nan")
        out["auroc_ovr"] = auroc_ovr(y_true[known], df.loc[known, score_cols])
        return out
    out.update(classification_scores(y_true, y_pred))
    out["auroc_ovr"] = auroc_ovr(y_true, df[score_cols])
    if kind == "cross_species":
        trained = {c[len(SCORE_PREFIX):] for c in score_cols}
        shared = np.isin(y_true, list(trained))
        out["n_cells_unseen_label"] = float((~shared).sum())
        shared_scores = classification_scores(y_true[shared], y_pred[shared]) if shared.any() else {}
        out["macro_f1_shared"] = shared_scores.get("macro_f1", float("nan"))
    return out


POOLED_FOLD = -1  # fold id of scores computed over the pooled predictions of all folds


CI_SUFFIXES = ("_ci_low", "_ci_high")  # pooled scores carry their bootstrap interval as sibling rows


def score(predictions: pd.DataFrame, kind: str, pooled: bool = False, n_boot: int = 1000,
          ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Tidy scores (``pipeline, fold, group, metric, value``) per pipeline x fold x group.

    ``group`` separates the parts of a fold that must not be averaged together: each ordered
    species pair of a cross-species fold (the same-species diagonal is its own group).

    ``pooled=True`` is for leave-one-out splits (one donor per fold): a fold of one sample has no
    macro F1, so the scores are computed once over all folds' predictions (``fold = -1``) with a
    percentile-bootstrap interval over the held-out samples (rows ``<metric>_ci_low`` and
    ``<metric>_ci_high``), and per fold only ``accuracy`` (0 or 1 per donor) is kept.
    """
    if pooled:
        per_fold = score(predictions, kind)
        per_fold = per_fold[per_fold["metric"].isin(["accuracy", "n_test_cells", "n_unassigned"])]
        rng = np.random.default_rng(seed)
        rows = []
        for p, df in predictions.groupby("pipeline", sort=True):
            point = {k: v for k, v in _score_group(df, kind).items()
                     if k not in ("accuracy", "n_test_cells", "n_unassigned")}
            draws = [_score_group(df.iloc[idx], kind)
                     for idx in rng.integers(0, len(df), size=(n_boot, len(df)))]
            for metric, value in point.items():
                rows.append((p, POOLED_FOLD, "", metric, value))
                values = np.array([d.get(metric, np.nan) for d in draws], dtype=float)
                values = values[np.isfinite(values)]
                lo, hi = (np.quantile(values, [(1 - ci) / 2, 1 - (1 - ci) / 2]) if values.size
                          else (np.nan, np.nan))
                rows += [(p, POOLED_FOLD, "", metric + CI_SUFFIXES[0], float(lo)),
                         (p, POOLED_FOLD, "", metric + CI_SUFFIXES[1], float(hi))]
        return pd.concat([per_fold, pd.DataFrame(rows, columns=METRIC_COLUMNS)], ignore_index=True)
    rows = []
    by = ["pipeline", "fold", "group"] if kind == "cross_species" else ["pipeline", "fold"]
    for key, df in predictions.groupby(by, sort=True, observed=True):
        pipeline, fold = key[0], key[1]
        group = key[2] if kind == "cross_species" else str(df["group"].iloc[0]) if kind == "novel_type" else ""
        for metric, value in _score_group(df, kind).items():
            rows.append((pipeline, int(fold), group, metric, value))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def per_class(predictions: pd.DataFrame, kind: str) -> pd.DataFrame:
    """F1 and support per true label, pipeline and fold (and species pair).

    ``in_training`` says whether the fold's model was trained on the label: for cross-species folds
    it lists the target species' labels that the training species lacks (always wrong there, and
    left out of ``macro_f1_shared``); for novel-type folds it marks the held-out type.
    """
    rows = []
    by = ["pipeline", "fold", "group"] if kind == "cross_species" else ["pipeline", "fold"]
    for key, df in predictions.groupby(by, sort=True, observed=True):
        group = key[2] if kind == "cross_species" else ""
        y_true, y_pred = df["y_true"].to_numpy(str), df["y_pred"].to_numpy(str)
        trained = {c[len(SCORE_PREFIX):] for c in df.columns if c.startswith(SCORE_PREFIX) and df[c].notna().any()}
        labels = sorted(set(y_true))
        _, _, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        rows += [(key[0], int(key[1]), group, lab, float(fi), int(si), lab in trained)
                 for lab, fi, si in zip(labels, f, support)]
    return pd.DataFrame(rows, columns=["pipeline", "fold", "group", "label", "f1", "support", "in_training"])


def confusion(predictions: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Confusion counts summed over folds: ``pipeline, group, y_true, y_pred, n`` (non-zero cells)."""
    rows = []
    by = ["pipeline", "group"] if kind == "cross_species" else ["pipeline"]
    for key, df in predictions.groupby(by, sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        group = key[1] if kind == "cross_species" else ""
        labels = sorted(set(df["y_true"]) | set(df["y_pred"]))
        matrix = confusion_matrix(df["y_true"].astype(str), df["y_pred"].astype(str), labels=labels)
        for i, j in zip(*np.nonzero(matrix)):
            rows.append((key[0], group, labels[i], labels[j], int(matrix[i, j])))
    return pd.DataFrame(rows, columns=["pipeline", "group", "y_true", "y_pred", "n"])


def bootstrap_ci(values, n_boot: int = 2000, ci: float = 0.95,
                 seed: int | np.random.Generator = 0) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI of the mean of ``values`` (e.g. one score per fold).

    Non-finite values are dropped; with a single value the interval collapses to it (callers
    report n beside it), with none everything is NaN.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size == 1:
        return mean, mean, mean
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return mean, float(lo), float(hi)


def paired_comparison(metrics: pd.DataFrame, a: str, b: str, metric: str = "macro_f1",
                      n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Difference ``a - b`` on identical folds (and groups), per dataset x task.

    Returns mean difference, its bootstrap CI over the paired folds, n pairs and how often ``a``
    was better. Only pairs present for both pipelines enter.
    """
    keys = [k for k in ("dataset", "task", "fold", "group") if k in metrics.columns]
    m = metrics[metrics["metric"] == metric]
    left = m[m["pipeline"] == a].set_index(keys)["value"]
    right = m[m["pipeline"] == b].set_index(keys)["value"]
    diff = (left - right).dropna()
    rows = []
    outer = [k for k in ("dataset", "task") if k in keys]
    groups = diff.groupby(level=outer) if outer else [((), diff)]
    for key, d in groups:
        mean, lo, hi = bootstrap_ci(d.to_numpy(), n_boot=n_boot, seed=seed)
        key = key if isinstance(key, tuple) else (key,)
        rows.append(dict(zip(outer, key), a=a, b=b, metric=metric, mean_difference=mean, ci_low=lo,
                         ci_high=hi, n=int(d.size), a_better=int((d > 0).sum())))
    return pd.DataFrame(rows)


def read_predictions(paths) -> pd.DataFrame:
    """Read and concatenate prediction tables (labels and ids stay strings)."""
    frames = [pd.read_csv(p, sep="\t", dtype={"cell_id": str, "group": str, "y_true": str, "y_pred": str},
                          keep_default_na=False, na_values={"score": ["", "nan", "NaN"]}) for p in paths]
    out = pd.concat(frames, ignore_index=True)
    for column in out.columns:
        if column == "score" or column.startswith(SCORE_PREFIX):
            out[column] = pd.to_numeric(out[column], errors="coerce")
    out["novel"] = out["novel"].astype(str).str.lower().isin(["true", "1"])
    return out


METRICS_TSV_COLUMNS = ["dataset", "task", "kind", "split_kind", "group", "pipeline", "role",
                       "representation", "model", "fold", "metric", "value"]


def assemble(score_files, datasets, task_names, tasks: dict, pipelines: dict) -> pd.DataFrame:
    """The tidy ``results/metrics.tsv``: every score labelled by its dataset, task and pipeline entry."""
    frames = []
    for path, dataset, task in zip(score_files, datasets, task_names):
        df = pd.read_csv(path, sep="\t", dtype={"group": str}, keep_default_na=False,
                         na_values={"value": ["", "nan", "NaN"]})
        spec = tasks[task]
        df.insert(0, "dataset", dataset)
        df.insert(1, "task", task)
        df.insert(2, "kind", spec["kind"])
        df.insert(3, "split_kind", spec["split"])
        df["role"] = [pipelines[p].get("role", "method") for p in df["pipeline"]]
        df["representation"] = [pipelines[p]["representation"]["name"] for p in df["pipeline"]]
        df["model"] = [pipelines[p]["model"]["name"] for p in df["pipeline"]]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)[METRICS_TSV_COLUMNS]
