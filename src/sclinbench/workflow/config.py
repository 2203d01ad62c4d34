"""Configuration checks with one-line messages (the JSON Schemas live in config/).

    python -m sclinbench.workflow.config FILE [FILE ...]   YAML syntax of config files, with file:line:column
"""

from __future__ import annotations

import functools

import jsonschema
import yaml

from sclinbench.errors import SclinbenchError

#: Keys that choose among alternatives with options of their own (``name``, ``method``).
CHOICE_KEYS = ("name", "method")


def load_yaml(path, what: str = "YAML file"):
    """The content of a YAML file; a syntax error is one line naming the file, line and column."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise SclinbenchError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SclinbenchError(yaml_problem(path, exc, what)) from None


def yaml_problem(path, exc, what: str = "YAML file") -> str:
    """``<path>:<line>:<column>: <what> is not valid YAML: <problem>`` from a PyYAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and mark is not None and start.line != mark.line:
        context = f"{context} started at line {start.line + 1}"
    problem = " ".join(str(x) for x in (context, getattr(exc, "problem", None)) if x)
    return (f"{path}{at}: {what} is not valid YAML ({problem or str(exc).splitlines()[0]}); "
            "fix it there (YAML indents with spaces, never tabs; close every [ and {)")


def check_files(paths) -> list[str]:
    """Problems of config files given to ``snakemake --configfile``, one line each: YAML syntax
    (file, line and column: Snakemake itself only says "not valid JSON or YAML") and a top level
    that is not a mapping. Keys are checked by the Snakefile against the schema, once the files
    are merged."""
    problems = []
    for path in paths:
        try:
            content = load_yaml(path, "config file")
        except SclinbenchError as exc:
            problems.append(str(exc))
            continue
        if content is not None and not isinstance(content, dict):
            problems.append(f"{path}: a config file must be a mapping of keys at the top level "
                            f"(got a {type(content).__name__})")
    return problems


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


def main(argv=None) -> int:
    import sys

    paths = list(sys.argv[1:] if argv is None else argv)
    problems = check_files(paths)
    for line in problems:
        print(f"sclinbench error: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
