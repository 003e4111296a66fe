"""The evaluator: template x examples -> predictions and per-example scores.

It is the only place that runs the recovery LLM. It charges the shared budget (all
examples of an evaluation at once, or nothing), serves repeated evaluations of the
same template on the same examples from memory, and records each evaluation as a
trial in the tracker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promptopt.data import Example
from promptopt.llm import LLM
from promptopt.tasks import Task
from promptopt.template import Template
from promptopt.tracker import Tracker

PREDICTIONS_KEPT = 5  # predictions stored on each trial, for the dashboard


@dataclass(frozen=True)
class Evaluation:
    """The outcome of running one template on some examples of one split."""

    template: Template
    split: str
    example_ids: tuple[str, ...]
    predictions: tuple[str, ...]
    scores: tuple[float, ...]
    scorer: str
    parents: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """Mean score over the examples."""
        return float(np.mean(self.scores)) if self.scores else 0.0

    @property
    def n(self) -> int:
        """Number of examples."""
        return len(self.scores)


class Evaluator:
    """Runs templates on a task's examples with the recovery LLM.

    Args:
        task: The task (examples, rendering, parsing, scorer).
        llm: The recovery LLM; its budget is the run's shared budget.
        tracker: Where each evaluation is recorded (None: not recorded).
        method: Method name written on each trial.
    """

    def __init__(
        self, task: Task, llm: LLM, *, tracker: Tracker | None = None, method: str = ""
    ) -> None:
        self.task = task
        self.llm = llm
        self.tracker = tracker
        self.method = method
        self.history: list[Evaluation] = []
        self._memo: dict[tuple[str, str, tuple[str, ...]], Evaluation] = {}
        self._chat: bool | None = None

    @property
    def budget(self) -> Any:
        """The shared call budget."""
        return self.llm.budget

    def can_afford(self, n_examples: int) -> bool:
        """Whether an evaluation on ``n_examples`` new examples fits the budget."""
        return self.budget is None or self.budget.can_afford(n_examples)

    def is_cached(self, template: Template, split: str, examples: Sequence[Example]) -> bool:
        """Whether this evaluation was already done (it would cost nothing)."""
        return (template.id, split, tuple(e.id for e in examples)) in self._memo

    def evaluate(
        self,
        template: Template,
        split: str = "train",
        *,
        examples: Sequence[Example] | None = None,
        parents: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
        charge: bool = True,
    ) -> Evaluation:
        """Evaluate ``template`` on ``examples`` (default: the whole ``split``).

        Raises:
            BudgetExhausted: if the examples do not fit the budget; nothing is spent.
        """
        examples = list(self.task.examples(split) if examples is None else examples)
        key = (template.id, split, tuple(e.id for e in examples))
        if key in self._memo:
            return self._memo[key]
        if self._chat is None:
            self._chat = self.llm.is_chat
        before = self.llm.usage.as_dict()
        batch = [self.task.render(template, e, chat=self._chat) for e in examples]
        gen = self.task.generation
        raw = self.llm.complete_many(
            batch,
            temperature=0.0,
            max_tokens=gen.get("max_tokens"),
            stop=gen.get("stop"),
            charge=charge,
        )
        predictions = [self.task.parse(r, template) for r in raw]
        scores = [float(s) for s in self.task.score(predictions, examples)]
        evaluation = Evaluation(
            template=template,
            split=split,
            example_ids=key[2],
            predictions=tuple(predictions),
            scores=tuple(scores),
            scorer=self.task.scorer_name,
            parents=tuple(parents),
            meta=dict(meta or {}),
        )
        self._memo[key] = evaluation
        self.history.append(evaluation)
        if self.tracker is not None:
            self.tracker.record(
                value=evaluation.score,
                attrs={
                    "template_id": template.id,
                    "instruction": template.instruction,
                    "template": template.to_dict(),
                    "parents": list(parents),
                    "method": self.method,
                    "split": split,
                    "n_examples": len(examples),
                    "score": evaluation.score,
                    "scorer": evaluation.scorer,
                    "usage": self.llm.usage.since(before),
                    "meta": dict(meta or {}),
                    "predictions": [
                        {"id": e.id, "prediction": p, "target": e.target, "score": round(s, 4)}
                        for e, p, s in list(zip(examples, predictions, scores))[:PREDICTIONS_KEPT]
                    ],
                },
            )
        return evaluation
