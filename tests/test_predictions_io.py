"""Predictions tables as Parquet: typed columns, atomic write, one reader for every consumer."""

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fake_predictions import novel_predictions

from sclinbench.errors import SclinbenchError
from sclinbench.evaluate import metrics
from sclinbench.workflow import contracts
from sclinbench.workflow.io import write_table


@pytest.fixture
def pred():
    # novel-type folds: the held-out type's score column is NaN, labels repeat over pipelines/repeats
    p = novel_predictions({"good": 0.85, "weak": 0.55}, repeats=2).assign(fallback=False)
    p.loc[p.index[:3], "fallback"] = True
    p.loc[p.index[:2], "donor_id"] = None  # a cell without a donor: "" as in a TSV
    score_cols = sorted(c for c in p.columns if c.startswith(contracts.SCORE_PREFIX))
    return p[contracts.PREDICTION_COLUMNS + score_cols]


def test_parquet_columns_are_typed_and_read_back_as_the_tsv_was(pred, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sclinbench"):
        contracts.write_predictions(pred, tmp_path / "p.parquet")
    schema = pq.read_schema(tmp_path / "p.parquet")
    for column in contracts.PREDICTION_LABEL_COLUMNS:
        assert pa.types.is_dictionary(schema.field(column).type), column
    assert schema.field("fold").type == pa.int64() and schema.field("repeat").type == pa.int64()
    assert all(schema.field(c).type == pa.bool_() for c in contracts.PREDICTION_BOOLEAN_COLUMNS)
    assert schema.field("s:T").type == pa.float64() and schema.field("score").type == pa.float64()
    before, after = [r.getMessage() for r in caplog.records if "predictions" in r.getMessage()]
    assert before.startswith(f"writing predictions: {len(pred)} rows")
    size = (tmp_path / "p.parquet").stat().st_size
    assert f"{len(pred)} rows, {size} bytes in " in after and after.endswith(" s")

    back = contracts.read_predictions(tmp_path / "p.parquet")
    write_table(pred, tmp_path / "p.tsv.gz")
    tsv = contracts.read_predictions([tmp_path / "p.tsv.gz"])
    assert list(back.columns) == list(pred.columns) == list(tsv.columns)
    assert back.dtypes.equals(tsv.dtypes)
    assert back["donor_id"].iloc[0] == "" and back["fallback"].sum() == 3
    strings = [c for c in back.columns if back[c].dtype == object]
    pd.testing.assert_frame_equal(back[strings], tsv[strings])
    # the scores bit for bit (the TSV text keeps ~15 digits); NaN where a fold's model lacks the class
    assert np.array_equal(back["s:T"].to_numpy(), pred["s:T"].to_numpy(), equal_nan=True)
    assert back["s:T"].isna().sum() == pred["s:T"].isna().sum() > 0
    pd.testing.assert_frame_equal(metrics.score(back, "novel_type"), metrics.score(pred, "novel_type"))


def test_several_files_are_concatenated_in_order(pred, tmp_path):
    a, b = pred[pred.pipeline == "good"], pred[pred.pipeline == "weak"]
    contracts.write_predictions(a, tmp_path / "a.parquet")
    contracts.write_predictions(b, tmp_path / "b.parquet")
    both = contracts.read_predictions([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert both["pipeline"].tolist() == a["pipeline"].tolist() + b["pipeline"].tolist()
    assert both.groupby("pipeline").size().to_dict() == {"good": len(a), "weak": len(b)}


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(pred, tmp_path, monkeypatch):
    target = tmp_path / "p.parquet"

    def killed(table, where, **kwargs):
        with open(where, "wb") as fh:
            fh.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", killed)
    with pytest.raises(OSError, match="disk full"):
        contracts.write_predictions(pred, target)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_and_missing_files_are_one_line_errors(tmp_path, pred):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(SclinbenchError, match=r"bad\.parquet: not a readable Parquet predictions table") as exc:
        contracts.read_predictions(bad)
    assert "\n" not in str(exc.value) and "rerun its evaluate step" in str(exc.value)
    with pytest.raises(SclinbenchError, match=r"gone\.parquet: predictions table not found; run the evaluate step"):
        contracts.read_predictions([tmp_path / "gone.parquet"])
    with pytest.raises(SclinbenchError, match="missing column.*fold"):
        contracts.write_predictions(pred.drop(columns="fold"), tmp_path / "p.parquet")
