"""The ``sclinbench`` command: list what the benchmark defines, train a model, annotate cells.

    sclinbench list [datasets|pipelines|tasks]
    sclinbench train --reference REF.h5ad --label COLUMN [--pipeline NAME | --donor COLUMN] --model OUT.npz
    sclinbench annotate (--reference REF.h5ad --label COLUMN | --model M.npz) --query Q.h5ad --out OUT.h5ad
                        [--pipeline NAME] [--reference-species S --query-species S --orthologs TABLE]

Problems with the input end the command with one line ``sclinbench error: ...`` and exit code 1.
The science is in :mod:`sclinbench.tool` (and the rest of the package); this module only parses
arguments, reads and writes files and prints.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

from sclinbench import __version__
from sclinbench.errors import SclinbenchError

log = logging.getLogger("sclinbench")

DESCRIPTION = (
    "Careful normalization + linear models, benchmarked against single-cell foundation models, "
    "and the winning pipeline as a tool: label your own cells (within and across species)."
)


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[sclinbench] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("sclinbench").setLevel(logging.WARNING if quiet else logging.INFO)


# ------------------------------------------------------------------------------------------------
# list
# ------------------------------------------------------------------------------------------------
def _print_entries(title: str, entries: dict, extra=None) -> None:
    print(f"{title} ({len(entries)}):")
    if not entries:
        print("  (none)")
        return
    width = max(len(n) for n in entries) + 2
    for name, e in entries.items():
        lines = [x for x in (e.description, extra(e) if extra else e.detail) if x]
        print(f"  {name:<{width}}{lines[0] if lines else ''}")
        for line in lines[1:]:
            print(f"  {'':<{width}}{line}")


def cmd_list(args) -> int:
    from sclinbench.tool import DEFAULT_PIPELINE, catalog
    from sclinbench.tool.catalog import TRAIN_CANDIDATES

    cat = catalog.load(args.workflow, args.config)
    where = f"{cat.workflow} ({cat.found_by})" if cat.workflow else (
        "no workflow checkout found (pass --workflow DIR or set SCLINBENCH_WORKFLOW): built-in pipelines only")
    print(f"# sclinbench {__version__}; workflow: {where}")
    what = args.what
    if what in ("all", "datasets"):
        if cat.workflow is None and not cat.datasets:
            print("datasets: the registry config/datasets.yaml lives in a workflow checkout (see above)")
        else:
            _print_entries("datasets (registry)", cat.datasets)
        print()
    if what in ("all", "pipelines"):
        def pipe_line(e):
            mark = (" [train candidate]" if e.name in TRAIN_CANDIDATES else "") + (
                " [workflow annotate default]" if e.name == DEFAULT_PIPELINE else "")
            role = " [control]" if e.spec.get("role") == "control" else ""
            source = "" if "grid" in e.source else f"  ({e.source})"
            return f"{catalog.spec_summary(e.spec)}{role}{mark}{source}"
        default_run = {n: e for n, e in cat.pipelines.items() if "grid" not in e.source}
        grid = {n: e for n, e in cat.pipelines.items() if "grid" in e.source}
        _print_entries("pipelines", default_run, pipe_line)
        if grid:
            print()
            _print_entries("pipelines of the opt-in grid (--configfile config/grid.yaml)", grid, pipe_line)
        print()
    if what in ("all", "tasks"):
        if cat.workflow is None and not cat.tasks:
            print("tasks: defined by the workflow's config/config.yaml (see above)")
        else:
            _print_entries("tasks", cat.tasks)
    return 0


# ------------------------------------------------------------------------------------------------
# train / annotate
# ------------------------------------------------------------------------------------------------
def _pipeline(args) -> tuple[str, dict]:
    from sclinbench.tool import DEFAULT_PIPELINE, catalog

    name = args.pipeline or DEFAULT_PIPELINE
    cat = catalog.load(args.workflow, args.config, datasets_too=False, grid_too=False)
    if name not in cat.pipelines:  # the opt-in grid only when needed (it is the larger file)
        cat = catalog.load(args.workflow, args.config, datasets_too=False)
    return cat.pipeline(name)


def _reference(args):
    from sclinbench.tool.annotate import prepare_reference, read_h5ad
    from sclinbench.workflow.io import sha256_file

    t0 = time.perf_counter()
    adata = read_h5ad(args.reference, "reference")
    if getattr(args, "donor", None):
        if args.donor not in adata.obs.columns:
            cols = ", ".join(map(str, adata.obs.columns)) or "none"
            raise SclinbenchError(f"reference {args.reference} has no obs column '{args.donor}' (--donor); its obs "
                                  f"columns are: {cols}")
        adata.obs["donor_id"] = adata.obs[args.donor].astype(str).to_numpy()
    ref = prepare_reference(adata, args.label, source=str(args.reference), sha256=sha256_file(args.reference),
                            counts=args.reference_counts, min_cells_per_label=args.min_cells_per_label,
                            organism=getattr(args, "reference_species", None))
    log.info("reference %s: %d cells x %d genes, %d labels (%.1f s)", args.reference, ref.adata.n_obs,
             ref.adata.n_vars, ref.adata.obs["cell_type"].nunique(), time.perf_counter() - t0)
    return ref


def _choose_pipeline(args, ref) -> tuple[str, object, dict]:
    """``--pipeline NAME`` (a fixed choice), else nested selection on the reference among
    :data:`~sclinbench.tool.catalog.TRAIN_CANDIDATES` (:func:`sclinbench.evaluate.nested.choose_for_reference`:
    held-out reference donors, or cells with fewer than 3): ``(name, spec, record of the choice)``."""
    if args.pipeline:
        name, spec = _pipeline(args)
        return name, spec, {"fixed": name}
    from sclinbench.evaluate.nested import choose_for_reference, describe_choice
    from sclinbench.evaluate.spec import parse_pipelines
    from sclinbench.tool.catalog import TRAIN_CANDIDATES

    candidates = parse_pipelines(TRAIN_CANDIDATES)  # checked once; the winner is fitted from its spec
    donors = ref.adata.obs["donor_id"].astype(str).to_numpy() if "donor_id" in ref.adata.obs else None
    record = choose_for_reference(ref.adata.X, ref.labels, donors, candidates, seed=args.seed)
    log.info("%s (--pipeline NAME fixes the choice)", describe_choice(record))
    return record["winner"], candidates[record["winner"]], record


def _fit(args, ref):
    """The annotator of ``ref`` with the chosen (or given) pipeline; the choice in its provenance."""
    from sclinbench.tool.annotate import Annotator

    name, spec, choice = _choose_pipeline(args, ref)
    model = Annotator.fit(ref, spec, name, seed=args.seed, calibration_fraction=args.calibration_fraction,
                          novelty_quantile=args.novelty_quantile)
    model.provenance["selection"] = choice
    return name, model


def _pipeline_line(model) -> str:
    """Which pipeline labels the query, and how it was chosen."""
    from sclinbench.evaluate.nested import describe_choice

    choice = model.provenance.get("selection") or {}
    if "winner" in choice:
        return f"pipeline: {describe_choice(choice)}"
    if choice:
        return f"pipeline: {model.pipeline_name} (fixed by --pipeline {choice.get('fixed', model.pipeline_name)})"
    return f"pipeline: {model.pipeline_name} (a model file without a record of how it was chosen)"


def cmd_train(args) -> int:
    from sclinbench.tool.annotate import check_outputs

    t0 = time.perf_counter()
    check_outputs({"model": Path(args.model)}, {"reference": args.reference})
    if args.pipeline:
        _pipeline(args)  # an unknown name fails before the reference is read
    ref = _reference(args)
    name, model = _fit(args, ref)
    model.save(args.model, with_reference_counts=not args.no_reference_counts)
    c = model.calibration
    print(_pipeline_line(model))
    print(f"trained {name} on {ref.adata.n_obs} cells x {ref.adata.n_vars} genes, {len(model.label_counts)} labels; "
          f"held-out reference macro F1 {c['macro_f1']:.3f} ({c['n_heldout_cells']} cells); "
          f"wrote {args.model} in {time.perf_counter() - t0:.1f} s")
    return 0


_ENSEMBL_TABLE = re.compile(r"^ensembl(?:-(\d+))?$")


def _orthologs(args):
    """The ortholog pairs of --orthologs (a table, or ``ensembl[-RELEASE]`` = the workflow's pinned table)."""
    from sclinbench.tool import catalog, genes

    rs, qs = args.reference_species, args.query_species
    if args.orthologs is None:
        if rs and qs and genes.species_key(rs) != genes.species_key(qs):
            raise SclinbenchError(
                f"--reference-species {rs} and --query-species {qs} differ: give --orthologs TABLE (a one-to-one "
                "ortholog table, or 'ensembl' for the workflow's pinned Ensembl table)"
            )
        return None
    path = Path(args.orthologs)
    m = _ENSEMBL_TABLE.match(args.orthologs)
    if m and not path.exists():
        if not (rs and qs):
            raise SclinbenchError("--orthologs ensembl needs --reference-species and --query-species (e.g. human, mouse)")
        release = m.group(1) or "112"
        root, _ = catalog.find_workflow(args.workflow)
        a, b = genes.species_key(rs), genes.species_key(qs)
        rel = [f"resources/orthologs/ensembl-{release}/{x}__{y}.tsv" for x, y in ((a, b), (b, a))]
        found = [root / r for r in rel if root is not None and (root / r).is_file()]
        if not found:
            where = f"in {root}" if root else "(no workflow checkout found)"
            raise SclinbenchError(
                f"the pinned Ensembl {release} ortholog table {rel[0]} is not there {where}; fetch it once (needs "
                f"internet) with `snakemake --cores 1 {rel[0]}` in the workflow folder, or give --orthologs TABLE"
            )
        path = found[0]
    return genes.read_ortholog_table(path, rs, qs)


def cmd_annotate(args) -> int:
    from sclinbench.tool.annotate import (
        Annotator,
        annotate,
        check_outputs,
        output_paths,
        read_h5ad,
        write_result,
    )
    from sclinbench.workflow.io import sha256_file

    t0 = time.perf_counter()
    if args.model and args.reference:
        raise SclinbenchError("give either --reference (with --label) or --model, not both")
    if not args.model and not args.reference:
        raise SclinbenchError("annotate needs --reference REF.h5ad --label COLUMN, or --model M (from `sclinbench train`)")
    if args.reference and not args.label:
        raise SclinbenchError("--reference needs --label COLUMN (the obs column with the reference's cell labels)")
    if args.model and (args.pipeline or args.donor):
        raise SclinbenchError(f"{'--pipeline' if args.pipeline else '--donor'} applies to --reference; a model file "
                              "carries the pipeline it was trained with (and how it was chosen)")
    paths = output_paths(args.out)
    check_outputs(paths, {"query": args.query, "reference": args.reference, "model": args.model})
    pairs = _orthologs(args)
    kwargs = dict(query_counts=args.query_counts, pairs=pairs, min_shared_genes=args.min_shared_genes, seed=args.seed,
                  calibration_fraction=args.calibration_fraction, novelty_quantile=args.novelty_quantile,
                  truth=args.truth, key_added=args.key_added, n_top_genes=args.top_genes, query_name=f"query {args.query}",
                  confidence_threshold=args.confidence_threshold, majority_voting=args.majority_voting,
                  over_clustering=args.over_clustering)
    prov = {"query": str(args.query), "reference_species": args.reference_species or "",
            "query_species": args.query_species or "", "orthologs": pairs.path if pairs else ""}
    if args.model:
        model = Annotator.load(args.model)
        prov["model_sha256"] = sha256_file(args.model)
        query = read_h5ad(args.query, "query")
        result = annotate(query, annotator=model, provenance=prov, **kwargs)
    else:
        if args.pipeline:
            _pipeline(args)  # an unknown name fails before the reference is read
        ref = _reference(args)
        query = read_h5ad(args.query, "query")
        name, spec, choice = _choose_pipeline(args, ref)  # without --pipeline: chosen as `sclinbench train` does
        result = annotate(query, reference=ref, pipeline_name=name, spec=spec, provenance={**prov, "selection": choice},
                          **kwargs)
        result.annotator.provenance["selection"] = choice
    write_result(result, paths, compression=None if args.compression == "none" else args.compression)
    print(_pipeline_line(result.annotator))
    print(result.summary())
    k = args.key_added
    voted = ", over_clustering, majority_voting" if args.majority_voting or args.over_clustering else ""
    print(f"wrote {paths['h5ad']} (obs {k}_label, _confidence, _score, _novelty_score, _is_novel, predicted_labels, "
          f"conf_score{voted}; obsm {k}_scores, {k}_probabilities; uns {k}), {paths['labels'].name}, "
          f"{paths['top_genes'].name}, {paths['metrics'].name} in {time.perf_counter() - t0:.1f} s")
    return 0


# ------------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where pipelines are defined")
    g.add_argument("--workflow", metavar="DIR", help="the sclinbench workflow checkout (default: $SCLINBENCH_WORKFLOW, else "
                   "the checkout sclinbench is installed from, else the current folder)")
    g.add_argument("--config", metavar="FILE", action="append", default=[],
                   help="extra config file(s) with pipelines:, merged over config/config.yaml (repeatable)")


def _fit_options(p: argparse.ArgumentParser) -> None:
    from sclinbench.tool import JOB_DEFAULTS as D

    g = p.add_argument_group("fitting")
    from sclinbench.evaluate.nested import MIN_INNER_DONORS
    from sclinbench.tool.catalog import TRAIN_CANDIDATES

    g.add_argument("--pipeline", metavar="NAME", help="a pipeline of the config (`sclinbench list pipelines`); "
                   f"default: chosen on the reference by nested selection among {', '.join(TRAIN_CANDIDATES)} "
                   f"(3 folds of held-out reference donors, or of cells with fewer than {MIN_INNER_DONORS} donors)")
    g.add_argument("--donor", metavar="COLUMN", help="obs column of the reference with its donors, whose held-out "
                   "folds choose the pipeline when --pipeline is not given (default: obs donor_id when present)")
    g.add_argument("--reference-counts", metavar="WHERE", default="auto",
                   help="matrix of the reference's raw counts: X, raw.X or layers/NAME (default auto: the first of "
                        "X, layers/counts, raw.X holding integers)")
    g.add_argument("--min-cells-per-label", type=int, default=0, metavar="N",
                   help="drop reference labels with fewer cells (default 0: keep all; a label with 1 cell is an error)")
    g.add_argument("--calibration-fraction", type=float, default=D["calibration_fraction"], metavar="F",
                   help="share of reference cells held out (stratified) to score the pipeline and calibrate novelty (0.2)")
    g.add_argument("--novelty-quantile", type=float, default=D["novelty_quantile"], metavar="Q",
                   help="query cells less confident than this quantile of held-out reference cells are flagged novel (0.01)")
    g.add_argument("--seed", type=int, default=0, help="seed of the held-out split and of the pipeline (0)")


def build_parser() -> argparse.ArgumentParser:
    from sclinbench.tool import CONFIDENCE_THRESHOLD
    from sclinbench.tool import JOB_DEFAULTS as D

    parser = argparse.ArgumentParser(prog="sclinbench", description=DESCRIPTION,
                                     epilog="The benchmark itself runs with snakemake (see README.md). "
                                            "Docs: docs/annotate.md")
    parser.add_argument("--version", action="version", version=f"sclinbench {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="print warnings and results only")
    sub = parser.add_subparsers(dest="command", metavar="{list,train,annotate}")
    quiet = argparse.ArgumentParser(add_help=False)  # -q also after the subcommand
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="print warnings and results only")

    p = sub.add_parser("list", parents=[quiet], help="datasets, pipelines and tasks with one-line descriptions",
                       description="Names defined by the workflow's configuration and dataset registry.")
    p.add_argument("what", nargs="?", default="all", choices=["all", "datasets", "pipelines", "tasks"])
    _common(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("train", parents=[quiet], help="fit a pipeline on a labelled reference and save it as a model file",
                       description="Fit a pipeline on all cells of a labelled reference (raw counts) and save it "
                                   "(arrays + JSON, no pickle) for `sclinbench annotate --model`.")
    p.add_argument("--reference", required=True, metavar="REF.h5ad", help="labelled reference with raw counts")
    p.add_argument("--label", required=True, metavar="COLUMN", help="obs column of the reference with the cell labels")
    p.add_argument("--model", required=True, metavar="OUT.npz", help="model file to write")
    p.add_argument("--no-reference-counts", action="store_true",
                   help="do not keep the reference counts in the model file (smaller; a query lacking some of the "
                        "model's genes then counts them zero instead of refitting on the shared genes, so its labels "
                        "can differ from `annotate --reference`)")
    _fit_options(p)
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("annotate", parents=[quiet], help="label the cells of a query with a reference or a model",
                       description="Label every cell of QUERY: predicted label, confidence, novelty score and flag "
                                   "in obs, provenance in uns; per-label counts, top genes per label and metrics "
                                   "as TSV files next to OUT.")
    src = p.add_argument_group("reference or model (one of)")
    src.add_argument("--reference", metavar="REF.h5ad", help="labelled reference with raw counts (fitted on all its cells)")
    src.add_argument("--label", metavar="COLUMN", help="obs column of the reference with the cell labels")
    src.add_argument("--model", metavar="M.npz", help="a model file from `sclinbench train`")
    p.add_argument("--query", required=True, metavar="Q.h5ad", help="cells to label (raw counts)")
    p.add_argument("--out", required=True, metavar="OUT.h5ad",
                   help="labelled copy of the query; tables go to OUT.labels.tsv, OUT.top_genes.tsv, OUT.metrics.tsv")
    p.add_argument("--query-counts", metavar="WHERE", default="auto", help="matrix of the query's raw counts (like --reference-counts)")
    p.add_argument("--truth", metavar="COLUMN", help="obs column of the query with known labels: scores the labels the reference shares")
    p.add_argument("--min-shared-genes", type=int, default=D["min_shared_genes"], metavar="N", help="refuse a query sharing fewer genes (100)")
    p.add_argument("--key-added", default=D["key_added"], metavar="KEY", help="prefix of the obs columns and the uns key (sclinbench)")
    p.add_argument("--compression", choices=["none", "gzip"], default="none",
                   help="h5ad compression of OUT (default none, as anndata; gzip is smaller and slower)")
    p.add_argument("--top-genes", type=int, default=D["top_genes"], metavar="N", help="genes per label in OUT.top_genes.tsv (20)")
    c = p.add_argument_group("confidence and majority voting (CellTypist's conventions)")
    c.add_argument("--confidence-threshold", type=float, default=CONFIDENCE_THRESHOLD, metavar="P",
                   help=f"report the share of cells whose calibrated confidence (conf_score) is below P ({CONFIDENCE_THRESHOLD:g})")
    c.add_argument("--majority-voting", action="store_true",
                   help="also write obs majority_voting: the most frequent label of each cell's cluster in a Leiden "
                        "over-clustering of the query (obs over_clustering), as celltypist.annotate(majority_voting=True)")
    c.add_argument("--over-clustering", metavar="COLUMN",
                   help="an obs column of the query with clusters to vote over (implies --majority-voting)")
    x = p.add_argument_group("across species (one-to-one orthologs)")
    x.add_argument("--reference-species", metavar="S", help="e.g. human, mouse, 'Homo sapiens'")
    x.add_argument("--query-species", metavar="S")
    x.add_argument("--orthologs", metavar="TABLE", help="ortholog table (the workflow's TSV or an Ensembl BioMart export, "
                   "CSV/TSV, gz ok), or 'ensembl[-RELEASE]' for the workflow's pinned Ensembl table")
    _fit_options(p)
    _common(p)
    p.set_defaults(func=cmd_annotate)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _setup_logging(args.quiet)
    try:
        return args.func(args)
    except SclinbenchError as exc:
        print(f"sclinbench error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sclinbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `sclinbench list | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
