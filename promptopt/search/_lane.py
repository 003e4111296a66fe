"""One contestant's view of a race (``auto``): its allowance, evaluator and LLMs.

A contestant of :class:`~promptopt.optimizers.Auto` runs as if it were alone, with the
same seed, on an :class:`Allowance` (its own budget), through a :class:`Lane` (the
shared evaluator under the contestant's name) and :class:`ReplayLLM` wrappers of the
recovery and proposer LLMs. To continue a contestant with more budget the race runs it
again from its start with a larger allowance: what it already paid for is replayed free
of charge (the shared evaluator's memo, the wrappers' memory of its earlier requests),
so only the requests it had never made reach the shared budget, and a rerun follows the
path a lone run with that budget would take (but for evaluations another contestant
paid for, which cost it nothing).

Accounting, per contestant:

- the allowance is charged for every request a lone run would be charged for, except
  evaluations another contestant (or the race, e.g. the start on validation) already
  paid for, which every contestant shares free;
- the shared budget is charged only for requests never made before in the race (the
  allowance's reservations are mirrored there, so a contestant's own final validation
  keeps its calls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.data import Example
from promptopt.errors import BudgetExhausted
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.llm import LLM, Budget, Messages, request_key
from promptopt.template import Template


class Allowance(Budget):
    """A contestant's budget; its reservations are mirrored on the shared budget.

    Args:
        limit: The requests the contestant may count (as a lone run would).
        shared: The race's shared budget.
        credit: Requests the allowance holds for work the race already paid for (the
            start on validation): a reservation is mirrored less this much.
    """

    def __init__(self, limit: int, shared: Budget, credit: int = 0) -> None:
        super().__init__(limit)
        self.shared = shared
        self.credit = credit
        self.mirrored: list[int] = []

    def reserve(self, n: int) -> int:
        """Reserve here and, as far as it goes, on the shared budget too (less the credit)."""
        amount = super().reserve(n)
        self.mirrored.append(self.shared.reserve(max(0, amount - self.credit)))
        return amount

    def release(self, n: int) -> None:
        """Release a reservation here and its mirror on the shared budget."""
        super().release(n)
        if self.mirrored:
            self.shared.release(self.mirrored.pop())

    def refund(self, n: int) -> None:
        """Give back ``n`` requests charged for work the shared budget then refused."""
        with self._lock:
            self.spent = max(0, self.spent - n)


class ReplayLLM(LLM):
    """An LLM that answers a request made before in the race from memory, free.

    Every request is charged to the contestant's :class:`Allowance` (a lone run would
    pay for it); only requests not in ``memory`` go to ``inner`` (charged to the shared
    budget). ``memory`` is the contestant's, kept across its runs.

    Args:
        inner: The race's LLM (shared budget, cache, usage).
        allowance: The contestant's budget.
        memory: Answers of the contestant's earlier requests, by request key.
    """

    def __init__(self, inner: LLM, allowance: Allowance, memory: dict[str, Any]) -> None:
        super().__init__(
            inner.model, temperature=inner.temperature, max_tokens=inner.max_tokens,
            cache=None, usage=inner.usage, budget=allowance, concurrency=inner.concurrency,
            timeout=inner.timeout, api_base=inner.api_base,
        )
        self.inner = inner
        self.allowance = allowance
        self.memory = memory

    def _answer(
        self, keys: list[str], charge: bool, ask: Any
    ) -> list[Any]:
        """Charge the allowance for all, ask ``inner`` for the keys not in memory."""
        if charge:
            self.allowance.charge(len(keys))
        todo = [i for i, k in enumerate(keys) if k not in self.memory]
        try:
            answers = ask(todo) if todo else []
        except BudgetExhausted:
            if charge:
                self.allowance.refund(len(keys))
            raise
        for i, answer in zip(todo, answers, strict=True):
            self.memory[keys[i]] = answer
        return [self.memory[k] for k in keys]

    def complete_many(
        self,
        batch: Sequence[Messages],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seeds: Sequence[int | None] | None = None,
        stop: Sequence[str] | None = None,
        charge: bool = True,
    ) -> list[str]:
        """Completions; requests made before in the race come from memory."""
        seeds = list(seeds) if seeds is not None else [None] * len(batch)
        temp = self.inner.temperature if temperature is None else temperature
        tokens = self.inner.max_tokens if max_tokens is None else max_tokens
        keys = [
            request_key({"kind": "complete", "model": self.model, "messages": list(m),
                         "temperature": temp, "max_tokens": tokens, "seed": s,
                         "stop": list(stop) if stop else None})
            for m, s in zip(batch, seeds, strict=True)
        ]

        def ask(todo: list[int]) -> list[str]:
            return self.inner.complete_many(
                [batch[i] for i in todo], temperature=temp, max_tokens=tokens,
                seeds=[seeds[i] for i in todo], stop=stop, charge=charge,
            )

        return [str(a) for a in self._answer(keys, charge, ask)]

    def label_logprobs(
        self,
        prompts: Sequence[Messages],
        labels: Sequence[str],
        *,
        charge: bool = True,
        top_logprobs: int | None = None,
    ) -> list[dict[str, float]]:
        """Label log-probabilities; requests made before in the race come from memory."""
        keys = [
            request_key({"kind": "labels", "model": self.model, "messages": list(m),
                         "labels": list(labels), "top_logprobs": top_logprobs})
            for m in prompts
        ]

        def ask(todo: list[int]) -> list[dict[str, float]]:
            return self.inner.label_logprobs(
                [prompts[i] for i in todo], labels, charge=charge, top_logprobs=top_logprobs
            )

        return [dict(a) for a in self._answer(keys, charge, ask)]


class Lane(Evaluator):
    """The evaluator one contestant sees: the shared one, under the contestant's name.

    Evaluations go to the shared evaluator (its memo, tracker and error count), with the
    shared evaluator's ``method`` switched to the contestant's name for the trial and
    ``contestant`` and ``round`` added to the trial's meta. :attr:`history` holds every
    evaluation this run of the contestant was given, served from memory or not, so its
    own final choice sees its whole search. The allowance is charged as described in
    the module docstring.

    Args:
        shared: The race's evaluator.
        name: The contestant (written as the trial's method).
        llm: The contestant's recovery LLM (a :class:`ReplayLLM` on its allowance).
        paid: Keys of the evaluations this contestant paid for in the race (updated).
        round_no: The race round, written on the trials.
    """

    def __init__(
        self, shared: Evaluator, name: str, llm: ReplayLLM, paid: set[Any], round_no: int
    ) -> None:
        super().__init__(shared.task, llm, tracker=None, method=name,
                         max_errors=shared.max_errors)
        self.shared = shared
        self.allowance = llm.allowance
        self.paid = paid
        self.round_no = round_no
        self.errors = shared.errors
        self.seen: set[Any] = set()

    def is_cached(self, template: Template, split: str, examples: Sequence[Example]) -> bool:
        """Whether evaluating would cost this contestant nothing."""
        key = (template.id, split, tuple(e.id for e in examples))
        if key in self.seen:
            return True
        return key not in self.paid and self.shared.is_cached(template, split, examples)

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
        """Evaluate through the shared evaluator, charging the allowance as a lone run.

        Raises:
            BudgetExhausted: if the allowance or the shared budget cannot pay; nothing
                is spent then.
        """
        chosen = list(self.task.examples(split) if examples is None else examples)
        key = (template.id, split, tuple(e.id for e in chosen))
        fresh = not self.shared.is_cached(template, split, chosen)
        counted = charge and key not in self.seen and (fresh or key in self.paid)
        if charge and fresh and not self.shared.can_afford(len(chosen)):
            raise BudgetExhausted(
                f"{self.method}: the race's budget cannot pay for {len(chosen)} more calls"
            )
        if counted:
            self.allowance.charge(len(chosen))
        details = {**dict(meta or {}), "contestant": self.method, "round": self.round_no}
        method, self.shared.method = self.shared.method, self.method
        try:
            ev = self.shared.evaluate(template, split, examples=chosen, parents=parents,
                                      meta=details, charge=charge)
        except BudgetExhausted:
            if counted:
                self.allowance.refund(len(chosen))
            raise
        finally:
            self.shared.method = method
        if fresh and charge:
            self.paid.add(key)
        if key not in self.seen:
            self.seen.add(key)
            self.history.append(ev)
        return ev

    def adopt(self, evaluation: Evaluation) -> None:
        """Adopt into the shared evaluator and this lane's history."""
        self.shared.adopt(evaluation)
        key = (evaluation.template.id, evaluation.split, evaluation.example_ids)
        if key not in self.seen:
            self.seen.add(key)
            self.history.append(evaluation)

    def score_constant(
        self,
        prediction: str,
        split: str,
        *,
        examples: Sequence[Example] | None = None,
        meta: Mapping[str, Any] | None = None,
        template: Template | None = None,
    ) -> Evaluation:
        """Score a constant prediction through the shared evaluator (no LLM call)."""
        details = {**dict(meta or {}), "contestant": self.method, "round": self.round_no}
        method, self.shared.method = self.shared.method, self.method
        try:
            ev = self.shared.score_constant(prediction, split, examples=examples,
                                            meta=details, template=template)
        finally:
            self.shared.method = method
        self.constants.append(ev)
        return ev
