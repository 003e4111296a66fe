"""promptopt: automatic prompt optimization, tracked in Optuna.

Library use mirrors the CLI::

    from promptopt import run
    result = run("opro", budget=100, seed=0)
    print(result.template.instruction, result.test_score)
"""

__version__ = "0.1.0"

from promptopt.apply import best_template, evaluate, predict  # noqa: E402
from promptopt.building import make_llms, make_task  # noqa: E402
from promptopt.comparison import CompareResult, compare  # noqa: E402
from promptopt.data import Example, Splits, load_examples, sample_path, split_examples  # noqa: E402
from promptopt.datagen import DataGenSummary, generate_data  # noqa: E402
from promptopt.errors import (  # noqa: E402
    BudgetExhausted,
    ConfigError,
    DataError,
    LLMError,
    PromptoptError,
    ResumeError,
    UnknownNameError,
)
from promptopt.evaluator import Evaluation, Evaluator  # noqa: E402
from promptopt.llm import LLM, Budget, DiskCache, Usage  # noqa: E402
from promptopt.metrics import make_metric, metrics  # noqa: E402
from promptopt.optimizers import Optimizer, OptimizeResult, SearchContext, optimizers  # noqa: E402
from promptopt.refine import RefineResult, refine  # noqa: E402
from promptopt.registry import Registry  # noqa: E402
from promptopt.runner import RunResult, resume_run, run  # noqa: E402
from promptopt.scorer import SCSScorer  # noqa: E402
from promptopt.tasks import CSVTask, PromptRecoveryTask, Task, tasks  # noqa: E402
from promptopt.template import Template  # noqa: E402
from promptopt.tracker import Tracker  # noqa: E402

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
