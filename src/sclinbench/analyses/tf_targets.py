"""Transcription-factor target recovery (Souza & Mehta 2026, Sec. VI).

On the rankz representation of every cell (:func:`sclinbench.represent.rankz`, over all genes) a
gene is *on* in a cell where its z > 0 (expressed and above the cell's median rank); a cell is
*TF-active* where the TF's own z lies above the quantile ``q`` of the TF's z over all cells. Per
gene with ``P(on) >= min_frequency`` (the TF itself excluded):

    PMI = log P(on | TF active) / P(on)

(a gene on in no active cell counts half a cell, so its PMI stays finite), z-scored across the
tested genes, two-sided normal p values, Benjamini-Hochberg FDR (scipy); genes with FDR < ``fdr``
are significant and are validated against STRING: a significant gene is *in STRING* when STRING
links it to the TF with a combined score >= ``min_score``. ``base_rate`` is the share of the tested
genes STRING links to the TF: the rate a random gene set reaches.

Settings, all in one table: ``declared`` (one (q, min_frequency) fixed before the run); ``tuned``
(the paper's: the (q, min_frequency) of a grid with the most significant genes, per TF -- chosen on
the result, so optimistic); controls with TF activity permuted across cells (a new permutation per
draw) at the declared setting and re-tuned on the grid per permutation. Intervals: percentile
bootstrap over cells (the declared setting; activity flags fixed per cell).
"""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from sclinbench.analyses.plan import DEFAULTS
from sclinbench.errors import SclinbenchError
from sclinbench.represent.rank import rankz

log = logging.getLogger("sclinbench.analyses")

TF_COLUMNS = ["dataset", "tf", "setting", "quantile", "min_frequency", "n_cells", "n_active", "n_genes_tested",
              "n_significant", "n_significant_up", "n_in_string", "rate", "base_rate", "n_string_partners",
              "n_significant_ci_low", "n_significant_ci_high", "rate_ci_low", "rate_ci_high", "n_draws",
              "interval", "string_source"]
GRID_COLUMNS = ["dataset", "tf", "quantile", "min_frequency", "n_genes_tested", "n_significant", "n_in_string",
                "rate"]
GENE_COLUMNS = ["dataset", "tf", "gene", "gene_symbol", "p_on", "p_on_active", "pmi", "z", "p_value", "fdr",
                "significant", "in_string"]
SETTINGS = {"declared": "declared", "tuned": "tuned (chosen on the result: optimistic)",
            "control_declared": "control: activity permuted (declared setting)",
            "control_tuned": "control: activity permuted (re-tuned on the grid)"}


# ------------------------------------------------------------------------------------------ STRING

def _open_text(path):
    return gzip.open(path, "rt") if str(path).endswith(".gz") else open(path)


def read_string_aliases(path, names) -> pd.DataFrame:
    """Rows ``protein, alias`` of a STRING ``protein.aliases`` file whose alias is in ``names``."""
    names = set(map(str, names))
    with _open_text(path) as fh:
        header = fh.readline()
        if "string_protein_id" not in header and "protein" not in header:
            raise SclinbenchError(f"{path}: not a STRING aliases file (first line {header.strip()[:80]!r}; expected "
                                  "'#string_protein_id alias source')")
        out = []
        for chunk in pd.read_csv(fh, sep="\t", header=None, usecols=[0, 1], names=["protein", "alias"], dtype=str,
                                 chunksize=1_000_000):
            out.append(chunk[chunk["alias"].isin(names)])
    return pd.concat(out, ignore_index=True).drop_duplicates() if out else pd.DataFrame(columns=["protein", "alias"])


def read_string_links(path, proteins, min_score: int) -> pd.DataFrame:
    """Rows ``protein1, protein2, combined_score`` of a STRING ``protein.links`` file with protein1 in
    ``proteins`` and combined_score >= ``min_score`` (the file lists every link both ways)."""
    proteins = set(proteins)
    with _open_text(path) as fh:
        header = fh.readline().split()
        if header[:2] != ["protein1", "protein2"] or "combined_score" not in header:
            raise SclinbenchError(f"{path}: not a STRING links file (header {' '.join(header)[:80]!r}; expected "
                                  "'protein1 protein2 combined_score')")
        col = header.index("combined_score")
        out = []
        for chunk in pd.read_csv(fh, sep=" ", header=None, usecols=[0, 1, col], dtype={0: str, 1: str},
                                 chunksize=2_000_000):
            chunk.columns = ["protein1", "protein2", "combined_score"]
            out.append(chunk[chunk["protein1"].isin(proteins) & (chunk["combined_score"] >= min_score)])
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["protein1", "protein2", "combined_score"])


def string_partners(aliases_path, links_path, tfs, gene_names: pd.DataFrame, min_score: int) -> dict[str, set]:
    """TF -> the set of dataset gene ids STRING links to it (combined score >= ``min_score``).

    ``gene_names``: index = gene id, column ``gene_symbol``; a gene matches a STRING protein by its
    id or its symbol among the protein's aliases.
    """
    names = set(gene_names.index.astype(str)) | set(gene_names["gene_symbol"].dropna().astype(str)) | set(tfs)
    aliases = read_string_aliases(aliases_path, names)
    tf_proteins = {tf: set(aliases.loc[aliases["alias"] == tf, "protein"]) for tf in tfs}
    links = read_string_links(links_path, set().union(*tf_proteins.values()) if tf_proteins else set(), min_score)
    protein_genes: dict[str, set] = {}
    alias_to_gene = {}
    for gid, sym in zip(gene_names.index.astype(str), gene_names["gene_symbol"].astype(str)):
        alias_to_gene.setdefault(gid, set()).add(gid)
        alias_to_gene.setdefault(sym, set()).add(gid)
    for protein, alias in zip(aliases["protein"], aliases["alias"]):
        protein_genes.setdefault(protein, set()).update(alias_to_gene.get(alias, ()))
    out = {}
    for tf, prots in tf_proteins.items():
        partners = links.loc[links["protein1"].isin(prots), "protein2"]
        out[tf] = set().union(*(protein_genes.get(p, set()) for p in partners)) if len(partners) else set()
        if not prots:
            log.info("TF %s: no STRING protein has it as an alias", tf)
    return out


# ------------------------------------------------------------------------------------------ PMI

def on_matrix(X) -> tuple[sp.csr_matrix, object]:
    """(cells x genes 0/1 CSR: rankz z > 0, the rankz OffsetCSR). Zeros are never on (their z < 0)."""
    R = rankz(sp.csr_matrix(X), dtype=np.float64)
    S = R.S
    values = S.data + np.repeat(R.offset, np.diff(S.indptr))
    # own index arrays: eliminate_zeros works in place, and S shares its arrays with the counts
    on = sp.csr_matrix(((values > 0).astype(np.float64), S.indices.copy(), S.indptr.copy()), shape=S.shape)
    on.eliminate_zeros()
    return on, R


def tf_z(R, column: int) -> np.ndarray:
    """The rankz z of one gene in every cell (dense)."""
    return np.asarray(R.S[:, column].toarray()).ravel() + R.offset


def active_cells(z: np.ndarray, quantile: float) -> np.ndarray:
    """Cells whose z lies above the ``quantile`` of z over all cells."""
    return z > np.quantile(z, quantile)


def pmi_test(k_on: np.ndarray, k_on_active: np.ndarray, n: float, n_active: float, tested: np.ndarray,
             fdr: float) -> dict[str, np.ndarray]:
    """PMI, z, p, BH FDR and significance of the ``tested`` genes (counts of on cells, overall and active)."""
    p_on = k_on[tested] / n
    p_on_active = np.maximum(k_on_active[tested], 0.5) / n_active
    pmi = np.log(p_on_active / p_on)
    sd = pmi.std(ddof=1) if pmi.size > 1 else 0.0
    z = (pmi - pmi.mean()) / sd if sd > 0 else np.zeros_like(pmi)
    p = 2 * stats.norm.sf(np.abs(z))
    q = stats.false_discovery_control(p, method="bh") if p.size else p
    return {"p_on": p_on, "p_on_active": k_on_active[tested] / n_active, "pmi": pmi, "z": z, "p": p, "fdr": q,
            "significant": q < fdr}


def _counts(on: sp.csr_matrix, active: np.ndarray, weights=None):
    w = np.ones(on.shape[0]) if weights is None else weights
    return on.T @ w, on.T @ (w * active), w.sum(), (w * active).sum()


def _evaluate(counts, freq, tf_col, partners, min_frequency, fdr):
    """One setting from the counts of :func:`_counts` (computed once per activity vector)."""
    k, ka, n, na = counts
    tested = (freq >= min_frequency)
    tested[tf_col] = False
    res = pmi_test(k, ka, n, na, np.flatnonzero(tested), fdr)
    sig_idx = np.flatnonzero(tested)[res["significant"]]
    n_sig = int(sig_idx.size)
    n_in = int(partners[sig_idx].sum())
    return {"n_genes_tested": int(tested.sum()), "n_significant": n_sig,
            "n_significant_up": int((res["significant"] & (res["z"] > 0)).sum()), "n_in_string": n_in,
            "rate": n_in / n_sig if n_sig else np.nan,
            "base_rate": float(partners[tested].mean()) if tested.any() else np.nan,
            "n_string_partners": int(partners[tested].sum()), "tested": tested, "res": res}


def tf_target_recovery(adata, *, dataset: str, tfs, partners: dict[str, set], string_source: str = "",
                       quantile: float = 0.9, min_frequency: float = 0.05, fdr: float = 0.05,
                       grid_quantiles=DEFAULTS["tf_targets"]["grid"]["quantiles"],
                       grid_min_frequencies=DEFAULTS["tf_targets"]["grid"]["min_frequencies"],
                       n_permutations: int = 20, n_boot: int = 100, level: float = 0.95, seed: int = 0,
                       batch: int = 25) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """TF target recovery on one dataset: (summary per TF x setting, grid, genes at the declared setting).

    ``partners``: TF -> gene ids STRING links to it (:func:`string_partners`). A TF not among the
    dataset's genes (by symbol or id) gets a row with ``n_cells`` and NaN results, and is logged.
    """
    where = f"TF target analysis of dataset '{dataset}'"
    X = sp.csr_matrix(adata.X)
    keep = np.asarray(X.sum(axis=1)).ravel() > 0
    if (~keep).any():
        log.info("%s: %d cells without counts set aside", where, int((~keep).sum()))
    X = X[keep]
    on, R = on_matrix(X)
    n_cells = X.shape[0]
    freq = np.asarray(on.sum(axis=0)).ravel() / n_cells
    genes = adata.var_names.astype(str)
    symbols = adata.var["gene_symbol"].astype(str).to_numpy() if "gene_symbol" in adata.var else np.asarray(genes)
    alpha = (1 - level) / 2
    rows, grid_rows, gene_rows = [], [], []
    rng = np.random.default_rng([seed, 11])
    for tf in tfs:
        hits = np.flatnonzero((symbols == tf) | (np.asarray(genes) == tf))
        base = {"dataset": dataset, "tf": tf, "n_cells": n_cells, "string_source": string_source}
        if hits.size == 0:
            log.info("%s: TF %s is not among the genes; its row is empty", where, tf)
            rows.append({**base, "setting": SETTINGS["declared"], "interval": "TF not measured"})
            continue
        col = int(hits[0])
        partner = np.isin(np.asarray(genes), list(partners.get(tf, ())))
        z = tf_z(R, col)
        # the grid (the paper's tuning) and the declared setting
        actives = {q: active_cells(z, q) for q in sorted(set(grid_quantiles) | {quantile})}
        best = None
        counts = {q: _counts(on, a) for q, a in actives.items()}
        for q in grid_quantiles:
            for mf in grid_min_frequencies:
                e = _evaluate(counts[q], freq, col, partner, mf, fdr)
                grid_rows.append({"dataset": dataset, "tf": tf, "quantile": q, "min_frequency": mf,
                                  **{c: e[c] for c in ("n_genes_tested", "n_significant", "n_in_string", "rate")}})
                if best is None or e["n_significant"] > best[2]["n_significant"]:
                    best = (q, mf, e)
        declared = _evaluate(counts[quantile], freq, col, partner, min_frequency, fdr)
        # bootstrap over cells at the declared setting (activity flags fixed per cell)
        n_sig_draws, rate_draws = [], []
        for start in range(0, n_boot, batch):
            b = min(batch, n_boot - start)
            W = rng.multinomial(n_cells, np.full(n_cells, 1.0 / n_cells), size=b).astype(np.float64)
            for w in W:
                e = _evaluate(_counts(on, actives[quantile], w), freq, col, partner, min_frequency, fdr)
                n_sig_draws.append(e["n_significant"])
                rate_draws.append(e["rate"])
        n_sig_draws, rate_draws = np.array(n_sig_draws, float), np.array(rate_draws, float)
        finite = rate_draws[np.isfinite(rate_draws)]
        boot = {"n_significant_ci_low": np.quantile(n_sig_draws, alpha) if len(n_sig_draws) >= 3 else np.nan,
                "n_significant_ci_high": np.quantile(n_sig_draws, 1 - alpha) if len(n_sig_draws) >= 3 else np.nan,
                "rate_ci_low": np.quantile(finite, alpha) if len(finite) >= 3 else np.nan,
                "rate_ci_high": np.quantile(finite, 1 - alpha) if len(finite) >= 3 else np.nan,
                "n_draws": len(n_sig_draws),
                "interval": f"percentile bootstrap ({level:.0%}) over cells" if len(n_sig_draws) >= 3
                else "too few units for an interval"}
        keys = ("n_genes_tested", "n_significant", "n_significant_up", "n_in_string", "rate", "base_rate",
                "n_string_partners")
        rows.append({**base, "setting": SETTINGS["declared"], "quantile": quantile, "min_frequency": min_frequency,
                     "n_active": int(actives[quantile].sum()), **{c: declared[c] for c in keys}, **boot})
        q_best, mf_best, e_best = best
        rows.append({**base, "setting": SETTINGS["tuned"], "quantile": q_best, "min_frequency": mf_best,
                     "n_active": int(actives[q_best].sum()), **{c: e_best[c] for c in keys}, "n_draws": 0,
                     "interval": "no interval: chosen on the result"})
        # controls: activity permuted across cells, a new permutation per draw
        ctrl_declared, ctrl_tuned = [], []
        for _ in range(n_permutations):
            perm = rng.permutation(n_cells)
            pcounts = {q: _counts(on, a[perm]) for q, a in actives.items()}
            ctrl_declared.append(_evaluate(pcounts[quantile], freq, col, partner, min_frequency, fdr))
            tuned = None
            for q in grid_quantiles:
                for mf in grid_min_frequencies:
                    e = _evaluate(pcounts[q], freq, col, partner, mf, fdr)
                    if tuned is None or e["n_significant"] > tuned["n_significant"]:
                        tuned = e
            ctrl_tuned.append(tuned)
        for key, draws in (("control_declared", ctrl_declared), ("control_tuned", ctrl_tuned)):
            if not draws:
                continue
            n_sig = np.array([d["n_significant"] for d in draws], float)
            n_in = np.array([d["n_in_string"] for d in draws], float)
            pooled_rate = n_in.sum() / n_sig.sum() if n_sig.sum() else np.nan
            rates = np.array([d["rate"] for d in draws], float)
            rates = rates[np.isfinite(rates)]
            enough = len(draws) >= 3
            rows.append({**base, "setting": SETTINGS[key], "quantile": quantile if key == "control_declared" else np.nan,
                         "min_frequency": min_frequency if key == "control_declared" else np.nan,
                         "n_active": int(actives[quantile].sum()) if key == "control_declared" else np.nan,
                         "n_genes_tested": float(np.mean([d["n_genes_tested"] for d in draws])),
                         "n_significant": n_sig.mean(),
                         "n_significant_up": float(np.mean([d["n_significant_up"] for d in draws])),
                         "n_in_string": n_in.mean(), "rate": pooled_rate,
                         "base_rate": float(np.mean([d["base_rate"] for d in draws])),
                         "n_string_partners": float(np.mean([d["n_string_partners"] for d in draws])),
                         "n_significant_ci_low": np.quantile(n_sig, alpha) if enough else np.nan,
                         "n_significant_ci_high": np.quantile(n_sig, 1 - alpha) if enough else np.nan,
                         "rate_ci_low": np.quantile(rates, alpha) if len(rates) >= 3 else np.nan,
                         "rate_ci_high": np.quantile(rates, 1 - alpha) if len(rates) >= 3 else np.nan,
                         "n_draws": len(draws),
                         "interval": f"mean and {level:.0%} range over permutations (rate: pooled)" if enough
                         else "too few units for an interval"})
        res, tested = declared["res"], np.flatnonzero(declared["tested"])
        gene_rows.append(pd.DataFrame({"dataset": dataset, "tf": tf, "gene": np.asarray(genes)[tested],
                                       "gene_symbol": symbols[tested], "p_on": res["p_on"],
                                       "p_on_active": res["p_on_active"], "pmi": res["pmi"], "z": res["z"],
                                       "p_value": res["p"], "fdr": res["fdr"], "significant": res["significant"],
                                       "in_string": partner[tested]}))
        log.info("%s: %s declared (q %.2f, min freq %.2f): %d significant, %d in STRING (base rate %.3f); tuned "
                 "(q %.2f, min freq %.2f): %d / %d; control %.1f", where, tf, quantile, min_frequency,
                 declared["n_significant"], declared["n_in_string"], declared["base_rate"], q_best, mf_best,
                 e_best["n_significant"], e_best["n_in_string"],
                 np.mean([d["n_significant"] for d in ctrl_declared]) if ctrl_declared else np.nan)
    table = pd.DataFrame(rows).reindex(columns=TF_COLUMNS)
    genes_table = (pd.concat(gene_rows, ignore_index=True) if gene_rows else pd.DataFrame(columns=GENE_COLUMNS))
    return table, pd.DataFrame(grid_rows, columns=GRID_COLUMNS), genes_table[GENE_COLUMNS]


def run_job(h5ad, dataset: str, params: dict, links, aliases, table_path, grid_path, genes_path, seed: int = 0,
            level: float = 0.95) -> None:
    """The ``analysis_tf_targets`` rule: one standardized dataset + STRING -> its three tables."""
    import anndata as ad

    from sclinbench.workflow.io import write_table

    params = dict(params)
    min_score = params.pop("min_score")
    adata = ad.read_h5ad(h5ad)
    var = adata.var if "gene_symbol" in adata.var else adata.var.assign(gene_symbol=adata.var_names)
    partners = string_partners(aliases, links, params["tfs"], var, min_score)
    table, grid, genes = tf_target_recovery(adata, dataset=dataset, partners=partners, seed=seed, level=level, **params)
    write_table(table, table_path)
    write_table(grid, grid_path)
    write_table(genes, genes_path)
