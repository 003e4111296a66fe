"""Access to Optuna's RDB storage: opening it, and turning its failures into clear errors.

:func:`open_storage` opens a SQLite or PostgreSQL storage (with a lock timeout, a
connect timeout and a retry for workers racing to create the tables);
:func:`storage_errors` turns the database's exceptions into a
:class:`~promptopt.errors.StorageError` that says what failed and what to do;
:func:`load_study`, :func:`load_study_attrs` and :func:`find_study` read studies.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
from collections.abc import Iterator
from typing import Any

from promptopt.errors import ConfigError, PromptoptError, StorageError, stop_deferred

SQLITE_TIMEOUT = 30.0
"""Seconds a SQLite storage waits for another connection's lock before giving up."""


def _db_message(exc: BaseException) -> str | None:
    """The database's own message behind a storage exception, or None if it is not one."""
    seen: BaseException | None = exc
    found = None
    while seen is not None:
        module = type(seen).__module__
        if module.startswith(("sqlalchemy", "sqlite3", "optuna.exceptions", "psycopg")):
            orig = getattr(seen, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's
            found = str(orig if orig is not None else seen).split("\n", 1)[0]
            if orig is not None:
                return found
        seen = seen.__cause__ or seen.__context__
    return found


def storage_error(exc: BaseException, url: str, doing: str) -> StorageError | None:
    """A :class:`StorageError` that says what failed and what to do, or None.

    Args:
        exc: An exception raised by Optuna's storage (SQLAlchemy, the database driver).
        url: The storage URL (named in the message).
        doing: What could not be done, e.g. ``"record a trial"``.

    Returns:
        None if ``exc`` does not come from the storage.
    """
    message = _db_message(exc)
    if message is None:
        return None
    lowered = message.lower()
    if "database is locked" in lowered:
        what = (
            f"the database is locked: another connection holds a write lock on it and "
            f"did not release it within {SQLITE_TIMEOUT:g} s (an open transaction in another "
            "program such as a sqlite3 shell, or a stuck process). End that transaction or "
            "process, or use another --storage"
        )
    elif "readonly database" in lowered or "read-only" in lowered:
        what = (
            f"the database is read-only ({message}). Make the file and its folder writable "
            "(SQLite writes a journal file next to the database), or use another --storage"
        )
    elif "unable to open database file" in lowered:
        what = (
            f"the database file cannot be opened ({message}). Its folder must exist and be "
            "writable, and the file readable and writable; or use another --storage"
        )
    else:
        what = f"{message}. Check that the database is reachable and writable"
    if "recorded before" not in doing and not doing.startswith(("open", "create", "load", "list")):
        doing += " (the trials recorded before are kept)"
    return StorageError(f"storage {display_url(url)}: cannot {doing}: {what}")


@contextlib.contextmanager
def storage_errors(url: str, doing: str) -> Iterator[None]:
    """Turn storage exceptions raised inside the block into a clear :class:`StorageError`.

    A stop signal (SIGTERM) waits for the block to end (:func:`stop_deferred`), so it
    never leaves a write half done with the database locked.
    """
    with stop_deferred():
        try:
            yield
        except PromptoptError:
            raise
        except Exception as exc:
            error = storage_error(exc, url, doing)
            if error is None:
                raise
            raise error from exc


def import_optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


OBJECTIVE_NAME = "validation score"
"""The study's objective as optuna-dashboard names it (the validation split's mean score)."""


def create_study(store: Any, study_name: str, *, load_if_exists: bool = False) -> Any:
    """Create (or with ``load_if_exists`` open) a run's study: maximized, its objective
    named :data:`OBJECTIVE_NAME` (optuna-dashboard shows that, not "Objective 0")."""
    import warnings

    optuna = import_optuna()
    study = optuna.create_study(storage=store, study_name=study_name, direction="maximize",
                                load_if_exists=load_if_exists)
    if study.metric_names is None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE_NAME])
    return study


def display_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def engine_url(url: str) -> str:
    """``url`` naming the PostgreSQL driver that is installed (SQLAlchemy 2.1's default
    for ``postgresql://`` is psycopg 3; promptopt depends on psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        return f"postgresql+psycopg2://{rest}"
    return url


def open_storage(url: str) -> Any:
    """An Optuna RDB storage for ``url``, with a clear error if it cannot be opened.

    Database servers get ``pool_pre_ping`` (a connection the server dropped is
    replaced, not used) and, for PostgreSQL, a 10 s connect timeout. Opening is
    retried twice: workers started together on a fresh database race to create
    Optuna's tables, and the loser's second try finds them made.
    """
    optuna = import_optuna()
    target = engine_url(url)
    kwargs: dict[str, Any] = {}
    if target.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT}
    else:
        kwargs["pool_pre_ping"] = True
        if target.startswith("postgres") and "connect_timeout" not in target:
            kwargs["connect_args"] = {"connect_timeout": 10}
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(
                target, heartbeat_interval=None, engine_kwargs=kwargs
            )
        except Exception as exc:  # SQLAlchemy raises many types
            import sqlalchemy.exc

            racing = isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc)
            if attempt < 2 and racing:
                time.sleep(0.5 + attempt)
                continue
            error = storage_error(exc, url, "open it")
            if error is not None:
                raise error from exc
            raise ConfigError(
                f"cannot open storage {display_url(url)!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
    raise AssertionError("unreachable")


def load_study(storage: str, study_name: str) -> Any:
    optuna = import_optuna()
    try:
        with storage_errors(storage, f"load study {study_name!r}"):
            return optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        with storage_errors(storage, "list its studies"):
            names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
        raise ConfigError(
            f"no study {study_name!r} in {display_url(storage)}; studies there: "
            f"{', '.join(names) or '(none)'}"
        ) from None


def load_study_attrs(storage: str, study_name: str) -> dict[str, Any]:
    """The user attributes of an existing study (settings, result)."""
    study = load_study(storage, study_name)
    with storage_errors(storage, f"read study {study_name!r}"):
        return dict(study.user_attrs)


def find_study(storage: str, study_name: str) -> tuple[dict[str, Any], int] | None:
    """The user attributes and the number of trials of ``study_name``, or None if missing."""
    optuna = import_optuna()
    store = open_storage(storage)
    with storage_errors(storage, f"read study {study_name!r}"):
        if study_name not in optuna.get_all_study_names(store):
            return None
        study = optuna.load_study(study_name=study_name, storage=store)
        return dict(study.user_attrs), len(study.get_trials(deepcopy=False))
