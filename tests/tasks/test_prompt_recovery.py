from __future__ import annotations

import pytest

from promptopt.data import Example, Splits
from promptopt.errors import ConfigError
from promptopt.scoring import HashingScorer
from promptopt.tasks import (
    DEFAULT_PREDICTION,
    PromptRecoveryTask,
    clean_prediction,
    truncate_tokens,
)
from promptopt.template import Template


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Sure! Here is the prompt: Make it formal.", "Make it formal."),
        ("Here's the instruction:\n\n\"Rewrite this as a poem.\"", "Rewrite this as a poem."),
        ("Instruction: Turn it into a haiku.", "Turn it into a haiku."),
        ("**Prompt:** Make it shorter.\nOriginal text: blah", "Make it shorter."),
        ("  Certainly. Rewrite it for a child.", "Rewrite it for a child."),
        ("'Convert to a tweet.'", "Convert to a tweet."),
        ("Rewrite prompt: Make it sad.", "Make it sad."),
        ("\n\nMake it formal.\nSecond line", "Make it formal."),
        ("", DEFAULT_PREDICTION),
        ("   \n  \"\" ", DEFAULT_PREDICTION),
        ("Sure!", DEFAULT_PREDICTION),
        ("Here is", DEFAULT_PREDICTION),
    ],
)
def test_clean_prediction(raw, expected):
    assert clean_prediction(raw) == expected


def test_clean_prediction_default_is_configurable_and_long_output_is_cut():
    assert clean_prediction("", default="Improve this text.") == "Improve this text."
    long = clean_prediction("word " * 200)
    assert 0 < len(long) <= 300 and not long.endswith(" ")


def _task(**kw):
    ex = Example("1", {"original_text": "The cat sat.", "rewritten_text": "A feline rested."},
                 "Make it fancy.")
    return PromptRecoveryTask(Splits([ex], [ex], [ex]), scorer=HashingScorer(), **kw), ex


def test_render_completion_and_chat():
    task, ex = _task()
    t = Template("Find the prompt.", demos=(
        (("original_text", "Hi"), ("rewritten_text", "Hello"), ("rewrite_prompt", "Be polite.")),
    ), answer_prefix="Rewrite")
    [msg] = task.render(t, ex, chat=False)
    text = msg["content"]
    assert text.startswith("Find the prompt.")
    assert text.index("Be polite.") < text.index("The cat sat.")
    assert text.endswith("Rewrite prompt: Rewrite")
    chat = task.render(t, ex, chat=True)
    assert chat[0] == {"role": "system", "content": "Find the prompt."}
    # the answer prefix opens the assistant's reply, which the model continues
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant"]
    assert chat[2]["content"] == "Be polite."
    assert chat[3]["content"].endswith("Rewrite prompt:") and chat[4]["content"] == "Rewrite"
    plain = task.render(t.replace(answer_prefix=""), ex, chat=True)
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert plain[3]["content"].endswith("Rewrite prompt:")


def test_instruction_after_the_texts_keeps_each_example_s_start_the_same():
    task, ex = _task(instruction_at="after")
    assert task.start_template().instruction.startswith("Above is")
    assert "then the instruction" in task.brief
    a, b = Template("Find the prompt."), Template("Name the change.", answer_prefix="Rewrite")
    [base_a], [base_b] = task.render(a, ex, chat=False), task.render(b, ex, chat=False)
    assert base_a["content"] == (
        "Original text: The cat sat.\nRewritten text: A feline rested.\n\n"
        "Find the prompt.\nRewrite prompt:")
    assert base_b["content"].endswith("Name the change.\nRewrite prompt: Rewrite")
    chat_a, chat_b = task.render(a, ex, chat=True), task.render(b, ex, chat=True)
    assert [m["role"] for m in chat_a] == ["user"]  # no system message: the same for all
    assert chat_a[0]["content"] == base_a["content"]
    assert [m["role"] for m in chat_b] == ["user", "assistant"]
    assert chat_b[0]["content"].endswith("Name the change.\nRewrite prompt:")
    shared = "Original text: The cat sat.\nRewritten text: A feline rested.\n\n"
    assert chat_a[0]["content"].startswith(shared) and chat_b[0]["content"].startswith(shared)
    # an instruction that holds the texts itself stays first
    [own] = task.render(Template("Text: {original_text} -> {rewritten_text}"), ex, chat=False)
    assert own["content"].startswith("Text: The cat sat.")
    with pytest.raises(ConfigError, match="instruction_at must be one of before, after"):
        _task(instruction_at="middle")


def test_placeholders_fill_once_and_never_rescan_user_text():
    task, _ = _task()
    ex = Example("2", {"original_text": "{rewritten_text}", "rewritten_text": "B"}, "p")
    t = Template("Text: {original_text} -> {rewritten_text}")
    [msg] = task.render(t, ex, chat=False)
    assert msg["content"].startswith("Text: {rewritten_text} -> B")
    assert "Original text:" not in msg["content"]


def test_validate_instruction():
    task, _ = _task()
    assert task.validate_instruction("Plain instruction.") is None
    assert task.validate_instruction("{original_text} and {rewritten_text}") is None
    assert "unknown placeholder" in task.validate_instruction("Use {foo}")
    assert "not ['rewritten_text']" in task.validate_instruction("Only {original_text}")
    assert task.validate_instruction("  ") == "empty instruction"


def test_truncation_to_token_budget():
    task, _ = _task(max_text_tokens=5)
    ex = Example("3", {"original_text": "one two three four five six seven",
                       "rewritten_text": "short"}, "p")
    [msg] = task.render(Template("x"), ex, chat=False)
    assert "one two three four five ..." in msg["content"] and "six" not in msg["content"]
    assert truncate_tokens("a b", 5) == "a b"


def test_parse_keeps_prefix_and_appends_suffix():
    task, _ = _task()
    t = Template("x", answer_prefix="Rewrite", suffix="lucrarea")
    assert task.parse(" this as a poem.", t) == "Rewrite this as a poem. lucrarea"
    assert task.parse("Rewrite it.", t) == "Rewrite it. lucrarea"
    assert task.parse("", Template("x")) == DEFAULT_PREDICTION
