"""The study attributes of a promptopt run: the only code that knows their keys.

A run's study holds, besides its trials, these user attributes:

- ``settings``: what the run does (:meth:`promptopt.runs.RunSpec.to_settings`);
- ``status`` (``running``, ``finished``, ``interrupted``, ``failed``) and
  ``status_detail`` (reason, process, time, resumes) of its first worker;
- ``worker:<k>``: the same for worker ``k >= 1`` (its status inside);
- ``heartbeat:<k>``: epoch seconds of worker ``k``'s last beat (database servers);
- ``result``: the run's result (scores, validation and test gains over the start with their
  intervals, notes; with several workers: the best of them), and
  ``result:<k>``: worker ``k``'s own;
- ``refine_settings``: what a ``refine`` study refined, instead of ``settings``.

:class:`StudyAttrs` reads them from a snapshot (``Tracker.attrs()`` or
``load_study_attrs``) and writes them through a :class:`~promptopt.tracking.Tracker`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any, Protocol


class RunStatus(str, Enum):
    """A run's (or one worker's) status on its study, stored as its value.

    ``running``, then ``finished``; or ``interrupted`` (Ctrl-C, SIGTERM, an LLM provider
    error: resumable) or ``failed`` (any other error). Equal to its value, so stored
    statuses (plain text) compare with it.
    """

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class _Writer(Protocol):
    def set_attr(self, key: str, value: Any) -> None: ...


SETTINGS = "settings"
STATUS = "status"
STATUS_DETAIL = "status_detail"
RESULT = "result"
REFINE_SETTINGS = "refine_settings"
_WORKER, _HEARTBEAT, _RESULT_OF = "worker:", "heartbeat:", "result:"


class StudyAttrs(Mapping[str, Any]):
    """A read-only view of a study's attributes, with named accessors (see the module)."""

    def __init__(self, attrs: Mapping[str, Any] | None = None) -> None:
        self._attrs = dict(attrs or {})

    def __getitem__(self, key: str) -> Any:
        return self._attrs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._attrs)

    def __len__(self) -> int:
        return len(self._attrs)

    # reading
    @property
    def settings(self) -> dict[str, Any] | None:
        """The run's stored settings (None: the study holds no promptopt run)."""
        value = self._attrs.get(SETTINGS)
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def refine_settings(self) -> dict[str, Any] | None:
        """What a refine study refined (None for other studies)."""
        value = self._attrs.get(REFINE_SETTINGS)
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def status(self) -> str | None:
        """The first worker's status (None: never started)."""
        value = self._attrs.get(STATUS)
        return None if value is None else str(value)

    @property
    def status_detail(self) -> dict[str, Any]:
        """The first worker's reason, process and time of its last status."""
        return dict(self._attrs.get(STATUS_DETAIL) or {})

    @property
    def result(self) -> dict[str, Any] | None:
        """The run's result (None: not finished)."""
        value = self._attrs.get(RESULT)
        return dict(value) if isinstance(value, Mapping) else None

    def has_workers(self) -> bool:
        """Whether more than one worker ever ran the study."""
        return any(key.startswith(_WORKER) for key in self._attrs)

    def worker_records(self) -> dict[int, dict[str, Any]]:
        """Every worker's stored state (status, pid, host, ...) by index."""
        records: dict[int, dict[str, Any]] = {}
        if STATUS in self._attrs:
            records[0] = {**self.status_detail, "status": self._attrs[STATUS]}
        records.update(self._indexed(_WORKER))
        return records

    def heartbeat(self, index: int) -> float | None:
        """Worker ``index``'s last heartbeat (epoch seconds), if any."""
        beat = self._attrs.get(f"{_HEARTBEAT}{index}")
        return float(beat) if isinstance(beat, (int, float)) else None

    def worker_results(self) -> dict[int, dict[str, Any]]:
        """Each finished worker's own result, by index (a lone first worker's is ``result``)."""
        results = self._indexed(_RESULT_OF)
        lone = self.result
        if 0 not in results and lone is not None and "workers" not in lone:
            results[0] = lone
        return results

    def has_own_result(self, index: int) -> bool:
        """Whether worker ``index`` stored a result of its own (``result:<index>``)."""
        return f"{_RESULT_OF}{index}" in self._attrs

    def _indexed(self, prefix: str) -> dict[int, dict[str, Any]]:
        found = {}
        for key, value in self._attrs.items():
            if key.startswith(prefix) and isinstance(value, Mapping):
                with contextlib.suppress(ValueError):
                    found[int(key[len(prefix):])] = dict(value)
        return found

    # writing
    @staticmethod
    def worker_key(index: int) -> str:
        """The attribute holding worker ``index``'s state: ``status_detail`` for worker 0
        (whose status is ``status``), ``worker:<index>`` for the others."""
        return f"{_WORKER}{index}" if index else STATUS_DETAIL

    @staticmethod
    def write_settings(tracker: _Writer, settings: Mapping[str, Any]) -> None:
        tracker.set_attr(SETTINGS, dict(settings))

    @staticmethod
    def write_refine_settings(tracker: _Writer, settings: Mapping[str, Any]) -> None:
        tracker.set_attr(REFINE_SETTINGS, dict(settings))

    @staticmethod
    def write_worker(tracker: _Writer, index: int, record: Mapping[str, Any]) -> None:
        """Worker ``index``'s state record (for worker 0 its detail, then its status:
        a worker joining in between finds the process of a run that says "running")."""
        record = dict(record)
        if index:
            tracker.set_attr(f"{_WORKER}{index}", record)
            return
        status = record.pop("status")
        tracker.set_attr(STATUS_DETAIL, record)
        tracker.set_attr(STATUS, status)

    @staticmethod
    def write_heartbeat(tracker: _Writer, index: int, at: float) -> None:
        tracker.set_attr(f"{_HEARTBEAT}{index}", at)

    @staticmethod
    def write_result(tracker: _Writer, result: Mapping[str, Any], *,
                     worker: int | None = None) -> None:
        """The study's ``result`` (``worker`` None) or worker ``worker``'s own."""
        key = RESULT if worker is None else f"{_RESULT_OF}{worker}"
        tracker.set_attr(key, dict(result))
