"""The evaluator: template x examples -> predictions and per-example scores.

It is the only place that runs the recovery LLM, through the task's ``predict`` (a
generation per example, or label log-probs for classification). It charges the shared
budget (all examples of an evaluation at once, or nothing), serves repeated evaluations of the
same template on the same examples from memory, and records each evaluation as a
trial in the tracker. An evaluation whose LLM calls fail after the client's retries
is a *failed* evaluation (:attr:`Evaluation.failed`): recorded as a failed trial with
the reason, returned with zero scores so that the search goes on, and never chosen;
more than ``max_errors`` of them stop the run with :class:`TooManyErrors`.
:meth:`Evaluator.score_constant` scores a fixed prediction (a metric attack's string)
without the LLM; those trials are kept apart from the history that optimizers rank.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from promptopt.data import Example
from promptopt.errors import (
    AuthenticationError,
    EvaluationFailed,
    LLMError,
    TooManyErrors,
    UnknownModelError,
    check_stop,
)
from promptopt.llm import LLM
from promptopt.redact import scrub_text
from promptopt.tasks import Task
from promptopt.template import Template
from promptopt.tracking import Tracker

DEFAULT_MAX_ERRORS = 3
"""Failed evaluations a run tolerates; one more stops it (resumable)."""

PREDICTIONS_KEPT = 5  # predictions stored on each trial, for the dashboard
CONSTANT_INSTRUCTION = "(constant prediction: no LLM call; the prediction is the suffix)"
"""Instruction of the default template that :meth:`Evaluator.score_constant` records under."""


def examples_hash(example_ids: Sequence[str]) -> str:
    """A short hash of example ids in order (stored on trials to match them on resume)."""
    return hashlib.sha256("\0".join(example_ids).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Evaluation:
    """The outcome of running one template on some examples of one split."""

    template: Template
    split: str
    example_ids: tuple[str, ...]
    predictions: tuple[str, ...]
    scores: tuple[float, ...]
    scorer: str
    parents: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    """The task's metrics besides the mean score (e.g. log loss and accuracy)."""
    failed: str = ""
    """Why the evaluation failed (error class and message), or ``""``. A failed
    evaluation has empty predictions and zero scores, so strategies rank it last."""

    @property
    def score(self) -> float:
        """Mean score over the examples."""
        return float(np.mean(self.scores)) if self.scores else 0.0

    def require(self, what: str) -> None:
        """Raise :class:`EvaluationFailed` if this evaluation failed; ``what`` names it."""
        if self.failed:
            raise EvaluationFailed(
                f"{what} could not be scored ({self.failed}); the run needs that score, "
                "so it stops here and can be resumed once the provider answers"
            )

    @property
    def n(self) -> int:
        """Number of examples."""
        return len(self.scores)


class Evaluator:
    """Runs templates on a task's examples with the recovery LLM.

    Args:
        task: The task (examples, rendering, parsing, scorer).
        llm: The recovery LLM; its budget is the run's shared budget.
        tracker: Where each evaluation is recorded (None: not recorded).
        method: Method name written on each trial.
        max_errors: Failed evaluations tolerated (None: any number); the next one
            raises :class:`TooManyErrors`.
    """

    def __init__(
        self,
        task: Task,
        llm: LLM,
        *,
        tracker: Tracker | None = None,
        method: str = "",
        max_errors: int | None = DEFAULT_MAX_ERRORS,
    ) -> None:
        self.task = task
        self.llm = llm
        self.tracker = tracker
        self.method = method
        self.max_errors = max_errors
        self.errors: list[str] = []
        """The reasons of the failed evaluations so far."""
        self.history: list[Evaluation] = []
        self._memo: dict[tuple[str, str, tuple[str, ...]], Evaluation] = {}
        self.constants: list[Evaluation] = []
        """Constant-prediction scorings (:meth:`score_constant`); never in :attr:`history`."""
        self._constant_memo: dict[tuple[str, str, str, tuple[str, ...]], Evaluation] = {}
        self.adopted = 0
        """Evaluations taken over from another worker (:meth:`adopt`): in history, not trials."""
        self.trial_extras: Callable[[], Mapping[str, Any]] | None = None
        """Called as each trial is written: more JSON attributes for it (the search sets
        ``rejected_so_far``, its rejected proposals by reason so far, for the report)."""

    @property
    def budget(self) -> Any:
        """The shared call budget."""
        return self.llm.budget

    @property
    def trial_count(self) -> int:
        """Evaluations recorded as trials: :attr:`history` plus :attr:`constants`, less
        the adopted ones."""
        return len(self.history) + len(self.constants) - self.adopted

    def can_afford(self, n_examples: int) -> bool:
        """Whether an evaluation on ``n_examples`` new examples fits the budget."""
        return self.budget is None or self.budget.can_afford(n_examples)

    def is_cached(self, template: Template, split: str, examples: Sequence[Example]) -> bool:
        """Whether this evaluation was already done (it would cost nothing)."""
        return (template.id, split, tuple(e.id for e in examples)) in self._memo

    def adopt(self, evaluation: Evaluation) -> None:
        """Take over an evaluation another worker of the study recorded (no call, no trial).

        It joins :attr:`history` and is served for the same template and examples like
        one made here, but it is not recorded again.
        """
        key = (evaluation.template.id, evaluation.split, evaluation.example_ids)
        if key not in self._memo:
            self._memo[key] = evaluation
            self.history.append(evaluation)
            self.adopted += 1

    def evaluate(
        self,
        template: Template,
        split: str = "train",
        *,
        examples: Sequence[Example] | None = None,
        parents: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
        charge: bool = True,
    ) -> Evaluation:
        """Evaluate ``template`` on ``examples`` (default: the whole ``split``).

        A request that still fails after the client's retries makes the evaluation a
        failed one (see :attr:`Evaluation.failed`); the requests that succeeded stay
        in the disk cache and the budget stays charged for every example.

        Raises:
            BudgetExhausted: if the examples do not fit the budget; nothing is spent.
            TooManyErrors: if this failed evaluation is one more than ``max_errors``.
            AuthenticationError, UnknownModelError: no call can succeed; not retried.
        """
        check_stop()
        examples = list(self.task.examples(split) if examples is None else examples)
        key = (template.id, split, tuple(e.id for e in examples))
        if key in self._memo:
            return self._memo[key]
        before, started = self.llm.usage.as_dict(), _dt.datetime.now()
        try:
            predictions = self.task.predict(self.llm, template, examples, charge=charge)
        except (AuthenticationError, UnknownModelError):
            raise
        except LLMError as exc:
            failed = Evaluation(
                template=template, split=split, example_ids=key[2],
                predictions=("",) * len(examples), scores=(0.0,) * len(examples),
                scorer=self.task.scorer_name, parents=tuple(parents), meta=dict(meta or {}),
                failed=scrub_text(f"{type(exc).__name__}: {exc}")[:1000],
            )
            self._fail(failed, examples, self.llm.usage.since(before), exc, started)
            return failed
        scores = [float(s) for s in self.task.score(predictions, examples, template)]
        evaluation = Evaluation(
            template=template,
            split=split,
            example_ids=key[2],
            predictions=tuple(predictions),
            scores=tuple(scores),
            scorer=self.task.scorer_name,
            parents=tuple(parents),
            meta=dict(meta or {}),
            metrics=self.task.metrics(predictions, examples),
        )
        self._memo[key] = evaluation
        self.history.append(evaluation)
        self._record(evaluation, examples, self.llm.usage.since(before), started)
        return evaluation

    def _fail(
        self,
        evaluation: Evaluation,
        examples: Sequence[Example],
        usage: Mapping[str, Any],
        exc: LLMError,
        started: _dt.datetime,
    ) -> None:
        """Keep and record a failed evaluation; raise if it is one too many."""
        key = (evaluation.template.id, evaluation.split, evaluation.example_ids)
        self._memo[key] = evaluation
        self.history.append(evaluation)
        self.errors.append(evaluation.failed)
        self._record(evaluation, examples, usage, started)
        if self.max_errors is not None and len(self.errors) > self.max_errors:
            raise TooManyErrors(
                f"{len(self.errors)} evaluations failed, more than the run allows "
                f"(max_errors={self.max_errors}, --max-errors); the last: {evaluation.failed}"
            ) from exc

    def score_constant(
        self,
        prediction: str,
        split: str,
        *,
        examples: Sequence[Example] | None = None,
        meta: Mapping[str, Any] | None = None,
        template: Template | None = None,
    ) -> Evaluation:
        """Score one fixed ``prediction`` for every example: no LLM call, no budget.

        For metric attacks such as the mean prompt, whose candidate is a string, not
        a template run through the LLM. The evaluation is recorded as a trial like
        :meth:`evaluate`'s (its predictions are the constant; its usage is zero) and
        kept in :attr:`constants`, never in :attr:`history`: so it is neither served
        from nor stored in :meth:`evaluate`'s memo (a real evaluation of the same
        template still runs the LLM) and never ranked by ``Optimizer.select_final``.

        Args:
            prediction: The constant prediction.
            split: The split whose examples are scored.
            examples: A subset of the split (default: all of it).
            meta: JSON-ready details stored on the trial (``constant: True`` is added).
            template: The template the trial is recorded under (default:
                :data:`CONSTANT_INSTRUCTION` with ``suffix=prediction``).
        """
        examples = list(self.task.examples(split) if examples is None else examples)
        template = template or Template(instruction=CONSTANT_INSTRUCTION, suffix=prediction)
        ids = tuple(e.id for e in examples)
        key = (prediction, template.id, split, ids)
        if key in self._constant_memo:
            return self._constant_memo[key]
        started = _dt.datetime.now()
        predictions = [prediction] * len(examples)
        scores = (
            [float(s) for s in self.task.score(predictions, examples, template)] if examples else []
        )
        evaluation = Evaluation(
            template=template,
            split=split,
            example_ids=ids,
            predictions=tuple(predictions),
            scores=tuple(scores),
            scorer=self.task.scorer_name,
            meta={**dict(meta or {}), "constant": True},
        )
        self._constant_memo[key] = evaluation
        self.constants.append(evaluation)
        self._record(evaluation, examples, self.llm.usage.since(self.llm.usage.as_dict()), started)
        return evaluation

    def _record(
        self, evaluation: Evaluation, examples: Sequence[Example], usage: Mapping[str, Any],
        started: _dt.datetime,
    ) -> None:
        """Write one evaluation to the tracker as a trial (no-op without a tracker).

        Besides the evaluation's own ``usage``, the trial holds ``requests_so_far``:
        the LLM requests of the shared usage (recovery and proposer calls, cache hits
        included) up to the end of this evaluation, i.e. the search's x-axis. It spans
        ``started`` to now; every example's prediction goes to the tracker too (for
        the trial's note and, on validation and test, its predictions artifact).
        """
        finished = _dt.datetime.now()
        if self.tracker is None:
            return
        template = evaluation.template
        attrs = {
            "template_id": template.id,
            "instruction": template.instruction,
            "template": template.to_dict(),
            "parents": list(evaluation.parents),
            "method": self.method,
            "split": evaluation.split,
            "n_examples": len(examples),
            "examples_hash": examples_hash(evaluation.example_ids),
            "scorer": evaluation.scorer,
            "usage": dict(usage),
            "requests_so_far": int(self.llm.usage.requests),
            "meta": dict(evaluation.meta),
            **(dict(self.trial_extras()) if self.trial_extras is not None else {}),
        }
        if evaluation.failed:
            self.tracker.record_failure(attrs={**attrs, "error": evaluation.failed},
                                        started=started, finished=finished)
            return
        rows: list[dict[str, Any]] = [
            {"id": e.id, "inputs": dict(e.inputs), "target": e.target, "prediction": p,
             "score": s}
            for e, p, s in zip(examples, evaluation.predictions, evaluation.scores, strict=True)
        ]
        self.tracker.record(
            value=evaluation.score,
            attrs={
                **attrs,
                "score": evaluation.score,
                **({"metrics": dict(evaluation.metrics)} if evaluation.metrics else {}),
                "predictions": [{"id": r["id"], "prediction": r["prediction"],
                                 "target": r["target"], "score": round(r["score"], 4)}
                                for r in rows[:PREDICTIONS_KEPT]],
            },
            started=started, finished=finished, rows=rows,
        )
