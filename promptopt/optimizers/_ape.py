"""APE: Automatic Prompt Engineer.

Zhou et al. 2022, "Large Language Models Are Human-Level Prompt Engineers"
(arXiv:2211.01910). Forward generation: the proposer sees a few input/output demos
from the train split ("I gave a friend an instruction ... The instruction was") and
proposes instructions. Candidates are then selected by a UCB bandit over minibatches:
each pull evaluates the arm maximizing ``mean + c * sqrt(ln N / n_i)`` (untried arms
first) on a new random minibatch. Iterative Monte Carlo resampling then asks for
meaning-preserving variants of the best candidates, which join the bandit pool.

Left out, or changed to fit small budgets:

- Reverse (fill-in-the-middle) generation and the log-probability score: only forward
  generation and the task's own metric (e.g. SCS) are used.
- Far fewer candidates (``num_prompts`` 6 rather than ~50) and pulls; the number of
  proposals is cut to what the remaining budget can also evaluate once.
- The starting template is an arm too (APE starts from demos alone), so resampling
  has something to work from when generation yields nothing usable.
- An arm already scored on every train example is treated as exactly known (no
  exploration bonus); if the bandit picks such an arm the round ends.
- ``n_i`` counts pulls (minibatches), not examples, and ``ucb_c`` defaults to 0.1
  because SCS scores are small and spread narrowly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from promptopt.data import Example
from promptopt.errors import BudgetExhausted
from promptopt.optimizers._base import Optimizer
from promptopt.registry import optimizers
from promptopt.search import SearchContext
from promptopt.template import Template

_LEADING_TO = re.compile(r"^\s*(?:<INS>\s*)?to\s+(\w)", re.IGNORECASE)


def ucb_pick(stats: Sequence[tuple[float, float]], c: float, total: float | None = None) -> int:
    """The arm a UCB bandit pulls next.

    Args:
        stats: ``(mean, pulls)`` per arm; ``pulls`` may be ``math.inf`` for an arm whose
            value is known exactly (no exploration bonus).
        c: Exploration weight.
        total: Total pulls so far, ``N`` (default: the sum of the finite ``pulls``).

    Returns:
        The index of the first untried arm, else of the arm maximizing
        ``mean + c * sqrt(ln N / pulls)`` (ties: the lowest index).
    """
    for i, (_, pulls) in enumerate(stats):
        if pulls == 0:
            return i
    if total is None:
        total = sum(p for _, p in stats if math.isfinite(p))
    log_n = math.log(max(total, 1))
    values = [mean + c * math.sqrt(log_n / pulls) for mean, pulls in stats]
    return max(range(len(values)), key=lambda i: (values[i], -i))


@dataclass(eq=False)
class _Arm:
    """One candidate in the bandit pool."""

    template: Template
    stage: str
    round: int
    parents: tuple[str, ...] = ()
    pulls: int = 0
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0


@optimizers.register("ape")
class APE(Optimizer):
    """APE: instructions induced from demos, UCB selection, Monte Carlo resampling.

    Args:
        num_prompts: Instructions sampled by forward generation (each from its own
            random set of demos).
        demos_per_prompt: Input/output demos shown per generation request.
        temperature: Proposer sampling temperature.
        minibatch_size: Train examples per bandit pull.
        ucb_c: Exploration weight ``c`` of the UCB score.
        pulls_per_round: Bandit pulls after generation and after each resampling round.
        mc_rounds: Monte Carlo resampling rounds (0: none).
        mc_top_k: Best candidates resampled in each round.
        mc_variants: Variants asked for per resampled candidate.
        ask_chat: For a chat-model proposer, end the generation prompt with a question
            that asks for the instruction in tags (the paper's prompt, written for a
            completion model to continue, made the 0.5B and 1.5B Qwen instruct models
            repeat a demo's text), and say first what the model must do (the task's
            ``brief``).
        opening: Build proposals on the start opened with the word most training
            answers begin with, where the task offers answer prefixes and the start has
            none (:meth:`SearchContext.open_answers`).
    """

    legacy_settings = {"ask_chat": False, "opening": False}

    def __init__(
        self,
        *,
        num_prompts: int = 6,
        demos_per_prompt: int = 3,
        temperature: float = 0.9,
        minibatch_size: int = 4,
        ucb_c: float = 0.1,
        pulls_per_round: int = 8,
        mc_rounds: int = 5,
        mc_top_k: int = 2,
        mc_variants: int = 1,
        ask_chat: bool = True,
        opening: bool = True,
    ) -> None:
        self.num_prompts = num_prompts
        self.demos_per_prompt = demos_per_prompt
        self.temperature = temperature
        self.minibatch_size = minibatch_size
        self.ucb_c = ucb_c
        self.pulls_per_round = pulls_per_round
        self.mc_rounds = mc_rounds
        self.mc_top_k = mc_top_k
        self.mc_variants = mc_variants
        self.ask_chat = ask_chat
        self.opening = opening

    def validate(self) -> None:
        """Check the settings."""
        self._check(self.num_prompts >= 1, "num_prompts", "must be at least 1")
        self._check(self.demos_per_prompt >= 1, "demos_per_prompt", "must be at least 1")
        self._check(0.0 <= self.temperature <= 2.0, "temperature", "must be in [0, 2]")
        self._check(self.minibatch_size >= 1, "minibatch_size", "must be at least 1")
        self._check(self.ucb_c >= 0.0, "ucb_c", "must be at least 0")
        self._check(self.pulls_per_round >= 1, "pulls_per_round", "must be at least 1")
        self._check(self.mc_rounds >= 0, "mc_rounds", "must be at least 0")
        self._check(self.mc_top_k >= 1, "mc_top_k", "must be at least 1")
        self._check(self.mc_variants >= 1, "mc_variants", "must be at least 1")

    def generation_prompt(self, ctx: SearchContext, demos: Sequence[Example]) -> str:
        """The forward-generation meta-prompt for ``demos``, ending in ``<INS>`` (for a
        chat-model proposer with ``ask_chat``: asking for the instruction in tags)."""
        pairs = "\n\n".join(
            f"Input:\n{ctx.task.format_example(e, with_target=False)}\nOutput: {e.target}"
            for e in demos
        )
        intro = (f"I gave a friend an instruction and {len(demos)} inputs. Based on the "
                 "instruction they produced the following input-output pairs:\n\n")
        if self.ask_chat and ctx.proposer.is_chat:
            brief = ctx.task.brief.replace("The model", "My friend", 1)
            return (f"{brief}\n\n{intro}{pairs}\n\nWhat was the instruction I gave? Reply "
                    "with the instruction only, between <INS> and </INS>.")
        return f"{intro}{pairs}\n\nThe instruction was <INS>"

    @staticmethod
    def resample_prompt(instruction: str) -> str:
        """The Monte Carlo resampling meta-prompt, ending in ``<INS>``."""
        return (
            "Generate a variation of the following instruction while keeping the semantic "
            f"meaning.\n\nInput: {instruction}\n\nOutput: <INS>"
        )

    @staticmethod
    def _tidy(raw: str) -> str:
        """Drop the "to" that "The instruction was to ..." leaves at an answer's start."""
        return _LEADING_TO.sub(lambda m: m.group(1).upper(), raw or "", count=1)

    def _affordable(self, ctx: SearchContext, wanted: int, extra: int = 0) -> int:
        """Proposals (each with one evaluation) that fit the budget, besides ``extra``."""
        n = wanted
        while n > 0 and not ctx.can_afford(n * (1 + self.minibatch_size) + extra):
            n -= 1
        return n

    def _batch(self, ctx: SearchContext, arm: _Arm) -> list[Example]:
        """A new random minibatch, preferring examples the arm has not been scored on."""
        unseen = [e for e in ctx.train if e.id not in arm.scores]
        size = min(self.minibatch_size, len(ctx.train))
        if len(unseen) >= size:
            return ctx.rng.sample(unseen, size)
        seen = [e for e in ctx.train if e.id in arm.scores]
        return unseen + ctx.rng.sample(seen, size - len(unseen))

    def _bandit(self, ctx: SearchContext, pool: list[_Arm], rnd: int) -> None:
        """Run one round of UCB pulls over the pool."""
        train_ids = {e.id for e in ctx.train}
        pulls = self.pulls_per_round if len(pool) > 1 else int(pool[0].pulls == 0)
        for _ in range(pulls):
            stats = [(a.mean, math.inf if train_ids <= a.scores.keys() else a.pulls) for a in pool]
            i = ucb_pick(stats, self.ucb_c, total=sum(a.pulls for a in pool))
            arm = pool[i]
            if arm.pulls and train_ids <= arm.scores.keys():
                return  # its exact mean beats every other arm's upper bound
            meta = {"stage": arm.stage, "round": arm.round, "bandit_round": rnd, "step": rnd}
            ev = ctx.evaluate(arm.template, self._batch(ctx, arm), parents=arm.parents, meta=meta)
            arm.pulls += 1
            arm.scores.update(zip(ev.example_ids, ev.scores, strict=True))

    def _generate(self, ctx: SearchContext, pool: list[_Arm]) -> None:
        """Forward generation: one proposal per random set of demos."""
        n = self._affordable(ctx, self.num_prompts, extra=self.minibatch_size)
        if n == 0:
            raise BudgetExhausted("ape: no budget left for forward generation")
        k = min(self.demos_per_prompt, len(ctx.train))
        for _ in range(n):
            prompt = self.generation_prompt(ctx, ctx.rng.sample(ctx.train, k))
            raw = ctx.propose(prompt, n=1, temperature=self.temperature, stop=["</INS>"])
            for template in ctx.accept_answers([self._tidy(r) for r in raw]):
                pool.append(_Arm(template, stage="generate", round=0))

    def _resample(self, ctx: SearchContext, pool: list[_Arm], rnd: int) -> None:
        """Ask for meaning-preserving variants of the best tried arms."""
        tried = [a for a in pool if a.pulls]
        top = sorted(tried, key=lambda a: -a.mean)[: self.mc_top_k]
        n = self._affordable(ctx, len(top) * self.mc_variants)
        if n == 0:
            raise BudgetExhausted(f"ape: no budget left for resampling round {rnd}")
        for i, arm in enumerate(top):
            count = min(self.mc_variants, n - i * self.mc_variants)
            if count <= 0:
                break
            prompt = self.resample_prompt(arm.template.instruction)
            raw = ctx.propose(prompt, n=count, temperature=self.temperature, stop=["</INS>"])
            answers = [self._tidy(r) for r in raw]
            for template in ctx.accept_answers(answers, base=arm.template):
                pool.append(_Arm(template, stage="resample", round=rnd, parents=(arm.template.id,)))

    def search(self, ctx: SearchContext) -> None:
        """Generate, select with UCB, then resample the best and select again."""
        pool = [_Arm(ctx.base, stage="start", round=0)]
        self._generate(ctx, pool)
        self._bandit(ctx, pool, 0)
        for rnd in range(1, self.mc_rounds + 1):
            self._resample(ctx, pool, rnd)
            self._bandit(ctx, pool, rnd)
