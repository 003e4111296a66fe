"""EvoPrompt: evolutionary search over instructions, with the LLM as the variation operator.

Guo et al. 2023, "Connecting Large Language Models with Evolutionary Algorithms Yields
Powerful Prompt Optimizers". A population of instructions evolves; the proposer LLM
performs the evolutionary operators in words:

- ``evoprompt-ga`` (genetic algorithm): parents are drawn by roulette wheel (probability
  proportional to score); one LLM call crosses them over and mutates the result; the
  next population is the best ``population_size`` of parents and children (elitist).
- ``evoprompt-de`` (differential evolution): for each member ``p``, two other members
  ``a``, ``b`` and the current best ``c``; one LLM call finds where ``a`` and ``b``
  differ, mutates those parts, merges them into ``c`` and crosses the result with
  ``p``; the child replaces ``p`` only if it scores higher on the same examples.

Left out, for small budgets and weak proposers: the paper's one-shot demonstration
of the operators inside the meta-prompt (the proposer is asked for the final prompt
only, so a 160-token answer is not spent on the intermediate steps), scoring on a
full development set (every member is scored on one fixed train minibatch), the
paper's population of ~10 (default 4) and its manually written initial prompts (the
initial population is the start plus proposer paraphrases of it).

Several workers on one study evolve one population each (an island model): before
each generation, the candidates other workers scored on the same minibatch migrate
into this worker's population if they beat its members (elitist merge).
"""

from __future__ import annotations

import random
import re
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from promptopt.data import Example
from promptopt.errors import BudgetExhausted
from promptopt.evaluator import Evaluation
from promptopt.optimizers._base import Optimizer
from promptopt.registry import optimizers
from promptopt.search import PROPOSER_MAX_TOKENS, SearchContext, looks_truncated
from promptopt.template import Template

TAG = "prompt"
EVOLUTION_MAX_TOKENS = 400
_BLOCK = re.compile(rf"<{TAG}>(.*?)</{TAG}>", re.IGNORECASE | re.DOTALL)

PARAPHRASE_PROMPT = (
    "Generate a variation of the following instruction while keeping the semantic "
    "meaning.\n\nInput: {prompt}\n\nOutput: <prompt>"
)
GA_PROMPT = (
    "Please follow the instruction step-by-step to generate a better prompt.\n"
    "1. Crossover the following prompts and generate a new prompt:\n"
    "Prompt 1: {prompt1}\n"
    "Prompt 2: {prompt2}\n"
    "2. Mutate the prompt generated in Step 1 and generate a final prompt bracketed "
    "with <prompt> and </prompt>.\n\n"
    "Final prompt: <prompt>"
)
DE_PROMPT = (
    "Please follow the instruction step-by-step to generate a better prompt.\n"
    "1. Identify the different parts between the Prompt 1 and Prompt 2:\n"
    "Prompt 1: {prompt1}\n"
    "Prompt 2: {prompt2}\n"
    "2. Randomly mutate the different parts.\n"
    "3. Combine the different parts with Prompt 3, selectively replace it with the "
    "different parts in Step 2 and generate a new prompt.\n"
    "Prompt 3: {prompt3}\n"
    "4. Cross over the prompt in Step 3 with the following basic prompt and generate a "
    "final prompt bracketed with <prompt> and </prompt>:\n"
    "Basic Prompt: {basic}\n\n"
    "Final prompt: <prompt>"
)


def final_block(raw: str) -> str:
    """A chat proposer's answer cut to its final prompt: the last ``<prompt>...</prompt>``
    block that holds more than one word, tags kept (for :func:`~promptopt.search.
    read_proposal`); the answer unchanged where it holds none.

    A chat model writes the steps out and repeats the request's own words on its way
    ("... generate a final prompt bracketed with <prompt> and </prompt>"): stopped at the
    first closing tag, the Qwen 1.5B's answers read "and". An answer that ends inside
    its last opened block (the 1.5B often leaves it unclosed) gives that block.
    """
    raw = raw or ""
    blocks = [m for m in _BLOCK.finditer(raw) if len(m.group(1).split()) > 1]
    opened = raw.lower().rfind(f"<{TAG}>")  # a last block the answer ended inside
    tail = raw[opened + len(TAG) + 2:] if opened >= 0 else ""
    if (opened >= 0 and f"</{TAG}>" not in tail.lower() and len(tail.strip().split("\n")[0]
            .split()) > 1 and (not blocks or opened > blocks[-1].start())):
        return raw[opened:]
    return blocks[-1].group(0) if blocks else raw


@dataclass
class Member:
    """One individual of the population: a template and its evaluation."""

    template: Template
    evaluation: Evaluation

    @property
    def score(self) -> float:
        """Mean score on the run's fixed minibatch."""
        return self.evaluation.score


def roulette_select(
    scores: Sequence[float], k: int, rng: random.Random, *, replace: bool = False
) -> list[int]:
    """Roulette-wheel selection: ``k`` indices drawn with probability proportional to score.

    Negative scores count as zero; when every remaining weight is zero the draw is
    uniform. Without ``replace`` no index is drawn twice (while enough remain).
    """
    weights = [max(0.0, float(s)) for s in scores]
    available = list(range(len(weights)))
    picked: list[int] = []
    for _ in range(k):
        if not available:
            available = list(range(len(weights)))
        total = sum(weights[i] for i in available)
        if total <= 0:
            choice = rng.choice(available)
        else:
            positive = [i for i in available if weights[i] > 0]
            r, acc, choice = rng.random() * total, 0.0, positive[-1]
            for i in available:
                acc += weights[i]
                if r < acc:
                    choice = i
                    break
        picked.append(choice)
        if not replace:
            available.remove(choice)
    return picked


def elitist(members: Sequence[Member], n: int) -> list[Member]:
    """The ``n`` best members by score (ties keep the earlier, i.e. the parents)."""
    order = sorted(range(len(members)), key=lambda i: (-members[i].score, i))
    return [members[i] for i in order[:n]]


def de_should_replace(parent: Evaluation, child: Evaluation) -> bool:
    """The DE survivor rule: the child replaces its parent only if it scores strictly higher.

    Both must have been scored on the same examples, otherwise the comparison is void.
    """
    if parent.example_ids != child.example_ids:
        raise ValueError("DE compares parent and child on the same examples only")
    return child.score > parent.score


class _EvoPrompt(Optimizer):
    """Shared machinery of the EvoPrompt variants (population, scoring, generations).

    Args:
        population_size: Individuals kept (the paper uses 10).
        generations: Generations to run at most (the budget usually ends the run first).
        minibatch_size: Train examples every individual is scored on (one fixed sample).
        temperature: Sampling temperature of the proposer's evolution calls.
        opening: Build proposals on the start opened with the word most training
            answers begin with, where the task offers answer prefixes and the start has
            none (:meth:`SearchContext.open_answers`).
        max_tokens: Proposer tokens per evolution answer. The prompts ask for the steps
            first and the final prompt last; a 1.5B chat proposer writes every step out,
            and at 160 tokens 10 to 24 answers a run were cut off before the final prompt.
        final_block: Read a chat proposer's whole answer and take its last tagged
            prompt (:func:`final_block`); False: stop it at the first closing tag, as a
            base model's continuation is (which cut the 1.5B's answers at its echo of
            the request, "<prompt> and </prompt>").
    """

    op: str = ""
    legacy_settings = {"opening": False, "max_tokens": PROPOSER_MAX_TOKENS,
                       "final_block": False}

    def __init__(
        self,
        *,
        population_size: int = 4,
        generations: int = 10,
        minibatch_size: int = 4,
        temperature: float = 0.7,
        opening: bool = True,
        max_tokens: int = EVOLUTION_MAX_TOKENS,
        final_block: bool = True,
    ) -> None:
        self.population_size = population_size
        self.generations = generations
        self.minibatch_size = minibatch_size
        self.temperature = temperature
        self.opening = opening
        self.max_tokens = max_tokens
        self.final_block = final_block

    def validate(self) -> None:
        """Check the settings."""
        self._check(self.population_size >= 2, "population_size", "must be at least 2")
        self._check(self.generations >= 1, "generations", "must be at least 1")
        self._check(self.minibatch_size >= 1, "minibatch_size", "must be at least 1")
        self._check(0.0 <= self.temperature <= 2.0, "temperature", "must be in [0, 2]")
        self._check(self.max_tokens >= 1, "max_tokens", "must be at least 1")

    def search(self, ctx: SearchContext) -> None:
        """Build the initial population, then evolve it generation by generation."""
        batch = ctx.minibatch(self.minibatch_size)
        self.population_: list[Member] = self._initial_population(ctx, batch)
        for generation in range(1, self.generations + 1):
            self._migrate(ctx, self.population_, batch)
            self._generation(ctx, self.population_, batch, generation)

    def _migrate(self, ctx: SearchContext, population: list[Member], batch: list[Example]) -> None:
        """Let other workers' candidates on ``batch`` replace weaker members (none alone)."""
        present = {m.template.id for m in population}
        migrants = []
        for ev in ctx.others(batch):
            if ev.template.id not in present:
                present.add(ev.template.id)
                migrants.append(Member(ev.template, ev))
        if migrants:
            population[:] = elitist(population + migrants, self.population_size)

    def _initial_population(self, ctx: SearchContext, batch: list[Example]) -> list[Member]:
        """The start plus up to ``population_size - 1`` paraphrases of it."""
        start_eval = ctx.evaluate(
            ctx.base, batch, meta={"generation": 0, "op": "start", "step": 0}
        )
        population = [Member(ctx.base, start_eval)]
        self.population_ = population
        prompt = PARAPHRASE_PROMPT.format(prompt=ctx.base.instruction)
        answers = self._ask(ctx, prompt, self.population_size - 1, 1.0)
        for template in ctx.accept_answers(answers, ctx.base, tag=TAG, frame=PARAPHRASE_PROMPT):
            ev = ctx.evaluate(
                template, batch, parents=[ctx.base.id],
                meta={"generation": 0, "op": "init", "step": 0},
            )
            if not ev.failed:  # a failed candidate never joins the population
                population.append(Member(template, ev))
        return population

    def _ask(self, ctx: SearchContext, prompt: str, n: int, temperature: float) -> list[str]:
        """``n`` answers of the proposer to ``prompt``; a chat proposer's read whole and
        cut to its final block (``final_block``), a base model's stopped at the tag."""
        whole = self.final_block and ctx.proposer.is_chat
        answers = ctx.propose(prompt, n=n, temperature=temperature,
                              stop=None if whole else [f"</{TAG}>"], max_tokens=self.max_tokens)
        if not whole:
            return answers
        # a cut-off answer stays whole, so that the truncation check sees it
        return [a if looks_truncated(a, self.max_tokens) else final_block(a) for a in answers]

    def _child(
        self,
        ctx: SearchContext,
        prompt: str,
        parents: Sequence[Member],
        batch: list[Example],
        generation: int,
    ) -> Member | None:
        """One evolution call and, if the proposal is usable, its evaluation.

        The child keeps the demos, prefix and suffix of ``parents[0]``; every distinct
        parent is recorded as its lineage.
        """
        if not ctx.can_afford(1 + len(batch)):
            raise BudgetExhausted("no budget left for one more child")
        answers = self._ask(ctx, prompt, 1, self.temperature)
        frame = GA_PROMPT if self.op == "ga" else DE_PROMPT
        children = ctx.accept_answers(answers, parents[0].template, tag=TAG, frame=frame)
        if not children:
            return None
        ev = ctx.evaluate(
            children[0],
            batch,
            parents=list(dict.fromkeys(m.template.id for m in parents)),
            meta={"generation": generation, "op": self.op, "step": generation},
        )
        return None if ev.failed else Member(children[0], ev)

    @abstractmethod
    def _generation(
        self, ctx: SearchContext, population: list[Member], batch: list[Example], generation: int
    ) -> None:
        """Evolve ``population`` in place by one generation."""


@optimizers.register("evoprompt-ga")
class EvoPromptGA(_EvoPrompt):
    """EvoPrompt, genetic-algorithm variant (roulette wheel, LLM crossover + mutation, elitism).

    Args:
        population_size: Individuals kept (the paper uses 10).
        generations: Generations to run at most (the budget usually ends the run first).
        minibatch_size: Train examples every individual is scored on (one fixed sample).
        temperature: Sampling temperature of the proposer's evolution calls.
    """

    op = "ga"

    def _generation(
        self, ctx: SearchContext, population: list[Member], batch: list[Example], generation: int
    ) -> None:
        """Make ``population_size`` children, then keep the best of parents and children."""
        children: list[Member] = []
        try:
            for _ in range(self.population_size):
                i, j = roulette_select([m.score for m in population], 2, ctx.rng)
                first, second = population[i], population[j]
                prompt = GA_PROMPT.format(
                    prompt1=first.template.instruction, prompt2=second.template.instruction
                )
                child = self._child(ctx, prompt, [first, second], batch, generation)
                if child is not None:
                    children.append(child)
        finally:  # children paid for are never lost, even when the budget ends the run
            survivors = elitist(population + children, self.population_size)
            population[:] = survivors


@optimizers.register("evoprompt-de")
class EvoPromptDE(_EvoPrompt):
    """EvoPrompt, differential-evolution variant (difference of two, merged into the best).

    Args:
        population_size: Individuals kept (the paper uses 10).
        generations: Generations to run at most (the budget usually ends the run first).
        minibatch_size: Train examples every individual is scored on (one fixed sample).
        temperature: Sampling temperature of the proposer's evolution calls.
    """

    op = "de"

    def _generation(
        self, ctx: SearchContext, population: list[Member], batch: list[Example], generation: int
    ) -> None:
        """For each member, one DE child; it replaces the member only if it scores higher."""
        for i in range(len(population)):
            basic = population[i]
            others = [m for k, m in enumerate(population) if k != i] or [basic]
            if len(others) >= 2:
                a, b = ctx.rng.sample(others, 2)
            else:
                a = b = others[0]
            best = max(population, key=lambda m: m.score)
            prompt = DE_PROMPT.format(
                prompt1=a.template.instruction,
                prompt2=b.template.instruction,
                prompt3=best.template.instruction,
                basic=basic.template.instruction,
            )
            child = self._child(ctx, prompt, [basic, best, a, b], batch, generation)
            if child is not None and de_should_replace(basic.evaluation, child.evaluation):
                population[i] = child
