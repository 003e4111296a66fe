"""The machinery the search methods share: the search context (data access, minibatches,
evaluation, proposals and their acceptance checks), the reading and checking of a
proposer's answers, the final choice between the start and the finalists, the account of
why a run returned its start, and the lanes that let ``auto`` race methods on one budget.

An algorithm (one module of :mod:`promptopt.optimizers`) uses these through the names
exported here.
"""

from promptopt.search._content import content_problem, task_words
from promptopt.search._context import (
    MAX_INSTRUCTION_CHARS,
    PROPOSER_MAX_TOKENS,
    History,
    SearchContext,
    looks_truncated,
    read_proposal,
    strip_tags,
)
from promptopt.search._lane import Allowance, Lane, ReplayLLM
from promptopt.search._selection import Choice, Selection, choose_among_workers, choose_final
from promptopt.search._why import why_start

__all__ = [
    "Allowance",
    "Choice",
    "History",
    "Lane",
    "MAX_INSTRUCTION_CHARS",
    "PROPOSER_MAX_TOKENS",
    "ReplayLLM",
    "SearchContext",
    "Selection",
    "choose_among_workers",
    "choose_final",
    "content_problem",
    "looks_truncated",
    "read_proposal",
    "strip_tags",
    "task_words",
    "why_start",
]
