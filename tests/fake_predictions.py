"""Seeded predictions tables of made-up pipelines (the columns sclinbench.evaluate.engine.evaluate writes).

Each pipeline has an accuracy: a cell is predicted right with that probability, else as a random
other label; class scores favour the predicted label. Used to test the score stage and the tables
without fitting models.
"""

import numpy as np
import pandas as pd

LABELS = ["T", "B", "NK", "mono"]


def _rows(rng, y_true, pipeline, accuracy, repeat=0, labels=LABELS, constant=False):
    n = len(y_true)
    right = rng.random(n) < accuracy
    other = np.array([rng.choice([lab for lab in labels if lab != y]) for y in y_true])
    y_pred = np.where(right, y_true, other)
    scores = rng.random((n, len(labels))) * 0.5
    for j, lab in enumerate(labels):
        scores[y_pred == lab, j] += 0.5
    if constant:
        scores[:] = 0.0
    frame = pd.DataFrame({"pipeline": pipeline, "repeat": repeat, "y_true": y_true, "y_pred": y_pred,
                          "score": scores.max(axis=1)})
    return pd.concat([frame, pd.DataFrame(scores, columns=[f"s:{lab}" for lab in labels])], axis=1)


def kfold_predictions(pipelines: dict, n_donors=6, cells_per_donor=40, n_folds=3, seed=0, repeats=3,
                      donor_ids=True, labels=LABELS):
    """Pooled out-of-fold predictions of a k-fold split: every cell once per pipeline (and repeat)."""
    rng = np.random.default_rng(seed)
    n = n_donors * cells_per_donor
    donors = np.repeat([f"d{i}" for i in range(n_donors)], cells_per_donor)
    y_true = rng.choice(labels, n)
    fold = np.array([int(d[1:]) % n_folds for d in donors])
    frames = []
    for name, acc in pipelines.items():
        reps = repeats if name == "control_shuffled" else 1
        for r in range(reps):
            f = _rows(rng, y_true, name, acc, r, labels, constant=name == "control_majority")
            f.insert(0, "cell_id", [f"c{i}" for i in range(n)])
            f.insert(1, "fold", fold)
            f.insert(2, "group", "")
            f["donor_id"] = donors if donor_ids else "unknown"
            f["novel"] = False
            f["label_in_training"] = True
            frames.append(f)
    return pd.concat(frames, ignore_index=True)


def holdout_predictions(pipelines: dict, n_donors=6, cells_per_donor=40, n_splits=5, test_fraction=0.2,
                        seed=0, repeats=3, donor_ids=True, labels=LABELS):
    """Predictions of repeated hold-outs (``split: stratified_holdout``): split ``i`` tests a random
    ``test_fraction`` of the cells, so a cell is tested in several splits."""
    rng = np.random.default_rng(seed)
    n = n_donors * cells_per_donor
    donors = np.repeat([f"d{i}" for i in range(n_donors)], cells_per_donor)
    y_all = rng.choice(labels, n)
    frames = []
    for fold in range(n_splits):
        test = np.sort(rng.choice(n, int(round(test_fraction * n)), replace=False))
        for name, acc in pipelines.items():
            for r in range(repeats if name == "control_shuffled" else 1):
                f = _rows(rng, y_all[test], name, acc, r, labels, constant=name == "control_majority")
                f.insert(0, "cell_id", [f"c{i}" for i in test])
                f.insert(1, "fold", fold)
                f.insert(2, "group", "")
                f["donor_id"] = donors[test] if donor_ids else "unknown"
                f["novel"] = False
                f["label_in_training"] = True
                frames.append(f)
    return pd.concat(frames, ignore_index=True)


def cross_species_predictions(pipelines: dict, species=("alpha", "beta", "gamma"), cells=60, seed=0,
                              only_in="beta", repeats=3):
    """Transfer pairs and diagonal folds; species ``only_in`` has an extra label 'X' no other species has."""
    rng = np.random.default_rng(seed)
    frames = []
    fold = 0
    truth = {}
    for s in species:
        labels = LABELS + (["X"] if s == only_in else [])
        truth[s] = rng.choice(labels, cells)
    for a in species:
        train_labels = set(LABELS) | ({"X"} if a == only_in else set())
        for b in species:
            groups = [(fold, b)] if a != b else [(100 + fold * 10 + k, b) for k in range(3)]
            for f_id, target in groups:
                y = truth[target] if a != b else truth[target][f_id % 10::3]
                for name, acc in pipelines.items():
                    for r in range(repeats if name == "control_shuffled" else 1):
                        part = _rows(rng, y, name, acc, r, sorted(train_labels),
                                     constant=name == "control_majority")
                        ids = np.arange(cells)[f_id % 10::3] if a == b else np.arange(cells)
                        part.insert(0, "cell_id", [f"{target}_{i}" for i in ids])
                        part.insert(1, "fold", f_id)
                        part.insert(2, "group", f"{a}->{b}")
                        part["donor_id"] = [f"{target}_d{i % 4}" for i in ids]
                        part["novel"] = False
                        part["label_in_training"] = np.isin(y, sorted(train_labels))
                        frames.append(part)
        fold += 1
    return pd.concat(frames, ignore_index=True)


def novel_predictions(pipelines: dict, types=("T", "B", "NK", "mono"), cells=50, seed=0, repeats=3):
    rng = np.random.default_rng(seed)
    frames = []
    for fold, held in enumerate(types):
        known = [t for t in types if t != held]
        y = rng.choice(list(types), cells)
        for name, acc in pipelines.items():
            for r in range(repeats if name == "control_shuffled" else 1):
                part = _rows(rng, y, name, acc, r, known, constant=name == "control_majority")
                novel = y == held
                if name != "control_majority":  # novel cells are less confident for good pipelines
                    part["score"] = part["score"] - (acc - 0.5) * novel
                part.insert(0, "cell_id", [f"c{i}" for i in range(cells)])
                part.insert(1, "fold", fold)
                part.insert(2, "group", held)
                part["donor_id"] = "unknown"
                part["novel"] = novel
                part["label_in_training"] = ~novel
                frames.append(part)
    return pd.concat(frames, ignore_index=True)


PIPELINE_SPECS = {
    "rankz_centroid": {"representation": {"name": "rankz"}, "model": {"name": "centroid"}},
    "log1p_pca_logreg": {"representation": {"name": "log1p"}, "model": {"name": "logreg"}},
    "pearson_logreg": {"representation": {"name": "pearson"}, "model": {"name": "logreg"}},
    "rankz_knn": {"representation": {"name": "rankz"}, "model": {"name": "knn"}},
    "control_majority": {"role": "control", "representation": {"name": "rankz"}, "model": {"name": "majority"}},
    "control_shuffled": {"role": "control", "representation": {"name": "rankz"}, "model": {"name": "centroid"},
                         "control": "shuffled"},
}
#: accuracy of each made-up pipeline; kNN is the most accurate (and must never be the best *linear*)
ACCURACY = {"rankz_centroid": 0.8, "log1p_pca_logreg": 0.7, "pearson_logreg": 0.75, "rankz_knn": 0.9,
            "control_majority": 0.3, "control_shuffled": 0.25}
TASKS = {
    "celltype_stratified": {"kind": "celltype", "split": "stratified", "protocol": "paper"},
    "celltype_donor": {"kind": "celltype", "split": "donor"},
    "cross_species": {"kind": "cross_species", "split": "cross_species"},
    "novel_type": {"kind": "novel_type", "split": "novel_type"},
    "disease_donor": {"kind": "disease", "split": "donor_pseudobulk"},
}
RUN = [("pbmc68k", "celltype_stratified"), ("pbmc68k", "novel_type"), ("atlas", "celltype_donor"),
       ("atlas", "cross_species"), ("atlas", "disease_donor")]


def fake_run(tmp_path, n_boot=200, weak=None):
    """Score-stage and metrics-stage tables of a made-up run (the real code paths from predictions on).

    ``weak``: a (dataset, task) whose methods are no better than the shuffled control.
    """
    from sclinbench.evaluate import intervals, metrics
    from sclinbench.workflow.io import write_table

    files = {k: [] for k in ("scores", "summary", "paired", "unseen")}
    for i, (dataset, task) in enumerate(RUN):
        acc = dict(ACCURACY)
        if (dataset, task) == weak:
            acc = {k: (0.27 if k not in ("control_majority",) else v) for k, v in acc.items()}
        spec = TASKS[task]
        if spec["kind"] == "cross_species":
            pred = cross_species_predictions(acc, species=("human", "macaque", "mouse"), seed=i, only_in="macaque")
        elif spec["kind"] == "novel_type":
            pred = novel_predictions(acc, seed=i)
        elif spec["split"] == "donor_pseudobulk":
            pred = kfold_predictions(acc, n_donors=8, cells_per_donor=1, n_folds=8, seed=i, labels=["dis", "ok"])
        else:
            pred = kfold_predictions(acc, seed=i, donor_ids=dataset != "pbmc68k")
        summary, paired = intervals.summarize_predictions(pred, spec, n_boot=n_boot, key=f"{dataset}/{task}")
        out = {"scores": metrics.score(pred, spec["kind"]), "summary": summary, "paired": paired,
               "unseen": metrics.unseen_labels(pred)}
        for k, table in out.items():
            path = tmp_path / f"{dataset}~{task}.{k}.tsv"
            write_table(table, path)
            files[k].append(path)
    datasets = [d for d, _ in RUN]
    task_of = [t for _, t in RUN]
    return {k: metrics.assemble(v, datasets, task_of, TASKS, PIPELINE_SPECS, kind=k) for k, v in files.items()}
