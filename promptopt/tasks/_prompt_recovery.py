"""LLM prompt recovery: predict the ``rewrite_prompt`` that turned a text into its rewrite.

The Kaggle "LLM Prompt Recovery" task. A recovery LLM reads ``original_text`` and
``rewritten_text`` and, following the template, writes the instruction that produced
the rewrite; predictions are scored by sharpened cosine similarity to the truth.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from promptopt.data import Example, Splits
from promptopt.registry import tasks
from promptopt.tasks._base import Messages, Task, truncate_tokens
from promptopt.template import Template

DEFAULT_PREDICTION = "Rewrite this text in a different style."
ANSWER_CUE = "Rewrite prompt:"

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


def clean_prediction(raw: str, *, default: str = DEFAULT_PREDICTION, max_chars: int = 300) -> str:
    """Clean a recovery LLM's raw output into one instruction line.

    Strips "Sure! Here is ..." preambles, labels such as "Instruction:", wrapping
    quotes and markdown, keeps the first non-empty line, and falls back to
    ``default`` when nothing is left.
    """
    text = (raw or "").replace("\r", "\n").strip()
    for _ in range(3):  # preamble, then label, possibly nested
        before = text
        text = _PREAMBLE.sub("", text, count=1).lstrip()
        text = _LABEL.sub("", text, count=1).lstrip()
        if text == before:
            break
    line = next((ln.strip() for ln in text.split("\n") if ln.strip().strip(_QUOTES)), "")
    line = _LABEL.sub("", line, count=1).strip().strip(_QUOTES).strip()
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
    """

    input_fields: tuple[str, ...] = ("original_text", "rewritten_text")
    target_field: str = "rewrite_prompt"
    default_instruction: ClassVar[str] = (
        "Below is an original text and a rewritten version of it. Write the one-sentence "
        "instruction that was given to turn the original text into the rewritten text."
    )
    generation: ClassVar[dict[str, Any]] = {
        "max_tokens": 48,
        "stop": ["\n\n", "\nOriginal text:", "\nRewritten text:"],
    }
    description: ClassVar[str] = "Kaggle LLM Prompt Recovery: predict rewrite_prompt (SCS metric)"

    def __init__(
        self,
        splits: Splits,
        *,
        scorer: Any,
        max_text_tokens: int = 200,
        default_prediction: str = DEFAULT_PREDICTION,
    ) -> None:
        super().__init__(splits, scorer=scorer)
        self.max_text_tokens = max_text_tokens
        self.default_prediction = default_prediction

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
        demos = [dict(d) for d in template.demos]
        instruction = self._instruction(template, example)
        query = self._query(template, example)
        if not chat:
            parts = [instruction]
            for d in demos:
                parts.append(
                    f"{self._block(self._inputs(d))}\n{ANSWER_CUE} {d.get(self.target_field, '')}"
                )
            parts.append(query)
            return [{"role": "user", "content": "\n\n".join(parts)}]
        messages = [{"role": "system", "content": instruction}]
        for d in demos:
            messages.append({"role": "user", "content": self._block(self._inputs(d))})
            messages.append({"role": "assistant", "content": d.get(self.target_field, "")})
        messages.append({"role": "user", "content": query})
        return messages

    def parse(self, raw: str, template: Template) -> str:
        """Clean the output; keep the answer prefix; append the template's suffix."""
        text = raw or ""
        prefix = template.answer_prefix.strip()
        if prefix and not text.lstrip().lower().startswith(prefix.lower()):
            text = f"{prefix} {text.lstrip()}"
        prediction = clean_prediction(text, default=self.default_prediction)
        if template.suffix:
            prediction = f"{prediction} {template.suffix.strip()}"
        return prediction

    def format_example(self, example: Example, *, with_target: bool = True) -> str:
        """Truncated inputs and (optionally) the true prompt, for meta-prompts."""
        values = {k: truncate_tokens(example.inputs[k], 80) for k in self.input_fields}
        text = self._block(values)
        return f"{text}\n{ANSWER_CUE} {example.target}" if with_target else text
