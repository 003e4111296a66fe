"""Tasks: examples, rendering, parsing and scoring. Registered by name in ``tasks``."""

from promptopt.registry import tasks
from promptopt.tasks._base import Task, truncate_tokens
from promptopt.tasks._classification import ClassificationTask
from promptopt.tasks._csv import CSVTask
from promptopt.tasks._prompt_recovery import (
    AFTER_INSTRUCTION,
    ANSWER_PREFIXES,
    DEFAULT_PREDICTION,
    INSTRUCTION_POOL,
    PromptRecoveryTask,
    clean_prediction,
    strip_chatter,
)

__all__ = [
    "AFTER_INSTRUCTION",
    "ANSWER_PREFIXES",
    "INSTRUCTION_POOL",
    "CSVTask",
    "ClassificationTask",
    "DEFAULT_PREDICTION",
    "PromptRecoveryTask",
    "Task",
    "clean_prediction",
    "strip_chatter",
    "tasks",
    "truncate_tokens",
]
