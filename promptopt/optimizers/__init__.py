"""Optimizers (search strategies), registered by name in ``optimizers``.

Each algorithm lives in its own private module; public names are re-exported here.
"""

from promptopt.optimizers._ape import APE, ucb_pick
from promptopt.optimizers._auto import Auto, default_contestants, halving_rounds
from promptopt.optimizers._base import Optimizer, OptimizeResult
from promptopt.optimizers._baselines import Identity, RandomSearch
from promptopt.optimizers._content import content_problem, task_words
from promptopt.optimizers._context import SearchContext, read_proposal
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
from promptopt.optimizers._selection import (
    Choice,
    Selection,
    choose_among_workers,
    choose_final,
)
from promptopt.optimizers._tpe import TPESearch
from promptopt.optimizers._why import why_start
from promptopt.registry import optimizers
from promptopt.tasks import INSTRUCTION_POOL

__all__ = [
    "APE",
    "Choice",
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
    "SearchContext",
    "Selection",
    "TPESearch",
    "choose_among_workers",
    "choose_final",
    "content_problem",
    "default_contestants",
    "edit_step",
    "error_report",
    "halving_rounds",
    "optimizers",
    "read_proposal",
    "search_mean_prompt",
    "task_words",
    "ucb_pick",
    "why_start",
]
