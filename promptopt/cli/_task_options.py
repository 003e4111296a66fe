"""Task options on the command line: ``--inputs a,b --target y --metric exact`` and
``--task-option KEY=VALUE``, shared by ``run``, ``eval``, ``compare`` and ``predict``.

They become the ``task_options`` of :func:`promptopt.run` (and friends); only the
options given are passed, so a task's own defaults apply and ``--resume`` compares
only what was given again.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

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
    typer.Option("--metric", help="Task option (csv): exact (ignores case and whitespace), "
                 "rouge-l, scs (embedding model: --scorer), a plugin metric, or "
                 "module:function for your own Python metric (default: exact)."),
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
    from promptopt.tracking import load_study_attrs

    settings = load_study_attrs(storage, study).get("settings")
    if not isinstance(settings, dict) or "task" not in settings:
        return None
    return str(settings["task"]), dict(settings.get("task_options") or {})
