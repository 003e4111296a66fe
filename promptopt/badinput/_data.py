"""Generated dataset files (CSV, TSV, JSON Lines, Parquet) with defects, and what a
correct loader must make of each: the exact examples, the bad rows, or an error at a
known place. The expectations are computed here from the rows as generated, not by
the loader under test."""

from __future__ import annotations

import io
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from promptopt.badinput._cells import json_cell, text_cell, words

INPUTS = ("original_text", "rewritten_text")
TARGET = "rewrite_prompt"
ID = "id"
NEEDED = (*INPUTS, TARGET)
ANY: Any = "<any>"
"""An expected row or field that may be anything (several defects compete)."""

EXTRA_COLUMNS = ("notes", "", "[/x]", "=cmd", "café", "original_text_2", "source")


@dataclass
class FileError:
    """An acceptable whole-file error: why, and the row and field it must name."""

    why: str
    row: Any = ANY
    field: Any = ANY


@dataclass
class Row:
    """One generated data row: its cells (pairs, in file order) and row-level defects."""

    cells: list[tuple[str, Any]]
    structural: str | None = None  # wrong field count, invalid JSON line, ...
    uncertain: bool = False  # a stray opening quote: CSV itself cannot tell what was meant


@dataclass
class DataCase:
    """A dataset file with defects and the outcome a correct loader must have.

    Attributes:
        name: File name (its extension selects the format).
        content: The file's bytes.
        defects: What was done to it, for reports.
        limit: The ``max_cell_chars`` to load it with.
        rows: The data rows as generated (empty for a header-only file).
        has_id: Whether the file has an ``id`` column.
        file_errors: If any, loading must fail with one of these.
    """

    name: str
    content: bytes
    defects: list[str]
    limit: int
    rows: list[Row]
    has_id: bool
    file_errors: list[FileError] = field(default_factory=list)


def cell_ok(value: Any, limit: int) -> bool:
    """Whether a cell value is usable text (the oracle's own rule)."""
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return False
    if "\x00" in value:
        return False
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def cell_kinds(case: DataCase) -> set[str]:
    """The kinds of tricky or bad cell values in ``case`` (for reports)."""
    kinds = set()
    for row in case.rows:
        for _, value in row.cells:
            if not isinstance(value, str):
                kinds.add("cell: null" if value is None else "cell: not text")
                continue
            checks = {
                "formula-like": value[:1] in ("=", "+", "-", "@", "\t"),
                "placeholder text": "{" in value,
                "blank": not value.strip(),
                "over the size limit": len(value) > case.limit,
                "line break": "\n" in value or "\r" in value,
                "quote": '"' in value,
                "NUL": "\x00" in value,
                "lone surrogate": any(0xD800 <= ord(c) <= 0xDFFF for c in value),
                "non-ASCII": not value.isascii(),
            }
            kinds.update(f"cell: {name}" for name, hit in checks.items() if hit)
    return kinds


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
        from promptopt.badinput._write import write_delimited

        write_delimited(case, rng, "\t" if fmt == "tsv" else ",", columns)
    elif fmt == "jsonl":
        from promptopt.badinput._write import write_jsonl

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


def json_line(pairs: list[tuple[str, Any]], ascii_only: bool) -> str:
    """A JSON object from key/value pairs (repeated keys kept, as a careless writer would)."""
    def dump(value: Any) -> str:
        lone = isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value)
        return json.dumps(value, ensure_ascii=ascii_only or lone)

    return "{" + ", ".join(f"{dump(k)}: {dump(v)}" for k, v in pairs) + "}"
