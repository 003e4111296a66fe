"""``promptopt data ...``: dataset commands (``generate`` makes prompt-recovery data)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptopt.cli._common import err, friendly_errors, out
from promptopt.cli._options import NoCache
from promptopt.llm import DEFAULT_PROPOSER

data_app = typer.Typer(
    name="data",
    help="Make datasets: `promptopt data generate` writes prompt-recovery training rows.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@data_app.command()
def generate(
    originals: Annotated[
        Path,
        typer.Option(help="Original texts: .txt (one per line) or .csv/.jsonl/.parquet with a "
                     "column original_text or text."),
    ],
    output: Annotated[
        Path, typer.Option("--out", "-o", help="CSV to append rows to (continued if it exists).")
    ],
    instructions: Annotated[
        Path | None,
        typer.Option(help="Rewrite instructions: .txt (one per line) or a file with a column "
                     "rewrite_prompt or instruction. Default: built-in instruction families."),
    ] = None,
    n: Annotated[
        int, typer.Option("-n", "--rows", help="Rows the output should hold (existing count).")
    ] = 100,
    model: Annotated[
        str, typer.Option(help="Rewriter LLM: a LiteLLM model string or llamacpp/<name> "
                          "(default: the embedded default proposer, an instruct model).")
    ] = DEFAULT_PROPOSER,
    seed: Annotated[int, typer.Option(help="Seed of the pair order and the sampling.")] = 0,
    families: Annotated[
        str | None,
        typer.Option(help="Built-in families to combine, comma-separated (default: all of "
                     "tone, genre, audience, format, length, persona)."),
    ] = None,
    temperature: Annotated[float, typer.Option(help="Rewriter sampling temperature.")] = 0.7,
    max_tokens: Annotated[int, typer.Option(help="Longest rewrite, in tokens.")] = 256,
    max_calls: Annotated[
        int | None, typer.Option(help="Stop after this many LLM requests (cache hits count).")
    ] = None,
    api_base: Annotated[
        str | None, typer.Option(help="Provider URL, e.g. an OpenAI-compatible server.")
    ] = None,
    no_cache: NoCache = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Rewrite original texts with instructions and write Kaggle-format rows
    (id, original_text, rewrite_prompt, rewritten_text). Rerunning continues the file."""
    from promptopt.datagen import generate_data
    from promptopt.runs import sigterm_as_interrupt

    done = {"rows": 0}
    with friendly_errors(), sigterm_as_interrupt(), Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err,
        disable=not err.is_terminal and os.environ.get("PROMPTOPT_PROGRESS") != "1",
    ) as progress:
        bar = progress.add_task("data generate: rows", total=n)

        def on_progress(rows: int, total: int) -> None:
            done["rows"] = rows
            progress.update(bar, completed=rows, total=total)

        try:
            summary = generate_data(
                originals, output, instructions=instructions, n=n, model=model, seed=seed,
                families=[f.strip() for f in families.split(",")] if families else None,
                temperature=temperature, max_tokens=max_tokens, max_calls=max_calls,
                cache=not no_cache, api_base=api_base, on_progress=on_progress,
            )
        except KeyboardInterrupt:
            progress.stop()
            err.print(f"[red]interrupted[/red]: {output} is valid (at least {done['rows']} "
                      "rows); rerun the same command to continue it", highlight=False)
            raise typer.Exit(130) from None
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
        return
    table = Table(title=f"promptopt data generate: {summary.model} ({summary.stopped})")
    table.add_column("rows")
    table.add_column("count", justify="right")
    table.add_row("in the file before", str(summary.existing))
    table.add_row("[bold]written now[/bold]", f"[bold]{summary.written}[/bold]")
    table.add_row("pairs already in the file (skipped)", str(summary.skipped))
    for reason, count in summary.dropped.items():
        table.add_row(f"dropped: {reason.replace('_', ' ')}", str(count))
    out.print(table)
    u = summary.usage
    out.print(f"LLM calls {u['calls']} (cache hits {u['cache_hits']}) | tokens "
              f"{u['prompt_tokens']}+{u['completion_tokens']} | cost ${u['cost']:.4f}")
    out.print(f"{summary.rows} of {summary.requested} rows in {summary.output}", highlight=False)
    if summary.stopped != "done":
        out.print(f"[yellow]note:[/yellow] stopped early ({summary.stopped}); give more "
                  "originals or instructions, or a larger --max-calls")
