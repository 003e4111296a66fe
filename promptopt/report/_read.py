"""Reading a run's study back for the report: its trials, result and predictions.

Only what the tracker wrote is read (trial and study attributes, the predictions'
artifacts); nothing is run and no LLM is called. A study holding no promptopt run is
refused with the storage and the names it does hold.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.errors import ConfigError
from promptopt.tracking import (
    StudyAttrs,
    artifact_dir,
    import_optuna,
    is_evaluation,
    load_study,
    open_storage,
)


@dataclass(frozen=True)
class TrialRecord:
    """One evaluation of a template, as its trial stores it.

    Attributes:
        number: The study's trial number.
        state: ``COMPLETE`` (a validation score), ``PRUNED`` (train, test, constant)
            or ``FAIL``.
        split: ``train``, ``val`` or ``test``.
        score: The mean score (None: failed).
        n_examples: Examples scored.
        template_id: The template's id.
        template: The template as JSON (instruction, demos, answer prefix, suffix).
        parents: The parents' template ids, as recorded.
        method: The method that asked for the evaluation.
        step: The search's step or generation (None: the method records none).
        constant: Whether it scored a constant prediction (no template).
        requests_so_far: The run's LLM requests when it was recorded (the x-axis).
        rejected_so_far: The run's rejected proposals by reason until then (empty
            for studies recorded before it was kept).
        usage: The evaluation's own usage (calls, cache hits, tokens, cost).
        started, finished: Its times (None: not recorded).
        predictions: The predictions kept on the trial (the first few).
        artifact: ``(artifact id, file name)`` of its predictions' CSV, if uploaded.
        error: Why it failed (``""``).
    """

    number: int
    state: str
    split: str
    score: float | None
    n_examples: int
    template_id: str
    template: dict[str, Any]
    parents: tuple[str, ...]
    method: str
    step: int | None
    constant: bool
    requests_so_far: int
    rejected_so_far: dict[str, int]
    usage: dict[str, Any]
    started: _dt.datetime | None
    finished: _dt.datetime | None
    predictions: list[dict[str, Any]] = field(default_factory=list)
    artifact: tuple[str, str] | None = None
    error: str = ""

    @property
    def instruction(self) -> str:
        """The template's instruction."""
        return str(self.template.get("instruction", ""))


@dataclass
class StudyRecord:
    """A run's study: its attributes and its evaluations' trials, by number.

    Attributes:
        name: The study's name.
        storage: Its storage URL.
        attrs: The study's attributes (settings, status, result).
        trials: Its evaluations (failed ones included), by number.
        artifacts: The folder of its predictions' artifacts (None: none).
    """

    name: str
    storage: str
    attrs: StudyAttrs
    trials: list[TrialRecord]
    artifacts: Path | None = None

    @property
    def result(self) -> dict[str, Any] | None:
        """The run's stored result (None: the run did not finish)."""
        return self.attrs.result

    @property
    def settings(self) -> dict[str, Any]:
        """The run's stored settings (a refine study's refine settings)."""
        return self.attrs.settings or self.attrs.refine_settings or {}

    @property
    def method(self) -> str:
        """The run's method (``refine`` for a refine study)."""
        if self.attrs.refine_settings is not None and self.attrs.settings is None:
            return "refine"
        return str(self.settings.get("method") or (self.result or {}).get("method") or "?")

    @property
    def label(self) -> str:
        """How figures name the run: its method and seed."""
        seed = self.settings.get("seed")
        return f"{self.method} (seed {seed})" if seed is not None else self.method

    @property
    def returned_id(self) -> str | None:
        """The returned template's id (None: no result)."""
        return (self.result or {}).get("template_id")

    @property
    def start_id(self) -> str | None:
        """The starting template's id (from the result, else the first trial's)."""
        result = self.result
        if result and result.get("start_template"):
            from promptopt.template import Template

            return Template.from_dict(result["start_template"]).id
        return self.trials[0].template_id if self.trials else None

    def final_test(self, template_id: str | None) -> TrialRecord | None:
        """The last successful test evaluation of ``template_id`` (the final scoring)."""
        found = [t for t in self.trials if t.split == "test" and t.template_id == template_id
                 and t.score is not None and not t.constant]
        return max(found, key=lambda t: (t.n_examples, t.number)) if found else None

    def predictions(self, trial: TrialRecord) -> list[dict[str, Any]]:
        """Every prediction of ``trial`` (its artifact's CSV when there is one, else
        the few kept on the trial), each with ``id``, ``prediction``, ``target`` and a
        float ``score``."""
        rows: list[dict[str, Any]] = []
        if trial.artifact is not None and self.artifacts is not None:
            path = self.artifacts / trial.artifact[0]
            if path.is_file():
                with path.open(newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
        if not rows:
            rows = [dict(r) for r in trial.predictions]
        out = []
        for row in rows:
            try:
                score = float(row.get("score"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            out.append({"id": str(row.get("id", "")), "prediction": str(row.get("prediction", "")),
                        "target": str(row.get("target", "")), "score": score})
        return out


def _artifact(system_attrs: Mapping[str, Any]) -> tuple[str, str] | None:
    for key, value in system_attrs.items():
        if not key.startswith("artifacts:"):
            continue
        try:
            info = json.loads(value) if isinstance(value, str) else dict(value)
            return str(info["artifact_id"]), str(info.get("filename", ""))
        except (ValueError, KeyError, TypeError):
            continue
    return None


def trial_record(trial: Any) -> TrialRecord:
    """A study's trial as a :class:`TrialRecord`."""
    attrs = trial.user_attrs
    meta = attrs.get("meta") or {}
    step = meta.get("step")
    template = attrs.get("template") or {"instruction": attrs.get("instruction", "")}
    rejected = attrs.get("rejected_so_far") or {}
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        split=str(attrs.get("split", "")),
        score=None if trial.state.name == "FAIL" else attrs.get("score", trial.value),
        n_examples=int(attrs.get("n_examples") or 0),
        template_id=str(attrs.get("template_id", "")),
        template=dict(template),
        parents=tuple(str(p) for p in attrs.get("parents") or ()),
        method=str(attrs.get("method") or ""),
        step=step if isinstance(step, int) and not isinstance(step, bool) else None,
        constant=bool(meta.get("constant", False)),
        requests_so_far=int(attrs.get("requests_so_far") or 0),
        rejected_so_far={str(k): int(v) for k, v in dict(rejected).items()},
        usage=dict(attrs.get("usage") or {}),
        started=trial.datetime_start,
        finished=trial.datetime_complete,
        predictions=[dict(p) for p in attrs.get("predictions") or ()],
        artifact=_artifact(trial.system_attrs),
        error=str(attrs.get("error") or ""),
    )


def read_study(storage: str, name: str, *, artifacts: str | Path | None = None) -> StudyRecord:
    """Read study ``name`` of ``storage``.

    Args:
        storage: An Optuna storage URL.
        name: The study.
        artifacts: The predictions' artifact folder (default: beside the storage).

    Raises:
        ConfigError: the study holds no promptopt run.
        StorageError: the storage cannot be read, or has no such study (the message
            lists the studies it has).
    """
    study = load_study(storage, name)
    attrs = StudyAttrs(study.user_attrs)
    if attrs.settings is None and attrs.refine_settings is None:
        raise ConfigError(f"study {name!r} in {storage} holds no promptopt run (no settings)")
    trials = [trial_record(t) for t in sorted(study.get_trials(deepcopy=False),
                                              key=lambda t: t.number)
              if is_evaluation(t, failed=True)]
    folder = Path(artifacts) if artifacts is not None else artifact_dir(storage)
    return StudyRecord(name=name, storage=storage, attrs=attrs, trials=trials, artifacts=folder)


def studies_with_prefix(storage: str, prefix: str) -> list[str]:
    """The studies of a comparison (``<prefix>-<method>-s<seed>``), sorted.

    Raises:
        ConfigError: none matches (the message lists what the storage holds).
    """
    names = sorted(import_optuna().get_all_study_names(open_storage(storage)))
    found = [n for n in names if n.startswith(f"{prefix}-")]
    if not found:
        shown = ", ".join(names[:10]) or "none"
        raise ConfigError(f"no study named {prefix}-... in {storage} (it holds: {shown})")
    return found


def read_studies(storage: str, names: Sequence[str], *,
                 artifacts: str | Path | None = None) -> list[StudyRecord]:
    """:func:`read_study` for each of ``names``, in order."""
    return [read_study(storage, n, artifacts=artifacts) for n in names]
