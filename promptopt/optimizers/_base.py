"""The optimizer base: one required method, and the shared machinery around it.

An optimizer is a search strategy. :meth:`Optimizer.optimize` validates settings,
sets aside budget for the final choice on the validation split, runs the subclass's
:meth:`Optimizer.search` (which proposes candidates through a :class:`SearchContext`
and evaluates them on the train split), then scores the best few candidates and the
starting template on the validation split and returns the winner. Optimizers never
write storage; the evaluator records every evaluation. :class:`SearchContext` and the
proposal reading live in :mod:`promptopt.search._context`.
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
from promptopt.scoring import GainInterval
from promptopt.search import Choice, History, SearchContext, Selection, choose_final, why_start
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
    val_gain: GainInterval | None = None
    """The returned template's validation gain over the start, with its interval."""
    why: str = ""
    """Why the result is the starting template (one line), or ``""``."""
    choice: Choice | None = field(default=None, repr=False, compare=False)
    """The final choice's details (not stored)."""

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
            "val_gain": self.val_gain.to_dict() if self.val_gain else None,
            "why": self.why,
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
    explains_start: ClassVar[bool] = True
    """Whether a result that is the start gets a line saying why (not for ``identity``)."""
    opening: bool = False
    """Whether proposals build on the start opened with the word most training answers
    begin with (:meth:`SearchContext.open_answers`); the proposing methods' ``opening``
    setting."""
    legacy_settings: ClassVar[dict[str, Any]] = {}
    """Settings added after the method was first released, each with the value that gives
    the earlier behaviour: a stored run whose settings lack one resumes with that value
    (:meth:`RunSpec.from_settings <promptopt.runs.RunSpec.from_settings>`), so it replays
    the trials it recorded."""

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
        selection: Selection | None = None,
    ) -> OptimizeResult:
        """Run the search, then choose the final template on the validation split.

        ``shared`` and ``batch_seed`` are for a worker of a study that several run
        (see :class:`SearchContext`); ``selection`` holds the final choice's settings
        (default: :class:`Selection`'s defaults).
        """
        selection = selection or Selection()
        selection.validate()
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
        opened = ctx.open_answers() if self.opening else ""
        first_eval = len(evaluator.history)
        ctx.selection = selection
        evaluator.trial_extras = lambda: {"rejected_so_far": dict(ctx.rejected)}
        budget = evaluator.budget
        held = (budget.reserve(self._final_reserve(n_val, budget, selection))
                if budget is not None else 0)
        stopped = "finished"
        try:
            self.search(ctx)
        except BudgetExhausted:
            stopped = "budget"
        finally:
            if budget is not None:
                budget.release(held)
        result = self.select_final(ctx, evaluator.history[first_eval:], selection)
        result.stopped = stopped
        if opened:
            result.notes.insert(0, opened)
        if self.explains_start and result.template.id == start.id:
            result.why = why_start(ctx, result.choice, evaluator.history[first_eval:])
            result.notes.insert(0, result.why)
        return result

    def _final_reserve(self, n_val: int, budget: Budget, selection: Selection) -> int:
        """Validation calls held back for the final choice (:meth:`Selection.reserve`):
        the start and up to :attr:`final_candidates` finalists, within
        ``selection.reserve_share`` (default half) of what is left."""
        left = None if budget.limit is None else int(budget.remaining)
        return selection.reserve(self.final_candidates, n_val, left)

    def choose(
        self,
        ctx: SearchContext,
        finalists: Sequence[Template],
        selection: Selection,
        *,
        finalist_meta: dict[str, Any] | None = None,
        parents: Sequence[str] = (),
    ) -> Choice:
        """Score the start and ``finalists`` on validation; keep the start unless a
        finalist's gain is credible (:func:`~promptopt.search._selection.choose_final`)."""
        return choose_final(ctx.evaluator, ctx.start, finalists, ctx.val, selection,
                            seed=ctx.seed, finalist_meta=finalist_meta, parents=parents,
                            compared=self.compared_before())

    def compared_before(self) -> int:
        """How many templates validation compared to pick the finalists before the final
        choice (0: none; ``auto``'s contestants compare their own)."""
        return 0

    def select_final(
        self,
        ctx: SearchContext,
        evaluations: Sequence[Evaluation],
        selection: Selection | None = None,
    ) -> OptimizeResult:
        """Score the starting template and the best train candidates on validation.

        Candidates are ranked by their mean per-example train score over all their
        successful train evaluations; the best :attr:`final_candidates` are the
        finalists. One of them replaces the start only when its validation gain is
        credible (:meth:`choose`). A failed evaluation never counts: a finalist that
        fails on validation is passed over, and the start failing there stops the run
        (``EvaluationFailed``).
        """
        pooled: dict[str, list[float]] = {}
        templates: dict[str, Template] = {}
        for ev in evaluations:
            if ev.split == "train" and not ev.failed:
                pooled.setdefault(ev.template.id, []).extend(ev.scores)
                templates[ev.template.id] = ev.template
        ranked = sorted(pooled, key=lambda t: -sum(pooled[t]) / len(pooled[t]))
        finalists = [templates[t] for t in ranked if t != ctx.start.id][: self.final_candidates]
        choice = self.choose(ctx, finalists, selection or Selection())
        return OptimizeResult(
            template=choice.template,
            val_score=choice.val_score,
            start_template=ctx.start,
            start_val_score=choice.start_val_score,
            evaluations=len(evaluations),
            rejected=dict(ctx.rejected),
            notes=choice.notes,
            val_gain=choice.val_gain,
            choice=choice,
        )
