"""docs/DESIGN.md and config/README.md name only things that exist.

Every backticked path of DESIGN.md is a file or folder of the checkout (paths a run writes, with
wildcards, are checked against the rules instead); every backticked name in its list of module APIs
is defined in the package; every key of its config example and of config/README.md's table of
top-level keys is a key of config/schema.yaml, and that table lists every one.
"""

import ast
import re

import pytest
import yaml
from conftest import REPO

DESIGN = (REPO / "docs/DESIGN.md").read_text()
CONFIG_README = (REPO / "config/README.md").read_text()
SCHEMA = yaml.safe_load((REPO / "config/schema.yaml").read_text())
PACKAGE = REPO / "src/sclinbench"
RUN_FOLDERS = ("results/", "resources/", "logs/", "benchmarks/<", "benchmarks/*")
RULES_TEXT = "".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))


def _backticked(text):
    return re.findall(r"`([^`\n]+)`", text)


def _defined_names():
    """Every top-level function, class and assignment of the package (and methods of its classes)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(target, ast.Name):
                        names.add(target.id)
    return names


def _module_files():
    """Every file of the package, scripts/ and benchmarks/ by its name and its path below the package."""
    files = set()
    for folder in (PACKAGE, REPO / "scripts", REPO / "benchmarks"):
        for path in folder.rglob("*.py"):
            files.add(path.name)
            files.add(str(path.relative_to(PACKAGE)) if folder == PACKAGE else path.name)
    files |= {f"{p.name}/" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return files


def test_every_path_design_names_exists():
    missing = []
    for token in _backticked(DESIGN):
        token = token.split()[0].rstrip(",.;:")
        if "/" not in token or token.startswith(("http", "s:", "a->", "obsm")) or "->" in token:
            continue
        if re.match(r"[A-Za-z_]+\.[a-z_]+/", token):  # attributes (snakemake.input/output), not a path
            continue
        path = token.split("|")[0]
        if "__pycache__" in path or path == ".snakemake/":
            # made by Python when the package is imported / by Snakemake at its first run: a fresh
            # clone has neither
            continue
        if path.startswith(RUN_FOLDERS) or any(c in path for c in "<>{}~*"):
            # a file the run writes: its folder is named by a rule (or by the package)
            stem = re.split(r"[<{~*]", path)[0].rstrip("/").rsplit("/", 1)[0] if "/" in path else path
            if stem and stem not in RULES_TEXT and not any(stem in p.read_text() for p in PACKAGE.rglob("*.py")):
                missing.append(token)
            continue
        candidates = [REPO / path, PACKAGE / path, PACKAGE.parent / path]
        if not any(c.exists() for c in candidates):
            missing.append(token)
    assert not missing, f"docs/DESIGN.md names paths that do not exist: {missing}"


def _module_api_section():
    start = DESIGN.index("## Module APIs")
    return DESIGN[start:DESIGN.index("\n## ", start + 1)]


def test_every_module_design_lists_exists_and_every_module_is_listed():
    section = _module_api_section()
    listed = set(re.findall(r"^- `([a-z_/]+(?:\.py)?)`", section, flags=re.M))
    files = _module_files()
    assert not {m for m in listed if m not in files}, listed - files
    package_modules = {p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    package_modules |= {f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    unlisted = {m for m in package_modules if m not in listed and m != "cli.py" and m != "errors.py"}
    assert not unlisted, f"docs/DESIGN.md's module list lacks {sorted(unlisted)}"


@pytest.mark.parametrize("section", ["Module APIs"])
def test_every_name_design_gives_the_modules_is_defined(section):
    text = _module_api_section()
    defined = _defined_names()
    config_keys = set(yaml.safe_load((REPO / "config/datasets.schema.yaml").read_text())["properties"])
    defined |= config_keys | set(SCHEMA["properties"])
    missing = []
    for token in _backticked(text):
        for name in re.findall(r"(?:^|[\s.(=])([A-Za-z_][A-Za-z0-9_]*)(?=\()", " " + token):
            if name not in defined and name not in ("DataFrame", "Pipeline", "dict"):
                missing.append(name)
        if re.fullmatch(r"[A-Z][A-Za-z0-9]+|[A-Z][A-Z0-9_]+|[a-z_]+[a-z0-9_]*", token):
            if token not in defined and token not in {"role", "snakemake", "sclinbench", "hsapiens",
                                                     "DummyClassifier", "benchmarks"} \
                    and not token.endswith("_"):
                missing.append(token)
    assert not missing, f"docs/DESIGN.md names what the package does not define: {sorted(set(missing))}"


def test_design_config_example_uses_schema_keys():
    block = DESIGN[DESIGN.index("## Config (config/config.yaml"):]
    block = block[block.index("```yaml") + 7:block.index("```", block.index("```yaml") + 7)]
    example = yaml.safe_load(block)
    assert set(example) <= set(SCHEMA["properties"]), set(example) - set(SCHEMA["properties"])
    task_keys = set(SCHEMA["$defs"]["task"]["properties"])
    for name, task in example["tasks"].items():
        assert set(task) <= task_keys, (name, set(task) - task_keys)
    pipeline_keys = set(SCHEMA["$defs"]["pipeline"]["properties"])
    for name, spec in example["pipelines"].items():
        assert set(spec) <= pipeline_keys, (name, set(spec) - pipeline_keys)


def test_config_readme_describes_every_top_level_key():
    table = CONFIG_README[CONFIG_README.index("## Top-level keys"):CONFIG_README.index("## Pipelines")]
    keys = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M))
    assert keys == set(SCHEMA["properties"]), (keys ^ set(SCHEMA["properties"]))


def test_config_readme_options_table_matches_the_package():
    from sclinbench.evaluate.spec import OPTIONS

    table = CONFIG_README[CONFIG_README.index("| step | choice |"):CONFIG_README.index("`sclinbench list`")]
    for step, choices in OPTIONS.items():
        for choice, options in choices.items():
            row = next((line for line in table.splitlines() if f"| `{choice}` |" in line), None)
            assert row is not None, (step, choice)
            for option in options:
                assert f"`{option}`" in row, (step, choice, option)


@pytest.mark.parametrize("heading, columns", [
    ("## Splits", "SPLIT_COLUMNS"),
    ("## metrics.tsv", "METRICS_TSV_COLUMNS"),
    ("## summary.tsv", "SUMMARY_TSV_COLUMNS"),
    ("## paired.tsv", "PAIRED_TSV_COLUMNS"),
    ("## unseen_labels.tsv", "UNSEEN_TSV_COLUMNS"),
    ("## Predictions\n", "PREDICTION_COLUMNS"),
])
def test_design_columns_are_the_contracts(heading, columns):
    """The columns DESIGN.md gives each file are those of sclinbench.workflow.contracts, in order."""
    from sclinbench.workflow import contracts

    start = DESIGN.index(heading)
    section = DESIGN[start:DESIGN.index("\n## ", start + 1)]
    if heading == "## Splits":
        sentence = section[section.index("used in:"):section.index("Every evaluation")]
        listed = re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", sentence))
    else:
        first = re.search(r"`([a-z_]+(?:, [a-z_]+)+)`", section.replace("\n", " ")).group(1)
        listed = first.split(", ")
    assert listed == list(getattr(contracts, columns)), (listed, getattr(contracts, columns))
