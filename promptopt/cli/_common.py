"""What the ``promptopt`` commands share: consoles, progress bar, error printing, and
small parsers (the shared options are in :mod:`promptopt.cli._options`)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from promptopt.errors import Interrupted, PromptoptError
from promptopt.redact import redact

if TYPE_CHECKING:
    from promptopt.scoring import GainInterval

out = Console()
err = Console(stderr=True)

def split_size(value: float) -> int | float:
    return int(value) if value >= 1 and float(value).is_integer() else value



@contextlib.contextmanager
def progress(total: int | None, label: str) -> Iterator[Any]:
    """A rich progress bar on stderr counting LLM requests; yields the advance callback."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal and os.environ.get("PROMPTOPT_PROGRESS") != "1",
    ) as progress:
        task_id = progress.add_task(label, total=total)
        yield lambda: progress.advance(task_id)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Print promptopt errors as one clear line (no traceback) and exit 2."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda msg, cat, *a, **k: err.print(
            f"[yellow]warning:[/yellow] {escape(redact(str(msg)))}", highlight=False
        )
        try:
            yield
        except PromptoptError as exc:
            err.print(f"[red]error:[/red] {escape(redact(str(exc)))}", highlight=False)
            _resume_hint(exc)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:
            why = f" ({exc.signal_name})" if isinstance(exc, Interrupted) else ""
            err.print(f"[red]interrupted[/red]{why}: the study and cache keep everything "
                      "recorded so far", highlight=False)
            _resume_hint(exc)
            raise typer.Exit(143 if isinstance(exc, Interrupted) else 130) from None


def _resume_hint(exc: BaseException) -> None:
    hint = getattr(exc, "resume_hint", None)
    if hint:
        err.print(f"resume with:  {redact(hint)}", highlight=False, markup=False, soft_wrap=True)


def parse_settings(pairs: list[str], option: str = "--set") -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        key, raw = pair.split("=", 1)
        try:
            settings[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key.strip()] = raw
    return settings


def format_score(value: float) -> str:
    return f"{value:.4f}"


def format_gain(gain: GainInterval | None) -> str:
    """A gain with its interval, ``+0.0120 [-0.0040, +0.0300]``, or ``-`` when unknown."""
    return "-" if gain is None else str(gain)


def format_metrics(metrics: dict[str, float]) -> str:
    """``log loss 0.9123, accuracy 0.5500``: a task's metrics on one line."""
    return ", ".join(f"{name.replace('_', ' ')} {format_score(v)}" for name, v in metrics.items())


def metric_label(scorer: str) -> str:
    """"SCS" for an embedding model's scores, else the metric's name (exact, rouge-l...)."""
    from promptopt.registry import metrics

    if scorer.startswith("human"):
        return "human rating"
    if scorer == "label-probability":
        return "p(true label)"
    return scorer if scorer in metrics or ":" in scorer else "SCS"


def explicit(ctx: typer.Context, param: str) -> bool:
    """Whether the user gave the option ``param`` (not its default)."""
    source = ctx.get_parameter_source(param)  # an enum of Typer's own (vendored) click
    return source is not None and source.name != "DEFAULT"


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected integers like 0,1,2, got {text!r}",
                                 param_hint="--seeds") from None
    if not seeds:
        raise typer.BadParameter("give at least one seed, e.g. 0,1,2", param_hint="--seeds")
    return seeds


@contextlib.contextmanager
def hint_on_error(command: str) -> Iterator[None]:
    """Make ``command`` the resume hint of whatever stops the block with one (an
    interrupted run inside a larger command is resumed through that command)."""
    try:
        yield
    except (PromptoptError, KeyboardInterrupt) as exc:
        if getattr(exc, "resume_hint", None):
            exc.resume_hint = command  # type: ignore[union-attr]
        raise


def command_line(ctx: typer.Context, **changes: Any) -> str:
    """The command being run, as the user could type it again: the options they gave,
    with ``changes`` (parameter name -> value; ``True`` for a flag) set or added."""
    words: list[Any] = ["promptopt", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        name = str(param.name)
        given = explicit(ctx, name) and ctx.params.get(name) not in (None, False)
        if name not in changes and not given:
            continue
        value = changes.get(name, ctx.params.get(name))
        flag = max(param.opts, key=len)  # --long rather than -s
        if getattr(param, "is_flag", False):
            words += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, split_size(value) if isinstance(value, float) else value]
    return shlex.join(str(w) for w in words)
