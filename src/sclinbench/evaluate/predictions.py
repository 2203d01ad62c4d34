"""The rows an evaluation writes: a fitted model's labels and class scores for test cells, one
frame per pipeline x fold x repeat, and the assembled prediction table (:data:`PREDICTION_COLUMNS`
plus one ``s:<label>`` column per class).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.clustered import LeidenLogisticRegression
from sclinbench.evaluate.models import CentroidClassifier, ShuffledLabels
from sclinbench.workflow.contracts import PREDICTION_COLUMNS, SCORE_PREFIX, UNASSIGNED


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


def predict_cells(model, Z) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predicted labels, confidence score and class-score matrix; NaN scores -> unassigned."""
    scores, classes = class_scores(model, Z)
    inner = inner_model(model)
    # their predict is the argmax of these scores: not computed twice
    if isinstance(inner, (CentroidClassifier, LeidenLogisticRegression)):
        y_pred = np.asarray(inner.classes_[np.argmax(scores, axis=1)]).astype(object).astype(str)
    else:
        y_pred = np.asarray(model.predict(Z)).astype(object).astype(str)
    bad = ~np.isfinite(scores).all(axis=1)
    y_pred[bad] = UNASSIGNED
    conf = np.where(bad, np.nan, np.nanmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1))
    return y_pred, conf, scores, classes


def inner_model(model):
    """The fitted classifier itself (inside a shuffled-label control)."""
    return model.estimator_ if isinstance(model, ShuffledLabels) else model


def fallback_cells(model, Z) -> np.ndarray:
    """True for the test cells ``Z`` a fitted model scored with its fallback model (a
    ``leiden_logreg`` cell whose cluster has no model); all False for every other model."""
    inner = inner_model(model)
    if isinstance(inner, LeidenLogisticRegression):
        return inner.fallback_mask(Z)
    return np.zeros(Z.shape[0], dtype=bool)


def cell_positions(obs_names: pd.Index, ids: np.ndarray, dataset: str) -> np.ndarray:
    """Positions of the split table's cells ``ids`` among the dataset's cells; a one-line error
    when the split table names a cell the dataset lacks."""
    idx = obs_names.get_indexer(ids)
    if (idx < 0).any():
        missing = ids[idx < 0][0]
        raise SclinbenchError(
            f"cell '{missing}' of the split table is not in dataset '{dataset}' ({int((idx < 0).sum())} "
            f"missing): the split file is stale; delete results/splits/dataset~{dataset} and re-run"
        )
    return idx


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


def assemble(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One prediction table: :data:`PREDICTION_COLUMNS`, then the class-score columns sorted."""
    out = pd.concat(frames, ignore_index=True)
    score_cols = sorted(c for c in out.columns if c.startswith(SCORE_PREFIX))
    return out[PREDICTION_COLUMNS + score_cols]
