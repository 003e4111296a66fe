"""Running the real loaders on generated cases and judging the outcome.

A data case is loaded twice, as a user would: stopping at the first bad row, and
with ``skip_bad_rows``. The outcome is one of ``"loaded"`` (every row, content
exact), ``"error"`` (a :class:`~promptopt.errors.DataError` naming the file and the
expected row and field), ``"crash"`` (any other exception) or ``"wrong"`` (an error
at the wrong place, a row lost or altered, a defect let through). Row accounting is
kept: rows loaded + rows reported as skipped must equal the rows written.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.data import DataWarning, Example, load_examples
from promptopt.errors import DataError
from promptopt.testing.badinput._data import ANY, ID, INPUTS, NEEDED, TARGET, DataCase, FileError

FIELDS: dict[str, Any] = {"input_fields": INPUTS, "target_field": TARGET}


@dataclass
class Outcome:
    """What loading one case did, judged against its expectation."""

    status: str
    detail: str = ""
    rows: int = 0
    loaded: int = 0
    skipped: int = 0
    lost: int = 0
    altered: int = 0


def _cell_problem(value: Any, limit: int) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return True
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return True
    return "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)


def expected_rows(case: DataCase) -> list[tuple[Example | None, set[str | None]]]:
    """Per data row: the example it must load as, or the fields that make it bad."""
    out: list[tuple[Example | None, set[str | None]]] = []
    seen: set[str] = set()
    for i, row in enumerate(case.rows, start=1):
        if row.structural:
            out.append((None, {None}))
            continue
        cells = dict(row.cells)
        counts: dict[str, int] = {}
        for key, _ in row.cells:
            counts[key] = counts.get(key, 0) + 1
        bad: set[str | None] = set()
        for name in NEEDED:
            if counts.get(name, 0) != 1 or _cell_problem(cells[name], case.limit):
                bad.add(name)
        ex_id = str(i)
        if case.has_id:
            value = cells.get(ID)
            if isinstance(value, (int, str)) and not isinstance(value, bool):
                value = str(value).strip()
            if counts.get(ID, 0) != 1 or not value or _cell_problem(value, case.limit):
                bad.add(ID)
            else:
                ex_id = str(value)
        if not bad and ex_id in seen:
            bad.add(ID)
        if bad:
            out.append((None, bad))
            continue
        seen.add(ex_id)
        example = Example(ex_id, {k: cells[k] for k in INPUTS}, cells[TARGET])
        out.append((example, set()))
    return out


def _names(error: DataError, path: Path, want: FileError) -> bool:
    return (
        str(path) in str(error)
        and (want.row is ANY or error.row == want.row)
        and (want.field is ANY or error.field == want.field)
    )


def check_data_case(case: DataCase, folder: Path) -> Outcome:
    """Write ``case`` into ``folder``, load it both ways, and judge the outcome."""
    path = folder / case.name
    path.write_bytes(case.content)
    n = len(case.rows)
    expected = expected_rows(case)
    uncertain = any(r.uncertain for r in case.rows)
    bad = [i for i, (_, fields) in enumerate(expected, start=1) if fields]
    good = [ex for ex, _ in expected if ex is not None]
    try:
        examples = load_examples(path, **FIELDS, max_cell_chars=case.limit)
        error = None
    except DataError as exc:
        examples, error = [], exc
    except Exception as exc:  # the property under test: nothing else escapes
        return Outcome("crash", f"{type(exc).__name__}: {exc}", rows=n)
    if case.file_errors:
        if error is None:
            return Outcome("wrong", f"loaded {len(examples)} rows despite {case.defects}", n)
        if not any(_names(error, path, want) for want in case.file_errors):
            return Outcome("wrong", f"error at the wrong place: {error}; expected "
                           f"{case.file_errors}", n)
        return Outcome("error", str(error), rows=n)
    if error is not None:
        if uncertain and str(path) in str(error):
            strict = Outcome("error", str(error), rows=n)
        elif not bad:
            return Outcome("wrong", f"error on a good file: {error}", rows=n)
        elif error.row != bad[0] or error.field not in expected[bad[0] - 1][1]:
            return Outcome("wrong", f"error names row {error.row} field {error.field!r}, "
                           f"expected row {bad[0]} field in {expected[bad[0] - 1][1]}", n)
        else:
            strict = Outcome("error", str(error), rows=n)
    elif bad and not uncertain:
        return Outcome("wrong", f"loaded despite bad rows {bad}", rows=n)
    else:
        strict = _compare(examples, good, n, uncertain, skipped=0)
        if strict.status != "loaded":
            return strict
    lenient = _load_skipping(path, case, good, bad, n, uncertain)
    if lenient.status in ("crash", "wrong"):
        return lenient
    return Outcome(strict.status, strict.detail, n, lenient.loaded, lenient.skipped)


def _compare(examples: list[Example], good: list[Example], n: int, uncertain: bool,
             skipped: int) -> Outcome:
    lost = n - len(examples) - skipped
    if uncertain:
        missing = [ex for ex in good if ex not in examples]
        altered = len(missing)
    else:
        altered = sum(1 for a, b in zip(examples, good, strict=False) if a != b)
        altered += abs(len(good) - len(examples))
    if lost or altered:
        return Outcome("wrong", f"{lost} row(s) lost, {altered} altered", n, len(examples),
                       skipped, lost, altered)
    return Outcome("loaded", "", n, len(examples), skipped)


def _load_skipping(path: Path, case: DataCase, good: list[Example], bad: list[int], n: int,
                   uncertain: bool) -> Outcome:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            examples = load_examples(path, **FIELDS, max_cell_chars=case.limit,
                                     skip_bad_rows=True)
            error = None
        except DataError as exc:
            examples, error = [], exc
        except Exception as exc:
            return Outcome("crash", f"skip_bad_rows: {type(exc).__name__}: {exc}", rows=n)
    notes = [w.message for w in caught if isinstance(w.message, DataWarning)]
    skipped = notes[0].errors if notes else []
    if any(notes) and notes[0].rows != n:
        return Outcome("wrong", f"warning counts {notes[0].rows} rows, wrote {n}", rows=n)
    if not uncertain and [e.row for e in skipped] != bad:
        return Outcome("wrong", f"skipped rows {[e.row for e in skipped]}, expected {bad}", n)
    if error is not None:
        if uncertain and str(path) in str(error):
            return Outcome("error", str(error), rows=n)
        if not good and "no usable data rows" in str(error) and len(skipped) == n:
            return Outcome("error", str(error), rows=n, skipped=n)
        return Outcome("wrong", f"skip_bad_rows: unexpected error {error}", rows=n)
    return _compare(examples, good, n, uncertain, skipped=len(skipped))

