"""promptopt: automatic prompt optimization, tracked in Optuna.

Library use mirrors the CLI::

    from promptopt import run
    result = run("opro", budget=100, seed=0)
    print(result.template.instruction, result.test_score)
"""

from promptopt.comparison import CompareResult, compare
from promptopt.data import Example, Splits, load_examples, sample_path, split_examples
from promptopt.datagen import DataGenSummary, generate_data
from promptopt.errors import (
    BudgetExhausted,
    ConfigError,
    DataError,
    LLMError,
    PromptoptError,
    ResumeError,
    UnknownNameError,
)
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.llm import LLM, Budget, DiskCache, Usage
from promptopt.optimizers import Optimizer, OptimizeResult, optimizers
from promptopt.registry import Registry
from promptopt.runs import (
    RefineResult,
    RunResult,
    best_template,
    evaluate,
    make_llms,
    make_task,
    predict,
    refine,
    resume_run,
    run,
)
from promptopt.scoring import SCSScorer, make_metric, metrics
from promptopt.search import SearchContext
from promptopt.tasks import CSVTask, PromptRecoveryTask, Task, tasks
from promptopt.template import Template
from promptopt.tracking import Tracker
from promptopt.version import __version__

__all__ = [
    "LLM",
    "Budget",
    "BudgetExhausted",
    "CSVTask",
    "CompareResult",
    "ConfigError",
    "DataError",
    "DataGenSummary",
    "DiskCache",
    "Evaluation",
    "Evaluator",
    "Example",
    "LLMError",
    "OptimizeResult",
    "Optimizer",
    "PromptRecoveryTask",
    "PromptoptError",
    "RefineResult",
    "Registry",
    "ResumeError",
    "RunResult",
    "SCSScorer",
    "SearchContext",
    "Splits",
    "Task",
    "Template",
    "Tracker",
    "UnknownNameError",
    "Usage",
    "__version__",
    "best_template",
    "compare",
    "evaluate",
    "generate_data",
    "load_examples",
    "make_llms",
    "make_metric",
    "make_task",
    "metrics",
    "optimizers",
    "predict",
    "refine",
    "resume_run",
    "run",
    "sample_path",
    "split_examples",
    "tasks",
]
