"""Split tables: which cells train and which cells test, per fold.

Every evaluation of a dataset x task reads the same split table, so all pipelines are compared on
identical folds and paired comparisons are valid. A split table is *long*: one row per cell per fold
in which the cell is used (a cell is a test cell in exactly one fold of a k-fold split, but in one
fold per training species of a cross-species split).

Columns: :data:`sclinbench.workflow.contracts.SPLIT_COLUMNS` (``cell_id, fold, role (train/test), split_kind, group``).

``group`` names what a fold is about: ``"<train organism>-><test organism>"`` for the test cells of
cross-species transfer folds (their training cells, every cell of the training organism, carry
``"a->*"``), ``"a->a"`` for the folds of the same-species diagonal (a cross-validation *within*
species ``a``, folds of their own that never shrink the transfer training sets), the held-out label
for novel-type folds, the held-out donor for leave-one-donor-out folds, ``""`` otherwise.

``stratified_holdout`` (Souza & Mehta's Tabula Sapiens protocol) draws ``n_repeats`` independent
stratified ``1 - test_fraction`` / ``test_fraction`` splits, split ``i`` being scikit-learn's
``train_test_split(cells, stratify=labels, test_size=test_fraction, random_state=seed + i)`` (with the
default seed 0: random_state 0, 1, ..., as the paper). Unlike a k-fold split, a cell is then a test
cell of several folds (about ``n_repeats * test_fraction`` of them), so the score stage reports the
mean over the splits of each split's metric, with an interval that resamples each distinct unit
once (:class:`sclinbench.evaluate.scopes.RepeatedHoldoutScope`), never the pooled predictions.

**Donor-level labels** (every donor has one label, e.g. disease state): donor-held-out splits hold
out donors of *every* class together (:func:`class_balanced_donor_folds`): ``leave_one_donor_out`` and
``donor_pseudobulk`` leave one donor per class out (as many folds as the smallest class has donors;
a larger class's extra donors are spread over the folds), ``donor`` deals each class's donors over
``n_folds`` folds. Holding out one donor at a time would make the training majority the other class in
every fold, so that a majority or shuffled-label control anti-learns (balanced accuracy 0) and any
method looks far above its control. The group of such a fold names its held-out donors
(``"d1+d5"``).

Donor-held-out splits (``donor``, ``leave_one_donor_out``, ``donor_pseudobulk`` and a donor
diagonal) stop with a one-line error when a fold's test donors hold a class that none of its
training donors has (such a class cannot be learnt, so scoring it would be meaningless); the task
option ``min_donors_per_class`` drops classes seen in fewer donors before splitting (logged).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from sclinbench.data.obs import task_label
from sclinbench.errors import SclinbenchError
from sclinbench.workflow.contracts import SPLIT_COLUMNS

log = logging.getLogger(__name__)

SPLIT_KINDS = ("stratified", "donor", "leave_one_donor_out", "donor_pseudobulk", "cross_species",
               "novel_type", "stratified_holdout")
#: Splits whose folds are independent draws: a cell is tested in several folds (scored per fold,
#: then averaged over the folds; :mod:`sclinbench.evaluate.intervals`).
REPEATED_SPLITS = ("stratified_holdout",)
#: ``stratified_holdout`` defaults (the paper's Tabula Sapiens protocol: 5 splits of 80/20).
HOLDOUT_DEFAULTS = {"n_repeats": 5, "test_fraction": 0.2}
#: Splits that hold whole donors out (their folds are checked for classes absent from training).
DONOR_SPLITS = ("donor", "leave_one_donor_out", "donor_pseudobulk")
#: How the same-species diagonal of a cross-species task is cross-validated (``stratified_holdout``:
#: one stratified hold-out of ``test_fraction`` of each species' cells, the paper's 10%).
DIAGONAL_SPLITS = ("stratified", "donor", "stratified_holdout")
#: The keys of a diagonal and the splits they apply to.
DIAGONAL_KEYS = {"split": DIAGONAL_SPLITS, "n_folds": ("stratified", "donor"),
                 "test_fraction": ("stratified_holdout",)}
DEFAULT_DIAGONAL_FRACTION = 0.2
PROTOCOLS = ("strict", "paper")
DEFAULT_DIAGONAL = {"split": "stratified", "n_folds": 5}


def task_cells(obs: pd.DataFrame, spec: dict, dataset: str = "dataset") -> pd.DataFrame:
    """The cells a task uses: the task's ``subset`` applied, cells without a label set aside.

    Cells without a label (missing, empty or blank; standardization turns the registry's
    ``unlabelled:`` values such as "unknown" into missing) cannot be scored and are no class, so
    they neither train nor test; how many were set aside is logged (never silent). Donor-held-out
    splits also set aside cells whose donor is unknown when other cells have known donors: an
    "unknown" donor is no individual to hold out.
    """
    label = task_label(spec)
    if label not in obs.columns:
        raise SclinbenchError(
            f"task '{spec.get('name', spec['kind'])}' predicts obs column '{label}', which dataset "
            f"'{dataset}' does not have (columns: {', '.join(map(str, obs.columns))}); map it under "
            f"'columns:' in the dataset's registry entry or set the task's 'label:'"
        )
    keep = pd.Series(True, index=obs.index)
    for column, values in (spec.get("subset") or {}).items():
        if column not in obs.columns:
            raise SclinbenchError(
                f"task subset column '{column}' is not in dataset '{dataset}' "
                f"(columns: {', '.join(map(str, obs.columns))})"
            )
        keep &= obs[column].astype(str).isin([str(v) for v in values])
    text = obs[label].astype(object).where(obs[label].notna(), "").astype(str).str.strip()
    labelled = obs[label].notna() & (text != "") & (text != "nan")
    n_unlabelled = int((keep & ~labelled).sum())
    if n_unlabelled:
        log.warning("%d of %d cells of %s have no '%s' (unlabelled): set aside, neither trained on nor "
                    "scored in task '%s'", n_unlabelled, int(keep.sum()), dataset, label,
                    spec.get("name", spec["kind"]))
    if spec.get("split") in ("donor", "leave_one_donor_out", "donor_pseudobulk") and "donor_id" in obs.columns:
        donors = obs["donor_id"].astype(object).where(obs["donor_id"].notna(), "").astype(str)
        unknown = donors.isin(["", "nan", "unknown"])
        if (keep & labelled & ~unknown).any():
            n_unknown = int((keep & labelled & unknown).sum())
            if n_unknown:
                log.warning("%d cells of %s have no known donor: set aside by the donor-held-out split of "
                            "task '%s'", n_unknown, dataset, spec.get("name", spec["kind"]))
            keep &= ~unknown
    cells = obs.loc[keep & labelled]
    if cells.empty:
        raise SclinbenchError(
            f"no cells of dataset '{dataset}' are left for task '{spec.get('name', spec['kind'])}' "
            f"after the subset {spec.get('subset')} and removing cells without '{label}'"
        )
    return cells


def _check_class_sizes(y: pd.Series, n_folds: int, label: str, dataset: str, where: str = "") -> None:
    counts = y.value_counts()
    small = counts[counts < n_folds]
    if len(small):
        name, n = small.index[0], int(small.iloc[0])
        raise SclinbenchError(
            f"class '{name}' of column '{label}' in dataset '{dataset}'{where} has {n} cells, fewer "
            f"than n_folds={n_folds}: lower the task's n_folds or set its min_cells_per_class to drop "
            f"classes this small ({len(small)} class(es) affected)"
        )


def _drop_small_classes(cells: pd.DataFrame, label: str, min_cells: int, dataset: str,
                        by: str | None = None) -> pd.DataFrame:
    """Drop classes with fewer than ``min_cells`` cells (within each value of column ``by``)."""
    if not min_cells:
        return cells
    keys = [by, label] if by else [label]
    counts = cells.groupby(keys, observed=True).size()
    small = counts[counts < min_cells]
    if len(small):
        log.warning(
            "dataset %s: classes of '%s' with fewer than %d cells%s excluded from the task "
            "(min_cells_per_class): %s", dataset, label, min_cells, f" per {by}" if by else "",
            ", ".join(f"{'/'.join(map(str, k)) if isinstance(k, tuple) else k} ({v})"
                      for k, v in small.items()),
        )
        drop = pd.MultiIndex.from_frame(cells[keys]).isin(small.index) if by else cells[label].isin(small.index)
        return cells[~np.asarray(drop)]
    return cells


def _drop_few_donor_classes(cells: pd.DataFrame, label: str, min_donors: int, dataset: str,
                            by: str | None = None) -> pd.DataFrame:
    """Drop classes present in fewer than ``min_donors`` donors (within each value of ``by``)."""
    if not min_donors:
        return cells
    if "donor_id" not in cells.columns:
        raise SclinbenchError(f"min_donors_per_class needs a 'donor_id' column, which dataset '{dataset}' "
                              "does not have; map it under 'columns: donor_id:' in the registry")
    keys = [by, label] if by else [label]
    n_donors = cells.groupby(keys, observed=True)["donor_id"].nunique()
    few = n_donors[n_donors < min_donors]
    if len(few):
        sizes = cells.groupby(keys, observed=True).size()
        log.warning(
            "dataset %s: classes of '%s' seen in fewer than %d donors%s excluded from the task "
            "(min_donors_per_class): %s", dataset, label, min_donors, f" per {by}" if by else "",
            ", ".join(f"{'/'.join(map(str, k)) if isinstance(k, tuple) else k} ({int(v)} donor(s), "
                      f"{int(sizes[k])} cells)" for k, v in few.items()),
        )
        drop = pd.MultiIndex.from_frame(cells[keys]).isin(few.index) if by else cells[label].isin(few.index)
        return cells[~np.asarray(drop)]
    return cells


def _frame(cell_ids, fold: int, role: str, kind: str, group: str = "") -> pd.DataFrame:
    return pd.DataFrame({"cell_id": np.asarray(cell_ids, dtype=object), "fold": fold, "role": role,
                         "split_kind": kind, "group": group})


def _donors(cells: pd.DataFrame, dataset: str, need: int, where: str = "") -> pd.Series:
    if "donor_id" not in cells.columns:
        raise SclinbenchError(f"dataset '{dataset}' has no 'donor_id': donor-held-out splits need one; "
                              f"map it under 'columns: donor_id:' in the registry or use split: stratified")
    donors = cells["donor_id"].astype(str)
    n = donors.nunique()
    if (donors == "unknown").all() or n < need:
        raise SclinbenchError(
            f"dataset '{dataset}'{where} has {n if not (donors == 'unknown').all() else 0} known donor(s); "
            f"a donor-held-out split needs at least {need}: use split: stratified or fewer n_folds"
        )
    return donors


def check_training_classes(table: pd.DataFrame, cells: pd.DataFrame, label: str, dataset: str,
                           where: str = "") -> None:
    """Stop when a fold tests a class that none of its training cells has.

    Used for donor-held-out splits, where a class found only in the held-out donors cannot be
    learnt: the message names the class, the donors that hold it and the fix.
    """
    y = cells[label].astype(str)
    pos = pd.Series(np.arange(len(cells)), index=cells.index)
    yv = y.to_numpy()
    for fold, rows in table.groupby("fold", sort=True):
        train = rows["role"].to_numpy() == "train"
        idx = pos.loc[rows["cell_id"].to_numpy()].to_numpy()
        missing = sorted(set(yv[idx[~train]]) - set(yv[idx[train]]))
        if missing:
            name = missing[0]
            donors = sorted(cells.loc[y == name, "donor_id"].astype(str).unique())
            raise SclinbenchError(
                f"dataset '{dataset}'{where}: class '{name}' of '{label}' is absent from the training "
                f"donors of fold {int(fold)}: all its cells are in donor(s) {', '.join(donors)}, held out "
                f"together ({len(missing)} class(es) affected); set the task's min_donors_per_class: "
                f"{len(donors) + 1} to drop classes seen in so few donors, or use fewer n_folds"
            )


def donor_level_labels(cells: pd.DataFrame, label: str) -> bool:
    """True when every donor of ``cells`` has one value of ``label`` (a donor-level label such as
    disease state), so that holding out a donor holds out one class."""
    if "donor_id" not in cells.columns:
        return False
    return bool((cells.groupby(cells["donor_id"].astype(str), observed=True)[label].nunique() == 1).all())


def class_balanced_donor_folds(cells: pd.DataFrame, label: str, seed: int, dataset: str,
                               n_folds: int | None = None, where: str = "") -> list[list[str]]:
    """Held-out donors of each fold, every fold holding out donors of every class (donor-level labels).

    Each class's donors are shuffled (seeded) and dealt over the folds in turn, the deal of each class
    starting where the previous class's ended, so fold sizes stay even. ``n_folds=None``: one donor of
    the smallest class per fold ("leave one donor per class out"); a number larger than the smallest
    class's donor count is lowered to it (logged), since a fold without a class would leave that
    class's training share higher in every other fold. A class with a single donor cannot be held out
    and still be learnt: that is the one-line error of :func:`check_training_classes`.
    """
    donors = _donors(cells, dataset, need=2, where=where)
    per_class = cells.groupby(cells[label].astype(str), observed=True)["donor_id"].agg(
        lambda d: sorted(pd.unique(d.astype(str))))
    smallest = int(per_class.map(len).min())
    k = smallest if n_folds is None else min(int(n_folds), smallest)
    if n_folds is not None and k < n_folds:
        small = per_class.map(len).idxmin()
        log.warning("dataset %s%s: class '%s' of '%s' has %d donor(s), so %d folds (not n_folds=%d) hold out "
                    "donors of every class", dataset, where, small, label, smallest, k, n_folds)
    if k < 2:
        return [[d] for d in sorted(donors.unique())]  # the training-class check names the class
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    start = 0
    for _cls, names in per_class.items():
        order = [names[i] for i in rng.permutation(len(names))]
        for j, name in enumerate(order):
            folds[(start + j) % k].append(name)
        start = (start + len(order)) % k
    return [sorted(f) for f in folds]


def _donor_fold_table(cells: pd.DataFrame, held_out: list[list[str]], kind: str, group: str | None) -> pd.DataFrame:
    donors = cells["donor_id"].astype(str)
    parts = []
    for fold, names in enumerate(held_out):
        test = donors.isin(names).to_numpy()
        g = "+".join(names) if group is None else group
        parts += [_frame(cells.index[~test], fold, "train", kind, g), _frame(cells.index[test], fold, "test", kind, g)]
    return pd.concat(parts, ignore_index=True)


def kfold(cells: pd.DataFrame, label: str, n_folds: int, seed: int, dataset: str,
          kind: str = "stratified", group: str = "", where: str = "") -> pd.DataFrame:
    """Stratified k-fold over cells (``kind="stratified"``) or over donors (``kind="donor"``; with
    donor-level labels every fold holds out donors of every class, :func:`class_balanced_donor_folds`)."""
    y = cells[label].astype(str)
    if kind == "donor" and donor_level_labels(cells, label):
        _donors(cells, dataset, need=n_folds, where=where)
        held = class_balanced_donor_folds(cells, label, seed, dataset, n_folds, where)
        table = _donor_fold_table(cells, held, kind, group)
        check_training_classes(table, cells, label, dataset, where)
        return table
    if kind == "stratified":
        _check_class_sizes(y, n_folds, label, dataset, where)
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = splitter.split(np.zeros(len(y)), y)
    else:
        donors = _donors(cells, dataset, need=n_folds, where=where)
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = splitter.split(np.zeros(len(y)), y, groups=donors)
    parts = []
    ids = cells.index.to_numpy()
    for fold, (train, test) in enumerate(folds):
        parts += [_frame(ids[train], fold, "train", kind, group), _frame(ids[test], fold, "test", kind, group)]
    table = pd.concat(parts, ignore_index=True)
    if kind == "donor":
        check_training_classes(table, cells, label, dataset, where)
    return table


def leave_one_donor_out(cells: pd.DataFrame, label: str, dataset: str,
                        kind: str = "donor_pseudobulk", seed: int = 0) -> pd.DataFrame:
    """One fold per donor (that donor's cells test, every other donor's cells train), or, with
    donor-level labels, one donor *per class* per fold (:func:`class_balanced_donor_folds`).

    ``kind="leave_one_donor_out"`` is the cell-level split (a donor may hold several classes: then
    one donor per fold, group = the donor); ``kind="donor_pseudobulk"`` needs one label per donor
    (one pseudobulk sample per donor), so its folds always hold out one donor of every class.
    """
    donors = _donors(cells, dataset, need=2)
    per_donor = cells.groupby(donors, observed=True)[label].nunique()
    mixed = per_donor[per_donor > 1]
    if kind == "donor_pseudobulk" and len(mixed):
        raise SclinbenchError(
            f"donor '{mixed.index[0]}' of dataset '{dataset}' has several values of '{label}'; donor-level "
            f"(pseudobulk) prediction needs one {label} per donor: use split: leave_one_donor_out or "
            f"split: donor for a cell-level task"
        )
    if not len(mixed) and cells[label].nunique() > 1:
        held = class_balanced_donor_folds(cells, label, seed, dataset)
    else:
        held = [[d] for d in sorted(donors.unique())]
    table = _donor_fold_table(cells, held, kind, None)
    check_training_classes(table, cells, label, dataset)
    return table


def diagonal_spec(spec: dict) -> dict:
    """The same-species diagonal of a cross-species task: ``{split, n_folds}`` (k-fold),
    ``{split: stratified_holdout, test_fraction}`` (one stratified hold-out) or ``{split: none}``."""
    value = spec.get("diagonal", DEFAULT_DIAGONAL)
    name = spec.get("name", spec.get("kind"))
    if value == "none":
        return {"split": "none"}
    if not isinstance(value, dict):
        raise SclinbenchError(f"task '{name}': diagonal must be a mapping like {{split: stratified, n_folds: 5}} "
                              f"or none, got {value!r}")
    unknown = sorted(set(value) - set(DIAGONAL_KEYS))
    if unknown:
        raise SclinbenchError(f"task '{name}': unknown key(s) {', '.join(unknown)} under diagonal; valid: "
                              f"{', '.join(DIAGONAL_KEYS)}")
    out = {**DEFAULT_DIAGONAL, **value}
    if out["split"] not in DIAGONAL_SPLITS:
        raise SclinbenchError(f"task '{name}': diagonal.split '{out['split']}' is unknown; valid: "
                              f"{', '.join(DIAGONAL_SPLITS)}")
    for key in value:
        if key != "split" and out["split"] not in DIAGONAL_KEYS[key]:
            raise SclinbenchError(f"task '{name}': diagonal.{key} does not apply to diagonal.split "
                                  f"'{out['split']}' (only to {', '.join(DIAGONAL_KEYS[key])}); remove it")
    if out["split"] == "stratified_holdout":
        fraction = _fraction(value.get("test_fraction", DEFAULT_DIAGONAL_FRACTION), f"task '{name}': diagonal.test_fraction")
        return {"split": "stratified_holdout", "test_fraction": fraction}
    n = out["n_folds"]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise SclinbenchError(f"task '{name}': diagonal.n_folds must be an integer >= 2, got {n!r}")
    return {"split": out["split"], "n_folds": int(n)}


def _fraction(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < value < 1:
        raise SclinbenchError(f"{where} must be a number between 0 and 1 (exclusive), got {value!r}")
    return float(value)


def holdout_spec(spec: dict) -> dict:
    """``{n_repeats, test_fraction}`` of a ``stratified_holdout`` task (defaults
    :data:`HOLDOUT_DEFAULTS`); ``n_folds`` is refused (the splits are draws, not folds)."""
    name = spec.get("name", spec.get("kind"))
    if spec.get("n_folds") is not None:
        raise SclinbenchError(f"task '{name}': n_folds does not apply to split stratified_holdout (independent "
                              f"stratified hold-outs): set n_repeats (default 5) and test_fraction (default 0.2)")
    n = spec.get("n_repeats", HOLDOUT_DEFAULTS["n_repeats"])
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SclinbenchError(f"task '{name}': n_repeats must be an integer >= 1, got {n!r}")
    fraction = _fraction(spec.get("test_fraction", HOLDOUT_DEFAULTS["test_fraction"]), f"task '{name}': test_fraction")
    return {"n_repeats": int(n), "test_fraction": fraction}


def stratified_holdout(cells: pd.DataFrame, label: str, test_fraction: float, n_repeats: int, seed: int,
                       dataset: str, kind: str = "stratified_holdout", group: str = "",
                       where: str = "") -> pd.DataFrame:
    """``n_repeats`` independent stratified hold-outs of ``test_fraction`` of the cells.

    Split ``i`` (fold ``i``) is ``sklearn.model_selection.train_test_split(cell ids, stratify=labels,
    test_size=test_fraction, random_state=seed + i)`` on the cells in their order in the dataset:
    with seed 0 and 5 repeats, random_state 0-4 as Souza & Mehta, so the same cells in the same order
    give the paper's splits exactly. A class needs 2 cells to be stratified, and the test and
    training sets need at least one cell per class: both are one-line errors naming the fix.
    """
    y = cells[label].astype(str)
    counts = y.value_counts()
    small = counts[counts < 2]
    if len(small):
        raise SclinbenchError(
            f"class '{small.index[0]}' of column '{label}' in dataset '{dataset}'{where} has "
            f"{int(small.iloc[0])} cell: a stratified hold-out needs >= 2 per class; set the task's "
            f"min_cells_per_class to drop classes this small ({len(small)} class(es) affected)"
        )
    n, k = len(y), len(counts)
    n_test = int(np.ceil(test_fraction * n))
    if n_test < k or n - n_test < k:
        raise SclinbenchError(
            f"dataset '{dataset}'{where}: a {test_fraction:g} hold-out of {n} cells puts {n_test} cells in the "
            f"test set and {n - n_test} in training, fewer than the {k} classes of '{label}': change "
            f"test_fraction or raise min_cells_per_class"
        )
    ids, labels = cells.index.to_numpy(), y.to_numpy()
    parts = []
    for fold in range(n_repeats):
        train_ids, test_ids = train_test_split(ids, test_size=test_fraction, random_state=seed + fold,
                                               stratify=labels)
        parts += [_frame(train_ids, fold, "train", kind, group), _frame(test_ids, fold, "test", kind, group)]
    return pd.concat(parts, ignore_index=True)


def cross_species(cells: pd.DataFrame, label: str, seed: int, dataset: str,
                  organisms: list[str] | None = None, diagonal: dict | None = None) -> pd.DataFrame:
    """Transfer folds (one per training organism) and the folds of the same-species diagonal.

    Transfer fold ``i`` trains on **every** cell of organism ``i`` (group ``"a->*"``) and tests every
    cell of each other organism (group ``"a->b"``). The diagonal is a cross-validation within each
    organism (``diagonal = {split: stratified | donor, n_folds}``, or one stratified hold-out
    ``{split: stratified_holdout, test_fraction}``; group ``"a->a"``), in folds of its own numbered
    after the transfer folds, so it never takes cells away from a transfer training set.
    """
    if "organism" not in cells.columns:
        raise SclinbenchError(f"dataset '{dataset}' has no 'organism' column: a cross-species task needs one")
    org = cells["organism"].astype(str)
    present = sorted(org.unique())
    organisms = organisms or present
    missing = sorted(set(organisms) - set(present))
    if missing or len(organisms) < 2:
        raise SclinbenchError(
            f"cross-species task on '{dataset}' needs >= 2 organisms; asked for {organisms}, "
            f"the dataset has {present}"
        )
    diagonal = diagonal or dict(DEFAULT_DIAGONAL)
    parts = []
    for fold, train_org in enumerate(organisms):
        parts.append(_frame(cells.index[org == train_org], fold, "train", "cross_species", f"{train_org}->*"))
        for test_org in organisms:
            if test_org != train_org:
                parts.append(_frame(cells.index[org == test_org], fold, "test", "cross_species",
                                    f"{train_org}->{test_org}"))
    next_fold = len(organisms)
    if diagonal["split"] != "none":
        for a in organisms:
            mine = cells[org == a]
            where = f" (species '{a}', same-species diagonal)"
            if diagonal["split"] == "stratified_holdout":
                sub = stratified_holdout(mine, label, diagonal["test_fraction"], 1, seed, dataset,
                                         group=f"{a}->{a}", where=where)
            else:
                sub = kfold(mine, label, diagonal["n_folds"], seed, dataset, kind=diagonal["split"],
                            group=f"{a}->{a}", where=where)
            sub["fold"] += next_fold
            sub["split_kind"] = "cross_species"
            next_fold = int(sub["fold"].max()) + 1
            parts.append(sub)
    return pd.concat(parts, ignore_index=True)


def novel_type(cells: pd.DataFrame, label: str, test_fraction: float, seed: int, dataset: str,
               min_cells: int = 10) -> pd.DataFrame:
    """One fold per held-out label: it is removed from training; its cells join the test cells.

    Training cells: a stratified ``1 - test_fraction`` of the cells of every other label. Test:
    the rest of those (known types) plus all cells of the held-out label (novel).
    """
    y = cells[label].astype(str)
    counts = y.value_counts()
    candidates = sorted(counts[counts >= min_cells].index)
    if len(counts) < 3:
        raise SclinbenchError(f"novel-type task on '{dataset}' needs >= 3 classes of '{label}', found {len(counts)}")
    parts = []
    for fold, held in enumerate(candidates):
        known = cells[y != held]
        yk = known[label].astype(str)
        strat = yk if yk.value_counts().min() >= 2 else None
        train_ids, test_ids = train_test_split(known.index.to_numpy(), test_size=test_fraction,
                                               random_state=seed, stratify=strat)
        parts += [_frame(train_ids, fold, "train", "novel_type", held),
                  _frame(test_ids, fold, "test", "novel_type", held),
                  _frame(cells.index[y == held], fold, "test", "novel_type", held)]
    return pd.concat(parts, ignore_index=True)


def make_splits(obs: pd.DataFrame, spec: dict, seed: int = 0, dataset: str = "dataset") -> pd.DataFrame:
    """Build the split table of one task on one dataset.

    Parameters
    ----------
    obs
        The standardized dataset's ``obs`` (index = cell ids).
    spec
        One ``tasks:`` entry of the config: ``kind``, ``split``, and the split's parameters
        (``n_folds``, ``n_repeats``, ``test_fraction``, ``min_cells_per_class``,
        ``min_donors_per_class``, ``label``, ``subset``, ``organisms``, ``diagonal``).
    seed
        Seed of every random choice.
    dataset
        Name used in messages.
    """
    split = spec["split"]
    if split not in SPLIT_KINDS:
        raise SclinbenchError(f"unknown split '{split}' in task '{spec.get('name')}'; use one of {', '.join(SPLIT_KINDS)}")
    name = spec.get("name", spec["kind"])
    if spec.get("protocol", "strict") not in PROTOCOLS:
        raise SclinbenchError(f"task '{name}': protocol '{spec.get('protocol')}' is unknown; valid: "
                              f"{', '.join(PROTOCOLS)}")
    if split == "cross_species" and spec.get("test_fraction") is not None:
        raise SclinbenchError(
            f"task '{name}': test_fraction does not apply to cross_species tasks (transfer folds train on "
            f"every cell of the training species); set the same-species diagonal with "
            f"diagonal: {{split: stratified, n_folds: 5}} instead"
        )
    if split != "cross_species" and "diagonal" in spec:
        raise SclinbenchError(f"task '{name}': diagonal applies to cross_species tasks only")
    if split not in REPEATED_SPLITS and spec.get("n_repeats") is not None:
        raise SclinbenchError(f"task '{name}': n_repeats applies to split stratified_holdout only")
    holdout = holdout_spec({**spec, "name": name}) if split == "stratified_holdout" else None
    label = task_label(spec)
    cells = task_cells(obs, spec, dataset)
    per = "organism" if split == "cross_species" and "organism" in cells.columns else None
    cells = _drop_small_classes(cells, label, spec.get("min_cells_per_class", 0), dataset, by=per)
    cells = _drop_few_donor_classes(cells, label, spec.get("min_donors_per_class", 0), dataset, by=per)
    if cells.empty:
        raise SclinbenchError(f"no cells of '{dataset}' left after min_cells_per_class="
                              f"{spec.get('min_cells_per_class')} / min_donors_per_class="
                              f"{spec.get('min_donors_per_class')}")
    if split in ("stratified", "donor"):
        table = kfold(cells, label, int(spec.get("n_folds", 5)), seed, dataset, kind=split)
    elif split in ("donor_pseudobulk", "leave_one_donor_out"):
        table = leave_one_donor_out(cells, label, dataset, kind=split, seed=seed)
    elif split == "cross_species":
        table = cross_species(cells, label, seed, dataset, spec.get("organisms"), diagonal_spec(spec))
    elif split == "stratified_holdout":
        table = stratified_holdout(cells, label, holdout["test_fraction"], holdout["n_repeats"], seed, dataset)
    else:
        table = novel_type(cells, label, float(spec.get("test_fraction", 0.2)), seed, dataset,
                           int(spec.get("min_novel_cells", 10)))
    log.info("%s: %d folds, %d train and %d test rows (%s split of '%s')", dataset, table["fold"].nunique(),
             int((table.role == "train").sum()), int((table.role == "test").sum()), split, label)
    return table[SPLIT_COLUMNS]


def iter_folds(table: pd.DataFrame):
    """Yield ``(fold, group_of_each_test_cell, train_ids, test_ids)`` per fold of a split table."""
    for fold, rows in table.groupby("fold", sort=True):
        train = rows[rows.role == "train"]
        test = rows[rows.role == "test"]
        yield int(fold), test["group"].to_numpy(), train["cell_id"].to_numpy(), test["cell_id"].to_numpy()
