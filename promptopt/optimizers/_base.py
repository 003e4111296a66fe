"""The optimizer base: one required method, and the shared machinery around it.

An optimizer is a search strategy. :meth:`Optimizer.optimize` validates settings,
sets aside budget for the final choice on the validation split, runs the subclass's
:meth:`Optimizer.search` (which proposes candidates through a :class:`SearchContext`
and evaluates them on the train split), then scores the best few candidates and the
starting template on the validation split and returns the winner. Optimizers never
write storage; the evaluator records every evaluation.
"""

from __future__ import annotations

import inspect
import json
import random
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from promptopt.data import Example
from promptopt.errors import BudgetExhausted, ConfigError
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.llm import LLM
from promptopt.tasks import Task
from promptopt.template import Template

MAX_INSTRUCTION_CHARS = 1500
PROPOSER_MAX_TOKENS = 160


def extract_tagged(text: str, tag: str = "INS", *, lenient: bool = True) -> list[str]:
    """Proposals between ``<TAG>`` and ``</TAG>`` (the papers' output format).

    With ``lenient``, an unclosed ``<TAG>`` is read to the end of its line, and an
    answer with no tags at all yields its first non-empty line: weak proposers often
    drop the closing tag.
    """
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL | re.IGNORECASE)
    if found or not lenient:
        return [f.strip() for f in found]
    opened = re.search(rf"<{tag}>(.*)", text, flags=re.IGNORECASE)
    if opened:
        return [opened.group(1).split("\n", 1)[0].strip()]
    line = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
    return [line] if line else []


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


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


class SearchContext:
    """What a search strategy works with: data, evaluator, proposer, seeded RNG.

    It also owns the proposal bookkeeping every method shares: parsing tagged
    proposals, rejecting bad ones (counted, never evaluated), and deterministic
    seeds for sampled proposer calls.
    """

    def __init__(
        self,
        *,
        task: Task,
        evaluator: Evaluator,
        proposer: LLM,
        start: Template,
        seed: int,
        max_instruction_chars: int = MAX_INSTRUCTION_CHARS,
    ) -> None:
        self.task = task
        self.evaluator = evaluator
        self.proposer = proposer
        self.start = start
        self.seed = seed
        self.rng = random.Random(seed)
        self.max_instruction_chars = max_instruction_chars
        self.rejected: Counter[str] = Counter()
        self.proposed = 0
        self._seen: set[str] = {_normalize(start.instruction)}
        self._proposal_calls = 0

    @property
    def train(self) -> list[Example]:
        """The train split."""
        return self.task.examples("train")

    @property
    def val(self) -> list[Example]:
        """The validation split."""
        return self.task.examples("val")

    def minibatch(self, size: int) -> list[Example]:
        """A seeded random sample of the train split (all of it if smaller)."""
        train = self.train
        return list(train) if size >= len(train) else self.rng.sample(train, size)

    def evaluate(
        self,
        template: Template,
        examples: Sequence[Example] | None = None,
        *,
        parents: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
    ) -> Evaluation:
        """Evaluate on ``examples`` (default: the whole train split); may raise BudgetExhausted."""
        return self.evaluator.evaluate(
            template, "train", examples=examples, parents=parents, meta=meta
        )

    def can_afford(self, n_calls: int) -> bool:
        """Whether ``n_calls`` more LLM requests fit the budget."""
        return self.evaluator.can_afford(n_calls)

    def propose(
        self,
        prompt: str,
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = PROPOSER_MAX_TOKENS,
    ) -> list[str]:
        """Ask the proposer ``n`` times (seeded samples); returns the raw answers."""
        seeds = []
        for _ in range(n):
            self._proposal_calls += 1
            seeds.append(self.seed * 1_000_003 + self._proposal_calls)
        messages = [[{"role": "user", "content": prompt}]] * n
        return self.proposer.complete_many(
            messages, temperature=temperature, max_tokens=max_tokens, seeds=seeds
        )

    def accept(self, instruction: str, base: Template | None = None) -> Template | None:
        """Turn a proposed instruction into a template, or count why it is rejected.

        Rejected: empty, absurdly long, a duplicate of anything seen in this run, or
        unusable for the task (e.g. broken placeholders). ``base`` supplies the
        demos, prefix and suffix (default: the starting template).
        """
        self.proposed += 1
        text = (instruction or "").strip().strip("\"'`").strip()
        reason = None
        if not text:
            reason = "empty"
        elif len(text) > self.max_instruction_chars:
            reason = "too long"
        elif _normalize(text) in self._seen:
            reason = "duplicate"
        else:
            problem = self.task.validate_instruction(text)
            if problem:
                reason = "invalid for task"
        if reason:
            self.rejected[reason] += 1
            return None
        self._seen.add(_normalize(text))
        return (base or self.start).replace(instruction=text)

    def accept_all(
        self, raw_answers: Sequence[str], base: Template | None = None, tag: str = "INS"
    ) -> list[Template]:
        """Parse tagged proposals out of raw answers and :meth:`accept` each."""
        out = []
        for raw in raw_answers:
            found = extract_tagged(raw, tag)
            if not found:
                self.proposed += 1
                self.rejected["no proposal in answer"] += 1
            for text in found:
                template = self.accept(text, base)
                if template is not None:
                    out.append(template)
        return out


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
    ) -> OptimizeResult:
        """Run the search, then choose the final template on the validation split."""
        self.validate()
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
            task=task, evaluator=evaluator, proposer=proposer, start=start, seed=seed
        )
        first_eval = len(evaluator.history)
        budget = evaluator.budget
        # Hold back validation calls for the final choice: the start plus up to
        # final_candidates finalists, but never more than half of what is left.
        wanted = n_val * (self.final_candidates + 1)
        if budget is not None and budget.limit is not None:
            wanted = min(wanted, max(n_val, int(budget.remaining) // 2))
        held = budget.reserve(wanted) if budget is not None else 0
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

    def select_final(self, ctx: SearchContext, evaluations: Sequence[Evaluation]) -> OptimizeResult:
        """Score the starting template and the best train candidates on validation.

        Candidates are ranked by their mean per-example train score over all their
        train evaluations; the validation winner is returned (ties keep the start).
        """
        pooled: dict[str, list[float]] = {}
        templates: dict[str, Template] = {}
        for ev in evaluations:
            if ev.split == "train":
                pooled.setdefault(ev.template.id, []).extend(ev.scores)
                templates[ev.template.id] = ev.template
        ranked = sorted(pooled, key=lambda t: -sum(pooled[t]) / len(pooled[t]))
        finalists = [ctx.start] + [
            templates[t] for t in ranked if t != ctx.start.id
        ][: self.final_candidates]
        val = ctx.evaluator
        start_eval = val.evaluate(ctx.start, "val", meta={"role": "start"})
        best = start_eval
        for template in finalists[1:]:
            try:
                ev = val.evaluate(template, "val", meta={"role": "finalist"})
            except BudgetExhausted:
                break
            if ev.score > best.score:
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
