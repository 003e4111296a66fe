"""The options the ``promptopt`` commands share, each declared once.

Each run setting's option comes from its field of the run spec
(:class:`~promptopt.runs.RunSpec`'s parts): flag, help and default are written there
once (:func:`spec_option`), so a command-line default and a library default are the same
value and the help says what the library's documentation says. Task options
(``--inputs a,b --target y --metric exact`` and ``--task-option KEY=VALUE``, shared by
``run``, ``eval``, ``compare``, ``predict`` and ``refine``) become the ``task_options``
of :func:`promptopt.run` (and friends); only the options given are passed, so a task's
own defaults apply and ``--resume`` compares only what was given again.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from promptopt.cli._common import parse_settings, split_size
from promptopt.runs import SPEC_FIELDS as FIELDS
from promptopt.runs import LLMSpec, SearchSpec, TaskSpec
from promptopt.runs import field_default as default
from promptopt.runs import field_option as option


def _typer_option(name: str, help: str | None = None) -> Any:
    """The ``typer.Option`` of spec field ``name``: its flag, short alias, help, minimum."""
    meta = option(name)
    flags = [meta.flag] + ([meta.short] if meta.short else [])
    return typer.Option(*flags, help=help or meta.help, min=meta.minimum)


_CLI_TYPES: dict[str, Any] = {
    "data": Path | None,  # a file the command line names
    "train": float, "val": float, "test": float,  # counts or fractions (split_size)
    "settings": list[str], "selection": list[str],  # KEY=VALUE pairs (parse_settings)
    "start": str | None,  # a file or the instruction itself
}
"""Spec fields whose command-line type differs from the field's Python type."""
_CLI_DEFAULTS: dict[str, Any] = {"test": cast(float, default("test")),  # None is no CLI choice
                                 "settings": [], "selection": []}
_PY_TYPES: dict[str, Any] = {"str": str, "str | None": str | None, "int": int,
                             "float": float, "bool": bool}


def spec_option(name: str, *, help: str | None = None) -> tuple[Any, Any]:
    """The command-line option of spec field ``name``: ``(annotation, default)``, both
    from the field (its metadata's flag and help, its default)."""
    kind = _CLI_TYPES.get(name) or _PY_TYPES[str(FIELDS[name].type)]
    value = _CLI_DEFAULTS[name] if name in _CLI_DEFAULTS else default(name)
    return Annotated[kind, _typer_option(name, help)], value


def _alias(name: str) -> Any:
    return spec_option(name)[0]


Task = _alias("task")
Data = _alias("data")
Model = _alias("model")
Proposer = _alias("proposer")
Start = _alias("start")
Scorer = _alias("scorer")
TrainSize = _alias("train")
ValSize = _alias("val")
TestSize = _alias("test")
SplitSeed = _alias("split_seed")
ApiBase = _alias("api_base")
MaxErrors = _alias("max_errors")
Concurrency = _alias("concurrency")
Timeout = _alias("timeout")
SkipBadRows = _alias("skip_bad_rows")
Method = _alias("method")
Budget = _alias("budget")
Seed = _alias("seed")
Settings = _alias("settings")
Suffix = _alias("suffix")
Select = _alias("selection")
Storage = Annotated[str, typer.Option(help="Optuna storage URL.")]
NoCache = Annotated[
    bool, typer.Option("--no-cache", help="Do not read or write the disk cache.")
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
    typer.Option("--task-option", help=option("task_options").help.split(" In Python")[0]),
]
TASK_OPTION_PARAMS: dict[str, tuple[Any, Any]] = {
    "inputs": (Inputs, None), "target": (Target, None), "metric": (Metric, None),
    "task_option": (TaskOption, []),
}
"""The command-line options that make up ``task_options`` (:func:`task_options`)."""


def task_options(
    inputs: str | None, target: str | None, metric: str | None, pairs: list[str]
) -> dict[str, Any]:
    """The task options given on the command line (none given: ``{}``)."""
    options = parse_settings(pairs, "--task-option")
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


def with_spec_options(
    *names: str, help: Mapping[str, str] | None = None, first: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of the spec fields ``names`` (:func:`spec_option`;
    ``task_options`` as ``--inputs``, ``--target``, ``--metric`` and ``--task-option``).

    The command declares its own options and a last parameter ``spec``; it receives there
    the :func:`promptopt.run` arguments the options give (split sizes read, ``KEY=VALUE``
    pairs parsed, task options gathered), by field name. ``help`` replaces a field's help
    for this command; the command's own options named in ``first`` come before the spec's
    in its help, the others after.
    """
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        raise ValueError(f"not run spec fields: {unknown}")
    params: dict[str, tuple[Any, Any]] = {}
    for name in names:
        if name == "task_options":
            params.update(TASK_OPTION_PARAMS)
        else:
            params[name] = spec_option(name, help=(help or {}).get(name))

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "spec"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                   default=value) for name, (kind, value) in params.items()]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in params if name in kwargs}
            return command(*args, spec=spec_args(given), **kwargs)

        lead = [p for p in own if p.annotation is typer.Context or p.name in first]
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p not in lead]
        whole = lead + added + rest
        wrapper.__signature__ = signature.replace(parameters=whole)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in whole}
        return wrapper

    return decorate


def spec_args(values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`promptopt.run` arguments from the values of :func:`with_spec_options`'
    options, by field name."""
    args: dict[str, Any] = {}
    for name, value in values.items():
        if name in TASK_OPTION_PARAMS:
            continue
        if name in ("train", "val", "test"):
            value = split_size(value)
        elif name in ("settings", "selection"):
            value = parse_settings(value, option(name).flag)
        args[name] = value
    if any(name in values for name in TASK_OPTION_PARAMS):
        args["task_options"] = task_options(values.get("inputs"), values.get("target"),
                                            values.get("metric"), values.get("task_option", []))
    return args
