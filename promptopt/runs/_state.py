"""The state of a run on its study, and what resuming an interrupted run needs.

A run writes its settings on the study when it starts and its ``status`` as it goes:
``"running"``, then ``"finished"``, or ``"interrupted"`` (Ctrl-C, SIGTERM, an LLM
provider error: resumable) or ``"failed"`` (any other error), with the reason in
``status_detail``. Resuming reads the settings back (:meth:`RunSpec.from_settings`),
checks options given again against them (:func:`check_given`), and replays the run:
the disk cache answers the LLM calls already made and the tracker skips the trials
already recorded (see :class:`~promptopt.tracking._tracker.Tracker`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shlex
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from promptopt.data import sample_path
from promptopt.errors import (
    ConfigError,
    Interrupted,
    LLMError,
    ResumeError,
    StorageError,
    clear_stop,
    request_stop,
    stop_is_deferred,
)
from promptopt.redact import is_redacted
from promptopt.runs._process import is_live_here, this_process
from promptopt.runs._spec import FIELDS, OVERRIDABLE, TASK_OPTION_FLAGS, RunSpec, option
from promptopt.scoring import object_spec
from promptopt.template import Template
from promptopt.tracking import (
    RunStatus,
    StudyAttrs,
    Tracker,
    display_url,
    find_study,
    load_study_attrs,
)

_MISSING = object()


def resume_command(storage: str, study: str) -> str:
    """The command line that resumes ``study``."""
    return f"promptopt run --resume --study {shlex.quote(study)} --storage {shlex.quote(storage)}"


def _same(name: str, given: Any, stored: Any, settings: Mapping[str, Any]) -> bool:
    """Whether an option given to a resume agrees with the stored setting."""
    if name == "data":
        def where(path: Any) -> Path:
            return Path(path if path is not None else sample_path()).resolve()

        return where(given) == where(stored)
    if name == "scorer":
        return not isinstance(given, str) or given in (stored, settings.get("scorer"))
    if name in ("train", "val", "test"):
        requested = (settings.get("split_request") or {}).get(name)
        return given in (stored, requested)
    if name == "start":
        template = given if isinstance(given, Template) else Template.load(str(given))
        return bool(template.id == stored.id)
    return bool(given == stored)


def check_given(
    study: str, stored: RunSpec, settings: Mapping[str, Any], given: Mapping[str, Any],
) -> None:
    """Raise :class:`ConfigError` naming the first option that contradicts the study.

    A resumed run keeps the settings it was started with; options given again must
    agree with them (``--set`` keys and task options one by one). The fields whose
    :class:`~promptopt.runs._spec.Option` says ``override`` (``api_base``,
    ``max_errors``, ``timeout``, ``concurrency``) may change.
    """
    def conflict(flag: str, was: Any, now: Any) -> ConfigError:
        return ConfigError(
            f"cannot resume study {study!r} with {flag} {now!r}: the run was started with "
            f"{was!r}. A resumed run keeps its stored settings: leave {flag} out, or start "
            "a new study"
        )

    for name, value in given.items():
        if name not in FIELDS:
            raise ConfigError(f"unknown setting {name!r} for a resumed run")
        if name in OVERRIDABLE:
            continue
        if name in ("settings", "task_options", "selection"):
            stored_items = stored[name]
            for key, item in dict(value or {}).items():
                item = json.loads(json.dumps(item, default=object_spec))
                if stored_items.get(key, _MISSING) != item:
                    flag = ({"settings": f"--set {key}", "selection": f"--select {key}"}.get(name)
                            or TASK_OPTION_FLAGS.get(key, f"--task-option {key}"))
                    raise conflict(flag, stored_items.get(key, "(not set)"), item)
        elif not _same(name, value, stored[name], settings):
            shown = stored[name].instruction if name == "start" else stored[name]
            raise conflict(option(name).flag, shown, value)


def check_new(storage: str, study: str) -> None:
    """Refuse to start a run in a study that already holds a run's trials."""
    found = find_study(storage, study)
    if found is None:
        return
    attrs, n_trials = StudyAttrs(found[0]), found[1]
    if attrs.settings is not None and n_trials:
        result = attrs.result
        status = attrs.status or (RunStatus.FINISHED if result is not None else "unknown")
        best = (
            f"; its best template ({float(result['val_score']):.4f} on validation): "
            f"{result['template'].get('instruction')!r}" if result is not None else ""
        )
        raise ConfigError(
            f"study {study!r} in {display_url(storage)} already holds a run ({n_trials} "
            f"trials, status {status}); continue it with --resume (resume=True) or choose "
            f"another study name{best}"
        )


def check_replayable(
    study: str, stored: Mapping[str, Any], now: Mapping[str, Any]
) -> None:
    """Refuse a resume whose scorer or data differ from the stored run's."""
    if stored.get("scorer") != now["scorer"]:
        raise ResumeError(
            f"cannot resume study {study!r}: it was scored with {stored.get('scorer')!r}, "
            f"but the scorer is now {now['scorer']!r} (scores from different scorers are "
            "not comparable)"
        )
    for key, what in (("data_fingerprint", "data"), ("splits", "split sizes")):
        if key in stored and stored[key] != now[key]:
            raise ResumeError(
                f"cannot resume study {study!r}: its {what} changed since the run started "
                f"({stored[key]} then, {now[key]} now)"
            )


def load_for_resume(
    storage: str, study: str, given: Mapping[str, Any]
) -> tuple[RunSpec, StudyAttrs]:
    """The spec to resume ``study`` with, and the study's attributes.

    Raises:
        ConfigError: no such study, or ``given`` contradicts the stored settings.
        ResumeError: the study holds no promptopt run, or a live process runs it.
    """
    attrs = StudyAttrs(load_study_attrs(storage, study))
    settings = attrs.settings
    if settings is None:
        raise ResumeError(
            f"study {study!r} in {display_url(storage)} holds no promptopt run to resume"
        )
    spec = RunSpec.from_settings(settings)
    check_given(study, spec, settings, given)
    if attrs.result is None and not attrs.has_workers():
        check_not_running(study, attrs)  # several workers: see workers.resume_member
    spec = spec.replace(**{name: given[name] for name in OVERRIDABLE & set(given)})
    if "api_base" not in given and is_redacted(spec.llm.api_base):
        raise ConfigError(f"the --api-base of study {study!r} held credentials, which are not "
                          "stored; give --api-base again to resume")
    if given.get("task_options"):  # e.g. a metric function, stored by name
        spec = spec.replace(task_options={**spec.task.task_options, **given["task_options"]})
    return spec, attrs


def check_not_running(study: str, attrs: StudyAttrs) -> None:
    """Refuse to resume a run that another live process on this machine is running."""
    detail = attrs.status_detail
    if attrs.status == RunStatus.RUNNING and is_live_here(detail):
        raise ResumeError(
            f"study {study!r} is being run by process {detail['pid']} on this machine; stop it "
            "(or wait for it) before resuming"
        )


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
