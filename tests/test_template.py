from __future__ import annotations

import json

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
