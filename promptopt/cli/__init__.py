"""The ``promptopt`` command line: a thin Typer layer over :mod:`promptopt.runner`
and :mod:`promptopt.comparison`."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptopt import __version__
from promptopt.errors import Interrupted, PromptoptError
from promptopt.llm import DEFAULT_MODEL, EMBEDDED_MODELS
from promptopt.runner import DEFAULT_SPLITS, DEFAULT_STORAGE

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

app = typer.Typer(
    name="promptopt",
    help="Optimize LLM prompt templates; every search tracked in Optuna.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

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
    typer.Option(help="LLM that writes new instructions (default: --model)."),
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
SkipBadRows = Annotated[
    bool,
    typer.Option(
        "--skip-bad-rows",
        help="Skip data rows with empty/non-text cells or duplicate ids (listed in a warning).",
    ),
]


def _size(value: float) -> int | float:
    return int(value) if value >= 1 and float(value).is_integer() else value


def _version(value: bool) -> None:
    if value:
        out.print(f"promptopt {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Optimize LLM prompt templates; every search tracked in Optuna."""


@contextlib.contextmanager
def _progress(total: int | None, label: str) -> Iterator[Any]:
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
def _errors() -> Iterator[None]:
    """Print promptopt errors as one clear line (no traceback) and exit 2."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda msg, cat, *a, **k: err.print(
            f"[yellow]warning:[/yellow] {msg}"
        )
        try:
            yield
        except PromptoptError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
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
        err.print(f"resume with:  {hint}", highlight=False, markup=False, soft_wrap=True)


def _parse_settings(pairs: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        key, raw = pair.split("=", 1)
        try:
            settings[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key.strip()] = raw
    return settings


def _score(value: float) -> str:
    return f"{value:.4f}"


@app.command()
def run(
    ctx: typer.Context,
    method: Annotated[str, typer.Option("--method", "-m", help="Optimizer (see `list`).")] = "opro",
    task: Task = "prompt-recovery",
    data: Data = None,
    model: Model = DEFAULT_MODEL,
    proposer: Proposer = None,
    scorer: Scorer = "auto",
    budget: Annotated[
        int, typer.Option(help="Max LLM calls for the search, proposer calls included.")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Search seed.")] = 0,
    storage: Storage = DEFAULT_STORAGE,
    study: Annotated[str | None, typer.Option(help="Study name (default: generated).")] = None,
    train: TrainSize = DEFAULT_SPLITS["train"],
    val: ValSize = DEFAULT_SPLITS["val"],
    test: TestSize = DEFAULT_SPLITS["test"],
    split_seed: SplitSeed = 0,
    skip_bad_rows: SkipBadRows = False,
    start: Start = None,
    setting: Annotated[
        list[str],
        typer.Option("--set", help="Optimizer setting KEY=VALUE (JSON values), repeatable."),
    ] = [],  # noqa: B006 - Typer needs a literal default
    no_cache: NoCache = False,
    suffix: Annotated[
        bool,
        typer.Option(
            "--suffix",
            help="Append a learned mean-prompt string to every prediction of the final "
            "template; reports the test score with and without it.",
        ),
    ] = False,
    api_base: Annotated[
        str | None,
        typer.Option(help="Provider URL for both LLMs, e.g. an OpenAI-compatible server "
                     "(vLLM, llama.cpp) at http://HOST:PORT/v1 with --model openai/NAME."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the interrupted run --study with its stored "
                     "settings; recorded work is replayed from the cache and storage."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Search for the best template with METHOD and report its held-out test score."""
    from promptopt.runner import resume_run
    from promptopt.runner import run as run_search
    from promptopt.runstate import sigterm_as_interrupt
    from promptopt.tracker import display_url

    options: dict[str, Any] = {
        "method": method, "task": task, "data": data, "model": model, "proposer": proposer,
        "scorer": scorer, "budget": budget, "seed": seed, "train": _size(train),
        "val": _size(val), "test": _size(test), "split_seed": split_seed,
        "skip_bad_rows": skip_bad_rows, "settings": _parse_settings(setting), "start": start,
        "suffix": suffix, "api_base": api_base,
    }
    verb = "resuming study" if resume else "study"
    common: dict[str, Any] = dict(
        storage=storage, cache=not no_cache,
        on_study=lambda name: err.print(f"{verb} [bold]{name}[/bold] in {display_url(storage)}"),
    )
    if resume and study is None:
        raise typer.BadParameter("give the --study to resume", param_hint="--resume")
    total = None if resume and not _explicit(ctx, "budget") else budget
    label = f"{study if resume else method}: LLM calls"
    with _errors(), sigterm_as_interrupt(), _progress(total, label) as advance:
        if resume:
            given = {k: v for k, v in options.items() if _explicit(ctx, _PARAM.get(k, k))}
            result = resume_run(str(study), given=given, on_progress=advance, **common)
        else:
            result = run_search(study=study, on_progress=advance, **options, **common)
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    table = Table(title=f"promptopt run: {result.method} ({result.stopped})", show_lines=True)
    table.add_column("template")
    table.add_column("val", justify="right")
    table.add_column("test", justify="right")
    table.add_row("start: " + result.start_template.instruction, _score(result.start_val_score),
                  _score(result.start_test_score))
    table.add_row("[bold]best: " + result.template.instruction + "[/bold]",
                  _score(result.val_score), _score(result.test_score))
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
            f"suffix {result.template.suffix!r}: test {_score(result.test_score)} with it, "
            f"{_score(result.test_score_without_suffix)} without"
        )
    if result.rejected:
        out.print(f"rejected proposals: {result.rejected}")
    for note in result.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    out.print(f"best template (test SCS {_score(result.test_score)}):")
    out.print(result.template.to_json(), highlight=False, markup=False, soft_wrap=True)


_PARAM = {"settings": "setting"}  # run() argument -> CLI parameter, where they differ


def _explicit(ctx: typer.Context, param: str) -> bool:
    """Whether the user gave the option ``param`` (not its default)."""
    source = ctx.get_parameter_source(param)  # an enum of Typer's own (vendored) click
    return source is not None and source.name != "DEFAULT"


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected integers like 0,1,2, got {text!r}",
                                 param_hint="--seeds") from None
    if not seeds:
        raise typer.BadParameter("give at least one seed, e.g. 0,1,2", param_hint="--seeds")
    return seeds


@app.command()
def compare(
    methods: Annotated[
        str | None,
        typer.Option("--methods", help="Comma-separated methods, e.g. opro,ape (default: all)."),
    ] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated search seeds, e.g. 0,1,2.")] = "0",
    task: Task = "prompt-recovery",
    data: Data = None,
    model: Model = DEFAULT_MODEL,
    proposer: Proposer = None,
    scorer: Scorer = "auto",
    budget: Annotated[
        int, typer.Option(help="Max LLM calls per run (each method and seed), proposer included.")
    ] = 100,
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
    train: TrainSize = DEFAULT_SPLITS["train"],
    val: ValSize = DEFAULT_SPLITS["val"],
    test: TestSize = DEFAULT_SPLITS["test"],
    split_seed: SplitSeed = 0,
    skip_bad_rows: SkipBadRows = False,
    start: Start = None,
    no_cache: NoCache = False,
) -> None:
    """Run several METHODS on one task with the same settings and seeds; table, plot, report."""
    from promptopt.comparison import TABLE_COLUMNS, resolve_methods
    from promptopt.comparison import compare as run_compare
    from promptopt.runner import new_study_name

    with _errors():
        names = resolve_methods(methods.split(",") if methods is not None else None)
        seed_list = _parse_seeds(seeds)
        prefix = prefix or new_study_name("compare")
        folder = out_dir or Path(prefix)
        err.print(f"comparing {', '.join(names)} over seeds {seed_list}: studies "
                  f"[bold]{prefix}-<method>-s<seed>[/bold] in {storage}, files in {folder}")
        with _progress(budget * len(names) * len(seed_list), "compare: LLM calls") as advance:
            result = run_compare(
                names, seeds=seed_list, task=task, data=data, model=model, proposer=proposer,
                scorer=scorer, budget=budget, storage=storage, prefix=prefix, out_dir=folder,
                train=_size(train), val=_size(val), test=_size(test), split_seed=split_seed,
                skip_bad_rows=skip_bad_rows, start=start, cache=not no_cache,
                on_progress=advance, on_study=lambda name: err.print(f"study [bold]{name}[/bold]"),
            )
    table = Table(
        title=f"promptopt compare: {result.settings['task']}, seeds "
        f"{', '.join(map(str, result.seeds))}, "
        f"budget {budget}, scorer {result.settings['scorer']}",
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
              f"| {wall:.1f}s | studies {result.prefix}-<method>-s<seed> in {result.storage}")
    for kind, path in result.files.items():
        out.print(f"{kind}: {path}", highlight=False)


@app.command("eval")
def eval_(
    template: Annotated[str, typer.Argument(help="A .json/.txt template file or the instruction.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    task: Task = "prompt-recovery",
    data: Data = None,
    model: Model = DEFAULT_MODEL,
    scorer: Scorer = "auto",
    train: TrainSize = DEFAULT_SPLITS["train"],
    val: ValSize = DEFAULT_SPLITS["val"],
    test: TestSize = DEFAULT_SPLITS["test"],
    split_seed: SplitSeed = 0,
    skip_bad_rows: SkipBadRows = False,
    storage: Annotated[
        str | None, typer.Option(help="Record the evaluation in this storage.")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study to record into.")] = None,
    no_cache: NoCache = False,
) -> None:
    """Score one TEMPLATE on one split and show a few predictions."""
    from promptopt.runner import evaluate

    with _errors(), _progress(None, "eval: LLM calls") as advance:
        ev = evaluate(
            template, split=split, task=task, data=data, model=model, scorer=scorer,
            train=_size(train), val=_size(val), test=_size(test), split_seed=split_seed,
            skip_bad_rows=skip_bad_rows, cache=not no_cache, storage=storage, study=study,
            on_progress=advance,
        )
    table = Table(title=f"{split} split: mean score {_score(ev.score)} over {ev.n} ({ev.scorer})")
    table.add_column("id")
    table.add_column("prediction")
    table.add_column("score", justify="right")
    for i, p, s in list(zip(ev.example_ids, ev.predictions, ev.scores, strict=True))[:10]:
        table.add_row(i, p, _score(s))
    out.print(table)
    out.print(f"mean score: {_score(ev.score)}")


@app.command()
def predict(
    data: Annotated[Path, typer.Option("--data", "-d", help="CSV/JSONL/Parquet to predict on.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Submission CSV.")] = Path(
        "submission.csv"
    ),
    template: Annotated[
        str | None, typer.Option(help="Template file or instruction (default: study's best).")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study whose best template to use.")] = None,
    storage: Storage = DEFAULT_STORAGE,
    task: Task = "prompt-recovery",
    model: Model = DEFAULT_MODEL,
    no_cache: NoCache = False,
) -> None:
    """Predict every row of DATA with a template and write a Kaggle submission (id,target)."""
    from promptopt.runner import best_template
    from promptopt.runner import predict as run_predict

    with _errors():
        if template is None and study is None:
            raise typer.BadParameter("give --template or --study", param_hint="--template")
        tpl = template if template is not None else best_template(storage, str(study))
        with _progress(None, "predict: LLM calls") as advance:
            n = run_predict(tpl, data, output, task=task, model=model, cache=not no_cache,
                            on_progress=advance)
    out.print(f"wrote {n} predictions to {output}")


@app.command()
def dashboard(
    storage: Storage = DEFAULT_STORAGE,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve optuna-dashboard on STORAGE (trials, templates, lineage, scores)."""
    from optuna_dashboard import run_server

    from promptopt.tracker import open_storage

    with _errors():
        store = open_storage(storage)
        err.print(f"optuna-dashboard on http://{host}:{port}/ for {storage} (Ctrl-C to stop)")
        run_server(store, host=host, port=port)


@app.command("list")
def list_() -> None:
    """List methods, tasks and embedded models."""
    import promptopt.optimizers  # noqa: F401  (registers the methods)
    from promptopt.registry import optimizers, tasks

    table = Table(title="promptopt")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("description")
    for name in optimizers.names():
        doc = (optimizers.get(name).__doc__ or "").strip().split("\n")[0]
        table.add_row("method", name, doc)
    for name in tasks.names():
        table.add_row("task", name, tasks.get(name).description)
    for name, m in EMBEDDED_MODELS.items():
        default = " (default)" if f"llamacpp/{name}" == DEFAULT_MODEL else ""
        table.add_row("model", f"llamacpp/{name}", f"{m.description}{default} [{m.package}]")
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="promptopt")


if __name__ == "__main__":
    main()
