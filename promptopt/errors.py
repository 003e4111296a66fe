"""promptopt's own exception types.

Every error a user can cause (bad data, a misspelled method, a missing API key)
is raised as a subclass of :class:`PromptoptError` with a message that says what
to fix; the CLI prints the message without a traceback.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class PromptoptError(Exception):
    """Base class of every error promptopt raises on purpose."""


class DataError(PromptoptError):
    """A dataset or template file is unusable; the message names file, row and field.

    ``row`` is the 1-based data row (header excluded); ``line`` the physical line of a
    text file where that row starts, given where it differs from what ``row`` suggests
    (multi-line cells, blank lines) or where no row applies (the header).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path, self.row, self.field, self.line = path, row, field, line
        self.reason = message
        where = []
        if path is not None:
            where.append(f"file {path}")
        if row is not None:
            where.append(f"row {row}" + (f" (line {line})" if line is not None else ""))
        elif line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class UnknownNameError(PromptoptError, KeyError):
    """A name looked up in a registry (method, task, embedded model) does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(PromptoptError, ValueError):
    """A setting has an invalid value (checked when a run starts, not in constructors)."""


class StorageError(PromptoptError):
    """The Optuna storage cannot be opened, read or written (locked, read-only, missing,
    a database server that went away mid-run).

    The message names the storage URL (password hidden) and what to do; a run stopped by
    it can be resumed once the fault is gone (what was recorded before stays recorded).
    """


class ResumeError(PromptoptError):
    """A run cannot be resumed: no such run, or its replay differs from what was recorded."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal other than Ctrl-C (SIGTERM), handled like Ctrl-C.

    Args:
        signal_name: The signal, e.g. ``"SIGTERM"``.
    """

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


_stop_requests: list[str] = []
_deferring = 0
"""Depth of the main thread's :func:`stop_deferred` blocks."""


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def request_stop(signal_name: str) -> None:
    """Remember that ``signal_name`` asked the run to stop (see :func:`check_stop`)."""
    _stop_requests.append(signal_name)


def stop_is_deferred() -> bool:
    """Whether the main thread is inside a :func:`stop_deferred` block now."""
    return _deferring > 0


@contextlib.contextmanager
def stop_deferred() -> Iterator[None]:
    """A block that a stop signal does not cut (a storage or cache write).

    A signal handler that raises in the middle of a database write can leave its
    connection inside an open transaction that locks the database, so the stop could
    not even be recorded. Inside this block the handler only records the request
    (:func:`request_stop`); it is raised when the outermost block ends normally. Only
    the main thread (where signal handlers run) defers; elsewhere the block does
    nothing.
    """
    global _deferring
    if not _main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if _deferring == 0:
        check_stop()


def check_stop() -> None:
    """Raise :class:`Interrupted` if a signal asked the run to stop (main thread only).

    Called between units of work: at the end of a :func:`stop_deferred` block, and
    before each evaluation and LLM call, so a request also stops the run when the
    handler's own exception was lost (a signal landing inside code whose exceptions
    Python ignores, a ``__del__`` or a weakref callback such as SQLAlchemy's cleanup).
    """
    if _stop_requests and _main_thread():
        raise Interrupted(_stop_requests[0])


def clear_stop() -> None:
    """Forget stop requests (the stop was handled, or signal handling ended)."""
    _stop_requests.clear()


class BudgetExhausted(PromptoptError):
    """The run's LLM-call budget cannot pay for the requested work."""


class LLMError(PromptoptError):
    """An LLM call failed for good (after retries where retrying makes sense)."""


class AuthenticationError(LLMError):
    """The provider rejected or is missing the API key."""


class UnknownModelError(LLMError):
    """The model string names no provider or model that LiteLLM or promptopt knows."""


class LLMTimeoutError(LLMError):
    """The provider did not answer in time, even after retries."""


class TransientLLMError(LLMError):
    """Rate limits, overloaded or unreachable servers: worth retrying with backoff."""


class HumanTimeout(PromptoptError):
    """No rating came from the person in time (the human metric); the run can resume."""

    resumable = True
    """A resumed run asks nothing again: given ratings are reused, open ones waited on."""


class EvaluationFailed(LLMError):
    """An evaluation failed (its LLM calls failed after retries) and the run cannot go on.

    Raised when the run needs that evaluation's scores (the starting template on the
    validation split, the chosen template on the test split); the run is interrupted
    and can be resumed once the provider answers.
    """


class TooManyErrors(EvaluationFailed):
    """More evaluations failed than the run's ``max_errors`` allows; the run can resume."""
