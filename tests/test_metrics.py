import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from sclinbench import metrics


def _preds(y_true, y_pred, scores=None, **extra):
    df = pd.DataFrame({"cell_id": [f"c{i}" for i in range(len(y_true))], "fold": 0, "group": "",
                       "pipeline": "p", "y_true": y_true, "y_pred": y_pred,
                       "score": np.linspace(0.9, 0.1, len(y_true)), "novel": False})
    for k, v in (scores or {}).items():
        df["s:" + k] = v
    for k, v in extra.items():
        df[k] = v
    return df


def test_unassigned_counts_as_wrong_and_is_not_a_label():
    y_true = ["a", "a", "b", "b"]
    y_pred = ["a", "unassigned", "b", "b"]
    s = metrics.classification_scores(y_true, y_pred)
    # class a: precision 1, recall 1/2 -> F1 2/3; class b: F1 1 -> macro 5/6 (no third "unassigned" class)
    assert s["macro_f1"] == pytest.approx(5 / 6)
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["balanced_accuracy"] == pytest.approx(0.75)


def test_macro_f1_matches_sklearn_default_label_set():
    y_true = ["a", "a", "b", "c", "c", "c"]
    y_pred = ["a", "b", "b", "c", "a", "d"]
    assert metrics.classification_scores(y_true, y_pred)["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro"))


def test_score_counts_every_test_cell():
    df = _preds(["a", "b", "a", "b"], ["a", "b", "b", "unassigned"], {"a": [0.9, 0.2, 0.4, np.nan],
                                                                     "b": [0.1, 0.8, 0.6, np.nan]})
    tidy = metrics.score(df, "celltype").set_index("metric")["value"]
    assert tidy["n_test_cells"] == 4 and tidy["n_unassigned"] == 1
    assert tidy["accuracy"] == pytest.approx(0.5)


def test_auroc_ovr_hand_computed():
    y = ["a", "a", "b", "b"]
    scores = pd.DataFrame({"s:a": [0.9, 0.4, 0.5, 0.1], "s:b": [0.1, 0.6, 0.5, 0.9]})
    # class a: positives {0.9,0.4} vs negatives {0.5,0.1}: pairs won 3 of 4 -> 0.75; class b same -> 0.75
    assert metrics.auroc_ovr(y, scores) == pytest.approx(0.75)


def test_cross_species_groups_and_shared_labels():
    df = _preds(["a", "b", "x", "a"], ["a", "b", "a", "a"], {"a": [1, 0, 1, 1], "b": [0, 1, 0, 0]})
    df["group"] = ["h->h", "h->h", "h->m", "h->m"]
    tidy = metrics.score(df, "cross_species")
    assert set(tidy.group) == {"h->h", "h->m"}
    hm = tidy[tidy.group == "h->m"].set_index("metric")["value"]
    assert hm["n_cells_unseen_label"] == 1          # label x never seen in training
    assert hm["macro_f1_shared"] == pytest.approx(1.0)
    assert hm["macro_f1"] < 1


def test_novelty_auroc_and_known_accuracy():
    df = _preds(["a", "b", "n", "n"], ["a", "a", "a", "b"])
    df["score"] = [0.9, 0.8, 0.2, 0.85]
    df["novel"] = [False, False, True, True]
    df["group"] = "n"
    tidy = metrics.score(df, "novel_type").set_index("metric")["value"]
    assert tidy["known_accuracy"] == pytest.approx(0.5)
    # novelty = -score; novel {-0.2,-0.85} vs known {-0.9,-0.8}: wins 2 + 1 + 0 + 0... = 3 of 4
    assert tidy["novelty_auroc"] == pytest.approx(0.75)


def test_bootstrap_ci_brackets_mean_and_is_seeded():
    vals = [0.8, 0.82, 0.79, 0.85, 0.81]
    mean, lo, hi = metrics.bootstrap_ci(vals, seed=1)
    assert lo < mean < hi and mean == pytest.approx(np.mean(vals))
    assert metrics.bootstrap_ci(vals, seed=1) == (mean, lo, hi)
    assert metrics.bootstrap_ci([0.5]) == (0.5, 0.5, 0.5)


def test_paired_comparison_on_matching_folds():
    rows = []
    for fold in range(5):
        rows.append(("d", "t", fold, "", "A", "macro_f1", 0.8 + fold / 100))
        rows.append(("d", "t", fold, "", "B", "macro_f1", 0.7 + fold / 100))
    m = pd.DataFrame(rows, columns=["dataset", "task", "fold", "group", "pipeline", "metric", "value"])
    out = metrics.paired_comparison(m, "A", "B")
    assert out.loc[0, "mean_difference"] == pytest.approx(0.1)
    assert out.loc[0, "n"] == 5 and out.loc[0, "a_better"] == 5


def test_pooled_scores_for_leave_one_donor_out():
    # 4 donors, one per fold; 3 predicted right
    df = pd.DataFrame({"cell_id": ["d1", "d2", "d3", "d4"], "fold": [0, 1, 2, 3], "group": ["d1", "d2", "d3", "d4"],
                       "pipeline": "p", "y_true": ["dis", "dis", "ok", "ok"], "y_pred": ["dis", "ok", "ok", "ok"],
                       "score": 0.9, "novel": False, "s:dis": [0.9, 0.4, 0.2, 0.1], "s:ok": [0.1, 0.6, 0.8, 0.9]})
    tidy = metrics.score(df, "disease", pooled=True)
    per_fold = tidy[tidy.fold >= 0]
    assert set(per_fold.metric) == {"accuracy", "n_test_cells", "n_unassigned"}
    assert per_fold[per_fold.metric == "accuracy"].value.tolist() == [1, 0, 1, 1]
    pooled = tidy[tidy.fold == metrics.POOLED_FOLD].set_index("metric")["value"]
    # dis: P=1, R=1/2 -> F1 2/3; ok: P=2/3, R=1 -> F1 4/5; macro = 11/15
    assert pooled["macro_f1"] == pytest.approx(11 / 15)
    assert pooled["macro_f1_ci_low"] <= pooled["macro_f1"] <= pooled["macro_f1_ci_high"]
    assert pooled["macro_f1_ci_low"] < pooled["macro_f1_ci_high"]
    assert pooled["auroc_ovr"] == pytest.approx(1.0)
    assert "accuracy" not in pooled.index


def test_per_class_lists_labels_missing_from_training():
    df = _preds(["a", "b", "x", "a"], ["a", "b", "a", "a"], {"a": [1, 0, 1, 1], "b": [0, 1, 0, 0]})
    df["group"] = ["h->m"] * 4
    table = metrics.per_class(df, "cross_species").set_index("label")
    assert not table.loc["x", "in_training"] and table.loc["x", "f1"] == 0 and table.loc["x", "support"] == 1
    assert table.loc["a", "in_training"] and table.loc["b", "f1"] == 1
