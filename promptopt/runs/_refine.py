"""Refine a template with a person's written critique, the way ProTeGi applies a gradient.

    from promptopt import refine
    result = refine("It should answer with one short imperative sentence.", study="my-run")
    print(result.best.instruction, result.best_score)

ProTeGi (Pryzant et al. 2023) asks the proposer LLM why a prompt fails on its
lowest-scoring examples (a *textual gradient*) and then to edit the prompt against
that reason. :func:`refine` takes the reason from a person instead: it runs the base
template (a study's best, or a template file) on a train minibatch, shows the
proposer its lowest-scoring examples with the critique as "the problem with this
prompt" (ProTeGi's edit step, :func:`~promptopt.optimizers.edit_step`),
asks for ``k`` edited prompts, then scores the original and every edit on the
validation split with the :class:`~promptopt.Evaluator` (budget, cache, one trial each
in a new study) and keeps the best (ties keep the original). The study's ``result``
holds the best template, so ``promptopt predict --study`` and a further ``refine``
work on it. Left out: ProTeGi's paraphrases and bandit selection (one critique, a
handful of candidates, every one scored on the whole validation split).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.errors import BudgetExhausted, ConfigError
from promptopt.evaluator import Evaluation, Evaluator
from promptopt.optimizers import edit_step, error_report
from promptopt.runs._apply import best_template
from promptopt.runs._building import make_llms, make_task, new_study_name
from promptopt.runs._runner import DEFAULT_STORAGE
from promptopt.runs._session import Lifecycle
from promptopt.runs._spec import RunSpec, SearchSpec, TaskSpec, default
from promptopt.search import SearchContext
from promptopt.template import Template
from promptopt.tracking import StudyAttrs, Tracker, find_study, load_study_attrs

RUN_ARGS = (*(f.name for f in dataclasses.fields(TaskSpec)), "model", "proposer", "api_base")
"""Settings a refine takes from the study it refines, unless given: the task part of a
:class:`~promptopt.runs.RunSpec` and the models."""


@dataclass
class Candidate:
    """One template refine scored on the validation split."""

    template: Template
    kind: str  # "original" or "edit"
    val_score: float | None = None  # None: not scored (budget ran out)
    n: int = 0


@dataclass
class RefineResult:
    """The outcome of :func:`refine`."""

    feedback: str
    original: Template
    best: Template
    best_score: float
    original_score: float
    candidates: list[Candidate]
    study: str
    storage: str
    source: str
    scorer: str
    usage: dict[str, Any]
    budget: int | None
    budget_spent: int
    rejected: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    out: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored on the refine study as ``result``)."""
        return {
            "kind": "refine", "feedback": self.feedback, "source": self.source,
            "template": self.best.to_dict(), "template_id": self.best.id,
            "val_score": self.best_score, "original": self.original.to_dict(),
            "original_val_score": self.original_score, "scorer": self.scorer,
            "candidates": [{"template": c.template.to_dict(), "kind": c.kind,
                            "val_score": c.val_score, "n": c.n} for c in self.candidates],
            "usage": dict(self.usage), "budget": self.budget, "budget_spent": self.budget_spent,
            "rejected": dict(self.rejected), "notes": list(self.notes), "out": self.out,
        }


def study_run_args(storage: str, study: str) -> dict[str, Any]:
    """The task, data, models, scorer and splits a run (or a refine) study used."""
    attrs = StudyAttrs(load_study_attrs(storage, study))
    if attrs.settings is not None:
        stored = RunSpec.from_settings(attrs.settings)
        return {k: stored[k] for k in RUN_ARGS}
    return dict((attrs.refine_settings or {}).get("run_args") or {})


def refine(
    feedback: str,
    *,
    study: str | None = None,
    template: Template | str | None = None,
    storage: str = DEFAULT_STORAGE,
    k: int = 4,
    out: str | Path | None = None,
    refine_study: str | None = None,
    budget: int | None = SearchSpec.budget,
    seed: int = 0,
    minibatch_size: int = 4,
    errors_shown: int = 2,
    edit_calls: int = 3,
    cache: bool = True,
    cache_dir: str | None = None,
    on_progress: Callable[[], None] | None = None,
    on_study: Callable[[str], None] | None = None,
    **run_args: Any,
) -> RefineResult:
    """Apply a person's critique to a template: ``k`` edits, scored with the original.

    Args:
        feedback: The critique, read as "the problem with this prompt is that ...".
        study: A finished run (or refine) study: its best template is refined and its
            task, data, models, scorer and splits are the defaults.
        template: The template to refine instead (object, file or instruction text).
        storage: Optuna storage URL of ``study`` and of the new refine study.
        k: Edited candidates wanted.
        out: Write the best template here as JSON (None: not written).
        refine_study: Study the evaluations are recorded in (default: generated).
        budget: Maximum LLM calls (minibatch, edit requests and validation scoring).
        seed: Seed of the minibatch and the proposer's samples.
        minibatch_size: Train examples the base template runs on to find its errors.
        errors_shown: Lowest-scoring of them shown to the proposer.
        edit_calls: Edit requests at most (more than one when answers hold fewer than
            ``k`` usable edits).
        cache: Use the disk cache.
        cache_dir: Cache folder (overrides the environment).
        on_progress: Called after every LLM request.
        on_study: Called with the refine study's name once it exists.
        **run_args: ``task``, ``data``, ``model``, ``proposer``, ``scorer``, ``train``,
            ``val``, ``test``, ``split_seed``, ``skip_bad_rows``, ``api_base`` as in
            :func:`promptopt.run` (default: the study's, else :func:`run`'s defaults).

    Raises:
        ConfigError: no feedback, no template to refine, a study without a result, a bad
            setting, or a budget too small to score anything.
    """
    _check_request(feedback, study, template, run_args, k=k, minibatch_size=minibatch_size,
                   errors_shown=errors_shown, edit_calls=edit_calls)
    base = (template if isinstance(template, Template)
            else Template.load(template) if template is not None
            else best_template(storage, str(study)))
    args = _run_args(storage, study, run_args)
    the_task = make_task(args["task"], args["data"], scorer=args["scorer"], train=args["train"],
                         val=args["val"], test=args["test"], split_seed=args["split_seed"],
                         cache=cache, cache_dir=cache_dir, skip_bad_rows=args["skip_bad_rows"],
                         **dict(args["task_options"] or {}))
    base = the_task.load_template(base)  # placeholders and demos checked for this task
    recovery, writer = make_llms(args["model"], args["proposer"], budget=budget, cache=cache,
                                 cache_dir=cache_dir, api_base=args["api_base"])
    recovery.on_request = writer.on_request = on_progress
    n_val = len(the_task.examples("val"))
    batch_size = min(minibatch_size, len(the_task.examples("train")))
    evaluator = Evaluator(the_task, recovery, method="refine")  # tracker set below
    if not evaluator.can_afford(batch_size + 1 + n_val):
        raise ConfigError(f"budget too small: refining needs at least {batch_size + 1 + n_val} "
                          f"LLM calls (a {batch_size}-example minibatch, an edit request and "
                          f"{n_val} validation calls per candidate)")
    name = refine_study or new_study_name(f"{study}-refine" if study else "refine")
    tracker = _new_study(storage, name)
    with Lifecycle(tracker, resumable=False):  # status and heartbeat, as for a run
        if hasattr(the_task.scorer, "attach"):  # the human metric rates in the study
            the_task.scorer.attach(storage, name)
        source = f"{storage}#{study}" if template is None else str(
            template.id if isinstance(template, Template) else template)
        StudyAttrs.write_refine_settings(tracker, {
            "feedback": feedback, "source": source, "base_template": base.to_dict(), "k": k,
            "budget": budget, "seed": seed, "minibatch_size": minibatch_size,
            "errors_shown": errors_shown, "edit_calls": edit_calls,
            "run_args": {**args, "data": None if args["data"] is None else str(args["data"])},
        })
        if on_study is not None:
            on_study(name)
        evaluator.tracker = tracker
        ctx = SearchContext(task=the_task, evaluator=evaluator, proposer=writer, start=base,
                            seed=seed)
        notes: list[str] = []
        held = evaluator.budget.reserve(n_val)  # the original's validation score comes first
        try:
            edits = _propose_edits(ctx, feedback, k=k, batch_size=batch_size,
                                   errors_shown=errors_shown, edit_calls=edit_calls, notes=notes)
        finally:
            evaluator.budget.release(held)
        candidates = [Candidate(base, "original")] + [Candidate(t, "edit") for t in edits]
        _score(evaluator, candidates, feedback, notes)
        if len(edits) < k:
            notes.append(f"the proposer gave {len(edits)} usable edit(s) of the {k} asked for "
                         f"(rejected: {dict(ctx.rejected)})")
        scored = [c for c in candidates if c.val_score is not None]
        best = max(scored, key=lambda c: (c.val_score, c.kind == "original"))
        result = RefineResult(
            feedback=feedback, original=base, best=best.template,
            best_score=float(best.val_score or 0),
            original_score=float(candidates[0].val_score or 0), candidates=candidates, study=name,
            storage=storage, source=source, scorer=the_task.scorer_name,
            usage=recovery.usage.as_dict(), budget=budget, budget_spent=evaluator.budget.spent,
            rejected=dict(ctx.rejected), notes=notes, out=None if out is None else str(out),
        )
        if out is not None:
            path = Path(out)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(best.template.to_json() + "\n", encoding="utf-8")
        StudyAttrs.write_result(tracker, result.to_dict())
        return result


def _check_request(
    feedback: str, study: str | None, template: Template | str | None,
    run_args: Mapping[str, Any], **counts: int,
) -> None:
    """Refuse a refine that cannot start, before anything is loaded."""
    unknown = sorted(set(run_args) - set(RUN_ARGS))
    if unknown:
        raise ConfigError(f"refine got unknown setting(s) {unknown}; valid: {', '.join(RUN_ARGS)}")
    if not feedback or not feedback.strip():
        raise ConfigError("refine needs a critique to apply (feedback=...)")
    for name, value in counts.items():
        if value < 1:
            raise ConfigError(f"refine: {name}={value} must be at least 1")
    if study is None and template is None:
        raise ConfigError("refine needs a study (its best template) or a template")


def _run_args(storage: str, study: str | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """The task, data, models, scorer and splits: given, else the study's, else defaults.
    Task options given add to the study's, key by key (as ``--resume`` reads them)."""
    args = {name: default(name) for name in RUN_ARGS}
    args.update(study_run_args(storage, study) if study else {})
    chosen = {name: value for name, value in given.items() if value is not None}
    chosen["task_options"] = {**dict(args["task_options"] or {}),
                              **dict(chosen.get("task_options") or {})}
    args.update(chosen)
    return args


def _new_study(storage: str, name: str) -> Tracker:
    """A tracker on the new refine study ``name`` (refused if it holds trials already)."""
    found = find_study(storage, name)
    if found is not None and found[1]:
        raise ConfigError(f"study {name!r} in {storage} already holds trials; choose another "
                          "refine study name")
    return Tracker(storage, name)


def _score(evaluator: Evaluator, candidates: list[Candidate], feedback: str,
           notes: list[str]) -> None:
    """Score the original and its edits on validation, in order, until the budget ends."""
    base = candidates[0].template
    meta = {"role": "refine", "feedback": feedback}
    for i, cand in enumerate(candidates):
        try:
            ev = evaluator.evaluate(cand.template, "val", parents=[] if i == 0 else [base.id],
                                    meta={**meta, "kind": cand.kind})
        except BudgetExhausted:
            notes.append(f"the budget ran out: {len(candidates) - i} candidate(s) not scored")
            break
        cand.val_score, cand.n = ev.score, ev.n


def _propose_edits(
    ctx: SearchContext, feedback: str, *, k: int, batch_size: int, errors_shown: int,
    edit_calls: int, notes: list[str],
) -> list[Template]:
    """Errors of the base on a train minibatch, then edit requests until ``k`` edits."""
    batch = ctx.minibatch(batch_size)
    edits: list[Template] = []
    try:
        ev: Evaluation = ctx.evaluate(ctx.start, batch, meta={"role": "refine errors"})
        errors = error_report(ctx.task, batch, ev, errors_shown)
        for _ in range(edit_calls):
            if len(edits) >= k:
                break
            want = k - len(edits)
            edits += edit_step(ctx, ctx.start, errors, feedback.strip(), want)
    except BudgetExhausted:
        notes.append("the budget ran out while asking for edits")
    return edits

