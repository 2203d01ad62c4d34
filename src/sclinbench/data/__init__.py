"""Read, check and standardize single-cell datasets into one AnnData contract.

The standardized AnnData (docs/DESIGN.md) has raw integer counts in ``X`` (CSR, float32),
``obs`` columns ``cell_type`` (when labelled), ``donor_id``, ``condition`` (when known) and
``organism`` next to the source's own columns, ``var`` indexed by a stable gene id with
``gene_id`` and ``gene_symbol`` columns, and provenance in ``uns["sclinbench"]``.

- :func:`load_bundled` — datasets shipped with an installed package (scanpy's pbmc68k_reduced).
- :func:`read_raw` — h5ad, Cell Ranger HDF5 or Matrix Market files; several files are
  concatenated, each with its own constant obs columns (e.g. the donor of a 10x run).
- :func:`check_integer_counts` — refuses normalized or log-transformed matrices.
- :func:`recover_counts_from_lognorm` — undoes ``log1p(counts / total * scale)`` exactly.
- :func:`standardize` — one registry entry (config/datasets.yaml) applied to an AnnData.
- :func:`standardize_h5ad` — the same for one h5ad file, streamed block by block.

One module per idea:

- :mod:`~sclinbench.data.counts`          integer-count checks, counts recovered from log1p
- :mod:`~sclinbench.data.bundled`         :func:`load_bundled`
- :mod:`~sclinbench.data.h5ad`            h5ad matrices, CSR rows read from disk,
                                          :func:`h5ad_counts_group`, :func:`h5ad_shape`
- :mod:`~sclinbench.data.reading`         :func:`read_raw` (h5ad, 10x HDF5, Matrix Market)
- :mod:`~sclinbench.data.obs`             labels and cell metadata (obs) of the contract
- :mod:`~sclinbench.data.genes`           gene ids and symbols (var) of the contract
- :mod:`~sclinbench.data.standardization` :func:`standardize` (in memory), quality control
- :mod:`~sclinbench.data.streaming`       :func:`standardize_h5ad` (block by block)

The rest of the data stage, imported by module (not re-exported):

- :mod:`~sclinbench.data.species`   species names, Ensembl prefixes
- :mod:`~sclinbench.data.registry`  parse-time checks of the dataset registry, raw file names
- :mod:`~sclinbench.data.formats`   what a downloaded file is (sniffed) and whether it is what was declared
- :mod:`~sclinbench.data.download`  fetch a file, verified against the checksum lock
- :mod:`~sclinbench.data.manifest`  the paper manifest: tasks, downloads and standardized data checked
- :mod:`~sclinbench.data.orthologs` gene orthology tables and mapping across species
- :mod:`~sclinbench.data.synthetic` the seeded multi-species synthetic atlas
- :mod:`~sclinbench.data.datasets`  the standardize step of one registry entry
"""

from sclinbench.data.bundled import BUNDLED, load_bundled
from sclinbench.data.counts import check_integer_counts, recover_counts_from_lognorm
from sclinbench.data.genes import ensembl_share
from sclinbench.data.h5ad import READ_ERRORS, h5ad_counts_group, h5ad_shape
from sclinbench.data.h5ad import _h5ad_matrices as _h5ad_matrices
from sclinbench.data.h5ad import _read_csr_rows as _read_csr_rows
from sclinbench.data.obs import (
    DEFAULT_UNLABELLED,
    LABEL_COLUMNS,
    STANDARD_OBS,
    UNKNOWN,
    unlabelled_mask,
)
from sclinbench.data.reading import FORMATS, ood_row_filter, read_raw, unreadable
from sclinbench.data.reading import _ood_mask as _ood_mask
from sclinbench.data.standardization import QC_KEYS, standardize, subsample_cells
from sclinbench.data.standardization import _json as _json
from sclinbench.data.streaming import STREAM_BLOCK, standardize_h5ad

__all__ = [
    "BUNDLED", "DEFAULT_UNLABELLED", "FORMATS", "LABEL_COLUMNS", "QC_KEYS", "READ_ERRORS", "STANDARD_OBS",
    "STREAM_BLOCK", "UNKNOWN", "check_integer_counts", "ensembl_share", "h5ad_counts_group", "h5ad_shape",
    "load_bundled", "ood_row_filter", "read_raw", "recover_counts_from_lognorm", "standardize",
    "standardize_h5ad", "subsample_cells", "unlabelled_mask", "unreadable",
]
