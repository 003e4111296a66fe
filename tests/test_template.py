from __future__ import annotations

import json
import re

import pytest

from promptopt.errors import DataError
from promptopt.template import Template


def test_id_is_stable_and_content_based():
    a = Template("Make it formal.", demos=({"a": "1", "b": "2"}.items(),))
    b = Template("Make it formal.", demos=((("a", "1"), ("b", "2")),))
    assert a.id == b.id and len(a.id) == 12
    assert a.id != a.replace(suffix="x").id
    assert a.id != a.replace(answer_prefix="Rewrite").id


def test_json_roundtrip():
    t = Template("Say it.", demos=((("x", "in"), ("y", "out")),), answer_prefix="Re", suffix="s")
    assert Template.from_json(t.to_json()) == t
    assert json.loads(t.to_json())["demos"] == [{"x": "in", "y": "out"}]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"instruction": ""}, "instruction"),
        ({"instruction": 3}, "instruction"),
        ({"instruction": "ok", "demos": "no"}, "demos"),
        ({"instruction": "ok", "suffix": 1}, "suffix"),
    ],
)
def test_bad_template_dicts_name_the_field(payload, field):
    with pytest.raises(DataError) as info:
        Template.from_dict(payload, source="t.json")
    assert info.value.field == field and "t.json" in str(info.value)


def test_unknown_keys_and_bad_json(tmp_path):
    with pytest.raises(DataError, match="unknown template keys"):
        Template.from_dict({"instruction": "x", "instrucion": "y"})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json.*invalid JSON"):
        Template.load(str(bad))


def test_load_from_file_text_and_literal(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("  Guess the prompt.\n")
    assert Template.load(str(txt)).instruction == "Guess the prompt."
    js = tmp_path / "t.json"
    js.write_text(Template("From json.").to_json())
    assert Template.load(str(js)).instruction == "From json."
    assert Template.load("Just an instruction.").instruction == "Just an instruction."
    with pytest.raises(DataError, match="not found"):
        Template.load(str(tmp_path / "missing.json"))


# Regressions found by tests/test_fuzz_inputs.py.


def _task():
    from promptopt.data import Splits
    from promptopt.tasks import PromptRecoveryTask

    return PromptRecoveryTask(Splits([], [], []), scorer=None)


def test_template_files_with_bom_utf16_and_uppercase_suffix(tmp_path):
    js = tmp_path / "T.JSON"
    js.write_bytes(b"\xef\xbb\xbf" + Template("From json.").to_json().encode())
    assert Template.load(str(js)).instruction == "From json."
    txt = tmp_path / "t.txt"
    txt.write_bytes("Guess the prompt: café.".encode("utf-16"))  # BOM + UTF-16
    assert Template.load(str(txt)).instruction == "Guess the prompt: café."


def test_bad_template_bytes_are_clear_errors(tmp_path):
    latin = tmp_path / "t.txt"
    latin.write_bytes("Guess\nthe café".encode("latin-1"))
    with pytest.raises(DataError, match=r"t.txt, line 2: not UTF-8.*byte 13"):
        Template.load(str(latin))
    with pytest.raises(DataError, match="NUL character"):
        Template.load("literal with a NUL \x00 character")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(DataError, match="deep.json: unreadable JSON"):
        Template.load(str(deep))
    with pytest.raises(DataError, match=r"line 3: invalid JSON"):
        Template.from_json('{\n "instruction":\n }', source="t.json")


def test_wrong_types_in_template_json_name_field_and_demo(tmp_path):
    with pytest.raises(DataError) as info:
        Template.from_dict({"instruction": "x", "demos": [{"a": "b"}, {"a": 1}]}, source="t")
    assert (info.value.field, info.value.row) == ("demos", 2)
    with pytest.raises(DataError, match="must be a list"):
        Template.from_dict({"instruction": "x", "demos": ""}, source="t")
    with pytest.raises(DataError, match="got list"):
        Template.from_dict([{"instruction": "x"}], source="t")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "instruction, problem",
    [
        ("Only {original_text}.", "uses placeholders but not ['rewritten_text']"),
        ("Leak {rewrite_prompt} and {original_text} {rewritten_text}.", "unknown placeholder"),
        ("{ original_text } and {rewritten_text}", "malformed placeholder '{ original_text }'"),
        ("{Original_Text} and {rewritten_text}", "write {original_text}"),
        ("{original_text!r} and {rewritten_text}", "malformed placeholder"),
    ],
)
def test_task_checks_template_files(tmp_path, instruction, problem):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"instruction": instruction}))
    with pytest.raises(DataError, match=re.escape(problem)) as info:
        _task().load_template(str(path))
    assert info.value.field == "instruction" and str(path) in str(info.value)


def test_task_checks_demo_fields(tmp_path):
    path = tmp_path / "t.json"
    demo = {"original_text": "a", "rewritten_text": "b", "rewrite_prompt": "c"}
    path.write_text(json.dumps({"instruction": "x", "demos": [demo, {**demo, "notes": "n"}]}))
    with pytest.raises(DataError, match=r"row 2, field 'demos'.*unknown \['notes'\]"):
        _task().load_template(str(path))
    del demo["rewrite_prompt"]
    path.write_text(json.dumps({"instruction": "x", "demos": [demo]}))
    with pytest.raises(DataError, match=r"missing \['rewrite_prompt'\]"):
        _task().load_template(str(path))


def test_placeholder_text_in_user_data_and_demos_is_never_substituted():
    from promptopt.data import Example

    task = _task()
    tricky = "Keep {original_text} and {rewritten_text} {rewrite_prompt} as typed."
    demo = {"original_text": "{rewritten_text}", "rewritten_text": "{original_text}",
            "rewrite_prompt": "{original_text}"}
    template = Template("A: {original_text}\nB: {rewritten_text}").with_demos([demo])
    example = Example("1", {"original_text": tricky, "rewritten_text": "{original_text}"}, "p")
    chat = task.render(template, example, chat=True)
    assert chat[0]["content"] == f"A: {tricky}\nB: {{original_text}}"
    assert chat[1]["content"] == "Original text: {rewritten_text}\nRewritten text: {original_text}"
    prompt = task.render(template, example, chat=False)[0]["content"]
    assert prompt.startswith(f"A: {tricky}\nB: {{original_text}}")
