"""The synthetic atlas: determinism, schema, and that its known truth is really in the counts."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sclinbench.data.gene_space import map_to_reference
from sclinbench.data.synthetic import ORTHOLOG_COLUMNS, make_atlas, write_atlas
from sclinbench.errors import SclinbenchError

SMALL = dict(n_genes=400, cells_per_species=300, n_cell_types=4, n_disease_genes=10)


@pytest.fixture(scope="module")
def atlas():
    return make_atlas(seed=0)


def _lognorm(X) -> np.ndarray:
    """log1p of counts per 10k, dense (test matrices are small)."""
    X = sp.csr_matrix(X, dtype=float)
    lib = np.asarray(X.sum(axis=1)).ravel()
    X = sp.diags(1e4 / lib) @ X
    return np.log1p(X.toarray())


def _type_means(L, labels, types):
    return np.vstack([L[labels == t].mean(axis=0) for t in types])


def test_same_seed_same_atlas_other_seed_differs():
    a1, o1 = make_atlas(seed=3, **SMALL)
    a2, o2 = make_atlas(seed=3, **SMALL)
    a3, _ = make_atlas(seed=4, **SMALL)
    pd.testing.assert_frame_equal(o1, o2)
    for name in a1:
        assert (a1[name].X != a2[name].X).nnz == 0
        pd.testing.assert_frame_equal(a1[name].obs, a2[name].obs)
        pd.testing.assert_frame_equal(a1[name].var, a2[name].var)
    assert (a1["alpha"].X != a3["alpha"].X).nnz > 0
    assert not a1["alpha"].obs["cell_type"].equals(a3["alpha"].obs["cell_type"])


def test_gene_programs_do_not_depend_on_cell_numbers():
    a1, o1 = make_atlas(seed=3, **SMALL)
    a2, o2 = make_atlas(seed=3, **{**SMALL, "cells_per_species": 400})
    pd.testing.assert_frame_equal(o1, o2)
    assert a1["beta"].uns["synthetic_truth"]["disease_genes"] == a2["beta"].uns["synthetic_truth"]["disease_genes"]
    assert a2["beta"].n_obs == 400


def test_schema(atlas):
    adatas, orthologs = atlas
    assert list(adatas) == ["alpha", "beta", "gamma"]
    all_cells, all_donors = [], []
    for name, a in adatas.items():
        assert isinstance(a.X, sp.csr_matrix) and a.X.dtype == np.int32
        assert a.X.min() >= 0
        assert list(a.obs.columns[:4]) == ["cell_type", "donor_id", "condition", "organism"]
        assert set(a.obs["organism"]) == {name}
        assert set(a.obs["condition"]) == {"healthy", "disease"}
        assert (a.var.index == a.var["gene_id"]).all()
        assert a.var.index.str.startswith(f"{name.upper()}_G").all()
        assert a.var.index.is_unique and a.var["gene_symbol"].is_unique
        assert a.obs_names.is_unique
        all_cells += list(a.obs_names)
        all_donors += list(a.obs["donor_id"].cat.categories)
        sparsity = 1 - a.X.nnz / np.prod(a.shape)
        assert 0.7 < sparsity < 0.95
    assert len(set(all_cells)) == len(all_cells)
    assert len(set(all_donors)) == len(all_donors) == 12
    assert list(orthologs.columns[:5]) == ORTHOLOG_COLUMNS


def test_counts_of_types_and_donors(atlas):
    adatas, _ = atlas
    shared = {f"type_{i:02d}" for i in range(1, 9)}
    for _name, a in adatas.items():
        assert a.n_obs == 1500
        counts = a.obs["cell_type"].value_counts()
        assert shared <= set(counts.index)
        assert counts[list(shared)].min() >= 40
        assert counts.max() > 3 * counts[list(shared)].min()  # unequal proportions
        donors = a.obs.groupby("donor_id", observed=True)["condition"].agg(lambda s: set(s))
        assert len(donors) == 4 and all(len(c) == 1 for c in donors)  # one condition per donor
        assert sorted(c.pop() for c in donors) == ["disease", "disease", "healthy", "healthy"]
        assert set(a.uns["synthetic_truth"]["disease_donors"]) == set(
            a.obs.loc[a.obs["condition"] == "disease", "donor_id"]
        )


def test_species_only_type_in_exactly_one_non_reference_species(atlas):
    adatas, _ = atlas
    truth = adatas["alpha"].uns["synthetic_truth"]
    extra, holder = truth["species_only_cell_type"], truth["species_only_in"]
    assert extra == "type_09" and holder == "beta"
    having = [name for name, a in adatas.items() if extra in set(a.obs["cell_type"])]
    assert having == ["beta"]
    assert (adatas["beta"].obs["cell_type"] == extra).sum() == 75  # 5% of 1500


def test_species_only_type_can_be_moved():
    adatas, _ = make_atlas(seed=3, species_only_in="gamma", **SMALL)
    extra = adatas["alpha"].uns["synthetic_truth"]["species_only_cell_type"]
    assert [n for n, a in adatas.items() if extra in set(a.obs["cell_type"])] == ["gamma"]


def test_orthology_table_matches_truth(atlas):
    adatas, orthologs = atlas
    frac_one2one = (orthologs["homology_type"] == "ortholog_one2one").mean()
    assert 0.8 < frac_one2one < 0.9
    ref = adatas["alpha"]
    for name in ("beta", "gamma"):
        a = adatas[name]
        t = orthologs[orthologs["other_species"] == name]
        assert t["other_gene"].isin(a.var_names).all() and t["reference_gene"].isin(ref.var_names).all()
        per_ref = t.groupby("reference_gene")["homology_type"].agg(["size", "first"])
        assert (per_ref.loc[per_ref["first"] == "ortholog_one2many", "size"] >= 2).all()
        assert (per_ref.loc[per_ref["first"] == "ortholog_one2one", "size"] == 1).all()
        # species-specific genes on both sides
        assert (~ref.var_names.isin(t["reference_gene"])).sum() == 100
        assert (~a.var_names.isin(t["other_gene"])).sum() == 100
        # the var truth columns agree with the table
        truth = a.var.loc[t["other_gene"], "reference_gene"].to_numpy()
        assert (truth == t["reference_gene"].to_numpy()).all()


def test_one2many_copies_split_the_ortholog_expression(atlas):
    adatas, orthologs = atlas
    alpha_mean = pd.Series(np.asarray(adatas["alpha"].X.mean(axis=0)).ravel(), index=adatas["alpha"].var_names)
    beta = adatas["beta"]
    beta_mean = pd.Series(np.asarray(beta.X.mean(axis=0)).ravel(), index=beta.var_names)
    t = orthologs[orthologs["other_species"] == "beta"]
    t = t.assign(mean=beta_mean[t["other_gene"]].to_numpy())
    one = t[t["homology_type"] == "ortholog_one2one"]
    many = t[t["homology_type"] == "ortholog_one2many"].groupby("reference_gene")["mean"].agg(["sum", "max"])
    ok = lambda s: s[(s > 0) & (alpha_mean[s.index] > 0.5)]  # noqa: E731
    ratio_one = np.log(ok(one.set_index("reference_gene")["mean"]) / alpha_mean).dropna()
    ratio_sum = np.log(ok(many["sum"]) / alpha_mean).dropna()
    ratio_max = np.log(ok(many["max"]) / alpha_mean).dropna()
    # summed copies look like a one-to-one ortholog; the largest single copy is clearly lower
    assert len(ratio_sum) >= 15
    assert abs(ratio_sum.median() - ratio_one.median()) < 0.3
    assert ratio_sum.median() - ratio_max.median() > 0.3


def test_divergence_is_monotone_after_mapping(atlas):
    adatas, orthologs = atlas
    m = map_to_reference(adatas, orthologs, "alpha", mode="one2one")
    L = _lognorm(m.X)
    org, ct, donor = (m.obs[c].astype(str).to_numpy() for c in ("organism", "cell_type", "donor_id"))
    types = [f"type_{i:02d}" for i in range(1, 9)]
    ref = _type_means(L[org == "alpha"], ct[org == "alpha"], types)

    def corr(A, B):
        return np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(A, B)])

    first = (org == "alpha") & np.isin(donor, ["alpha_d1", "alpha_d2"])
    second = (org == "alpha") & np.isin(donor, ["alpha_d3", "alpha_d4"])
    within = corr(_type_means(L[first], ct[first], types), _type_means(L[second], ct[second], types))
    beta = corr(ref, _type_means(L[org == "beta"], ct[org == "beta"], types))
    gamma = corr(ref, _type_means(L[org == "gamma"], ct[org == "gamma"], types))
    assert within > beta > gamma + 0.03

    # nearest reference centroid (correlation): harder for gamma, far above chance (1/8)
    def accuracy(species):
        mask = (org == species) & np.isin(ct, types)
        Z = L[mask] - L[mask].mean(axis=1, keepdims=True)
        C = ref - ref.mean(axis=1, keepdims=True)
        scores = (Z / np.linalg.norm(Z, axis=1, keepdims=True)) @ (C / np.linalg.norm(C, axis=1, keepdims=True)).T
        return (np.asarray(types)[scores.argmax(axis=1)] == ct[mask]).mean()

    acc_beta, acc_gamma = accuracy("beta"), accuracy("gamma")
    assert acc_beta > acc_gamma > 0.5


def test_disease_program_only_in_affected_types(atlas):
    adatas, _ = atlas
    ref_truth = adatas["alpha"].uns["synthetic_truth"]
    for _name, a in adatas.items():
        truth = a.uns["synthetic_truth"]
        assert truth["affected_cell_types"] == ref_truth["affected_cell_types"]
        genes = list(truth["disease_genes"])
        assert len(genes) >= 30
        assert set(a.var.loc[genes, "reference_gene"]) == set(ref_truth["disease_reference_genes"])
        score = _lognorm(a.X)[:, a.var_names.get_indexer(genes)].mean(axis=1)
        means = a.obs.assign(score=score).groupby(["cell_type", "condition"], observed=True)["score"].mean().unstack()
        diff = means["disease"] - means["healthy"]
        affected = diff[truth["affected_cell_types"]]
        others = diff.drop(truth["affected_cell_types"])
        assert affected.min() > 0.25
        assert affected.min() > others.max() + 0.15


def test_bad_parameters_raise():
    with pytest.raises(SclinbenchError, match="divergence"):
        make_atlas(divergence=(0.0, 0.3))
    with pytest.raises(SclinbenchError, match="species_only_in"):
        make_atlas(species_only_in="delta")
    with pytest.raises(SclinbenchError, match="n_donors"):
        make_atlas(n_donors=1)


def test_write_atlas_round_trip(tmp_path):
    paths = write_atlas(tmp_path / "atlas", seed=1, **SMALL)
    assert set(paths) == {"alpha", "beta", "gamma", "orthologs"}
    beta = ad.read_h5ad(paths["beta"])
    assert sp.issparse(beta.X) and np.issubdtype(beta.X.dtype, np.integer)
    assert beta.uns["synthetic_truth"]["species_only_in"] == "beta"
    table = pd.read_csv(paths["orthologs"], sep="\t")
    assert list(table.columns[:5]) == ORTHOLOG_COLUMNS
    fresh, _ = make_atlas(seed=1, **SMALL)
    assert (fresh["beta"].X != beta.X).nnz == 0
