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


# Regressions found by tests/test_fuzz_inputs.py, one per fix.


def _jsonl(tmp_path, lines, name="d.jsonl", encoding="utf-8", end="\n"):
    path = tmp_path / name
    path.write_bytes(end.join(lines).encode(encoding))
    return path


ROW = {"original_text": "a", "rewrite_prompt": "p", "rewritten_text": "b"}


def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path):
    row = {**ROW, "original_text": "one\u2028two\x85three"}
    path = _jsonl(tmp_path, [json.dumps(row, ensure_ascii=False)], end="\r\n")
    assert load_examples(path, **FIELDS)[0].inputs["original_text"] == "one\u2028two\x85three"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_byte_order_marks_select_the_encoding(tmp_path, encoding):
    path = tmp_path / "d.csv"
    path.write_bytes((HEADER + "1,café 🙂,p,y\n").encode(encoding))
    assert load_examples(path, **FIELDS)[0].inputs["original_text"] == "café 🙂"
    jsonl = _jsonl(tmp_path, [json.dumps(ROW)], encoding=encoding)
    assert load_examples(jsonl, **FIELDS)[0].target == "p"


def test_utf16_without_bom_is_a_clear_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes((HEADER + "1,x,p,y\n").encode("utf-16-le"))
    with pytest.raises(DataError, match=r"d.csv, line 1: NUL character at byte 1.*UTF-16"):
        load_examples(path, **FIELDS)


def test_nul_byte_names_row_and_field(tmp_path):
    path = _csv(tmp_path, '1,x,p,y\n2,"multi\nline",p,y\n3,x,p\x00q,y\n')
    with pytest.raises(DataError) as info:
        load_examples(path, **FIELDS)
    assert (info.value.row, info.value.field, info.value.line) == (3, "rewrite_prompt", 5)


def test_unclosed_quote_names_the_row_where_it_opened(tmp_path):
    path = _csv(tmp_path, '1,x,p,y\n2,"never closed,p,y\n3,x,p,y\n')
    with pytest.raises(DataError, match=r"row 2 \(line 3\): malformed CSV.*quote"):
        load_examples(path, **FIELDS)
    path = _csv(tmp_path, '1,"quoted" then text,p,y\n')
    with pytest.raises(DataError, match=r"row 1 .*malformed CSV"):
        load_examples(path, **FIELDS)


def test_field_counts_are_checked_but_trailing_separators_are_fine(tmp_path):
    path = _csv(tmp_path, "1,x,p,y,\n2,x,p,y,extra\n3,x,p\n4,a \"b\" c,p,y\n")
    with pytest.warns(UserWarning) as caught:
        examples = load_examples(path, skip_bad_rows=True, **FIELDS)
    assert [e.id for e in examples] == ["1", "4"]
    assert examples[1].inputs["original_text"] == 'a "b" c'
    errors = caught[0].message.errors
    assert [(e.row, e.field) for e in errors] == [(2, None), (3, None)]
    assert "5 fields but the header has 4" in errors[0].reason
    assert caught[0].message.rows == 4


def test_duplicate_columns(tmp_path):
    path = _csv(tmp_path, "1,x,p,y,q\n", header=HEADER.strip() + ",rewrite_prompt\n")
    with pytest.raises(DataError, match="appears more than once") as info:
        load_examples(path, **FIELDS)
    assert info.value.field == "rewrite_prompt"
    ok = _csv(tmp_path, "1,x,p,y,a,b\n", header=HEADER.strip() + ",notes,notes\n")
    assert load_examples(ok, **FIELDS)[0].target == "p"


def test_header_only_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no data rows"):
        load_examples(_csv(tmp_path, ""), **FIELDS)
    with pytest.raises(DataError, match="file is empty"):
        load_examples(_csv(tmp_path, "", header=" \n"), **FIELDS)


def test_cells_are_data_exactly_as_written(tmp_path):
    cells = ["=cmd|' /C calc'!A0", "+1", "-2", "@x", "  {original_text}  ", 'say "hi",\r\nok', "NA"]
    rows = [{"id": str(i), "original_text": c, "rewrite_prompt": c, "rewritten_text": c}
            for i, c in enumerate(cells)]
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for ext in ("csv", "tsv", "jsonl", "parquet"):
        loaded = load_examples(tmp_path / f"d.{ext}", **FIELDS)
        assert [e.target for e in loaded] == cells, ext


def test_cell_size_limit_is_an_error_for_the_row_and_configurable(tmp_path, monkeypatch):
    from promptopt.data import MAX_CELL_CHARS

    path = _csv(tmp_path, f"1,{'x' * (MAX_CELL_CHARS + 1)},p,y\n2,x,p,y\n")
    with pytest.raises(DataError, match="longer than the limit") as info:
        load_examples(path, **FIELDS)
    assert (info.value.row, info.value.field) == (1, "original_text")
    monkeypatch.setenv("PROMPTOPT_MAX_CELL_CHARS", str(MAX_CELL_CHARS + 1))
    assert len(load_examples(path, **FIELDS)[0].inputs["original_text"]) == MAX_CELL_CHARS + 1
    with pytest.warns(UserWarning, match="longer than the limit of 10"):
        assert len(load_examples(path, max_cell_chars=10, skip_bad_rows=True, **FIELDS)) == 1


def test_jsonl_row_problems_are_rows(tmp_path):
    lines = [json.dumps({**ROW, "id": 7}), "[" * 5000 + "]" * 5000,
             '{"original_text": ' + "9" * 5000 + "}",
             json.dumps({**ROW, "original_text": "lone \ud800"}), '{"a": 1, "a": 2}',
             json.dumps({**ROW, "id": None}), "", "  ", '"text"']
    path = _jsonl(tmp_path, lines)
    with pytest.warns(UserWarning) as caught:
        examples = load_examples(path, skip_bad_rows=True, **FIELDS)
    assert [e.id for e in examples] == ["7"]
    reasons = {e.row: e.reason for e in caught[0].message.errors}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert "unreadable JSON" in reasons[2] and "lone surrogate" in reasons[4]
    assert reasons[5] == "missing" and reasons[6] == "empty id"
    assert "JSON object is needed" in reasons[7]
    assert caught[0].message.errors[-1].line == 9  # blank lines: row 7 is on line 9


def test_a_stray_quote_that_merges_rows_refuses_the_file_even_when_skipping(tmp_path):
    # the quote opened in row 1 closes at the end of row 3's first cell: 3 rows became 1
    path = _csv(tmp_path, '1,x,"p,y\n2,x,p,y\n3,x",p,y\n4,x,p,y\n')
    with pytest.raises(DataError, match=r"row 1 \(line 2\): 5 fields .* run over lines 2-4"):
        load_examples(path, skip_bad_rows=True, **FIELDS)


def test_a_quoted_empty_cell_on_its_own_line_is_a_row_not_a_blank_line(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text('rewrite_prompt\nfine\n""\n\n   \nlast\n')
    with pytest.raises(DataError) as info:
        load_examples(path, input_fields=(), target_field="rewrite_prompt")
    assert (info.value.row, info.value.field, info.value.reason) == (2, "rewrite_prompt",
                                                                     "empty cell")
    with pytest.warns(UserWarning):
        rows = load_examples(path, input_fields=(), target_field="rewrite_prompt",
                             skip_bad_rows=True)
    assert [(e.id, e.target) for e in rows] == [("1", "fine"), ("3", "last")]
