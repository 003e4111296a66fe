"""What a worker sees of the other workers of its study (see :mod:`promptopt.runs._workers`).

:class:`SharedHistory` reads the evaluations that other workers recorded in the study
(``COMPLETE`` validation trials and ``PRUNED`` train ones, both holding their score as
value), for history-driven methods (OPRO's trajectory, EvoPrompt's population) and to
reuse an evaluation another worker already paid for.

A worker sees another worker's trial only if it was numbered before the last trial
this worker recorded (or, before its first, its registration trial). Trial numbers
follow commit order, so what a worker sees at each point of its search is fixed by
its own trials: a resumed worker replays its search exactly, seeing at each step the
trials it saw the first time (a little staleness is the price).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.data import Example
from promptopt.errors import DataError
from promptopt.evaluator import Evaluation, examples_hash
from promptopt.tasks import Task
from promptopt.template import Template
from promptopt.tracking import Tracker, is_evaluation


class SharedHistory:
    """Other workers' completed evaluations in a tracker's study.

    Args:
        tracker: This worker's tracker (its study, worker index and last trial number).
        task: The task (its scorer name selects comparable trials; it re-scores reused
            predictions).
        method: Only trials of this method are read.
    """

    def __init__(self, tracker: Tracker, task: Task, method: str) -> None:
        self.tracker = tracker
        self.task = task
        self.method = method
        self._templates: dict[int, Template] = {}

    def _visible(self, split: str, ids_hash: str | None) -> list[Any]:
        """Other workers' trials of ``split`` (on those examples) this worker may see now."""
        scorer = self.task.scorer_name
        out = []
        for t in self.tracker.trials():
            attrs = t.user_attrs
            if (
                not is_evaluation(t) or t.number >= self.tracker.last_number
                or attrs.get("worker", 0) == self.tracker.worker
                or attrs.get("split") != split or attrs.get("method") != self.method
                or attrs.get("scorer") != scorer or (attrs.get("meta") or {}).get("constant")
                or (ids_hash is not None and attrs.get("examples_hash") != ids_hash)
            ):
                continue
            out.append(t)
        return sorted(out, key=lambda t: t.number)

    def _template(self, trial: Any) -> Template | None:
        if trial.number not in self._templates:
            try:
                self._templates[trial.number] = Template.from_dict(
                    trial.user_attrs["template"], source=f"trial {trial.number}"
                )
            except (DataError, KeyError, TypeError):
                return None
        return self._templates[trial.number]

    def evaluations(self, split: str, examples: Sequence[Example]) -> list[Evaluation]:
        """Other workers' evaluations on exactly ``examples`` of ``split``, oldest first.

        Trials keep the mean score, not every example's, so each returned evaluation's
        ``scores`` repeat the mean; its ``meta`` names the ``worker`` and ``trial``.
        """
        ids = tuple(e.id for e in examples)
        out = []
        for t in self._visible(split, examples_hash(ids)):
            template = self._template(t)
            if template is None or t.value is None:
                continue
            out.append(Evaluation(
                template=template, split=split, example_ids=ids, predictions=(),
                scores=(float(t.value),) * len(ids), scorer=self.task.scorer_name,
                parents=tuple(t.user_attrs.get("parents") or ()),
                meta={"worker": t.user_attrs.get("worker", 0), "trial": t.number},
            ))
        return out

    def reusable(
        self,
        template: Template,
        split: str,
        examples: Sequence[Example],
        *,
        parents: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
    ) -> Evaluation | None:
        """Another worker's evaluation of ``template`` on ``examples``, or None.

        Reused only when that trial kept every prediction (the dashboard's few, so
        small minibatches such as OPRO's and EvoPrompt's): they are scored again here
        (no LLM call), and must give the trial's score.
        """
        ids = tuple(e.id for e in examples)
        for t in self._visible(split, examples_hash(ids)):
            if t.user_attrs.get("template_id") != template.id or t.value is None:
                continue
            kept = t.user_attrs.get("predictions") or []
            if [p.get("id") for p in kept] != list(ids):
                continue
            predictions = [str(p.get("prediction", "")) for p in kept]
            scores = [float(s) for s in self.task.score(predictions, examples)]
            if abs(sum(scores) / max(len(scores), 1) - float(t.value)) > 1e-6:
                continue
            return Evaluation(
                template=template, split=split, example_ids=ids,
                predictions=tuple(predictions), scores=tuple(scores),
                scorer=self.task.scorer_name, parents=tuple(parents),
                meta={**dict(meta or {}),
                      "reused": {"worker": t.user_attrs.get("worker", 0), "trial": t.number}},
            )
        return None
