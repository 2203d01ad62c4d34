"""Integer-count checks: refuse normalized or log-transformed matrices, undo ``log1p`` normalization.

- :func:`check_integer_counts` — refuses normalized or log-transformed matrices.
- :func:`recover_counts_from_lognorm` — undoes ``log1p(counts / total * scale)`` exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError

log = logging.getLogger(__name__)

_CHUNK = 10_000_000  # values checked at a time (bounds temporary memory)


def _stored_values(X) -> np.ndarray:
    """The explicitly stored values of a sparse or dense matrix (a view where possible)."""
    if sp.issparse(X):
        return X.data
    return np.asarray(X).reshape(-1)


def check_integer_counts(X, where: str) -> None:
    """Refuse anything but non-negative integer counts.

    Parameters
    ----------
    X
        Sparse or dense cells x genes matrix.
    where
        Names the file and matrix in the error, e.g. ``"data/x.h5ad (raw.X)"``.

    Raises
    ------
    SclinbenchError
        When a value is negative, not finite or not an integer (normalized or log data).
    """
    values = _stored_values(X)
    if np.issubdtype(values.dtype, np.integer):
        if values.size and values.min() < 0:
            raise SclinbenchError(
                f"{where} holds negative values, so it is not raw counts; point `counts:` in the "
                f"registry entry at the raw counts (e.g. raw.X or layers/counts)."
            )
        return
    if not np.issubdtype(values.dtype, np.floating):
        raise SclinbenchError(f"{where} has non-numeric dtype {values.dtype}; expected raw counts.")
    for start in range(0, values.size, _CHUNK):
        block = values[start:start + _CHUNK]
        if not np.all(np.isfinite(block)):
            raise SclinbenchError(
                f"{where} holds NaN or infinite values, so it is not raw counts; point `counts:` "
                f"in the registry entry at the raw counts (e.g. raw.X or layers/counts)."
            )
        if block.size and block.min() < 0:
            raise SclinbenchError(
                f"{where} holds negative values (e.g. {block.min():.3g}): it looks scaled or "
                f"centred, not raw counts; point `counts:` in the registry entry at the raw "
                f"counts (e.g. raw.X or layers/counts)."
            )
        fractional = block != np.round(block)
        if fractional.any():
            example = float(block[np.argmax(fractional)])
            raise SclinbenchError(
                f"{where} holds non-integer values (e.g. {example:.4g}): it looks normalized or "
                f"log-transformed; point `counts:` in the registry entry at the raw counts "
                f"(e.g. raw.X or layers/counts)."
            )


def recover_counts_from_lognorm(
    X,
    total_counts: Sequence[float] | np.ndarray,
    scale: float = 1e4,
    tol: float = 0.1,
    where: str = "matrix",
) -> sp.csr_matrix:
    """Undo ``log1p(counts / total_counts * scale)`` and return integer counts.

    Parameters
    ----------
    X
        Log-normalized cells x genes matrix (sparse stays sparse: ``expm1(0) = 0``).
    total_counts
        Per-cell library sizes used by the normalization (e.g. ``obs["n_counts"]``).
    scale
        The normalization's target sum.
    tol
        Largest accepted distance of a recovered value from the nearest integer.
    where
        Names the matrix in the error.

    Returns
    -------
    CSR matrix of dtype int32.

    Raises
    ------
    SclinbenchError
        When a recovered value is farther than ``tol`` from an integer (wrong totals or scale).
    """
    totals = np.asarray(total_counts, dtype=np.float64).reshape(-1)
    X = sp.csr_matrix(X, dtype=np.float64, copy=True)
    if totals.shape[0] != X.shape[0]:
        raise SclinbenchError(f"{where}: {totals.shape[0]} library sizes for {X.shape[0]} cells.")
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    values = np.expm1(X.data) * totals[rows] / scale
    rounded = np.round(values)
    deviation = float(np.abs(values - rounded).max()) if values.size else 0.0
    if deviation > tol:
        raise SclinbenchError(
            f"{where}: undoing log1p(x / total * {scale:g}) leaves values {deviation:.3f} away from "
            f"an integer (tolerance {tol}); the library sizes or scale do not match, so integer "
            f"counts cannot be recovered; use a file with the raw counts."
        )
    out = sp.csr_matrix((rounded.astype(np.int32), X.indices, X.indptr), shape=X.shape)
    out.eliminate_zeros()
    log.info("%s: recovered integer counts (largest distance to an integer %.3f)", where, deviation)
    return out
