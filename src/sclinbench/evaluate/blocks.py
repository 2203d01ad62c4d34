"""Where the evaluation reads its cells from: consecutive blocks of cells, one pass at a time.

Two sources give the same blocks interface (``n_obs``, ``n_vars``, ``nnz``, ``obs``, ``n_blocks``,
iteration ``(start, stop, counts of cells start:stop)``, :meth:`scratch`):

- :class:`FileBlocks`: the CSR counts of a standardized h5ad read from disk in blocks of about
  ``block_values`` stored counts (datasets larger than memory);
- :class:`MemoryBlocks`: an AnnData in memory, which is ONE block of all cells. It also holds
  what only a dataset in memory has (its embeddings in ``obsm``, the representations of all
  cells computed once, ``cache``) and can release its counts once no pass reads them.

:class:`Fold` is one fold of the split table as positions of cells in the source.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.predictions import cell_positions
from sclinbench.represent.offset import row_blocks

log = logging.getLogger(__name__)

#: stored counts per block of a file (data + indices 8 B each, the block's representation 4 B: ~1.5 GiB)
BLOCK_VALUES = 1 << 27


class MemoryBlocks:
    """The counts of an AnnData in memory as one block of all cells (see the module docstring)."""

    def __init__(self, adata):
        self.adata = adata
        self.n_obs, self.n_vars = (int(v) for v in adata.shape)
        self.obs = adata.obs
        self.n_blocks = 1
        self.passes = 0
        self.cache: dict[str, object] = {}  # representation key -> the representation of all cells
        self._counts = None

    @property
    def counts(self):
        """The counts ``X`` as CSR (a dense ``X`` converted once)."""
        if self._counts is None:
            X = self.adata.X
            if X is None:
                raise AssertionError("the counts were released before a pass that reads them")
            self._counts = X if sp.issparse(X) else sp.csr_matrix(X)
        return self._counts

    @property
    def nnz(self) -> int:
        X = self.adata.X
        return 0 if X is None else int(X.nnz if sp.issparse(X) else np.count_nonzero(X))

    def release(self) -> None:
        """Drop the counts (``adata.X = None``, the caller handed the AnnData over)."""
        self.adata.X = None
        self._counts = None
        log.info("counts released: every fold starts from the representation of all cells")

    def scratch(self, keep: bool = False) -> MemoryBlocks:
        """As :meth:`FileBlocks.scratch` (nothing to reuse: the block is the counts themselves)."""
        return self

    def __iter__(self):
        self.passes += 1
        t0 = time.perf_counter()
        yield 0, self.n_obs, self.counts
        log.info("pass %d over the %d cells in memory in %.1f s", self.passes, self.n_obs, time.perf_counter() - t0)


class FileBlocks:
    """The CSR counts ``X`` of an h5ad, read in consecutive blocks of cells, one pass at a time."""

    cache = None  # nothing of a file is held across passes but what the evaluation holds itself

    def __init__(self, path, block_values: int = BLOCK_VALUES):
        from sclinbench.data.h5ad import h5ad_counts_group

        opened = h5ad_counts_group(path)
        if opened is None:
            raise SclinbenchError(f"{path}: X is not a CSR matrix of an h5ad; it cannot be read in blocks")
        self.file, self.group = opened
        self.n_obs, self.n_vars = (int(v) for v in self.group.attrs["shape"])
        self.indptr = self.group["indptr"][:].astype(np.int64)
        self.nnz = int(self.indptr[-1])
        self.ranges = list(row_blocks(self.indptr, int(block_values)))
        self.n_blocks = len(self.ranges)
        self.passes = 0
        self._scratch = None  # (keep the buffers after the pass?) for the next pass, see scratch()
        self._buffers = None
        self._obs = None

    def close(self) -> None:
        self.file.close()

    @property
    def obs(self) -> pd.DataFrame:
        if self._obs is None:
            from anndata.io import read_elem

            self._obs = read_elem(self.file["obs"])
        return self._obs

    def scratch(self, keep: bool = False) -> FileBlocks:
        """The next pass reads every block into the same two buffers (the caller keeps nothing of a
        block after the next one is read): the same values, without the first-touch page faults
        of fresh arrays (~1.3 s per GiB on this machine). ``keep``: the buffers stay for the pass
        after it, else they are freed at its end."""
        self._scratch = bool(keep)
        return self

    def _read(self, name, lo, hi, k):
        ds = self.group[name]
        if self._scratch is None:
            return ds[lo:hi]
        if self._buffers is None:
            size = max((h - low for _, _, low, h in self.ranges), default=0)
            self._buffers = [np.empty(size, dtype=self.group[n].dtype) for n in ("data", "indices")]
        out = self._buffers[k][:hi - lo]
        if hi > lo:
            ds.read_direct(out, np.s_[lo:hi])
        return out

    def __iter__(self):
        """``(start, stop, counts of cells start:stop)`` for every block; logs the pass's time."""
        self.passes += 1
        t0 = time.perf_counter()
        try:
            yield from self._pass(t0)
        finally:
            if not self._scratch:
                self._buffers = None
            self._scratch = None

    def _pass(self, t0):
        for b, (start, stop, lo, hi) in enumerate(self.ranges, start=1):
            X = sp.csr_matrix((self._read("data", lo, hi, 0), self._read("indices", lo, hi, 1),
                               self.indptr[start:stop + 1] - lo), shape=(stop - start, self.n_vars))
            yield start, stop, X
            if b % 10 == 0 or b == len(self.ranges):
                log.info("pass %d: %d/%d blocks (%d cells) in %.1f s", self.passes, b, len(self.ranges),
                         stop, time.perf_counter() - t0)


class Fold:
    """One fold of the split table, as positions of cells in the source."""

    def __init__(self, fold, groups, train_ids, test_ids, obs_names, dataset):
        self.fold, self.groups = fold, groups
        self.test_ids = test_ids
        self.itrain = cell_positions(obs_names, train_ids, dataset)
        self.itest = cell_positions(obs_names, test_ids, dataset)
        self.test_pos = np.full(len(obs_names), -1, dtype=np.int64)  # cell -> its row among the test cells
        self.test_pos[self.itest] = np.arange(self.itest.size)
        self.is_train = np.zeros(len(obs_names), dtype=bool)
        self.is_train[self.itrain] = True

    def train_rows(self, start, stop) -> np.ndarray:
        return np.flatnonzero(self.is_train[start:stop])

    def test_rows(self, start, stop) -> tuple[np.ndarray, np.ndarray]:
        """Block rows of this fold's test cells and their rows among the test cells."""
        local = np.flatnonzero(self.test_pos[start:stop] >= 0)
        return local, self.test_pos[start + local]
