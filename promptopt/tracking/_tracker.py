"""The tracker: one Optuna study per run, one trial per evaluated candidate.

Each evaluation is written as one finished trial as soon as it ends, so
``optuna-dashboard`` shows the search as it happens: its real start and end times,
parameters with distributions and its state (see :mod:`promptopt.tracking._params`:
validation scores are the study's objective, so its best trial is the best validated
template; train and test evaluations are ``PRUNED`` trials holding their score as value
and intermediate value), a Markdown note (:mod:`promptopt.tracking._notes`), and for
validation and test evaluations a CSV of every prediction as an artifact
(:mod:`promptopt.tracking._artifacts`). Every attribute is JSON (template, parents,
method, split, score, scorer, usage); run settings and the final result live on the
study's user attributes. API keys never reach the storage. A resumed run
(``Tracker(..., resume=True)``) replays its recorded trials without writing them twice.
Several workers may record into one study (see :mod:`promptopt.runs._workers`): each
trial carries its ``worker`` index, and a resumed worker replays its own trials only.
Storage failures surface as :class:`~promptopt.errors.StorageError`.
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptopt.errors import ResumeError, stop_deferred
from promptopt.redact import scrub
from promptopt.tracking._artifacts import artifact_dir, predictions_artifact, wants_artifact
from promptopt.tracking._notes import Parent, render_note, save_trial_note
from promptopt.tracking._params import (
    evaluation_trials,
    is_objective,
    search_step,
    stored_meta,
    trial_params,
)
from promptopt.tracking._storage import (
    create_study,
    import_optuna,
    load_study,
    open_storage,
    storage_errors,
)

REPLAY_KEYS = ("template_id", "split", "n_examples", "examples_hash")
"""Trial attributes that identify an evaluation when a resumed run replays it."""


def _describe(attrs: Mapping[str, Any]) -> str:
    return (
        f"template {attrs.get('template_id')} on {attrs.get('split')} "
        f"({attrs.get('n_examples')} examples)"
    )


class Tracker:
    """Records evaluations into an Optuna study.

    A tracker opened with ``resume=True`` continues an existing study whose run was
    interrupted: the resumed run replays the search from the start, so its first
    evaluations are the ones the study already holds. :meth:`record` checks the
    k-th new evaluation against the k-th recorded trial and skips it when they
    match (same template, split and examples, same score); only evaluations past
    the recorded ones are added. A mismatch raises :class:`ResumeError` rather than
    writing a duplicate.

    A failed evaluation (:meth:`record_failure`) is a trial in state ``FAIL``. A
    resumed run retries it, so from the first failed trial on the search may take
    another path: the trials recorded after it are matched by content (template,
    split, examples and score) instead of position, and those the new path does not
    reach stay in the study as the history of the earlier attempt.

    Storage faults (a locked or read-only database) raise :class:`StorageError`.

    Args:
        storage: An Optuna storage URL (``sqlite:///promptopt.db``, ``postgresql://...``).
        study_name: The study (created if missing, reused if it exists).
        resume: Continue an existing study (which must exist), replaying its trials.
        worker: The worker index written on every trial; a resumed tracker replays
            only the trials of this worker.
        after: Trial number before which this worker started (its registration trial;
            -1 for a study's first worker): the initial :attr:`last_number`.
        artifacts: Folder of the predictions' artifacts (default: beside the storage,
            see :func:`~promptopt.tracking._artifacts.artifact_dir`; None there: none).
    """

    def __init__(
        self,
        storage: str,
        study_name: str,
        *,
        resume: bool = False,
        worker: int = 0,
        after: int = -1,
        artifacts: str | Path | None = None,
    ) -> None:
        self.storage_url = storage
        self.study_name = study_name
        self.worker = worker
        self.last_number = after
        """Number of the last trial recorded or replayed here (see ``promptopt.runs``)."""
        self.artifact_dir = Path(artifacts) if artifacts is not None else artifact_dir(storage)
        """Where the predictions' artifacts go (None: not uploaded)."""
        if resume:
            self.study = load_study(storage, study_name)
        else:
            store = open_storage(storage)
            with storage_errors(storage, f"create study {study_name!r}"):
                self.study = create_study(store, study_name, load_if_exists=True)
        self._numbers: dict[str, list[int]] = {}  # template id -> its trials' numbers
        self._templates: dict[str, dict[str, Any]] = {}
        self._lineage: dict[str, list[str]] = {}  # template id -> parents first recorded
        self._known = 0  # trials of the study read into the two maps
        self._warned = False
        recorded = self._learn() if resume else []
        self._replay: list[Any] = [t for t in recorded if t.user_attrs.get("worker", 0) == worker]
        self._next = 0
        self._after_failure: Counter[tuple[Any, ...]] | None = None
        self.replayed = 0
        """Evaluations matched against recorded trials (not written again)."""

    @property
    def replay_pending(self) -> int:
        """Recorded trials the resumed run has not replayed yet (0 past a failed one)."""
        return 0 if self._after_failure is not None else len(self._replay) - self._next

    def set_attr(self, key: str, value: Any) -> None:
        """Store a JSON-able value on the study (secrets scrubbed)."""
        with storage_errors(self.storage_url, f"write the study attribute {key!r}"):
            self.study.set_user_attr(key, json.loads(json.dumps(scrub(value), default=str)))

    def record(
        self,
        *,
        value: float,
        attrs: Mapping[str, Any],
        started: _dt.datetime | None = None,
        finished: _dt.datetime | None = None,
        rows: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Add one evaluation's trial (written to the storage at once) with its note.

        When resuming, an evaluation that matches the next recorded trial is skipped.

        Args:
            value: The evaluation's mean score.
            attrs: The trial's user attributes (JSON; secrets are scrubbed).
            started, finished: When the evaluation started and ended (default: now).
            rows: Every example's ``id``, ``inputs``, ``target``, ``prediction`` and
                ``score``: a few go into the note, all into the artifact.

        Raises:
            ResumeError: if a resumed run's evaluation differs from the recorded trial
                at the same position.
            StorageError: if the storage cannot be written.
        """
        clean = self._clean(attrs)
        if self._matched(float(value), clean):
            return
        with stop_deferred():  # the trial, its artifact and its note, whole
            self._write(float(value), clean, started, finished, scrub(list(rows)))

    def record_failure(
        self,
        *,
        attrs: Mapping[str, Any],
        started: _dt.datetime | None = None,
        finished: _dt.datetime | None = None,
    ) -> None:
        """Add one failed trial (state ``FAIL``, no value; the reason in ``attrs``)."""
        clean = self._clean(attrs)
        if self._matched(None, clean):
            return
        with stop_deferred():
            self._write(None, clean, started, finished, [])

    def _clean(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        clean = json.loads(json.dumps(scrub({**dict(attrs), "worker": self.worker}), default=str))
        return dict(clean)

    def _write(self, value: float | None, attrs: dict[str, Any], started: _dt.datetime | None,
               finished: _dt.datetime | None, rows: list[Any]) -> None:
        """Create the finished trial (one write), then its note."""
        optuna = import_optuna()
        state = optuna.trial.TrialState
        objective = value is not None and is_objective(attrs)
        params, dists = trial_params(attrs)
        stored = {**attrs, "meta": stored_meta(attrs["meta"])} if "meta" in attrs else attrs
        system = self._artifact(attrs, rows) if value is not None else {}
        step = search_step(attrs) or 0

        def build(params: dict[str, Any], dists: dict[str, Any]) -> Any:
            trial = optuna.trial.create_trial(
                state=state.FAIL if value is None else state.COMPLETE if objective
                else state.PRUNED,
                value=value, params=params, distributions=dists, user_attrs=stored,
                system_attrs=system,
                intermediate_values=None if value is None or objective else {step: value},
            )
            now = _dt.datetime.now()
            trial.datetime_start = min(started or now, finished or now)
            trial.datetime_complete = finished or now
            return trial

        try:
            trial_id = self._add(build(params, dists))
        except ValueError as exc:  # a categorical's choices differ from an earlier trial's
            if not self._warned:
                warnings.warn(f"study {self.study_name!r}: trials recorded without their "
                              f"categorical parameters from now on: {exc}", RuntimeWarning,
                              stacklevel=3)
                self._warned = True
            kept = {k for k, d in dists.items() if k == "split" or not hasattr(d, "choices")}
            trial_id = self._add(build({k: params[k] for k in kept}, {k: dists[k] for k in kept}))
        self._remember(self.last_number, attrs)
        note = render_note(stored, value, parents=self._parents(attrs), rows=rows,
                           objective=objective)
        with storage_errors(self.storage_url, f"write the note of trial {self.last_number}"):
            save_trial_note(self.study, trial_id, note)

    def _artifact(self, attrs: Mapping[str, Any], rows: list[Any]) -> dict[str, Any]:
        """The system attributes naming the predictions' artifact ({} if none is due)."""
        if self.artifact_dir is None or not rows or not wants_artifact(attrs):
            return {}
        role = (attrs.get("meta") or {}).get("role")
        name = f"predictions-{attrs.get('split')}-{role or 'eval'}-{attrs.get('template_id')}.csv"
        try:
            return predictions_artifact(self.artifact_dir, name.replace(" ", "-"), rows)
        except OSError as exc:  # the predictions are still on the trial (note, attributes)
            warnings.warn(f"could not write the predictions artifact into {self.artifact_dir}: "
                          f"{exc}", RuntimeWarning, stacklevel=3)
            return {}

    def _remember(self, number: int, attrs: Mapping[str, Any]) -> None:
        template_id = attrs.get("template_id")
        if isinstance(template_id, str):
            self._numbers.setdefault(template_id, []).append(number)
            if isinstance(attrs.get("template"), Mapping):
                self._templates.setdefault(template_id, dict(attrs["template"]))
            if attrs.get("parents"):
                self._lineage.setdefault(template_id, list(attrs["parents"]))

    def _learn(self) -> list[Any]:
        """Read the study's evaluation trials into the parent maps; those trials."""
        with storage_errors(self.storage_url, "read the trials"):
            trials = list(self.study.get_trials(deepcopy=False))
        found = evaluation_trials(trials, failed=True)
        self._numbers, self._templates, self._lineage = {}, {}, {}
        for t in found:
            self._remember(t.number, t.user_attrs)
        self._known = len(trials)
        return found

    def _parents(self, attrs: Mapping[str, Any]) -> list[Parent]:
        """The evaluation's parents with their trial numbers (other workers' included);
        for an evaluation that names none (a finalist scored on validation), the parents
        an earlier trial of its template named."""
        given = attrs.get("parents") or self._lineage.get(str(attrs.get("template_id")), [])
        ids = [p for p in given if isinstance(p, str)]
        if any(p not in self._numbers for p in ids):
            with storage_errors(self.storage_url, "read the trials"):
                count = self.study._storage.get_n_trials(self.study._study_id)
            if count > self._known:
                self._learn()
        return [Parent(p, tuple(self._numbers.get(p, ())), self._templates.get(p)) for p in ids]

    def _add(self, trial: Any) -> int:
        """``Study.add_trial``, keeping the trial's number (allocated by the storage under
        a lock on the study row, so numbers follow the order trials were committed in);
        the new trial's id."""
        trial._validate()
        storage, study_id = self.study._storage, self.study._study_id
        doing = "record a trial (the trials recorded before it are kept)"
        with storage_errors(self.storage_url, doing):
            trial_id = storage.create_new_trial(study_id, template_trial=trial)
            self.last_number = storage.get_trial_number_from_id(trial_id)
        return int(trial_id)

    def _matched(self, value: float | None, attrs: Mapping[str, Any]) -> bool:
        """Whether a resumed run's evaluation is one the study holds (``value`` None: failed)."""
        if self._after_failure is not None:
            key = _content(attrs, value)
            if value is None or self._after_failure[key] <= 0:
                return False
            self._after_failure[key] -= 1
            self.replayed += 1
            return True
        if self._next >= len(self._replay):
            return False
        old = self._replay[self._next]
        failed = old.state == import_optuna().trial.TrialState.FAIL
        if failed or value is None:
            # It failed then (and is retried now) or fails now: from here on the search
            # may take another path, so later trials are matched by content.
            self._check_replay(old, value, attrs, scores=False)
            rest = self._replay[self._next + (1 if failed else 0) :]
            self._after_failure = Counter(_content(t.user_attrs, t.value) for t in rest
                                          if t.state != import_optuna().trial.TrialState.FAIL)
            return False
        self._check_replay(old, value, attrs)
        self._next += 1
        self.replayed += 1
        self.last_number = old.number
        return True

    def _check_replay(
        self, old: Any, value: float | None, attrs: Mapping[str, Any], *, scores: bool = True
    ) -> None:
        recorded = old.user_attrs
        same = all(recorded.get(k) == attrs.get(k) for k in REPLAY_KEYS if k in recorded)
        if scores:
            same = same and old.value is not None and value is not None and (
                abs(float(old.value) - value) <= 1e-6
            )
        if not same:
            raise ResumeError(
                f"cannot resume study {self.study_name!r}: the replay differs from the "
                f"recorded trial {old.number} (recorded {_describe(recorded)}, score "
                f"{old.value}; replayed {_describe(attrs)}, score {value}). The code, the "
                "data, the scorer or the LLM cache changed since the run was interrupted; "
                "start a new study instead"
            )

    def check_replayed(self) -> None:
        """Raise :class:`ResumeError` if a resumed run ended before replaying every trial."""
        if self.replay_pending:
            raise ResumeError(
                f"cannot resume study {self.study_name!r}: the replay ended after "
                f"{self.replayed} of its {len(self._replay)} recorded trials (the code, the "
                "data or the LLM cache changed); start a new study instead"
            )

    def trials(self) -> list[Any]:
        """All trials of the study."""
        with storage_errors(self.storage_url, "read the trials"):
            return list(self.study.get_trials(deepcopy=False))

    def attrs(self) -> dict[str, Any]:
        """The study's user attributes, read afresh from the storage."""
        with storage_errors(self.storage_url, f"read study {self.study_name!r}"):
            study_id = self.study._study_id
            return dict(self.study._storage.get_study_user_attrs(study_id))


def _content(attrs: Mapping[str, Any], value: float | None) -> tuple[Any, ...]:
    """What identifies a recorded evaluation regardless of its position: keys and score."""
    score = None if value is None else round(float(value), 9)
    return (*(json.dumps(attrs.get(k)) for k in REPLAY_KEYS), score)

