"""Small seeded count matrices shared by the unit tests."""

import numpy as np
import scipy.sparse as sp


def nb_counts(n_cells=150, n_genes=50, n_types=3, seed=0):
    """Seeded negative-binomial counts with cell types; genes 4t..4t+3 mark type t."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_types, n_cells)
    mean = np.tile(rng.gamma(0.6, 1.0, n_genes) * 0.5, (n_cells, 1))
    for t in range(n_types):
        mean[np.ix_(y == t, np.arange(4 * t, 4 * t + 4))] += 4.0
    size = rng.uniform(0.5, 2.0, n_cells)[:, None]
    counts = rng.negative_binomial(5, 5 / (5 + mean * size))
    return sp.csr_matrix(counts.astype(np.float32)), np.array([f"t{t}" for t in range(n_types)])[y]
