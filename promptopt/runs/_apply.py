"""Using a template: score it on a split, fetch the one a run chose, write predictions.

    from promptopt import best_template, evaluate, predict
    tpl = best_template("sqlite:///promptopt.db", "opro-20261121-...")
    print(evaluate(tpl, split="test").score)
    predict(tpl, "test.csv", "submission.csv")

These are the library side of ``promptopt eval`` and ``promptopt predict``; they build
the task and the LLM the way :func:`promptopt.runs._runner.run` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from promptopt.data import Splits, load_examples, warn_formula_like
from promptopt.errors import ConfigError
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.llm import DEFAULT_CONCURRENCY, DEFAULT_MODEL
from promptopt.registry import tasks
from promptopt.runs._building import DEFAULT_SPLITS, make_llms, make_task, new_study_name
from promptopt.template import Template
from promptopt.tracking import StudyAttrs, Tracker, load_study_attrs


def evaluate(
    template: Template | str,
    *,
    split: str = "test",
    task: str = "prompt-recovery",
    data: str | Path | None = None,
    task_options: Mapping[str, Any] | None = None,
    model: str = DEFAULT_MODEL,
    scorer: str | Any = "auto",
    train: int | float = DEFAULT_SPLITS["train"],
    val: int | float = DEFAULT_SPLITS["val"],
    test: int | float | None = DEFAULT_SPLITS["test"],
    split_seed: int = 0,
    skip_bad_rows: bool = False,
    cache: bool = True,
    cache_dir: str | None = None,
    storage: str | None = None,
    study: str | None = None,
    api_base: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_progress: Callable[[], None] | None = None,
) -> Evaluation:
    """Score one template on one split (recorded in ``study`` when a storage is given).

    ``task_options`` are the task's options, and ``api_base`` (the provider's URL) and
    ``concurrency`` (requests in flight for a remote provider) are as for :func:`run`.

    Raises:
        EvaluationFailed: if its LLM calls still fail after the client's retries.
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; use train, val or test")
    the_task = make_task(
        task, data, scorer=scorer, train=train, val=val, test=test, split_seed=split_seed,
        cache=cache, cache_dir=cache_dir, skip_bad_rows=skip_bad_rows, **dict(task_options or {}),
    )
    recovery, _ = make_llms(model, budget=None, cache=cache, cache_dir=cache_dir,
                            api_base=api_base, concurrency=concurrency)
    recovery.on_request = on_progress
    tracker = Tracker(storage, study or new_study_name("eval")) if storage else None
    if tracker is not None and hasattr(the_task.scorer, "attach"):
        the_task.scorer.attach(tracker.storage_url, tracker.study_name)
    evaluator = Evaluator(the_task, recovery, tracker=tracker, method="eval")
    evaluation = evaluator.evaluate(the_task.load_template(template), split)
    evaluation.require(f"the template on the {split} split")
    return evaluation


def best_template(storage: str, study: str) -> Template:
    """The template a finished run chose (from the study's ``result``)."""
    result = StudyAttrs(load_study_attrs(storage, study)).result
    if result is None:
        raise ConfigError(f"study {study!r} has no result yet (unfinished or not a promptopt run)")
    return Template.from_dict(result["template"], source=f"{storage}#{study}")


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
