"""``promptopt refine``: apply a person's critique to a template (see :func:`promptopt.refine`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from promptopt.cli._common import err, format_score, friendly_errors, out, progress, split_size
from promptopt.cli._options import (
    DEFAULT_BUDGET,
    Data,
    Inputs,
    Metric,
    NoCache,
    Storage,
    Target,
    TaskOption,
    task_options,
)
from promptopt.runs import DEFAULT_STORAGE

FromStudy = "(default: the study's, else run's default)"


def _opt_size(value: float | None) -> int | float | None:
    return None if value is None else split_size(value)


def refine_command(
    feedback: Annotated[
        str, typer.Option("--feedback", "-f", help="Your critique of the template, read as "
                          "'the problem with this prompt is that ...'.")
    ],
    study: Annotated[
        str | None, typer.Option(help="Finished run (or refine) study whose best template to "
                                 "refine; its task, data, models, scorer and splits are the "
                                 "defaults.")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="Template to refine instead: a .json/.txt file or the "
                                 "instruction.")
    ] = None,
    storage: Storage = DEFAULT_STORAGE,
    k: Annotated[int, typer.Option("--k", "-k", help="Edited candidates to ask for.")] = 4,
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="Where to save the best template (JSON).")
    ] = Path("refined.json"),
    refine_study: Annotated[
        str | None, typer.Option(help="Study to record the evaluations in (default: generated).")
    ] = None,
    budget: Annotated[
        int, typer.Option(help="Max LLM calls, proposer calls included.")
    ] = DEFAULT_BUDGET,
    seed: Annotated[int, typer.Option(help="Seed of the minibatch and the edit samples.")] = 0,
    task: Annotated[str | None, typer.Option("--task", "-t", help=f"Task {FromStudy}.")] = None,
    data: Data = None,
    model: Annotated[str | None, typer.Option(help=f"Recovery LLM {FromStudy}.")] = None,
    proposer: Annotated[
        str | None, typer.Option(help=f"LLM that writes the edits {FromStudy}.")
    ] = None,
    scorer: Annotated[str | None, typer.Option(help=f"Scorer {FromStudy}.")] = None,
    inputs: Inputs = None,
    target: Target = None,
    metric: Metric = None,
    task_option: TaskOption = [],  # noqa: B006 - Typer needs a literal default
    skip_bad_rows: Annotated[
        bool,
        typer.Option("--skip-bad-rows", help="Skip data rows with empty/non-text cells or "
                     f"duplicate ids (listed in a warning) {FromStudy}."),
    ] = False,
    train: Annotated[float | None, typer.Option("--train", help="Train split size.")] = None,
    val: Annotated[float | None, typer.Option("--val", help="Validation split size.")] = None,
    test: Annotated[float | None, typer.Option("--test", help="Test split size.")] = None,
    split_seed: Annotated[int | None, typer.Option(help="Seed of the split.")] = None,
    api_base: Annotated[str | None, typer.Option(help="Provider URL for both LLMs.")] = None,
    no_cache: NoCache = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Apply a critique (--feedback) to a study's best template or a --template, the way
    ProTeGi applies a textual gradient; score the edits and the original on validation."""
    from promptopt.runs import refine

    with friendly_errors(), progress(budget, "refine: LLM calls") as advance:
        result = refine(
            feedback, study=study, template=template, storage=storage, k=k, out=out_file,
            refine_study=refine_study, budget=budget, seed=seed, cache=not no_cache,
            on_progress=advance, task=task, data=data, model=model, proposer=proposer,
            scorer=scorer, split_seed=split_seed, api_base=api_base,
            task_options=task_options(inputs, target, metric, task_option) or None,
            skip_bad_rows=True if skip_bad_rows else None,
            train=_opt_size(train), val=_opt_size(val), test=_opt_size(test),
            on_study=lambda name: err.print(f"refine study [bold]{name}[/bold] in {storage}"),
        )
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    table = Table(title=Text(f"promptopt refine: {result.feedback}"), show_lines=True)
    for column in ("", "candidate", "val", "n"):
        table.add_column(column, justify="right" if column in ("val", "n") else "left")
    for cand in result.candidates:
        best = cand.template.id == result.best.id
        label = ("original: " if cand.kind == "original" else "") + cand.template.instruction
        table.add_row(
            "best" if best else "", Text(label, style="bold" if best else ""),
            "-" if cand.val_score is None else format_score(cand.val_score), str(cand.n),
        )
    out.print(table)
    u = result.usage
    out.print(f"scorer {result.scorer} | study {result.study} | budget "
              f"{result.budget_spent}/{result.budget} | calls {u['calls']} (cache hits "
              f"{u['cache_hits']}) | cost ${u['cost']:.4f}")
    if result.rejected:
        out.print(f"rejected proposals: {result.rejected}")
    for note in result.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    out.print(f"best template (val {format_score(result.best_score)}, original "
              f"{format_score(result.original_score)}) saved to {result.out}", highlight=False)
