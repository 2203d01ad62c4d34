"""Nested selection: choose a pipeline inside the training data of each fold, then test it.

A ``nested:`` pipeline entry of the config::

    nested_linear:
      nested: {candidates: [rankz_centroid, log1p_pca_logreg, ...], inner_folds: 3, metric: macro_f1}

In each outer fold the candidates (other pipeline entries) are scored by an inner split drawn
from the outer training cells only (:func:`select`); the winner is refitted on the whole outer
training set and predicts the outer test cells (:func:`evaluate_nested`). No outer test cell
enters the choice, so the nested pipeline's numbers are honest estimates of "select, then use"
and it can be declared in the headline.

The inner split is of the same kind as the outer one (:func:`inner_kind`):

- donor-held-out outer splits (``donor``, ``leave_one_donor_out``, ``donor_pseudobulk``): inner
  folds of whole training donors (``StratifiedGroupKFold``; pseudobulk samples for
  ``donor_pseudobulk``); with fewer than :data:`MIN_INNER_DONORS` training donors, stratified
  cells (said in the selection table's ``inner_split``);
- cell-level splits (``stratified``, ``stratified_holdout``, ``novel_type``): stratified cells;
- cross-species transfer folds: inside the source species (its donors when it has at least
  :data:`MIN_INNER_DONORS`, else cells), or leave one source species out when the training cells
  hold three or more species; same-species diagonal folds: the diagonal's own kind.

The inner score of a candidate is ``metric`` of its pooled inner out-of-fold predictions (the
project's pooled convention); ties go to the candidate listed first. The inner split is seeded
from the seed and the outer fold (:func:`inner_seed`), so the winner is reproducible from the seed.
The same :func:`select` chooses the pipeline of ``sclinbench train`` (and ``sclinbench annotate
--reference``) when none is named: :func:`choose_for_reference`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate.spec import NESTED_METRICS, is_nested

log = logging.getLogger(__name__)

#: Kinds of inner split.
INNER_SPLITS = ("donor", "stratified", "species")
#: Fewer training donors than this: the inner split holds out cells instead of donors.
MIN_INNER_DONORS = 3
#: Columns of a selection table (one row per outer fold x nested pipeline x candidate).
SELECTION_COLUMNS = ["pipeline", "fold", "group", "inner_split", "inner_folds", "n_inner_units", "metric",
                     "candidate", "inner_score", "rank", "chosen"]
_UNKNOWN_DONORS = ("", "nan", "unknown")


def inner_seed(seed: int, fold: int) -> int:
    """Seed of the inner split of one outer fold (from the run's seed and the fold)."""
    return int(np.random.SeedSequence([int(seed), int(fold), 0x6E65]).generate_state(1)[0])


# --------------------------------------------------------------------------- inner splits

def _known(units: np.ndarray) -> np.ndarray:
    return ~pd.Series(units, dtype=str).str.strip().str.lower().isin(_UNKNOWN_DONORS).to_numpy()


def inner_folds(y, units, kind: str, n_folds: int = 3, seed: int = 0, species=None
                ) -> tuple[str, list[tuple[np.ndarray, np.ndarray]]]:
    """``(kind used, [(train positions, test positions), ...])`` of an inner split of ``len(y)`` cells.

    ``kind`` is one of :data:`INNER_SPLITS`; ``donor`` falls back to ``stratified`` with fewer than
    :data:`MIN_INNER_DONORS` known donors (cells of an unknown donor are then spread over the
    folds like any other cell); ``species`` holds one species out per fold (``species`` per cell).
    Folds whose training cells hold a single class are dropped (no model can be fitted there).
    """
    y = np.asarray(y).astype(str)
    units = np.asarray(units).astype(str) if units is not None else np.full(y.size, "unknown")
    if kind not in INNER_SPLITS:
        raise SclinbenchError(f"inner split '{kind}' is unknown; valid: {', '.join(INNER_SPLITS)}")
    positions = np.arange(y.size)
    if kind == "species":
        groups = np.asarray(species).astype(str)
        if np.unique(groups).size < 3:
            kind = "stratified"
        else:
            folds = list(LeaveOneGroupOut().split(positions, y, groups))
    if kind == "donor":
        known = _known(units)
        n_donors = np.unique(units[known]).size
        if n_donors < MIN_INNER_DONORS:
            kind = "stratified"
        else:
            sub = positions[known]
            k = min(n_folds, n_donors)
            splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed % (2 ** 32))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a class with fewer donors than folds
                folds = [(sub[a], sub[b]) for a, b in splitter.split(sub, y[sub], groups=units[sub])]
    if kind == "stratified":
        counts = pd.Series(y).value_counts()
        k = int(min(n_folds, max(2, counts.max())))
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % (2 ** 32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a class with fewer cells than folds
            folds = list(splitter.split(positions, y))
    usable = [(a, b) for a, b in folds if np.unique(y[a]).size >= 2 and b.size]
    return kind, usable


# --------------------------------------------------------------------------- selection

@dataclass
class Selection:
    """The outcome of one nested selection: the winner and every candidate's inner score."""

    winner: str
    scores: dict[str, float]
    kind: str
    n_folds: int
    n_units: int
    metric: str
    seconds: float = 0.0
    folds: list = field(default_factory=list, repr=False)  # (train, test) positions, for tests

    def ranking(self) -> list[str]:
        """Candidates best first (NaN last; ties in the candidates' order)."""
        order = list(self.scores)
        return sorted(order, key=lambda c: (-np.nan_to_num(self.scores[c], nan=-np.inf), order.index(c)))


def select(X, y, units, candidates: dict, kind: str = "stratified", metric: str = "macro_f1",
           seed: int = 0, n_folds: int = 3, species=None, pseudobulk: bool = False, cell_ids=None,
           model_seed: int | None = None) -> Selection:
    """Score every candidate by an inner split of the cells ``X`` (raw counts, cells x genes) and
    labels ``y``; the winner has the best pooled inner ``metric`` (ties: the first listed).

    Parameters
    ----------
    units
        Donor of each cell (``kind="donor"``; ``"unknown"`` for none).
    candidates
        ``name -> PipelineSpec`` (:class:`sclinbench.evaluate.spec.PipelineSpec`; a ``NestedSpec``'s candidates).
    kind
        :data:`INNER_SPLITS` (see :func:`inner_folds` for the fall-backs).
    seed
        Seed of the inner split; the candidates' own seed is ``model_seed`` (default ``seed``).
    pseudobulk
        Score candidates on one pseudobulk sample per donor (a ``donor_pseudobulk`` task).
    cell_ids
        Names of the cells (default their positions), used in the inner split table.
    """
    from sclinbench.evaluate.engine import evaluate
    from sclinbench.evaluate.metrics import classification_scores

    if metric not in NESTED_METRICS:
        raise SclinbenchError(f"nested metric '{metric}' is unknown; valid: {', '.join(NESTED_METRICS)}")
    if len(candidates) < 1:
        raise SclinbenchError("nested selection needs at least one candidate")
    t0 = time.perf_counter()
    y = np.asarray(y).astype(str)
    units = np.asarray(units).astype(str) if units is not None else np.full(y.size, "unknown")
    if pseudobulk and kind != "donor":
        raise SclinbenchError("pseudobulk nested selection holds out donors: use kind='donor'")
    used, folds = inner_folds(y, units, kind, n_folds, seed, species)
    if pseudobulk and used != "donor":
        raise SclinbenchError(f"nested selection of a pseudobulk task needs >= {MIN_INNER_DONORS} training donors, "
                              f"got {np.unique(units).size}")
    n_units = int(np.unique(units[_known(units)]).size) if used == "donor" else (
        int(np.unique(np.asarray(species).astype(str)).size) if used == "species" else int(y.size))
    scores = {name: np.nan for name in candidates}
    if folds:
        ids = np.asarray(cell_ids, dtype=str) if cell_ids is not None else np.char.add("c", np.arange(y.size).astype(str))
        obs = pd.DataFrame({"cell_type": pd.Categorical(y), "donor_id": units}, index=pd.Index(ids))
        adata = ad.AnnData(X=X if sp.issparse(X) else sp.csr_matrix(X), obs=obs)
        split_kind = "donor_pseudobulk" if pseudobulk else ("donor" if used == "donor" else "stratified")
        parts = []
        for f, (a, b) in enumerate(folds):
            for role, rows in (("train", a), ("test", b)):
                parts.append(pd.DataFrame({"cell_id": ids[rows], "fold": f, "role": role, "split_kind": split_kind,
                                           "group": ""}))
        table = pd.concat(parts, ignore_index=True)
        task = {"kind": "celltype", "label": "cell_type", "split": split_kind}
        pred = evaluate(adata, table, candidates, task, seed=seed if model_seed is None else model_seed,
                        dataset="inner split")
        for name, rows in pred.groupby("pipeline", sort=False):
            scores[name] = classification_scores(rows["y_true"], rows["y_pred"])[metric]
    sel = Selection(winner="", scores={n: float(v) for n, v in scores.items()}, kind=used, n_folds=len(folds),
                    n_units=n_units, metric=metric, folds=folds)
    sel.winner = sel.ranking()[0]
    sel.seconds = time.perf_counter() - t0
    log.info("nested selection (%s, %d inner folds over %d units): %s won with %s %.3f (%s) in %.1f s", used,
             len(folds), n_units, sel.winner, metric, sel.scores[sel.winner],
             ", ".join(f"{n} {v:.3f}" for n, v in sel.scores.items()), sel.seconds)
    if not folds:
        log.warning("nested selection: no inner fold has two classes in training; '%s' (listed first) is used",
                    sel.winner)
    return sel


def choose_for_reference(X, y, donors, candidates: dict, seed: int = 0, n_folds: int = 3,
                         metric: str = "macro_f1") -> dict:
    """Choose the pipeline that labels a query from a labelled reference alone: :func:`select` over
    ``candidates`` with folds of whole reference donors (``donors``, one per cell; cells of an
    unknown donor are not scored), or stratified folds of cells when fewer than
    :data:`MIN_INNER_DONORS` donors are known. Reproducible from ``seed`` (the inner split's and the
    candidates' seed).

    Returns the record kept in a model file: ``winner``, ``candidates`` (names, in order),
    ``scores`` (pooled inner ``metric`` per candidate), ``metric``, ``inner_split`` (``donor`` or
    ``stratified``), ``inner_folds``, ``n_units`` (donors or cells), ``n_scored_cells``, ``seed``,
    ``seconds``.
    """
    y = np.asarray(y).astype(str)
    sel = select(X, y, donors, candidates, kind="donor", metric=metric, seed=seed, n_folds=n_folds)
    n_scored = int(sum(b.size for _, b in sel.folds))
    return {"winner": sel.winner, "candidates": list(candidates), "scores": dict(sel.scores), "metric": sel.metric,
            "inner_split": sel.kind, "inner_folds": int(sel.n_folds), "n_units": int(sel.n_units),
            "n_scored_cells": n_scored, "seed": int(seed), "seconds": round(float(sel.seconds), 3)}


def describe_choice(record: dict) -> str:
    """One line saying how :func:`choose_for_reference` chose (for the console and the docs)."""
    unit = "donors" if record["inner_split"] == "donor" else "cells"
    how = "held-out reference donors" if record["inner_split"] == "donor" else "held-out reference cells (stratified)"
    scores = ", ".join(f"{n} {record['scores'][n]:.3f}" for n in record["candidates"])  # in the candidates' order
    return (f"{record['winner']} chosen among {len(record['candidates'])} candidates by nested selection on {how}, "
            f"{record['inner_folds']} folds over {record['n_units']} {unit} (seed {record['seed']}): "
            f"{record['metric']} {scores}")


def inner_kind(task: dict, test_groups: np.ndarray, train_species: np.ndarray | None) -> str:
    """The kind of inner split of one outer fold (see the module docstring)."""
    from sclinbench.evaluate.splits import DONOR_SPLITS, diagonal_spec

    split = task.get("split", "stratified")
    if split in DONOR_SPLITS:
        return "donor"
    if split != "cross_species":
        return "stratified"
    groups = {str(g) for g in test_groups}
    diagonal = all("->" in g and g.split("->")[0] == g.split("->")[1] for g in groups)
    if diagonal:
        return "donor" if diagonal_spec(task)["split"] == "donor" else "stratified"
    if train_species is not None and np.unique(np.asarray(train_species).astype(str)).size >= 3:
        return "species"
    return "donor"


def evaluate_nested(adata, splits: pd.DataFrame, pipelines: dict, task: dict, seed: int = 0,
                    dataset: str = "dataset") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions of nested pipelines for every outer test cell, and their selection table.

    ``pipelines``: ``name -> NestedSpec`` (:func:`sclinbench.evaluate.spec.parse_pipelines`). Per outer fold:
    :func:`select` on the fold's training cells only (its inner split seeded by
    :func:`inner_seed`), then the winner refitted on all training cells of the fold
    (:func:`sclinbench.evaluate.engine.evaluate` of that fold) predicts its test cells, under the nested
    pipeline's name. Returns ``(predictions, selection)`` (:data:`SELECTION_COLUMNS`).
    """
    from sclinbench.data.obs import task_label
    from sclinbench.evaluate.engine import evaluate
    from sclinbench.evaluate.predictions import assemble, cell_positions
    from sclinbench.evaluate.splits import iter_folds

    specs = pipelines
    bad = [name for name, s in specs.items() if not is_nested(s) or isinstance(s, Mapping)]
    if bad:
        raise SclinbenchError(f"evaluate_nested takes nested pipeline specs (sclinbench.evaluate.spec.parse_pipelines); "
                              f"'{bad[0]}' is not one")
    label = task_label(task)
    y_all = adata.obs[label].astype(str).to_numpy()
    donors = (adata.obs["donor_id"].astype(str).to_numpy() if "donor_id" in adata.obs.columns
              else np.full(adata.n_obs, "unknown", dtype=object))
    organisms = adata.obs["organism"].astype(str).to_numpy() if "organism" in adata.obs.columns else None
    pseudobulk = str(splits["split_kind"].iloc[0]) == "donor_pseudobulk"
    frames, rows = [], []
    for fold, test_groups, train_ids, _test_ids in iter_folds(splits):
        itrain = cell_positions(adata.obs_names, train_ids, dataset)
        train_species = None if organisms is None else organisms[itrain]
        kind = inner_kind(task, test_groups, train_species)
        train_groups = splits.loc[(splits["fold"] == fold) & (splits["role"] == "train"), "group"].unique()
        group = ", ".join(sorted({str(g) for g in train_groups if g})) or ", ".join(sorted({str(g) for g in test_groups if g}))
        X_train = adata.X[itrain]
        refitted: dict[str, pd.DataFrame] = {}
        for name, s in specs.items():
            sel = select(X_train, y_all[itrain], donors[itrain], s.candidates, kind=kind, metric=s.metric,
                         seed=inner_seed(seed, fold), n_folds=s.inner_folds, species=train_species,
                         pseudobulk=pseudobulk and kind == "donor", cell_ids=train_ids, model_seed=seed)
            log.info("%s fold %d (%s): %s chose %s (inner %s %.3f)", dataset, fold, group, name, sel.winner,
                     s.metric, sel.scores[sel.winner])
            if sel.winner not in refitted:
                one_fold = splits[splits["fold"] == fold]
                refitted[sel.winner] = evaluate(adata, one_fold, {sel.winner: s.candidates[sel.winner]}, task,
                                                seed=seed, dataset=dataset)
            frames.append(refitted[sel.winner].assign(pipeline=name))
            for rank, cand in enumerate(sel.ranking(), start=1):
                rows.append({"pipeline": name, "fold": int(fold), "group": group, "inner_split": sel.kind,
                             "inner_folds": sel.n_folds, "n_inner_units": sel.n_units, "metric": s.metric,
                             "candidate": cand, "inner_score": sel.scores[cand], "rank": rank,
                             "chosen": cand == sel.winner})
    return assemble(frames), pd.DataFrame(rows, columns=SELECTION_COLUMNS)


def win_counts(selection: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x task x nested pipeline and candidate: outer folds won, of how many, and the
    mean inner score when chosen (from a selection table with ``dataset`` and ``task`` columns)."""
    keys = [c for c in ("dataset", "task") if c in selection.columns] + ["pipeline"]
    chosen = selection[selection["chosen"].astype(str).str.lower() == "true"]
    n = selection.groupby(keys, sort=True)["fold"].nunique().rename("n_folds")
    won = chosen.groupby(keys + ["candidate"], sort=True).agg(
        folds_won=("fold", "nunique"), mean_inner_score=("inner_score", "mean")).reset_index()
    out = won.merge(n.reset_index(), on=keys)
    return out.sort_values(keys + ["folds_won", "candidate"], ascending=[True] * len(keys) + [False, True]
                           ).reset_index(drop=True)
