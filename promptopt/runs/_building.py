"""Building the parts of a run from names: the task on its data, the scorer, and the
recovery and proposer LLMs (sharing one cache, budget and usage).

    from promptopt import make_task, make_llms
    task = make_task("prompt-recovery", "data.csv", train=100, val=20, test=100)
    recovery, proposer = make_llms("llamacpp/gemma-3-270m", budget=150)

:mod:`promptopt.runs._runner`, :mod:`promptopt.runs._apply` and ``promptopt compare`` all build
their parts here, so a setting means the same thing in each.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from pathlib import Path
from typing import Any

from promptopt.data import sample_path
from promptopt.errors import ConfigError
from promptopt.llm import DEFAULT_MODEL, LLM, Budget, DiskCache, Usage, proposer_for
from promptopt.registry import tasks
from promptopt.runs._spec import TaskSpec
from promptopt.scoring import make_metric, make_scorer
from promptopt.tasks import Task

DEFAULT_SPLITS: dict[str, Any] = {
    "train": TaskSpec.train, "val": TaskSpec.val, "test": TaskSpec.test,
}
"""The split sizes of a run that names none (the run spec's defaults)."""


def new_study_name(method: str) -> str:
    """A fresh study name: method, UTC time and a random suffix."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{method}-{stamp}-{secrets.token_hex(2)}"


def make_task(
    task: str = "prompt-recovery",
    data: str | Path | None = None,
    *,
    scorer: Any = "auto",
    train: int | float = DEFAULT_SPLITS["train"],
    val: int | float = DEFAULT_SPLITS["val"],
    test: int | float | None = DEFAULT_SPLITS["test"],
    split_seed: int = 0,
    cache: bool = True,
    cache_dir: str | None = None,
    skip_bad_rows: bool = False,
    **options: Any,
) -> Task:
    """Build a registered task on a data file (default: the task's bundled sample).

    ``options`` are the task's own (``Task.option_names()``), e.g. ``make_task("csv",
    "data.csv", inputs=["question"], target="answer", metric="exact")``; the
    ``scorer`` is the embedding scorer (the ``scs`` metric's, for ``csv``).
    """
    cls = tasks.get(task)
    the_scorer = make_scorer(scorer, cache=cache, cache_dir=cache_dir)
    if "metric" in options and "metric" not in cls.option_names():
        # a task without a metric option of its own (prompt-recovery): the metric
        # replaces its scorer (e.g. --metric human, --metric rouge-l)
        the_scorer = make_metric(options.pop("metric"), scorer=the_scorer)
    return cls.from_file(
        data if data is not None else sample_path(cls.sample),
        scorer=the_scorer,
        train=train,
        val=val,
        test=test,
        seed=split_seed,
        skip_bad_rows=skip_bad_rows,
        **options,
    )


def make_llms(
    model: str = DEFAULT_MODEL,
    proposer: str | None = None,
    *,
    budget: int | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    **llm_options: Any,
) -> tuple[LLM, LLM]:
    """The recovery LLM and the proposer LLM, sharing cache, budget and usage.

    Raises:
        ConfigError: ``concurrency`` (in ``llm_options``) is not a positive whole number.
    """
    concurrency = llm_options.get("concurrency", 1)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a whole number of requests, 1 or more, got "
                          f"{concurrency!r}")
    shared_cache = DiskCache(cache_dir, "llm") if cache else None
    shared_budget, usage = Budget(budget), Usage()
    recovery = LLM(model, cache=shared_cache, budget=shared_budget, usage=usage, **llm_options)
    writer = LLM(
        proposer_for(model, proposer), cache=shared_cache, budget=shared_budget, usage=usage,
        **llm_options,
    )
    return recovery, writer
