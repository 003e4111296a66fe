"""`promptopt eval`: score a template, or a run's start and result on other data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from promptopt.cli._common import (
    explicit,
    format_gain,
    format_metrics,
    format_score,
    friendly_errors,
    out,
    progress,
)
from promptopt.cli._options import NoCache, with_spec_options
from promptopt.errors import ConfigError
from promptopt.runs import DEFAULT_STORAGE, EVAL_FIELDS


@with_spec_options(*EVAL_FIELDS, first=("template", "split"))
def eval_command(
    ctx: typer.Context,
    template: Annotated[
        str | None, typer.Argument(help="A .json/.txt template file or the instruction; "
                                   "leave it out to score a run's templates (--study) on --data.")
    ] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    storage: Annotated[
        str | None, typer.Option(help="Record the evaluation in this storage.")
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Study to record into; without TEMPLATE, the finished "
                                 "run whose start and returned template to score on --data.")
    ] = None,
    no_cache: NoCache = False,
    *,
    spec: dict[str, Any],
) -> None:
    """Score one TEMPLATE on one split and show a few predictions; or, with --study and
    --data and no TEMPLATE, score a run's start and returned template on every row of
    another data file (transfer) with the run's task, scorer and model."""
    from promptopt.runs import evaluate

    data, model = spec["data"], spec["model"]
    api_base, skip_bad_rows = spec["api_base"], spec["skip_bad_rows"]
    if template is None:
        _transfer(study, data, storage, model if explicit(ctx, "model") else None,
                  api_base=api_base, skip_bad_rows=skip_bad_rows, no_cache=no_cache,
                  concurrency=spec["concurrency"] if explicit(ctx, "concurrency") else None)
        return
    with friendly_errors(), progress(None, "eval: LLM calls") as advance:
        ev = evaluate(template, split=split, cache=not no_cache, storage=storage, study=study,
                      on_progress=advance, **spec)
    table = Table(
        title=f"{split} split: mean score {format_score(ev.score)} over {ev.n} ({ev.scorer})"
    )
    table.add_column("id")
    table.add_column("prediction")
    table.add_column("score", justify="right")
    for i, p, s in list(zip(ev.example_ids, ev.predictions, ev.scores, strict=True))[:10]:
        table.add_row(escape(i), escape(p), format_score(s))
    out.print(table)
    out.print(f"mean score: {format_score(ev.score)}")
    if ev.metrics:
        out.print(f"metrics: {format_metrics(dict(ev.metrics))}")


def _transfer(study: str | None, data: Path | str | None, storage: str | None,
              model: str | None, *,
              api_base: str | None, skip_bad_rows: bool, no_cache: bool,
              concurrency: int | None) -> None:
    from promptopt.runs import transfer

    with friendly_errors():
        if not study or not data:
            raise ConfigError("eval needs a TEMPLATE, or --study NAME and --data OTHER.csv to "
                              "score a run's templates on other data")
        with progress(None, "eval: LLM calls") as advance:
            found = transfer(storage or DEFAULT_STORAGE, study, data, model=model,
                             api_base=api_base, skip_bad_rows=skip_bad_rows,
                             cache=not no_cache, concurrency=concurrency,
                             on_progress=advance)
    table = Table(title=f"{escape(study)} on {escape(str(data))}: {found.start.n} rows "
                  f"({found.start.scorer})")
    table.add_column("template")
    table.add_column("mean score", justify="right")
    table.add_column("instruction")
    for label, ev in (("start", found.start), ("returned", found.returned)):
        table.add_row(label, format_score(ev.score), escape(ev.template.instruction[:120]))
    out.print(table)
    out.print(f"gain over the start on {found.start.n} rows: {format_gain(found.gain)}",
              soft_wrap=True)
