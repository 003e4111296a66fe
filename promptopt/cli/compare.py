"""``promptopt compare``: several methods over seeds on one task.

The library side is :func:`promptopt.comparison._compare.compare`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from promptopt.cli._common import (
    command_line,
    err,
    friendly_errors,
    hint_on_error,
    out,
    parse_seeds,
    progress,
)
from promptopt.cli._options import NoCache, Storage, with_spec_options
from promptopt.comparison import PER_RUN
from promptopt.redact import redact
from promptopt.runs import DEFAULT_STORAGE, SPEC_FIELDS


@with_spec_options(*(name for name in SPEC_FIELDS if name not in PER_RUN),
                   help={"budget": "Max LLM calls per run (each method and seed), proposer "
                                   "included."},
                   first=("methods", "seeds"))
def compare_command(
    ctx: typer.Context,
    methods: Annotated[
        str | None,
        typer.Option("--methods", help="Comma-separated methods, e.g. opro,ape (default: all)."),
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated search seeds, e.g. 0,1,2.")] = "0",
    storage: Storage = DEFAULT_STORAGE,
    prefix: Annotated[
        str | None,
        typer.Option(help="Study-name prefix: studies PREFIX-METHOD-sSEED (default: generated)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for report.md, best_so_far.png, trials.csv "
                     "(default: the prefix, compare-<timestamp>-<hex>)."),
    ] = None,
    no_cache: NoCache = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the interrupted comparison --prefix with the "
                     "same options: finished runs give their stored results, an interrupted "
                     "one is replayed from the cache and continued, missing ones run."),
    ] = False,
    *,
    spec: dict[str, Any],
) -> None:
    """Run several METHODS on one task with the same settings and seeds; table, plot, report."""
    from promptopt.comparison import TABLE_COLUMNS, resolve_methods
    from promptopt.comparison import compare as run_compare
    from promptopt.runs import new_study_name, sigterm_as_interrupt

    with friendly_errors():
        if resume and prefix is None:
            raise typer.BadParameter("give the --prefix of the comparison to resume",
                                     param_hint="--resume")
        names = resolve_methods(methods.split(",") if methods is not None else None)
        seed_list = parse_seeds(seeds)
        prefix = prefix or new_study_name("compare")
        folder = out_dir or Path(prefix)
        err.print(f"{'resuming comparison' if resume else 'comparing'} {', '.join(names)} over "
                  f"seeds {seed_list}: studies [bold]{escape(prefix)}-<method>-s<seed>[/bold] in "
                  f"{escape(redact(storage))}, files in {escape(str(folder))}")
        again = command_line(ctx, resume=True, prefix=prefix)
        total = spec["budget"] * len(names) * len(seed_list)
        with progress(total, "compare: LLM calls") as advance, \
                sigterm_as_interrupt(), hint_on_error(again):
            result = run_compare(
                names, seeds=seed_list, storage=storage, prefix=prefix, out_dir=folder,
                cache=not no_cache, resume=resume, on_progress=advance,
                on_study=lambda name: err.print(f"study [bold]{name}[/bold]"), **spec,
            )
    table = Table(
        title=f"promptopt compare: {result.settings['task']}, seeds "
        f"{', '.join(map(str, result.seeds))}, "
        f"budget {spec['budget']}, scorer {result.settings['scorer']}",
        caption="scores: mean ± sd over seeds; usage: mean per run",
    )
    for i, column in enumerate(TABLE_COLUMNS):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row, cells in zip(result.rows, result.table(), strict=True):
        table.add_row(*cells, end_section=row is result.rows[len(result.methods) - 1])
    out.print(table)
    calls = sum(r.usage["calls"] for r in result.runs)
    hits = sum(r.usage["cache_hits"] for r in result.runs)
    cost = sum(r.usage["cost"] for r in result.runs)
    wall = sum(r.wall_time_s for r in result.runs)
    out.print(f"{len(result.runs)} runs | calls {calls} (cache hits {hits}) | cost ${cost:.4f} "
              f"| {wall:.1f}s | studies {escape(result.prefix)}-<method>-s<seed> in "
              f"{escape(redact(result.storage))}")
    for kind, path in result.files.items():
        out.print(f"{kind}: {path}", highlight=False)
