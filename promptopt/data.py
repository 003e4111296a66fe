"""Loading datasets (CSV, JSONL, Parquet) into validated examples, and seeded splits.

Every problem with an input file is raised as :class:`~promptopt.errors.DataError`
naming the file, the row (1-based data row, header excluded) and the field.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from promptopt.errors import DataError

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


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        rows = []
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            bad = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise DataError(f"not UTF-8 (byte {exc.start}, line {bad})", path=str(path)) from None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", path=str(path), row=lineno) from None
            if not isinstance(obj, dict):
                raise DataError("each line must be a JSON object", path=str(path), row=lineno)
            rows.append(obj)
        return rows
    import pandas as pd

    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types
            raise DataError(f"cannot read Parquet: {exc}", path=str(path)) from None
    elif suffix in {".csv", ".tsv", ".txt", ""}:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[: exc.start].count(b"\n") + 1
            raise DataError(
                f"not UTF-8 (byte {exc.start}, line {bad}); re-save the file as UTF-8",
                path=str(path),
            ) from None
        try:
            frame = pd.read_csv(
                path,
                sep="\t" if suffix == ".tsv" else ",",
                dtype=str,
                keep_default_na=False,
                encoding="utf-8",
            )
        except pd.errors.EmptyDataError:
            raise DataError("file is empty", path=str(path)) from None
        except pd.errors.ParserError as exc:
            raise DataError(f"malformed CSV: {exc}", path=str(path)) from None
    else:
        raise DataError(
            f"unsupported file type {suffix!r}; use .csv, .tsv, .jsonl or .parquet", path=str(path)
        )
    return frame.to_dict(orient="records")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The raw rows of a dataset file as dicts (format errors raised as :class:`DataError`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    return _read_rows(path)


class DataWarning(UserWarning):
    """Rows were skipped on request (``skip_bad_rows``); the message lists them."""


def _where(error: DataError) -> str:
    return f"row {error.row} field {error.field!r}: {error.reason}"


def _row_example(
    row: dict[str, Any],
    i: int,
    path: Path,
    needed: Sequence[str],
    input_fields: Sequence[str],
    target_field: str,
    id_field: str | None,
    seen: dict[str, int],
) -> Example:
    """Validate one data row (1-based ``i``) into an :class:`Example`."""
    values: dict[str, str] = {}
    for name in needed:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise DataError("empty cell", path=str(path), row=i, field=name)
        if not isinstance(value, str):
            raise DataError(
                f"expected text, got {type(value).__name__} {value!r}",
                path=str(path),
                row=i,
                field=name,
            )
        if not value.strip():
            raise DataError("empty cell", path=str(path), row=i, field=name)
        values[name] = value
    ex_id = str(row.get(id_field, "")).strip() if id_field else ""
    if id_field and not ex_id:
        raise DataError("empty id", path=str(path), row=i, field=id_field)
    ex_id = ex_id or str(i)
    if ex_id in seen:
        raise DataError(
            f"duplicate id {ex_id!r} (first seen in row {seen[ex_id]})",
            path=str(path),
            row=i,
            field=id_field,
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
) -> list[Example]:
    """Read and validate a dataset file.

    Args:
        path: A .csv, .tsv, .jsonl or .parquet file.
        input_fields: Columns every row must have as non-empty text.
        target_field: The column holding the target text.
        id_field: Optional id column; row numbers are used when it is absent.
        require_target: Whether the target column must be present (False for
            files to predict on).
        skip_bad_rows: Skip rows with empty or non-text cells or duplicate ids, and
            warn with a :class:`DataWarning` that lists them, instead of raising.

    Raises:
        DataError: naming the file, row and field of the first problem found.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    rows = _read_rows(path)
    if not rows:
        raise DataError("no data rows", path=str(path))
    columns = set().union(*(r.keys() for r in rows))
    needed = list(input_fields) + ([target_field] if require_target else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; found {sorted(map(str, columns))}",
            path=str(path),
            field=missing[0],
        )
    has_id = id_field in columns
    examples: list[Example] = []
    seen: dict[str, int] = {}
    skipped: list[DataError] = []
    for i, row in enumerate(rows, start=1):
        try:
            example = _row_example(row, i, path, needed, input_fields, target_field,
                                   id_field if has_id else None, seen)
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
        warnings.warn(
            f"file {path}: skipped {len(skipped)} bad row(s) of {len(rows)}: {shown}{more}",
            DataWarning,
            stacklevel=2,
        )
    if not examples:
        raise DataError("no usable data rows", path=str(path))
    return examples


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
