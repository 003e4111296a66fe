"""Runs: one search end to end (run, resume, workers, sharing, results) and applying
its result (evaluate, predict, refine)."""

from promptopt.runs._apply import (
    EVAL_FIELDS,
    Transfer,
    best_template,
    evaluate,
    predict,
    transfer,
)
from promptopt.runs._building import DEFAULT_SPLITS, make_llms, make_task, new_study_name
from promptopt.runs._process import process_start
from promptopt.runs._refine import RefineResult, refine
from promptopt.runs._results import RunResult
from promptopt.runs._runner import (
    DEFAULT_STORAGE,
    Live,
    build_task,
    execute,
    resume_run,
    run,
)
from promptopt.runs._session import RunSession, sigterm_as_interrupt
from promptopt.runs._sharing import SharedHistory
from promptopt.runs._spec import FIELDS as SPEC_FIELDS
from promptopt.runs._spec import (
    LLMSpec,
    RunSpec,
    SearchSpec,
    TaskSpec,
    passed_fields,
    spec_arguments,
)
from promptopt.runs._spec import default as field_default
from promptopt.runs._spec import option as field_option
from promptopt.runs._state import load_for_resume
from promptopt.runs._workers import CLAIM_ATTR, REGISTRATION_ATTR, worker_seed

__all__ = [
    "EVAL_FIELDS",
    "Transfer",
    "transfer",
    "LLMSpec",
    "Live",
    "RunSession",
    "RunSpec",
    "SPEC_FIELDS",
    "field_default",
    "field_option",
    "passed_fields",
    "spec_arguments",
    "SearchSpec",
    "TaskSpec",
    "build_task",
    "execute",
    "CLAIM_ATTR",
    "DEFAULT_SPLITS",
    "DEFAULT_STORAGE",
    "REGISTRATION_ATTR",
    "RefineResult",
    "RunResult",
    "SharedHistory",
    "best_template",
    "evaluate",
    "load_for_resume",
    "make_llms",
    "make_task",
    "new_study_name",
    "predict",
    "process_start",
    "refine",
    "resume_run",
    "run",
    "sigterm_as_interrupt",
    "worker_seed",
]
