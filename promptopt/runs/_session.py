"""One owner of a run's lifecycle on its study: :class:`RunSession`, and of the status and
heartbeat of any work a command records in a study: :class:`Lifecycle`.

Entering the session opens the run: it checks a resume against the stored run
(replayable scorer and data) or, for a named study, plans the start (first worker,
or one more worker joining a live run: :func:`~promptopt.runs._workers.plan_start`),
creates the :class:`~promptopt.tracking.Tracker`, writes the settings (first worker of
a new run), sets the status ``running`` and starts the heartbeat. :meth:`publish`
stores the result. Leaving records ``finished``, or the stop reason of the exception
that ended the block (``interrupted``/``failed``, with the resume hint), and stops the
heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from promptopt.runs._results import RunResult
from promptopt.runs._state import check_replayable, record_stop, set_status
from promptopt.runs._workers import Heartbeat, Member, plan_start, publish_result
from promptopt.tracking import RunStatus, StudyAttrs, Tracker


class Lifecycle:
    """The status and heartbeat of one process's work on a study (a context manager).

    Entering sets the status ``running`` (counting a resume) and starts the heartbeat;
    leaving stops it and records ``finished``, or the stop reason of the exception that
    ended the block (``interrupted``/``failed``, with a resume hint where ``resumable``).
    Every command that writes a study goes through one: a run (:class:`RunSession`),
    ``refine`` and ``eval --study``.

    Args:
        tracker: The study's tracker.
        worker: The worker this process is (0: the first, or the only one).
        resumed: Whether this continues an interrupted run.
        resumable: Whether ``--resume`` continues the work when it is interrupted.
    """

    def __init__(self, tracker: Tracker, *, worker: int = 0, resumed: bool = False,
                 resumable: bool = True) -> None:
        self.tracker, self.worker = tracker, worker
        self.resumed, self.resumable = resumed, resumable
        self._pulse: Heartbeat | None = None

    def __enter__(self) -> Lifecycle:
        set_status(self.tracker, RunStatus.RUNNING, resumed=self.resumed, worker=self.worker)
        self._pulse = Heartbeat(self.tracker, self.worker).start()  # liveness, for others
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pulse is not None:
            self._pulse.stop()
        if exc is None:
            set_status(self.tracker, RunStatus.FINISHED, worker=self.worker)
        else:
            record_stop(self.tracker, exc, worker=self.worker, resumable=self.resumable)


class RunSession:
    """A run open on its study (a context manager; see the module).

    Args:
        storage: Optuna storage URL.
        study: The study name.
        settings: The run's settings (:meth:`~promptopt.runs.RunSpec.to_settings`).
        seed: The run's search seed.
        named: Whether the user named the study (then it may exist: join or refuse).
        resuming: The stored settings of the run being resumed (None: a new run).
        member: The worker this process is (a resume of a several-worker study).
        on_study: Called with the study name once it is open.
    """

    def __init__(
        self,
        storage: str,
        study: str,
        settings: Mapping[str, Any],
        *,
        seed: int,
        named: bool,
        resuming: Mapping[str, Any] | None = None,
        member: Member | None = None,
        on_study: Callable[[str], None] | None = None,
    ) -> None:
        self.storage, self.study, self.settings = storage, study, dict(settings)
        self.seed, self.named, self.resuming = seed, named, resuming
        self.member = member
        self.on_study = on_study
        self._tracker: Tracker | None = None
        self._life: Lifecycle | None = None

    @property
    def tracker(self) -> Tracker:
        """The run's tracker (once entered)."""
        if self._tracker is None:
            raise RuntimeError("the run session is not open")
        return self._tracker

    @property
    def worker(self) -> Member:
        """This process's place among the study's workers (once entered)."""
        assert self.member is not None
        return self.member

    def __enter__(self) -> RunSession:
        if self.resuming is not None:
            check_replayable(self.study, self.resuming, self.settings)
        elif self.named:
            self.member = plan_start(self.storage, self.study, self.settings, self.seed)
        member = self.member = self.member or Member(seed=self.seed)
        tracker = self._tracker = Tracker(
            self.storage, self.study, resume=self.resuming is not None, worker=member.index,
            after=member.registration,
        )
        if self.resuming is None and member.index == 0:
            StudyAttrs.write_settings(tracker, self.settings)
        if self.on_study is not None:
            self.on_study(self.study)
        self._life = Lifecycle(tracker, worker=member.index, resumed=self.resuming is not None)
        self._life.__enter__()
        return self

    def publish(self, result: RunResult) -> RunResult:
        """Store this worker's result on the study; what this worker reports."""
        return publish_result(self.tracker, self.worker, result)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._life is not None:
            self._life.__exit__(exc_type, exc, tb)
