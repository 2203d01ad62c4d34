import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_recall_fscore_support

from sclinbench.evaluate import metrics


def _preds(y_true, y_pred, scores=None, **extra):
    df = pd.DataFrame({"cell_id": [f"c{i}" for i in range(len(y_true))], "fold": 0, "group": "",
                       "pipeline": "p", "repeat": 0, "donor_id": "unknown", "y_true": y_true, "y_pred": y_pred,
                       "score": np.linspace(0.9, 0.1, len(y_true)), "novel": False, "label_in_training": True})
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


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(6))
def test_confusion_metrics_equal_sklearn_in_both_label_modes(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(list("abcd"), 60)
    y_pred = rng.choice(list("abcdexy") + ["unassigned"], 60)
    union = metrics.classification_scores(y_true, y_pred)
    labels = sorted((set(y_true) | set(y_pred)) - {"unassigned"})
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    assert (union["macro_f1"], union["macro_precision"], union["macro_recall"]) == pytest.approx((f, p, r))
    assert union["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    truth = metrics.classification_scores(y_true, y_pred, mode="truth")
    assert truth["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=sorted(set(y_true)),
                                                       average="macro", zero_division=0))


def test_shared_label_f1_by_hand_with_source_only_predictions():
    """Transfer pair: the target has labels a, b and t (t unknown to the training species); the
    training species also had s, which the target lacks. Headline = macro F1 over {a, b} on the
    cells of a and b; a prediction of s is an error that adds no class."""
    y_true = ["a", "a", "a", "a", "b", "b", "b", "b", "t", "t"]
    y_pred = ["a", "a", "a", "s", "b", "b", "a", "s", "a", "b"]
    df = _preds(y_true, y_pred, {"a": 0.5, "b": 0.5, "s": 0.5}, group="h->m",
                label_in_training=[y != "t" for y in y_true])
    tidy = metrics.score(df, "cross_species").set_index("metric")["value"]
    # shared cells (8): a: TP 3, FP 1 (a b-cell called a), FN 1 -> F1 6/8; b: TP 2, FP 0, FN 2 -> F1 4/6
    assert tidy["macro_f1"] == pytest.approx((6 / 8 + 4 / 6) / 2)
    assert tidy["macro_f1"] == pytest.approx(f1_score(y_true[:8], y_pred[:8], labels=["a", "b"], average="macro"))
    # sklearn's default (true and predicted labels) would add s as a zero class: that is the bug
    assert f1_score(y_true[:8], y_pred[:8], average="macro") == pytest.approx((6 / 8 + 4 / 6 + 0) / 3)
    assert tidy["accuracy"] == pytest.approx(5 / 8)
    # all target cells over all target labels {a, b, t}: a F1 6/9 (TP 3, FP 2, FN 1), b 4/7, t 0
    assert tidy["macro_f1_all_target_labels"] == pytest.approx((6 / 9 + 4 / 7 + 0) / 3)
    assert tidy["n_cells_unseen_label"] == 2 and tidy["n_shared_labels"] == 2
    unseen = metrics.unseen_labels(df)
    assert unseen[["y_true", "y_pred", "n"]].values.tolist() == [["t", "a", 1], ["t", "b", 1]]


def test_one_class_test_fold_has_no_macro_f1():
    """A fold whose test set holds one class: macro metrics NaN (never a trivial 1.0); accuracy stays."""
    df = _preds(["ok"] * 5, ["ok"] * 5, {"ok": 1.0, "dis": 0.0})
    tidy = metrics.score(df, "disease").set_index("metric")["value"]
    for m in ("macro_f1", "balanced_accuracy", "macro_precision", "macro_recall", "auroc_ovr"):
        assert np.isnan(tidy[m]), m
    assert tidy["accuracy"] == 1.0 and tidy["n_test_classes"] == 1


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
    assert metrics.auroc_ovr(y, scores, labels={"a"}) == pytest.approx(0.75)


def test_cross_species_groups_and_diagonal():
    df = _preds(["a", "b", "x", "a"], ["a", "b", "a", "a"], {"a": [1, 0, 1, 1], "b": [0, 1, 0, 0]})
    df["group"] = ["h->h", "h->h", "h->m", "h->m"]
    df["label_in_training"] = [True, True, False, True]
    tidy = metrics.score(df, "cross_species")
    assert set(tidy.group) == {"h->h", "h->m"}
    hm = tidy[tidy.group == "h->m"].set_index("metric")["value"]
    assert hm["n_cells_unseen_label"] == 1          # label x never seen in training
    assert np.isnan(hm["macro_f1"])                  # one shared class only
    assert hm["accuracy"] == 1.0
    assert "n_cells_unseen_label" not in set(tidy[tidy.group == "h->h"].metric)


def test_novelty_auroc_and_known_accuracy():
    df = _preds(["a", "b", "n", "n"], ["a", "a", "a", "b"])
    df["score"] = [0.9, 0.8, 0.2, 0.85]
    df["novel"] = [False, False, True, True]
    df["group"] = "n"
    tidy = metrics.score(df, "novel_type").set_index("metric")["value"]
    assert tidy["known_accuracy"] == pytest.approx(0.5)
    # novelty = -score; novel {-0.2,-0.85} vs known {-0.9,-0.8}: wins 2 + 1 + 0 + 0... = 3 of 4
    assert tidy["novelty_auroc"] == pytest.approx(0.75)


def test_repeats_are_scored_apart():
    a = _preds(["a", "b"], ["a", "b"], {"a": [1, 0], "b": [0, 1]})
    b = a.assign(repeat=1, y_pred=["b", "b"])
    tidy = metrics.score(pd.concat([a, b]), "celltype")
    acc = tidy[tidy.metric == "accuracy"].set_index("repeat")["value"]
    assert acc.to_dict() == {0: 1.0, 1: 0.5}


def test_per_class_lists_labels_missing_from_training():
    df = _preds(["a", "b", "x", "a"], ["a", "b", "a", "a"], {"a": [1, 0, 1, 1], "b": [0, 1, 0, 0]},
                label_in_training=[True, True, False, True])
    df["group"] = ["h->m"] * 4
    table = metrics.per_class(df, "cross_species").set_index("label")
    assert not table.loc["x", "in_training"] and table.loc["x", "f1"] == 0 and table.loc["x", "support"] == 1
    assert table.loc["a", "in_training"] and table.loc["b", "f1"] == 1
