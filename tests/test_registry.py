"""Registry checks run when the Snakefile is parsed: names, URLs, duplicate and missing files."""

from __future__ import annotations

import pytest

from sclinbench.data.registry import (
    check_name,
    check_registry,
    check_url,
    download_summary,
    fetch_hint,
    legacy_raw_path,
    raw_name,
    url_file,
    used_datasets,
)
from sclinbench.errors import SclinbenchError

TENX = "filtered_feature_bc_matrix.h5"


@pytest.mark.parametrize("name", ["my data", "../escape", "a/b", "x.y", ""])
def test_bad_dataset_names_say_what_names_must_match(name):
    with pytest.raises(SclinbenchError) as err:
        check_name(name, "dataset", "config/datasets.yaml")
    message = str(err.value)
    assert "names must match [A-Za-z0-9_]+" in message and "config/datasets.yaml" in message and "rename it" in message
    check_name("my_data_2", "dataset", "x")


@pytest.mark.parametrize("url", ["https://example.org/data/", "https://example.org/data/..",
                                 "https://example.org/a/../b.h5", "https://example.org", "ftp://example.org/x.h5",
                                 "example.org/x.h5"])
def test_urls_that_name_no_file_are_refused(url):
    with pytest.raises(SclinbenchError) as err:
        check_url(url, "registry entry 'x', files[0]")
    assert "registry entry 'x', files[0]" in str(err.value) and repr(url) in str(err.value)
    check_url("https://example.org/data/x.h5ad?download=1", "w")
    check_url("file:///data/x.h5ad", "w")


def test_same_named_files_get_distinct_stable_raw_names():
    a, b = f"https://example.org/run1/outs/{TENX}", f"https://example.org/run2/outs/{TENX}"
    assert raw_name(a) != raw_name(b) and raw_name(a).endswith(f"-{TENX}") and raw_name(a) == raw_name(a)
    assert len(raw_name(a).split("-", 1)[0]) == 8
    entry = {"files": [{"url": a}, {"url": b}]}
    assert url_file("d", entry, raw_name(b)) == {"url": b}
    assert legacy_raw_path("d", entry, a) is None  # the old shared name is ambiguous: never reused
    single = {"files": [{"url": a}]}
    assert legacy_raw_path("d", single, a) == f"resources/raw/d/{TENX}"
    assert raw_name("https://x.org/some%20file%20(1).h5ad") .endswith("-some_file_1_.h5ad")


def test_the_same_file_twice_is_refused():
    reg = {"d": {"source": "url", "files": [{"url": "https://x.org/a.h5"}, {"url": "https://x.org/a.h5"}]}}
    with pytest.raises(SclinbenchError, match=r"files\[0\] and files\[1\] are the same file"):
        check_registry(reg, "reg.yaml")


def test_missing_local_file_is_caught_for_used_datasets_only(tmp_path):
    reg = {"mine": {"source": "local", "files": [{"path": "data/mine.h5ad"}]}}
    check_registry(reg, "reg.yaml", used=[], workdir=tmp_path)  # not part of this run: fine
    with pytest.raises(SclinbenchError) as err:
        check_registry(reg, "reg.yaml", used=["mine"], workdir=tmp_path)
    message = str(err.value)
    assert "'data/mine.h5ad'" in message and "files[0].path" in message and str(tmp_path) in message
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.h5ad").write_bytes(b"x")
    check_registry(reg, "reg.yaml", used=["mine"], workdir=tmp_path)


def test_used_datasets_include_collection_members():
    reg = {"c": {"members": {"A a": "a", "B b": "b"}}, "a": {}, "b": {}, "z": {}}
    assert used_datasets(reg, ["c"]) == ["c", "a", "b"]


def test_one_summary_line_for_unpinned_and_plain_http():
    reg = {"a": {"files": [{"url": "http://x.org/a.h5"}, {"url": "https://x.org/b.h5", "sha256": "0" * 64}]},
           "b": {"files": [{"url": "https://y.org/c.h5"}]}, "unused": {"files": [{"url": "http://z.org/d"}]}}
    line = download_summary(reg, ["a", "b"], lock={"https://y.org/c.h5": {}})
    assert line.startswith("sclinbench warning: ") and "\n" not in line
    assert "2 of 3 download(s) have no sha256" in line and "1 of them are checked" in line
    assert "1 use plain http://" in line
    assert download_summary({"p": {"source": "bundled"}}, ["p"]) is None


def test_fetch_hint_from_cellxgene_keys():
    assert fetch_hint({}, {"url": "u"}) is None
    hint = fetch_hint({"collection_id": "e5f58829", "dataset_version_id": "01ef7ded"}, {"url": "u"})
    assert "https://cellxgene.cziscience.com/collections/e5f58829" in hint and "01ef7ded" in hint
    assert "CELLxGENE retires dataset versions, a newer version may replace this URL" in hint


def test_missing_ortholog_table_is_caught_at_parse_time(tmp_path):
    reg = {"c": {"source": "collection", "members": {"A a": "a", "B b": "b"}, "reference": "A a",
                 "orthologs": {"source": "file", "path": "tables/ab.csv"}}, "a": {}, "b": {}}
    with pytest.raises(SclinbenchError, match=r"ortholog table 'tables/ab.csv' \(orthologs.path\) does not exist"):
        check_registry(reg, "reg.yaml", used=["c", "a", "b"], workdir=tmp_path)
    reg["c"]["members"]["B b"] = "nope"
    with pytest.raises(SclinbenchError, match="member 'nope'"):
        check_registry(reg, "reg.yaml", used=[], workdir=tmp_path)


def test_local_file_checked_against_a_pinned_sha256(tmp_path):
    from sclinbench.data.datasets import verify_inputs

    path = tmp_path / "mine.h5ad"
    path.write_bytes(b"my cells")
    entry = {"source": "local", "files": [{"path": str(path), "sha256": "0" * 64}]}
    with pytest.raises(SclinbenchError) as err:
        verify_inputs("mine", entry, [str(path)], None)
    assert "the registry pins" in str(err.value) and "delete it" not in str(err.value)
    assert path.exists()
    entry["files"][0]["sha256"] = None
    digests, how = verify_inputs("mine", entry, [str(path)], None)
    assert how == ["local"] and len(digests[0]) == 64


def test_schema_default_of_unlabelled_is_the_package_default():
    from pathlib import Path

    import yaml

    from sclinbench.data import DEFAULT_UNLABELLED
    from sclinbench.data.download import DEFAULT_DEADLINE

    root = Path(__file__).resolve().parents[1]
    schema = yaml.safe_load((root / "config" / "datasets.schema.yaml").read_text())
    assert tuple(schema["properties"]["unlabelled"]["default"]) == DEFAULT_UNLABELLED
    config_schema = yaml.safe_load((root / "config" / "schema.yaml").read_text())
    assert config_schema["properties"]["download"]["properties"]["deadline"]["default"] == DEFAULT_DEADLINE
