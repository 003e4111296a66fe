"""Reading dataset files (CSV, TSV, JSON Lines, Parquet) into raw rows.

The readers keep every cell exactly as written (no type guessing, no formula
handling: ``=1+2`` is the text ``=1+2``) and account for every data row: a row the
reader cannot use (wrong number of fields, a line that is no JSON object) is kept
with its problem, so the caller reports or skips it by number. What makes a whole
file unreadable (encoding, quotes that never close, an empty file) is a
:class:`~promptopt.errors.DataError` naming the file, row, field and line; so is a
row with the wrong number of fields whose cells run over several lines, since a
stray quote may have merged an unknown number of rows into it.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.data._textfile import LINE_BREAK, clip, decode_text
from promptopt.errors import DataError

csv.field_size_limit(2**31 - 1)  # cell sizes are checked (and reported) by the caller


@dataclass
class RawRow:
    """One data row as read: its cells, where it starts, and what is wrong with it.

    Attributes:
        cells: Column name -> value (text for CSV/TSV; any JSON or Arrow value).
        line: Physical line where the row starts (text formats), else None.
        problem: Why the row is unusable as a whole (None if it is not).
        repeated: Keys that appear more than once in this row (JSON Lines).
    """

    cells: dict[str, Any]
    line: int | None = None
    problem: str | None = None
    repeated: frozenset[str] = frozenset()


@dataclass
class Table:
    """The rows of a file, with its column names (in file order, repeats kept)."""

    columns: list[str]
    rows: list[RawRow]
    first_data_line: int | None = None  # the line a header-less row 1 would be on
    repeated_columns: set[str] = field(default_factory=set)


def read_table(path: Path) -> Table:
    """Read ``path`` by its extension (.csv/.txt/no extension, .tsv, .jsonl/.ndjson, .parquet).

    Raises:
        DataError: the file is missing, unreadable, of an unsupported type, empty,
            or malformed as a whole.
    """
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a file", path=str(path))
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix not in {".csv", ".tsv", ".txt", "", ".jsonl", ".ndjson"}:
        raise DataError(
            f"unsupported file type {suffix!r}; use .csv, .tsv, .jsonl or .parquet", path=str(path)
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", path=str(path)) from None
    if suffix in {".jsonl", ".ndjson"}:
        return _read_jsonl(path, raw)
    return _read_delimited(path, raw, "\t" if suffix == ".tsv" else ",")


def _blank(record: list[str]) -> bool:
    """An empty or whitespace-only line ([''] is a quoted empty cell: a row)."""
    return not record or (len(record) == 1 and record[0] != "" and not record[0].strip())


def _read_delimited(path: Path, raw: bytes, sep: str) -> Table:
    kind = "TSV" if sep == "\t" else "CSV"

    def locate(prefix: str) -> tuple[int | None, str | None]:
        mark = "\uffff"  # a non-character: the record and field it lands in are the place
        try:
            reader = csv.reader(io.StringIO(prefix + mark, newline=""), delimiter=sep)
            records = [r for r in reader if not _blank(r)]
        except csv.Error:
            return None, None
        if len(records) < 2:
            return None, None  # the header
        header = [h.strip() for h in records[0]]
        col = len(records[-1]) - 1
        return len(records) - 1, header[col] if col < len(header) else None

    text = decode_text(raw, str(path), locate)
    if not text.strip():
        raise DataError("file is empty", path=str(path))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    header: list[str] | None = None
    header_line = 1
    rows: list[RawRow] = []
    last = 0
    try:
        for record in reader:
            start, last = last + 1, reader.line_num
            if _blank(record):
                continue
            if header is None:
                header, header_line = [h.strip() for h in record], start
                continue
            row = _delimited_row(record, header, start, sep)
            if row.problem and reader.line_num > start:  # rows merged: how many is unknown
                raise DataError(
                    f"{row.problem}, and its cells run over lines {start}-{reader.line_num}: "
                    "a quote that is never closed (or closed in a later row) merges lines "
                    "into one row", path=str(path), row=len(rows) + 1, line=start,
                )
            rows.append(row)
    except csv.Error as exc:
        raise DataError(
            f"malformed {kind}: {exc} (a quote that is never closed, or text right after a "
            "closing quote? Quote cells that contain quotes, separators or line breaks)",
            path=str(path), row=len(rows) + 1 if header is not None else None, line=last + 1,
        ) from None
    assert header is not None  # the text is not blank
    counts = Counter(header)
    return Table(
        columns=header,
        rows=rows,
        first_data_line=header_line + 1,
        repeated_columns={name for name, n in counts.items() if n > 1},
    )


def _delimited_row(record: list[str], header: list[str], line: int, sep: str) -> RawRow:
    cells: dict[str, Any] = {}
    for name, value in zip(header, record, strict=False):
        cells.setdefault(name, value)
    problem = None
    n, expected = len(record), len(header)
    shown = "a tab" if sep == "\t" else repr(sep)
    if n > expected and any(v.strip() for v in record[expected:]):
        problem = (f"{n} fields but the header has {expected} (an unquoted {shown} in a cell?)")
    elif n < expected:
        problem = (f"{n} field(s) but the header has {expected} (a missing {shown}, or a line "
                   "break in a cell that is not quoted?)")
    return RawRow(cells, line=line, problem=problem)


class _Object(dict):  # type: ignore[type-arg]
    """A JSON object that remembers which of its keys were repeated."""

    repeated: frozenset[str] = frozenset()


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        obj.repeated = frozenset(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return obj


def _read_jsonl(path: Path, raw: bytes) -> Table:
    def locate(prefix: str) -> tuple[int | None, str | None]:
        lines = LINE_BREAK.split(prefix)
        return sum(1 for ln in lines[:-1] if ln.strip()) + 1, None

    text = decode_text(raw, str(path), locate)
    rows: list[RawRow] = []
    columns: dict[str, None] = {}
    for lineno, line in enumerate(LINE_BREAK.split(text), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_pairs)
        except json.JSONDecodeError as exc:
            rows.append(RawRow({}, lineno, f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        except (ValueError, RecursionError) as exc:  # huge integers, deep nesting
            rows.append(RawRow({}, lineno, f"unreadable JSON: {clip(str(exc), 100)}"))
            continue
        if not isinstance(obj, dict):
            rows.append(RawRow({}, lineno, f"a JSON object is needed, got {type(obj).__name__}"))
            continue
        columns.update(dict.fromkeys(obj))
        rows.append(RawRow(dict(obj), lineno, repeated=getattr(obj, "repeated", frozenset())))
    if not rows:
        raise DataError("file is empty", path=str(path))
    return Table(columns=list(columns), rows=rows, first_data_line=1)


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path).read()
    except Exception as exc:  # pyarrow raises several unrelated types
        raise DataError(f"cannot read Parquet: {clip(str(exc), 200)}", path=str(path)) from None
    names = [str(n) for n in table.column_names]
    counts = Counter(names)
    try:
        records = table.to_pylist()
    except Exception as exc:  # e.g. values Python cannot represent
        raise DataError(f"cannot read Parquet: {clip(str(exc), 200)}", path=str(path)) from None
    return Table(
        columns=names,
        rows=[RawRow(dict(r)) for r in records],
        repeated_columns={n for n, c in counts.items() if c > 1},
    )
