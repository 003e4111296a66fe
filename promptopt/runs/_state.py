"""What resuming an interrupted run needs: its stored settings, read back and checked.

A run writes its settings on the study when it starts and its status as it goes (the
lifecycle, :mod:`promptopt.runs._session`). Resuming reads the settings back
(:meth:`RunSpec.from_settings`), checks options given again against them
(:func:`check_given`), and replays the run: the disk cache answers the LLM calls
already made and the tracker skips the trials already recorded (see
:class:`~promptopt.tracking._tracker.Tracker`).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.data import sample_path
from promptopt.errors import (
    ConfigError,
    ResumeError,
)
from promptopt.redact import is_redacted
from promptopt.runs._process import is_live_here
from promptopt.runs._spec import FIELDS, OVERRIDABLE, TASK_OPTION_FLAGS, RunSpec, option
from promptopt.scoring import object_spec
from promptopt.template import Template
from promptopt.tracking import (
    RunStatus,
    StudyAttrs,
    display_url,
    find_study,
    load_study_attrs,
)

_MISSING = object()


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
