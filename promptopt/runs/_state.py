"""The state of a run on its study, and what resuming an interrupted run needs.

A run writes its settings on the study when it starts and its ``status`` as it goes:
``"running"``, then ``"finished"``, or ``"interrupted"`` (Ctrl-C, SIGTERM, an LLM
provider error: resumable) or ``"failed"`` (any other error), with the reason in
``status_detail``. Resuming reads the settings back (:func:`args_from_settings`),
checks options given again against them (:func:`check_given`), and replays the run:
the disk cache answers the LLM calls already made and the tracker skips the trials
already recorded (see :class:`~promptopt.tracking._tracker.Tracker`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import shlex
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from promptopt.data import Splits, sample_path
from promptopt.errors import ConfigError, Interrupted, LLMError, ResumeError, StorageError
from promptopt.evaluator import DEFAULT_MAX_ERRORS
from promptopt.llm import DEFAULT_TIMEOUT
from promptopt.redact import is_redacted
from promptopt.runs._process import is_live_here, this_process
from promptopt.scoring import object_spec
from promptopt.tasks import Task
from promptopt.template import Template
from promptopt.tracking import Tracker, display_url, find_study, load_study_attrs
from promptopt.version import __version__

OPTION_NAMES = {
    "method": "--method", "task": "--task", "data": "--data", "model": "--model",
    "proposer": "--proposer", "scorer": "--scorer", "budget": "--budget", "seed": "--seed",
    "train": "--train", "val": "--val", "test": "--test", "split_seed": "--split-seed",
    "skip_bad_rows": "--skip-bad-rows", "settings": "--set", "start": "--start",
    "suffix": "--suffix", "api_base": "--api-base", "task_options": "--task-option",
    "max_errors": "--max-errors", "timeout": "--timeout",
}
"""The settings a resumed run takes from its study, with their command-line options."""

TASK_OPTION_NAMES = {"inputs": "--inputs", "target": "--target", "metric": "--metric"}
"""Task options with command-line options of their own (others: ``--task-option KEY=VALUE``)."""

_MISSING = object()
OVERRIDABLE = {"api_base", "max_errors", "timeout"}
"""Settings a resume may change: where and how patiently the model is called, not what
the run does."""


def resume_command(storage: str, study: str) -> str:
    """The command line that resumes ``study``."""
    return f"promptopt run --resume --study {shlex.quote(study)} --storage {shlex.quote(storage)}"


def data_fingerprint(splits: Splits) -> str:
    """A hash of the split examples (ids, inputs, targets, in order)."""
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        for e in getattr(splits, name):
            item = [name, e.id, sorted(e.inputs.items()), e.target]
            digest.update(json.dumps(item, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:16]


def run_settings(
    spec: Mapping[str, Any], method_settings: Mapping[str, Any], task: Task, start: Template
) -> dict[str, Any]:
    """The settings stored on a run's study (JSON-ready; what a resume reruns with).

    Args:
        spec: The :func:`promptopt.run` arguments that define the run.
        method_settings: The optimizer's settings (``get_params()``).
        task: The task built from ``spec`` (resolved scorer and split sizes).
        start: The starting template.
    """
    data = spec["data"]
    task_options = task.get_params()
    metric = dict(spec.get("task_options") or {}).get("metric")
    if metric is not None and "metric" not in task_options:  # a metric replacing the scorer
        task_options["metric"] = metric if isinstance(metric, str) else task.scorer_name
    return {
        "method": spec["method"],
        "method_settings": dict(method_settings),
        "task": spec["task"],
        "task_options": task_options,
        "data": str(data) if data is not None else "bundled sample",
        "data_path": str(Path(data).resolve()) if data is not None else None,
        "data_fingerprint": data_fingerprint(task.splits),
        "model": spec["model"],
        "proposer": spec["proposer"] or spec["model"],
        "api_base": spec["api_base"],
        "max_errors": spec["max_errors"],
        "timeout": spec["timeout"],
        "scorer": task.scorer_name,
        "scorer_option": spec["scorer"] if isinstance(spec["scorer"], str) else None,
        "budget": spec["budget"],
        "seed": spec["seed"],
        "splits": task.splits.sizes(),
        "split_request": {k: spec[k] for k in ("train", "val", "test")},
        "split_seed": spec["split_seed"],
        "skip_bad_rows": spec["skip_bad_rows"],
        "suffix": spec["suffix"],
        "start_template": start.to_dict(),
        "promptopt_version": __version__,
    }


def _scorer_option(settings: Mapping[str, Any]) -> str:
    option = settings.get("scorer_option")
    if isinstance(option, str):
        return option
    name = str(settings.get("scorer", "auto"))
    return "hashing" if name.startswith("hashing-bow") else name


def args_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`promptopt.run` arguments of a run, from its stored ``settings``."""
    try:
        data = settings.get("data_path") or (
            None if settings["data"] == "bundled sample" else settings["data"]
        )
        sizes = settings["splits"]
        return {
            "method": settings["method"],
            "settings": dict(settings.get("method_settings") or {}),
            "task": settings["task"],
            "task_options": dict(settings.get("task_options") or {}),
            "data": data,
            "model": settings["model"],
            "proposer": settings["proposer"],
            "scorer": _scorer_option(settings),
            "budget": settings["budget"],
            "seed": settings["seed"],
            "train": sizes["train"],
            "val": sizes["val"],
            "test": sizes["test"],
            "split_seed": settings["split_seed"],
            "skip_bad_rows": bool(settings.get("skip_bad_rows", False)),
            "start": Template.from_dict(settings["start_template"], source="stored settings"),
            "suffix": bool(settings.get("suffix", False)),
            "api_base": settings.get("api_base"),
            "max_errors": settings.get("max_errors", DEFAULT_MAX_ERRORS),
            "timeout": settings.get("timeout", DEFAULT_TIMEOUT),
        }
    except (KeyError, TypeError) as exc:
        raise ResumeError(f"the study's stored settings are incomplete (missing {exc})") from None


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
    study: str, stored: Mapping[str, Any], settings: Mapping[str, Any],
    given: Mapping[str, Any],
) -> None:
    """Raise :class:`ConfigError` naming the first option that contradicts the study.

    A resumed run keeps the settings it was started with; options given again must
    agree with them (``--set`` keys and task options one by one). ``api_base``,
    ``max_errors`` and ``timeout`` may change.
    """
    def conflict(option: str, was: Any, now: Any) -> ConfigError:
        return ConfigError(
            f"cannot resume study {study!r} with {option} {now!r}: the run was started with "
            f"{was!r}. A resumed run keeps its stored settings: leave {option} out, or start "
            "a new study"
        )

    for name, value in given.items():
        if name not in OPTION_NAMES:
            raise ConfigError(f"unknown setting {name!r} for a resumed run")
        if name in OVERRIDABLE:
            continue
        if name in ("settings", "task_options"):
            stored_items = stored[name]
            for key, item in dict(value or {}).items():
                item = json.loads(json.dumps(item, default=object_spec))
                if stored_items.get(key, _MISSING) != item:
                    option = (f"--set {key}" if name == "settings"
                              else TASK_OPTION_NAMES.get(key, f"--task-option {key}"))
                    raise conflict(option, stored_items.get(key, "(not set)"), item)
        elif not _same(name, value, stored[name], settings):
            shown = stored[name].instruction if name == "start" else stored[name]
            raise conflict(OPTION_NAMES[name], shown, value)


def check_new(storage: str, study: str) -> None:
    """Refuse to start a run in a study that already holds a run's trials."""
    found = find_study(storage, study)
    if found is not None and "settings" in found[0] and found[1]:
        status = found[0].get("status", "finished" if "result" in found[0] else "unknown")
        result = found[0].get("result")
        best = (
            f"; its best template ({float(result['val_score']):.4f} on validation): "
            f"{result['template'].get('instruction')!r}" if isinstance(result, dict) else ""
        )
        raise ConfigError(
            f"study {study!r} in {display_url(storage)} already holds a run ({found[1]} "
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
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run arguments to resume ``study`` with, and the study's attributes.

    Raises:
        ConfigError: no such study, or ``given`` contradicts the stored settings.
        ResumeError: the study holds no promptopt run, or a live process runs it.
    """
    attrs = load_study_attrs(storage, study)
    if "settings" not in attrs:
        raise ResumeError(
            f"study {study!r} in {display_url(storage)} holds no promptopt run to resume"
        )
    spec = args_from_settings(attrs["settings"])
    check_given(study, spec, attrs["settings"], given)
    if "result" not in attrs and not any(k.startswith("worker:") for k in attrs):
        check_not_running(study, attrs)  # several workers: see workers.resume_member
    for name in OVERRIDABLE & set(given):
        spec[name] = given[name]
    if "api_base" not in given and is_redacted(spec.get("api_base")):
        raise ConfigError(f"the --api-base of study {study!r} held credentials, which are not "
                          "stored; give --api-base again to resume")
    if not isinstance(given.get("scorer", ""), str):
        spec["scorer"] = given["scorer"]  # an object (e.g. shared by compare); name checked
    spec["task_options"].update(given.get("task_options") or {})  # e.g. a metric function
    return spec, attrs


def check_not_running(study: str, attrs: Mapping[str, Any]) -> None:
    """Refuse to resume a run that another live process on this machine is running."""
    detail = attrs.get("status_detail") or {}
    if attrs.get("status") == "running" and is_live_here(detail):
        raise ResumeError(
            f"study {study!r} is being run by process {detail['pid']} on this machine; stop it "
            "(or wait "
            "for it) before resuming"
        )


def set_status(
    tracker: Tracker, status: str, reason: str = "", *, resumed: bool = False, worker: int = 0
) -> None:
    """Write the run's ``status`` and ``status_detail`` (reason, process, time, resumes).

    Worker ``k >= 1`` of a study (see :mod:`promptopt.runs._workers`) writes both into the
    attribute ``worker:<k>`` instead, keeping the fields it holds already.
    """
    key = f"worker:{worker}" if worker else "status_detail"
    previous = tracker.attrs().get(key) or {}
    resumes = int(previous.get("resumes", 0)) + (1 if resumed else 0)
    tracker.set_attr(key, {
        **(dict(previous, status=status) if worker else {}),
        "reason": reason,
        **this_process(),
        "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "resumes": resumes,
        "replayed_trials": tracker.replayed,
    })
    if not worker:  # after its detail: a worker joining that sees "running" finds the pid
        tracker.set_attr("status", status)


def record_stop(tracker: Tracker, exc: BaseException, *, worker: int = 0) -> None:
    """Mark the run (or worker ``worker``) stopped by ``exc``; resumable stops get a
    ``resume_hint`` attribute.

    Ctrl-C, SIGTERM, LLM errors (a provider outage, too many failed evaluations),
    storage errors and errors marked ``resumable`` (no human rating in time) are
    ``"interrupted"``; other errors ``"failed"``. Never raises: the storage itself may
    be what failed (then the status stays ``"running"``, which a resume accepts once
    the process is gone; a warning says so).
    """
    if isinstance(exc, Interrupted):
        status, reason = "interrupted", exc.signal_name
    elif isinstance(exc, KeyboardInterrupt):
        status, reason = "interrupted", "KeyboardInterrupt (Ctrl-C)"
    elif isinstance(exc, (LLMError, StorageError)) or getattr(exc, "resumable", False):
        status, reason = "interrupted", f"{type(exc).__name__}: {exc}"
    else:
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
    if status == "interrupted":
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

    The previous handler is restored afterwards. Outside the main thread (where
    signal handlers cannot be set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
