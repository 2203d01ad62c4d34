import numpy as np
import pandas as pd
import pytest

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.splits import make_splits


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


def test_cross_species_transfer_folds_train_on_every_source_cell(obs):
    """Off-diagonal pairs train on all cells of the training species (nothing held back)."""
    t = make_splits(obs, {"kind": "cross_species", "split": "cross_species"}, seed=0)
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    transfer = merged[~merged.group.str.split("->").map(lambda g: g[0] == g[1])]
    assert sorted(transfer["fold"].unique()) == [0, 1, 2]
    for _fold, rows in transfer.groupby("fold"):
        train = rows[rows.role == "train"]
        assert train.organism.nunique() == 1
        a = train.organism.iloc[0]
        assert (train.group == f"{a}->*").all()
        assert set(train.cell_id) == set(obs.index[obs.organism == a])   # every source cell
        test = rows[rows.role == "test"]
        assert not (test.organism == a).any()                              # no same-species test here
        for b in ("alpha", "beta", "gamma"):
            if b != a:
                assert set(test[test.group == f"{a}->{b}"].cell_id) == set(obs.index[obs.organism == b])


def test_cross_species_diagonal_is_its_own_cross_validation(obs):
    t = make_splits(obs, {"kind": "cross_species", "split": "cross_species",
                          "diagonal": {"split": "stratified", "n_folds": 4}}, seed=0)
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    diag = merged[merged.group.str.split("->").map(lambda g: g[0] == g[1])]
    assert diag["fold"].nunique() == 3 * 4 and diag["fold"].min() == 3   # after the 3 transfer folds
    for a in ("alpha", "beta", "gamma"):
        mine = diag[diag.group == f"{a}->{a}"]
        assert (mine.organism == a).all() and mine["fold"].nunique() == 4
        test = mine[mine.role == "test"]
        assert test.cell_id.value_counts().eq(1).all()                     # each cell tested once
        assert set(test.cell_id) == set(obs.index[obs.organism == a])
        for _, rows in mine.groupby("fold"):
            assert not set(rows[rows.role == "train"].cell_id) & set(rows[rows.role == "test"].cell_id)
    by_donor = make_splits(obs, {"kind": "cross_species", "split": "cross_species",
                                 "diagonal": {"split": "donor", "n_folds": 4}}, seed=0)
    m = by_donor.merge(obs, left_on="cell_id", right_index=True)
    m = m[m.group == "beta->beta"]
    for _, rows in m.groupby("fold"):
        assert not set(rows[rows.role == "train"].donor_id) & set(rows[rows.role == "test"].donor_id)
    none = make_splits(obs, {"kind": "cross_species", "split": "cross_species", "diagonal": "none"})
    assert none["fold"].nunique() == 3 and not none.group.isin(["alpha->alpha"]).any()


def test_cross_species_options_are_checked(obs):
    with pytest.raises(SclinbenchError, match="test_fraction does not apply to cross_species"):
        make_splits(obs, {"kind": "cross_species", "split": "cross_species", "test_fraction": 0.2})
    with pytest.raises(SclinbenchError, match="diagonal.split 'loo' is unknown"):
        make_splits(obs, {"kind": "cross_species", "split": "cross_species", "diagonal": {"split": "loo"}})
    with pytest.raises(SclinbenchError, match="diagonal applies to cross_species tasks only"):
        make_splits(obs, {"kind": "celltype", "split": "stratified", "diagonal": "none"})
    small = obs.copy()
    small.loc[small.index[(small.organism == "beta").to_numpy()][:3], "cell_type"] = "rare"
    with pytest.raises(SclinbenchError, match=r"class 'rare' .* \(species 'beta', same-species diagonal\) has 3"):
        make_splits(small, {"kind": "cross_species", "split": "cross_species"})
    # min_cells_per_class works per species: 'rare' goes from beta only
    t = make_splits(small, {"kind": "cross_species", "split": "cross_species", "min_cells_per_class": 5})
    assert not set(t.cell_id) & set(small.index[small.cell_type == "rare"])
    assert len(set(t.cell_id)) == len(small) - 3


def test_novel_type_holds_out_each_label(obs):
    t = make_splits(obs, {"kind": "novel_type", "split": "novel_type"}, seed=0)
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    assert sorted(t.group.unique()) == sorted(obs.cell_type.unique())
    for held, rows in merged.groupby("group"):
        assert held not in set(rows[rows.role == "train"].cell_type)
        assert (rows[(rows.role == "test") & (rows.cell_type == held)].shape[0]
                == (obs.cell_type == held).sum())


def _majority_balanced_accuracy(table, obs, unit="donor", per_fold=False):
    """Pooled balanced accuracy of the training-majority rule (scikit-learn's most_frequent dummy,
    on one sample per donor for pseudobulk, cells otherwise), or its mean over folds."""
    from sklearn.dummy import DummyClassifier
    from sklearn.metrics import balanced_accuracy_score

    truth, pred, folds = [], [], []
    for _, rows in table.groupby("fold"):
        m = rows.merge(obs, left_on="cell_id", right_index=True)
        if unit == "donor":
            m = m.drop_duplicates(["role", "donor_id"])
        tr, te = m[m.role == "train"], m[m.role == "test"]
        model = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(tr), 1)), tr.condition)
        truth += list(te.condition)
        pred += list(model.predict(np.zeros((len(te), 1))))
        folds.append(balanced_accuracy_score(te.condition, model.predict(np.zeros((len(te), 1)))))
    return float(np.mean(folds)) if per_fold else balanced_accuracy_score(truth, pred)


def test_donor_level_labels_hold_out_one_donor_per_class(obs):
    """Leave-one-donor-out on a donor-level label makes the training majority the other class in every
    fold (majority control balanced accuracy 0.000); one donor per class per fold reads 0.5."""
    t = make_splits(obs, {"kind": "disease", "split": "donor_pseudobulk"}, seed=0)
    n_per_class = obs.drop_duplicates("donor_id").condition.value_counts()
    assert t.fold.nunique() == n_per_class.min() == 6
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    tested = []
    for group, rows in merged.groupby("group"):
        test = rows[rows.role == "test"]
        assert set(test.donor_id) == set(group.split("+"))
        assert not set(test.donor_id) & set(rows[rows.role == "train"].donor_id)
        assert test.drop_duplicates("donor_id").condition.value_counts().to_dict() == {"disease": 1, "healthy": 1}
        tested += sorted(set(test.donor_id))
    assert sorted(tested) == sorted(obs.donor_id.unique())                # every donor tested once
    assert _majority_balanced_accuracy(t, obs) == pytest.approx(0.5)
    one_at_a_time = pd.concat([  # what the split did before: each donor its own fold
        pd.DataFrame({"cell_id": obs.index, "fold": i, "role": np.where(obs.donor_id == d, "test", "train")})
        for i, d in enumerate(sorted(obs.donor_id.unique()))])
    assert _majority_balanced_accuracy(one_at_a_time, obs) == 0.0
    # cell-level donor folds of a donor-level label: every fold holds out donors of both classes
    k = make_splits(obs, {"kind": "disease", "split": "donor", "n_folds": 4}, seed=0)
    km = k[k.role == "test"].merge(obs, left_on="cell_id", right_index=True)
    assert (km.groupby("fold").condition.nunique() == 2).all() and km.cell_id.is_unique
    assert km.groupby("fold").donor_id.nunique().tolist() == [3, 3, 3, 3]
    # per fold exactly chance; pooled over cells below it (the majority follows the held-out donors'
    # sizes), which is why donor splits headline the mean over the held-out units
    assert _majority_balanced_accuracy(k, obs, unit="cell", per_fold=True) == pytest.approx(0.5)
    assert _majority_balanced_accuracy(k, obs, unit="cell") < 0.45
    assert make_splits(obs, {"kind": "disease", "split": "donor", "n_folds": 4}, seed=0).equals(k)   # seeded


def test_uneven_classes_spread_the_larger_class_and_cap_the_folds(obs, caplog):
    uneven = obs.copy()
    uneven.loc[uneven.donor_id.isin(["alpha_d2", "beta_d2"]), "condition"] = "disease"   # 8 disease, 4 healthy
    t = make_splits(uneven, {"kind": "disease", "split": "donor_pseudobulk"}, seed=1)
    test = t[t.role == "test"].merge(uneven, left_on="cell_id", right_index=True).drop_duplicates("donor_id")
    per_fold = test.groupby(["fold", "condition"]).size().unstack()
    assert len(per_fold) == 4 and (per_fold.healthy == 1).all() and (per_fold.disease == 2).all()
    with caplog.at_level("WARNING"):
        k = make_splits(uneven, {"kind": "disease", "split": "donor", "n_folds": 6}, seed=0, dataset="u")
    assert k.fold.nunique() == 4 and "class 'healthy' of 'condition' has 4 donor(s), so 4 folds" in caplog.text


def test_leave_one_donor_out(obs):
    """A label that varies within donors (cell type): still one donor per fold."""
    t = make_splits(obs, {"kind": "celltype", "split": "leave_one_donor_out"}, seed=0)
    assert t.fold.nunique() == obs.donor_id.nunique()
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    for donor, rows in merged.groupby("group"):
        assert set(rows[rows.role == "test"].donor_id) == {donor}
        assert donor not in set(rows[rows.role == "train"].donor_id)


def test_subset_restricts_cells(obs):
    t = make_splits(obs, {"kind": "celltype", "split": "stratified", "n_folds": 3,
                          "subset": {"organism": ["beta"]}})
    assert set(obs.loc[t.cell_id, "organism"]) == {"beta"}


def _one_donor_class(obs):
    obs = obs.copy()
    only = obs.index[(obs.donor_id == "alpha_d2").to_numpy()][:30]
    obs.loc[only, "cell_type"] = "pDC"
    return obs


def test_donor_split_stops_on_a_class_its_training_donors_lack(obs):
    obs = _one_donor_class(obs)
    with pytest.raises(SclinbenchError) as info:
        make_splits(obs, {"kind": "celltype", "split": "donor", "n_folds": 4}, dataset="pbmc")
    msg = str(info.value)
    assert "class 'pDC'" in msg and "alpha_d2" in msg and "min_donors_per_class: 2" in msg
    assert "\n" not in msg
    with pytest.raises(SclinbenchError, match="class 'pDC'.*alpha_d2"):
        make_splits(obs, {"kind": "celltype", "split": "leave_one_donor_out"}, dataset="pbmc")


def test_min_donors_per_class_drops_such_classes_and_logs(obs, caplog):
    obs = _one_donor_class(obs)
    with caplog.at_level("WARNING"):
        t = make_splits(obs, {"kind": "celltype", "split": "donor", "n_folds": 4, "min_donors_per_class": 2},
                        dataset="pbmc")
    assert not set(t.cell_id) & set(obs.index[obs.cell_type == "pDC"])
    assert "pDC (1 donor(s), 30 cells)" in caplog.text and "min_donors_per_class" in caplog.text
    assert len(set(t.cell_id)) == len(obs) - 30


def test_leave_one_donor_out_cell_level(obs):
    t = make_splits(obs, {"kind": "celltype", "split": "leave_one_donor_out"}, seed=0)
    assert (t.split_kind == "leave_one_donor_out").all()
    assert t.fold.nunique() == obs.donor_id.nunique()
    test = t[t.role == "test"]
    assert test.cell_id.value_counts().eq(1).all() and set(test.cell_id) == set(obs.index)
    merged = t.merge(obs, left_on="cell_id", right_index=True)
    for donor, rows in merged.groupby("group"):
        assert set(rows[rows.role == "test"].donor_id) == {donor}
        assert merged.loc[rows.index[rows.role == "test"], "cell_type"].nunique() > 1   # cells, not one label


# --------------------------------------------------------------------------- repeated stratified hold-outs

def test_stratified_holdout_is_the_papers_train_test_split_with_random_state_0_to_4(obs):
    """Split i is sklearn's train_test_split(stratify=y, test_size=0.2, random_state=i) on the cells
    in dataset order: the paper's five Tabula Sapiens splits."""
    from sklearn.model_selection import train_test_split

    t = make_splits(obs, {"kind": "celltype", "split": "stratified_holdout", "n_repeats": 5, "test_fraction": 0.2})
    assert sorted(t["fold"].unique()) == [0, 1, 2, 3, 4] and (t.split_kind == "stratified_holdout").all()
    for i, rows in t.groupby("fold"):
        _, want_test = train_test_split(obs.index.to_numpy(), test_size=0.2, random_state=i,
                                        stratify=obs["cell_type"].to_numpy())
        test = rows[rows.role == "test"].cell_id
        train = rows[rows.role == "train"].cell_id
        assert set(test) == set(want_test) and len(test) == 120
        assert not set(train) & set(test) and set(train) | set(test) == set(obs.index)
        share = obs.loc[test, "cell_type"].value_counts(normalize=True)
        assert (share - obs["cell_type"].value_counts(normalize=True)).abs().max() < 0.01   # stratified
    # independent draws: cells are tested in several splits (not a partition, unlike k-fold)
    tested = t[t.role == "test"].cell_id.value_counts()
    assert tested.max() >= 3 and len(tested) < len(obs)
    # the config seed shifts every random_state (seed 2: random_state 2..6)
    shifted = make_splits(obs, {"kind": "celltype", "split": "stratified_holdout"}, seed=2)
    first = t[(t.fold == 2) & (t.role == "test")].cell_id
    assert set(shifted[(shifted.fold == 0) & (shifted.role == "test")].cell_id) == set(first)


def test_stratified_holdout_options_are_checked(obs):
    base = {"kind": "celltype", "split": "stratified_holdout"}
    assert make_splits(obs, base)["fold"].nunique() == 5                     # defaults: 5 x 80/20
    with pytest.raises(SclinbenchError, match="n_folds does not apply to split stratified_holdout"):
        make_splits(obs, {**base, "n_folds": 5})
    with pytest.raises(SclinbenchError, match="n_repeats applies to split stratified_holdout only"):
        make_splits(obs, {"kind": "celltype", "split": "stratified", "n_repeats": 3})
    with pytest.raises(SclinbenchError, match="test_fraction must be a number between 0 and 1"):
        make_splits(obs, {**base, "test_fraction": 1.5})
    with pytest.raises(SclinbenchError, match="n_repeats must be an integer >= 1"):
        make_splits(obs, {**base, "n_repeats": 0})
    single = obs.copy()
    single.iloc[0, 0] = "lonely"
    with pytest.raises(SclinbenchError, match=r"class 'lonely' .* needs >= 2 per class; set the task's min_cells_per_class"):
        make_splits(single, base, dataset="x")
    t = make_splits(single, {**base, "min_cells_per_class": 100}, dataset="x")   # the paper's >= 100 cells
    kept = single.cell_type.value_counts()
    assert set(single.loc[t.cell_id.unique(), "cell_type"]) == set(kept[kept >= 100].index)


def test_cross_species_diagonal_as_one_stratified_holdout(obs):
    """The paper's same-species diagonal: one stratified 90/10 hold-out per species."""
    from sklearn.model_selection import train_test_split

    t = make_splits(obs, {"kind": "cross_species", "split": "cross_species",
                          "diagonal": {"split": "stratified_holdout", "test_fraction": 0.1}}, seed=0)
    diag = t[t.group.str.split("->").map(lambda g: g[0] == g[1])]
    assert diag["fold"].nunique() == 3 and diag["fold"].min() == 3          # one fold per species
    for a in ("alpha", "beta", "gamma"):
        mine = diag[diag.group == f"{a}->{a}"]
        test = mine[mine.role == "test"].cell_id
        cells = obs[obs.organism == a]
        _, want = train_test_split(cells.index.to_numpy(), test_size=0.1, random_state=0,
                                   stratify=cells.cell_type.to_numpy())
        assert set(test) == set(want) and len(test) == 20
        assert set(mine[mine.role == "train"].cell_id) == set(cells.index) - set(want)
    # transfer folds unchanged: every cell of the training species
    transfer = t[(t.fold < 3) & (t.role == "train")]
    assert len(transfer) == len(obs)
