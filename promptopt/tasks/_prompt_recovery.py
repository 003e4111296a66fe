"""LLM prompt recovery: predict the ``rewrite_prompt`` that turned a text into its rewrite.

The Kaggle "LLM Prompt Recovery" task. A recovery LLM reads ``original_text`` and
``rewritten_text`` and, following the template, writes the instruction that produced
the rewrite; predictions are scored by sharpened cosine similarity to the truth.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from promptopt.data import Example, Splits
from promptopt.registry import tasks
from promptopt.tasks._base import Messages, Task, check_position, truncate_tokens
from promptopt.template import Template

DEFAULT_PREDICTION = "Rewrite this text in a different style."
ANSWER_CUE = "Rewrite prompt:"

INSTRUCTION_POOL: tuple[str, ...] = (
    "Read the original text and its rewritten version, then state the instruction that "
    "produced the rewrite.",
    "What prompt was used to rewrite the original text into the rewritten text? Answer with "
    "the prompt only.",
    "Compare the two texts. Write the rewriting instruction in one short sentence that starts "
    "with a verb.",
    "Guess the request a user gave an AI assistant to turn the first text into the second. "
    "Reply with the request only.",
    "Identify how the style, tone, format or length changed between the texts and write the "
    "instruction that asks for that change.",
    "You are an expert at reverse-engineering prompts. Give the single instruction that "
    "transformed the original text into the rewritten text.",
    "Describe, as an imperative sentence such as 'Rewrite this as a poem.', the change made "
    "to the text.",
    "Name the rewrite instruction. Be brief and general, e.g. 'Make this text more formal.'",
)
"""Hand-written instructions for the prompt-recovery task (``random`` and ``tpe`` draw on them)."""

ANSWER_PREFIXES: tuple[str, ...] = ("", "Rewrite", "Rewrite this text", "Convert this text into")
"""Answer prefixes for the prompt-recovery task (``tpe`` chooses from them)."""

AFTER_INSTRUCTION = (
    "Above is an original text and a rewritten version of it. Write the one-sentence "
    "instruction that was given to turn the original text into the rewritten text."
)
"""The starting instruction when it follows the texts (``instruction_at="after"``)."""
AFTER_BRIEF = (
    "The model reads an original text and a rewritten version of it, then the "
    "instruction, and must answer with the rewrite prompt: the instruction a user gave to "
    "turn the original text into the rewritten text (not a rewrite or a summary of the text)."
)

_LABEL = re.compile(
    r"^\s*(?:\*\*|__)?\s*(?:the\s+)?(?:rewrite\s+prompt|recovered\s+prompt|prompt|instruction|"
    r"rewrite\s+instruction|answer|output|response)\s*(?:was)?\s*(?:\*\*|__)?\s*[:\-]\s*(?:\*\*|__)?",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok|absolutely|here(?:'s| is| are)|below is|"
    r"the (?:prompt|instruction) (?:is|was))\b[^:\n]*?(?::|[.!](?=\s|$)|(?=\n))\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’«»*_ "
_BARE_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|here(?:'s| is| are)?)\W*$", re.IGNORECASE
)


_CLOSING = re.compile(
    r"\n\s*\n\s*(?:\(?note:|i hope (?:this|that|you)|hope this|let me know|feel free|"
    r"please let me know|is there anything|would you like|if you(?:'d| would) like)[^\n]*\s*$",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
STOPWORDS = frozenset(
    "a an the this that these those it its to of in on at by for with from into as and or "
    "but so than then be is are was were been being do does did have has had not no it's "
    "your you yours make made text please more less very into about".split()
)


def content_words(text: str) -> list[str]:
    """The content words of ``text`` (lowercase, no stopwords), first occurrence order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in STOPWORDS and len(word) > 2:
            seen.setdefault(word, None)
    return list(seen)


_PAIRS = {'"': '"', "“": "”", "'": "'", "«": "»", "`": "`"}


@functools.lru_cache(maxsize=64)
def label_pattern(labels: tuple[str, ...] = ()) -> re.Pattern[str]:
    """The answer-label regex (``"Instruction:"``, ``"**Answer** -"``...), plus ``labels``
    (e.g. a target field name; ``_`` in a label also matches a space)."""
    if not labels:
        return _LABEL
    extra = "|".join(re.escape(label).replace("_", r"[_\s]") for label in labels)
    return re.compile(_LABEL.pattern.replace(r"(?:rewrite\s+prompt|", f"(?:{extra}|", 1),
                      re.IGNORECASE)


def strip_chatter(raw: str, *, labels: tuple[str, ...] | re.Pattern[str] = ()) -> str:
    """Strip an assistant's chatter around its answer, keeping the answer's lines.

    Removes "Sure! Here is ...:" preambles and leading answer labels ("Instruction:",
    "Answer:", ... plus ``labels``: extra label names, or a regex that replaces the
    default labels), possibly nested, a closing paragraph such as "I hope this helps!"
    or "Let me know if ...", and one pair of quotes wrapping the whole answer.
    Prediction cleaning (:func:`clean_prediction`), the csv task and generated
    rewrites (:mod:`promptopt.datagen._generate`) share it.
    """
    text = (raw or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    label = labels if isinstance(labels, re.Pattern) else label_pattern(tuple(labels))
    for _ in range(3):  # preamble, then label, possibly nested
        before = text
        text = _PREAMBLE.sub("", text, count=1).lstrip()
        text = label.sub("", text, count=1).lstrip()
        if text == before:
            break
    text = _CLOSING.sub("", text).rstrip()
    close = _PAIRS.get(text[:1])
    if close and len(text) > 1 and text.endswith(close) and close not in text[1:-1]:
        text = text[1:-1].strip()
    return text


def first_line(text: str, *, labels: tuple[str, ...] = ()) -> str:
    """The first line of ``text`` holding more than quotes, without a label or wrapping
    quotes and markdown emphasis."""
    line = next((ln.strip() for ln in text.split("\n") if ln.strip().strip(_QUOTES)), "")
    return label_pattern(labels).sub("", line, count=1).strip().strip(_QUOTES).strip()


def clean_prediction(raw: str, *, default: str = DEFAULT_PREDICTION, max_chars: int = 300) -> str:
    """Clean a recovery LLM's raw output into one instruction line.

    Strips "Sure! Here is ..." preambles, labels such as "Instruction:", wrapping
    quotes and markdown (:func:`strip_chatter`), keeps the first non-empty line, and
    falls back to ``default`` when nothing is left.
    """
    line = first_line(strip_chatter(raw))
    if len(line) > max_chars:
        cut = line[:max_chars]
        line = cut[: cut.rfind(" ")] if " " in cut else cut
    return line if line and not _BARE_PREAMBLE.match(line) else default


@tasks.register("prompt-recovery")
class PromptRecoveryTask(Task):
    """Recover the rewrite prompt from an original text and its rewrite.

    Args:
        splits: Train/validation/test examples.
        scorer: The SCS scorer.
        max_text_tokens: Each input text is cut to about this many tokens.
        default_prediction: Used whenever cleaning leaves nothing.
        instruction_at: ``"before"`` the texts (the instruction first) or ``"after"``
            them (in the same user turn for a chat model), so that every candidate's
            prompt for one example starts with the same tokens and the embedded engine
            restores their saved state (:mod:`promptopt.llm._states`); the starting
            instruction then says "Above" rather than "Below".
    """

    input_fields: tuple[str, ...] = ("original_text", "rewritten_text")
    target_field: str = "rewrite_prompt"
    default_instruction: str = (
        "Below is an original text and a rewritten version of it. Write the one-sentence "
        "instruction that was given to turn the original text into the rewritten text."
    )
    generation: dict[str, Any] = {
        "max_tokens": 48,
        "stop": ["\n\n", "\nOriginal text:", "\nRewritten text:"],
    }
    description: str = "Kaggle LLM Prompt Recovery: predict rewrite_prompt (SCS metric)"
    instruction_pool: tuple[str, ...] = INSTRUCTION_POOL
    answer_prefixes: tuple[str, ...] = ANSWER_PREFIXES

    brief: str = (  # type: ignore[assignment]
        "The model reads the instruction, then an original text and a rewritten version of "
        "it, and must answer with the rewrite prompt: the instruction a user gave to turn "
        "the original text into the rewritten text (not a rewrite or a summary of the text)."
    )

    def __init__(
        self,
        splits: Splits,
        *,
        scorer: Any,
        max_text_tokens: int = 200,
        default_prediction: str = DEFAULT_PREDICTION,
        instruction_at: str = "before",
    ) -> None:
        super().__init__(splits, scorer=scorer)
        self.max_text_tokens = max_text_tokens
        self.default_prediction = default_prediction
        self.instruction_at = check_position(instruction_at)
        if instruction_at == "after":
            self.default_instruction = AFTER_INSTRUCTION
            self.brief = AFTER_BRIEF

    def _inputs(self, fields: dict[str, str]) -> dict[str, str]:
        return {k: truncate_tokens(fields[k], self.max_text_tokens) for k in self.input_fields}

    def _block(self, values: dict[str, str]) -> str:
        return (
            f"Original text: {values['original_text']}\n"
            f"Rewritten text: {values['rewritten_text']}"
        )

    def _query(self, template: Template, example: Example) -> str:
        values = self._inputs(example.inputs)
        if "{original_text}" in template.instruction:
            return f"{ANSWER_CUE} {template.answer_prefix}".rstrip()
        return f"{self._block(values)}\n{ANSWER_CUE} {template.answer_prefix}".rstrip()

    def _instruction(self, template: Template, example: Example) -> str:
        return self.fill(template.instruction, self._inputs(example.inputs)).strip()

    def render(self, template: Template, example: Example, *, chat: bool) -> Messages:
        """Chat: system instruction, demos as turns; base: one completion prompt."""
        return self.layout(
            self._instruction(template, example), template.demos,
            self._query(template, example), chat=chat, cue=ANSWER_CUE,
            block=lambda d: self._block(self._inputs(d)), prefix=template.answer_prefix,
        )

    def parse(self, raw: str, template: Template) -> str:
        """Clean the output; keep the answer prefix; append the template's suffix."""
        text = self.prefixed(raw, template)
        prediction = clean_prediction(text, default=self.default_prediction)
        return self.suffixed(prediction, template)

    def feedback(self, prediction: str, example: Example, score: float) -> str:
        """The prediction, the true prompt, their similarity, and the true prompt's content
        words the prediction missed (for reflective methods' prompts)."""
        said = set(content_words(prediction))
        missed = [w for w in content_words(example.target) if w not in said]
        lines = [
            f"Predicted prompt: {prediction}",
            f"True prompt: {example.target}",
            f"Similarity: {score:.2f}",
            "Content words of the true prompt the prediction missed: "
            + (", ".join(missed) if missed else "none"),
        ]
        return "\n".join(lines)

    def format_example(self, example: Example, *, with_target: bool = True) -> str:
        """Truncated inputs and (optionally) the true prompt, for meta-prompts."""
        values = {k: truncate_tokens(example.inputs[k], 80) for k in self.input_fields}
        text = self._block(values)
        return f"{text}\n{ANSWER_CUE} {example.target}" if with_target else text
