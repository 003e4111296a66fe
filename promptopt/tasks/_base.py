"""The :class:`Task` base: examples and splits, rendering, parsing and scoring.

A task knows its input fields and target field, how a :class:`~promptopt.Template`
plus an example becomes LLM messages (chat) or one completion prompt (base models),
how raw model output becomes a prediction, and how predictions are scored.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from promptopt.data import SAMPLE_PROMPT_RECOVERY, Example, Splits, load_examples, split_examples
from promptopt.template import Template

if TYPE_CHECKING:
    from promptopt.llm import LLM

Messages = list[dict[str, str]]
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def truncate_tokens(text: str, max_tokens: int) -> str:
    """Cut ``text`` to about ``max_tokens`` tokens (words and punctuation marks).

    A model-independent approximation: sub-word tokenizers give somewhat more tokens
    than this count, so budgets should leave room.
    """
    if max_tokens <= 0:
        return text
    for i, match in enumerate(_TOKEN.finditer(text)):
        if i == max_tokens:
            return text[: match.start()].rstrip() + " ..."
    return text


class Task(ABC):
    """Base class of tasks; subclasses set the class attributes and rendering.

    Args:
        splits: Train/validation/test examples.
        scorer: Object with ``name`` and ``score(predictions, targets)``.
    """

    name: ClassVar[str] = ""
    input_fields: tuple[str, ...] = ()
    """The input columns (a class attribute; a task may set its own per instance)."""
    target_field: str = ""
    """The target column (a class attribute; a task may set its own per instance)."""
    default_instruction: ClassVar[str] = ""
    generation: ClassVar[dict[str, Any]] = {"max_tokens": 64}
    description: ClassVar[str] = ""
    free_text_answers: ClassVar[bool] = True
    """Whether targets are free text, so a demo sharing a scored example's answer leaks it
    (False for a fixed label set)."""
    sample: ClassVar[str] = SAMPLE_PROMPT_RECOVERY
    """The bundled dataset (in ``promptopt/resources``) used when no data file is given."""

    def __init__(self, splits: Splits, *, scorer: Any) -> None:
        self.splits = splits
        self.scorer = scorer

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        scorer: Any,
        train: int | float = 0.5,
        val: int | float = 0.25,
        test: int | float | None = None,
        seed: int = 0,
        skip_bad_rows: bool = False,
        **options: Any,
    ) -> Task:
        """Load a dataset file and split it with ``seed`` (see :func:`load_examples`)."""
        examples = load_examples(
            path,
            input_fields=cls.input_fields,
            target_field=cls.target_field,
            skip_bad_rows=skip_bad_rows,
        )
        splits = split_examples(examples, train=train, val=val, test=test, seed=seed)
        return cls(splits, scorer=scorer, **options)

    def examples(self, split: str) -> list[Example]:
        """The examples of ``split`` ("train", "val" or "test")."""
        return self.splits[split]

    def start_template(self) -> Template:
        """The default starting template."""
        return Template(instruction=self.default_instruction)

    def validate_instruction(self, text: str) -> str | None:
        """Why an instruction is unusable for this task, or None if it is fine."""
        if not text or not text.strip():
            return "empty instruction"
        names = set(_PLACEHOLDER.findall(text))
        unknown = names - set(self.input_fields)
        if unknown:
            avail = ", ".join("{" + f + "}" for f in self.input_fields)
            return f"unknown placeholder(s) {sorted(unknown)}; available: {avail}"
        if names and names != set(self.input_fields):
            missing = sorted(set(self.input_fields) - names)
            return f"uses placeholders but not {missing}"
        return None

    def fill(self, text: str, values: dict[str, str]) -> str:
        """Substitute ``{field}`` placeholders in one pass (user text is never re-scanned)."""
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    @abstractmethod
    def render(self, template: Template, example: Example, *, chat: bool) -> Messages:
        """LLM messages for one example (one user message holding the prompt if not chat)."""

    @abstractmethod
    def parse(self, raw: str, template: Template) -> str:
        """Turn a raw model output into a prediction (never empty)."""

    def predict(
        self, llm: LLM, template: Template, examples: Sequence[Example], *, charge: bool = True
    ) -> list[str]:
        """Query ``llm`` for one prediction per example (the evaluator's only LLM use).

        The default renders each example, generates at temperature 0 with
        :attr:`generation`'s settings and :meth:`parse`\ s the output; a task that
        queries the model otherwise (e.g. label log-probabilities) overrides it.

        Raises:
            BudgetExhausted: if the examples do not fit the budget (nothing is spent).
        """
        chat = llm.is_chat
        raw = llm.complete_many(
            [self.render(template, e, chat=chat) for e in examples],
            temperature=0.0,
            max_tokens=self.generation.get("max_tokens"),
            stop=self.generation.get("stop"),
            charge=charge,
        )
        return [self.parse(r, template) for r in raw]

    def metrics(self, predictions: Sequence[str], examples: Sequence[Example]) -> dict[str, float]:
        """Task metrics of an evaluation besides its mean score (none by default)."""
        return {}

    def answer_text(self, prediction: str) -> str:
        """The answer a prediction stands for, as a few-shot demo shows it (default: itself)."""
        return prediction

    def instruction_pool(self) -> tuple[str, ...]:
        """Hand-written instructions for ``random`` and ``tpe`` (empty: their own pool)."""
        return ()

    def answer_prefix_pool(self) -> tuple[str, ...]:
        """Answer prefixes ``tpe`` chooses from (empty: its prompt-recovery ones)."""
        return ()

    def format_example(self, example: Example, *, with_target: bool = True) -> str:
        """A short human-readable rendering, for proposer meta-prompts."""
        fields = example.as_fields(self.target_field) if with_target else dict(example.inputs)
        return "\n".join(f"{k}: {v}" for k, v in fields.items())

    def score(self, predictions: Sequence[str], examples: Sequence[Example]) -> np.ndarray:
        """Per-example scores (higher is better)."""
        return np.asarray(self.scorer.score(list(predictions), [e.target for e in examples]))

    @property
    def scorer_name(self) -> str:
        """The scorer that judges this task's predictions."""
        return str(self.scorer.name)
