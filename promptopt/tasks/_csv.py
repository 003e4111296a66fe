"""Your own task: input columns and a target column of a data file, and a metric.

    promptopt run --task csv --data capitals.csv --inputs country --target capital \\
        --metric exact --method opro

    task = make_task("csv", "capitals.csv", inputs=["country"], target="capital",
                     metric="exact")

Each row is one example; the model reads the input fields (as ``name: value`` lines,
or filled into ``{name}`` placeholders of the instruction) and answers the target.
The answer is cleaned of chatter ("Sure! Here is ...", an "Answer:" or
``<target>:`` label) and kept as its first line (``answer="line"``) or whole
(``answer="full"``), then judged by the metric (see :mod:`promptopt.scoring._metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promptopt.data import Example, Splits
from promptopt.errors import ConfigError
from promptopt.registry import tasks
from promptopt.scoring import make_metric
from promptopt.tasks._base import Messages, Task, truncate_tokens
from promptopt.tasks._prompt_recovery import first_line, strip_chatter
from promptopt.template import Template

ANSWER_MODES = ("line", "full")
MAX_TOKENS = {"line": 64, "full": 256}


def _words(field: str) -> str:
    return field.replace("_", " ").strip()


def _join(names: Sequence[str]) -> str:
    words = [_words(n) for n in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _field_list(value: Any, option: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"csv task: {option} must be a list of column names, got {value!r}")
    names = tuple(v.strip() for v in value)
    if not names or not all(names):
        raise ConfigError(
            f"csv task: give the input column(s): --inputs a,b (inputs=['a', 'b']), got {value!r}"
        )
    return names


@tasks.register("csv")
class CSVTask(Task):
    """A task from your own data file: answer the target column from the input columns.

    Args:
        splits: Train/validation/test examples.
        inputs: The input column(s), in the order the model sees them.
        target: The column to predict.
        metric: ``"exact"`` (case- and whitespace-insensitive exact match),
            ``"rouge-l"``, ``"scs"``, a registered plugin metric, a
            ``"module:function"`` string, a function ``fn(prediction, target) -> float``
            or a scorer object (see :func:`~promptopt.scoring._metrics.make_metric`).
        scorer: Embedding scorer for the ``scs`` metric (a name or an SCSScorer; the
            ``--scorer`` option); other metrics ignore it.
        answer: ``"line"``: the first line of the cleaned answer; ``"full"``: all of it.
        max_tokens: Most tokens the model may answer with (default 64 for ``"line"``,
            256 for ``"full"``).
        max_input_tokens: Each input value is cut to about this many tokens (0: no cut).
        default_prediction: The prediction when cleaning leaves nothing.
    """

    description = "your own data file: --inputs a,b --target y --metric exact|rouge-l|scs|mod:fn"

    def __init__(
        self,
        splits: Splits,
        *,
        inputs: Sequence[str] = (),
        target: str = "",
        metric: Any = "exact",
        scorer: Any = "auto",
        answer: str = "line",
        max_tokens: int | None = None,
        max_input_tokens: int = 0,
        default_prediction: str = "(no answer)",
    ) -> None:
        fields = _field_list(inputs, "inputs")
        if not isinstance(target, str) or not target.strip():
            raise ConfigError("csv task: give the target column: --target y (target='y')")
        if target.strip() in fields:
            raise ConfigError(f"csv task: the target {target!r} is also an input column")
        if answer not in ANSWER_MODES:
            raise ConfigError(f"csv task: answer must be one of {ANSWER_MODES}, got {answer!r}")
        super().__init__(splits, scorer=make_metric(metric, scorer=scorer))
        self.inputs = list(fields)
        self.target = target.strip()
        self.metric = metric
        self.answer = answer
        self.max_tokens = max_tokens
        self.max_input_tokens = max_input_tokens
        self.default_prediction = default_prediction
        self.input_fields = fields
        self.target_field = self.target
        ins, out = _join(fields), _words(self.target)
        self.default_instruction = f"Given the {ins}, write the {out}. Reply with the {out} only."
        self.description = f"given the {ins}, answer with the {out} (metric: {self.scorer.name})"
        stops = [f"\n{f}:" for f in fields] + (["\n\n"] if answer == "line" else [])
        self.generation = {"max_tokens": max_tokens or MAX_TOKENS[answer], "stop": stops}
        self.instruction_pool = (
            self.default_instruction,
            f"Read the {ins} and answer with the {out} alone, nothing else.",
            f"What is the {out}? Use the {ins}. Be brief and exact.",
            f"You are an expert. From the {ins}, give the correct {out}.",
            f"Look at the {ins} carefully, then state the {out} in as few words as possible.",
            f"Answer with the {out} for the {ins} below. Do not explain.",
        )

    def _inputs(self, fields: dict[str, str]) -> dict[str, str]:
        return {k: truncate_tokens(fields.get(k, ""), self.max_input_tokens)
                for k in self.input_fields}

    def _block(self, values: dict[str, str]) -> str:
        return "\n".join(f"{k}: {values[k]}" for k in self.input_fields)

    def _cue(self, template: Template) -> str:
        return f"{self.target_field}: {template.answer_prefix}".rstrip()

    def render(self, template: Template, example: Example, *, chat: bool) -> Messages:
        """Chat: system instruction, demos as turns; base: one completion prompt."""
        values = self._inputs(example.inputs)
        placeholders = any("{" + f + "}" in template.instruction for f in self.input_fields)
        instruction = self.fill(template.instruction, values).strip()
        query = self._cue(template)
        if not placeholders:
            query = f"{self._block(values)}\n{query}"
        return self.layout(instruction, template.demos, query, chat=chat,
                           cue=f"{self.target_field}:",
                           block=lambda d: self._block(self._inputs(d)),
                           prefix=template.answer_prefix)

    def parse(self, raw: str, template: Template) -> str:
        """Strip chatter and labels; the first line or the whole answer; append the suffix."""
        text = self.prefixed(raw, template)
        labels = (self.target_field,)
        text = strip_chatter(text, labels=labels)
        prediction = first_line(text, labels=labels) if self.answer == "line" else text.strip()
        prediction = prediction or self.default_prediction
        return self.suffixed(prediction, template)

    def format_example(self, example: Example, *, with_target: bool = True) -> str:
        """``name: value`` lines of the (truncated) inputs and, optionally, the target."""
        values = {k: truncate_tokens(example.inputs[k], 80) for k in self.input_fields}
        text = self._block(values)
        target = truncate_tokens(example.target, 80)
        return f"{text}\n{self.target_field}: {target}" if with_target else text
