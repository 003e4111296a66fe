"""Using a template: score it on a split, fetch the one a run chose, write predictions.

    from promptopt import best_template, evaluate, predict
    tpl = best_template("sqlite:///promptopt.db", "opro-20261121-...")
    print(evaluate(tpl, split="test").score)
    predict(tpl, "test.csv", "submission.csv")

These are the library side of ``promptopt eval`` and ``promptopt predict``; they build
the task and the LLM the way :func:`promptopt.runs._runner.run` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.data import Splits, load_examples, warn_formula_like
from promptopt.errors import ConfigError
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.llm import DEFAULT_CONCURRENCY, DEFAULT_MODEL
from promptopt.registry import tasks
from promptopt.runs._building import make_llms, make_task, new_study_name
from promptopt.runs._session import Lifecycle
from promptopt.runs._spec import RunSpec, TaskSpec, default, passed_fields, spec_arguments
from promptopt.scoring import GainInterval, paired_interval
from promptopt.template import Template
from promptopt.tracking import StudyAttrs, Tracker, load_study_attrs

EVAL_FIELDS = (*(f.name for f in dataclasses.fields(TaskSpec)), "model", "api_base",
               "concurrency")
"""The run settings :func:`evaluate` takes: the task part of a run spec and the model."""


@spec_arguments(*EVAL_FIELDS)
def evaluate(
    template: Template | str,
    *,
    split: str = "test",
    cache: bool = True,
    cache_dir: str | None = None,
    storage: str | None = None,
    study: str | None = None,
    on_progress: Callable[[], None] | None = None,
    **fields: Any,
) -> Evaluation:
    """Score one template on one split (recorded in ``study`` when a storage is given).

    Args:
        template: The template (object, file path or instruction text).
        split: ``train``, ``val`` or ``test``.
        <run settings>
        cache: Use the disk cache.
        cache_dir: Cache folder (overrides the environment).
        storage: Optuna storage URL to record the evaluation in (None: not recorded).
        study: Study name there (default: generated).
        on_progress: Called after every LLM request.
        fields: The run settings above, as for :func:`run` (``scorer`` may also be a
            scorer object).

    Raises:
        EvaluationFailed: if its LLM calls still fail after the client's retries.
    """
    given = passed_fields(evaluate, fields)
    args = {name: given.get(name, default(name)) for name in EVAL_FIELDS}
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; use train, val or test")
    the_task = make_task(
        args["task"], args["data"], scorer=args["scorer"], train=args["train"], val=args["val"],
        test=args["test"], split_seed=args["split_seed"], cache=cache, cache_dir=cache_dir,
        skip_bad_rows=args["skip_bad_rows"], **dict(args["task_options"] or {}),
    )
    recovery, _ = make_llms(args["model"], budget=None, cache=cache, cache_dir=cache_dir,
                            api_base=args["api_base"], concurrency=args["concurrency"])
    recovery.on_request = on_progress
    tracker = Tracker(storage, study or new_study_name("eval")) if storage else None
    if tracker is not None and hasattr(the_task.scorer, "attach"):
        the_task.scorer.attach(tracker.storage_url, tracker.study_name)
    evaluator = Evaluator(the_task, recovery, tracker=tracker, method="eval")
    template = the_task.load_template(template)
    with Lifecycle(tracker, resumable=False) if tracker is not None else contextlib.nullcontext():
        evaluation = evaluator.evaluate(template, split)
        evaluation.require(f"the template on the {split} split")
    return evaluation


def best_template(storage: str, study: str) -> Template:
    """The template a finished run chose (from the study's ``result``)."""
    result = StudyAttrs(load_study_attrs(storage, study)).result
    if result is None:
        raise ConfigError(f"study {study!r} has no result yet (unfinished or not a promptopt run)")
    return Template.from_dict(result["template"], source=f"{storage}#{study}")


@dataclass(frozen=True)
class Transfer:
    """A run's start and returned template scored on data the run never saw.

    Attributes:
        study: The run's study.
        data: The other data file.
        start, returned: The two evaluations, on every row of ``data`` (same order).
        gain: The returned template's gain over the start there, with its paired
            bootstrap interval.
    """

    study: str
    data: str
    start: Evaluation
    returned: Evaluation
    gain: GainInterval


def transfer(
    storage: str,
    study: str,
    data: str | Path,
    *,
    model: str | None = None,
    skip_bad_rows: bool = False,
    level: float = 0.9,
    cache: bool = True,
    cache_dir: str | None = None,
    api_base: str | None = None,
    concurrency: int | None = None,
    on_progress: Callable[[], None] | None = None,
) -> Transfer:
    """Score a finished run's start and returned template on every row of another data
    file, with the run's task, task options, scorer and model (``model`` and
    ``api_base`` may name others), and the gain between them with its interval.

    Raises:
        ConfigError: the study has no result (unfinished or not a promptopt run).
        DataError: ``data`` cannot be read (the message names the file, row and field).
        EvaluationFailed: the LLM calls still fail after the client's retries.
    """
    attrs = StudyAttrs(load_study_attrs(storage, study))
    if attrs.settings is None or attrs.result is None:
        raise ConfigError(f"study {study!r} has no result yet (unfinished or not a promptopt run)")
    spec = RunSpec.from_settings(attrs.settings)
    source = f"{storage}#{study}"
    the_task = make_task(  # the smallest split the loader allows, then every row as test
        spec.task.task, data, scorer=spec.task.scorer, train=1, val=1, test=None,
        cache=cache, cache_dir=cache_dir, skip_bad_rows=skip_bad_rows,
        **dict(spec.task.task_options or {}),
    )
    loaded = the_task.splits
    the_task.splits = Splits([], [], [*loaded.train, *loaded.val, *loaded.test])
    recovery, _ = make_llms(
        model or spec.llm.model, budget=None, cache=cache, cache_dir=cache_dir,
        api_base=api_base if api_base is not None else spec.llm.api_base,
        concurrency=concurrency or spec.llm.concurrency,
    )
    recovery.on_request = on_progress
    evaluator = Evaluator(the_task, recovery, method="transfer")
    start = Template.from_dict(attrs.result["start_template"], source=source)
    returned = Template.from_dict(attrs.result["template"], source=source)
    scored = []
    for label, template in (("start", start), ("returned", returned)):
        evaluation = evaluator.evaluate(template, "test")
        evaluation.require(f"the run's {label} template on {data}")
        scored.append(evaluation)
    gain = paired_interval(scored[0].scores, scored[1].scores, level=level)
    return Transfer(study=study, data=str(data), start=scored[0], returned=scored[1], gain=gain)


def predict(
    template: Template | str,
    data: str | Path,
    output: str | Path,
    *,
    task: str = "prompt-recovery",
    task_options: Mapping[str, Any] | None = None,
    model: str = DEFAULT_MODEL,
    cache: bool = True,
    cache_dir: str | None = None,
    api_base: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_progress: Callable[[], None] | None = None,
) -> int:
    """Write a Kaggle submission (``id,<target>``) for every row of ``data``; returns rows.

    ``task_options``, ``api_base`` and ``concurrency`` are as for :func:`run`.
    Predictions are written verbatim as CSV text (quoted where CSV needs it): one that
    starts like a spreadsheet formula (``=``, ``+``, ``-``, ``@``) stays data in the file, and a
    :class:`~promptopt.data.DataWarning` says how many there are.
    """
    import csv

    cls = tasks.get(task)
    options = dict(task_options or {})
    cls.check_options(options)
    if "metric" not in cls.option_names():
        options.pop("metric", None)  # judges predictions; predict() writes them only
    the_task = cls(Splits([], [], []), scorer="auto", **options)  # rendering and parsing only
    examples = load_examples(data, input_fields=the_task.input_fields,
                             target_field=the_task.target_field, require_target=False)
    tpl = the_task.load_template(template)
    recovery, _ = make_llms(model, budget=None, cache=cache, cache_dir=cache_dir,
                            api_base=api_base, concurrency=concurrency)
    recovery.on_request = on_progress
    predictions = the_task.predict(recovery, tpl, examples)
    rows = [(e.id, p) for e, p in zip(examples, predictions, strict=True)]
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", the_task.target_field])
        writer.writerows(rows)  # verbatim text: a formula-like prediction stays data
    warn_formula_like(path, [p for _, p in rows])
    return len(rows)
