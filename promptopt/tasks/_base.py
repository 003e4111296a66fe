"""The :class:`Task` base: examples and splits, rendering, parsing and scoring.

A task knows its input fields and target field, how a :class:`~promptopt.Template`
plus an example becomes LLM messages (chat) or one completion prompt (base models),
how raw model output becomes a prediction, and how predictions are scored.
"""

from __future__ import annotations

import inspect
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from promptopt.data import (
    SAMPLE_PROMPT_RECOVERY,
    Example,
    Splits,
    clip,
    load_examples,
    split_examples,
)
from promptopt.errors import ConfigError, DataError
from promptopt.scoring import object_spec
from promptopt.template import Template

if TYPE_CHECKING:
    from promptopt.llm import LLM

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


POSITIONS = ("before", "after")
"""Where a task may put the instruction (``instruction_at``)."""


def check_position(value: str) -> str:
    """``value`` if it is one of :data:`POSITIONS`, else a ConfigError naming them."""
    if value not in POSITIONS:
        raise ConfigError(
            f"instruction_at must be one of {', '.join(POSITIONS)}, not {value!r}"
        )
    return value


class Task(ABC):
    """Base class of tasks; subclasses set the class attributes and rendering.

    A task's options are its keyword-only constructor arguments (besides ``scorer``);
    it keeps each under its own name (``self.max_text_tokens = max_text_tokens``), so
    :meth:`get_params` can store them with a run and a resume can rebuild the task.
    Plugin packages register tasks in the entry-point group ``promptopt.tasks``.

    Args:
        splits: Train/validation/test examples.
        scorer: Object with ``name`` and ``score(predictions, targets)``.
    """

    name: ClassVar[str] = ""
    # Class attributes; a task whose fields are options (``csv``) sets them per instance.
    input_fields: tuple[str, ...] = ()
    target_field: str = ""
    default_instruction: str = ""
    generation: dict[str, Any] = {"max_tokens": 64}
    description: str = ""
    instruction_pool: tuple[str, ...] = ()
    """Hand-written instructions that the ``random`` and ``tpe`` methods draw on."""
    answer_prefixes: tuple[str, ...] = ("",)
    """Answer prefixes that the ``tpe`` method chooses from."""
    free_text_answers: ClassVar[bool] = True
    """Whether targets are free text, so a demo sharing a scored example's answer leaks it
    (False for a fixed label set)."""
    sample: ClassVar[str] = SAMPLE_PROMPT_RECOVERY
    """The bundled dataset (in ``promptopt/resources``) used when no data file is given."""
    instruction_at: str = "before"
    """Where the instruction goes: ``"before"`` the example's inputs or ``"after"`` them
    (see :meth:`layout`); tasks that offer the choice take it as an option."""

    def __init__(self, splits: Splits, *, scorer: Any) -> None:
        self.splits = splits
        self.scorer = scorer

    @classmethod
    def option_names(cls) -> list[str]:
        """The task's options: keyword-only constructor arguments other than ``scorer``."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "scorer"]

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` naming the first option this task does not take."""
        from promptopt.registry import tasks

        for key in options:
            if key in cls.option_names() or key == "metric":  # any task: see make_task
                continue
            valid = ", ".join(cls.option_names()) or "none"
            takers = [n for n in tasks.names()
                      if key in getattr(tasks.get(n), "option_names", list)()]
            hint = f"; task {' and '.join(takers)} takes it" if takers else ""
            raise ConfigError(
                f"task {cls.name!r} has no option {key!r} (its options: {valid}){hint}"
            )

    def get_params(self) -> dict[str, Any]:
        """The task's options with their values, JSON-ready (stored with a run's settings).

        Functions and objects (e.g. a metric) are stored as ``"module:qualname"``.
        """
        params = {}
        for name in self.option_names():
            if not hasattr(self, name):
                raise ConfigError(
                    f"task {self.name!r} does not keep its option {name!r} as self.{name}; a "
                    "task stores each option under its own name (so a run can be resumed)"
                )
            params[name] = getattr(self, name)
        return json.loads(json.dumps(params, default=object_spec))

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
        """Load a dataset file and split it with ``seed`` (see :func:`load_examples`).

        ``options`` are the task's own (:meth:`option_names`); they are checked first.
        """
        cls.check_options(options)
        task = cls(Splits([], [], []), scorer=scorer, **options)
        examples = load_examples(
            path,
            input_fields=task.input_fields,
            target_field=task.target_field,
            skip_bad_rows=skip_bad_rows,
            max_cell_chars=max_cell_chars,
        )
        try:
            task.splits = split_examples(examples, train=train, val=val, test=test, seed=seed)
        except DataError as exc:
            raise DataError(exc.reason, path=str(path)) from None
        return task

    def examples(self, split: str) -> list[Example]:
        """The examples of ``split`` ("train", "val" or "test")."""
        return self.splits[split]

    @property
    def brief(self) -> str:
        """What the model must do with an instruction, in one sentence, for the prompts that
        ask a proposer for instructions (a proposer shown examples alone misread the task)."""
        ins = ", ".join(f.replace("_", " ") for f in self.input_fields)
        return (f"The model reads the instruction and then one example's {ins}, and must "
                f"answer with its {self.target_field.replace('_', ' ')}.")

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

    def layout(
        self,
        instruction: str,
        demos: Sequence[Any],
        query: str,
        *,
        chat: bool,
        cue: str,
        block: Callable[[dict[str, str]], str],
        prefix: str = "",
    ) -> Messages:
        """An example's prompt from its parts, with the template's demos between them.

        With :attr:`instruction_at` ``"after"``, the instruction goes between the
        query's inputs and its ``cue`` instead (no system message), so that prompts for
        one example share their start whatever the instruction; a query of the cue
        alone (the instruction holds the inputs) keeps the instruction first.
        Chat: the instruction as system message, each demo as a user turn (``block`` of
        its inputs) and an assistant turn (its target), then the query; an answer
        ``prefix`` that ends the query is moved into an opened assistant turn (the last
        message), which the model continues (the embedded engine continues it; other
        providers may answer anew, and the task puts the prefix back in front). Base
        model: one completion prompt of the instruction, each demo as its block followed
        by ``cue`` and its target, and the query, separated by blank lines.
        """
        demos = [dict(d) for d in demos]
        cut = query.rfind(cue) if self.instruction_at == "after" and instruction else 0
        if cut > 0:
            # the example's inputs first, the same for every candidate instruction
            query = f"{query[:cut].rstrip()}\n\n{instruction}\n{query[cut:]}"
            instruction = ""
        if not chat:
            parts = [instruction] if instruction else []
            parts += [f"{block(d)}\n{cue} {d.get(self.target_field, '')}" for d in demos]
            parts.append(query)
            return [{"role": "user", "content": "\n\n".join(parts)}]
        messages = [{"role": "system", "content": instruction}] if instruction else []
        for d in demos:
            messages.append({"role": "user", "content": block(d)})
            messages.append({"role": "assistant", "content": d.get(self.target_field, "")})
        prefix = prefix.strip()
        if prefix and query.endswith(prefix):
            messages.append({"role": "user", "content": query[: -len(prefix)].rstrip()})
            messages.append({"role": "assistant", "content": prefix})
        else:
            messages.append({"role": "user", "content": query})
        return messages

    @abstractmethod
    def render(self, template: Template, example: Example, *, chat: bool) -> Messages:
        """LLM messages for one example (one user message holding the prompt if not chat)."""

    @staticmethod
    def prefixed(raw: str, template: Template) -> str:
        """``raw`` starting with the template's answer prefix (put back when the model's
        answer continues after it rather than repeating it)."""
        text = raw or ""
        prefix = template.answer_prefix.strip()
        if prefix and not text.lstrip().lower().startswith(prefix.lower()):
            text = f"{prefix} {text.lstrip()}"
        return text

    @staticmethod
    def suffixed(prediction: str, template: Template) -> str:
        """``prediction`` with the template's suffix (the mean-prompt string) appended."""
        return f"{prediction} {template.suffix.strip()}" if template.suffix else prediction

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

    def format_example(self, example: Example, *, with_target: bool = True) -> str:
        """A short human-readable rendering, for proposer meta-prompts."""
        fields = example.as_fields(self.target_field) if with_target else dict(example.inputs)
        return "\n".join(f"{k}: {v}" for k, v in fields.items())

    def score(
        self,
        predictions: Sequence[str],
        examples: Sequence[Example],
        template: Template | None = None,
    ) -> np.ndarray:
        """Per-example scores (higher is better).

        A scorer with ``score_examples(predictions, examples, template)`` (one that needs
        the inputs, such as the human metric) is given those; others get the targets.
        """
        score_examples = getattr(self.scorer, "score_examples", None)
        if score_examples is not None:
            return np.asarray(score_examples(list(predictions), list(examples), template))
        return np.asarray(self.scorer.score(list(predictions), [e.target for e in examples]))

    def feedback(self, prediction: str, example: Example, score: float) -> str:
        """Why ``prediction`` scored ``score`` on ``example``, in words.

        Reflective methods (``gepa``, ``dspy-gepa``, ``protegi``, ``refine``) put this
        into their proposer prompts. The scorer's own explanation comes first when it
        gives one (``feedback(prediction, target)``, e.g. a ``module:function`` metric
        that returns ``(score, feedback)``); tasks add what they know (see the
        prompt-recovery and classification tasks).
        """
        explain = getattr(self.scorer, "feedback", None)
        text = explain(prediction, example.target) if callable(explain) else None
        if text:
            return str(text)
        return f"Score {score:.2f}. The expected answer is: {example.target}"

    @property
    def scorer_name(self) -> str:
        """The scorer that judges this task's predictions."""
        return str(self.scorer.name)
