"""The outcome of a run: :class:`RunResult`, stored on the study as ``result``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from promptopt.scoring import GainInterval
from promptopt.template import Template


@dataclass
class RunResult:
    """The outcome of :func:`run`."""

    study: str
    storage: str
    method: str
    template: Template
    val_score: float
    test_score: float
    start_template: Template
    start_val_score: float
    start_test_score: float
    scorer: str
    usage: dict[str, Any]
    budget: int | None
    budget_spent: int
    trials: int
    rejected: dict[str, int] = field(default_factory=dict)
    stopped: str = "finished"
    notes: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    test_score_without_suffix: float | None = None
    replayed_trials: int = 0
    """Trials a resumed run found already recorded (0 for a run never interrupted)."""
    test_metrics: dict[str, float] = field(default_factory=dict)
    """The task's metrics of the final template on the test split (e.g. log loss, accuracy)."""
    start_test_metrics: dict[str, float] = field(default_factory=dict)
    """The same for the starting template."""
    worker: int = 0
    """The worker that reports this result (several workers on one study; 0 alone)."""
    found_by: int | None = None
    """The worker whose template this is (several workers on one study)."""
    workers: dict[str, Any] | None = None
    """Per worker of the study (by index): its own template id, scores, trials, budget
    spent; None for a run with one worker."""
    val_gain: GainInterval | None = None
    """The returned template's validation gain over the start, with its confidence
    interval (paired bootstrap; None in studies recorded before intervals existed)."""
    test_gain: GainInterval | None = None
    """The same on the test split."""
    why: str = ""
    """Why the result is the starting template (one line; also in ``notes``), or ``""``."""
    final_choice: dict[str, Any] | None = None
    """The final choice's figures (:meth:`~promptopt.search.Choice.record`: level,
    finalists compared, per-example validation scores of the chosen template and the
    start), which several workers' results are merged by; None where not recorded."""

    @property
    def below_start(self) -> bool:
        """Whether the returned template scored credibly below the start on test (its
        whole test-gain interval lies below 0)."""
        return self.test_gain is not None and self.test_gain.below_zero

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored on the study as ``result``)."""
        return {
            "study": self.study,
            "method": self.method,
            "template": self.template.to_dict(),
            "template_id": self.template.id,
            "val_score": self.val_score,
            "test_score": self.test_score,
            "start_template": self.start_template.to_dict(),
            "start_val_score": self.start_val_score,
            "start_test_score": self.start_test_score,
            "scorer": self.scorer,
            "usage": self.usage,
            "budget": self.budget,
            "budget_spent": self.budget_spent,
            "trials": self.trials,
            "rejected": self.rejected,
            "stopped": self.stopped,
            "notes": self.notes,
            "wall_time_s": round(self.wall_time_s, 3),
            "test_score_without_suffix": self.test_score_without_suffix,
            "replayed_trials": self.replayed_trials,
            "test_metrics": dict(self.test_metrics),
            "start_test_metrics": dict(self.start_test_metrics),
            "val_gain": self.val_gain.to_dict() if self.val_gain else None,
            "test_gain": self.test_gain.to_dict() if self.test_gain else None,
            "why": self.why,
            **({} if self.final_choice is None else {"final_choice": self.final_choice}),
            **({} if self.workers is None else {
                "worker": self.worker, "found_by": self.found_by, "workers": self.workers,
            }),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, storage: str) -> RunResult:
        """Rebuild a result from :meth:`to_dict` output (a study's stored ``result``)."""
        source = f"{storage}#{data.get('study')}"
        return cls(
            storage=storage,
            template=Template.from_dict(data["template"], source=source),
            start_template=Template.from_dict(data["start_template"], source=source),
            **{k: data[k] for k in (
                "study", "method", "val_score", "test_score", "start_val_score",
                "start_test_score", "scorer", "usage", "budget", "budget_spent", "trials",
            )},
            rejected=dict(data.get("rejected") or {}),
            stopped=data.get("stopped", "finished"),
            notes=list(data.get("notes") or []),
            wall_time_s=float(data.get("wall_time_s", 0.0)),
            test_score_without_suffix=data.get("test_score_without_suffix"),
            replayed_trials=int(data.get("replayed_trials", 0)),
            test_metrics=dict(data.get("test_metrics") or {}),
            start_test_metrics=dict(data.get("start_test_metrics") or {}),
            worker=int(data.get("worker", 0)),
            found_by=data.get("found_by"),
            workers=data.get("workers"),
            val_gain=GainInterval.from_dict(data.get("val_gain")),
            test_gain=GainInterval.from_dict(data.get("test_gain")),
            why=str(data.get("why") or ""),
            final_choice=data.get("final_choice"),
        )
