"""Baselines: ``identity`` (the starting template only) and ``random`` (a hand-written pool).

They share the optimizer contract, so they show what a real method must beat.
"""

from __future__ import annotations

from promptopt.optimizers._base import Optimizer
from promptopt.registry import optimizers
from promptopt.search import SearchContext


@optimizers.register("identity")
class Identity(Optimizer):
    """Evaluate the starting template only (a baseline; spends only validation calls)."""

    explains_start = False  # returning the start is what it is for

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
        pool: Instructions to draw from (default: the task's ``instruction_pool``).
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
        pool = list(self.pool or ctx.task.instruction_pool)
        ctx.rng.shuffle(pool)
        for text in pool:
            template = ctx.accept(text)
            if template is not None:
                ctx.evaluate(template, batch, parents=[ctx.start.id])
