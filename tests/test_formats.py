"""Formats sniffed from content: a file read with the wrong format: says what it is and what to set."""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from sclinbench import data
from sclinbench.errors import SclinbenchError

ROOT = Path(__file__).resolve().parents[1]
TENX = ROOT / "tests" / "data" / "liao2020" / "C146_subset_filtered_feature_bc_matrix.h5"


def _h5ad(path: Path, n_cells=4, var_index=None, **var_columns) -> Path:
    genes = var_index or [f"G{j}" for j in range(3)]
    X = sp.csr_matrix(np.arange(n_cells * len(genes), dtype=np.float32).reshape(n_cells, len(genes)))
    var = pd.DataFrame(var_columns, index=genes)
    ad.AnnData(X=X, obs=pd.DataFrame({"ct": ["a", "b"] * (n_cells // 2)}, index=[f"c{i}" for i in range(n_cells)]),
               var=var).write_h5ad(path)
    return path


def _mtx_dir(path: Path) -> Path:
    path.mkdir()
    with gzip.open(path / "matrix.mtx.gz", "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(np.array([[1, 0], [0, 2], [3, 0]], dtype=np.int64)))
    with gzip.open(path / "features.tsv.gz", "wt") as fh:
        fh.write("ENSG1\tA\tGene Expression\nENSG2\tB\tGene Expression\nENSG3\tC\tGene Expression\n")
    with gzip.open(path / "barcodes.tsv.gz", "wt") as fh:
        fh.write("AAA-1\nCCC-1\n")
    return path


def test_sniff_knows_the_formats(tmp_path):
    from sclinbench.data.formats import sniff

    assert sniff(TENX).kind == "10x_h5"
    assert sniff(_h5ad(tmp_path / "a.h5ad")).kind == "h5ad"
    assert sniff(_mtx_dir(tmp_path / "mtx")).kind == "mtx"
    assert sniff(tmp_path / "mtx" / "matrix.mtx.gz").kind == "mtx_file"
    (tmp_path / "page").write_text("\n  <!DOCTYPE html><html><title>404 Not Found</title></html>")
    page = sniff(tmp_path / "page")
    assert page.kind == "html" and "404 Not Found" in page.detail
    (tmp_path / "err.xml").write_text("<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>")
    assert sniff(tmp_path / "err.xml").kind == "xml"
    (tmp_path / "empty").write_bytes(b"")
    assert sniff(tmp_path / "empty").kind == "empty"
    (tmp_path / "cut.h5").write_bytes(TENX.read_bytes()[:4000])
    assert sniff(tmp_path / "cut.h5").kind == "hdf5_unreadable"


def test_check_download_refuses_error_bodies_and_the_wrong_family(tmp_path):
    from sclinbench.data.formats import check_download

    (tmp_path / "page").write_text("<html><body>Access denied</body></html>")
    with pytest.raises(SclinbenchError, match="web page"):
        check_download(tmp_path / "page", None)
    (tmp_path / "t.txt").write_text("gene\tvalue\n")
    with pytest.raises(SclinbenchError, match="not HDF5"):
        check_download(tmp_path / "t.txt", "h5ad")
    with pytest.raises(SclinbenchError, match="not gzip"):
        check_download(tmp_path / "t.txt", "mtx", name="features.tsv.gz")
    assert check_download(TENX, "h5ad").kind == "10x_h5"  # the right family: the format is for standardize
    assert check_download(tmp_path / "t.txt", "text").kind == "text"


def test_10x_file_read_as_h5ad_says_set_format_10x_h5():
    """Issue 12: a 40-line anndata traceback (TypeError ... 'matrix')."""
    with pytest.raises(SclinbenchError) as err:
        data.read_raw(TENX, "h5ad", entry_name="mine")
    message = str(err.value)
    assert "Cell Ranger HDF5" in message and "set format: 10x_h5 in registry entry 'mine'" in message


def test_h5ad_read_as_10x_and_mtx_read_as_h5ad(tmp_path):
    with pytest.raises(SclinbenchError, match="is an AnnData h5ad file, not 10x_h5: set format: h5ad"):
        data.read_raw(_h5ad(tmp_path / "a.h5ad"), "10x_h5")
    with pytest.raises(SclinbenchError, match="Matrix Market directory.*set format: mtx"):
        data.read_raw(_mtx_dir(tmp_path / "mtx"), "h5ad")
    with pytest.raises(SclinbenchError, match="single Matrix Market file.*one folder.*format: mtx"):
        data.read_raw(tmp_path / "mtx" / "matrix.mtx.gz", "h5ad")
    assert data.read_raw(tmp_path / "mtx", "mtx").shape == (2, 3)


def test_corrupt_local_file_is_never_to_be_deleted(tmp_path):
    path = _h5ad(tmp_path / "mine.h5ad")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SclinbenchError) as err:
        data.read_raw(path, "h5ad", local=True, entry_name="mine")
    message = str(err.value)
    assert str(path) in message and "your own file" in message and "delete it" not in message
    assert path.exists()
    page = tmp_path / "page.h5ad"
    page.write_text("<html><title>Login</title></html>")
    with pytest.raises(SclinbenchError) as err:
        data.read_raw(page, "h5ad", local=True)
    assert "web page" in str(err.value) and "delete it" not in str(err.value)
    with pytest.raises(SclinbenchError, match="delete it and re-run to download"):
        data.read_raw(page, "h5ad")  # a download may be deleted and fetched again


def test_zero_cell_file_says_so(tmp_path):
    """Issue 12: a 0-cell file got 'lower these thresholds'."""
    path = _h5ad(tmp_path / "empty.h5ad", n_cells=0)
    with pytest.raises(SclinbenchError) as err:
        data.read_raw(path, "h5ad", entry_name="mine")
    message = str(err.value)
    assert "holds 0 cells" in message and "threshold" in message and "lower" not in message
    with pytest.raises(SclinbenchError, match="0 cells x 3 genes") as err:
        data.standardize(ad.read_h5ad(path), {"gene_id": "symbol"}, {"min_genes": 5}, name="mine")
    assert "lower" not in str(err.value)


def test_symbol_indexed_file_says_set_gene_id_symbol(tmp_path, caplog):
    """Issue 12: 'gene_id: ensembl but only 0% ... look like Ensembl ids' gave no fix."""
    adata = ad.read_h5ad(_h5ad(tmp_path / "s.h5ad", var_index=["CD3E", "MS4A1", "LYZ"]))
    with caplog.at_level("WARNING"):
        data.standardize(adata, {"organism": "Homo sapiens", "gene_id": "ensembl"}, {}, name="mine")
    assert "set gene_id: symbol" in caplog.text
    caplog.clear()
    adata = ad.read_h5ad(_h5ad(tmp_path / "e.h5ad", var_index=["CD3E", "MS4A1", "LYZ"],
                               ensembl=["ENSG00000198851", "ENSG00000156738", "ENSG00000090382"]))
    with caplog.at_level("WARNING"):
        data.standardize(adata, {"organism": "Homo sapiens", "gene_id": "ensembl"}, {}, name="mine")
    assert "set var_columns.gene_id: ensembl" in caplog.text


def test_gene_id_kind_is_read_from_the_ids_when_not_given(tmp_path, caplog):
    """Issue 24: the own-data example warned for every user (gene_id defaulted to ensembl while most
    files carry symbols); now the kind is read from the ids, and each wrong declaration is flagged."""
    symbols = ["CD3E", "MS4A1", "LYZ"]
    ensembl = ["ENSG00000198851", "ENSG00000156738", "ENSG00000090382"]
    with caplog.at_level("INFO"):
        out = data.standardize(ad.read_h5ad(_h5ad(tmp_path / "s.h5ad", var_index=symbols)),
                               {"organism": "Homo sapiens"}, {}, name="mine")
    assert list(out.var_names) == symbols
    assert "indexed by symbol" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "gene" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("INFO"):
        out = data.standardize(ad.read_h5ad(_h5ad(tmp_path / "e.h5ad", var_index=ensembl)),
                               {"organism": "Homo sapiens"}, {}, name="mine")
    assert list(out.var_names) == ensembl and "indexed by ensembl" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "gene" in r.getMessage()]
    caplog.clear()
    with caplog.at_level("WARNING"):  # the reverse case: Ensembl ids declared as symbols
        data.standardize(ad.read_h5ad(_h5ad(tmp_path / "r.h5ad", var_index=ensembl)),
                         {"organism": "Homo sapiens", "gene_id": "symbol"}, {}, name="mine")
    assert "gene_id: symbol, but 100% of the 3 gene symbols look like Ensembl ids" in caplog.text
