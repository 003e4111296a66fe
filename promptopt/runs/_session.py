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

The pieces are here too: the status record (:func:`set_status`; ``"running"``, then
``"finished"``, or ``"interrupted"``: Ctrl-C, SIGTERM, an LLM provider error, resumable;
or ``"failed"``: any other error, with the reason in ``status_detail``), the stop
(:func:`record_stop`, :func:`sigterm_as_interrupt`) and the :class:`Heartbeat`.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import shlex
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

from promptopt.errors import (
    Interrupted,
    LLMError,
    StorageError,
    clear_stop,
    request_stop,
    stop_is_deferred,
)
from promptopt.runs._process import this_process
from promptopt.runs._results import RunResult
from promptopt.runs._state import check_replayable
from promptopt.runs._workers import Member, plan_start, publish_result
from promptopt.tracking import RunStatus, StudyAttrs, Tracker

HEARTBEAT_S = 10.0
"""How often a worker on a database server writes its heartbeat (see :class:`Heartbeat`)."""


def resume_command(storage: str, study: str) -> str:
    """The command line that resumes ``study``."""
    return f"promptopt run --resume --study {shlex.quote(study)} --storage {shlex.quote(storage)}"


def set_status(
    tracker: Tracker, status: RunStatus, reason: str = "", *, resumed: bool = False, worker: int = 0
) -> None:
    """Write the run's ``status`` and ``status_detail`` (reason, process, time, resumes).

    Worker ``k >= 1`` of a study (see :mod:`promptopt.runs._workers`) writes both into its
    own record instead, keeping the fields it holds already (:class:`StudyAttrs`).
    """
    previous = StudyAttrs(tracker.attrs()).worker_records().get(worker, {})
    resumes = int(previous.get("resumes", 0)) + (1 if resumed else 0)
    StudyAttrs.write_worker(tracker, worker, {
        **(previous if worker else {}),
        "status": status,
        "reason": reason,
        **this_process(),
        "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "resumes": resumes,
        "replayed_trials": tracker.replayed,
    })


def record_stop(tracker: Tracker, exc: BaseException, *, worker: int = 0,
                resumable: bool = True) -> None:
    """Mark the run (or worker ``worker``) stopped by ``exc``; resumable stops get a
    ``resume_hint`` attribute.

    Ctrl-C, SIGTERM, LLM errors (a provider outage, too many failed evaluations),
    storage errors and errors marked ``resumable`` (no human rating in time) are
    ``"interrupted"``; other errors ``"failed"``. Never raises: the storage itself may
    be what failed (then the status stays ``"running"``, which a resume accepts once
    the process is gone; a warning says so). ``resumable=False`` (work that ``--resume``
    does not continue, e.g. a refine): no ``resume_hint``.
    """
    clear_stop()  # this stop is being handled: its writes below must not raise it again
    if isinstance(exc, Interrupted):
        status, reason = RunStatus.INTERRUPTED, exc.signal_name
    elif isinstance(exc, KeyboardInterrupt):
        status, reason = RunStatus.INTERRUPTED, "KeyboardInterrupt (Ctrl-C)"
    elif isinstance(exc, (LLMError, StorageError)) or getattr(exc, "resumable", False):
        status, reason = RunStatus.INTERRUPTED, f"{type(exc).__name__}: {exc}"
    else:
        status, reason = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
    if status == RunStatus.INTERRUPTED and resumable:
        with contextlib.suppress(Exception):
            exc.resume_hint = resume_command(  # type: ignore[attr-defined]
                tracker.storage_url, tracker.study_name
            )
    failure: Exception | None = None
    for attempt in range(2):  # once more after a pause: a write the signal cut may block one
        try:
            set_status(tracker, status, reason[:500], worker=worker)
            return
        except Exception as write_error:  # noqa: BLE001 - reported below, never raised
            failure = write_error
            if not attempt:
                time.sleep(0.5)
    warnings.warn(f"could not record the stop ({status}: {reason[:200]}) in study "
                  f"{tracker.study_name!r}: {failure}", RuntimeWarning, stacklevel=2)


class Heartbeat:
    """Writes ``heartbeat:<index>`` (epoch seconds) every ``interval`` s while started.

    Only on database servers: a SQLite file lives on one machine, where the process id
    tells whether a worker is alive. Failures to write are ignored (a storage that went
    away is reported by the run itself).
    """

    def __init__(self, tracker: Tracker, index: int, interval: float = HEARTBEAT_S) -> None:
        self.tracker = tracker
        self.index = index
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        """Start beating in a daemon thread (no-op on SQLite); returns self."""
        if not self.tracker.storage_url.startswith("sqlite"):
            self._thread = threading.Thread(
                target=self._beat, name=f"promptopt-heartbeat-{self.index}", daemon=True
            )
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                StudyAttrs.write_heartbeat(self.tracker, self.index, time.time())
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop beating (waits a moment for a write in flight)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


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


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` (handled like Ctrl-C).

    During a storage or cache write (:func:`~promptopt.errors.stop_deferred`) the stop
    waits for the write to end; where the signal lands in code that swallows
    exceptions, the next evaluation or LLM call raises it
    (:func:`~promptopt.errors.check_stop`).

    The previous handler is restored afterwards. Outside the main thread (where
    signal handlers cannot be set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        request_stop("SIGTERM")  # raised at the next call if this raise is lost
        if not stop_is_deferred():  # else when the storage or cache write ends
            raise Interrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        clear_stop()
