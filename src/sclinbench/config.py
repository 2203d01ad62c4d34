"""Configuration checks with one-line messages (the JSON Schemas live in config/)."""

from __future__ import annotations

import functools

import jsonschema
import yaml

from sclinbench.errors import SclinbenchError

#: Keys that choose among alternatives with options of their own (``name``, ``method``).
CHOICE_KEYS = ("name", "method")


def _where(path) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "top level"


@functools.lru_cache(maxsize=8)
def _validator(schema_path: str) -> jsonschema.Draft202012Validator:
    """The schema of ``schema_path``, parsed once per process (the registry checks every entry
    against the same schema; libyaml's loader when PyYAML has it)."""
    with open(schema_path) as handle:
        schema = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return jsonschema.Draft202012Validator(schema)


def schema_errors(instance: dict, schema_path: str) -> list[str]:
    """One readable line per schema violation (most specific first)."""
    validator = _validator(str(schema_path))
    lines = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: (len(e.path), list(map(str, e.path)))):
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
            chooser = next((k for k in CHOICE_KEYS if k in allowed and isinstance(error.instance, dict)
                            and k in error.instance), None)
            if chooser and error.path:  # a choice with options of its own (e.g. model: {name: logreg})
                options = [a for a in allowed if a != chooser]
                lines.append(f"{', '.join(repr(k) for k in extra)} at {_where(error.path)} is not an option of "
                             f"{error.path[-1]} '{error.instance[chooser]}' (its options: "
                             f"{', '.join(options) or 'none'})")
                continue
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            lines.append(f"unknown key {', '.join(repr(k) for k in extra)} at {_where(error.path)}{hint}")
        elif error.validator == "oneOf" and error.context:
            expected = error.schema.get("description") or jsonschema.exceptions.best_match(error.context).message
            lines.append(f"{_where(error.path)}: {error.instance!r} is not valid; expected {expected}")
        else:
            lines.append(f"{_where(error.path)}: {error.message}")
    return lines


def check(instance: dict, schema_path: str, source: str) -> None:
    """Raise :class:`SclinbenchError` naming the file, the key and the problem if ``instance`` is invalid."""
    errors = schema_errors(instance, schema_path)
    if errors:
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise SclinbenchError(f"{source}: {errors[0]}{more}; see {schema_path} for what each key means")
