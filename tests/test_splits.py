import numpy as np
import pandas as pd
import pytest

from sclinbench.errors import SclinbenchError
from sclinbench.splits import make_splits


@pytest.fixture
def obs():
    rng = np.random.default_rng(0)
    n = 600
    organism = np.repeat(["alpha", "beta", "gamma"], n // 3)
    donor = np.array([f"{o}_d{i % 4}" for o, i in zip(organism, range(n))])
    cell_type = rng.choice(["T", "B", "NK", "mono"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    condition = np.where(np.isin([d[-2:] for d in donor], ["d0", "d1"]), "disease", "healthy")
    return pd.DataFrame({"cell_type": cell_type, "donor_id": donor, "organism": organism,
                         "condition": condition}, index=[f"c{i}" for i in range(n)])


def test_stratified_kfold_each_cell_tested_once(obs):
    t = make_splits(obs, {"kind": "celltype", "split": "stratified", "n_folds": 5}, seed=1)
    test = t[t.role == "test"]
    assert test["cell_id"].value_counts().eq(1).all()
    assert set(test["cell_id"]) == set(obs.index)
    for _, rows in t.groupby("fold"):
        assert not set(rows[rows.role == "train"].cell_id) & set(rows[rows.role == "test"].cell_id)
        assert len(rows) == len(obs)
    # stratified: every fold's test set has about a fifth of each class
    shares = test.merge(obs, left_on="cell_id", right_index=True).groupby(["fold", "cell_type"]).size()
    assert shares.unstack().std().max() <= 2


def test_splits_are_deterministic(obs):
    spec = {"kind": "celltype", "split": "stratified", "n_folds": 5}
    pd.testing.assert_frame_equal(make_splits(obs, spec, seed=3), make_splits(obs, spec, seed=3))
    assert not make_splits(obs, spec, seed=3).equals(make_splits(obs, spec, seed=4))


def test_donor_split_holds_out_whole_donors(obs):
    t = make_splits(obs, {"kind": "celltype", "split": "donor", "n_folds": 4}, seed=0)
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    for _, rows in merged.groupby("fold"):
        assert not set(rows[rows.role == "train"].donor_id) & set(rows[rows.role == "test"].donor_id)


def test_donor_split_refused_without_donors(obs):
    obs = obs.assign(donor_id="unknown")
    with pytest.raises(SclinbenchError, match="donor"):
        make_splits(obs, {"kind": "celltype", "split": "donor", "n_folds": 4}, dataset="pbmc")


def test_class_smaller_than_folds_is_a_clear_error(obs):
    obs = obs.copy()
    obs.iloc[:3, 0] = "rare"
    with pytest.raises(SclinbenchError, match=r"class 'rare' of column 'cell_type' .* 3 cells, fewer than n_folds=5"):
        make_splits(obs, {"kind": "celltype", "split": "stratified", "n_folds": 5}, dataset="x")
    t = make_splits(obs, {"kind": "celltype", "split": "stratified", "n_folds": 5, "min_cells_per_class": 5})
    assert "c0" not in set(t.cell_id)


def test_missing_label_column_names_it(obs):
    with pytest.raises(SclinbenchError, match="'condition'.*columns: cell_type, donor_id, organism"):
        make_splits(obs.drop(columns="condition"), {"kind": "disease", "split": "donor", "n_folds": 2}, dataset="d")


def test_cross_species_folds(obs):
    t = make_splits(obs, {"kind": "cross_species", "split": "cross_species", "test_fraction": 0.2}, seed=0)
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    assert t["fold"].nunique() == 3
    for fold, rows in merged.groupby("fold"):
        train = rows[rows.role == "train"]
        assert train.organism.nunique() == 1
        a = train.organism.iloc[0]
        assert (train.group == f"{a}->{a}").all()
        test = rows[rows.role == "test"]
        diag = test[test.group == f"{a}->{a}"]
        assert (diag.organism == a).all() and abs(len(diag) - 40) <= 1
        assert not set(diag.cell_id) & set(train.cell_id)
        for b in ("alpha", "beta", "gamma"):
            if b != a:
                assert (test[test.group == f"{a}->{b}"].organism == b).sum() == 200


def test_novel_type_holds_out_each_label(obs):
    t = make_splits(obs, {"kind": "novel_type", "split": "novel_type"}, seed=0)
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    assert sorted(t.group.unique()) == sorted(obs.cell_type.unique())
    for held, rows in merged.groupby("group"):
        assert held not in set(rows[rows.role == "train"].cell_type)
        assert (rows[(rows.role == "test") & (rows.cell_type == held)].shape[0]
                == (obs.cell_type == held).sum())


def test_leave_one_donor_out(obs):
    t = make_splits(obs, {"kind": "disease", "split": "donor_pseudobulk"}, seed=0)
    assert t.fold.nunique() == obs.donor_id.nunique()
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    for donor, rows in merged.groupby("group"):
        assert set(rows[rows.role == "test"].donor_id) == {donor}
        assert donor not in set(rows[rows.role == "train"].donor_id)


def test_subset_restricts_cells(obs):
    t = make_splits(obs, {"kind": "celltype", "split": "stratified", "n_folds": 3,
                          "subset": {"organism": ["beta"]}})
    assert set(obs.loc[t.cell_id, "organism"]) == {"beta"}
