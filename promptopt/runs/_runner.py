"""Running things end to end: the library API that the CLI mirrors.

    from promptopt import run
    result = run("opro", budget=100, seed=0)
    print(result.template.instruction, result.test_score)

:func:`run` describes the run as a :class:`~promptopt.runs.RunSpec` and hands it to
:func:`execute`, which builds the parts (the task on its split data, the recovery and
proposer LLMs sharing cache, budget and usage, the optimizer, the starting template),
opens the run on its study (:class:`~promptopt.runs._session.RunSession`), runs the
optimizer and scores the chosen and the starting template on the test split.
:func:`resume_run` (``run(..., resume=True)``) continues an interrupted run. Several
processes given the same study and settings work on it together as workers (see
:mod:`promptopt.runs._workers`).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from promptopt.errors import ConfigError
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.llm import LLM
from promptopt.optimizers import Optimizer, OptimizeResult, search_mean_prompt
from promptopt.registry import optimizers
from promptopt.runs._building import make_llms, make_task, new_study_name
from promptopt.runs._results import RunResult
from promptopt.runs._session import RunSession
from promptopt.runs._sharing import SharedHistory
from promptopt.runs._spec import FIELDS, RunSpec, SearchSpec, default, passed_fields, spec_arguments
from promptopt.runs._state import load_for_resume
from promptopt.runs._workers import Member, resume_member
from promptopt.scoring import is_embedding_metric, paired_interval
from promptopt.tasks import Task
from promptopt.template import Template

DEFAULT_STORAGE = "sqlite:///promptopt.db"
F = TypeVar("F", bound=Callable[..., Any])
_GIVEN: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "promptopt_given", default=frozenset()
)


def _records_given(fn: F) -> F:
    """Make the names of the arguments a call passed (defaults or not) readable inside
    ``fn`` as ``_GIVEN.get()``: an option given with its default value counts as given
    on resume."""
    names = list(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _GIVEN.set(frozenset(names[: len(args)]) | frozenset(kwargs))
        try:
            return fn(*args, **kwargs)
        finally:
            _GIVEN.reset(token)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Live:
    """What a run uses but never stores: live objects, callbacks, the cache.

    Attributes:
        scorer: A scorer object shared by several runs (``compare``); None: the spec's.
        cache: Use the disk cache.
        cache_dir: Cache folder (overrides ``PROMPTOPT_CACHE_DIR``).
        on_progress: Called after every LLM request (progress bars).
        on_study: Called with the study name once it exists.
    """

    scorer: Any = None
    cache: bool = True
    cache_dir: str | None = None
    on_progress: Callable[[], None] | None = None
    on_study: Callable[[str], None] | None = None


@_records_given
@spec_arguments(*FIELDS)
def run(
    method: str = SearchSpec.method,
    *,
    storage: str = DEFAULT_STORAGE,
    study: str | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    resume: bool = False,
    on_progress: Callable[[], None] | None = None,
    on_study: Callable[[str], None] | None = None,
    **fields: Any,
) -> RunResult:
    """Optimize a template with ``method`` and report its held-out test score.

    Args:
        method: A registered optimizer name (``promptopt list`` shows them).
        <run settings>
        storage: Optuna storage URL.
        study: Study name (default: generated). A study that already holds a run's
            trials is refused unless ``resume`` is set, or unless a live process runs
            it with the same settings: then this run joins it as one more worker (its
            own seed stream and budget; see :mod:`promptopt.runs._workers`).
        cache: Use the disk cache (``PROMPTOPT_CACHE_DIR``).
        cache_dir: Cache folder (overrides the environment).
        resume: Continue the interrupted run ``study`` in ``storage`` (see
            :func:`resume_run`): the stored settings are used; any setting passed here
            (even with its default value; None counts as not given) must agree with them.
        on_progress: Called after every LLM request (for progress bars).
        on_study: Called with the study name once it exists.
        fields: The run settings above, each a field of :class:`RunSpec` (where its
            default and meaning are written, and which the command line's options
            come from). ``scorer`` may also be a scorer object.

    Raises:
        KeyboardInterrupt, LLMError, StorageError: the run stopped; the study is
            marked ``"interrupted"`` (where the storage still allows it) and the
            exception's ``resume_hint`` is the command that continues it.
    """
    fields = passed_fields(run, fields)
    scorer = fields.get("scorer", default("scorer"))
    spec = RunSpec.from_args(**{**fields, "method": method,
                                "scorer": scorer if isinstance(scorer, str) else None})
    live = Live(scorer=None if isinstance(scorer, str) else scorer, cache=cache,
                cache_dir=cache_dir, on_progress=on_progress, on_study=on_study)
    if resume:
        if study is None:
            raise ConfigError("resuming needs the name of the study to continue (study=...)")
        passed = {**spec.args(), "scorer": scorer}
        given = {name: value for name, value in passed.items()
                 if name in _GIVEN.get() and value is not None}
        return resume_run(study, storage=storage, given=given, cache=cache, cache_dir=cache_dir,
                          on_progress=on_progress, on_study=on_study)
    return execute(spec, live, storage=storage, study=study)


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
    given = dict(given or {})
    spec, attrs = load_for_resume(storage, study, given)
    member = resume_member(study, attrs)  # several workers: the one that stopped
    stored = attrs.result
    if member is None and stored is not None:
        if on_study is not None:
            on_study(study)
        done = RunResult.from_dict(stored, storage=storage)
        done.notes.append(f"study {study!r} had already finished: this is its stored result "
                          "(no LLM call)")
        return done
    shared = given.get("scorer")  # an object (e.g. shared by compare); its name was checked
    live = Live(scorer=None if isinstance(shared, str) else shared, cache=cache,
                cache_dir=cache_dir, on_progress=on_progress, on_study=on_study)
    return execute(spec, live, storage=storage, study=study, resuming=attrs.settings,
                   member=member)


@dataclass
class Parts:
    """What :func:`execute` builds from a spec before any study is touched."""

    optimizer: Optimizer
    task: Task
    recovery: LLM
    writer: LLM
    start: Template


def build_task(spec: RunSpec, live: Live) -> Task:
    """The task of ``spec`` on its split data, scored by ``live.scorer`` when given."""
    t = spec.task
    return make_task(
        t.task, t.data, scorer=live.scorer if live.scorer is not None else t.scorer,
        train=t.train, val=t.val, test=t.test, split_seed=t.split_seed, cache=live.cache,
        cache_dir=live.cache_dir, skip_bad_rows=t.skip_bad_rows, **dict(t.task_options),
    )


def build_parts(spec: RunSpec, live: Live) -> Parts:
    """The optimizer, task, LLMs and starting template of ``spec``, validated.

    Raises:
        ConfigError: a bad setting, or a method that cannot run on the task.
    """
    search, llm = spec.search, spec.llm
    optimizer_cls = optimizers.get(search.method)
    try:
        optimizer = optimizer_cls(**dict(search.settings))
    except TypeError as exc:
        raise ConfigError(f"bad settings for method {search.method!r}: {exc}") from None
    if search.budget is not None and search.budget < 1:
        raise ConfigError(f"budget must be a positive number of LLM calls, got {search.budget}")
    if search.max_errors < 0:
        raise ConfigError(f"max_errors must be 0 or more, got {search.max_errors}")
    search.final_choice()  # a bad --select setting is an error before any study exists
    if not llm.timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {llm.timeout}")
    the_task = build_task(spec, live)
    problem = optimizer.unsupported(the_task)
    if problem:  # before any study is created
        raise ConfigError(f"method {search.method} cannot run on task {the_task.name}: {problem}")
    if search.suffix and not is_embedding_metric(the_task.scorer):
        raise ConfigError(f"--suffix (a mean-prompt string) needs an embedding metric such as "
                          f"scs; this task's metric is {the_task.scorer_name}")
    recovery, writer = make_llms(llm.model, llm.proposer, budget=search.budget, cache=live.cache,
                                 cache_dir=live.cache_dir, api_base=llm.api_base,
                                 timeout=llm.timeout, concurrency=llm.concurrency)
    recovery.on_request = writer.on_request = live.on_progress
    start = the_task.load_template(search.start or None)
    return Parts(optimizer, the_task, recovery, writer, start)


def execute(
    spec: RunSpec,
    live: Live,
    *,
    storage: str,
    study: str | None,
    resuming: Mapping[str, Any] | None = None,
    member: Member | None = None,
) -> RunResult:
    """Run (or, with ``resuming``, replay and continue) the search ``spec`` describes.

    Args:
        spec: The run.
        live: Its live objects and callbacks.
        storage: Optuna storage URL.
        study: The study name (None: a new generated one).
        resuming: The stored settings of the run being resumed.
        member: The worker of the study this process is (default: its first).
    """
    t0 = time.perf_counter()
    parts = build_parts(spec, live)
    name = study or new_study_name(spec.search.method)
    settings = spec.to_settings(parts.task, parts.optimizer.get_params(), parts.start)
    with RunSession(storage, name, settings, seed=spec.search.seed, named=study is not None,
                    resuming=resuming, member=member, on_study=live.on_study) as session:
        if hasattr(parts.task.scorer, "attach"):  # a scorer that rates in the study (human)
            parts.task.scorer.attach(storage, name)
        evaluator = Evaluator(parts.task, parts.recovery, tracker=session.tracker,
                              method=spec.search.method, max_errors=spec.search.max_errors)
        result = parts.optimizer.optimize(
            parts.task, evaluator, parts.writer, start=parts.start, seed=session.worker.seed,
            shared=SharedHistory(session.tracker, parts.task, spec.search.method),
            batch_seed=session.worker.batch_seed, selection=spec.search.final_choice(),
        )
        out = _finish(spec, parts, session, evaluator, result)
        out.wall_time_s = time.perf_counter() - t0
        return session.publish(out)


def _finish(spec: RunSpec, parts: Parts, session: RunSession, evaluator: Evaluator,
            result: OptimizeResult) -> RunResult:
    """Score the chosen (with ``suffix``: plus a mean-prompt string) and the starting
    template on the test split; the run's result."""
    final, without_suffix = result.template, None
    if spec.search.suffix:
        learned = search_mean_prompt(
            parts.task.scorer, [e.target for e in parts.task.examples("train")],
            seed=session.worker.seed,
        )
        plain = _test(evaluator, final, "final without suffix",
                      "the chosen template (without suffix)")
        without_suffix = plain.score
        final = final.replace(suffix=f"{final.suffix} {learned.text}".strip())
    best_test = _test(evaluator, final, "final", "the chosen template")
    start_test = (best_test if final.id == parts.start.id
                  else _test(evaluator, parts.start, "start", "the starting template"))
    test_gain = paired_interval(start_test.scores, best_test.scores,
                                level=spec.search.final_choice().confidence,
                                seed=[abs(session.worker.seed), 4])
    if evaluator.errors:
        result.notes.append(
            f"{len(evaluator.errors)} evaluation(s) failed and were recorded as failed "
            f"trials (the search went on without them); the last: {evaluator.errors[-1]}"
        )
    tracker = session.tracker
    tracker.check_replayed()
    return RunResult(
        study=session.study, storage=session.storage, method=spec.search.method,
        template=final, val_score=result.val_score, test_score=best_test.score,
        start_template=parts.start, start_val_score=result.start_val_score,
        start_test_score=start_test.score, scorer=parts.task.scorer_name,
        usage=parts.recovery.usage.as_dict(), budget=spec.search.budget,
        budget_spent=parts.recovery.budget.spent if parts.recovery.budget else 0,
        trials=evaluator.trial_count, rejected=result.rejected, stopped=result.stopped,
        notes=result.notes, test_score_without_suffix=without_suffix,
        replayed_trials=tracker.replayed, test_metrics=dict(best_test.metrics),
        start_test_metrics=dict(start_test.metrics), val_gain=result.val_gain,
        test_gain=test_gain, why=result.why,
        final_choice=result.choice.record() if result.choice is not None else None,
    )


def _test(evaluator: Evaluator, template: Template, role: str, what: str) -> Evaluation:
    """``template`` scored on the test split (not charged to the budget)."""
    ev = evaluator.evaluate(template, "test", meta={"role": role}, charge=False)
    ev.require(f"{what} on the test split")
    return ev
