"""Fuzzing the dataset and template loaders (and the CLI) with defective files.

Hypothesis drives the generators of :mod:`promptopt.testing.badinput` through a
``random.Random``: seeded ones (a representative corpus: a failure reports its
seed) and ones Hypothesis controls (``st.randoms``, biased towards extreme choices,
so most defects pile up in one file; failures shrink). Each generated file comes
with the outcome a correct loader must have, computed from the generation. Property:
every file either loads every valid row with its exact content (rows loaded +
rows reported as skipped == rows written) or fails with a DataError that names the
file, the row and the field; no other exception escapes. Deterministic
(``derandomize``, no example database), so it runs the same in CI.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from promptopt.cli import app
from promptopt.data import load_examples
from promptopt.errors import DataError
from promptopt.testing import FakeLLM
from promptopt.testing.badinput import (
    cell_kinds,
    check_data_case,
    check_template_case,
    expected_rows,
    make_data_case,
    make_template_case,
)
from promptopt.testing.badinput._data import INPUTS, TARGET

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
seeded = st.integers(0, 2**32 - 1).map(random.Random)
randoms = st.one_of(seeded, st.randoms(use_true_random=False))


@FUZZ
@given(seeded)
def test_dataset_files_load_exactly_or_fail_naming_file_row_field(rng):
    _check_dataset(rng)


@settings(FUZZ, max_examples=40)
@given(st.randoms(use_true_random=False))
def test_dataset_files_with_piled_up_defects(rng):
    _check_dataset(rng)


def _check_dataset(rng):
    case = make_data_case(rng)
    note(f"{case.name}: {case.defects}")
    with tempfile.TemporaryDirectory() as folder:
        outcome = check_data_case(case, Path(folder))
    assert outcome.status in ("loaded", "error"), (case.defects, outcome.detail)
    assert outcome.lost == 0 and outcome.altered == 0
    if outcome.status == "loaded":  # with skip_bad_rows every row is accounted for
        assert outcome.loaded + outcome.skipped == len(case.rows)


@FUZZ
@given(randoms)
def test_template_files_load_exactly_or_fail_naming_file_and_field(rng):
    case = make_template_case(rng)
    note(f"{case.name}: {case.defects}")
    with tempfile.TemporaryDirectory() as folder:
        outcome = check_template_case(case, Path(folder))
    assert outcome.status in ("loaded", "error"), (case.defects, outcome.detail)


def test_the_generators_cover_the_defects_of_the_issue():
    """The corpus the properties run on really holds the listed kinds of bad input."""
    seen: set[str] = set()
    for seed in range(400):
        case = make_data_case(random.Random(seed))
        seen.update(d.split(" '")[0].split(" original")[0].split(" rewri")[0]
                    for d in case.defects)
        seen.update(cell_kinds(case))
    for seed in range(200):
        seen.update(d.split(" '")[0] for d in make_template_case(random.Random(seed)).defects)
    wanted = {
        "Latin-1 encoded", "UTF-16 without byte-order mark", "utf-8 with byte-order mark",
        "utf-16-le with byte-order mark", "mixed line ends", "blank line", "stray quote",
        "stray quote opening a cell", "too many fields", "too few fields", "trailing separator",
        "extra column", "missing column", "duplicate column", "no data rows", "invalid JSON",
        "raw NUL byte", "truncated Parquet", "deeply nested JSON", "huge JSON number",
        "cell: formula-like", "cell: placeholder text", "cell: blank", "cell: null",
        "cell: over the size limit", "cell: line break", "cell: quote", "cell: NUL",
        "cell: not text", "cell: lone surrogate", "cell: non-ASCII", "bad instruction",
        "truncated JSON", "not a JSON object",
        "unknown key", "demo field missing", "unknown demo field", "non-text demo value",
        "demos not a list",
    }
    assert wanted <= seen, sorted(wanted - seen)


runner = CliRunner()


def _assert_clean_exit(result, path):
    """Exit 0, or exit 2 with one paragraph naming the file and no traceback."""
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert isinstance(result.exception, SystemExit)
        message = result.output[result.output.index("error:"):].strip()
        assert "\n\n" not in message
        assert path.name in message.replace("\n", "")


@settings(FUZZ, max_examples=15)
@given(seeded, st.sampled_from(["eval", "run"]))
def test_cli_on_bad_dataset_files_exits_cleanly(rng, command):
    case = make_data_case(rng)
    fake = FakeLLM(lambda prompt, params: "=cmd|' /C calc'!A0")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / case.name
        path.write_bytes(case.content)
        args = ["--data", str(path), "--model", fake.model, "--scorer", "hashing",
                "--train", "1", "--val", "1", "--test", "1", "--no-cache"]
        with mock.patch.dict(os.environ, {"PROMPTOPT_MAX_CELL_CHARS": str(case.limit)}):
            if command == "eval":
                result = runner.invoke(app, ["eval", "Find the instruction.", *args])
            else:
                result = runner.invoke(app, ["run", "-m", "identity", "--budget", "5",
                                             "--storage", f"sqlite:///{folder}/s.db", *args])
        _assert_clean_exit(result, path)
        has_bad_rows = any(fields for _, fields in expected_rows(case))
        if case.file_errors or has_bad_rows:
            assert result.exit_code == 2, result.output


@settings(FUZZ, max_examples=15)
@given(randoms)
def test_cli_eval_on_bad_template_files_exits_cleanly(rng):
    case = make_template_case(rng)
    fake = FakeLLM(lambda prompt, params: "Make it formal.")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / case.name
        path.write_bytes(case.content)
        result = runner.invoke(app, ["eval", str(path), "--model", fake.model, "--scorer",
                                     "hashing", "--train", "4", "--val", "2", "--test", "2"])
        _assert_clean_exit(result, path)
        assert (result.exit_code == 2) == (case.template is None), result.output


@pytest.mark.parametrize("seed", [3, 17])
def test_generated_cases_are_reproducible(seed):
    a, b = make_data_case(random.Random(seed)), make_data_case(random.Random(seed))
    assert a.content == b.content and a.defects == b.defects


def test_cli_prints_user_text_with_markup_literally(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,[/x],rewrite_prompt\n1,a,b\n")
    result = runner.invoke(app, ["eval", "x", "--data", str(bad), "--scorer", "hashing"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "['[/x]', 'id', 'rewrite_prompt']" in result.output.replace("\n", "")
    fake = FakeLLM(lambda prompt, params: "[/bold] Make it [red]formal[/red].")
    ok = runner.invoke(app, ["eval", "Say [/i] it.", "--model", fake.model, "--scorer",
                             "hashing", "--train", "4", "--val", "2", "--test", "2"])
    assert ok.exit_code == 0, ok.output
    assert "[/bold] Make it [red]formal[/red]." in ok.output


def test_predict_writes_formula_like_predictions_verbatim_and_says_so(tmp_path):
    import csv

    data = tmp_path / "test.csv"
    data.write_text('id,original_text,rewritten_text\n=1+1,"a, b","@c\nd"\n2,x,y\n')
    fake = FakeLLM(lambda prompt, params: "=cmd|' /C calc'!A0" if "a, b" in prompt else "-2")
    out = tmp_path / "submission.csv"
    result = runner.invoke(app, ["predict", "--data", str(data), "--output", str(out),
                                 "--template", "Find the instruction.", "--model", fake.model])
    assert result.exit_code == 0, result.output
    assert "2 cell(s) start with =, +, -, @" in " ".join(result.output.split())
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [["id", "rewrite_prompt"], ["=1+1", "=cmd|' /C calc'!A0"], ["2", "-2"]]


@pytest.mark.embedded
def test_tricky_cells_through_the_embedded_model(tmp_path, embedded_cache):
    """Formula-like, placeholder-like, multi-line and non-ASCII cells load exactly and go
    through the real model; a bad row stops the load or is skipped and listed."""
    import csv

    from promptopt.runs import predict

    data = tmp_path / "tricky.csv"
    data.write_bytes(
        "\ufeffid,original_text,rewritten_text\n"
        '1,"=cmd|\' /C calc\'!A0 said {original_text}","@x: Sie sagte {rewritten_text}."\n'
        '2,"Line one\r\nline two, ""quoted""",Zeile eins. Zeile zwei.\n'
        "3,,missing original\n".encode("utf-8")
    )
    with pytest.warns(UserWarning, match=r"row 3 field 'original_text': empty cell"):
        with pytest.raises(DataError):  # without skipping, row 3 stops the load
            load_examples(data, input_fields=INPUTS, target_field=TARGET,
                          require_target=False)
        examples = load_examples(data, input_fields=INPUTS, target_field=TARGET,
                                 require_target=False, skip_bad_rows=True)
    assert examples[0].inputs["original_text"] == "=cmd|' /C calc'!A0 said {original_text}"
    assert examples[1].inputs["original_text"] == 'Line one\r\nline two, "quoted"'
    out = tmp_path / "pred.csv"
    with pytest.raises(DataError, match="row 3"):
        predict("Original: {original_text}\nRewrite: {rewritten_text}\nInstruction:", data,
                out, model="llamacpp/gemma-3-270m", cache_dir=embedded_cache)
    data.write_bytes(data.read_bytes().replace(b"3,,missing original\n", b""))
    n = predict("Original: {original_text}\nRewrite: {rewritten_text}\nInstruction:", data,
                out, model="llamacpp/gemma-3-270m", cache_dir=embedded_cache)
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert n == 2 and [r[0] for r in rows] == ["id", "1", "2"] and all(r[1] for r in rows)
