"""A pipeline of the config as a typed, validated object: made once, then passed along.

A ``pipelines:`` entry of the config (a mapping, see :mod:`sclinbench.evaluate.pipeline`; what it may say: :data:`OPTIONS`) becomes a
:class:`PipelineSpec` -- or, for a ``nested:`` entry, a :class:`NestedSpec` whose candidates are
:class:`PipelineSpec` objects -- in exactly one place: :func:`parse_pipelines` (a config's whole
``pipelines:`` section) or :meth:`PipelineSpec.from_config` (one plain entry). They check every
option against the one definition of the options (:data:`OPTIONS`, :data:`NESTED_OPTIONS`,
both defined here) and raise a one-line :class:`SclinbenchError` naming the
key and the fix. Everything downstream (the builders of :mod:`sclinbench.evaluate.pipeline`,
:mod:`sclinbench.evaluate.engine`, :mod:`sclinbench.evaluate.plans`, :mod:`sclinbench.evaluate.nested`, the
``sclinbench train / annotate`` tool) reads the object's canonical sections and never validates a
mapping again.

The keys that decide which pipelines share work are properties of the object:

- :attr:`PipelineSpec.job_representation` -- the evaluate job of the workflow (one per dataset x
  task x representation name; ``nested`` for a nested pipeline);
- :attr:`PipelineSpec.representation_key` -- pipelines with the same key compute the same
  representation of all genes (a stateless one is computed once for all of them);
- :attr:`PipelineSpec.preprocessing_key` -- pipelines with the same key share one fitted
  preprocessing per fold (everything but the model and the control).

The workflow passes the config's own mappings to its jobs (``snakemake.params``: their values and
hence the jobs' params are unchanged); a job's script makes the objects from them with
:func:`parse_pipelines`.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

from sclinbench.errors import SclinbenchError, refuse_foreign_options
from sclinbench.evaluate.models import MODELS, model_family
from sclinbench.represent import FEATURE_SELECTORS, REDUCTIONS, REPRESENTATIONS
from sclinbench.represent.pca import check_svd_solver
from sclinbench.represent.select import check_hvg_flavor

# --------------------------------------------------------------------------- what an entry may say

SPEC_KEYS = ("representation", "features", "scale", "reduction", "model", "control", "repeats", "description",
             "role")
#: Marks an option without a default (it must be given).
REQUIRED = "<required>"
#: Every choice of every pipeline section and its options (name -> default), the one definition the
#: config schema is tested against (tests/test_config_schema.py). ``representation`` and ``model``
#: choose by ``name``, ``features`` and ``reduction`` by ``method``.
OPTIONS: dict[str, dict[str, dict]] = {
    "representation": {**REPRESENTATIONS, "embedding": {"obsm_key": REQUIRED}},
    "features": FEATURE_SELECTORS,
    "reduction": REDUCTIONS,
    "model": MODELS,
}
CHOICE_KEYS = {"representation": "name", "features": "method", "reduction": "method", "model": "name"}
#: ``scale: true`` means these options; ``scale: {max_value: ...}`` sets them.
SCALE_OPTIONS = {"max_value": 10.0}
#: Label permutations per fold of a shuffled-label control (``repeats:``), when not given.
DEFAULT_SHUFFLED_REPEATS = 5
ROLES = ("method", "control")
CONTROLS = ("none", "shuffled")
#: Options of a ``nested:`` section and their defaults (config/schema.yaml states the same; a test checks).
NESTED_OPTIONS = {"candidates": "<required>", "inner_folds": 3, "metric": "macro_f1"}
#: Metrics a nested selection can rank by (keys of :func:`sclinbench.evaluate.metrics.classification_scores`).
NESTED_METRICS = ("macro_f1", "balanced_accuracy", "accuracy")
#: The keys a nested pipeline entry may have.
NESTED_KEYS = ("nested", "description", "role")
#: The representation / model name of a nested pipeline in the tidy tables.
NESTED = "nested"


def is_nested(spec) -> bool:
    """True for a ``nested:`` pipeline entry or a :class:`~sclinbench.evaluate.spec.NestedSpec`."""
    if isinstance(spec, Mapping):
        return "nested" in spec
    return getattr(spec, "is_nested", False) is True


#: The sections of a canonical spec, in order (what :meth:`PipelineSpec.canonical` returns).
SECTIONS = ("representation", "features", "scale", "reduction", "model", "control", "repeats")
#: The sections that decide the preprocessing (:attr:`PipelineSpec.preprocessing_key`).
PREPROCESSING_SECTIONS = ("representation", "features", "scale", "reduction")


# --------------------------------------------------------------------------- checks of one entry

def _section(spec: Mapping, key: str, default: dict, name_key: str) -> dict:
    """A spec section as a dict; a bare string means ``{name_key: string}``."""
    value = spec.get(key, default)
    if value is None:
        value = default
    if isinstance(value, str):
        value = {name_key: value}
    if not isinstance(value, Mapping):
        raise SclinbenchError(
            f"pipeline key '{key}' must be a mapping like {{{name_key}: ...}}, got {value!r}"
        )
    if name_key not in value:
        raise SclinbenchError(f"pipeline key '{key}' needs '{name_key}'")
    return dict(value)


def _check_keys(where: str, given: Mapping, valid) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise SclinbenchError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(valid) if valid else 'none'}"
        )


def _choice(spec: Mapping, key: str, default: dict | None = None) -> dict:
    """One section of a spec: its choice, the options given for it (checked against
    :data:`~sclinbench.evaluate.spec.OPTIONS`) and the defaults of the others.

    An option that belongs to another choice (``model: {name: logreg, alpha: 2}``) is an error that
    names the choices it does belong to -- never silently dropped.
    """
    name_key = CHOICE_KEYS[key]
    registry = OPTIONS[key]
    section = _section(spec, key, default or {}, name_key)
    name = section[name_key]
    if name not in registry:
        raise SclinbenchError(
            f"pipeline key '{key}.{name_key}': '{name}' is unknown; valid: {', '.join(registry)}"
        )
    options = registry[name]
    given = {k: v for k, v in section.items() if k != name_key}
    refuse_foreign_options(registry, key, name, given, prefix=f"pipeline key '{key}': ")
    missing = [k for k, v in options.items() if v is REQUIRED and k not in given]
    if missing:
        raise SclinbenchError(f"{key} '{name}' needs {', '.join(map(repr, missing))}")
    return {name_key: name, **{k: v for k, v in options.items() if v is not REQUIRED}, **given}


def _numbers_as_float(d: dict) -> dict:
    """Copy of ``d`` with int values turned into float (so 10000 and 1e4 are the same setting)."""
    return {
        k: float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v for k, v in d.items()
    }


def _int_param(where: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise SclinbenchError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return int(value)


def _canonical(spec: Mapping) -> dict:
    """The canonical sections of a plain pipeline entry (every section a dict, defaults filled in),
    or :class:`SclinbenchError` naming the key, the choice and the valid options."""
    if not isinstance(spec, Mapping):
        raise SclinbenchError(f"a pipeline entry must be a mapping, got {type(spec).__name__}")
    _check_keys("pipeline", spec, SPEC_KEYS)
    if "representation" not in spec:
        raise SclinbenchError("pipeline: key 'representation' is required (e.g. {name: rankz})")
    if "model" not in spec:
        raise SclinbenchError("pipeline: key 'model' is required (e.g. {name: centroid})")
    role = spec.get("role", "method")
    if role not in ROLES:
        raise SclinbenchError(f"pipeline key 'role': '{role}' is unknown; valid: {', '.join(ROLES)}")

    rep = _choice(spec, "representation")
    if rep["name"] == "embedding":
        if not isinstance(rep.get("obsm_key"), str) or not rep["obsm_key"]:
            raise SclinbenchError(
                "representation 'embedding' needs 'obsm_key' (the adata.obsm key, e.g. X_uce)"
            )
    else:
        rep = {"name": rep["name"], **_numbers_as_float({k: v for k, v in rep.items() if k != "name"})}

    feat = _choice(spec, "features", {"method": "none"})
    if feat["method"] == "hvg":
        feat["n_top"] = _int_param("features 'hvg'", "n_top", feat["n_top"])
        check_hvg_flavor(feat["flavor"])
        if rep["name"] == "embedding":
            raise SclinbenchError(
                "features 'hvg' selects genes from counts and cannot follow representation 'embedding'; "
                "use features: {method: none} or {method: anova, k: ...}"
            )
    elif feat["method"] == "anova":
        feat["k"] = _int_param("features 'anova'", "k", feat["k"])

    scale = spec.get("scale", False)
    if scale is None or scale is False:
        scale = None
    elif scale is True:
        scale = dict(SCALE_OPTIONS)
    elif isinstance(scale, Mapping):
        _check_keys("scale", scale, tuple(SCALE_OPTIONS))
        scale = _numbers_as_float({**SCALE_OPTIONS, **scale})
    else:
        raise SclinbenchError(f"pipeline key 'scale' must be false, true or {{max_value: 10}}, got {scale!r}")

    red = _choice(spec, "reduction", {"method": "none"})
    if red["method"] == "pca":
        red["n_components"] = _int_param("reduction 'pca'", "n_components", red["n_components"])
        red["whiten"] = bool(red["whiten"])
        check_svd_solver(red["svd_solver"])

    model = _choice(spec, "model")
    if model["name"] == "centroid" and model.get("basis") == "pseudobulk_rankz" and (
            rep["name"] != "counts" or feat["method"] != "none" or scale is not None or red["method"] != "none"):
        raise SclinbenchError(
            "model 'centroid' with basis pseudobulk_rankz builds its profiles from raw counts and rankz's "
            "each cell itself: use representation: {name: counts} and no features, scale or reduction"
        )

    control = spec.get("control", "none")
    control = "none" if control in (None, False) else control
    if control not in CONTROLS:
        raise SclinbenchError(
            f"pipeline key 'control': '{control}' is unknown; valid: {', '.join(CONTROLS)}"
        )
    repeats = spec.get("repeats")
    if repeats is None:
        repeats = DEFAULT_SHUFFLED_REPEATS if control == "shuffled" else 1
    repeats = _int_param("pipeline", "repeats", repeats)
    if control != "shuffled" and repeats != 1:
        raise SclinbenchError(
            f"pipeline key 'repeats' ({repeats}) applies to control: shuffled only (a deterministic "
            "pipeline gives the same predictions every time); remove it"
        )
    return {"representation": rep, "features": feat, "scale": scale, "reduction": red, "model": model,
            "control": control, "repeats": repeats}


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# --------------------------------------------------------------------------- the objects

@dataclass(frozen=True, eq=False)
class PipelineSpec:
    """One plain pipeline, checked and in canonical form (make it with :meth:`from_config`).

    The sections are the canonical dicts of the entry (every default filled in; ``scale`` is
    ``None`` when off); treat them as read-only. Two specs are equal when their name, role and
    canonical sections are.
    """

    name: str
    representation: dict
    features: dict
    scale: dict | None
    reduction: dict
    model: dict
    control: str = "none"
    repeats: int = 1
    role: str = "method"
    description: str = ""

    @classmethod
    def from_config(cls, name: str, entry) -> PipelineSpec:
        """The spec of the plain ``pipelines:`` entry ``entry`` named ``name`` (a :class:`PipelineSpec`
        is returned as it is). Raises :class:`SclinbenchError` (one line: the key and the fix)."""
        if isinstance(entry, PipelineSpec):
            return entry
        if isinstance(entry, NestedSpec):
            raise SclinbenchError(f"pipeline '{name}' is a nested pipeline (nested:); name a plain pipeline here")
        s = _canonical(entry)
        return cls(name=str(name), **s, role=entry.get("role", "method"),
                   description=str(entry.get("description") or ""))

    def canonical(self) -> dict:
        """The canonical sections as one plain dict (JSON-serializable: model files, summaries)."""
        return {k: _copy(getattr(self, k)) for k in SECTIONS}

    @property
    def is_nested(self) -> bool:
        return False

    @property
    def job_representation(self) -> str:
        """The evaluate job of the workflow this pipeline runs in: its representation's name."""
        return self.representation["name"]

    @property
    def representation_key(self) -> str:
        """Pipelines with the same key compute the same representation of all genes (before any
        gene selection), so a stateless one is computed once for all of them."""
        return _key(self.representation)

    @property
    def preprocessing_key(self) -> str:
        """Pipelines with the same key have identical preprocessing (given the same seed and
        training cells): everything but the model and the control."""
        return _key({k: getattr(self, k) for k in PREPROCESSING_SECTIONS})

    def __eq__(self, other) -> bool:
        if not isinstance(other, PipelineSpec):
            return NotImplemented
        return (self.name, self.role, self.canonical()) == (other.name, other.role, other.canonical())

    def __hash__(self) -> int:
        return hash((self.name, self.role, _key(self.canonical())))


@dataclass(frozen=True, eq=False)
class NestedSpec:
    """A ``nested:`` pipeline: its candidates (plain methods reading counts, as :class:`PipelineSpec`
    in the order listed), the inner folds and the metric the choice ranks by."""

    name: str
    candidates: dict[str, PipelineSpec] = field(default_factory=dict)
    inner_folds: int = NESTED_OPTIONS["inner_folds"]
    metric: str = NESTED_OPTIONS["metric"]
    role: str = "method"
    description: str = ""

    @classmethod
    def from_config(cls, name: str, entry, pipelines: Mapping | None = None) -> NestedSpec:
        """The spec of the nested entry ``entry`` named ``name``; ``candidates`` is a list of names
        (resolved in ``pipelines``: entries or specs) or a mapping name -> entry or spec. Every
        candidate must be a method (no control, no nested pipeline) that reads counts; at least two."""
        if isinstance(entry, NestedSpec):
            return entry
        where = f"pipeline '{name}'"
        unknown = sorted(set(entry) - set(NESTED_KEYS))
        if unknown:
            raise SclinbenchError(f"{where}: key(s) {', '.join(unknown)} do not apply to a nested pipeline (its "
                                  "candidates carry their own steps); valid: " + ", ".join(NESTED_KEYS))
        if entry.get("role", "method") != "method":
            raise SclinbenchError(f"{where}: a nested pipeline is a method (role: method); remove role: {entry['role']}")
        section = entry["nested"]
        if not isinstance(section, Mapping):
            raise SclinbenchError(f"{where}: nested must be a mapping like {{candidates: [a, b], inner_folds: 3}}")
        bad = sorted(set(section) - set(NESTED_OPTIONS))
        if bad:
            raise SclinbenchError(f"{where}: unknown key(s) {', '.join(bad)} under nested; valid: "
                                  f"{', '.join(NESTED_OPTIONS)}")
        if "candidates" not in section:
            raise SclinbenchError(f"{where}: nested needs 'candidates' (a list of pipeline names)")
        raw = section["candidates"]
        if isinstance(raw, Mapping):
            resolved = dict(raw)
        elif isinstance(raw, (list, tuple)):
            if len(set(map(str, raw))) != len(raw):
                raise SclinbenchError(f"{where}: nested.candidates lists a pipeline twice; list each once")
            missing = [c for c in raw if pipelines is None or c not in pipelines]
            if missing:
                known = ", ".join(sorted(pipelines or {}))
                raise SclinbenchError(f"{where}: nested candidate '{missing[0]}' is not under 'pipelines:' (known: "
                                      f"{known}); define it there (e.g. add --configfile config/grid.yaml) or remove it")
            resolved = {str(c): pipelines[c] for c in raw}
        else:
            raise SclinbenchError(f"{where}: nested.candidates must be a list of pipeline names, got {raw!r}")
        if len(resolved) < 2:
            raise SclinbenchError(f"{where}: nested selection needs at least 2 candidates, got {len(resolved)}")
        candidates = {str(c): _candidate(where, str(c), cspec) for c, cspec in resolved.items()}
        folds = section.get("inner_folds", NESTED_OPTIONS["inner_folds"])
        if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2:
            raise SclinbenchError(f"{where}: nested.inner_folds must be an integer >= 2, got {folds!r}")
        metric = section.get("metric", NESTED_OPTIONS["metric"])
        if metric not in NESTED_METRICS:
            raise SclinbenchError(f"{where}: nested.metric '{metric}' is unknown; valid: {', '.join(NESTED_METRICS)}")
        return cls(name=str(name), candidates=candidates, inner_folds=int(folds), metric=metric,
                   description=str(entry.get("description") or ""))

    @property
    def is_nested(self) -> bool:
        return True

    @property
    def job_representation(self) -> str:
        """The evaluate job of the workflow this pipeline runs in (``nested``: evaluate_nested)."""
        return NESTED

    @property
    def family(self) -> str:
        """The candidates' model family when they share one, else ``mixed``."""
        families = {model_family(c.model["name"]) for c in self.candidates.values()}
        return families.pop() if len(families) == 1 else "mixed"

    def __eq__(self, other) -> bool:
        if not isinstance(other, NestedSpec):
            return NotImplemented
        return (self.name, self.candidates, self.inner_folds, self.metric) == (
            other.name, other.candidates, other.inner_folds, other.metric)

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.candidates), self.inner_folds, self.metric))


def _candidate(where: str, cname: str, cspec) -> PipelineSpec:
    """One candidate of a nested pipeline as a spec, or the error naming the nested pipeline."""
    if isinstance(cspec, NestedSpec) or (not isinstance(cspec, PipelineSpec) and is_nested(cspec)):
        raise SclinbenchError(f"{where}: candidate '{cname}' is itself nested; candidates are plain pipelines")
    if not isinstance(cspec, (Mapping, PipelineSpec)):
        raise SclinbenchError(f"{where}: candidate '{cname}' is not a pipeline entry (a mapping)")
    role = cspec.role if isinstance(cspec, PipelineSpec) else cspec.get("role", "method")
    if role == "control":
        raise SclinbenchError(f"{where}: candidate '{cname}' is a control; candidates are method pipelines")
    try:
        s = PipelineSpec.from_config(cname, cspec)
    except SclinbenchError as exc:
        raise SclinbenchError(f"{where}: candidate '{cname}': {exc}") from None
    if s.control != "none":
        raise SclinbenchError(f"{where}: candidate '{cname}' is a control (control: {s.control})")
    if s.representation["name"] == "embedding":
        raise SclinbenchError(f"{where}: candidate '{cname}' reads an embedding; nested candidates read counts")
    return s


def _copy(value):
    return dict(value) if isinstance(value, dict) else value


def parse_pipelines(pipelines: Mapping) -> dict[str, PipelineSpec | NestedSpec]:
    """``name -> spec`` of a ``pipelines:`` section (entries, or specs kept as they are), in its
    order; nested candidates named in the section are resolved there. A plain entry's error is
    prefixed with ``pipeline '<name>' in the configuration:``; a nested one names the pipeline."""
    if not isinstance(pipelines, Mapping):
        raise SclinbenchError(f"'pipelines:' must be a mapping of name -> entry, got {type(pipelines).__name__}")
    out: dict[str, PipelineSpec | NestedSpec] = {}
    for name, entry in pipelines.items():
        if isinstance(entry, NestedSpec) or (not isinstance(entry, PipelineSpec) and is_nested(entry)):
            out[name] = NestedSpec.from_config(name, entry, pipelines)
            continue
        try:
            out[name] = PipelineSpec.from_config(name, entry)
        except SclinbenchError as exc:
            raise SclinbenchError(f"pipeline '{name}' in the configuration: {exc}") from None
    return out
