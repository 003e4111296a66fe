from __future__ import annotations

import json

import pandas as pd
import pytest

from promptopt.data import load_examples, sample_path, split_examples
from promptopt.errors import DataError

FIELDS = dict(input_fields=("original_text", "rewritten_text"), target_field="rewrite_prompt")
HEADER = "id,original_text,rewrite_prompt,rewritten_text\n"


def _csv(tmp_path, body, name="d.csv", header=HEADER):
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


def test_bundled_sample_is_valid_and_varied():
    examples = load_examples(sample_path(), **FIELDS)
    assert len(examples) >= 40
    assert len({e.target for e in examples}) >= 30
    assert all(e.inputs["original_text"] != e.inputs["rewritten_text"] for e in examples)


def test_csv_jsonl_parquet_load_the_same(tmp_path):
    rows = [
        {"id": "a", "original_text": "Hi, there.", "rewrite_prompt": "Be formal.",
         "rewritten_text": "Good day."},
        {"id": "b", "original_text": 'Say "yes"', "rewrite_prompt": "Shout.",
         "rewritten_text": "YES!"},
    ]
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    loaded = [load_examples(tmp_path / f"d.{ext}", **FIELDS) for ext in ("csv", "jsonl", "parquet")]
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0][1].inputs["original_text"] == 'Say "yes"'


def test_id_is_optional(tmp_path):
    path = _csv(tmp_path, "x,p,y\n", header="original_text,rewrite_prompt,rewritten_text\n")
    assert load_examples(path, **FIELDS)[0].id == "1"


def test_missing_file():
    with pytest.raises(DataError, match="nope.csv.*not found"):
        load_examples("nope.csv", **FIELDS)


def test_missing_column_names_it(tmp_path):
    path = _csv(tmp_path, "1,x,y\n", header="id,original_text,rewritten_text\n")
    with pytest.raises(DataError) as info:
        load_examples(path, **FIELDS)
    assert info.value.field == "rewrite_prompt" and str(path) in str(info.value)


def test_empty_cell_names_row_and_field(tmp_path):
    path = _csv(tmp_path, "1,x,p,y\n2,x,  ,y\n")
    with pytest.raises(DataError) as info:
        load_examples(path, **FIELDS)
    assert (info.value.row, info.value.field) == (2, "rewrite_prompt")


def test_non_text_cell(tmp_path):
    rows = [{"original_text": "a", "rewrite_prompt": "p", "rewritten_text": "c"},
            {"original_text": "b", "rewrite_prompt": "q", "rewritten_text": 5}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError) as info:
        load_examples(tmp_path / "d.jsonl", **FIELDS)
    assert (info.value.row, info.value.field) == (2, "rewritten_text")
    assert "expected text" in str(info.value)


def test_undecodable_bytes(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(HEADER.encode() + "1,caf\xe9,p,y\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv, row 1 \(line 2\), field 'original_text'"
                       r": not UTF-8.*byte 52"):
        load_examples(path, **FIELDS)


def test_duplicate_ids(tmp_path):
    path = _csv(tmp_path, "7,x,p,y\n8,x,p,y\n7,z,q,w\n")
    with pytest.raises(DataError) as info:
        load_examples(path, **FIELDS)
    assert (info.value.row, info.value.field) == (3, "id")
    assert "first seen in row 1" in str(info.value)


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"original_text": "a", "rewrite_prompt": "p", "rewritten_text": "b"}\n{oops\n')
    with pytest.raises(DataError) as info:
        load_examples(path, **FIELDS)
    assert info.value.row == 2


def test_unsupported_extension(tmp_path):
    path = tmp_path / "d.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_examples(path, **FIELDS)


def test_split_is_seeded_and_disjoint():
    examples = load_examples(sample_path(), **FIELDS)
    a = split_examples(examples, train=10, val=5, test=5, seed=1)
    b = split_examples(examples, train=10, val=5, test=5, seed=1)
    c = split_examples(examples, train=10, val=5, test=5, seed=2)
    assert a == b and a != c
    ids = [e.id for s in ("train", "val", "test") for e in a[s]]
    assert len(ids) == len(set(ids)) == 20
    frac = split_examples(examples, train=0.5, val=0.25, seed=0)
    assert sum(frac.sizes().values()) == len(examples)


def test_split_sizes_that_do_not_fit():
    examples = load_examples(sample_path(), **FIELDS)
    with pytest.raises(DataError, match="do not fit"):
        split_examples(examples, train=40, val=10, test=10)


def test_skip_bad_rows_warns_with_every_row_and_keeps_the_rest(tmp_path):
    from promptopt.data import DataWarning

    path = _csv(tmp_path, "1,x,p,y\n2,,p,y\n3,x,q,w\n1,x,r,z\n")
    with pytest.warns(DataWarning) as caught:
        examples = load_examples(path, skip_bad_rows=True, **FIELDS)
    assert [e.id for e in examples] == ["1", "3"]
    message = str(caught[0].message)
    assert "skipped 2 bad row(s) of 4" in message
    assert "row 2 field 'original_text': empty cell" in message
    assert "row 4 field 'id': duplicate id '1'" in message


def test_skip_bad_rows_with_nothing_usable(tmp_path):
    path = _csv(tmp_path, "1,,p,y\n")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no usable data rows"):
        load_examples(path, skip_bad_rows=True, **FIELDS)
