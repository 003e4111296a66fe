"""Baselines: ``identity`` (the starting template only) and ``random`` (a hand-written pool).

They share the optimizer contract, so they show what a real method must beat.
"""

from __future__ import annotations

from promptopt.optimizers._base import Optimizer, SearchContext
from promptopt.registry import optimizers

INSTRUCTION_POOL: tuple[str, ...] = (
    "Read the original text and its rewritten version, then state the instruction that "
    "produced the rewrite.",
    "What prompt was used to rewrite the original text into the rewritten text? Answer with "
    "the prompt only.",
    "Compare the two texts. Write the rewriting instruction in one short sentence that starts "
    "with a verb.",
    "Guess the request a user gave an AI assistant to turn the first text into the second. "
    "Reply with the request only.",
    "Identify how the style, tone, format or length changed between the texts and write the "
    "instruction that asks for that change.",
    "You are an expert at reverse-engineering prompts. Give the single instruction that "
    "transformed the original text into the rewritten text.",
    "Describe, as an imperative sentence such as 'Rewrite this as a poem.', the change made "
    "to the text.",
    "Name the rewrite instruction. Be brief and general, e.g. 'Make this text more formal.'",
)


@optimizers.register("identity")
class Identity(Optimizer):
    """Evaluate the starting template only (a baseline; spends only validation calls)."""

    def __init__(self) -> None:
        pass

    def search(self, ctx: SearchContext) -> None:
        """Score the starting template on the train split."""
        ctx.evaluate(ctx.start)


@optimizers.register("random")
class RandomSearch(Optimizer):
    """Try instructions from a hand-written pool in random order (a baseline).

    Args:
        minibatch_size: Train examples each candidate is scored on.
        pool: Instructions to draw from (default: :data:`INSTRUCTION_POOL`).
    """

    def __init__(self, *, minibatch_size: int = 8, pool: tuple[str, ...] | None = None) -> None:
        self.minibatch_size = minibatch_size
        self.pool = pool

    def validate(self) -> None:
        """Check the minibatch size."""
        self._check(self.minibatch_size >= 1, "minibatch_size", "must be at least 1")

    def search(self, ctx: SearchContext) -> None:
        """Evaluate the start, then pool entries in a seeded random order."""
        batch = ctx.minibatch(self.minibatch_size)
        ctx.evaluate(ctx.start, batch)
        pool = list(self.pool or INSTRUCTION_POOL)
        ctx.rng.shuffle(pool)
        for text in pool:
            template = ctx.accept(text)
            if template is not None:
                ctx.evaluate(template, batch, parents=[ctx.start.id])
