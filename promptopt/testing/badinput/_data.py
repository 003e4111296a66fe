"""Generated dataset files (CSV, TSV, JSON Lines, Parquet) with defects, and what a
correct loader must make of each: the exact examples, the bad rows, or an error at a
known place. The expectations are computed here from the rows as generated, not by
the loader under test."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

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


def json_line(pairs: list[tuple[str, Any]], ascii_only: bool) -> str:
    """A JSON object from key/value pairs (repeated keys kept, as a careless writer would)."""
    def dump(value: Any) -> str:
        lone = isinstance(value, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in value)
        return json.dumps(value, ensure_ascii=ascii_only or lone)

    return "{" + ", ".join(f"{dump(k)}: {dump(v)}" for k, v in pairs) + "}"
