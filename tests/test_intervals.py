"""The score stage's pooled scores, intervals over held-out units and paired differences."""

import numpy as np
import pandas as pd
import pytest
from fake_predictions import (
    cross_species_predictions,
    holdout_predictions,
    kfold_predictions,
    novel_predictions,
)
from sklearn.metrics import roc_auc_score

from sclinbench.evaluate import intervals, metrics, scopes

PIPES = {"good": 0.85, "ok": 0.6, "control_majority": 0.3, "control_shuffled": 0.25}


def _row(summary, pipeline, metric, group=""):
    r = summary[(summary.pipeline == pipeline) & (summary.metric == metric) & (summary.group == group)]
    assert len(r) == 1, (pipeline, metric, group)
    return r.iloc[0]


POOLED = intervals.POOLED_GROUP


def test_pooled_point_estimates_equal_the_metric_of_all_out_of_fold_predictions():
    """Donor splits show the pooled figure beside the headline (group 'pooled over donors')."""
    pred = kfold_predictions(PIPES, seed=1)
    s, _ = intervals.summarize_predictions(pred, {"kind": "celltype", "split": "donor"}, n_boot=200)
    good = pred[pred.pipeline == "good"]
    want = metrics.classification_scores(good.y_true, good.y_pred)
    for m in ("macro_f1", "accuracy", "balanced_accuracy", "macro_precision", "macro_recall"):
        assert _row(s, "good", m, POOLED)["value"] == pytest.approx(want[m])
    cols = [c for c in good.columns if c.startswith("s:")]
    assert _row(s, "good", "auroc_ovr", POOLED)["value"] == pytest.approx(metrics.auroc_ovr(good.y_true, good[cols]))
    assert "percentile bootstrap over 6 donors" in _row(s, "good", "macro_f1", POOLED)["interval"]
    # the shuffled control: mean over its repeats, spread beside it
    sh = pred[pred.pipeline == "control_shuffled"]
    per_rep = [metrics.classification_scores(d.y_true, d.y_pred)["macro_f1"] for _, d in sh.groupby("repeat")]
    r = _row(s, "control_shuffled", "macro_f1", POOLED)
    assert r["value"] == pytest.approx(np.mean(per_rep)) and r["n_repeats"] == 3
    assert (r["repeat_min"], r["repeat_max"]) == pytest.approx((min(per_rep), max(per_rep)))
    assert r["repeat_sd"] == pytest.approx(np.std(per_rep, ddof=1))


@pytest.mark.parametrize("units, per_donor", [("donor", 40), ("cell", 40), ("cell", 500)])
def test_a_draw_equals_the_metric_of_the_explicitly_resampled_rows(units, per_donor):
    """Donors; cells one by one; more than 2,000 cells: resampled in random blocks of cells."""
    pred = kfold_predictions({"good": 0.8, "ok": 0.5}, seed=2, donor_ids=True, cells_per_donor=per_donor)
    scope = scopes.PooledScope(pred, units)
    if per_donor == 500:
        assert scope.n_units == scopes.CELL_BLOCKS and scope.n_reported == 3000 and "random blocks" in scope.note
    rng = np.random.default_rng(5)
    W = next(scopes.unit_draws(scope.n_units, 3, rng))
    got = scope.metrics(W)
    ref = pred[pred.pipeline == "good"].sort_values(["fold", "cell_id"], kind="mergesort")
    for b in range(3):
        weight = W[b, scope.codes]
        rows = ref.loc[ref.index.repeat(weight.astype(int))]
        want = metrics.classification_scores(rows.y_true, rows.y_pred)
        for m in ("macro_f1", "accuracy", "balanced_accuracy"):
            assert got[("good", 0)][m][b] == pytest.approx(want[m], rel=1e-6)
        aucs = []
        for c in [c for c in ref.columns if c.startswith("s:")]:
            pos = ref.y_true.to_numpy() == c[2:]
            if weight[pos].sum() and weight[~pos].sum():
                aucs.append(roc_auc_score(pos, ref[c], sample_weight=weight))
        assert got[("good", 0)]["auroc_ovr"][b] == pytest.approx(np.mean(aucs), rel=1e-6)


def test_units_follow_the_split():
    pred = kfold_predictions(PIPES, n_donors=6)
    s, _ = intervals.summarize_predictions(pred, {"kind": "celltype", "split": "stratified"}, n_boot=100)
    assert _row(s, "good", "macro_f1")["unit"] == "donor" and _row(s, "good", "macro_f1")["n_units"] == 6
    no_donors = kfold_predictions(PIPES, donor_ids=False)
    s, _ = intervals.summarize_predictions(no_donors, {"kind": "celltype", "split": "stratified"}, n_boot=100)
    r = _row(s, "good", "macro_f1")
    assert r["unit"] == "cell" and r["n_units"] == len(no_donors[no_donors.pipeline == "good"])
    assert "recomputed from the pooled out-of-fold predictions" in r["interval"]


def test_no_interval_from_two_units():
    pred = kfold_predictions(PIPES, n_donors=2, n_folds=2)
    s, p = intervals.summarize_predictions(pred, {"kind": "celltype", "split": "leave_one_donor_out"}, n_boot=100)
    r = _row(s, "good", "macro_f1")
    assert r["n_units"] == 2 and np.isnan(r["ci_low"]) and np.isnan(r["ci_high"])
    assert r["interval"].startswith("too few units for an interval")
    assert r["unit_values"].startswith("d0: ") and "; d1: " in r["unit_values"]
    assert (p["verdict"] == "too few units for an interval").all() and p["ci_low"].isna().all()
    # two species: two transfer pairs, no interval either
    cs = cross_species_predictions(PIPES, species=("alpha", "beta"))
    s, _ = intervals.summarize_predictions(cs, {"kind": "cross_species", "split": "cross_species"}, n_boot=100)
    r = _row(s, "good", "macro_f1")
    assert r["n_units"] == 2 and np.isnan(r["ci_low"]) and "too few units" in r["interval"]
    assert "alpha->beta: " in r["unit_values"]


def test_paired_differences_use_the_same_draws():
    pred = kfold_predictions({"good": 0.8, "ok": 0.6}, seed=3)
    twin = pred[pred.pipeline == "good"].assign(pipeline="twin")
    s, p = intervals.summarize_predictions(pd.concat([pred, twin]), {"kind": "celltype", "split": "donor"},
                                           n_boot=300)
    same = p[(p.a == "good") & (p.b == "twin") & (p.metric == "macro_f1")].iloc[0]
    # identical predictions: with the same draws the difference is 0 in every draw
    assert same["difference"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    assert same["verdict"] == "no clear difference"
    diff = p[(p.a == "good") & (p.b == "ok") & (p.metric == "macro_f1")].iloc[0]
    assert diff["difference"] == pytest.approx(_row(s, "good", "macro_f1")["value"] - _row(s, "ok", "macro_f1")["value"])
    assert diff["ci_low"] > 0 and diff["verdict"] == "good better"
    # narrower than the two separate intervals would suggest (correlated draws)
    g, o = _row(s, "good", "macro_f1"), _row(s, "ok", "macro_f1")
    assert diff["ci_high"] - diff["ci_low"] < (g.ci_high - g.ci_low) + (o.ci_high - o.ci_low)


def test_intervals_are_seeded_and_independent_of_other_pipelines():
    pred = kfold_predictions(PIPES, seed=4)
    task = {"kind": "celltype", "split": "donor"}
    a, _ = intervals.summarize_predictions(pred, task, n_boot=200, seed=1, key="d/t")
    b, _ = intervals.summarize_predictions(pred[pred.pipeline != "ok"], task, n_boot=200, seed=1, key="d/t")
    ra, rb = _row(a, "good", "macro_f1", POOLED), _row(b, "good", "macro_f1", POOLED)
    assert (ra.ci_low, ra.ci_high) == (rb.ci_low, rb.ci_high)
    c, _ = intervals.summarize_predictions(pred, task, n_boot=200, seed=2, key="d/t")
    assert _row(c, "good", "macro_f1", POOLED).ci_low != ra.ci_low


def test_constant_score_control_has_auroc_one_half_also_pooled_over_leave_one_out_folds():
    pred = kfold_predictions(PIPES, n_donors=8, n_folds=8)
    s, _ = intervals.summarize_predictions(pred, {"kind": "disease", "split": "donor_pseudobulk"}, n_boot=100)
    r = _row(s, "control_majority", "auroc_ovr")
    assert r["value"] == 0.5 and r["ci_low"] == 0.5 and r["ci_high"] == 0.5


def test_cross_species_scopes():
    cs = cross_species_predictions(PIPES)
    s, p = intervals.summarize_predictions(cs, {"kind": "cross_species", "split": "cross_species"}, n_boot=200)
    pairs = [f"{a}->{b}" for a in ("alpha", "beta", "gamma") for b in ("alpha", "beta", "gamma") if a != b]
    per_pair = [_row(s, "good", "macro_f1", g)["value"] for g in pairs]
    # the transfer headline is the mean over the 6 off-diagonal pairs, interval over pairs
    head = _row(s, "good", "macro_f1")
    assert head["value"] == pytest.approx(np.mean(per_pair)) and head["n_units"] == 6
    assert head["unit"] == "species pair"
    # each pair: shared labels only (X is only in beta): the pair's pooled shared-label F1
    ab = cs[(cs.group == "alpha->beta") & (cs.pipeline == "good")]
    shared = ab[ab.label_in_training]
    want = metrics.classification_scores(shared.y_true, shared.y_pred, mode="truth")["macro_f1"]
    assert _row(s, "good", "macro_f1", "alpha->beta")["value"] == pytest.approx(want)
    assert _row(s, "good", "n_cells_unseen_label", "alpha->beta")["value"] == (~ab.label_in_training).sum()
    allt = metrics.classification_scores(ab.y_true, ab.y_pred, mode="truth")["macro_f1"]
    assert _row(s, "good", "macro_f1_all_target_labels", "alpha->beta")["value"] == pytest.approx(allt)
    # the diagonal is reported apart; the paper-style average includes it
    diag = [_row(s, "good", "macro_f1", f"{a}->{a}")["value"] for a in ("alpha", "beta", "gamma")]
    assert _row(s, "good", "macro_f1", "same-species")["value"] == pytest.approx(np.mean(diag))
    assert _row(s, "good", "macro_f1", "incl. same-species")["value"] == pytest.approx(np.mean(per_pair + diag))
    a_star = _row(s, "good", "macro_f1", "alpha->*")
    assert a_star["value"] == pytest.approx(np.mean(per_pair[:2])) and np.isnan(a_star["ci_low"])
    assert set(p.group) == {"", "same-species", "incl. same-species"}


def test_novel_type_headline_is_mean_over_held_out_types():
    pred = novel_predictions(PIPES)
    s, p = intervals.summarize_predictions(pred, {"kind": "novel_type", "split": "novel_type"}, n_boot=200)
    per_type = metrics.score(pred[pred.pipeline == "good"], "novel_type")
    want = per_type[per_type.metric == "novelty_auroc"]["value"].mean()
    r = _row(s, "good", "novelty_auroc")
    assert r["value"] == pytest.approx(want) and r["n_units"] == 4 and r["unit"] == "held-out type"
    assert "novelty_auroc" in set(p.metric)


# --------------------------------------------------------------------------- repeated hold-outs

def _weighted_split_scores(part, weight):
    """macro F1 / accuracy / AUROC of one split's rows, each row repeated ``weight`` times."""
    rows = part.loc[part.index.repeat(weight.astype(int))]
    out = metrics.classification_scores(rows.y_true, rows.y_pred)
    aucs = []
    for c in [c for c in part.columns if c.startswith("s:")]:
        pos = part.y_true.to_numpy() == c[2:]
        if weight[pos].sum() and weight[~pos].sum():
            aucs.append(roc_auc_score(pos, part[c], sample_weight=weight))
    out["auroc_ovr"] = float(np.mean(aucs))
    return out


def test_repeated_holdout_headline_is_the_mean_over_splits_and_never_pools_a_cell_twice():
    """The paper's statistic: the mean of the 5 splits' scores; n = distinct cells (or donors)."""
    pred = holdout_predictions(PIPES, n_donors=6, seed=3, donor_ids=False)
    good = pred[pred.pipeline == "good"]
    assert good.cell_id.value_counts().max() >= 3                      # cells are tested in several splits
    task = {"kind": "celltype", "split": "stratified_holdout"}
    s, p = intervals.summarize_predictions(pred, task, n_boot=200)
    per_split = [metrics.classification_scores(d.y_true, d.y_pred) for _, d in good.groupby("fold")]
    cols = [c for c in good.columns if c.startswith("s:")]
    aucs = [metrics.auroc_ovr(d.y_true, d[cols]) for _, d in good.groupby("fold")]
    r = _row(s, "good", "macro_f1")
    assert r["value"] == pytest.approx(np.mean([x["macro_f1"] for x in per_split]))
    assert _row(s, "good", "accuracy")["value"] == pytest.approx(np.mean([x["accuracy"] for x in per_split]))
    assert _row(s, "good", "auroc_ovr")["value"] == pytest.approx(np.mean(aucs))
    pooled = metrics.classification_scores(good.y_true, good.y_pred)["macro_f1"]
    assert r["value"] != pytest.approx(pooled, abs=1e-9)               # not the pooled figure
    n_cells = good.cell_id.nunique()
    assert r["unit"] == "cell" and r["n_units"] == n_cells < len(good)
    assert "each of the 5 hold-out splits" in r["interval"] and "is one unit" in r["interval"]
    assert r["ci_low"] < r["value"] < r["ci_high"]
    assert _row(s, "good", "n_test_cells")["value"] == n_cells
    # the shuffled control: mean over its label permutations of the mean over splits
    sh = pred[pred.pipeline == "control_shuffled"]
    want = np.mean([np.mean([metrics.classification_scores(d.y_true, d.y_pred)["macro_f1"]
                             for _, d in rep.groupby("fold")]) for _, rep in sh.groupby("repeat")])
    assert _row(s, "control_shuffled", "macro_f1")["value"] == pytest.approx(want)
    assert ((p.a == "good") & (p.b == "ok") & (p.metric == "macro_f1")).sum() == 1
    # with >= 3 real donors, donors are the units
    by_donor, _ = intervals.summarize_predictions(holdout_predictions(PIPES, n_donors=5), task, n_boot=100)
    assert _row(by_donor, "good", "macro_f1")["unit"] == "donor" and _row(by_donor, "good", "macro_f1")["n_units"] == 5


@pytest.mark.parametrize("units, per_donor", [("donor", 40), ("cell", 40), ("cell", 700)])
def test_a_repeated_holdout_draw_resamples_each_unit_once_in_every_split(units, per_donor):
    """A unit drawn w times weighs w in every split it is tested in (> 2,000 cells: the same block)."""
    pred = holdout_predictions({"good": 0.8, "ok": 0.5}, seed=4, cells_per_donor=per_donor)
    scope = scopes.RepeatedHoldoutScope(pred, units)
    n_distinct = pred.cell_id.nunique() if units == "cell" else 6
    assert scope.n_reported == n_distinct
    if per_donor == 700:
        assert scope.n_units == scopes.CELL_BLOCKS and "random blocks" in scope.note
    W = next(scopes.unit_draws(scope.n_units, 3, np.random.default_rng(7)))
    got = scope.metrics(W)[("good", 0)]
    good = pred[pred.pipeline == "good"]
    key = "cell_id" if units == "cell" else "donor_id"
    names = np.unique(pred[key].astype(str))
    unit_of = dict(zip(names, range(len(names))))
    block = np.arange(len(names))
    if per_donor == 700:
        block = np.random.default_rng(0).permutation(len(names)) % scopes.CELL_BLOCKS
    for b in range(3):
        want = {"macro_f1": [], "accuracy": [], "auroc_ovr": []}
        for _, part in good.groupby("fold"):
            weight = W[b, block[[unit_of[u] for u in part[key].astype(str)]]]
            values = _weighted_split_scores(part, weight)
            for m in want:
                want[m].append(values[m])
        for m, v in want.items():
            assert got[m][b] == pytest.approx(np.mean(v), rel=1e-6), (m, b)


# --------------------------------------------------------------------------- donor splits: mean over held-out units

def test_donor_split_headline_is_the_mean_over_held_out_donors_with_a_t_interval():
    pred = kfold_predictions(PIPES, n_donors=4, n_folds=4, seed=5)
    s, p = intervals.summarize_predictions(pred, {"kind": "celltype", "split": "donor"}, n_boot=200)
    good = pred[pred.pipeline == "good"]
    per_donor = {d: metrics.classification_scores(x.y_true, x.y_pred)["macro_f1"] for d, x in good.groupby("donor_id")}
    r = _row(s, "good", "macro_f1")
    assert r["value"] == pytest.approx(np.mean(list(per_donor.values()))) and r["unit"] == "donor"
    assert r["n_units"] == 4 and "Student-t interval on the logit scale over 4 donors" in r["interval"]
    v = np.array(list(per_donor.values()))
    m, se = v.mean(), v.std(ddof=1) / 2
    half = 3.182446 * se / (m * (1 - m))                               # t_{0.975, 3}, delta method
    lo, hi = (1 / (1 + np.exp(-(np.log(m / (1 - m)) + x))) for x in (-half, half))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi), rel=1e-5)
    assert r["ci_low"] < r["value"] < r["ci_high"] <= 1                  # the estimate inside, never above 1
    for d, x in per_donor.items():                                      # the per-donor values beside it
        assert f"{d}: {x:.3f}" in r["unit_values"]
    pooled = _row(s, "good", "macro_f1", POOLED)["value"]
    assert pooled == pytest.approx(metrics.classification_scores(good.y_true, good.y_pred)["macro_f1"])
    d = p[(p.a == "good") & (p.b == "ok") & (p.metric == "macro_f1") & (p.group == "")].iloc[0]
    assert d["difference"] == pytest.approx(r["value"] - _row(s, "ok", "macro_f1")["value"]) and d["n_units"] == 4


def test_donor_level_labels_make_the_fold_the_unit_and_controls_read_chance():
    """Pseudobulk disease folds (one donor per class held out): per-fold scores, mean over folds;
    the majority control reads 0.5 balanced accuracy and AUROC."""
    rng = np.random.default_rng(0)
    rows = []
    for fold in range(4):
        for label in ("disease", "healthy"):
            donor = f"{label[0]}{fold}"
            for name, acc in {"good": 0.9, "control_majority": None}.items():
                pred = "disease" if acc is None else (label if rng.random() < acc else "healthy")
                score = 0.0 if acc is None else float(rng.random()) + (label == "disease")
                rows.append({"cell_id": donor, "fold": fold, "group": "", "pipeline": name, "repeat": 0,
                             "donor_id": donor, "y_true": label, "y_pred": pred, "score": score,
                             "s:disease": score, "s:healthy": -score if acc is not None else 0.0,
                             "novel": False, "label_in_training": True})
    pred = pd.DataFrame(rows)
    s, _ = intervals.summarize_predictions(pred, {"kind": "disease", "split": "donor_pseudobulk"}, n_boot=100)
    r = _row(s, "control_majority", "balanced_accuracy")
    assert r["unit"] == "fold" and r["n_units"] == 4 and r["value"] == 0.5
    assert "d0+h0: 0.500" in r["unit_values"] and "each fold holds out donors of every class" in r["interval"]
    assert _row(s, "control_majority", "auroc_ovr")["value"] == 0.5
    assert _row(s, "good", "auroc_ovr")["value"] == 1.0


def test_shuffled_control_interval_includes_the_permutation_variance():
    """Repeats that disagree widely: the control's interval is at least as wide as their spread,
    with few units (t path) and with many (bootstrap path: each draw takes one permutation)."""
    for split, n_donors, group in (("donor", 4, ""), ("stratified", 40, "")):
        pred = kfold_predictions({"good": 0.8}, n_donors=n_donors, n_folds=4, seed=6, repeats=1)
        reps = []
        for r, acc in enumerate((0.15, 0.3, 0.45, 0.6, 0.75)):
            one = kfold_predictions({"control_shuffled": acc}, n_donors=n_donors, n_folds=4, seed=10 + r, repeats=1)
            reps.append(one.assign(repeat=r))
        both = pd.concat([pred] + reps, ignore_index=True)
        s, p = intervals.summarize_predictions(both, {"kind": "celltype", "split": split}, n_boot=400)
        c = _row(s, "control_shuffled", "macro_f1", group)
        assert c["n_repeats"] == 5 and c["repeat_max"] - c["repeat_min"] > 0.4
        assert c["ci_low"] <= c["repeat_min"] + 0.05 and c["ci_high"] >= c["repeat_max"] - 0.05, (split, c)
        assert "permutation" in c["interval"]
        d = p[(p.a == "control_shuffled") & (p.b == "good") & (p.metric == "macro_f1") & (p.group == group)].iloc[0]
        assert d["ci_high"] - d["ci_low"] > 0.3 and "permutation" in d["interval"]


def test_few_unit_interval_covers_the_truth_on_a_simulation():
    """The score stage's interval (Student t on the logit scale) covers at about its nominal rate
    with 4 units, where the percentile bootstrap over units does not (loose bounds, 400 studies)."""
    from sclinbench.evaluate.few_units import coverage_table

    rows = coverage_table(n_units=(4,), true_means=(0.85,), n_sim=400, n_boot=300,
                          methods=("percentile bootstrap", "t, logit scale"))
    cov = {r["method"]: r["coverage"] for r in rows}
    assert 0.91 <= cov["t, logit scale"] <= 0.99, cov
    assert cov["percentile bootstrap"] < 0.85, cov
