"""Optimizers (search strategies), registered by name in ``optimizers``.

The base class (:class:`Optimizer`) and one private module per algorithm; their public
names are re-exported here. The machinery they share (the search context, proposal
checks, the final choice, ``auto``'s lanes) is :mod:`promptopt.search`.
"""

from promptopt.optimizers._ape import APE, ucb_pick
from promptopt.optimizers._auto import Auto, default_contestants, halving_rounds
from promptopt.optimizers._base import Optimizer, OptimizeResult
from promptopt.optimizers._baselines import Identity, RandomSearch
from promptopt.optimizers._dspy import DSPyBootstrap, DSPyGEPA, DSPyMIPRO
from promptopt.optimizers._evoprompt import EvoPromptDE, EvoPromptGA
from promptopt.optimizers._gepa import GEPA
from promptopt.optimizers._mean_prompt import (
    MeanPrompt,
    MeanPromptResult,
    MeanPromptStep,
    search_mean_prompt,
)
from promptopt.optimizers._opro import OPRO
from promptopt.optimizers._protegi import ProTeGi, edit_step, error_report
from promptopt.optimizers._tpe import TPESearch
from promptopt.registry import optimizers
from promptopt.tasks import INSTRUCTION_POOL

__all__ = [
    "APE",
    "Auto",
    "INSTRUCTION_POOL",
    "DSPyBootstrap",
    "DSPyGEPA",
    "DSPyMIPRO",
    "EvoPromptDE",
    "EvoPromptGA",
    "GEPA",
    "Identity",
    "MeanPrompt",
    "MeanPromptResult",
    "MeanPromptStep",
    "OPRO",
    "OptimizeResult",
    "Optimizer",
    "ProTeGi",
    "RandomSearch",
    "TPESearch",
    "default_contestants",
    "edit_step",
    "error_report",
    "halving_rounds",
    "optimizers",
    "search_mean_prompt",
    "ucb_pick",
]
