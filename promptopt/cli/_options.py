"""The options the ``promptopt`` commands share, each declared once.

Defaults come from the run spec (:class:`~promptopt.runs.RunSpec`'s parts), so a
command-line default and a library default are the same value. Task options
(``--inputs a,b --target y --metric exact`` and ``--task-option KEY=VALUE``, shared by
``run``, ``eval``, ``compare``, ``predict`` and ``refine``) become the ``task_options``
of :func:`promptopt.run` (and friends); only the options given are passed, so a task's
own defaults apply and ``--resume`` compares only what was given again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from promptopt.runs import LLMSpec, SearchSpec, TaskSpec

Task = Annotated[str, typer.Option("--task", "-t", help="Registered task name.")]
Data = Annotated[
    Path | None,
    typer.Option("--data", "-d", help="Dataset (CSV, JSONL, Parquet). Default: bundled sample."),
]
Model = Annotated[
    str, typer.Option("--model", help="Recovery LLM: a LiteLLM model string or llamacpp/<name>.")
]
Proposer = Annotated[
    str | None,
    typer.Option(help="LLM that writes new instructions (default: the embedded default "
                 "proposer with the default --model, else --model)."),
]
Start = Annotated[
    str | None,
    typer.Option(help="Starting template: a .json/.txt file or the instruction itself."),
]
Scorer = Annotated[
    str,
    typer.Option(help="Scorer: auto, minilm, sentence-t5, a sentence-transformers name or path."),
]
Storage = Annotated[str, typer.Option(help="Optuna storage URL.")]
TrainSize = Annotated[float, typer.Option("--train", help="Train split size (count or fraction).")]
ValSize = Annotated[float, typer.Option("--val", help="Validation split size (count or fraction).")]
TestSize = Annotated[float, typer.Option("--test", help="Test split size (count or fraction).")]
SplitSeed = Annotated[int, typer.Option(help="Seed of the train/val/test split.")]
NoCache = Annotated[
    bool, typer.Option("--no-cache", help="Do not read or write the disk cache.")
]
ApiBase = Annotated[
    str | None,
    typer.Option(help="Provider URL for both LLMs, e.g. an OpenAI-compatible server "
                 "(vLLM, llama.cpp) at http://HOST:PORT/v1 with --model openai/NAME."),
]
MaxErrors = Annotated[
    int,
    typer.Option(help="Failed evaluations tolerated per run (each recorded as a failed trial, "
                 "the search goes on); one more stops the run, to --resume later."),
]
Concurrency = Annotated[
    int,
    typer.Option(min=1, help="LLM requests in flight at once for a remote provider (the "
                 "embedded model answers one at a time)."),
]
Timeout = Annotated[
    float, typer.Option(help="Seconds per LLM request before it times out (and is retried).")
]
SkipBadRows = Annotated[
    bool,
    typer.Option(
        "--skip-bad-rows",
        help="Skip data rows with empty/non-text cells or duplicate ids (listed in a warning).",
    ),
]
Method = Annotated[str, typer.Option("--method", "-m", help="Optimizer (see `list`).")]
Budget = Annotated[
    int, typer.Option(help="Max LLM calls for the search, proposer calls included.")
]
Seed = Annotated[int, typer.Option(help="Search seed.")]
Settings = Annotated[
    list[str],
    typer.Option("--set", help="Optimizer setting KEY=VALUE (JSON values), repeatable."),
]
Suffix = Annotated[
    bool,
    typer.Option(
        "--suffix",
        help="Append a learned mean-prompt string to every prediction of the final "
        "template; reports the test score with and without it.",
    ),
]
Select = Annotated[
    list[str],
    typer.Option("--select", help="Final-choice setting KEY=VALUE, repeatable: confidence "
                 "(default 0.9), val_first (grow validation from this many examples for close "
                 "finalists), reserve_share (0.5), resamples (2000). See docs/guides/methods.md."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

DEFAULT_TASK = TaskSpec.task
DEFAULT_SCORER = TaskSpec.scorer
DEFAULT_TRAIN, DEFAULT_VAL = TaskSpec.train, TaskSpec.val
DEFAULT_TEST = cast(float, TaskSpec.test)  # None (the rest) is not a command-line choice
DEFAULT_SPLIT_SEED = TaskSpec.split_seed
DEFAULT_MODEL = LLMSpec.model
DEFAULT_TIMEOUT = LLMSpec.timeout
DEFAULT_CONCURRENCY = LLMSpec.concurrency
DEFAULT_METHOD = SearchSpec.method
DEFAULT_BUDGET = SearchSpec.budget
DEFAULT_MAX_ERRORS = SearchSpec.max_errors

Inputs = Annotated[
    str | None,
    typer.Option("--inputs", help="Task option (csv): input columns, comma-separated, e.g. "
                 "question,context."),
]
Target = Annotated[
    str | None, typer.Option("--target", help="Task option (csv): the column to predict.")
]
Metric = Annotated[
    str | None,
    typer.Option("--metric", help="What judges predictions, on every task: exact (ignores "
                 "case and whitespace), rouge-l, scs (embedding model: --scorer), human "
                 "(you rate in optuna-dashboard), a plugin metric, or module:function for "
                 "your own Python metric (default: the task's own, SCS for prompt-recovery, "
                 "exact for csv)."),
]
TaskOption = Annotated[
    list[str],
    typer.Option("--task-option", help="Other task option KEY=VALUE (JSON values), repeatable, "
                 "e.g. answer=full (csv: keep the whole answer, not its first line)."),
]


def task_options(
    inputs: str | None, target: str | None, metric: str | None, pairs: list[str]
) -> dict[str, Any]:
    """The task options given on the command line (none given: ``{}``)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}",
                                     param_hint="--task-option")
        key, raw = pair.split("=", 1)
        try:
            options[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip()] = raw
    if inputs is not None:
        options["inputs"] = [name.strip() for name in inputs.split(",") if name.strip()]
    if target is not None:
        options["target"] = target
    if metric is not None:
        options["metric"] = metric
    return options


def study_task(storage: str, study: str) -> tuple[str, dict[str, Any]] | None:
    """The task name and options a stored run used (None: the study has no settings)."""
    from promptopt.tracking import StudyAttrs, load_study_attrs

    settings = StudyAttrs(load_study_attrs(storage, study)).settings
    if settings is None or "task" not in settings:
        return None
    return str(settings["task"]), dict(settings.get("task_options") or {})
