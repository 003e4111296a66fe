"""Making a random defective dataset file (:func:`make_data_case`) and writing its rows
as CSV/TSV, JSON Lines or Parquet, with text-level defects:
stray quotes, wrong field counts, blank and mixed line ends, byte-order marks, other
encodings and NUL bytes. Each writer records where every row and cell landed, so
the place an error must name is known from the generation, not from the loader."""

from __future__ import annotations

import bisect
import codecs
import io
import math
import random
from typing import Any

from promptopt.testing.badinput._cells import json_cell, text_cell, words
from promptopt.testing.badinput._data import (
    ANY,
    EXTRA_COLUMNS,
    ID,
    NEEDED,
    DataCase,
    FileError,
    Row,
    json_line,
)

Span = tuple[int, int, int | None, str | None]  # start, end, data row (None: header), field


def _needs_quotes(value: str, sep: str) -> bool:
    return any(c in value for c in (sep, '"', "\r", "\n"))


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def write_delimited(case: DataCase, rng: random.Random, sep: str, columns: list[str]) -> None:
    """Serialize ``case`` as CSV (``sep=","``) or TSV, then encode it."""
    mixed = rng.random() < 0.25
    default_end = rng.choice(["\n", "\r\n"])
    if mixed:
        case.defects.append("mixed line ends")
    parts: list[str] = []
    spans: list[Span] = []
    pos = 0

    def emit(text: str, row: int | None = None, name: str | None = None, *,
             cell: bool = False) -> None:
        nonlocal pos
        if text and cell:
            spans.append((pos, pos + len(text), row, name))
        parts.append(text)
        pos += len(text)

    header = [f" {c}" if rng.random() < 0.1 else c for c in columns]
    for j, name in enumerate(header):
        emit(sep if j else "")
        emit(_quote(name) if _needs_quotes(name, sep) or rng.random() < 0.1 else name, cell=True)
    for i, row in enumerate(case.rows, start=1):
        emit(rng.choice(["\n", "\r\n", "\r"]) if mixed else default_end)
        if rng.random() < 0.08:
            emit(rng.choice(["", "   "]) + default_end)
            case.defects.append("blank line")
        cells = [str(v) for _, v in row.cells]
        raw: list[str | None] = [None] * len(cells)
        if rng.random() < 0.04:
            j = rng.randrange(len(cells))
            cells[j] = words(rng)
            at = rng.randint(0, len(cells[j]))
            quoted = cells[j][:at] + '"' + cells[j][at:]
            raw[j] = quoted
            if at == 0:
                row.uncertain = True
            else:
                cells[j] = quoted
            case.defects.append("stray quote" + (" opening a cell" if at == 0 else ""))
        extra = rng.random()
        if extra < 0.025:
            cells.append(words(rng))
            row.structural = "too many fields"
        elif extra < 0.075:
            cells.append("")
            case.defects.append("trailing separator")
        elif extra < 0.10:
            cells.pop()
            row.structural = "too few fields"
        if row.structural:
            case.defects.append(row.structural)
            if any("\n" in c or "\r" in c for c in cells):  # rows may have merged
                case.file_errors.append(FileError("multi-line row, wrong field count", i, None))
        row.cells = [(c[0], cells[j]) for j, c in enumerate(row.cells) if j < len(cells)]
        for j, value in enumerate(cells):
            emit(sep if j else "")
            if j < len(raw) and raw[j] is not None:
                emit(str(raw[j]), i, header[j].strip() if j < len(header) else None, cell=True)
            else:
                text = _quote(value) if _needs_quotes(value, sep) or rng.random() < 0.1 else value
                emit(text, i, header[j].strip() if j < len(header) else None, cell=True)
    if rng.random() < 0.7:
        emit(default_end)
    text = "".join(parts)
    if any("\x00" in v for r in case.rows for _, v in r.cells if isinstance(v, str)):
        row_no, where = _place(spans, text.index("\x00"))
        case.file_errors.append(FileError("NUL character", row_no, where))
    _encode(case, rng, text, spans)


def write_jsonl(case: DataCase, rng: random.Random) -> None:
    """Serialize ``case`` as JSON Lines (with broken lines as row defects), then encode it."""
    ascii_only = rng.random() < 0.5
    ends = ["\n", "\r\n"] if rng.random() < 0.2 else [rng.choice(["\n", "\r\n"])]
    parts: list[str] = []
    spans: list[Span] = []
    pos = 0
    for i, row in enumerate(case.rows, start=1):
        if rng.random() < 0.08:
            parts.append(rng.choice(["", "  ", "\t"]) + rng.choice(ends))
            pos += len(parts[-1])
        line = _json_row(row, rng, ascii_only)
        if row.structural:
            case.defects.append(row.structural)
        spans.append((pos, pos + len(line), i, None))
        parts.append(line + rng.choice(ends))
        pos += len(parts[-1])
    text = "".join(parts)
    keys = {k for row in case.rows if not row.structural for k, _ in row.cells}
    absent = [name for name in NEEDED if name not in keys]
    case.has_id = ID in keys  # an id key in no row: ids are row numbers
    if absent and case.rows:  # no row has the key: the column is missing
        case.file_errors.append(FileError("missing column", row=None, field=absent[0]))
    if rng.random() < 0.04 and case.rows:
        at = spans[rng.randrange(len(spans))][0] + 1
        text = text[:at] + "\x00" + text[at:]
        case.defects.append("raw NUL byte")
        row_no, _ = _place(spans, at)
        case.file_errors.append(FileError("NUL character", row_no, None))
        spans = []  # no longer needed: NUL comes first
    if not case.rows:
        case.file_errors[:] = [FileError("empty file", row=None, field=None)]
    _encode(case, rng, text, spans)


def _json_row(row: Row, rng: random.Random, ascii_only: bool) -> str:
    roll = rng.random()
    pairs = list(row.cells)
    if roll < 0.02:
        row.structural = "invalid JSON"
        return json_line(pairs, ascii_only)[: -rng.randint(1, 3)]
    if roll < 0.03:
        row.structural = "JSON line is not an object"
        return rng.choice(['["a", "b"]', '"text"', "42", "null"])
    if roll < 0.035:
        row.structural = "deeply nested JSON"
        return '{"original_text": ' + "[" * 5000 + "]" * 5000 + "}"
    if roll < 0.04:
        row.structural = "huge JSON number"
        return '{"original_text": ' + "9" * 5000 + "}"
    if roll < 0.07 and pairs:
        pairs.pop(rng.randrange(len(pairs)))
        row.cells = pairs
    elif roll < 0.10 and pairs:
        pairs.append(rng.choice(pairs))
        row.cells = pairs
    return json_line(pairs, ascii_only)


def _place(spans: list[Span], index: int) -> tuple[int | None, str | None]:
    """The data row and field whose text holds character ``index``."""
    k = bisect.bisect_right([s[0] for s in spans], index) - 1
    if k >= 0 and spans[k][0] <= index < spans[k][1]:
        return spans[k][2], spans[k][3]
    return ANY_PLACE


ANY_PLACE: Any = (ANY, ANY)


def _encode(case: DataCase, rng: random.Random, text: str, spans: list[Span]) -> None:
    roll = rng.random()
    if not text.strip():
        case.file_errors[:] = [FileError("empty file", row=None, field=None)]
    if roll < 0.06 and text.strip():
        # Latin-1: everything made encodable, plus one accented letter somewhere
        pick = rng.randrange(len(text) + 1)
        text = text[:pick] + "é" + text[pick:]
        text = text.encode("latin-1", "replace").decode("latin-1")
        raw = text.encode("latin-1")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            shifted = [(s + (s > pick), e + (e >= pick), r, f) for s, e, r, f in spans]
            row, name = _place(shifted, exc.start) if spans else ANY_PLACE
            case.file_errors.append(FileError("not UTF-8", row, name))
        case.defects.append("Latin-1 encoded")
        case.content = raw
        return
    if roll < 0.10 and text.strip():
        case.defects.append("UTF-16 without byte-order mark")
        case.file_errors.append(FileError("UTF-16 without BOM"))
        case.content = text.encode(rng.choice(["utf-16-le", "utf-16-be"]), "surrogatepass")
        return
    bom, encoding = rng.choice([
        (b"", "utf-8"), (b"", "utf-8"), (b"", "utf-8"), (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
    ])
    if bom:
        case.defects.append(f"{encoding} with byte-order mark")
    case.content = bom + text.encode(encoding)


def make_data_case(rng: random.Random, *, limit: int | None = None) -> DataCase:
    """One random dataset file with zero or more defects."""
    fmt = rng.choice(["csv", "csv", "tsv", "jsonl", "jsonl", "parquet"])
    limit = limit or rng.choice([40, 300])
    defects: list[str] = []
    has_id = rng.random() < 0.7
    columns = [*NEEDED, *([ID] if has_id else [])]
    rng.shuffle(columns)
    if rng.random() < 0.3:
        columns.insert(rng.randint(0, len(columns)), rng.choice(EXTRA_COLUMNS))
        defects.append("extra column")
    errors: list[FileError] = []
    if rng.random() < 0.08:
        gone = rng.choice(NEEDED)
        columns.remove(gone)
        defects.append(f"missing column {gone}")
        errors.append(FileError("missing column", row=None, field=gone))
    if fmt != "jsonl" and rng.random() < 0.08:
        twice = rng.choice(columns)
        columns.insert(rng.randint(0, len(columns)), twice)
        defects.append(f"duplicate column {twice!r}")
        if twice in NEEDED or (twice == ID and has_id):
            errors.append(FileError("duplicate column", row=None, field=twice))
    n = 0 if rng.random() < 0.05 else rng.randint(1, 6)
    if n == 0:
        defects.append("no data rows")
        errors.append(FileError("no data rows", row=None, field=None))
    rows = []
    for i in range(n):
        cells = []
        for name in columns:
            if name == ID:
                value: Any = rng.choices(
                    [f"r{i}", f" r{i} ", i, "", " ", f"r{max(0, i - 1)}"], [80, 5, 5, 3, 2, 5]
                )[0]
            elif fmt == "jsonl":
                value = json_cell(rng, limit=limit)
            else:
                value = text_cell(rng, limit=limit)
            cells.append((name, value))
        rows.append(Row(cells))
    case = DataCase(f"data.{fmt}", b"", defects, limit, rows, has_id, errors)
    if fmt in ("csv", "tsv"):
        write_delimited(case, rng, "\t" if fmt == "tsv" else ",", columns)
    elif fmt == "jsonl":
        write_jsonl(case, rng)
    else:
        write_parquet(case, rng, columns)
    if len(case.file_errors) > 1 or any(r.uncertain for r in rows):
        for error in case.file_errors:
            error.row = error.field = ANY
    return case


def write_parquet(case: DataCase, rng: random.Random, columns: list[str]) -> None:
    """Serialize ``case`` as Parquet: text columns, or a typed column as a defect."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    for j, name in enumerate(columns):
        values: list[Any] = [row.cells[j][1] for row in case.rows]
        typed = rng.random() < 0.06
        if typed:
            kind = rng.choice(["int", "float", "binary"])
            choices: dict[str, list[Any]] = {
                "int": list(range(len(values))),
                "float": [rng.choice([1.5, math.nan, None]) for _ in values],
                "binary": [words(rng).encode() for _ in values],
            }
            values = choices[kind]
            case.defects.append(f"{kind} column {name!r}")
            arrays.append(pa.array(values))
        else:
            values = [None if rng.random() < 0.05 else str(v) for v in values]
            arrays.append(pa.array(values, type=pa.string()))
        for row, value in zip(case.rows, values, strict=True):
            row.cells[j] = (name, value)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=columns), buffer)
    content = buffer.getvalue()
    if rng.random() < 0.05:
        content = content[: rng.randint(0, len(content) - 1)]
        case.defects.append("truncated Parquet")
        case.file_errors.append(FileError("unreadable Parquet", row=None, field=None))
    case.content = content
