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
from typing import Any, ClassVar

import numpy as np

from promptopt._textfile import clip
from promptopt.data import Example, Splits, load_examples, split_examples
from promptopt.errors import DataError
from promptopt.template import Template

Messages = list[dict[str, str]]
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NEAR_PLACEHOLDER = re.compile(r"\{\s*([A-Za-z_][\w \t-]*?)\s*(?:[!:][^{}\n]*)?\}")
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
    input_fields: ClassVar[tuple[str, ...]] = ()
    target_field: ClassVar[str] = ""
    default_instruction: ClassVar[str] = ""
    generation: ClassVar[dict[str, Any]] = {"max_tokens": 64}
    description: ClassVar[str] = ""

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
        max_cell_chars: int | None = None,
        **options: Any,
    ) -> Task:
        """Load a dataset file and split it with ``seed`` (see :func:`load_examples`)."""
        examples = load_examples(
            path,
            input_fields=cls.input_fields,
            target_field=cls.target_field,
            skip_bad_rows=skip_bad_rows,
            max_cell_chars=max_cell_chars,
        )
        try:
            splits = split_examples(examples, train=train, val=val, test=test, seed=seed)
        except DataError as exc:
            raise DataError(exc.reason, path=str(path)) from None
        return cls(splits, scorer=scorer, **options)

    def examples(self, split: str) -> list[Example]:
        """The examples of ``split`` ("train", "val" or "test")."""
        return self.splits[split]

    def start_template(self) -> Template:
        """The default starting template."""
        return Template(instruction=self.default_instruction)

    def validate_instruction(self, text: str) -> str | None:
        """Why an instruction is unusable for this task, or None if it is fine.

        Placeholders are ``{field}`` for the task's input fields: all of them or
        none (then the inputs follow the instruction). Unknown names and near misses
        such as ``{ original_text }`` or ``{original_text!r}`` are refused.
        """
        if not text or not text.strip():
            return "empty instruction"
        for match in _NEAR_PLACEHOLDER.finditer(text):
            name = re.sub(r"[\s-]+", "_", match.group(1).strip()).lower()
            if name in self.input_fields and match.group(0) != "{" + name + "}":
                return f"malformed placeholder {match.group(0)!r}; write {{{name}}}"
        names = set(_PLACEHOLDER.findall(text))
        unknown = names - set(self.input_fields)
        if unknown:
            avail = ", ".join("{" + f + "}" for f in self.input_fields)
            return f"unknown placeholder(s) {sorted(unknown)}; available: {avail}"
        if names and names != set(self.input_fields):
            missing = sorted(set(self.input_fields) - names)
            return f"uses placeholders but not {missing}"
        return None

    def check_template(self, template: Template, *, source: str | None = None) -> Template:
        """Return ``template`` if this task can render it, else raise :class:`DataError`.

        Checks the instruction's placeholders (:meth:`validate_instruction`) and that
        every demo has exactly the task's input fields and target field.

        Args:
            template: The template to check.
            source: The template file, named in errors (None for a literal or object).
        """
        problem = self.validate_instruction(template.instruction)
        if problem:
            raise DataError(f"unusable for task {self.name!r}: {problem}", path=source,
                            field="instruction")
        fields = [*self.input_fields, self.target_field]
        for i, demo in enumerate(template.demos, start=1):
            keys = [k for k, _ in demo]
            missing = [f for f in fields if f not in keys]
            extra = [k for k in keys if k not in fields]
            if missing or extra:
                raise DataError(
                    f"a demo needs exactly the fields {fields}; "
                    + "; ".join(p for p in (missing and f"missing {missing}",
                                            extra and f"unknown {clip(extra)}") if p),
                    path=source, row=i, field="demos",
                )
            empty = [k for k, v in demo if not v.strip()]
            if empty:
                raise DataError(f"empty demo field {empty[0]!r}", path=source, row=i,
                                field="demos")
        return template

    def load_template(self, spec: Template | str | None) -> Template:
        """The template ``spec`` names, checked for this task (None: the default).

        Args:
            spec: A :class:`Template`, a ``.json``/``.txt`` file, or the instruction.
        """
        if spec is None:
            return self.start_template()
        if isinstance(spec, Template):
            return self.check_template(spec)
        template = Template.load(spec)
        try:
            is_file = Path(spec).is_file()
        except (OSError, ValueError):
            is_file = False
        return self.check_template(template, source=spec if is_file else None)

    def fill(self, text: str, values: dict[str, str]) -> str:
        """Substitute ``{field}`` placeholders in one pass (user text is never re-scanned)."""
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    @abstractmethod
    def render(self, template: Template, example: Example, *, chat: bool) -> Messages:
        """LLM messages for one example (one user message holding the prompt if not chat)."""

    @abstractmethod
    def parse(self, raw: str, template: Template) -> str:
        """Turn a raw model output into a prediction (never empty)."""

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
