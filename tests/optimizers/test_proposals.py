"""Reading a proposer's answer into one proposed instruction (shared by every LLM optimizer)."""

from __future__ import annotations

import pytest

from promptopt.search import SearchContext, read_proposal
from promptopt.search._context import strip_tags
from promptopt.testing import FakeSetup

LABELS = ["Original text:", "Rewritten text:", "Rewrite prompt:", "Example "]


def _ctx():
    setup = FakeSetup(budget=40)
    return SearchContext(
        task=setup.task,
        evaluator=setup.evaluator,
        proposer=setup.proposer,
        start=setup.task.start_template(),
        seed=0,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Make it formal.</INS>\nmore text", "Make it formal."),
        ("  Make it formal.\nmore", "Make it formal."),
        ("<INS>Be brief.</INS> <INS>second</INS>", "Be brief."),
        ("<INS>Be brief.\nKeep names.</INS>", "Be brief.\nKeep names."),
        ("\nRewrite it as a poem.\nRewrite it as a poem.\n", "Rewrite it as a poem."),
        # Answers the embedded 270M base model gave: exemplar echoes and junk.
        ("\n\nOriginal text: 110,120.\nRewrite prompt: Make this formal.\n\nExample 3:\n<INS>", ""),
        ("\nOriginal text:\n<INS>\nNew instructions:\nOriginal text:\n<INS>", ""),
        ("\n<INS>\nOriginal text: Our school is preparing a trip.\nRewritten text: ...", ""),
        ("\n1.\n2.\n3.\n", ""),
        ("", ""),
        ("</INS>", ""),
        # Chat models often introduce the tagged proposal.
        ("Here is a new instruction: <INS>Make it rhyme.</INS>", "Make it rhyme."),
        ("Sure!\n<INS>Make it rhyme.\nmore", "Make it rhyme."),
    ],
)
def test_reads_continuations_of_an_opened_tag(raw, expected):
    assert read_proposal(raw, echo_labels=LABELS) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Make it formal.</prompt>", "Make it formal."),
        ("\n\nFinal prompt: Make it a poem.\nStep 2: ...", "Make it a poem."),
        ("<prompt>Make it a tweet.</prompt> and more", "Make it a tweet."),
        ("<PROMPT>Upper-case tags.</Prompt>", "Upper-case tags."),
        ("Final prompt: <prompt>Label, then tag.</prompt>", "Label, then tag."),
        ("<prompt>Prompt 2: Tag, then label.</prompt>", "Tag, then label."),
        ("New prompt:\nOn the next line.\nmore", "On the next line."),
        ("Instruction: Be terse.</prompt>", "Be terse."),
        ("Keep the   <b>tone</b> and\n\n  the names.</prompt>", "Keep the tone and\nthe names."),
        ("Unclosed with a stray tag</INS>\nStep 2", "Unclosed with a stray tag"),
        ("Final prompt:", ""),
        ("<prompt></prompt>", ""),
    ],
)
def test_reads_labels_and_stray_tags(raw, expected):
    assert read_proposal(raw, "prompt") == expected


def test_strip_tags_keeps_lines_and_collapses_spaces():
    assert strip_tags("  a <END>\tb \n\n</x>\n c ") == "a b\nc"


def test_echo_labels_come_from_the_task_exemplars():
    labels = _ctx().echo_labels
    assert {"Original text:", "Rewritten text:", "Rewrite prompt:", "Input:"} <= set(labels)


def test_accept_answers_counts_answers_without_a_proposal():
    ctx = _ctx()
    raw = [
        "Make it formal.</INS>",
        "Original text: an echoed exemplar",  # the context's echo labels apply by default
        "",
        "<INS>Make it formal.</INS>",  # duplicate
        "Make it a poem.",
    ]
    found = [t.instruction for t in ctx.accept_answers(raw)]
    assert found == ["Make it formal.", "Make it a poem."]
    assert ctx.proposed == 5
    assert ctx.rejected == {"no proposal in answer": 2, "duplicate": 1}
    assert [t.instruction for t in ctx.accept_answers(["Original text: x"], echo_labels=())] == [
        "Original text: x"
    ]


def test_accept_rejects_a_passage_of_an_example_sewn_into_other_words():
    # The shape a 270M proposer gave protegi: a train example's text, then feedback lines.
    ctx = _ctx()
    original = max((e.inputs["original_text"] for e in ctx.train), key=len)
    assert len(original) >= 80
    passage = " ".join(original.split()[:12]).upper().replace(" ", "  ")  # respaced, recased
    stitched = f"{passage}; True prompt: Make it formal; Similarity: 0.00"
    assert ctx.accept(stitched) is None
    assert ctx.rejected == {"echo of an example": 1}
    kept = ctx.accept(f'Say how "{original.split()[0]}" was rewritten, in one sentence.')
    assert kept is not None  # a word or two of an example is no echo
    assert ctx.rejected == {"echo of an example": 1}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"new_instruction": "State the change asked for."}', "State the change asked for."),
        ('{"instruction": "Name the tone."}', "Name the tone."),
        # Several values, or not JSON at all: taken as written.
        ('{"a": "Name the tone.", "b": "Say it."}', '{"a": "Name the tone.", "b": "Say it."}'),
        ("{Name the tone}", "{Name the tone}"),
    ],
)
def test_accept_takes_the_one_text_out_of_a_json_answer(raw, expected):
    # The 1.5B chat proposer answered gepa with such an object, which became the instruction.
    ctx = _ctx()
    template = ctx.accept(raw)
    assert template is not None and template.instruction == expected


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["Rewrite this.", "rewrite it as a poem", "Make it short."], ("Rewrite", 2)),
        (["**Refine the text", "Refine it", "Make it formal"], ("Refine", 2)),
        (["'Shorten' it", "Turn it", "shorten the text"], ("Shorten", 2)),
        (["Rewrite this.", "Make it short.", "Turn it into a poem."], ("", 0)),  # one each
        (["Rewrite"], ("", 0)),  # a single answer names nothing
        (["...", ""], ("", 0)),
    ],
)
def test_opening_word_is_the_first_word_most_answers_share(answers, expected):
    from promptopt.search._context import opening_word

    assert opening_word(answers) == expected


def test_opening_word_needs_its_share_of_the_answers():
    from promptopt.search._context import opening_word

    answers = ["Rewrite it", "Rewrite this"] + [f"Go{chr(97 + i)} x" for i in range(20)]
    assert opening_word(answers) == ("", 0)  # 2 of 22 < 10%
    assert opening_word(answers, min_share=0.05) == ("Rewrite", 2)


def test_open_answers_bases_proposals_on_the_start_with_the_answers_first_word():
    ctx = _ctx()
    note = ctx.open_answers()
    assert ctx.base == ctx.start.replace(answer_prefix="Rewrite")
    assert "'Rewrite'" in note and "of 12 training answers" in note
    made = ctx.accept("Name the change in one sentence.")
    assert made is not None and made.answer_prefix == "Rewrite"
    assert ctx.accept_prefix("Rewrite", ctx.start.replace(instruction="x")) is not None
    assert ctx.accept_prefix("Rewrite", ctx.start) is None  # the base again: a duplicate
    assert ctx.rejected["duplicate"] == 1


def test_open_answers_keeps_a_start_that_has_a_prefix_and_tasks_without_prefixes():
    ctx = _ctx()
    ctx.start = ctx.base = ctx.start.replace(answer_prefix="Make")
    assert ctx.open_answers() == "" and ctx.base.answer_prefix == "Make"
    plain = FakeSetup(budget=40, task="classification")
    other = SearchContext(task=plain.task, evaluator=plain.evaluator, proposer=plain.proposer,
                          start=plain.task.start_template(), seed=0)
    assert other.open_answers() == "" and other.base == other.start
