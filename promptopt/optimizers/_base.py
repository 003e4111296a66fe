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
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.data import Example
from promptopt.errors import BudgetExhausted, ConfigError
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.llm import LLM, Budget
from promptopt.tasks import Task
from promptopt.tasks._prompt_recovery import INSTRUCTION_POOL  # noqa: F401 (re-exported)
from promptopt.template import Template

if TYPE_CHECKING:
    from promptopt.sharing import SharedHistory

MAX_INSTRUCTION_CHARS = 1500
PROPOSER_MAX_TOKENS = 160

STRAY_TAG = re.compile(r"</?\s*[A-Za-z_]+\s*>")
"""A tag such as ``<INS>``, ``</prompt>`` or ``<END>`` left in a proposer's answer."""

_LABEL = r"(?:(?:final|new|basic|improved)\s+)?(?:prompt|instruction)s?\s*\d*\s*:"


def strip_tags(text: str) -> str:
    """``text`` without stray tags, its whitespace collapsed within each line.

    Blank lines are dropped; the remaining line breaks are kept.
    """
    lines = (" ".join(STRAY_TAG.sub(" ", line).split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def read_proposal(raw: str, tag: str = "INS", *, echo_labels: Sequence[str] = ()) -> str:
    """The one instruction a proposer's answer proposes, or ``""`` when it holds none.

    The meta-prompts end with ``<TAG>``, so a base model continues inside the tag and
    never writes it, while a chat model may repeat it, or a label such as ``"Final
    prompt:"`` before or after it; both are skipped. The proposal is the text up to
    the first closing tag, or, when the answer runs on without one (or opens a new
    tag first), its first non-empty line; text before an opening tag that follows a
    preamble ("Here is one: <INS>...") is skipped. Stray tags are removed and whitespace is
    collapsed within each line. An answer that merely echoes the meta-prompt's
    exemplars (its first line starts with one of ``echo_labels``, e.g. ``"Original
    text:"``) or has no letters holds no proposal.

    Args:
        raw: The proposer's raw answer.
        tag: The tag name the meta-prompt asked the proposal to be wrapped in.
        echo_labels: Line labels of the exemplars shown in the meta-prompt.

    Returns:
        The proposed instruction (possibly several lines), or ``""``.
    """
    name = re.escape(tag)
    text = (raw or "").strip()
    lead = re.match(rf"(?:\s*(?:<{name}>|{_LABEL}))*\s*", text, re.IGNORECASE)
    text = text[lead.end() if lead else 0 :]
    marker = re.search(rf"<(/?){name}>", text, re.IGNORECASE)
    preamble = text[: marker.start()].strip().lower() if marker else ""
    if marker and not marker.group(1) and preamble:
        # A chat-style preamble ("Here is a new one: <INS>...") before the opening tag;
        # an echoed exemplar there means the answer holds no proposal.
        if any(preamble.startswith(label.lower()) for label in echo_labels):
            return ""
        text = text[marker.end() :]
        marker = re.search(rf"<(/?){name}>", text, re.IGNORECASE)
    # The proposal ends at the next tag.
    body = strip_tags(text[: marker.start()] if marker else text)
    if not (marker and marker.group(1)):  # not closed: the first line only
        body = body.split("\n", 1)[0]
    first = body.split("\n", 1)[0].lower()
    if not any(ch.isalpha() for ch in body) or any(
        first.startswith(label.lower()) for label in echo_labels
    ):
        return ""
    return body


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

    It also owns the proposal bookkeeping every method shares: reading proposals out
    of the proposer's answers, rejecting bad ones (counted, never evaluated), and
    deterministic seeds for sampled proposer calls.

    With several workers on one study (``shared``), :meth:`others` returns the train
    evaluations other workers recorded, and :meth:`evaluate` reuses another worker's
    evaluation of the same template on the same examples instead of paying for it.
    ``batch_seed`` gives minibatches a stream of their own (the study's seed, shared
    by its workers); without it they come from :attr:`rng`, as in a lone run.
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
        shared: SharedHistory | None = None,
        batch_seed: int | None = None,
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
        self.shared = shared
        self._batch_rng = self.rng if batch_seed is None else random.Random(batch_seed)
        self._shown: set[Any] = set()

    @property
    def train(self) -> list[Example]:
        """The train split."""
        return self.task.examples("train")

    @property
    def val(self) -> list[Example]:
        """The validation split."""
        return self.task.examples("val")

    @property
    def echo_labels(self) -> list[str]:
        """The ``"Label:"`` prefixes of the task's exemplar lines, plus generic ones.

        An answer starting with one of them echoes a meta-prompt's exemplar rather
        than proposing an instruction (see :func:`read_proposal`).
        """
        labels = {"Input:", "Output:", "Example ", "Score:"}
        if self.train:
            for line in self.task.format_example(self.train[0]).split("\n"):
                label, sep, _ = line.partition(":")
                if sep and 0 < len(label) <= 40:
                    labels.add(label.strip() + ":")
        return sorted(labels)

    def minibatch(self, size: int) -> list[Example]:
        """A seeded random sample of the train split (all of it if smaller)."""
        train = self.train
        return list(train) if size >= len(train) else self._batch_rng.sample(train, size)

    def evaluate(
        self,
        template: Template,
        examples: Sequence[Example] | None = None,
        *,
        parents: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
    ) -> Evaluation:
        """Evaluate on ``examples`` (default: the whole train split); may raise BudgetExhausted.

        An evaluation another worker recorded for this template and these examples is
        reused when possible (see :meth:`SharedHistory.reusable`): no call, no trial.
        """
        if self.shared is not None:
            chosen = list(self.train if examples is None else examples)
            if not self.evaluator.is_cached(template, "train", chosen):
                reused = self.shared.reusable(
                    template, "train", chosen, parents=parents, meta=meta
                )
                if reused is not None:
                    self.evaluator.adopt(reused)
                    return reused
        return self.evaluator.evaluate(
            template, "train", examples=examples, parents=parents, meta=meta
        )

    def others(self, examples: Sequence[Example]) -> list[Evaluation]:
        """Train evaluations on ``examples`` that other workers recorded, not returned before.

        Oldest first; each one's ``scores`` repeat its mean (see
        :meth:`SharedHistory.evaluations`). Their instructions count as seen, so a
        proposal that repeats one is rejected as a duplicate. Empty for a lone run.
        """
        if self.shared is None:
            return []
        new = []
        for ev in self.shared.evaluations("train", examples):
            key = ev.meta.get("trial")
            if key in self._shown:
                continue
            self._shown.add(key)
            self._seen.add(_normalize(ev.template.instruction))
            new.append(ev)
        return new

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
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Ask the proposer ``n`` times (seeded samples); returns the raw answers.

        ``stop`` ends generation early, e.g. at the closing tag of a one-proposal
        answer, so a rambling model does not spend ``max_tokens`` every time.
        """
        seeds = []
        for _ in range(n):
            self._proposal_calls += 1
            seeds.append(self.seed * 1_000_003 + self._proposal_calls)
        messages = [[{"role": "user", "content": prompt}]] * n
        return self.proposer.complete_many(
            messages, temperature=temperature, max_tokens=max_tokens, seeds=seeds, stop=stop
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

    def accept_answers(
        self,
        raw_answers: Sequence[str],
        base: Template | None = None,
        *,
        tag: str = "INS",
        echo_labels: Sequence[str] | None = None,
    ) -> list[Template]:
        """Read one proposal per raw answer (:func:`read_proposal`) and :meth:`accept` it.

        An answer holding no proposal counts as proposed and rejected ("no proposal in
        answer"). ``echo_labels`` defaults to :attr:`echo_labels`.
        """
        labels = self.echo_labels if echo_labels is None else echo_labels
        out = []
        for raw in raw_answers:
            text = read_proposal(raw, tag, echo_labels=labels)
            if not text:
                self.proposed += 1
                self.rejected["no proposal in answer"] += 1
                continue
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
        shared: SharedHistory | None = None,
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
