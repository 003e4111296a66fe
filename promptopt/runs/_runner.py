"""Running things end to end: the library API that the CLI mirrors.

    from promptopt import run
    result = run("opro", budget=100, seed=0)
    print(result.template.instruction, result.test_score)

:func:`run` loads the task's data and splits it, builds the recovery and proposer
LLMs (shared cache, budget and usage), the scorer and the Optuna tracker, runs the
optimizer, then scores the chosen and the starting template on the test split.
:func:`resume_run` (``run(..., resume=True)``) continues an interrupted run. Several
processes given the same study and settings work on it together as workers (see
:mod:`promptopt.runs._workers`). Scoring, fetching and applying a chosen template is in
:mod:`promptopt.runs._apply`; building the task, LLMs and scorer from names is in
:mod:`promptopt.runs._building`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError
from promptopt.evaluator import DEFAULT_MAX_ERRORS, Evaluator
from promptopt.llm import DEFAULT_MODEL, DEFAULT_TIMEOUT
from promptopt.registry import optimizers
from promptopt.runs._building import DEFAULT_SPLITS, make_llms, make_task, new_study_name
from promptopt.runs._results import RunResult
from promptopt.runs._sharing import SharedHistory
from promptopt.runs._state import (
    check_replayable,
    load_for_resume,
    record_stop,
    run_settings,
    set_status,
)
from promptopt.runs._workers import Heartbeat, Member, plan_start, publish_result, resume_member
from promptopt.scoring import is_embedding_metric
from promptopt.template import Template
from promptopt.tracking import Tracker

DEFAULT_STORAGE = "sqlite:///promptopt.db"


def run(
    method: str = "opro",
    *,
    task: str = "prompt-recovery",
    data: str | Path | None = None,
    task_options: Mapping[str, Any] | None = None,
    model: str = DEFAULT_MODEL,
    proposer: str | None = None,
    scorer: str | Any = "auto",
    budget: int = 100,
    seed: int = 0,
    storage: str = DEFAULT_STORAGE,
    study: str | None = None,
    train: int | float = DEFAULT_SPLITS["train"],
    val: int | float = DEFAULT_SPLITS["val"],
    test: int | float | None = DEFAULT_SPLITS["test"],
    split_seed: int = 0,
    skip_bad_rows: bool = False,
    settings: Mapping[str, Any] | None = None,
    start: Template | str | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    suffix: bool = False,
    api_base: str | None = None,
    max_errors: int = DEFAULT_MAX_ERRORS,
    timeout: float = DEFAULT_TIMEOUT,
    resume: bool = False,
    on_progress: Callable[[], None] | None = None,
    on_study: Callable[[str], None] | None = None,
) -> RunResult:
    """Optimize a template with ``method`` and report its held-out test score.

    Args:
        method: A registered optimizer name (``promptopt list`` shows them).
        task: A registered task name.
        data: Dataset file (CSV, JSONL or Parquet); default: the bundled sample.
        task_options: The task's options, e.g. for ``task="csv"``: ``{"inputs": ["a",
            "b"], "target": "y", "metric": "exact"}`` (a metric may be a function).
        model: Recovery LLM (LiteLLM model string); default: the embedded Gemma 3 270M.
        proposer: LLM that writes new instructions (default: ``model``).
        scorer: Scorer name ("auto", "minilm", a sentence-transformers name or path).
        budget: Maximum LLM calls for the search, proposer calls included. The final
            test-split scoring of the chosen and the starting template is extra.
        seed: Search seed (same seed + cache = same result, no new calls).
        storage: Optuna storage URL.
        study: Study name (default: generated). A study that already holds a run's
            trials is refused unless ``resume`` is set, or unless a live process runs
            it with the same settings: then this run joins it as one more worker (its
            own seed stream and budget; see :mod:`promptopt.runs._workers`).
        train, val, test: Split sizes (counts or fractions; test defaults to the rest).
        split_seed: Seed of the data split (kept fixed across search seeds).
        skip_bad_rows: Skip (and list in a warning) data rows with empty or non-text
            cells or duplicate ids instead of stopping at the first.
        settings: Optimizer settings (keyword arguments of its class).
        start: Starting template (object, file path or instruction text).
        cache: Use the disk cache (``PROMPTOPT_CACHE_DIR``).
        cache_dir: Cache folder (overrides the environment).
        suffix: Learn a mean-prompt string on the train split's targets (no LLM calls)
            and append it to every prediction of the final template (the competition
            winners' "prediction + mean prompt"); the test score without it is
            reported too.
        api_base: URL of the provider for both LLMs, e.g. an OpenAI-compatible
            server (``--model openai/NAME --api-base http://host:8000/v1``).
        max_errors: Failed evaluations the run tolerates (each recorded as a failed
            trial with its reason; the search goes on without it); one more stops the
            run as interrupted (:class:`~promptopt.errors.TooManyErrors`), to resume.
        timeout: Seconds per LLM request before it times out (then it is retried).
        resume: Continue the interrupted run ``study`` in ``storage`` (see
            :func:`resume_run`): the stored settings are used; any setting passed here
            with a value other than its default must agree with them.
        on_progress: Called after every LLM request (for progress bars).
        on_study: Called with the study name once it exists.

    Raises:
        KeyboardInterrupt, LLMError, StorageError: the run stopped; the study is
            marked ``"interrupted"`` (where the storage still allows it) and the
            exception's ``resume_hint`` is the command that continues it.
    """
    spec: dict[str, Any] = {
        "method": method, "task": task, "data": data, "task_options": task_options,
        "model": model, "proposer": proposer,
        "scorer": scorer, "budget": budget, "seed": seed, "train": train, "val": val,
        "test": test, "split_seed": split_seed, "skip_bad_rows": skip_bad_rows,
        "settings": settings, "start": start, "suffix": suffix, "api_base": api_base,
        "max_errors": max_errors, "timeout": timeout,
    }
    if resume:
        if study is None:
            raise ConfigError("resuming needs the name of the study to continue (study=...)")
        defaults = inspect.signature(run).parameters
        given = {k: v for k, v in spec.items() if v is not defaults[k].default
                 and v != defaults[k].default}
        return resume_run(study, storage=storage, given=given, cache=cache, cache_dir=cache_dir,
                          on_progress=on_progress, on_study=on_study)
    return _execute(spec, storage=storage, study=study, cache=cache, cache_dir=cache_dir,
                    on_progress=on_progress, on_study=on_study)


def resume_run(
    study: str,
    *,
    storage: str = DEFAULT_STORAGE,
    given: Mapping[str, Any] | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    on_progress: Callable[[], None] | None = None,
    on_study: Callable[[str], None] | None = None,
) -> RunResult:
    """Continue the interrupted run ``study``; the result is the uninterrupted run's.

    The run is replayed from the start with the settings stored on the study. The
    disk cache answers the LLM calls made before the interruption (no new calls, but
    charged to the budget as in the first attempt, so the budget already spent
    counts and the search takes the same path); evaluations the study already holds
    are not recorded again; then the search goes on. A study that already has a
    result is not run again: its stored result comes back, with a note, and no LLM
    is called.

    Args:
        study: The study to continue.
        storage: Its Optuna storage URL.
        given: Settings given again, by :func:`run` argument name. Each must agree with
            the stored setting (``settings`` key by key), except ``api_base``, which
            replaces the stored one, and a scorer object, used if its name agrees.
        cache: Use the disk cache (without it every call is made again).
        cache_dir: Cache folder (overrides the environment).
        on_progress: Called after every LLM request (for progress bars).
        on_study: Called with the study name.

    Raises:
        ConfigError: no such study, or a given setting contradicts a stored one.
        ResumeError: the study holds no promptopt run, another live process runs it,
            or the replay differs from the recorded trials (code, data or cache changed).
    """
    spec, attrs = load_for_resume(storage, study, dict(given or {}))
    member = resume_member(study, attrs)  # several workers: the one that stopped
    if member is None and "result" in attrs:
        if on_study is not None:
            on_study(study)
        done = RunResult.from_dict(attrs["result"], storage=storage)
        done.notes.append(f"study {study!r} had already finished: this is its stored result "
                          "(no LLM call)")
        return done
    return _execute(spec, storage=storage, study=study, cache=cache, cache_dir=cache_dir,
                    on_progress=on_progress, on_study=on_study, resuming=attrs["settings"],
                    member=member)


def _execute(
    spec: Mapping[str, Any],
    *,
    storage: str,
    study: str | None,
    cache: bool,
    cache_dir: str | None,
    on_progress: Callable[[], None] | None,
    on_study: Callable[[str], None] | None,
    resuming: Mapping[str, Any] | None = None,
    member: Member | None = None,
) -> RunResult:
    """Run (or, with ``resuming``, replay and continue) the search that ``spec`` describes.

    ``member`` is the worker of the study this process is (default: its first).
    """
    t0 = time.perf_counter()
    method, budget, seed, data = spec["method"], spec["budget"], spec["seed"], spec["data"]
    optimizer_cls = optimizers.get(method)
    try:
        optimizer = optimizer_cls(**dict(spec["settings"] or {}))
    except TypeError as exc:
        raise ConfigError(f"bad settings for method {method!r}: {exc}") from None
    if budget is not None and budget < 1:
        raise ConfigError(f"budget must be a positive number of LLM calls, got {budget}")
    if spec["max_errors"] < 0:
        raise ConfigError(f"max_errors must be 0 or more, got {spec['max_errors']}")
    if not spec["timeout"] > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {spec['timeout']}")
    the_task = make_task(
        spec["task"], data, scorer=spec["scorer"], train=spec["train"], val=spec["val"],
        test=spec["test"], split_seed=spec["split_seed"], cache=cache, cache_dir=cache_dir,
        skip_bad_rows=spec["skip_bad_rows"], **dict(spec.get("task_options") or {}),
    )
    problem = optimizer.unsupported(the_task)
    if problem:  # before any study is created
        raise ConfigError(f"method {method} cannot run on task {the_task.name}: {problem}")
    if spec["suffix"] and not is_embedding_metric(the_task.scorer):
        raise ConfigError(f"--suffix (a mean-prompt string) needs an embedding metric such as "
                          f"scs; this task's metric is {the_task.scorer_name}")
    recovery, writer = make_llms(spec["model"], spec["proposer"], budget=budget, cache=cache,
                                 cache_dir=cache_dir, api_base=spec["api_base"],
                                 timeout=spec["timeout"])
    recovery.on_request = writer.on_request = on_progress
    start_template = the_task.load_template(spec["start"] or None)
    study_name = study or new_study_name(method)
    settings = run_settings(spec, optimizer.get_params(), the_task, start_template)
    if resuming is not None:
        check_replayable(study_name, resuming, settings)
    elif study is not None:
        member = plan_start(storage, study_name, settings, seed)  # refuses as check_new did
    member = member or Member(seed=seed)
    tracker = Tracker(storage, study_name, resume=resuming is not None, worker=member.index,
                      after=member.registration)
    if hasattr(the_task.scorer, "attach"):  # a scorer that rates in the study (human metric)
        the_task.scorer.attach(storage, study_name)
    if resuming is None and member.index == 0:
        tracker.set_attr("settings", settings)
    if on_study is not None:
        on_study(study_name)
    set_status(tracker, "running", resumed=resuming is not None, worker=member.index)
    pulse = Heartbeat(tracker, member.index).start()  # liveness, for workers elsewhere
    try:
        evaluator = Evaluator(the_task, recovery, tracker=tracker, method=method,
                              max_errors=spec["max_errors"])
        result = optimizer.optimize(
            the_task, evaluator, writer, start=start_template, seed=member.seed,
            shared=SharedHistory(tracker, the_task, method), batch_seed=member.batch_seed,
        )
        final = result.template
        without_suffix = None
        if spec["suffix"]:
            from promptopt.optimizers import search_mean_prompt

            learned = search_mean_prompt(
                the_task.scorer, [e.target for e in the_task.examples("train")],
                seed=member.seed,
            )
            plain = evaluator.evaluate(final, "test", meta={"role": "final without suffix"},
                                       charge=False)
            plain.require("the chosen template (without suffix) on the test split")
            without_suffix = plain.score
            final = final.replace(suffix=f"{final.suffix} {learned.text}".strip())
        best_test = evaluator.evaluate(final, "test", meta={"role": "final"}, charge=False)
        best_test.require("the chosen template on the test split")
        start_test = (
            best_test if final.id == start_template.id
            else evaluator.evaluate(start_template, "test", meta={"role": "start"}, charge=False)
        )
        start_test.require("the starting template on the test split")
        if evaluator.errors:
            result.notes.append(
                f"{len(evaluator.errors)} evaluation(s) failed and were recorded as failed "
                f"trials (the search went on without them); the last: {evaluator.errors[-1]}"
            )
        tracker.check_replayed()
        out = RunResult(
            study=study_name,
            storage=storage,
            method=method,
            template=final,
            val_score=result.val_score,
            test_score=best_test.score,
            start_template=start_template,
            start_val_score=result.start_val_score,
            start_test_score=start_test.score,
            scorer=the_task.scorer_name,
            usage=recovery.usage.as_dict(),
            budget=budget,
            budget_spent=recovery.budget.spent if recovery.budget else 0,
            trials=evaluator.trial_count,
            rejected=result.rejected,
            stopped=result.stopped,
            notes=result.notes,
            wall_time_s=time.perf_counter() - t0,
            test_score_without_suffix=without_suffix,
            replayed_trials=tracker.replayed,
            test_metrics=dict(best_test.metrics),
            start_test_metrics=dict(start_test.metrics),
        )
        out = publish_result(tracker, member, out)
    except BaseException as exc:
        pulse.stop()
        record_stop(tracker, exc, worker=member.index)
        raise
    pulse.stop()
    set_status(tracker, "finished", worker=member.index)
    return out
