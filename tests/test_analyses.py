"""The analyses beyond classification (sclinbench.analyses), each against an independent computation:
structure (numpy pseudobulks, scipy rankdata/ndtri, scipy spearmanr), manifold (scikit-learn's
kneighbors_graph + scipy shortest paths), TF targets (PMI computed by hand on a tiny matrix), and
their controls at chance."""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from scipy import special, stats

from sclinbench.analyses import manifold, plan, structure, tf_targets
from sclinbench.errors import SclinbenchError

ROOT = Path(__file__).resolve().parents[1]
STRING = ROOT / "config" / "string"


def _rankz_by_hand(P: np.ndarray) -> np.ndarray:
    """Per row: average ranks over all genes -> Phi^-1(rank / (G + 1)) -> unit L2 norm."""
    G = P.shape[1]
    Z = special.ndtri(np.apply_along_axis(stats.rankdata, 1, P) / (G + 1))
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------ structure

@pytest.fixture(scope="module")
def atlas():
    """The synthetic three-species atlas on the reference's one-to-one orthologs (as standardized)."""
    from sclinbench.data.gene_space import map_to_reference
    from sclinbench.data.synthetic import make_atlas

    adatas, table = make_atlas(seed=1, n_genes=400, cells_per_species=600, n_cell_types=5)
    return map_to_reference(adatas, table, "alpha")


def test_structure_matches_an_independent_computation(atlas):
    table, summary = structure.structure_analysis(atlas, dataset="atlas", reference="alpha",
                                                  divergence={"beta": 0.3, "gamma": 0.6}, n_boot=20,
                                                  n_permutations=5, min_cells=10)
    X = atlas.X.toarray().astype(float)
    F = X / X.sum(axis=1, keepdims=True)
    obs = atlas.obs
    prof = {}
    for (s, t), idx in obs.groupby(["organism", "cell_type"], observed=True).indices.items():
        if len(idx) >= 10:
            prof[(s, t)] = F[idx].mean(axis=0)
    keys = list(prof)
    R = dict(zip(keys, _rankz_by_hand(np.array([prof[k] for k in keys]))))
    expected = []
    for row in table.itertuples():
        cos = float(R[(row.species, row.cell_type)] @ R[("alpha", row.cell_type)])
        assert row.cosine == pytest.approx(cos, abs=1e-9)
        expected.append(cos)
    # beta's type found only there has no counterpart in the reference: not a point
    assert set(table["species"]) == {"beta", "gamma"} and len(table) == 10
    rho = stats.spearmanr(table["divergence"], expected)
    got = summary.set_index(["statistic", "setting"]).loc[("spearman_r_cosine", "observed")]
    assert got["value"] == pytest.approx(rho.statistic) and got["p_value"] == pytest.approx(rho.pvalue)
    assert got["value"] < 0                                   # farther species, lower cosine
    assert got["n_draws"] == 20 and np.isfinite(got["ci_low"]) and got["ci_low"] <= got["ci_high"]
    assert table["n_genes"].iloc[0] == atlas.n_vars


def test_structure_control_sits_at_chance(atlas):
    table, summary = structure.structure_analysis(atlas, dataset="atlas", reference="alpha",
                                                  divergence={"Beta": 0.3, "gamma": 0.6}, n_boot=0,
                                                  n_permutations=30)
    s = summary.set_index(["statistic", "setting"])["value"]
    control = "control: labels permuted within species"
    n_types = 5
    assert s[("match_rate", "observed")] >= 0.8
    assert abs(s[("match_rate", control)] - 1 / n_types) < 0.1          # chance: 1 / reference types
    assert s[("mean_specificity", "observed")] > 10 * abs(s[("mean_specificity", control)])
    assert abs(table["control_specificity"].mean()) < 0.2 * table["specificity"].mean()
    # no bootstrap draws: no interval, said so
    assert summary.loc[summary["setting"] == "observed", "interval"].eq("too few units for an interval").all()


def test_structure_errors_name_the_key(atlas):
    with pytest.raises(SclinbenchError, match="no divergence for species 'gamma'.*add 'gamma: <value>'"):
        structure.structure_analysis(atlas, dataset="atlas", reference="alpha", divergence={"beta": 0.3})
    with pytest.raises(SclinbenchError, match="reference species 'delta' has no labelled cell"):
        structure.structure_analysis(atlas, dataset="atlas", reference="delta", divergence={"beta": 0.3})


def test_basic_interval_mirrors_the_draws():
    draws = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    lo, hi = structure.basic_interval(draws, 0.5, 0.5)
    q = np.quantile(draws, [0.25, 0.75])
    assert (lo, hi) == pytest.approx((1.0 - q[1], 1.0 - q[0]))


# ------------------------------------------------------------------------------------------ manifold

def test_geodesics_are_isomaps_shortest_paths():
    from scipy.sparse.csgraph import shortest_path
    from sklearn.datasets import make_swiss_roll
    from sklearn.neighbors import kneighbors_graph

    Y, _ = make_swiss_roll(1000, noise=0.05, random_state=0)
    for k in (8, 15):
        geo = shortest_path(kneighbors_graph(Y, k, mode="distance"), directed=False)
        iu = np.triu_indices(len(Y), 1)
        euclid = np.linalg.norm(Y[:, None] - Y[None], axis=2)[iu]
        expected = stats.pearsonr(euclid, geo[iu]).statistic
        r, components = manifold.geodesic_pearson(Y, k)
        assert r == pytest.approx(expected, abs=1e-9) and components == 1
    assert r < 0.6                   # a rolled sheet sampled densely enough is far from linear (0.42)
    line = np.random.default_rng(0).normal(size=(300, 1)) @ np.ones((1, 5))
    assert manifold.geodesic_pearson(line + 1e-3 * np.random.default_rng(1).normal(size=line.shape), 10)[0] > 0.99


def test_manifold_on_real_pbmcs():
    from sclinbench.data import load_bundled, standardize

    adata = standardize(load_bundled("pbmc68k_reduced"), {"source": "bundled", "columns": {"cell_type": "bulk_labels"},
                                                         "organism": "Homo sapiens", "gene_id": "symbol"}, {})
    table, summary = manifold.manifold_linearity(adata, dataset="pbmc68k", n_cells=200, n_types=7, k=[5, 15],
                                                 representations=["counts", "rankz"], n_draws=3)
    assert len(table) == 3 * 2 * 2 * 2 and set(table["n_cells"]) == {200} and set(table["n_types"]) == {7}
    # draw 0 recomputed: the same seeded subsample, the raw counts, geodesics from scratch
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    pick = manifold.subsample(labels, 200, 7, np.random.default_rng([0, 7, 0]))
    Y = adata.X[pick].toarray().astype(float)
    row = table[(table.draw == 0) & (table.representation == "counts") & (table.setting == "observed") & (table.k == 5)]
    assert row["pearson_r"].iloc[0] == pytest.approx(manifold.geodesic_pearson(Y, 5)[0])
    s = summary.set_index(["representation", "setting", "k"])
    assert (s["n_draws"] == 3).all() and (s["ci_low"] <= s["mean_r"]).all() and (s["mean_r"] <= s["ci_high"]).all()
    # different draws are different cells
    assert table[table.k == 5].groupby("draw")["pearson_r"].first().nunique() == 3


# ------------------------------------------------------------------------------------------ TF targets

def test_pmi_by_hand_on_a_tiny_matrix():
    counts = np.array([[5, 3, 0, 1, 0, 2],
                       [4, 0, 2, 0, 1, 3],
                       [0, 1, 3, 2, 0, 0],
                       [6, 2, 0, 0, 2, 1],
                       [0, 0, 1, 4, 3, 0],
                       [1, 4, 0, 0, 0, 5],
                       [3, 0, 2, 1, 0, 0],
                       [0, 2, 0, 3, 1, 1]], dtype=float)
    adata = ad.AnnData(sp.csr_matrix(counts), var=pd.DataFrame(index=[f"G{i}" for i in range(6)]))
    adata.var["gene_symbol"] = adata.var_names
    table, grid, genes = tf_targets.tf_target_recovery(
        adata, dataset="tiny", tfs=["G0"], partners={"G0": {"G1", "G5"}}, quantile=0.5, min_frequency=0.0,
        fdr=0.5, grid_quantiles=[0.5], grid_min_frequencies=[0.0], n_permutations=0, n_boot=0)
    # by hand: rankz over the 6 genes of each cell (L2-normalized); on where z > 0; active: G0's z
    # above its median over cells
    Z = special.ndtri(np.apply_along_axis(stats.rankdata, 1, counts) / 7)
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    on = Z > 0
    active = Z[:, 0] > np.median(Z[:, 0])
    g = genes.set_index("gene")
    for j in range(1, 6):
        p_on = on[:, j].mean()
        p_on_active = max(on[active, j].sum(), 0.5) / active.sum()
        assert g.loc[f"G{j}", "pmi"] == pytest.approx(np.log(p_on_active / p_on))
    pmi = np.array([g.loc[f"G{j}", "pmi"] for j in range(1, 6)])
    z = (pmi - pmi.mean()) / pmi.std(ddof=1)
    assert g.loc[[f"G{j}" for j in range(1, 6)], "z"].to_numpy() == pytest.approx(z)
    p = 2 * stats.norm.sf(np.abs(z))
    order = np.argsort(p)
    bh = np.minimum.accumulate((p[order] * 5 / np.arange(1, 6))[::-1])[::-1]
    expected = np.empty(5)
    expected[order] = np.minimum(bh, 1)
    assert g.loc[[f"G{j}" for j in range(1, 6)], "fdr"].to_numpy() == pytest.approx(expected)
    assert "G0" not in g.index                                # the TF is never its own target
    row = table.iloc[0]
    assert row["n_active"] == active.sum() and row["base_rate"] == pytest.approx(2 / 5)


def test_string_readers_on_the_committed_stand_in():
    genes = pd.DataFrame({"gene_symbol": ["SPIB", "CD79A", "MS4A1", "LYZ"]}, index=["SPIB", "CD79A", "MS4A1", "LYZ"])
    # by hand: the aliases and links as plain text
    with gzip.open(STRING / "9606.protein.aliases.fixture.txt.gz", "rt") as fh:
        alias = {line.split("\t")[1]: line.split("\t")[0] for line in fh.read().splitlines()[1:]}
    with gzip.open(STRING / "9606.protein.links.fixture.txt.gz", "rt") as fh:
        links = [line.split() for line in fh.read().splitlines()[1:]]
    linked = {b for a, b, score in links if a == alias["SPIB"] and int(score) >= 400}
    expected = {g for g in genes.index if alias.get(g) in linked}
    got = tf_targets.string_partners(STRING / "9606.protein.aliases.fixture.txt.gz",
                                     STRING / "9606.protein.links.fixture.txt.gz", ["SPIB", "NOTATF"], genes, 400)
    assert got["SPIB"] == expected and got["NOTATF"] == set()
    every = tf_targets.string_partners(STRING / "9606.protein.aliases.fixture.txt.gz",
                                       STRING / "9606.protein.links.fixture.txt.gz", ["SPIB"],
                                       pd.DataFrame({"gene_symbol": list(alias)}, index=list(alias)), 400)
    assert every["SPIB"] == {g for g, prot in alias.items() if prot in linked}
    bad = STRING.parent / "published_analyses.tsv"
    with pytest.raises(SclinbenchError, match="not a STRING links file"):
        tf_targets.read_string_links(bad, set(), 400)


def test_planted_targets_are_recovered_and_the_control_sits_at_chance():
    """A TF whose activity switches on 12 of 400 genes (STRING links them all, plus a random tenth
    of the rest): the declared setting finds them; with activity permuted, what it flags is in
    STRING at the base rate."""
    rng = np.random.default_rng(0)
    n_cells, n_genes = 1500, 400
    active = rng.random(n_cells) < 0.3
    rate = np.tile(rng.gamma(2.0, 0.5, n_genes), (n_cells, 1))
    rate[:, 0] = np.where(active, 6.0, 0.05)                 # the TF
    targets = np.arange(1, 13)
    rate[np.ix_(active, targets)] *= 8.0
    counts = rng.poisson(rate)
    names = [f"G{i:03d}" for i in range(n_genes)]
    adata = ad.AnnData(sp.csr_matrix(counts.astype(np.float32)), var=pd.DataFrame(index=names))
    adata.var["gene_symbol"] = names
    partners = {names[i] for i in targets} | {n for n in names[13:] if rng.random() < 0.1}
    table, grid, genes = tf_targets.tf_target_recovery(
        adata, dataset="planted", tfs=["G000"], partners={"G000": partners}, quantile=0.7, min_frequency=0.05,
        grid_quantiles=[0.5, 0.7, 0.9], grid_min_frequencies=[0.01, 0.05], n_permutations=10, n_boot=20)
    t = table.set_index("setting")
    declared = t.loc[tf_targets.SETTINGS["declared"]]
    up = set(genes.loc[genes.significant & (genes.z > 0), "gene"])
    assert len(up & {names[i] for i in targets}) >= 6 and len(up - {names[i] for i in targets}) == 0
    assert declared["rate"] > 3 * declared["base_rate"]
    assert declared["n_significant_ci_low"] <= declared["n_significant"] <= declared["n_significant_ci_high"]
    ctrl = t.loc[tf_targets.SETTINGS["control_declared"]]
    assert ctrl["n_draws"] == 10 and ctrl["n_significant_up"] < declared["n_significant_up"] / 2
    assert abs(ctrl["rate"] - ctrl["base_rate"]) < 0.15      # what the control flags: STRING at chance
    retuned = t.loc[tf_targets.SETTINGS["control_tuned"]]
    assert retuned["n_significant"] >= ctrl["n_significant"]  # tuning on the result finds more noise
    tuned = t.loc[tf_targets.SETTINGS["tuned"]]
    assert tuned["n_significant"] == grid["n_significant"].max() and len(grid) == 6


def test_a_tf_that_is_not_measured_gets_an_empty_row():
    adata = ad.AnnData(sp.csr_matrix(np.ones((5, 3), dtype=np.float32)), var=pd.DataFrame(index=["A", "B", "C"]))
    table, _, _ = tf_targets.tf_target_recovery(adata, dataset="d", tfs=["E2F8"], partners={}, n_boot=0,
                                                n_permutations=0)
    assert table["interval"].tolist() == ["TF not measured"] and table["n_significant"].isna().all()


# ------------------------------------------------------------------------------------------ config

def _schema_defaults(node):
    out = {}
    for key, spec in node["properties"].items():
        if "default" in spec:
            out[key] = spec["default"]
    return out


def test_schema_defaults_are_the_packages():
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    analyses = schema["properties"]["analyses"]["properties"]
    assert set(analyses) == set(plan.ANALYSES)
    for name in plan.ANALYSES:
        defaults = _schema_defaults(analyses[name])
        for key, value in plan.DEFAULTS[name].items():
            if key == "grid":
                assert _schema_defaults(analyses[name]["properties"]["grid"]) == value
            else:
                assert defaults[key] == value, (name, key)


def test_default_and_paper_configs_plan_the_analyses():
    from sclinbench.workflow.config import schema_errors

    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    registry = yaml.safe_load((ROOT / "config/datasets.yaml").read_text())
    p = plan.selected(default)
    assert set(p) == set(plan.ANALYSES) and p["tf_targets"]["grid"]["quantiles"] == plan.DEFAULTS["tf_targets"]["grid"]["quantiles"]
    plan.check(p, registry)
    merged = {**default, **paper, "analyses": {k: {**default["analyses"][k], **paper["analyses"][k]}
                                               for k in plan.ANALYSES}}
    assert not schema_errors(merged, str(ROOT / "config/schema.yaml"))
    pp = plan.selected(merged)
    plan.check(pp, registry)
    assert plan.datasets(pp, "structure") == ["spermatogenesis"]
    assert plan.datasets(pp, "tf_targets") == ["ts_bone_marrow"]
    assert plan.string_files(pp)["links"].startswith("resources/string/")
    assert plan.structure_params(pp, registry, "spermatogenesis")["divergence"]["Ornithorhynchus anatinus"] == 177
    # a config of one's own (use_tasks) runs none unless it names them
    assert plan.selected({**default, "use_tasks": ["x"]}) == {}
    with pytest.raises(SclinbenchError, match="use_analyses names 'clusters'"):
        plan.selected({**default, "use_analyses": ["clusters"]})
    with pytest.raises(SclinbenchError, match="analyses: manifold: datasets names 'nope'"):
        plan.check(plan.selected({**default, "analyses": {"manifold": {"datasets": ["nope"]}}}), registry)


# ------------------------------------------------------------------------------------------ report

def test_gather_writes_tables_figures_and_the_readme_section(atlas, tmp_path):
    from sclinbench.analyses import report
    files = {}
    table, summary = structure.structure_analysis(atlas, dataset="atlas", reference="alpha",
                                                  divergence={"beta": 0.3, "gamma": 0.6}, n_boot=5, n_permutations=3)
    for stem, df in (("structure", table), ("structure_spearman", summary)):
        df.to_csv(tmp_path / f"{stem}.part.tsv", sep="\t", index=False)
        files[stem] = [tmp_path / f"{stem}.part.tsv"]
    out = tmp_path / "analyses"
    tables = report.gather(files, out, ROOT / "config/published_analyses.tsv")
    assert len(tables["structure"]) == len(table) and tables["manifold"].empty
    for stem in report.FIGURES:
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.pdf").exists()
    section = (out / "analyses.md").read_text()
    # ours beside the paper's, each row saying which it is
    assert "| atlas | spearman_r_cosine | observed |" in section and "computed here" in section
    assert "-0.876" in section and "**published**" in section and "| ts_bone_marrow | E2F8 |" in section
    assert "0.924" in section
