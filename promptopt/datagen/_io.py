"""The files of ``promptopt data generate``: input texts, and the output CSV.

Inputs (original texts, instructions) are read with :mod:`promptopt.data`'s readers
and its file/row/field errors. The output is a Kaggle-format CSV appended row by row:
each row is written with one ``write`` and flushed at once, so an interrupted run
(Ctrl-C, a killed process) leaves a valid file; reopening it reads the rows back so
that the generator skips their pairs and continues the ids. A last row cut off in
the middle of a write is removed, with a warning, before anything is appended.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from promptopt.data import DataWarning, read_rows
from promptopt.errors import DataError

COLUMNS = ("id", "original_text", "rewrite_prompt", "rewritten_text")
ORIGINAL_COLUMNS = ("original_text", "text")
INSTRUCTION_COLUMNS = ("rewrite_prompt", "instruction")
ID_PREFIX = "gen"


def load_texts(source: str | Path, *, columns: Sequence[str], what: str) -> list[str]:
    """Distinct non-empty texts from a .txt file (one per line) or a data file's column.

    Args:
        source: A .txt, .csv, .tsv, .jsonl or .parquet file.
        columns: Candidate column names; the first one present is used.
        what: What the texts are, for messages ("original texts").

    Raises:
        DataError: naming the file, row and field of the first problem.
    """
    path = Path(source)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    texts: list[str] = []
    if path.suffix.lower() == ".txt":
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 (byte {exc.start}); re-save it as UTF-8",
                            path=str(path)) from None
        texts = [line.strip() for line in lines if line.strip()]
    else:
        rows = read_rows(path)
        present = set().union(*(r.keys() for r in rows)) if rows else set()
        column = next((c for c in columns if c in present), None)
        if rows and column is None:
            raise DataError(f"no column for the {what}: expected one of {list(columns)}, "
                            f"found {sorted(map(str, present))}", path=str(path), field=columns[0])
        for i, row in enumerate(rows, start=1):
            value = row.get(str(column))
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise DataError("empty cell", path=str(path), row=i, field=column)
            if not isinstance(value, str):
                raise DataError(f"expected text, got {type(value).__name__} {value!r}",
                                path=str(path), row=i, field=column)
            if not value.strip():
                raise DataError("empty cell", path=str(path), row=i, field=column)
            texts.append(value.strip())
    if not texts:
        raise DataError(f"no {what} in the file", path=str(path))
    return distinct(texts)


def distinct(texts: Sequence[str]) -> list[str]:
    """``texts`` without repeats (ignoring spacing), in their order."""
    seen: set[str] = set()
    kept = []
    for text in texts:
        key = " ".join(text.split())
        if key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def _csv_line(values: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


class DataFile:
    """A generated-data CSV: the rows already in it, and appending more.

    Args:
        path: The CSV file; it need not exist yet.

    Raises:
        DataError: if the file is not UTF-8, has other columns than :data:`COLUMNS`,
            or has a malformed row (naming file, row and field).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.suffix.lower() != ".csv":
            raise DataError("the output must be a .csv file", path=str(path))
        self.rows: list[tuple[str, ...]] = []
        self._keep_chars: int | None = None  # truncate to this length before appending
        self._needs_newline = False
        if path.is_file():
            self._read()
        self.pairs = {(r[1], r[2]) for r in self.rows}
        self._rewrites = {_key(r[3]) for r in self.rows}
        self._ids = {r[0] for r in self.rows}
        self._file: IO[str] | None = None

    @property
    def count(self) -> int:
        """Rows in the file."""
        return len(self.rows)

    def has_rewrite(self, text: str) -> bool:
        """Whether the file holds this rewritten text (ignoring case and spacing)."""
        return _key(text) in self._rewrites

    def _read(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 (byte {exc.start})", path=str(self.path)) from None
        if not text.strip():
            self._keep_chars = 0
            return
        ends: list[int] = []

        def lines() -> Iterator[str]:
            start = 0
            while start < len(text):
                stop = text.find("\n", start)
                stop = len(text) if stop < 0 else stop + 1
                ends.append(stop)
                yield text[start:stop]
                start = stop

        reader = csv.reader(lines(), strict=True)
        good = 0  # characters of complete rows (header included)
        try:
            for i, row in enumerate(reader):
                if i == 0:
                    if tuple(row) != COLUMNS:
                        raise DataError(
                            f"has columns {row}, not those of generated data "
                            f"{list(COLUMNS)}; give another output file", path=str(self.path))
                elif len(row) != len(COLUMNS):
                    if ends[-1] == len(text) and not text.endswith("\n"):
                        break  # a last row cut off while it was written
                    raise DataError(f"expected {len(COLUMNS)} fields, found {len(row)}",
                                    path=str(self.path), row=i)
                else:
                    self.rows.append(tuple(row))
                good = ends[-1]
        except csv.Error as exc:
            if ends and ends[-1] < len(text):
                raise DataError(f"malformed CSV: {exc}", path=str(self.path),
                                row=len(self.rows) + 1) from None
        if good < len(text):
            self._keep_chars = good
            warnings.warn(f"file {self.path}: removed an incomplete last row (cut off while it "
                          "was written)", DataWarning, stacklevel=3)
        elif not text.endswith("\n"):
            self._needs_newline = True

    @contextlib.contextmanager
    def appending(self) -> Iterator[DataFile]:
        """Open the file for :meth:`append` (writing the header if it is new)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._keep_chars is not None and self.path.is_file():
            kept = self.path.read_text(encoding="utf-8")[: self._keep_chars]
            with self.path.open("r+b") as raw:
                raw.truncate(len(kept.encode("utf-8")))
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with self.path.open("a", encoding="utf-8", newline="") as f:
            if new:
                f.write(_csv_line(COLUMNS))
            elif self._needs_newline:
                f.write("\n")
            f.flush()
            self._keep_chars, self._needs_newline, self._file = None, False, f
            try:
                yield self
            finally:
                self._file = None

    def _next_id(self) -> str:
        i = len(self.rows)
        while f"{ID_PREFIX}{i:05d}" in self._ids:
            i += 1
        return f"{ID_PREFIX}{i:05d}"

    def append(self, original: str, instruction: str, rewrite: str) -> str:
        """Write one row (flushed at once); returns its id."""
        if self._file is None:
            raise RuntimeError("DataFile.append outside appending()")
        row = (self._next_id(), original, instruction, rewrite)
        self._file.write(_csv_line(row))
        self._file.flush()
        self.rows.append(row)
        self.pairs.add((original, instruction))
        self._rewrites.add(_key(rewrite))
        self._ids.add(row[0])
        return row[0]
