"""A rehearsal of the paper run on stand-ins of every file of config/paper_manifest.yaml.

    python benchmarks/paper_rehearsal.py --fraction 0.01 --out /tmp/rehearsal [--tissues 2] [--cores 2]

1. Writes a stand-in for each file with the real file's layout (DIR/serve/<host>/<path>):
   Tabula Sapiens = CELLxGENE schema 5 h5ad (X = log1p of normalized counts, integer raw.X,
   layers/decontXcounts, Ensembl var index + feature_name, the schema's obs columns, uns citation);
   testis = one h5ad per species with its own Ensembl gene ids (prefix per species), counts in X,
   obs cell_type (+ donor_id for human); lavage = Cell Ranger filtered_feature_bc_matrix.h5 files
   with the SARS-CoV-2 feature nCoV. Cell counts are the manifest's at F=1 where it knows them
   (else the stated fallbacks below), scaled by F; expression has cell-type and donor programs.
2. Serves DIR/serve over HTTP on 127.0.0.1 (Range requests; the first request of the largest file is
   cut mid-file once, so the downloader's resume is exercised).
3. Writes DIR/run/rehearsal_registry.yaml (config/datasets.yaml with the stand-ins' URLs, sha256
   and size), DIR/run/rehearsal_config.yaml (the subset's datasets; thresholds scaled by F, printed)
   and pre-places the Ensembl ortholog tables (nothing reaches the internet).
4. Runs snakemake --configfile config/config.yaml config/paper.yaml rehearsal_config.yaml in a copy of
   the workflow (DIR/run) through watch.py, prints job_table.py's table, writes DIR/rehearsal.json;
   the last line is the one-line summary.

Fallbacks where the manifest knows no number (stated in rehearsal.json): a Tabula Sapiens tissue
has 1,136,218 / 28 cells, half of them from held-out donors (TSP17+, 4 donors; 3 donors before);
a testis file has its after-QC cell count / 0.9; types per tissue: 6, sizes geometric (ratio 0.7).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import re
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import scipy.sparse as sp
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))

import job_table  # noqa: E402
from run_scale import copy_workflow  # noqa: E402

TS_FALLBACK_CELLS = 1_136_218 // 28
SPECIES_PREFIX = {  # Ensembl gene id prefixes of the testis species
    "Homo sapiens": "ENSG", "Pan troglodytes": "ENSPTRG", "Gorilla gorilla": "ENSGGOG",
    "Macaca mulatta": "ENSMMUG", "Callithrix jacchus": "ENSCJAG", "Mus musculus": "ENSMUSG",
    "Monodelphis domestica": "ENSMODG", "Ornithorhynchus anatinus": "ENSOANG",
}
TS_TYPES = 6  # cell types per Tabula Sapiens stand-in
TESTIS_TYPES = ["spermatogonium", "spermatocyte", "early spermatid", "late spermatid", "somatic cell",
                "leptotene", "Sertoli"]


def _type_programs(seed_key, n_genes, n_types, type_genes=40):
    """(base profile, one array of up-regulated gene indices per cell type): shared by every file
    drawn with the same ``seed_key`` (same types in every species' testis, STRING targets)."""
    prog_rng = np.random.default_rng(1_000 + seed_key)
    base = prog_rng.gamma(0.6, 1.0, n_genes)
    return base, [prog_rng.choice(n_genes, type_genes, replace=False) for _ in range(n_types)]


def _counts(rng, labels, donors, n_genes, umis=1500, donor_genes=20, lfc=1.5, seed_key=0):
    """Poisson-multinomial counts: a base profile, a program per cell type and per donor (structure)."""
    types, y = np.unique(labels, return_inverse=True)
    dons, d = np.unique(donors, return_inverse=True)
    base, programs = _type_programs(seed_key, n_genes, len(types))
    logit = np.log(base)[None, :].repeat(len(labels), 0)
    t_eff = np.zeros((len(types), n_genes))
    for i, genes in enumerate(programs):
        t_eff[i, genes] = lfc
    d_eff = np.zeros((len(dons), n_genes))
    for i in range(len(dons)):
        d_eff[i, rng.choice(n_genes, donor_genes, replace=False)] = lfc / 2
    logit += t_eff[y] + d_eff[d]
    p = np.exp(logit - logit.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    lib = np.maximum(300, rng.lognormal(np.log(umis), 0.4, len(labels))).astype(int)
    X = rng.poisson(p * lib[:, None]).astype(np.float32)
    return sp.csr_matrix(X)


def _seed_key(name: str) -> int:
    return zlib.crc32(name.encode()) % 1000


def tf_genes(name: str, tfs, n_genes: int) -> dict[int, str]:
    """Gene index -> TF symbol: TF j is the most expressed gene of cell type j's program in tissue
    ``name`` (so it passes the gene filter, its activity marks a cell type, and the rest of that
    program are its targets)."""
    base, programs = _type_programs(_seed_key(name), n_genes, TS_TYPES)
    out = {}
    for j, tf in enumerate(tfs):
        genes = [int(g) for g in programs[j % TS_TYPES] if int(g) not in out]
        out[max(genes, key=lambda g: base[g])] = tf
    return out


def ts_symbols(name: str, tfs, n_genes: int) -> list[str]:
    """feature_name of a Tabula Sapiens stand-in: GENE<i>, every 5th with CELLxGENE's '_ENSG...'
    suffix of duplicated symbols, the TFs of the TF-target analysis at their program genes."""
    tf = tf_genes(name, tfs, n_genes)
    return [tf.get(i) or (f"GENE{i}" if i % 5 else f"GENE{i}_ENSG{i:011d}") for i in range(n_genes)]


def write_string(links_path: Path, aliases_path: Path, name: str, tfs, n_genes: int, seed: int) -> dict:
    """STRING v12.0-format stand-ins (not STRING data): aliases of every gene of tissue ``name``
    (protein ids 9606.SCLBREH<5 digits>; symbol and Ensembl id as aliases), links listed both ways:
    each TF to the other genes of its cell-type program (score 400..999) and to 2% of the rest
    (150..999), plus as many random gene-gene links."""
    import gzip

    rng = np.random.default_rng([seed, 17])
    symbols = ts_symbols(name, tfs, n_genes)
    _, programs = _type_programs(_seed_key(name), n_genes, TS_TYPES)
    pid = [f"9606.SCLBREH{i:05d}" for i in range(n_genes)]
    pairs = {}
    for j, gi in enumerate(tf_genes(name, tfs, n_genes)):  # in the order of tfs: TF j <- type j's program
        for g in programs[j % TS_TYPES]:
            if g != gi:
                pairs[(gi, int(g))] = int(rng.integers(400, 1000))
        for g in np.flatnonzero(rng.random(n_genes) < 0.02):
            if g != gi:
                pairs.setdefault((gi, int(g)), int(rng.integers(150, 1000)))
    n_tf_links = len(pairs)
    for a, b in rng.integers(0, n_genes, (n_tf_links, 2)):
        if a != b:
            pairs.setdefault((int(a), int(b)), int(rng.integers(150, 1000)))
    both = {}
    for (a, b), score in pairs.items():
        both.setdefault((a, b), score)
        both.setdefault((b, a), score)
    links_path.parent.mkdir(parents=True, exist_ok=True)
    aliases_path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(links_path, "wb", mtime=0) as fh:  # mtime 0: the same bytes every run
        fh.write(b"protein1 protein2 combined_score\n")
        fh.write("".join(f"{pid[a]} {pid[b]} {s}\n" for (a, b), s in sorted(both.items())).encode())
    with gzip.GzipFile(aliases_path, "wb", mtime=0) as fh:
        fh.write(b"#string_protein_id\talias\tsource\n")
        fh.write("".join(f"{pid[i]}\t{symbols[i]}\tsclinbench_rehearsal\n{pid[i]}\tENSG{i:011d}\tEnsembl_gene\n"
                         for i in range(n_genes)).encode())
    return {"links": len(both), "tf_program_links": n_tf_links, "proteins": n_genes}


def _type_sizes(n, k, rng):
    w = 0.7 ** np.arange(k)
    return rng.multinomial(n, w / w.sum())


def write_ts(path, name, n_cells, n_held, n_donors_held, rng, n_genes, tfs=()):
    import anndata as ad
    import pandas as pd

    n_old = n_cells - n_held
    donors = np.concatenate([
        np.array([f"TSP{17 + i}" for i in rng.integers(0, max(1, n_donors_held), n_held)]),
        np.array([f"TSP{1 + i}" for i in rng.integers(0, 3, n_old)]),
    ])
    types = [f"{name} type {chr(65 + i)}" for i in range(TS_TYPES)]
    labels = np.repeat(types, _type_sizes(n_cells, TS_TYPES, rng))
    rng.shuffle(labels)
    counts = _counts(rng, labels, donors, n_genes, seed_key=_seed_key(name))
    ids = [f"ENSG{i:011d}" for i in range(n_genes)]
    var = pd.DataFrame({"feature_name": ts_symbols(name, tfs, n_genes), "feature_is_filtered": False}, index=ids)
    norm = counts.multiply(1e4 / np.maximum(counts.sum(1), 1)).tocsr()
    norm.data = np.log1p(norm.data)
    obs = pd.DataFrame({
        "cell_type": labels, "cell_type_ontology_term_id": [f"CL:{zlib.crc32(t.encode()) % 10**7:07d}" for t in labels],
        "donor_id": donors, "disease": "normal", "organism": "Homo sapiens",
        "organism_ontology_term_id": "NCBITaxon:9606", "tissue": name.replace("ts_", ""),
        "assay": "10x 3' v3", "suspension_type": "cell",
    }, index=[f"{name}_{i}" for i in range(n_cells)]).astype("category")
    a = ad.AnnData(X=norm.astype(np.float32), obs=obs, var=var)
    a.raw = ad.AnnData(X=counts, obs=obs[[]], var=var)
    dec = counts.copy()
    dec.data = np.floor(dec.data * 0.9)
    dec.eliminate_zeros()
    a.layers["decontXcounts"] = dec
    a.uns["citation"] = ("Dataset Version: https://datasets.cellxgene.cziscience.com/stand-in.h5ad ... "
                         "Collection: https://cellxgene.cziscience.com/collections/e5f58829-1a66-40b5-a624-9046778e74f5")
    a.uns["schema_version"] = "5.2.0"
    path.parent.mkdir(parents=True, exist_ok=True)
    a.write_h5ad(path, compression="gzip")
    return {"cells": n_cells, "held_out_cells": n_held, "held_out_donors": n_donors_held}


def write_testis(path, organism, n_cells, n_types, rng, n_genes):
    import anndata as ad
    import pandas as pd

    types = TESTIS_TYPES[:n_types]
    labels = np.repeat(types, _type_sizes(n_cells, n_types, rng))
    donors = np.array([f"{organism.split()[0][:3]}{i}" for i in rng.integers(0, 3, n_cells)])
    counts = _counts(rng, labels, donors, n_genes, seed_key=7)  # same type programs in every species
    pre = SPECIES_PREFIX[organism]
    var = pd.DataFrame({"feature_name": [f"g{i}" for i in range(n_genes)]},
                       index=[f"{pre}{i:011d}" for i in range(n_genes)])
    obs = pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(n_cells)]).astype("category")
    if organism == "Homo sapiens":
        obs["donor_id"] = pd.Categorical(donors)
    a = ad.AnnData(X=counts, obs=obs, var=var)
    path.parent.mkdir(parents=True, exist_ok=True)
    a.write_h5ad(path, compression="gzip")
    return {"cells": n_cells, "types": n_types}


def write_10x(path, donor, n_cells, infected_frac, rng, n_genes):
    import h5py

    labels = np.array(["cellA"] * n_cells)
    counts = _counts(rng, labels, np.array([donor] * n_cells), n_genes, seed_key=11).tocsc().T.tocsc()
    # genes x cells (CSC over cells) + the nCoV feature
    ncov = np.zeros(n_cells, dtype=np.int32)
    inf = rng.random(n_cells) < infected_frac
    ncov[inf] = rng.integers(1, 20, inf.sum())
    m = sp.vstack([counts, sp.csr_matrix(ncov[None, :])]).tocsc().astype(np.int32)
    m.sort_indices()
    ids = [f"ENSG{i:011d}" for i in range(n_genes)] + ["nCoV"]
    names = [f"GENE{i}" for i in range(n_genes)] + ["nCoV"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array([f"{''.join(rng.choice(list('ACGT'), 16))}-1" for _ in range(n_cells)], dtype="S18")
        g["data"], g["indices"], g["indptr"] = m.data, m.indices.astype(np.int64), m.indptr.astype(np.int64)
        g["shape"] = np.array(m.shape, dtype=np.int32)
        ft = g.create_group("features")
        ft["id"] = np.array(ids, dtype="S")
        ft["name"] = np.array(names, dtype="S")
        ft["feature_type"] = np.array(["Gene Expression"] * len(ids), dtype="S")
        ft["genome"] = np.array(["GRCh38"] * n_genes + ["SARS-CoV-2"], dtype="S")
        ft["_all_tag_keys"] = np.array([b"genome"])
        f.attrs["filetype"] = "matrix"
        f.attrs["version"] = 2
    return {"cells": n_cells, "infected": int(inf.sum())}


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range Range support; cuts the first response of `drop_path` once."""

    drop_path: str | None = None
    dropped = threading.Event()
    ranged = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self.send_error(404)
        size = path.stat().st_size
        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if m and int(m.group(1)) < size:
            start, status = int(m.group(1)), 206
            RangeHandler.ranged.append((self.path, start))
        self.send_response(status)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        cut = self.path == RangeHandler.drop_path and not RangeHandler.dropped.is_set()
        with open(path, "rb") as f:
            f.seek(start)
            if cut:
                RangeHandler.dropped.set()
                self.wfile.write(f.read((size - start) // 2))
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(f.read())


def serve(root: Path, port: int = 0):
    handler = lambda *a, **k: RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def build(out: Path, fraction: float, n_tissues: int | None, n_genes: int, seed: int):
    from sclinbench.data.species import ensembl_prefix

    rng = np.random.default_rng(seed)
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    manifest = yaml.safe_load((REPO / "config/paper_manifest.yaml").read_text())["datasets"]
    registry = yaml.safe_load((REPO / "config/datasets.yaml").read_text())
    tissues = paper["tasks"]["ts_celltype_stratified"]["datasets"]
    donor_tissues = set(paper["tasks"]["ts_celltype_donor"]["datasets"])
    novel = paper["tasks"]["ts_novel_type"]["datasets"]
    tf = paper["analyses"]["tf_targets"]
    if n_tissues:  # a few tissues: the TF-target one (in every TS task), the novel-type ones, a one-donor one
        one = [t for t in tissues if t not in donor_tissues]
        first = list(dict.fromkeys(tf["datasets"] + novel + one[:1]))
        tissues = (first + [t for t in tissues if t not in first])[:n_tissues]
    tf_tissue = next((t for t in tf["datasets"] if t in tissues), tissues[0])
    made, facts = {}, {}
    serve_root = out / "serve"
    for t in tissues:
        m = manifest[t]
        n = (m.get("n_cells") or {}).get("value") or TS_FALLBACK_CELLS
        held = (m.get("n_cells_held_out") or {}).get("value") or n // 2
        nd = (m.get("n_donors_held_out") or {}).get("value") or 4
        url = registry[t]["files"][0]["url"]
        p = serve_root / urlparse(url).netloc / urlparse(url).path.lstrip("/")
        nc, nh = max(60, round(n * fraction)), max(40, round(held * fraction))
        facts[t] = write_ts(p, t, max(nc, nh + 20), nh, nd, rng, n_genes, tf["tfs"] if t == tf_tissue else ())
        made[t] = [(url, p)]
    strings = {key: serve_root / urlparse(tf["string"][key]).netloc / urlparse(tf["string"][key]).path.lstrip("/")
               for key in ("links", "aliases")}
    facts["string"] = write_string(strings["links"], strings["aliases"], tf_tissue, tf["tfs"], n_genes, seed)
    facts["string"]["tissue"] = tf_tissue
    for member in registry["spermatogenesis"]["members"].values():
        m = manifest[member]
        n = round(m["n_cells_after_qc"]["value"] / 0.9)
        k = m["n_types_after_qc"]["value"]
        url = registry[member]["files"][0]["url"]
        p = serve_root / urlparse(url).netloc / urlparse(url).path.lstrip("/")
        facts[member] = write_testis(p, registry[member]["organism"], max(k * 60, round(n * fraction)), k, rng, n_genes)
        made[member] = [(url, p)]
    made["liao2020"] = []
    # C144 3,716 barcodes, no infected cell; C146 4,111 (694 of 3,400 infected); C149 2,879 (72 of 2,485)
    for spec, (n, frac) in zip(registry["liao2020"]["files"], [(3716, 0.0), (4111, 0.2), (2879, 0.03)]):
        p = serve_root / urlparse(spec["url"]).netloc / urlparse(spec["url"]).path.lstrip("/")
        frac = frac if fraction >= 0.1 else min(0.5, frac * 2 + (0.1 if frac else 0))
        facts[spec["obs"]["donor_id"]] = write_10x(p, spec["obs"]["donor_id"], max(150, round(n * fraction)),
                                                   frac, rng, n_genes)
        made["liao2020"].append((spec["url"], p))
    # orthologs: gene i of every species is the one-to-one ortholog of human gene i (90% of genes)
    import pandas as pd

    run = out / "run"
    copy_workflow(run)
    ref = ensembl_prefix("Homo sapiens")
    keep = np.random.default_rng(seed + 1).random(n_genes) < 0.9
    for org, pre in SPECIES_PREFIX.items():
        if org == "Homo sapiens":
            continue
        d = run / f"resources/orthologs/ensembl-112/{ref}__{ensembl_prefix(org)}.tsv"
        d.parent.mkdir(parents=True, exist_ok=True)
        idx = np.flatnonzero(keep)
        pd.DataFrame({"reference_species": ref, "reference_gene": [f"ENSG{i:011d}" for i in idx],
                      "other_species": ensembl_prefix(org), "other_gene": [f"{pre}{i:011d}" for i in idx],
                      "homology_type": "ortholog_one2one"}).to_csv(d, sep="\t", index=False)
    return tissues, made, facts, strings


def write_override(run: Path, base_url: str, made: dict, tissues: list, fraction: float, strings: dict):
    registry = yaml.safe_load((REPO / "config/datasets.yaml").read_text())
    for name, files in made.items():
        entry = registry[name]
        specs = {f["url"]: f for f in entry["files"]}
        new = []
        for url, p in files:
            spec = dict(specs[url])
            u = urlparse(url)
            spec.update(url=f"{base_url}/{u.netloc}{u.path}", sha256=_sha(p), size=p.stat().st_size)
            new.append(spec)
        entry["files"] = new
    keep = set(made) | {"spermatogenesis", "pbmc68k", "atlas"}
    registry = {k: v for k, v in registry.items() if k in keep}
    (run / "rehearsal_registry.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    scaled, tasks = {}, {}
    for task, spec in paper["tasks"].items():
        ds = [d for d in spec["datasets"] if d in made or d == "spermatogenesis"]
        tasks[task] = {"datasets": ds}
        if "min_cells_per_class" in spec and fraction < 1:
            v = max(5, min(spec["min_cells_per_class"], round(spec["min_cells_per_class"] * fraction * 2)))
            if v != spec["min_cells_per_class"]:
                tasks[task]["min_cells_per_class"] = v
                scaled[f"{task}.min_cells_per_class"] = [spec["min_cells_per_class"], v]
    analyses = {}
    for name, spec in paper["analyses"].items():
        ds = [d for d in spec["datasets"] if d in registry]
        if name == "tf_targets":
            ds = [d for d in spec["datasets"] if d in made] or [tissues[0]]
            served = {key: f"{base_url}/{urlparse(spec['string'][key]).netloc}{urlparse(spec['string'][key]).path}"
                      for key in strings}
            analyses[name] = {"datasets": ds, "string": {
                "source": "sclinbench rehearsal stand-in (NOT STRING data)", **served,
                "sha256": {k: _sha(q) for k, q in strings.items()},
                "size": {k: q.stat().st_size for k, q in strings.items()}}}
        else:
            analyses[name] = {"datasets": ds}
    cfg = {"registry": str(run / "rehearsal_registry.yaml"), "tasks": tasks, "analyses": analyses}
    (run / "rehearsal_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return scaled


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fraction", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tissues", type=int, default=None,
                   help="only this many Tabula Sapiens tissues (1: ts_bone_marrow, in every Tabula Sapiens task and "
                        "the TF-target analysis; 2: + ts_blood; 3: + a one-donor tissue)")
    p.add_argument("--genes", type=int, default=2000, help="genes per stand-in (default 2000)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-drop", action="store_true", help="do not cut a download mid-file")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    t0 = time.time()
    tissues, made, facts, strings = build(out, args.fraction, args.tissues, args.genes, args.seed)
    srv = serve(out / "serve")
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    run = out / "run"
    scaled = write_override(run, base, made, tissues, args.fraction, strings)
    biggest = max((p for files in made.values() for _, p in files), key=lambda q: q.stat().st_size)
    if not args.no_drop:
        RangeHandler.drop_path = "/" + str(biggest.relative_to(out / "serve"))
    print(f"paper_rehearsal: {len(tissues)} tissues {tissues}, stand-ins in {out / 'serve'}, served at {base}; "
          f"scaled thresholds {scaled}", flush=True)
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = [str(snakemake), "--cores", str(args.cores), "--configfile", "config/config.yaml", "config/paper.yaml",
           "rehearsal_config.yaml"]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    t1 = time.time()
    rc = subprocess.call([sys.executable, str(HERE / "watch.py"), "--out", str(run / f"watch-{stamp}"), "--", *cmd],
                         cwd=run)
    if rc == 0:  # the report, as its own call (snakemake --report renders what the run made)
        rc = subprocess.call([*cmd, "--report", "report.html"], cwd=run)
    wall = time.time() - t1
    srv.shutdown()
    t = job_table.job_table(run)  # every rule has a benchmark: record
    print(job_table.format_table(t), flush=True)
    summary = {"fraction": args.fraction, "tissues": tissues, "exit_code": rc, "wall_s": round(wall, 1),
               "total_s": round(time.time() - t0, 1), "scaled_thresholds": scaled, "stand_ins": facts,
               "stand_in_sha256": {str(q.relative_to(out / "serve")): _sha(q) for q in sorted((out / "serve").rglob("*"))
                                   if q.is_file()},
               "resumed_downloads": RangeHandler.ranged, "dropped": RangeHandler.drop_path,
               **job_summary(t), "metrics_rows": metrics_rows(run)}
    (out / "rehearsal.json").write_text(json.dumps(summary, indent=1, default=str))
    t.to_csv(out / "jobs.tsv", sep="\t", index=False)
    slow = ", ".join(f"{j} {w:.0f} s" for j, w in summary["slowest"][:3])
    print(f"paper_rehearsal: {summary['jobs']} jobs, {summary['failed_jobs']} failed, exit {rc}, wall {wall:.0f} s, "
          f"max peak {summary['max_peak_gib']:.2f} GiB ({summary['max_peak_job']}), resumed downloads "
          f"{len(RangeHandler.ranged)}; slowest: {slow}", flush=True)
    return rc


def job_summary(t) -> dict:
    import pandas as pd

    t = t[~t["job"].str.startswith("cmd: ")]
    failed = t[t["status"].str.startswith(("FAILED", "stopped"))]
    peak = t["peak_gib"].astype(float)
    wall = pd.to_numeric(t["wall_s"], errors="coerce")
    order = wall.sort_values(ascending=False).index
    return {"jobs": int(len(t)), "failed_jobs": int(len(failed)), "failed": failed["job"].tolist(),
            "not_finished": t.loc[t["status"].eq("not finished"), "job"].tolist(),
            "max_peak_gib": float(peak.max()) if peak.notna().any() else float("nan"),
            "max_peak_job": str(t.loc[peak.idxmax(), "job"]) if peak.notna().any() else "?",
            "slowest": [(str(t.loc[k, "job"]), float(wall[k])) for k in order[:10] if pd.notna(wall[k])],
            "wall_by_rule": {str(k): round(float(v), 1) for k, v in
                             wall.groupby(t["job"].str.split("/").str[0]).sum().sort_values(ascending=False).items()}}


def metrics_rows(run: Path) -> dict:
    """'task|dataset' -> rows of results/metrics.tsv."""
    import pandas as pd

    path = run / "results/metrics.tsv"
    if not path.exists():
        return {}
    m = pd.read_csv(path, sep="\t", usecols=["task", "dataset"])
    return {f"{a}|{b}": int(n) for (a, b), n in m.groupby(["task", "dataset"]).size().items()}


if __name__ == "__main__":
    sys.exit(main())
