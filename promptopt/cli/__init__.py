"""The ``promptopt`` command line: a thin Typer layer over :mod:`promptopt.runs._runner`
and :mod:`promptopt.comparison._compare`."""

from __future__ import annotations

import json
import os
from pathlib import Path
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
    parse_settings,
    progress,
    split_size,
)
from promptopt.cli._options import (
    DEFAULT_BUDGET,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ERRORS,
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    DEFAULT_SCORER,
    DEFAULT_SPLIT_SEED,
    DEFAULT_TASK,
    DEFAULT_TEST,
    DEFAULT_TIMEOUT,
    DEFAULT_TRAIN,
    DEFAULT_VAL,
    ApiBase,
    AsJson,
    Budget,
    Concurrency,
    Data,
    Inputs,
    MaxErrors,
    Method,
    Metric,
    Model,
    NoCache,
    Proposer,
    Scorer,
    Seed,
    Select,
    Settings,
    SkipBadRows,
    SplitSeed,
    Start,
    Storage,
    Suffix,
    Target,
    Task,
    TaskOption,
    TestSize,
    Timeout,
    TrainSize,
    ValSize,
    task_options,
)
from promptopt.cli.compare import compare_command
from promptopt.cli.data import data_app
from promptopt.cli.refine import refine_command
from promptopt.cli.report import report_command
from promptopt.errors import ConfigError
from promptopt.llm import DEFAULT_PROPOSER, EMBEDDED_MODELS
from promptopt.redact import redact, redact_log_records
from promptopt.runs import DEFAULT_STORAGE, RunResult, SearchSpec, TaskSpec
from promptopt.version import __version__

__all__ = ["app", "main"]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

app = typer.Typer(
    name="promptopt",
    help="Optimize LLM prompt templates; every search tracked in Optuna.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    redact_log_records()  # libraries log request URLs at DEBUG; keep credentials out


@app.command()
def run(
    ctx: typer.Context,
    method: Method = DEFAULT_METHOD,
    task: Task = DEFAULT_TASK,
    data: Data = None,
    inputs: Inputs = None,
    target: Target = None,
    metric: Metric = None,
    task_option: TaskOption = [],  # noqa: B006 - Typer needs a literal default
    model: Model = DEFAULT_MODEL,
    proposer: Proposer = None,
    scorer: Scorer = DEFAULT_SCORER,
    budget: Budget = DEFAULT_BUDGET,
    seed: Seed = SearchSpec.seed,
    storage: Storage = DEFAULT_STORAGE,
    study: Annotated[str | None, typer.Option(help="Study name (default: generated).")] = None,
    train: TrainSize = DEFAULT_TRAIN,
    val: ValSize = DEFAULT_VAL,
    test: TestSize = DEFAULT_TEST,
    split_seed: SplitSeed = DEFAULT_SPLIT_SEED,
    skip_bad_rows: SkipBadRows = TaskSpec.skip_bad_rows,
    start: Start = None,
    setting: Settings = [],  # noqa: B006 - Typer needs a literal default
    no_cache: NoCache = False,
    suffix: Suffix = SearchSpec.suffix,
    api_base: ApiBase = None,
    max_errors: MaxErrors = DEFAULT_MAX_ERRORS,
    timeout: Timeout = DEFAULT_TIMEOUT,
    select: Select = [],  # noqa: B006 - Typer needs a literal default
    concurrency: Concurrency = DEFAULT_CONCURRENCY,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the interrupted run --study with its stored "
                     "settings; recorded work is replayed from the cache and storage."),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Search for the best template with METHOD and report its held-out test score."""
    from promptopt.runs import resume_run, sigterm_as_interrupt
    from promptopt.runs import run as run_search

    options: dict[str, Any] = {
        "method": method, "task": task, "data": data, "model": model, "proposer": proposer,
        "scorer": scorer, "budget": budget, "seed": seed, "train": split_size(train),
        "val": split_size(val), "test": split_size(test), "split_seed": split_seed,
        "skip_bad_rows": skip_bad_rows, "settings": parse_settings(setting), "start": start,
        "suffix": suffix, "api_base": api_base, "max_errors": max_errors, "timeout": timeout,
        "concurrency": concurrency,
        "task_options": task_options(inputs, target, metric, task_option),
        "selection": parse_settings(select, "--select"),
    }
    verb = "resuming study" if resume else "study"
    common: dict[str, Any] = dict(
        storage=storage, cache=not no_cache,
        on_study=lambda name: err.print(f"{verb} [bold]{escape(name)}[/bold] in "
                                        f"{escape(redact(storage))}"),
    )
    if resume and study is None:
        raise typer.BadParameter("give the --study to resume", param_hint="--resume")
    total = None if resume and not explicit(ctx, "budget") else budget
    label = f"{study if resume else method}: LLM calls"
    with friendly_errors(), sigterm_as_interrupt(), progress(total, label) as advance:
        if resume:
            given = {k: v for k, v in options.items() if explicit(ctx, _PARAM.get(k, k))}
            if options["task_options"]:
                given["task_options"] = options["task_options"]
            result = resume_run(str(study), given=given, on_progress=advance, **common)
        else:
            result = run_search(study=study, on_progress=advance, **options, **common)
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


# run() argument -> CLI parameter, where they differ
_PARAM = {"settings": "setting", "selection": "select"}

app.command("compare")(compare_command)


@app.command("eval")
def eval_(
    ctx: typer.Context,
    template: Annotated[
        str | None, typer.Argument(help="A .json/.txt template file or the instruction; "
                                   "leave it out to score a run's templates (--study) on --data.")
    ] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    task: Task = DEFAULT_TASK,
    data: Data = None,
    inputs: Inputs = None,
    target: Target = None,
    metric: Metric = None,
    task_option: TaskOption = [],  # noqa: B006 - Typer needs a literal default
    model: Model = DEFAULT_MODEL,
    scorer: Scorer = DEFAULT_SCORER,
    train: TrainSize = DEFAULT_TRAIN,
    val: ValSize = DEFAULT_VAL,
    test: TestSize = DEFAULT_TEST,
    split_seed: SplitSeed = DEFAULT_SPLIT_SEED,
    skip_bad_rows: SkipBadRows = TaskSpec.skip_bad_rows,
    storage: Annotated[
        str | None, typer.Option(help="Record the evaluation in this storage.")
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Study to record into; without TEMPLATE, the finished "
                                 "run whose start and returned template to score on --data.")
    ] = None,
    no_cache: NoCache = False,
    api_base: ApiBase = None,
    concurrency: Concurrency = DEFAULT_CONCURRENCY,
) -> None:
    """Score one TEMPLATE on one split and show a few predictions; or, with --study and
    --data and no TEMPLATE, score a run's start and returned template on every row of
    another data file (transfer) with the run's task, scorer and model."""
    from promptopt.runs import evaluate

    if template is None:
        _transfer(study, data, storage, model if explicit(ctx, "model") else None,
                  api_base=api_base, skip_bad_rows=skip_bad_rows, no_cache=no_cache,
                  concurrency=concurrency if explicit(ctx, "concurrency") else None)
        return
    with friendly_errors(), progress(None, "eval: LLM calls") as advance:
        ev = evaluate(
            template, split=split, task=task, data=data, model=model, scorer=scorer,
            task_options=task_options(inputs, target, metric, task_option),
            train=split_size(train), val=split_size(val), test=split_size(test),
            split_seed=split_seed,
            skip_bad_rows=skip_bad_rows, cache=not no_cache, storage=storage, study=study,
            api_base=api_base, concurrency=concurrency, on_progress=advance,
        )
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


@app.command()
def predict(
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


@app.command()
def dashboard(
    storage: Storage = DEFAULT_STORAGE,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    artifact_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of the predictions' artifacts (default: the storage's, "
                     "e.g. promptopt.db-artifacts beside a SQLite file)."),
    ] = None,
) -> None:
    """Serve optuna-dashboard on STORAGE (trials, notes, predictions, lineage, scores)."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    from promptopt.tracking import artifact_dir as default_artifacts
    from promptopt.tracking import open_storage

    with friendly_errors():
        store = open_storage(storage)
        folder = artifact_dir if artifact_dir is not None else default_artifacts(storage)
        artifacts = None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            artifacts = FileSystemArtifactStore(str(folder))
        err.print(f"optuna-dashboard on http://{host}:{port}/ for {storage} (artifacts: "
                  f"{folder or 'none'}; Ctrl-C to stop)")
        run_server(store, host=host, port=port, artifact_store=artifacts)


@app.command("list")
def list_() -> None:
    """List methods, tasks, metrics, embedded models and plugins that failed to load."""
    import promptopt.optimizers  # noqa: F401  (registers the methods)
    from promptopt.registry import metrics, optimizers, tasks
    from promptopt.scoring import describe

    table = Table(title="promptopt")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("description")
    for name in optimizers.names():
        doc = (optimizers.get(name).__doc__ or "").strip().split("\n")[0]
        table.add_row("method", name, doc)
    for name in tasks.names():
        table.add_row("task", name, tasks.get(name).description)
    for name in metrics.names():
        table.add_row("metric", name, describe(name))
    for registry in (optimizers, tasks, metrics):
        for name, why in registry.broken().items():
            table.add_row(f"[red]broken {registry.kind}[/red]", name, why)
    for name, m in EMBEDDED_MODELS.items():
        roles = [role for role, string in (("default task model", DEFAULT_MODEL),
                                           ("default proposer", DEFAULT_PROPOSER))
                 if string == f"llamacpp/{name}"]
        default = f" ({', '.join(roles)})" if roles else ""
        table.add_row(
            "model",
            f"llamacpp/{name}",
            escape(f"{m.description}{default}; {m.size_text}, {m.speed}, licence {m.licence} "
                   f"[{m.package}]"),  # escaped: rich took "[package]" for a style tag
        )
    out.print(table)


app.add_typer(data_app)
app.command("refine")(refine_command)
app.command("report")(report_command)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="promptopt")


if __name__ == "__main__":
    main()
