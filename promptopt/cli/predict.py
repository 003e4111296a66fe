"""`promptopt predict`: a template's (or a run's) predictions for a data file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptopt.cli._common import (
    explicit,
    friendly_errors,
    out,
    progress,
)
from promptopt.cli._options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    ApiBase,
    Concurrency,
    Inputs,
    Metric,
    Model,
    NoCache,
    Storage,
    Target,
    TaskOption,
    task_options,
)
from promptopt.runs import DEFAULT_STORAGE


def predict_command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", "-d", help="CSV/JSONL/Parquet to predict on.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission CSV.")] = Path(
        "submission.csv"
    ),
    template: Annotated[
        str | None, typer.Option(help="Template file or instruction (default: study's best).")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study whose best template to use.")] = None,
    storage: Storage = DEFAULT_STORAGE,
    task: Annotated[
        str, typer.Option("--task", "-t", help="Registered task name (default: the --study's "
                          "task and options, else prompt-recovery).")
    ] = "prompt-recovery",
    inputs: Inputs = None,
    target: Target = None,
    metric: Metric = None,
    task_option: TaskOption = [],  # noqa: B006 - Typer needs a literal default
    model: Model = DEFAULT_MODEL,
    no_cache: NoCache = False,
    api_base: ApiBase = None,
    concurrency: Concurrency = DEFAULT_CONCURRENCY,
) -> None:
    """Predict every row of DATA with a template and write a Kaggle submission (id,target)."""
    from promptopt.cli._options import study_task
    from promptopt.runs import best_template
    from promptopt.runs import predict as run_predict

    with friendly_errors():
        if template is None and study is None:
            raise typer.BadParameter("give --template or --study", param_hint="--template")
        tpl = template if template is not None else best_template(storage, str(study))
        options = task_options(inputs, target, metric, task_option)
        stored = study_task(storage, study) if study is not None else None
        if stored is not None and not explicit(ctx, "task"):
            task, options = stored[0], {**stored[1], **options}
        with progress(None, "predict: LLM calls") as advance:
            n = run_predict(tpl, data, output, task=task, task_options=options, model=model,
                            cache=not no_cache, api_base=api_base, concurrency=concurrency,
                            on_progress=advance)
    out.print(f"wrote {n} predictions to {output}")
