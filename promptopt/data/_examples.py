"""Loading datasets (CSV, TSV, JSONL, Parquet) into validated examples, and seeded splits.

Every problem with an input file is raised as :class:`~promptopt.errors.DataError`
naming the file, the row (1-based data row, header excluded) and the field (and the
line, where a multi-line cell or blank lines make it differ). Reading the formats is
:mod:`promptopt.data._tables`; this module checks the cells.
"""

from __future__ import annotations

import math
import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from promptopt.data._tables import RawRow, Table, read_table
from promptopt.data._textfile import clip
from promptopt.errors import ConfigError, DataError

SAMPLE_PROMPT_RECOVERY = "prompt_recovery_sample.csv"
SAMPLE_PREFERENCE = "preference_sample.csv"


@dataclass(frozen=True)
class Example:
    """One labelled example: its id, input fields and target text."""

    id: str
    inputs: dict[str, str] = field(hash=False)
    target: str = ""

    def as_fields(self, target_field: str) -> dict[str, str]:
        """Inputs and target as one field mapping (e.g. for a few-shot demo)."""
        return {**self.inputs, target_field: self.target}


def sample_path(name: str = SAMPLE_PROMPT_RECOVERY) -> Path:
    """Path of a dataset shipped inside the package."""
    return Path(str(resources.files("promptopt") / "resources" / name))


MAX_CELL_CHARS = 100_000
"""Default longest cell, in characters (``PROMPTOPT_MAX_CELL_CHARS`` overrides it)."""

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make spreadsheet programs read a CSV cell as a formula."""


def cell_limit() -> int:
    """The cell-size limit: ``$PROMPTOPT_MAX_CELL_CHARS`` or :data:`MAX_CELL_CHARS`."""
    raw = os.environ.get("PROMPTOPT_MAX_CELL_CHARS", "").strip()
    if not raw:
        return MAX_CELL_CHARS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"PROMPTOPT_MAX_CELL_CHARS must be a positive integer, got {raw!r}")
    return value


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The raw rows of a dataset file as dicts (format errors raised as :class:`DataError`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    table = read_table(path)
    for i, raw in enumerate(table.rows, start=1):
        if raw.problem:
            raise DataError(raw.problem, row=i, **_row_where(path, table, raw, i))
    return [raw.cells for raw in table.rows]


class DataWarning(UserWarning):
    """Rows were skipped on request (``skip_bad_rows``); the message lists them.

    Attributes:
        errors: One :class:`DataError` per skipped row.
        rows: The number of data rows in the file (loaded + skipped).
    """

    def __init__(self, message: str, errors: Sequence[DataError] = (), rows: int = 0) -> None:
        super().__init__(message)
        self.errors = list(errors)
        self.rows = rows


def _row_where(path: Path, table: Table, raw: RawRow, i: int) -> dict[str, Any]:
    """The file, and the line of row ``i`` where it is not the one its number suggests."""
    where: dict[str, Any] = {"path": str(path)}
    if raw.line is not None and raw.line != (table.first_data_line or 1) + i - 1:
        where["line"] = raw.line
    return where


def _where(error: DataError) -> str:
    field_part = f" field {error.field!r}" if error.field is not None else ""
    return f"row {error.row}{field_part}: {error.reason}"


def _text_problem(value: Any, limit: int) -> str | None:
    """Why a cell value is not usable text (None if it is)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "empty cell"
    if not isinstance(value, str):
        return f"expected text, got {type(value).__name__} {clip(value)}"
    if not value.strip():
        return "empty cell"
    if len(value) > limit:
        return (f"cell of {len(value)} characters is longer than the limit of {limit} "
                "(set PROMPTOPT_MAX_CELL_CHARS or max_cell_chars to allow it)")
    if "\x00" in value:
        return f"NUL character at position {value.index(chr(0))}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode: a lone surrogate at position {exc.start}"
    return None


def _row_example(
    raw: RawRow,
    i: int,
    where: dict[str, Any],
    needed: Sequence[str],
    input_fields: Sequence[str],
    target_field: str,
    id_field: str | None,
    seen: dict[str, int],
    limit: int,
) -> Example:
    """Validate one data row (1-based ``i``) into an :class:`Example`."""
    if raw.problem:
        raise DataError(raw.problem, row=i, **where)
    row = raw.cells
    values: dict[str, str] = {}
    for name in needed:
        if name in raw.repeated:
            raise DataError("key appears more than once", row=i, field=name, **where)
        problem = "missing" if name not in row else _text_problem(row[name], limit)
        if problem:
            raise DataError(problem, row=i, field=name, **where)
        values[name] = row[name]
    ex_id = str(i)
    if id_field:
        if id_field in raw.repeated:
            raise DataError("key appears more than once", row=i, field=id_field, **where)
        value: Any = row.get(id_field)
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            value = str(value).strip()  # ids are compared and written stripped
        problem = "empty id" if not value else _text_problem(value, limit)
        if problem:
            raise DataError(problem, row=i, field=id_field, **where)
        ex_id = str(value)
    if ex_id in seen:
        raise DataError(
            f"duplicate id {clip(ex_id)} (first seen in row {seen[ex_id]})",
            row=i, field=id_field, **where,
        )
    return Example(
        id=ex_id,
        inputs={k: values[k] for k in input_fields},
        target=values.get(target_field, ""),
    )


def load_examples(
    path: str | Path,
    *,
    input_fields: Sequence[str],
    target_field: str,
    id_field: str = "id",
    require_target: bool = True,
    skip_bad_rows: bool = False,
    max_cell_chars: int | None = None,
) -> list[Example]:
    """Read and validate a dataset file.

    Cells are kept exactly as written: surrounding spaces, line breaks, quotes,
    braces such as ``{original_text}``, and text that a spreadsheet would run as a
    formula (``=1+2``, ``@x``) are data. Every data row is either loaded or reported.

    Args:
        path: A .csv, .tsv, .jsonl or .parquet file (UTF-8, or UTF-16/32 with a
            byte-order mark).
        input_fields: Columns every row must have as non-empty text.
        target_field: The column holding the target text.
        id_field: Optional id column; row numbers are used when it is absent.
        require_target: Whether the target column must be present (False for
            files to predict on).
        skip_bad_rows: Skip rows with empty, non-text or over-long cells, wrong
            numbers of fields or duplicate ids, and warn with a :class:`DataWarning`
            that lists them, instead of raising.
        max_cell_chars: Longest accepted cell (default :func:`cell_limit`); a
            longer one is an error for its row, never truncated.

    Raises:
        DataError: naming the file, row and field of the first problem found.
    """
    path = Path(path)
    limit = max_cell_chars if max_cell_chars is not None else cell_limit()
    table = read_table(path)
    if not table.rows:
        raise DataError("no data rows (only a header)", path=str(path))
    columns = set(table.columns)
    needed = list(input_fields) + ([target_field] if require_target else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        found = clip(sorted(columns), 200)
        raise DataError(f"missing column(s) {missing}; found {found}", path=str(path),
                        field=missing[0])
    has_id = id_field in columns
    for name in [*needed, id_field] if has_id else needed:
        if name in table.repeated_columns:
            raise DataError("column appears more than once in the header", path=str(path),
                            field=name)
    examples: list[Example] = []
    seen: dict[str, int] = {}
    skipped: list[DataError] = []
    for i, raw in enumerate(table.rows, start=1):
        where = _row_where(path, table, raw, i)
        try:
            example = _row_example(raw, i, where, needed, input_fields, target_field,
                                   id_field if has_id else None, seen, limit)
        except DataError as exc:
            if not skip_bad_rows:
                raise
            skipped.append(exc)
            continue
        seen[example.id] = i
        examples.append(example)
    if skipped:
        shown = "; ".join(_where(e) for e in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        message = (f"file {path}: skipped {len(skipped)} bad row(s) of {len(table.rows)}: "
                   f"{shown}{more}")
        warnings.warn(DataWarning(message, skipped, len(table.rows)), stacklevel=2)
    if not examples:
        raise DataError("no usable data rows", path=str(path))
    return examples


def warn_formula_like(path: str | Path, texts: Sequence[str]) -> int:
    """Warn (:class:`DataWarning`) if written CSV cells start like spreadsheet formulas.

    promptopt writes such cells verbatim (they are data: a submission must hold the
    exact text); the warning tells whoever opens the file in a spreadsheet program.
    Returns how many there are.
    """
    risky = [t for t in texts if t.startswith(FORMULA_PREFIXES)]
    if risky:
        warnings.warn(
            DataWarning(f"file {path}: {len(risky)} cell(s) start with =, +, -, @, tab or "
                        f"carriage return, e.g. {clip(risky[0])}; written verbatim as text, "
                        "but spreadsheet programs may run them as formulas"),
            stacklevel=2,
        )
    return len(risky)


@dataclass(frozen=True)
class Splits:
    """Train, validation and test examples."""

    train: list[Example]
    val: list[Example]
    test: list[Example]

    def __getitem__(self, name: str) -> list[Example]:
        if name not in ("train", "val", "test"):
            raise KeyError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        """Number of examples per split."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def split_examples(
    examples: Sequence[Example],
    *,
    train: int | float = 0.5,
    val: int | float = 0.25,
    test: int | float | None = None,
    seed: int = 0,
) -> Splits:
    """Shuffle with ``seed`` and cut into train/val/test.

    Sizes are counts (int) or fractions of the data (float); ``test`` defaults to
    the rest. Raises :class:`DataError` if the sizes do not fit the data.
    """
    n = len(examples)

    def count(size: int | float, name: str) -> int:
        if isinstance(size, float) and 0 < size <= 1:
            return max(1, round(size * n))
        if isinstance(size, int) and size >= 0:
            return size
        raise DataError(f"invalid {name} size {size!r}: use a count or a fraction in (0, 1]")

    n_train, n_val = count(train, "train"), count(val, "val")
    n_test = n - n_train - n_val if test is None else count(test, "test")
    if n_train < 1 or n_val < 1 or n_test < 1 or n_train + n_val + n_test > n:
        raise DataError(
            f"split sizes train={n_train}, val={n_val}, test={n_test} do not fit {n} examples "
            "(each split needs at least one)"
        )
    order = list(examples)
    random.Random(seed).shuffle(order)
    return Splits(
        train=order[:n_train],
        val=order[n_train : n_train + n_val],
        test=order[n_train + n_val : n_train + n_val + n_test],
    )
