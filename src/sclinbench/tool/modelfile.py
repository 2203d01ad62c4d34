"""The model file of ``sclinbench train``: what it holds, which formats are read, how to rebuild one.

A model file (:mod:`sclinbench.tool.portable`: arrays + one JSON document, never pickle) holds the
fitted pipeline, the reference's gene ids and symbols, the label counts, the novelty and
probability calibration (:mod:`sclinbench.tool.calibrate`), the provenance and, unless trained
with ``--no-reference-counts``, the standardized reference counts and labels. With those counts a
query that lacks some of the model's genes is labelled by the pipeline refitted on the genes it
has, exactly as ``sclinbench annotate --reference`` fits it (same cells, genes, labels, seed), so
both paths give the same labels.

Format versions (:data:`sclinbench.tool.portable.FORMAT_VERSION`) change only when what a file
must hold changes. A file of a format this version reads is read whatever sclinbench version wrote
it (the writer's version is kept in the output's provenance); a file of an older format is refused
with the ``sclinbench train`` command that rebuilds it from its own provenance; a newer format asks
for a newer sclinbench.
"""

from __future__ import annotations

import functools
import logging
import shlex
from importlib import metadata

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sclinbench.errors import SclinbenchError
from sclinbench.tool import JOB_DEFAULTS, portable

log = logging.getLogger("sclinbench.annotate")


@functools.lru_cache(maxsize=1)
def _versions() -> tuple:
    import scipy
    import sklearn

    import sclinbench

    out = {"sclinbench": sclinbench.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
           "scikit-learn": sklearn.__version__, "pandas": pd.__version__}
    try:
        out["anndata"] = metadata.version("anndata")
    except metadata.PackageNotFoundError:
        out["anndata"] = "not installed"
    return tuple(out.items())


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    return dict(_versions())


def rebuild_command(meta: dict, path) -> str:
    """The ``sclinbench train`` command that rebuilds the model of ``meta`` (its own provenance)."""
    prov = meta.get("provenance", {}) if isinstance(meta.get("provenance"), dict) else {}
    cal = meta.get("calibration", {}) if isinstance(meta.get("calibration"), dict) else {}
    parts = ["sclinbench", "train", "--reference", str(prov.get("reference") or "REF.h5ad"),
             "--label", str(prov.get("label_column") or "COLUMN")]
    if meta.get("pipeline"):
        parts += ["--pipeline", str(meta["pipeline"])]
    if cal.get("seed") not in (None, 0):
        parts += ["--seed", str(cal["seed"])]
    if cal.get("fraction") not in (None, JOB_DEFAULTS["calibration_fraction"]):
        parts += ["--calibration-fraction", str(cal["fraction"])]
    if meta.get("novelty_quantile") not in (None, JOB_DEFAULTS["novelty_quantile"]):
        parts += ["--novelty-quantile", str(meta["novelty_quantile"])]
    return " ".join(shlex.quote(p) for p in [*parts, "--model", str(path)])


def _pack_counts(X: sp.csr_matrix, labels: np.ndarray, classes: list[str]) -> dict[str, np.ndarray]:
    """Reference counts as small CSR arrays (the smallest unsigned integer types that hold them)."""
    X = sp.csr_matrix(X)
    values = np.asarray(X.data)
    if values.size and (values.min() < 0 or not np.all(values == np.round(values))):
        raise SclinbenchError("reference counts to store are not non-negative integers")
    top = int(values.max()) if values.size else 0
    vtype = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if top <= np.iinfo(t).max)
    itype = np.uint16 if X.shape[1] <= np.iinfo(np.uint16).max else np.uint32
    codes = np.searchsorted(np.asarray(classes, dtype=str), np.asarray(labels, dtype=str))
    return {"reference/data": values.astype(vtype), "reference/indices": X.indices.astype(itype),
            "reference/indptr": X.indptr.astype(np.int64), "reference/shape": np.asarray(X.shape, dtype=np.int64),
            "reference/label_codes": codes.astype(np.uint16 if len(classes) < 65536 else np.uint32)}


def _unpack_counts(arrays: dict, classes: list[str], path) -> tuple[sp.csr_matrix, np.ndarray] | tuple[None, None]:
    if "reference/data" not in arrays:
        return None, None
    try:
        shape = tuple(int(v) for v in arrays["reference/shape"])
        X = sp.csr_matrix((arrays["reference/data"].astype(np.float32), arrays["reference/indices"].astype(np.int64),
                           arrays["reference/indptr"]), shape=shape)
        labels = np.asarray(classes, dtype=object)[arrays["reference/label_codes"].astype(np.int64)]
    except (KeyError, ValueError, IndexError) as exc:
        raise SclinbenchError(f"model file {path}: its reference counts are incomplete or damaged ({exc}); "
                              "retrain it with `sclinbench train`") from exc
    return X, labels


def save(annotator, path, with_counts: bool = True) -> None:
    """Write ``annotator`` (a :class:`sclinbench.tool.annotate.Annotator`) to ``path``."""
    meta = {
        "sclinbench_version": versions()["sclinbench"],
        "pipeline": annotator.pipeline_name, "spec": annotator.spec, "label_counts": annotator.label_counts,
        "novelty_quantile": annotator.novelty_quantile, "threshold": annotator.threshold,
        "temperature": annotator.temperature, "calibration": annotator.calibration,
        "provenance": annotator.provenance,
    }
    arrays = {"gene_ids": np.asarray(annotator.gene_ids, dtype=str),
              "gene_symbols": np.asarray(annotator.gene_symbols, dtype=str),
              "confidence_quantiles": annotator.confidence_quantiles}
    if with_counts and annotator.reference_counts is not None:
        arrays.update(_pack_counts(annotator.reference_counts, annotator.reference_labels,
                                   sorted(annotator.label_counts)))
    portable.save(path, annotator.pipeline, meta, arrays)


def load(cls, path):
    """Read a model file into ``cls`` (:class:`~sclinbench.tool.annotate.Annotator`); see the module docstring."""
    try:
        pipe, meta, arrays = portable.load(path)
    except portable.FormatVersionError as exc:
        version = exc.meta.get("format_version")
        written = exc.meta.get("sclinbench_version", "an unknown version")
        if isinstance(version, int) and version > portable.FORMAT_VERSION:
            raise SclinbenchError(
                f"model file {path} has model format {version} (written by sclinbench {written}), newer than this "
                f"sclinbench {versions()['sclinbench']} reads (format {portable.FORMAT_VERSION}): upgrade sclinbench, "
                f"or rebuild it with this one: {rebuild_command(exc.meta, path)}") from exc
        raise SclinbenchError(
            f"model file {path} has model format {version!r} (written by sclinbench {written}), which holds no "
            f"calibration for probabilities; this sclinbench reads format {portable.FORMAT_VERSION}: rebuild it "
            f"with {rebuild_command(exc.meta, path)}") from exc
    this = versions()["sclinbench"]
    if meta.get("sclinbench_version") != this:
        log.info("model file %s: model format %s written by sclinbench %s, read by sclinbench %s", path,
                 meta.get("format_version"), meta.get("sclinbench_version"), this)
    try:
        gene_ids, gene_symbols = arrays["gene_ids"].astype(object), arrays["gene_symbols"].astype(object)
        classes = sorted(meta["label_counts"])
        counts, labels = _unpack_counts(arrays, classes, path)
        self = cls(pipeline=pipe, pipeline_name=meta["pipeline"], spec=meta["spec"], gene_ids=gene_ids,
                   gene_symbols=gene_symbols, label_counts=meta["label_counts"],
                   confidence_quantiles=arrays["confidence_quantiles"], novelty_quantile=meta["novelty_quantile"],
                   threshold=meta["threshold"], temperature=float(meta["temperature"]),
                   calibration=meta["calibration"], provenance=meta["provenance"], source=str(path),
                   reference_counts=counts, reference_labels=labels)
    except KeyError as exc:
        raise SclinbenchError(f"model file {path} lacks {exc}; it is incomplete: retrain it with "
                              f"{rebuild_command(meta, path)}") from exc
    if len(gene_ids) != pipe.n_genes or len(gene_symbols) != len(gene_ids):
        raise SclinbenchError(
            f"model file {path} lists {len(gene_ids)} genes but its pipeline was fitted on {pipe.n_genes}; "
            "the file is damaged: retrain it with `sclinbench train`"
        )
    if counts is not None and (counts.shape[1] != len(gene_ids) or counts.shape[0] != len(labels)):
        raise SclinbenchError(f"model file {path}: its reference counts have {counts.shape[1]} genes, its gene list "
                              f"{len(gene_ids)}; the file is damaged: retrain it with `sclinbench train`")
    if set(map(str, pipe.classes_)) - set(self.label_counts):
        raise SclinbenchError(f"model file {path}: its classes and label counts disagree; retrain it")
    return self
