"""The optimizer base: one required method, and the shared machinery around it.

An optimizer is a search strategy. :meth:`Optimizer.optimize` validates settings,
sets aside budget for the final choice on the validation split, runs the subclass's
:meth:`Optimizer.search` (which proposes candidates through a :class:`SearchContext`
and evaluates them on the train split), then scores the best few candidates and the
starting template on the validation split and returns the winner. Optimizers never
write storage; the evaluator records every evaluation. :class:`SearchContext` and the
proposal reading live in :mod:`promptopt.optimizers._context`.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from promptopt.errors import BudgetExhausted, ConfigError
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.llm import LLM, Budget
from promptopt.optimizers._context import History, SearchContext
from promptopt.tasks import Task
from promptopt.template import Template


@dataclass
class OptimizeResult:
    """What an optimizer returns."""

    template: Template
    val_score: float
    start_template: Template
    start_val_score: float
    evaluations: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    stopped: str = "finished"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored on the study)."""
        return {
            "template": self.template.to_dict(),
            "template_id": self.template.id,
            "val_score": self.val_score,
            "start_template": self.start_template.to_dict(),
            "start_val_score": self.start_val_score,
            "evaluations": self.evaluations,
            "rejected": dict(self.rejected),
            "stopped": self.stopped,
            "notes": list(self.notes),
        }


class Optimizer(ABC):
    """Base class of search strategies.

    Subclasses take keyword-only settings in ``__init__`` and store them unchanged
    under the same names (no validation or I/O there), validate them in
    :meth:`validate`, and implement :meth:`search`.
    """

    name: ClassVar[str] = ""
    final_candidates: int = 3
    """How many of the best train candidates are scored on the validation split."""

    def get_params(self) -> dict[str, Any]:
        """The constructor settings, by name (JSON-ready)."""
        sig = inspect.signature(type(self).__init__)
        params = {
            p.name: getattr(self, p.name)
            for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        return json.loads(json.dumps(params, default=str))

    def validate(self) -> None:
        """Check settings; raise :class:`ConfigError` naming the bad one."""
        return None

    @classmethod
    def unsupported(cls, task: Task) -> str | None:
        """Why this method cannot run on ``task`` (e.g. its metric), or None if it can."""
        return None

    def _check(self, condition: bool, setting: str, requirement: str) -> None:
        if not condition:
            raise ConfigError(
                f"{self.name}: setting {setting}={getattr(self, setting)!r} is invalid: "
                f"{requirement}"
            )

    @abstractmethod
    def search(self, ctx: SearchContext) -> None:
        """Propose and evaluate candidates on the train split until done.

        Raising :class:`BudgetExhausted` (as the evaluator and proposer do) ends the
        search cleanly; everything evaluated so far still counts.
        """

    def optimize(
        self,
        task: Task,
        evaluator: Evaluator,
        proposer: LLM,
        *,
        start: Template | None = None,
        seed: int = 0,
        shared: History | None = None,
        batch_seed: int | None = None,
    ) -> OptimizeResult:
        """Run the search, then choose the final template on the validation split.

        ``shared`` and ``batch_seed`` are for a worker of a study that several run
        (see :class:`SearchContext`).
        """
        self.validate()
        problem = self.unsupported(task)
        if problem:
            raise ConfigError(f"method {self.name} cannot run on task {task.name}: {problem}")
        start = start or task.start_template()
        problem = task.validate_instruction(start.instruction)
        if problem:
            raise ConfigError(f"the starting template is unusable for {task.name}: {problem}")
        n_val = len(task.examples("val"))
        if not evaluator.can_afford(n_val):
            raise ConfigError(
                f"budget too small: scoring the starting template on the validation split "
                f"alone needs {n_val} LLM calls"
            )
        ctx = SearchContext(
            task=task, evaluator=evaluator, proposer=proposer, start=start, seed=seed,
            shared=shared, batch_seed=batch_seed,
        )
        first_eval = len(evaluator.history)
        budget = evaluator.budget
        held = budget.reserve(self._final_reserve(n_val, budget)) if budget is not None else 0
        stopped = "finished"
        try:
            self.search(ctx)
        except BudgetExhausted:
            stopped = "budget"
        finally:
            if budget is not None:
                budget.release(held)
        result = self.select_final(ctx, evaluator.history[first_eval:])
        result.stopped = stopped
        return result

    def _final_reserve(self, n_val: int, budget: Budget) -> int:
        """Validation calls held back for the final choice: whole validation
        evaluations of the start and up to :attr:`final_candidates` finalists, about
        half of what is left, but always the start and one finalist when they fit (a
        reserve for the start alone would return the start whatever the search found)."""
        evaluations = self.final_candidates + 1
        if budget.limit is not None:
            left = int(budget.remaining)
            evaluations = min(evaluations, max(2, left // 2 // n_val), left // n_val)
        return max(1, evaluations) * n_val

    def select_final(self, ctx: SearchContext, evaluations: Sequence[Evaluation]) -> OptimizeResult:
        """Score the starting template and the best train candidates on validation.

        Candidates are ranked by their mean per-example train score over all their
        successful train evaluations; the validation winner is returned (ties keep the
        start). A failed evaluation never counts: a finalist that fails on validation is
        passed over, and the start failing there stops the run (``EvaluationFailed``).
        """
        pooled: dict[str, list[float]] = {}
        templates: dict[str, Template] = {}
        for ev in evaluations:
            if ev.split == "train" and not ev.failed:
                pooled.setdefault(ev.template.id, []).extend(ev.scores)
                templates[ev.template.id] = ev.template
        ranked = sorted(pooled, key=lambda t: -sum(pooled[t]) / len(pooled[t]))
        finalists = [ctx.start] + [
            templates[t] for t in ranked if t != ctx.start.id
        ][: self.final_candidates]
        val = ctx.evaluator
        start_eval = val.evaluate(ctx.start, "val", meta={"role": "start"})
        start_eval.require("the starting template on the validation split")
        best = start_eval
        for template in finalists[1:]:
            try:
                ev = val.evaluate(template, "val", meta={"role": "finalist"})
            except BudgetExhausted:
                break
            if not ev.failed and ev.score > best.score:
                best = ev
        notes = []
        accepted = len(pooled) - (1 if ctx.start.id in pooled else 0)
        if ctx.proposed and accepted == 0:
            notes.append(
                f"the proposer returned nothing usable ({ctx.proposed} proposals, rejected: "
                f"{dict(ctx.rejected)}); the result is the starting template"
            )
        return OptimizeResult(
            template=best.template,
            val_score=best.score,
            start_template=ctx.start,
            start_val_score=start_eval.score,
            evaluations=len(evaluations),
            rejected=dict(ctx.rejected),
            notes=notes,
        )
