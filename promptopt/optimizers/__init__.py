"""Optimizers (search strategies), registered by name in ``optimizers``.

Each algorithm lives in its own private module; public names are re-exported here.
"""

from promptopt.optimizers._base import (
    OptimizeResult,
    Optimizer,
    SearchContext,
    extract_tagged,
)
from promptopt.optimizers._baselines import INSTRUCTION_POOL, Identity, RandomSearch
from promptopt.registry import optimizers

__all__ = [
    "INSTRUCTION_POOL",
    "Identity",
    "OptimizeResult",
    "Optimizer",
    "RandomSearch",
    "SearchContext",
    "extract_tagged",
    "optimizers",
]
