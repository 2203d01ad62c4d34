"""Ortholog tables (BioMart parsing, pinned query URL) and mapping species onto reference genes."""

from __future__ import annotations

import gzip
import urllib.parse
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sclinbench.data.gene_space import map_to_reference, one_to_one
from sclinbench.data.orthologs import (
    ORTHOLOG_COLUMNS,
    ensembl_biomart_query_url,
    parse_biomart_tsv,
    read_biomart,
)
from sclinbench.data.synthetic import make_atlas
from sclinbench.errors import SclinbenchError

FIXTURE = Path(__file__).parent / "data" / "orthologs" / "human_mouse_subset.tsv.gz"

# Ensembl ids from the fixture (see tests/data/orthologs/PROVENANCE.md)
CD4, CD4_M = "ENSG00000010610", "ENSMUSG00000023274"
CD59, CD59A_M, CD59B_M = "ENSG00000085063", "ENSMUSG00000032679", "ENSMUSG00000068686"
TIMM23, TIMM23B, TIMM23_M = "ENSG00000265354", "ENSG00000204152", "ENSMUSG00000013701"


def _adata(X, genes, cells, organism=None, **obs_cols):
    obs = pd.DataFrame(index=cells)
    if organism is not None:
        obs["organism"] = organism
    for key, value in obs_cols.items():
        obs[key] = value
    return ad.AnnData(X=sp.csr_matrix(np.asarray(X, dtype=np.int32)), obs=obs, var=pd.DataFrame(index=genes))


def _row(ref, other, kind, sp_ref="ref", sp_other="sp"):
    return {"reference_species": sp_ref, "reference_gene": ref, "other_species": sp_other,
            "other_gene": other, "homology_type": f"ortholog_{kind}"}


@pytest.fixture
def toy():
    """ref: R1..R5; sp: S1..S6 (S6 species-specific); sp2: T1, T2, T3, T5.

    ref->sp : R1-S1, R2-S2 one2one; R3-S3, R3-S4 one2many (R3 duplicated in sp);
              R4-S5, R5-S5 one2many (S5 orthologous to two reference genes)
    sp2->ref (stored the other way round): T1-R1, T2-R2, T3-R3, T5-R5 one2one
    """
    ref = _adata([[1, 2, 3, 4, 5], [0, 1, 0, 2, 0]], ["R1", "R2", "R3", "R4", "R5"], ["c1", "c2"], "ref")
    spx = _adata([[10, 20, 30, 40, 50, 60], [1, 0, 2, 3, 0, 7]], ["S1", "S2", "S3", "S4", "S5", "S6"],
                 ["c1", "c2"], "sp")
    sp2 = _adata([[7, 8, 9, 6]], ["T1", "T2", "T3", "T5"], ["d1"], None)
    rows = [_row("R1", "S1", "one2one"), _row("R2", "S2", "one2one"), _row("R3", "S3", "one2many"),
            _row("R3", "S4", "one2many"), _row("R4", "S5", "one2many"), _row("R5", "S5", "one2many")]
    rows += [_row(t, r, "one2one", "sp2", "ref") for t, r in [("T1", "R1"), ("T2", "R2"), ("T3", "R3"), ("T5", "R5")]]
    return {"ref": ref, "sp": spx, "sp2": sp2}, pd.DataFrame(rows)


def test_one2one_keeps_genes_one2one_in_every_species(toy):
    adatas, table = toy
    m = map_to_reference(adatas, table, "ref", mode="one2one")
    assert list(m.var_names) == ["R1", "R2"]
    assert isinstance(m.X, sp.csr_matrix) and m.X.dtype == np.int32
    expected = [[1, 2], [0, 1], [10, 20], [1, 0], [7, 8]]
    np.testing.assert_array_equal(m.X.toarray(), expected)
    assert list(m.obs["organism"]) == ["ref", "ref", "sp", "sp", "sp2"]  # filled for sp2
    # c1, c2 occur in two species -> every name gets its species suffix
    assert list(m.obs_names) == ["c1-ref", "c2-ref", "c1-sp", "c2-sp", "d1-sp2"]
    info = m.uns["orthologs"]
    assert info["mode"] == "one2one" and info["n_genes"] == 2
    assert info["species"]["sp"] == {"n_genes_input": 6, "n_genes_mapped": 2, "n_genes_used": 2}
    assert info["species"]["sp2"]["n_genes_mapped"] == 4


def test_sum_adds_one2many_copies_and_skips_ambiguous_genes(toy):
    adatas, table = toy
    m = map_to_reference(adatas, table, "ref", mode="sum")
    # R4, R5 share S5 in sp: S5 cannot be split, so neither is mapped in sp
    assert list(m.var_names) == ["R1", "R2", "R3"]
    expected = [[1, 2, 3], [0, 1, 0], [10, 20, 30 + 40], [1, 0, 2 + 3], [7, 8, 9]]
    np.testing.assert_array_equal(m.X.toarray(), expected)
    assert m.X.dtype == np.int32
    assert list(m.var["sp_genes"]) == ["S1", "S2", "S3;S4"]
    assert m.uns["orthologs"]["species"]["sp"]["n_genes_used"] == 4


def test_one_to_one_filters_rows(toy):
    _, table = toy
    dup = pd.concat([table, pd.DataFrame([_row("R9", "S1", "one2one")])], ignore_index=True)
    out = one_to_one(dup)
    assert set(out["homology_type"]) == {"ortholog_one2one"}
    # S1 now has two one2one partners -> both rows dropped; the other one2one rows stay
    assert sorted(out["reference_gene"]) == ["R2", "T1", "T2", "T3", "T5"]


def test_mapping_errors_name_the_species(toy):
    adatas, table = toy
    with pytest.raises(SclinbenchError, match="'sp2'"):
        map_to_reference(adatas, table[table["other_species"] != "ref"], "ref")
    renamed = dict(adatas)
    renamed["sp"] = adatas["sp"].copy()
    renamed["sp"].var_names = ["s1", "s2", "s3", "s4", "s5", "s6"]  # e.g. symbols instead of ids
    with pytest.raises(SclinbenchError, match="dataset 'sp'.*var_names"):
        map_to_reference(renamed, table, "ref")
    with pytest.raises(SclinbenchError, match="mode"):
        map_to_reference(adatas, table, "ref", mode="mean")
    with pytest.raises(SclinbenchError, match="reference species 'human'"):
        map_to_reference(adatas, table, "human")
    with pytest.raises(SclinbenchError, match="homology_type"):
        map_to_reference(adatas, table.drop(columns="homology_type"), "ref")


def test_mapping_with_real_ensembl_ids():
    table = read_biomart(FIXTURE, "human", "mouse")
    human = _adata([[1, 2, 3, 4]], [CD4, CD59, TIMM23, TIMM23B], ["h1"], "human")
    mouse = _adata([[5, 6, 7, 8], [0, 1, 1, 0]], [CD4_M, CD59A_M, CD59B_M, TIMM23_M], ["m1", "m2"], "mouse")
    one = map_to_reference({"human": human, "mouse": mouse}, table, "human", mode="one2one")
    assert list(one.var_names) == [CD4]
    np.testing.assert_array_equal(one.X.toarray(), [[1], [5], [0]])
    total = map_to_reference({"human": human, "mouse": mouse}, table, "human", mode="sum")
    # CD59 -> Cd59a + Cd59b; TIMM23 and TIMM23B share Timm23, so both are dropped
    assert list(total.var_names) == [CD4, CD59]
    np.testing.assert_array_equal(total.X.toarray(), [[1, 2], [5, 6 + 7], [0, 1 + 1]])


def test_read_biomart_fixture_counts():
    table = read_biomart(FIXTURE, "human", "mouse")
    assert list(table.columns[:5]) == ORTHOLOG_COLUMNS
    assert {"reference_symbol", "other_symbol", "orthology_confidence"} <= set(table.columns)
    # numbers recorded in tests/data/orthologs/PROVENANCE.md (the 401 rows without ortholog are dropped)
    counts = table["homology_type"].value_counts()
    assert counts.to_dict() == {"ortholog_one2one": 1507, "ortholog_one2many": 778, "ortholog_many2many": 615}
    assert set(table["reference_species"]) == {"human"} and set(table["other_species"]) == {"mouse"}
    o2o = one_to_one(table)
    assert len(o2o) == 1507 and o2o["reference_gene"].is_unique and o2o["other_gene"].is_unique
    cd4 = table[table["reference_gene"] == CD4].iloc[0]
    assert (cd4["other_gene"], cd4["reference_symbol"], cd4["other_symbol"]) == (CD4_M, "CD4", "Cd4")
    cd59 = table[table["reference_gene"] == CD59]
    assert sorted(cd59["other_gene"]) == sorted([CD59A_M, CD59B_M])
    assert set(cd59["homology_type"]) == {"ortholog_one2many"}


def test_read_biomart_csv_export_gives_same_table(tmp_path):
    with gzip.open(FIXTURE, "rt") as fh:
        text = fh.read()
    csv_path = tmp_path / "export.csv"
    pd.read_csv(FIXTURE, sep="\t", dtype=str).to_csv(csv_path, index=False)
    assert text.count("\t") > 0 and "\t" not in csv_path.read_text().splitlines()[0]
    pd.testing.assert_frame_equal(read_biomart(csv_path, "human", "mouse"), read_biomart(FIXTURE, "human", "mouse"))


def test_read_biomart_missing_file_or_columns(tmp_path):
    with pytest.raises(SclinbenchError, match="does not exist"):
        read_biomart(tmp_path / "nope.csv", "human", "mouse")
    bad = tmp_path / "bad.csv"
    bad.write_text("Gene stable ID,Gene name\nENSG1,A\n")
    with pytest.raises(SclinbenchError, match="gene stable ID"):
        read_biomart(bad, "human", "mouse")


def test_query_url_is_pinned_to_the_release_archive():
    url = ensembl_biomart_query_url("human", "mouse", 110)
    assert url.startswith("https://jul2023.archive.ensembl.org/biomart/martservice?query=")
    xml = urllib.parse.unquote(url.split("query=", 1)[1])
    assert '<Dataset name="hsapiens_gene_ensembl"' in xml
    for attribute in ("ensembl_gene_id", "external_gene_name", "mmusculus_homolog_ensembl_gene",
                      "mmusculus_homolog_associated_gene_name", "mmusculus_homolog_orthology_type"):
        assert f'<Attribute name="{attribute}"/>' in xml
    assert 'completionStamp="1"' in xml and 'formatter="TSV"' in xml
    assert ensembl_biomart_query_url("Homo sapiens", "mmusculus", 110) == url
    other = ensembl_biomart_query_url("mouse", "human", 999, host="https://example.org/")
    assert other.startswith("https://example.org/biomart/martservice?query=")
    assert "hsapiens_homolog_orthology_type" in urllib.parse.unquote(other)
    with pytest.raises(SclinbenchError, match="host="):
        ensembl_biomart_query_url("human", "mouse", 42)


BIOMART_ANSWER = (
    "Gene stable ID\tGene name\tMouse gene stable ID\tMouse gene name\tMouse homology type\t"
    "Mouse orthology confidence [0 low, 1 high]\n"
    f"{CD4}\tCD4\t{CD4_M}\tCd4\tortholog_one2one\t1\n"
    f"{CD59}\tCD59\t{CD59A_M}\tCd59a\tortholog_one2many\t1\n"
    f"{CD59}\tCD59\t{CD59B_M}\tCd59b\tortholog_one2many\t0\n"
    "ENSG00000210049\tMT-TF\t\t\t\t\n"
)


def test_parse_biomart_answer(tmp_path):
    path = tmp_path / "answer.tsv"
    path.write_text(BIOMART_ANSWER + "[success]\n")
    table = parse_biomart_tsv(path, "human", "mouse")
    assert list(table["other_gene"]) == [CD4_M, CD59A_M, CD59B_M]
    assert list(table["homology_type"]) == ["ortholog_one2one", "ortholog_one2many", "ortholog_one2many"]
    assert list(table["other_symbol"]) == ["Cd4", "Cd59a", "Cd59b"]
    assert list(table["orthology_confidence"]) == [1, 1, 0]


def test_parse_biomart_refuses_truncated_or_error_answers(tmp_path):
    truncated = tmp_path / "truncated.tsv"
    truncated.write_text(BIOMART_ANSWER)
    with pytest.raises(SclinbenchError, match="success"):
        parse_biomart_tsv(truncated, "human", "mouse")
    assert len(parse_biomart_tsv(truncated, "human", "mouse", require_complete=False)) == 3
    error = tmp_path / "error.tsv"
    error.write_text("Query ERROR: caught BioMart::Exception::Usage: Attribute foo NOT FOUND\n")
    with pytest.raises(SclinbenchError, match="BioMart returned an error"):
        parse_biomart_tsv(error, "human", "mouse")


def test_sum_mapping_on_synthetic_atlas_adds_the_copies():
    adatas, table = make_atlas(seed=2, n_genes=400, cells_per_species=200, n_cell_types=4, n_disease_genes=10)
    m = map_to_reference(adatas, table, "alpha", mode="sum")
    one = map_to_reference(adatas, table, "alpha", mode="one2one")
    assert set(one.var_names) < set(m.var_names)
    beta = adatas["beta"]
    t = table[(table["other_species"] == "beta") & (table["homology_type"] == "ortholog_one2many")]
    gene = next(g for g in t["reference_gene"] if g in m.var_names)
    copies = t.loc[t["reference_gene"] == gene, "other_gene"]
    expected = np.asarray(beta[:, list(copies)].X.sum(axis=1)).ravel()
    got = m[m.obs["organism"] == "beta", gene].X.toarray().ravel()
    np.testing.assert_array_equal(got, expected)
    assert m.n_obs == 600 and m.obs_names.is_unique
    assert m.uns["orthologs"]["species"]["beta"]["n_genes_used"] > m.n_vars


# ---------------------------------------------------------------------------- users' own tables (issue 12)

from sclinbench.data.orthologs import read_ortholog_table  # noqa: E402

EXPORT = Path(__file__).parent / "data" / "cross_species" / "human_mouse_biomart.csv"


def test_biomart_export_as_it_comes_csv_and_tsv(tmp_path):
    table = read_ortholog_table(EXPORT, "Homo sapiens", "Mus musculus")
    assert list(table.columns[:5]) == ORTHOLOG_COLUMNS
    assert table["homology_type"].value_counts().to_dict() == {"ortholog_one2one": 200, "ortholog_one2many": 12}
    assert set(table["other_species"]) == {"Mus musculus"}
    tsv = tmp_path / "export.tsv.gz"
    pd.read_csv(EXPORT, dtype=str).to_csv(tsv, sep="\t", index=False)
    pd.testing.assert_frame_equal(read_ortholog_table(tsv, "Homo sapiens", "Mus musculus"), table)
    with pytest.raises(SclinbenchError, match="BioMart export of Mouse homologues, but it is used for 'Danio rerio'"):
        read_ortholog_table(EXPORT, "Homo sapiens", "Danio rerio")


def test_pair_table_with_a_column_mapping(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame({"human": [CD4, CD59, CD59, "ENSG1"], "mouse": [CD4_M, CD59A_M, CD59B_M, ""],
                  "type": ["one2one", "ortholog_one2many", "ortholog_one2many", ""]}).to_csv(path, index=False)
    columns = {"reference_gene": "human", "other_gene": "mouse", "homology_type": "type"}
    table = read_ortholog_table(path, "human", "mouse", columns=columns)
    assert list(table["homology_type"]) == ["ortholog_one2one", "ortholog_one2many", "ortholog_one2many"]
    # without a homology type the pairs themselves say it
    derived = read_ortholog_table(path, "human", "mouse", columns={"reference_gene": "human", "other_gene": "mouse"})
    assert list(derived["homology_type"]) == ["ortholog_one2one", "ortholog_one2many", "ortholog_one2many"]
    with pytest.raises(SclinbenchError) as err:
        read_ortholog_table(path, "human", "mouse", columns={"reference_gene": "hs", "other_gene": "mouse"})
    assert "no column(s) reference_gene: 'hs'" in str(err.value) and "human, mouse, type" in str(err.value)


def test_wrong_table_names_missing_columns_and_accepted_forms(tmp_path):
    """Issue 12: a raw KeyError: 'reference_species' and an empty log."""
    path = tmp_path / "mine.csv"
    path.write_text("human_id,mouse_id\nENSG00000010610,ENSMUSG00000023274\n")
    with pytest.raises(SclinbenchError) as err:
        read_ortholog_table(path, "human", "mouse", where="registry entry 'mine'")
    message = str(err.value)
    assert "registry entry 'mine'" in message and "lacks column(s) reference_species, reference_gene" in message
    assert "its columns are: human_id, mouse_id" in message
    assert "BioMart export" in message and "orthologs.columns" in message


def test_collection_with_a_biomart_export_file():
    """A collection of two species with orthologs: {source: file} and a BioMart CSV (KeyError before)."""
    from sclinbench.data.datasets import standardized_dataset

    rng = np.random.default_rng(0)
    table = read_ortholog_table(EXPORT, "human", "mouse")
    o2o = table[table["homology_type"] == "ortholog_one2one"].head(30)
    human = _adata(rng.poisson(2, size=(6, 30)), list(o2o["reference_gene"]), [f"h{i}" for i in range(6)],
                   "Homo sapiens", cell_type=list("ababab"))
    mouse = _adata(rng.poisson(2, size=(4, 30)), list(o2o["other_gene"]), [f"m{i}" for i in range(4)],
                   "Mus musculus", cell_type=list("abab"))
    members = {"Homo sapiens": "h", "Mus musculus": "m"}
    entry = {"source": "collection", "members": members, "reference": "Homo sapiens",
             "orthologs": {"source": "file", "path": str(EXPORT), "mode": "one2one"}}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = [f"{tmp}/h.h5ad", f"{tmp}/m.h5ad"]
        human.write_h5ad(paths[0])
        mouse.write_h5ad(paths[1])
        out = standardized_dataset("c", entry, paths + [str(EXPORT)], {},
                                   registry={"h": {"organism": "Homo sapiens"}, "m": {"organism": "Mus musculus"}})
    assert out.shape == (10, 30) and list(out.var_names) == list(o2o["reference_gene"])
    assert out.uns["sclinbench"]["dataset"] == "c"
