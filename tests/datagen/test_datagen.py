"""`promptopt data generate`: pairs, cleaning, quality filter, resuming, errors, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import pytest
from typer.testing import CliRunner

from promptopt.cli import app
from promptopt.data import DataWarning, load_examples
from promptopt.datagen import (
    COLUMNS,
    EXAMPLES,
    FAMILIES,
    TEMPLATES,
    clean_rewrite,
    drop_reason,
    generate_data,
    instruction_stream,
    pair_stream,
    render_rewrite,
    template_families,
)
from promptopt.errors import ConfigError, DataError
from promptopt.testing import FakeLLM

ORIGINALS = [
    "The library will close early on Friday because the heating system is being repaired.",
    "Our team won the regional quiz after a tense final round about rivers and mountains.",
    "Remember to bring a warm jacket, since the forecast says it will snow on the hike.",
    "The bakery on the corner now sells rye bread with caraway seeds every Tuesday morning.",
    "My neighbour found a lost kitten in the garden and is looking for its owner.",
    "The new bus timetable adds an extra service to the airport late in the evening.",
]
INSTRUCTIONS = [
    "Make this text formal.",
    "Turn this into a poem.",
    "Rewrite this for a five-year-old.",
    "Convert this into a tweet.",
    "Rewrite it as a pirate would say it.",
]
KINDS = ("echo", "empty", "chatter", "good", "good", "same")
SAME = "A fixed rewrite that this scripted model gives for several pairs."


def _h(*parts: str) -> int:
    return int(hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8], 16)


class Rewriter:
    """Scripted rewriter: depending on a hash of the pair it echoes the original, says
    nothing, wraps a rewrite in chatter, rewrites, or gives one fixed text."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.kinds: list[str] = []
        self.pairs: list[tuple[str, str]] = []
        self.interrupt_at = interrupt_at

    def __call__(self, prompt: str, params: dict) -> str:
        if self.interrupt_at is not None and len(self.kinds) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        instruction = re.search(r"Instruction: (.*)", prompt).group(1)
        original = prompt.split("Text:\n", 1)[1]
        kind = KINDS[_h(original, instruction) % len(KINDS)]
        self.kinds.append(kind)
        self.pairs.append((original, instruction))
        new = (f"{instruction.split()[-1]} version {_h(original, instruction) % 10**6} of "
               f"a story about {original.split()[1]}")
        return {"echo": original, "empty": "", "good": new, "same": SAME,
                "chatter": f"Sure! Here is the rewritten text:\n\n{new}\n\nI hope this helps!",
                }[kind]


def _rows(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _gen(out, fake, **kwargs):
    options = dict(instructions=INSTRUCTIONS, n=10, model=fake.model, seed=0)
    return generate_data(ORIGINALS, out, **{**options, **kwargs})


def test_rows_cleaning_dedup_and_drop_reasons(tmp_path):
    script = Rewriter()
    fake = FakeLLM(script)
    summary = _gen(tmp_path / "out.csv", fake)
    rows = _rows(tmp_path / "out.csv")
    assert tuple(rows[0]) == COLUMNS and len(rows) == 11
    assert summary.written == summary.rows == 10 and summary.stopped == "done"
    ids = [r[0] for r in rows[1:]]
    assert len(set(ids)) == 10
    pairs = [(r[1], r[2]) for r in rows[1:]]
    assert len(set(pairs)) == 10 and all(p in set(script.pairs) for p in pairs)
    rewrites = [r[3] for r in rows[1:]]
    assert len(set(rewrites)) == 10 and rewrites.count(SAME) <= 1
    for original, _, rewrite in (r[1:] for r in rows[1:]):
        assert rewrite.strip() and rewrite != original
        assert not rewrite.startswith("Sure") and "hope this helps" not in rewrite
    # every scripted kind happened, and each bad one was counted under its reason
    assert set(script.kinds) == set(KINDS)
    assert summary.dropped["copy"] == script.kinds.count("echo")
    assert summary.dropped["empty"] == script.kinds.count("empty")
    assert summary.dropped["duplicate"] == script.kinds.count("same") - 1
    assert summary.written + sum(summary.dropped.values()) == len(fake.calls)
    assert summary.usage["calls"] == len(fake.calls) and summary.usage["completion_tokens"] > 0
    examples = load_examples(tmp_path / "out.csv", input_fields=["original_text",
                             "rewritten_text"], target_field="rewrite_prompt")
    assert len(examples) == 10  # readable as a prompt-recovery dataset


def test_same_seed_same_rows_other_seed_other_rows(tmp_path):
    a = _gen(tmp_path / "a.csv", FakeLLM(Rewriter()), cache=False)
    b = _gen(tmp_path / "b.csv", FakeLLM(Rewriter()), cache=False)
    c = _gen(tmp_path / "c.csv", FakeLLM(Rewriter()), cache=False, seed=1)
    assert _rows(tmp_path / "a.csv") == _rows(tmp_path / "b.csv")
    assert a.dropped == b.dropped
    pairs = [r[1:3] for r in _rows(tmp_path / "a.csv")]
    assert [r[1:3] for r in _rows(tmp_path / "c.csv")] != pairs
    assert c.rows == 10


def test_resume_after_an_interruption_generates_no_row_twice(tmp_path):
    reference = FakeLLM(Rewriter())
    _gen(tmp_path / "ref.csv", reference, cache=False)

    first = FakeLLM(Rewriter(), name="resumed")

    def stop_at_four(rows: int, total: int) -> None:
        if rows == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _gen(tmp_path / "out.csv", first, on_progress=stop_at_four)
    partial = _rows(tmp_path / "out.csv")
    assert len(partial) == 5 and tuple(partial[0]) == COLUMNS  # a valid file

    script = Rewriter()
    second = FakeLLM(script, name="resumed")  # same model string: shares the cache
    summary = _gen(tmp_path / "out.csv", second)
    assert summary.existing == 4 and summary.skipped == 4 and summary.written == 6
    written_before = {(r[1], r[2]) for r in partial[1:]}
    assert not written_before & set(script.pairs)  # not one of them asked again
    # one row per pair, same rows and ids as the uninterrupted run, no call made twice
    assert _rows(tmp_path / "out.csv") == _rows(tmp_path / "ref.csv")
    assert len(first.calls) + len(second.calls) == len(reference.calls)


def test_interrupt_inside_an_llm_call_leaves_a_valid_file(tmp_path):
    fake = FakeLLM(Rewriter(interrupt_at=9))
    with pytest.raises(KeyboardInterrupt):
        _gen(tmp_path / "out.csv", fake, batch_size=1, cache=False)
    rows = _rows(tmp_path / "out.csv")
    assert tuple(rows[0]) == COLUMNS and 1 <= len(rows) - 1 < 10
    summary = _gen(tmp_path / "out.csv", FakeLLM(Rewriter()), cache=False)
    assert summary.existing == len(rows) - 1 and summary.rows == 10
    assert len({r[0] for r in _rows(tmp_path / "out.csv")[1:]}) == 10


def test_a_cut_off_last_row_is_removed_with_a_warning(tmp_path):
    out = tmp_path / "out.csv"
    _gen(out, FakeLLM(Rewriter()), n=3)
    with out.open("a", encoding="utf-8") as f:
        f.write('gen00003,"The library will close ea')
    with pytest.warns(DataWarning, match="incomplete last row"):
        summary = _gen(out, FakeLLM(Rewriter()), n=4)
    rows = _rows(out)
    assert summary.existing == 3 and len(rows) == 5
    assert [r[0] for r in rows[1:]] == ["gen00000", "gen00001", "gen00002", "gen00003"]
    assert all(len(r) == 4 for r in rows)


def test_output_with_other_columns_or_a_bad_row_is_an_error(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("id,original_text,rewrite_prompt\n1,a,b\n")
    with pytest.raises(DataError, match=r"other\.csv.*has columns"):
        _gen(other, FakeLLM(Rewriter()))
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(COLUMNS) + "\ng1,a,b,c\ng2,a,b\ng3,a,b,c\n")
    with pytest.raises(DataError, match=r"bad\.csv, row 2: expected 4 fields"):
        _gen(bad, FakeLLM(Rewriter()))
    with pytest.raises(DataError, match="must be a .csv"):
        _gen(tmp_path / "out.jsonl", FakeLLM(Rewriter()))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("o.csv", "id,body\n1,hello there\n", r"o\.csv, field 'original_text': no column"),
        ("o.csv", "id,text\n1,hello there\n2, \n", r"o\.csv, row 2, field 'text': empty cell"),
        ("o.jsonl", '{"original_text": "hi"}\n{"original_text": 7}\n',
         r"o\.jsonl, row 2, field 'original_text': expected text"),
        ("o.txt", "\n  \n", r"o\.txt: no original texts"),
        ("o.jsonl", '{"original_text": "hi"}\nnot json\n', r"o\.jsonl, row 2: invalid JSON"),
    ],
)
def test_bad_originals_name_file_row_and_field(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        generate_data(path, tmp_path / "out.csv", model=FakeLLM().model)
    assert not (tmp_path / "out.csv").exists()


def test_instruction_files_and_bad_settings(tmp_path):
    originals = tmp_path / "originals.txt"
    originals.write_text("\n".join(ORIGINALS) + "\n")
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("instruction\nMake it formal.\n\"Turn it into a poem, please.\"\n")
    script = Rewriter()
    summary = generate_data(originals, tmp_path / "out.csv", instructions=prompts, n=4,
                            model=FakeLLM(script).model)
    assert summary.originals == 6 and summary.instructions == 2 and summary.rows == 4
    assert {p for _, p in script.pairs} <= {"Make it formal.", "Turn it into a poem, please."}
    with pytest.raises(DataError, match=r"missing\.txt: file not found"):
        generate_data(originals, tmp_path / "o.csv", instructions=tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="invalid n 0"):
        generate_data(originals, tmp_path / "o.csv", n=0)
    with pytest.raises(ConfigError, match="also an input"):
        generate_data(prompts, prompts)
    with pytest.raises(ConfigError, match="unknown instruction family.*tone, genre"):
        generate_data(ORIGINALS, tmp_path / "o.csv", families=["colour"],
                      model=FakeLLM(Rewriter()).model)
    with pytest.raises(ConfigError, match="families choose built-in instructions"):
        generate_data(ORIGINALS, tmp_path / "o.csv", instructions=prompts, families=["tone"])
    assert not (tmp_path / "o.csv").exists()


def test_built_in_instructions_are_varied_and_restricted_by_family(tmp_path):
    script = Rewriter()
    summary = generate_data(ORIGINALS, tmp_path / "out.csv", n=12, model=FakeLLM(script).model)
    assert summary.instructions is None and summary.rows == 12
    prompts = [r[2] for r in _rows(tmp_path / "out.csv")[1:]]
    assert len(set(prompts)) >= 10
    patterns = [re.compile(re.escape(t).replace(r"\{", "{").replace(r"\}", "}")
                .replace("{tone}", ".+").replace("{genre}", ".+").replace("{audience}", ".+")
                .replace("{format}", ".+").replace("{length}", ".+").replace("{persona}", ".+")
                + "$") for t in TEMPLATES]
    assert all(any(p.match(prompt) for p in patterns) for prompt in prompts)
    script = Rewriter()
    generate_data(ORIGINALS, tmp_path / "p.csv", n=6, families=["persona"],
                  model=FakeLLM(script).model)
    personas = FAMILIES["persona"]
    assert all(any(v in p for v in personas) for _, p in script.pairs)


def test_instruction_stream_is_seeded_and_distinct():
    first = list(zip(range(60), instruction_stream("key", seed=3), strict=False))
    again = list(zip(range(60), instruction_stream("key", seed=3), strict=False))
    other = list(zip(range(60), instruction_stream("key", seed=4), strict=False))
    assert first == again and first != other
    assert len({p for _, p in first}) == 60
    assert all(template_families(t) <= set(FAMILIES) and template_families(t) for t in TEMPLATES)
    narrow = list(instruction_stream("k", families=["length"], patience=50))
    assert len(narrow) == len(set(narrow)) <= 3 * len(FAMILIES["length"])


def test_pair_stream_covers_every_pair_once_and_uses_originals_evenly():
    pairs = list(pair_stream(ORIGINALS, INSTRUCTIONS, seed=5))
    assert len(pairs) == len(set(pairs)) == len(ORIGINALS) * len(INSTRUCTIONS)
    first_round = [o for o, _ in pairs[: len(ORIGINALS)]]
    assert sorted(first_round) == sorted(ORIGINALS)
    assert pairs == list(pair_stream(ORIGINALS, INSTRUCTIONS, seed=5))
    # an original's instructions do not depend on which other originals there are
    alone = [p for o, p in pair_stream(ORIGINALS[:1], INSTRUCTIONS, seed=5)]
    assert alone == [p for o, p in pairs if o == ORIGINALS[0]]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Sure! Here is the rewritten text:\n\nLine one.\n\nLine two.", "Line one.\n\nLine two."),
        ("Certainly. Here's a poem:\n\"Roses bloom,\nskies are blue.\"",
         "Roses bloom,\nskies are blue."),
        ("Rewritten text: The cat sleeps.\n\nLet me know if you want changes!", "The cat sleeps."),
        ("**Rewrite:** Arr, the ship sails.\r\nAye.", "Arr, the ship sails.\nAye."),
        ("Sure!", ""),
    ],
)
def test_clean_rewrite_strips_chatter_and_keeps_lines(raw, expected):
    assert clean_rewrite(raw) == expected


def test_drop_reason():
    original = "The library will close early on Friday because the heating system is broken."
    ok = "Hear ye! On Friday the hall of books shall shut its doors before dusk."
    assert drop_reason(ok, original, "Make it medieval.") is None
    assert drop_reason("", original, "x") == "empty"
    assert drop_reason("Closed Friday.", original, "x") == "too_short"
    assert drop_reason(original.upper(), original, "x") == "copy"
    assert drop_reason("The library will close early on Friday", original, "x") == "copy"
    assert drop_reason(f"I am sorry, but {original.lower()} Truly.", original, "x") == "copy"
    assert drop_reason(f"Sad news: {ok}", "Hear ye!", "x") is None  # short originals may recur
    assert drop_reason("Make it sound medieval and grand, please.",
                       original, "Make it sound medieval and grand, please.") == "copy"
    borrowed = "If I may be so bold, the library closes on Friday at noon."
    assert EXAMPLES[1][2].startswith("If I may be so bold")
    assert drop_reason(borrowed, original, "x") == "copy"
    assert drop_reason("I am a poet. " * 6, original, "x") == "repetitive"
    assert drop_reason("Four words right here", original, "x", min_words=5) == "too_short"


def test_rewriter_prompts_for_chat_and_base_models():
    chat = render_rewrite("Some text.", "Make it formal.", chat=True)
    assert [m["role"] for m in chat] == ["system", "user"]
    assert "Make it formal." in chat[1]["content"] and "Some text." in chat[1]["content"]
    (base,) = render_rewrite("Some text.", "Make it formal.", chat=False)
    assert base["content"].endswith("Original: Some text.\nInstruction: Make it formal.\n"
                                    "Rewritten:")
    assert all(r in base["content"] for _, _, r in EXAMPLES)


def test_stops_at_max_calls_or_when_pairs_run_out(tmp_path):
    echo = FakeLLM(lambda prompt, params: prompt.split("Text:\n", 1)[1])
    summary = _gen(tmp_path / "a.csv", echo, max_calls=3)
    assert summary.stopped == "max calls" and len(echo.calls) == 3 and summary.rows == 0
    assert summary.dropped["copy"] == 3 and _rows(tmp_path / "a.csv") == [list(COLUMNS)]
    summary = generate_data(ORIGINALS[:2], tmp_path / "b.csv", instructions=INSTRUCTIONS[:1],
                            n=5, model=FakeLLM(Rewriter()).model)
    assert summary.stopped == "out of pairs" and summary.written + sum(
        summary.dropped.values()) == 2


runner = CliRunner()


def test_cli_generates_continues_and_reports(tmp_path):
    originals = tmp_path / "originals.txt"
    originals.write_text("\n".join(ORIGINALS) + "\n")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(INSTRUCTIONS) + "\n")
    fake = FakeLLM(Rewriter())
    args = ["data", "generate", "--originals", str(originals), "--instructions", str(prompts),
            "--out", str(tmp_path / "out.csv"), "--model", fake.model, "--seed", "0"]
    result = runner.invoke(app, [*args, "-n", "4"])
    assert result.exit_code == 0, result.output
    assert "4 of 4 rows in" in result.stdout and "LLM calls" in result.stdout
    assert "dropped: copy" in result.stdout
    assert len(_rows(tmp_path / "out.csv")) == 5
    more = runner.invoke(app, [*args, "-n", "6", "--json"])
    assert more.exit_code == 0, more.output
    data = json.loads(more.stdout)
    assert data["existing"] == 4 and data["rows"] == 6 and data["skipped"] == 4


def test_cli_errors_and_interruption(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("original_text\nfine text here\n\"\"\n")
    result = runner.invoke(app, ["data", "generate", "--originals", str(bad),
                                 "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "bad.csv" in result.output and "row 2" in result.output
    assert "original_text" in result.output
    fake = FakeLLM(Rewriter(interrupt_at=6))
    result = runner.invoke(app, ["data", "generate", "--originals", str(bad.with_name("o.txt")),
                                 "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "file not found" in " ".join(result.output.split())
    (tmp_path / "o.txt").write_text("\n".join(ORIGINALS))
    result = runner.invoke(app, ["data", "generate", "--originals", str(tmp_path / "o.txt"),
                                 "--out", str(tmp_path / "o.csv"), "--model", fake.model,
                                 "-n", "20", "--no-cache"])
    assert result.exit_code == 130
    assert "rerun the same command" in " ".join(result.output.split())
    assert tuple(_rows(tmp_path / "o.csv")[0]) == COLUMNS


@pytest.mark.embedded
@pytest.mark.parametrize("model", ["llamacpp/gemma-3-270m", "llamacpp/smollm2-135m"])
def test_real_embedded_rewriter(tmp_path, embedded_cache, model):
    summary = generate_data(ORIGINALS[:3], tmp_path / "out.csv", instructions=INSTRUCTIONS[:3],
                            n=2, model=model, max_tokens=40, max_calls=4, temperature=0.9,
                            cache_dir=embedded_cache)
    assert summary.usage["requests"] >= 1 and summary.usage["completion_tokens"] > 0
    assert summary.written + sum(summary.dropped.values()) == summary.usage["requests"]
    rows = _rows(tmp_path / "out.csv")
    assert tuple(rows[0]) == COLUMNS and len(rows) - 1 == summary.written <= 2
    for _, original, prompt, rewrite in rows[1:]:
        assert drop_reason(rewrite, original, prompt) is None
        assert clean_rewrite(rewrite) == rewrite
