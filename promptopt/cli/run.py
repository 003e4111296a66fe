"""`promptopt run`: one search, its result shown as a table or JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from promptopt.cli._common import (
    err,
    explicit,
    format_gain,
    format_metrics,
    format_score,
    friendly_errors,
    metric_label,
    out,
    progress,
)
from promptopt.cli._options import TASK_OPTION_PARAMS, AsJson, NoCache, Storage, with_spec_options
from promptopt.redact import redact
from promptopt.runs import DEFAULT_STORAGE, SPEC_FIELDS, RunResult


@with_spec_options("method", *(name for name in SPEC_FIELDS if name != "method"))
def run_command(
    ctx: typer.Context,
    storage: Storage = DEFAULT_STORAGE,
    study: Annotated[str | None, typer.Option(help="Study name (default: generated).")] = None,
    no_cache: NoCache = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the interrupted run --study with its stored "
                     "settings; recorded work is replayed from the cache and storage."),
    ] = False,
    as_json: AsJson = False,
    *,
    spec: dict[str, Any],
) -> None:
    """Search for the best template with METHOD and report its held-out test score."""
    from promptopt.runs import resume_run, sigterm_as_interrupt
    from promptopt.runs import run as run_search

    verb = "resuming study" if resume else "study"
    common: dict[str, Any] = dict(
        storage=storage, cache=not no_cache,
        on_study=lambda name: err.print(f"{verb} [bold]{escape(name)}[/bold] in "
                                        f"{escape(redact(storage))}"),
    )
    if resume and study is None:
        raise typer.BadParameter("give the --study to resume", param_hint="--resume")
    budget = spec["budget"]
    total = None if resume and not explicit(ctx, "budget") else budget
    label = f"{study if resume else spec['method']}: LLM calls"
    with friendly_errors(), sigterm_as_interrupt(), progress(total, label) as advance:
        if resume:
            given = {k: v for k, v in spec.items() if k in SPEC_FIELDS and explicit(ctx, k)}
            if spec["task_options"] or any(explicit(ctx, k) for k in TASK_OPTION_PARAMS):
                given["task_options"] = spec["task_options"]
            result = resume_run(str(study), given=given, on_progress=advance, **common)
        else:
            result = run_search(study=study, on_progress=advance, **spec, **common)
    _show_run(result, as_json=as_json)


def _show_run(result: RunResult, *, as_json: bool = False) -> None:
    """Print a run's result: the start and best template with their scores, usage, notes."""
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    table = Table(title=f"promptopt run: {result.method} ({result.stopped})", show_lines=True)
    table.add_column("template")
    table.add_column("val", justify="right")
    table.add_column("test", justify="right")
    table.add_row("start: " + escape(result.start_template.instruction),
                  format_score(result.start_val_score),
                  format_score(result.start_test_score))
    table.add_row("[bold]best: " + escape(result.template.instruction) + "[/bold]",
                  format_score(result.val_score), format_score(result.test_score))
    if result.val_gain is not None or result.test_gain is not None:
        from promptopt.scoring import format_level

        level = (result.test_gain or result.val_gain).level  # type: ignore[union-attr]
        table.add_row(f"gain over the start [{format_level(level)} interval]",
                      format_gain(result.val_gain), format_gain(result.test_gain))
    out.print(table)
    u = result.usage
    out.print(
        f"scorer {result.scorer} | study {result.study} | trials {result.trials} | "
        f"budget {result.budget_spent}/{result.budget} | calls {u['calls']} "
        f"(cache hits {u['cache_hits']}) | tokens {u['prompt_tokens']}+{u['completion_tokens']} "
        f"| cost ${u['cost']:.4f} | {result.wall_time_s:.1f}s"
    )
    if result.test_score_without_suffix is not None:
        out.print(
            f"suffix {escape(repr(result.template.suffix))}: "
            f"test {format_score(result.test_score)} "
            f"with it, {format_score(result.test_score_without_suffix)} without"
        )
    if result.test_metrics:
        out.print(f"test metrics: best {format_metrics(result.test_metrics)} | start "
                  f"{format_metrics(result.start_test_metrics)}")
    if result.rejected:
        out.print(f"rejected proposals: {result.rejected}")
    if result.why:
        out.print(f"[yellow]{escape(result.why)}[/yellow]")
    if result.below_start:
        out.print("[red]the returned template scored below the start on test (its whole "
                  "interval lies below 0)[/red]")
    for note in result.notes:
        if note == result.why:
            continue
        out.print(f"[yellow]note:[/yellow] {escape(note)}")
    label = metric_label(result.scorer)
    out.print(f"best template (test {label} {format_score(result.test_score)}):")
    out.print(result.template.to_json(), highlight=False, markup=False, soft_wrap=True)

