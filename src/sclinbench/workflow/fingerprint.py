"""Code fingerprints: which package code a workflow step runs, and which code made a result.

Snakemake reruns a job when its ``params`` change, so every rule passes the fingerprint of the
sclinbench code its script runs as ``params.code`` (``rules/common.smk: code_fingerprint``). A
fingerprint is found by reading source, never by importing it (cheap at Snakefile parse time: this
module needs the standard library only):

- Start from every statement of the script (``scripts/<name>.py``).
- Each name a statement uses is looked up where it is defined: a top-level function, class,
  constant or import of a package module, followed through ``from sclinbench.x import y``,
  ``import sclinbench.x``, ``report.read_metrics`` and imports inside functions, transitively.
  Unused definitions do not count: a change to ``metrics.score`` reruns the score step, not the
  evaluate step whose code only reads two constants of ``sclinbench.evaluate.metrics``.
- When the static view could be wrong it takes more, never less: a module used as a value
  (``getattr(report, name)``), a name a module does not define, ``globals()``/``vars()``, a
  decorator or statement with import-time effects (anything but plain definitions), ``importlib``
  or ``__import__`` (then the whole package).
- Each definition counts as its normalized source (``ast.unparse`` with docstrings removed), so an
  edit to a comment, a docstring or the layout changes nothing, and any change to code does.

The value is one readable line, a short hash per module, e.g. ``sclinbench io:1f0c.. represent:9ab2..``:
Snakemake's dry-run reason ("Params have changed since last execution: ... before: ... now: ...")
then shows which module changed. The bookkeeping itself (this module and
:mod:`sclinbench.workflow.records`, the job records) is left out.
"""

from __future__ import annotations

import ast
import builtins
import gc
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGE = PACKAGE_DIR.name
#: the bookkeeping, never counted (also when run as python -m sclinbench.workflow.fingerprint)
_SELF = {f"{PACKAGE}.workflow.fingerprint", f"{PACKAGE}.workflow.records"}
_PREFIX = "sclinbench"
#: Decorators of the standard library that only wrap what they decorate (no registration, no
#: import-time effect), so a decorated definition still counts only where it is used.
_PURE_DECORATORS = {"dataclass", "contextmanager", "asynccontextmanager", "lru_cache", "cache",
                    "cached_property", "property", "staticmethod", "classmethod", "wraps",
                    "total_ordering", "abstractmethod"}
_BUILTINS = set(dir(builtins))


# --------------------------------------------------------------------------- reading source

def _strip_docstrings(tree: ast.AST) -> None:
    """Drop every string-only statement (docstrings and bare strings); they do not change behaviour.

    Statements only hold statements in their bodies, so expressions are never visited.
    """
    stack = [tree]
    while stack:
        node = stack.pop()
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            body = getattr(node, field, None)
            if not isinstance(body, list) or not body:
                continue
            if isinstance(body[0], ast.stmt):
                kept = [s for s in body
                        if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                and isinstance(s.value.value, str))]
                if len(kept) != len(body):
                    setattr(node, field, kept or ([ast.Pass()] if field == "body" else []))
            stack.extend(body)  # statements, except handlers and match cases (which hold bodies)


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


def _function_locals(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    """Names local to a function: its arguments and what its body binds (imports excepted)."""
    a = fn.args
    names = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x}
    declared = set()
    stack = list(fn.body) if isinstance(fn.body, list) else [fn.body]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            declared.update(n.names)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
            stack.extend(n.decorator_list)  # the body is another scope
        elif not isinstance(n, (*_FUNCTIONS, *_COMPREHENSIONS)):
            stack.extend(ast.iter_child_nodes(n))
    return names - declared


def _scan(node: ast.AST):
    """One pass over a statement: the global names it loads, its imports, its ``global`` names.

    Names come with the attribute chain after them (``report.read_metrics``). Names local to a
    function (arguments, assignments) are not globals and are left out; names bound by an import
    inside a function are kept (the import is followed instead). Imports come with whether they run
    when the module is imported (not inside a function).
    """
    chains: list[tuple[str, ...]] = []
    imports: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
    declared: set[str] = set()
    stack: list[tuple[ast.AST, frozenset, bool]] = [(node, frozenset(), True)]
    while stack:
        n, local, eager = stack.pop()
        if isinstance(n, _FUNCTIONS):
            a = n.args
            outer = [*a.defaults, *[d for d in a.kw_defaults if d is not None]]
            if not isinstance(n, ast.Lambda):
                outer += [*n.decorator_list, *[x.annotation for x in [*a.posonlyargs, *a.args,
                          *a.kwonlyargs, a.vararg, a.kwarg] if x and x.annotation]]
                outer += [n.returns] if n.returns else []
            stack.extend((x, local, eager) for x in outer)
            inner = local | _function_locals(n)
            body = n.body if isinstance(n.body, list) else [n.body]
            stack.extend((x, inner, False) for x in body)
        elif isinstance(n, _COMPREHENSIONS):
            targets = {t.id for g in n.generators for t in ast.walk(g.target) if isinstance(t, ast.Name)}
            inner = local | targets
            stack.append((n.generators[0].iter, local, eager))
            rest = [n.elt] if not isinstance(n, ast.DictComp) else [n.key, n.value]
            for i, g in enumerate(n.generators):
                rest += ([g.iter] if i else []) + list(g.ifs)
            stack.extend((x, inner, eager) for x in rest)
        elif isinstance(n, ast.Attribute):
            parts = []
            while isinstance(n, ast.Attribute):
                parts.append(n.attr)
                n = n.value
            if isinstance(n, ast.Name):
                if n.id not in local:
                    chains.append((n.id, *reversed(parts)))
            else:
                stack.append((n, local, eager))
        elif isinstance(n, ast.Name):
            if n.id not in local:
                chains.append((n.id,))
        else:
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                imports.append((n, eager))
            elif isinstance(n, ast.Global):
                declared.update(n.names)
            stack.extend((c, local, eager) for c in ast.iter_child_nodes(n))
    return chains, imports, declared


def _chains(node: ast.AST) -> list[tuple[str, ...]]:
    return _scan(node)[0]


def _top_names(stmt: ast.stmt) -> set[str]:
    """The names a top-level statement binds in its module (without looking into bodies)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return set().union(*(_stored_names(t) for t in targets))
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {_bound(a, stmt) for a in stmt.names if a.name != "*"}
    return _stored_names(stmt)


def _stored_names(node: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names.update(_bound(a, n) for a in n.names if a.name != "*")
        elif isinstance(n, ast.Global):
            names.update(n.names)
    return names


def _bound(alias: ast.alias, node: ast.Import | ast.ImportFrom) -> str:
    if alias.asname:
        return alias.asname
    return alias.name.split(".")[0] if isinstance(node, ast.Import) else alias.name


class _Unit:
    """One top-level statement of a module."""

    __slots__ = ("stmt", "_text", "defines", "chains", "imports", "eager", "always", "dynamic")

    def __init__(self, stmt: ast.stmt, module: _Module):
        self.stmt, self._text = stmt, None
        self.chains, imports, declared = _scan(stmt)
        self.imports: dict[str, list[tuple]] = {}  # bound name -> package targets (anywhere inside)
        self.eager: set[str] = set()  # package modules imported when the module is (not in a def)
        for node, eager in imports:
            for name, target in module.import_targets(node):
                self.imports.setdefault(name, []).append(target)
                if eager:
                    self.eager.add(target[1])
        self.dynamic = None  # "module" | "package"
        for chain in self.chains:
            if chain[0] in ("globals", "vars") and chain[0] not in module.top_names:
                self.dynamic = self.dynamic or "module"
            if chain[0] in ("importlib", "__import__", "import_module") or chain[:2] == ("sys", "modules"):
                self.dynamic = "package"
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.defines = {stmt.name}
            self.always = not all(_pure_decorator(d, module) for d in stmt.decorator_list) or (
                isinstance(stmt, ast.ClassDef) and bool(stmt.keywords))
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            self.defines = set().union(*(_stored_names(t) for t in targets))
            self.always = not all(_plain_target(t) for t in targets)  # x[k] = v, obj.attr = v mutate
        elif isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            self.defines, self.always = set(), False  # counted with every statement of the module
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            self.defines = {_bound(a, stmt) for a in stmt.names if a.name != "*"}
            self.always = any(a.name == "*" for a in stmt.names)
        elif _is_main_guard(stmt):  # runs only when the module is run as a program, never on import
            self.defines, self.always = set(), False
        else:  # if/try/with/for/expression statements: run at import time, may do anything
            self.defines = _stored_names(stmt)
            self.always = True
        self.defines |= declared  # a function rebinding a global counts for its users

    @property
    def text(self) -> str:
        """The statement's normalized source (docstrings and comments gone)."""
        if self._text is None:
            self._text = ast.unparse(self.stmt)
        return self._text


def _is_main_guard(stmt: ast.stmt) -> bool:
    t = stmt.test if isinstance(stmt, ast.If) else None
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq)
            and isinstance(t.comparators[0], ast.Constant) and t.comparators[0].value == "__main__")


def _plain_target(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_plain_target(e) for e in node.elts)
    if isinstance(node, ast.Starred):
        return _plain_target(node.value)
    return False


def _pure_decorator(node: ast.expr, module: _Module) -> bool:
    if isinstance(node, ast.Call):
        node = node.func
    chain = _chains(node)[0] if isinstance(node, (ast.Name, ast.Attribute)) else ()
    if not chain or chain[-1] not in _PURE_DECORATORS:
        return False
    root = chain[0]
    # the decorator must come from outside the package (stdlib), not from a package definition
    return (root in _BUILTINS and root not in module.top_names) or root in module.external_imports


class _Module:
    """A parsed package module (or a script): its top-level statements and what they bind."""

    def __init__(self, name: str, path: Path, is_package: bool, index: CodeIndex):
        self.name, self.path, self.is_package, self.index = name, path, is_package, index
        tree = ast.parse(path.read_bytes(), filename=str(path))
        _strip_docstrings(tree)
        self.top_names = set().union(*map(_top_names, tree.body)) if tree.body else set()
        self.external_imports = {
            _bound(a, s) for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))
            for a in s.names if a.name != "*" and not self._is_internal(s, a)}
        self.units = [_Unit(s, self) for s in tree.body]
        # compiler directives change how every statement of the module behaves
        self.future = [u.text for s, u in zip(tree.body, self.units)
                       if isinstance(s, ast.ImportFrom) and s.module == "__future__"]
        self.bindings: dict[str, list[int]] = {}
        for i, unit in enumerate(self.units):
            for name in unit.defines:
                self.bindings.setdefault(name, []).append(i)
        self.stars = [t for u in self.units for ts in u.imports.values() for t in ts if t[0] == "star"]

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = self.name.split(".")
        base = parts if self.is_package else parts[:-1]
        base = base[:len(base) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))

    def _is_internal(self, node, alias) -> bool:
        name = alias.name if isinstance(node, ast.Import) else self._absolute(node)
        return self.index.is_internal(name)

    def import_targets(self, node: ast.Import | ast.ImportFrom):
        """(bound name, target) for each package module or name the import binds."""
        if isinstance(node, ast.Import):
            for a in node.names:
                if not self.index.is_internal(a.name):
                    continue
                # `import a.b.c` binds `a` and runs a.b.c; `import a.b.c as x` binds x to a.b.c
                yield _bound(a, node), ("module", a.name if a.asname else a.name.split(".")[0])
                yield "", ("touch", a.name)
            return
        base = self._absolute(node)
        if not self.index.is_internal(base):
            return
        for a in node.names:
            if a.name == "*":
                yield "", ("star", base)
            else:
                yield _bound(a, node), ("from", base, a.name)


class Fingerprint:
    """The package code one script reaches: module -> short hash of the definitions it uses."""

    def __init__(self, modules: Mapping[str, str], names: Mapping[str, list[str]]):
        self.modules = dict(sorted(modules.items()))
        self.names = {m: sorted(names[m]) for m in self.modules}

    def __str__(self) -> str:
        return " ".join([_PREFIX] + [f"{m}:{h}" for m, h in self.modules.items()])

    def __repr__(self) -> str:
        return f"Fingerprint({str(self)!r})"


class CodeIndex:
    """Parsed package modules (each read once) and the fingerprints of scripts that import them."""

    def __init__(self, package: str = PACKAGE, package_dir: str | os.PathLike = PACKAGE_DIR):
        self.package, self.package_dir = package, Path(package_dir)
        self._modules: dict[str, _Module | None] = {}
        self._scripts: dict[Path, Fingerprint] = {}
        self._skip = set(_SELF) if PACKAGE_DIR == self.package_dir.resolve() else set()

    def is_internal(self, name: str) -> bool:
        return name == self.package or name.startswith(self.package + ".")

    def module(self, name: str) -> _Module | None:
        if name not in self._modules:
            rel = name.split(".")[1:]
            base = self.package_dir.joinpath(*rel)
            if name in self._skip:
                self._modules[name] = None
            elif (base / "__init__.py").is_file():
                self._modules[name] = _Module(name, base / "__init__.py", True, self)
            elif base.with_suffix(".py").is_file() and rel:
                self._modules[name] = _Module(name, base.with_suffix(".py"), False, self)
            else:
                self._modules[name] = None
        return self._modules[name]

    def all_modules(self) -> list[str]:
        names = []
        for path in sorted(self.package_dir.rglob("*.py")):
            rel = path.relative_to(self.package_dir).with_suffix("").parts
            rel = rel[:-1] if rel[-1] == "__init__" else rel
            names.append(".".join((self.package, *rel)))
        return names

    def script(self, path: str | os.PathLike) -> Fingerprint:
        """The fingerprint of the package code a script (a file outside the package) runs."""
        path = Path(path).resolve()
        if path not in self._scripts:
            collect = gc.isenabled()
            gc.disable()  # many short-lived AST nodes; in a big process (Snakemake) gc costs 2x
            try:
                self._scripts[path] = _Closure(self).of_script(path)
            finally:
                if collect:
                    gc.enable()
        return self._scripts[path]


class _Closure:
    """The definitions reached from one script (a walk over the name graph)."""

    def __init__(self, index: CodeIndex):
        self.index = index
        self.included: dict[str, set[int]] = {}
        self.touched: set[str] = set()
        self.whole: set[str] = set()

    def of_script(self, path: Path) -> Fingerprint:
        script = _Module("__main__", path, False, self.index)
        todo = [(script, i) for i in range(len(script.units))]
        self._walk(todo)
        modules, names = {}, {}
        for name, idx in sorted(self.included.items()):
            mod = self.index.module(name)
            texts = mod.future + sorted(mod.units[i].text for i in idx)
            digest = hashlib.sha256("\n\0".join(texts).encode()).hexdigest()[:10]
            short = name[len(self.index.package) + 1:] or "__init__"
            modules[short] = digest
            names[short] = sorted({d for i in idx for d in mod.units[i].defines} or {"<module body>"})
        return Fingerprint(modules, names)

    # The walk keeps a list of (module, unit index) to include; following a name adds more.
    def _walk(self, todo: list) -> None:
        self._todo = todo
        while self._todo:
            mod, i = self._todo.pop()
            unit = mod.units[i]
            if unit.dynamic == "package":
                for name in self.index.all_modules():
                    self._whole(name)
            elif unit.dynamic == "module":
                self._whole(mod.name)
            for targets in unit.imports.values():
                for target in targets:  # running the statement runs its imports
                    self._touch(target[1])
                    if target[0] == "star":
                        self._whole(target[1])
            for chain in unit.chains:
                for target in unit.imports.get(chain[0], ()):
                    self._follow(target, chain[1:])  # an import inside this statement
                for j in mod.bindings.get(chain[0], ()):
                    self._include(mod, j)
                    for target in mod.units[j].imports.get(chain[0], ()):
                        self._follow(target, chain[1:])

    def _include(self, mod: _Module, i: int) -> None:
        if mod.name == "__main__":
            return  # the script's own statements are all walked already
        seen = self.included.setdefault(mod.name, set())
        if i not in seen:
            seen.add(i)
            self._todo.append((mod, i))

    def _touch(self, name: str) -> None:
        """A module is imported: its parents run, and its statements with import-time effects."""
        if name in self.touched:
            return
        self.touched.add(name)
        if "." in name:
            self._touch(name.rpartition(".")[0])
        mod = self.index.module(name)
        if mod is None:
            return
        for i, unit in enumerate(mod.units):
            if unit.always:
                self._include(mod, i)
            for imported in unit.eager:  # its top-level imports run too
                self._touch(imported)

    def _whole(self, name: str) -> None:
        if name in self.whole:
            return
        self.whole.add(name)
        self._touch(name)
        mod = self.index.module(name)
        if mod is not None:
            for i in range(len(mod.units)):
                self._include(mod, i)

    def _follow(self, target: tuple, rest: tuple) -> None:
        kind = target[0]
        if kind == "touch":
            self._touch(target[1])
        elif kind == "star":
            self._whole(target[1])
        elif kind == "module":
            self._attribute(target[1], rest)
        elif kind == "from":
            self._attribute(target[1], (target[2], *rest))

    def _attribute(self, name: str, chain: tuple) -> None:
        """``name.chain[0].chain[1]...`` where ``name`` is a package module."""
        self._touch(name)
        mod = self.index.module(name)
        if not chain:
            self._whole(name)  # the module itself is used as a value
            return
        first, rest = chain[0], chain[1:]
        found = False
        if mod is not None:
            for j in mod.bindings.get(first, ()):
                found = True
                self._include(mod, j)
                for target in mod.units[j].imports.get(first, ()):
                    self._follow(target, rest)
        if (mod is None or mod.is_package) and self.index.module(f"{name}.{first}") is not None:
            found = True
            self._attribute(f"{name}.{first}", rest)
        elif f"{name}.{first}" in self.index._skip:
            found = True
        if not found and mod is not None:
            for star in mod.stars:
                self._whole(star[1])
            self._whole(name)  # defined at run time (or not at all): count everything


_DEFAULT_INDEX: CodeIndex | None = None


def script_code(path: str | os.PathLike) -> str:
    """The fingerprint of the package code the script at ``path`` runs, as one line (a params value).

    Kept in ``__pycache__`` next to the package's bytecode, valid while no ``.py`` file of the package
    and not the script changed (size and modification time, as Python checks its bytecode), so a
    Snakefile parse reads the source only after an edit.
    """
    global _DEFAULT_INDEX
    if _DEFAULT_INDEX is None:
        _DEFAULT_INDEX = CodeIndex()
    return cached_code(_DEFAULT_INDEX, path, PACKAGE_DIR / "__pycache__" / "sclinbench-fingerprints.json")


def _state(index: CodeIndex, script: Path) -> str:
    stats = [sys.version.split()[0]]
    for path in [script, *sorted(index.package_dir.rglob("*.py"))]:
        st = path.stat()
        stats.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(stats).encode()).hexdigest()


def cached_code(index: CodeIndex, path: str | os.PathLike, cache: str | os.PathLike) -> str:
    """``str(index.script(path))``, read from the JSON file ``cache`` when no source changed since."""
    path, cache = Path(path).resolve(), Path(cache)
    state = _state(index, path)
    try:
        entries = json.loads(cache.read_text())
    except (OSError, ValueError):
        entries = {}
    hit = entries.get(str(path))
    if isinstance(hit, list) and len(hit) == 2 and hit[0] == state:
        return hit[1]
    value = str(index.script(path))
    entries[str(path)] = [state, value]
    try:  # atomically; a read-only install just recomputes next time
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", dir=cache.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(entries, handle, indent=0, sort_keys=True)
        os.replace(tmp, cache)
    except OSError:
        pass
    return value


def parse_code(code: str | None) -> dict[str, str]:
    """``"sclinbench io:1f.. metrics:9a.."`` -> ``{"io": "1f..", "metrics": "9a.."}``."""
    if not code:
        return {}
    parts = code.split()
    return dict(p.split(":", 1) for p in parts[1:] if ":" in p)


def changed_modules(made_by: str | None, installed: str | None) -> list[str]:
    """Modules whose code differs between two fingerprints (added, removed or changed)."""
    a, b = parse_code(made_by), parse_code(installed)
    return sorted(m for m in set(a) | set(b) if a.get(m) != b.get(m))


def main(argv: list[str] | None = None) -> int:
    """``python -m sclinbench.workflow.fingerprint scripts/*.py``: each script's fingerprint and what it counts."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("scripts", nargs="+")
    args = parser.parse_args(argv)
    index = CodeIndex()
    for script in args.scripts:
        fp = index.script(script)
        print(f"{script}: {fp}")
        for module, names in fp.names.items():
            print(f"  {module}: {', '.join(names)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
