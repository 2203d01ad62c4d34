"""A calibrated probability for every pipeline: temperature scaling on held-out reference cells.

The class scores of the pipelines mean different things (probabilities for logistic regression
and LDA, least-squares coefficients for the centroid model, decision values for SVM and ridge).
:func:`fit_temperature` turns them into one kind of number: class probabilities
``softmax(logits / T)`` with ``logits`` the class scores (log-probabilities for the probabilistic
models) and one temperature ``T > 0`` chosen to minimize the negative log-likelihood of the true
labels of reference cells **held out from the fit that scored them** (the stratified
``calibration_fraction`` of :meth:`sclinbench.tool.annotate.Annotator.fit`). One parameter keeps
the fit stable on a few hundred cells and never changes the predicted label (the argmax).

:func:`calibration_quality` says how well that works without scoring the calibration on the cells
it was fitted on: the held-out cells are split in two halves, a temperature is fitted on each half
and applied to the other (cross-fitting), and the expected calibration error (ECE, 10 equal-width
bins of the top probability), the mean top probability and the accuracy are reported.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

from sclinbench.tool import CONFIDENCE_THRESHOLD

_N_BINS = 10


def logits(scores: np.ndarray, kind: str) -> np.ndarray:
    """Class scores as logits: log-probabilities for ``kind="proba"``, the scores themselves otherwise."""
    S = np.asarray(scores, dtype=np.float64)
    return np.log(np.clip(S, 1e-12, 1.0)) if kind == "proba" else S


def _nll(log_t: float, L: np.ndarray, y: np.ndarray) -> float:
    Z = L / np.exp(log_t)
    return float(np.mean(special.logsumexp(Z, axis=1) - Z[np.arange(y.size), y]))


def fit_temperature(L: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimizing the mean negative log-likelihood of labels ``y`` (class positions).

    Searched over ``log T`` within 10^-3 .. 10^3 times the typical spread of the logits (the median
    over cells of the standard deviation across classes), so the search is scale-free.
    """
    L = np.asarray(L, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    spread = float(np.median(np.std(L, axis=1))) if L.size else 1.0
    spread = spread if np.isfinite(spread) and spread > 0 else 1.0
    lo, hi = np.log(spread) - np.log(1e3), np.log(spread) + np.log(1e3)
    res = optimize.minimize_scalar(_nll, bounds=(lo, hi), args=(L, y), method="bounded",
                                   options={"xatol": 1e-6})
    return float(np.exp(res.x))


def probabilities(L: np.ndarray, temperature: float) -> np.ndarray:
    """n_cells x n_classes calibrated probabilities ``softmax(L / T)``."""
    return special.softmax(np.asarray(L, dtype=np.float64) / float(temperature), axis=1)


def expected_calibration_error(top: np.ndarray, correct: np.ndarray, n_bins: int = _N_BINS) -> float:
    """Cell-weighted mean |accuracy - mean top probability| over equal-width probability bins."""
    top = np.asarray(top, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    bins = np.minimum((top * n_bins).astype(int), n_bins - 1)
    err = 0.0
    for b in np.unique(bins):
        sel = bins == b
        err += sel.sum() * abs(correct[sel].mean() - top[sel].mean())
    return float(err / max(top.size, 1))


def calibration_quality(L: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """Cross-fitted quality of the temperature scaling on the held-out cells (see the module docstring)."""
    L = np.asarray(L, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n = y.size
    out = {"n_cells": int(n), "method": "temperature scaling, cross-fitted on 2 halves of the held-out cells"}
    if n < 4:
        return {**out, "ece": float("nan"), "mean_probability": float("nan"), "accuracy": float("nan")}
    half = np.zeros(n, dtype=bool)
    half[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    top = np.empty(n)
    for fit_on in (half, ~half):
        P = probabilities(L[~fit_on], fit_temperature(L[fit_on], y[fit_on]))
        top[~fit_on] = P.max(axis=1)
    correct = np.argmax(L, axis=1) == y
    return {**out, "ece": expected_calibration_error(top, correct), "mean_probability": float(top.mean()),
            "accuracy": float(correct.mean())}


def low_confidence(confidence: np.ndarray, threshold: float = CONFIDENCE_THRESHOLD) -> dict:
    """How many cells (with a prediction) have a calibrated probability below ``threshold``."""
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.isfinite(c)
    below = int((c[ok] < threshold).sum())
    return {"threshold": float(threshold), "n_cells": int(ok.sum()), "n_below": below,
            "fraction_below": float(below / ok.sum()) if ok.any() else float("nan")}
