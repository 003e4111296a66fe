"""Comparing methods: several optimizers on one task, with the same settings and seeds.

    from promptopt import compare
    result = compare(["opro", "ape"], seeds=(0, 1, 2), budget=100)
    print(result.table())

:func:`compare` runs :func:`~promptopt.runs._runner.run` once per (method, seed), each in its
own study ``<prefix>-<method>-s<seed>``, with the same task, data, splits, model,
proposer, budget and one scorer object (the LLM disk cache is shared as usual). It
adds constant baselines scored on the same splits with the same scorer (the starting
template, the fixed prediction :data:`FIXED_PREDICTION` and the mean-prompt string
alone, for an embedding metric), reads every trial back from the studies and writes ``trials.csv``,
``best_so_far.png`` and ``report.md`` (see :mod:`promptopt.comparison._report`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.comparison._report import write_files
from promptopt.comparison._results import (
    FIXED_PREDICTION,
    CompareResult,
    CompareRow,
    Stat,
    study_name,
)
from promptopt.errors import ConfigError
from promptopt.registry import optimizers
from promptopt.runs import (
    DEFAULT_STORAGE,
    Live,
    RunResult,
    RunSpec,
    build_task,
    execute,
    new_study_name,
    passed_fields,
    resume_run,
    spec_arguments,
)
from promptopt.runs import SPEC_FIELDS as FIELDS
from promptopt.runs import field_default as default
from promptopt.scoring import is_embedding_metric, make_scorer
from promptopt.tasks import Task
from promptopt.tracking import import_optuna, open_storage

SHARED_SETTINGS = ("task", "task_options", "data", "model", "proposer", "scorer", "budget",
                   "splits", "split_seed", "max_errors", "selection")
"""The stored run settings a comparison's report shows (the same for every run)."""


def resolve_methods(methods: Sequence[str] | None) -> list[str]:
    """The methods to compare: all registered ones by default, each checked by name.

    Raises:
        UnknownNameError: for a name that is not registered (listing the valid ones).
        ConfigError: for an empty list.
    """
    import promptopt.optimizers  # noqa: F401  (registers the methods)

    if methods is None:
        return optimizers.names()
    names = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    if not names:
        raise ConfigError("no method to compare; give at least one (promptopt list)")
    for name in names:
        optimizers.get(name)
    return names


def runnable_methods(names: Sequence[str], task: Task, *, explicit: bool) -> list[str]:
    """The methods that can run on ``task``: an unusable one named by the user is an
    error (before anything runs); from the default list it is left out with a warning."""
    out = []
    for name in names:
        problem = optimizers.get(name).unsupported(task)
        if problem is None:
            out.append(name)
        elif explicit:
            raise ConfigError(f"method {name} cannot run on task {task.name}: {problem}")
        else:
            warnings.warn(f"left out method {name}: {problem}", UserWarning, stacklevel=3)
    return out


PER_RUN = ("method", "seed", "settings", "suffix")
"""Run settings a comparison does not share: its methods and seeds vary, and each method
keeps its own settings."""


@spec_arguments(*(name for name in FIELDS if name not in PER_RUN))
def compare(
    methods: Sequence[str] | None = None,
    *,
    seeds: Sequence[int] = (0,),
    storage: str = DEFAULT_STORAGE,
    prefix: str | None = None,
    out_dir: str | Path | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    resume: bool = False,
    on_progress: Callable[[], None] | None = None,
    on_study: Callable[[str], None] | None = None,
    **fields: Any,
) -> CompareResult:
    """Run several methods with the same settings and seeds; tabulate, plot and report.

    Args:
        methods: Registered optimizer names (default: all of them that can run on
            the task; e.g. ``mean-prompt`` needs the ``scs`` metric).
        seeds: Search seeds; every method runs once per seed.
        <run settings>
        storage, cache, cache_dir: As for :func:`~promptopt.runs._runner.run`.
        prefix: Study-name prefix (default: generated, ``compare-<time>-<hex>``).
        resume: Continue the comparison ``prefix`` after an interruption: a run whose
            study has finished gives its stored result (no LLM call), an interrupted
            one is resumed (:func:`~promptopt.runs._runner.resume_run`: replayed from the
            cache, then continued), a missing one runs. The settings must be the
            first attempt's (a contradicting one is refused).
        out_dir: Folder for ``report.md``, ``best_so_far.png``, ``trials.csv``
            (default: ``prefix`` in the working directory).
        on_progress: Called after every LLM request of every run.
        on_study: Called with each study's name as its run starts.
        fields: The run settings above, shared by every run (fields of
            :class:`~promptopt.runs.RunSpec`, as for :func:`~promptopt.runs._runner.run`).
            The scorer is built once and the same object serves every run and the
            baselines (``scorer`` may also be a scorer object).

    Raises:
        UnknownNameError: for an unknown method, before anything runs.
        ConfigError: for no seeds, bad settings, or (without ``resume``) a study
            name already in the storage (its old trials would mix with the new ones).
        KeyboardInterrupt, LLMError, StorageError: a run stopped; the studies keep
            everything recorded, and ``compare(..., prefix=<prefix>, resume=True)``
            continues.
    """
    fields = passed_fields(compare, fields)
    scorer = fields.get("scorer", default("scorer"))
    budget = fields.get("budget", default("budget"))
    names = resolve_methods(methods)
    seed_list = [int(s) for s in dict.fromkeys(seeds)]
    if not seed_list:
        raise ConfigError("no seeds given; e.g. --seeds 0,1,2")
    if budget < 1:
        raise ConfigError(f"budget must be a positive number of LLM calls, got {budget}")
    if resume and not prefix:
        raise ConfigError("resuming a comparison needs its study-name prefix (prefix=...)")
    base = RunSpec.from_args(**{**fields, "scorer": scorer if isinstance(scorer, str) else None})
    base.search.final_choice()  # a bad selection setting fails before anything runs
    the_scorer = make_scorer(scorer, cache=cache, cache_dir=cache_dir)
    live = Live(scorer=the_scorer, cache=cache, cache_dir=cache_dir, on_progress=on_progress,
                on_study=on_study)
    the_task = build_task(base, live)
    names = runnable_methods(names, the_task, explicit=methods is not None)
    prefix = prefix or new_study_name("compare")
    stored = base.to_settings(the_task, {}, the_task.start_template())
    result = CompareResult(
        prefix=prefix, storage=storage, out_dir=Path(out_dir or prefix), methods=names,
        seeds=seed_list,
        settings={
            "methods": names, "seeds": seed_list,
            **{key: stored[key] for key in SHARED_SETTINGS},
            "storage": storage, "prefix": prefix, "cache": cache,
        },
    )
    plan = [(method, seed, study_name(prefix, method, seed))
            for method in names for seed in seed_list]
    taken = set(import_optuna().get_all_study_names(open_storage(storage)))
    clash = [study for _, _, study in plan if study in taken]
    if clash and not resume:
        raise ConfigError(
            f"study {clash[0]!r} already exists in {storage}; choose another prefix, or "
            "continue that comparison with resume (--resume)"
        )
    for method, seed, study in plan:
        spec = base.replace(method=method, seed=seed)
        if study in taken:  # every option given again must agree with the stored run
            given = {k: v for k, v in spec.args().items() if v is not None}
            result.runs.append(resume_run(
                study, storage=storage, given={**given, "scorer": the_scorer}, cache=cache,
                cache_dir=cache_dir, on_progress=on_progress, on_study=on_study,
            ))
        else:
            result.runs.append(execute(spec, live, storage=storage, study=study))
    result.settings["start_template"] = result.runs[0].start_template.instruction
    result.trials = read_trials(storage, plan)
    result.rows = [
        method_row(method, [r for r in result.runs if r.method == method]) for method in names
    ]
    result.rows += baseline_rows(the_task, result)
    result.files = write_files(result)
    return result


def method_row(method: str, runs: Sequence[RunResult]) -> CompareRow:
    """The table row of one method: its runs' scores and usage over seeds."""

    def stat(get: Callable[[RunResult], float]) -> Stat:
        return Stat(tuple(float(get(r)) for r in runs))

    return CompareRow(
        name=method, kind="method", val=stat(lambda r: r.val_score),
        test=stat(lambda r: r.test_score), start_val=stat(lambda r: r.start_val_score),
        start_test=stat(lambda r: r.start_test_score),
        requests=stat(lambda r: r.usage["requests"]),
        tokens=stat(lambda r: r.usage["prompt_tokens"] + r.usage["completion_tokens"]),
        cost=stat(lambda r: r.usage["cost"]), wall_time_s=stat(lambda r: r.wall_time_s),
        val_gains=tuple(r.val_gain for r in runs), test_gains=tuple(r.test_gain for r in runs),
    )


def baseline_rows(task: Task, result: CompareResult) -> list[CompareRow]:
    """The constant baselines on ``task``'s validation and test splits (no LLM call).

    The starting template (its scores in all of ``result.runs``), the fixed prediction
    :data:`FIXED_PREDICTION`, and the mean-prompt string alone, learned on the train
    targets once per seed (stored in ``result.mean_prompt_texts``); only the first on a
    task without an SCS scorer.
    """
    from promptopt.optimizers import search_mean_prompt

    def constant(prediction: str, split: str) -> float:
        examples = task.examples(split)
        return float(np.mean(task.score([prediction] * len(examples), examples)))

    start = CompareRow(
        name="start template", kind="baseline",
        val=Stat(tuple(r.start_val_score for r in result.runs)),
        test=Stat(tuple(r.start_test_score for r in result.runs)),
    )
    if not is_embedding_metric(task.scorer):  # no SCS metric (classification, exact...)
        return [start]
    targets = [e.target for e in task.examples("train")]
    result.mean_prompt_texts = [
        search_mean_prompt(task.scorer, targets, seed=seed).text for seed in result.seeds
    ]
    return [
        start,
        CompareRow(
            name=f'constant "{FIXED_PREDICTION}"', kind="baseline",
            val=Stat((constant(FIXED_PREDICTION, "val"),)),
            test=Stat((constant(FIXED_PREDICTION, "test"),)),
        ),
        CompareRow(
            name="mean-prompt string alone", kind="baseline",
            val=Stat(tuple(constant(t, "val") for t in result.mean_prompt_texts)),
            test=Stat(tuple(constant(t, "test") for t in result.mean_prompt_texts)),
        ),
    ]


def read_trials(storage: str, studies: Sequence[tuple[str, int, str]]) -> list[dict[str, Any]]:
    """Every trial of the given ``(method, seed, study)`` studies, in trial order.

    ``cumulative_requests`` is the run's LLM requests (proposer calls and cache hits
    included) when the trial was recorded (the trial's ``requests_so_far``; the
    running sum of the evaluations' own requests for studies recorded without it).
    """
    optuna = import_optuna()
    store = open_storage(storage)
    rows = []
    for method, seed, name in studies:
        study = optuna.load_study(study_name=name, storage=store)
        total = 0
        for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            attrs = trial.user_attrs
            requests = int(attrs.get("usage", {}).get("requests", 0))
            total = int(attrs.get("requests_so_far", total + requests))
            meta = attrs.get("meta", {})
            rows.append({
                "method": method, "seed": seed, "study": name, "trial": trial.number,
                "split": attrs.get("split", ""), "role": meta.get("role", ""),
                "constant": bool(meta.get("constant", False)), "score": trial.value,
                "requests": requests, "cumulative_requests": total,
                "template_id": attrs.get("template_id", ""),
                "instruction": attrs.get("instruction", ""),
                "parents": " ".join(attrs.get("parents", [])),
            })
    return rows
