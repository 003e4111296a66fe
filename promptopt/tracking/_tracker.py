"""The tracker: one Optuna study per run, one trial per evaluated candidate.

Trials are written with ``study.add_trial`` as soon as an evaluation ends, so
``optuna-dashboard`` shows the search as it happens. Every attribute is JSON
(template, parents, method, split, score, scorer, usage); run settings and the final
result live on the study's user attributes. API keys never reach the storage. A
resumed run (``Tracker(..., resume=True)``) replays its recorded trials without
writing them twice. Several workers may record into one study (see
:mod:`promptopt.runs._workers`): each trial carries its ``worker`` index, and a resumed
worker replays its own trials only. Storage failures surface as
:class:`~promptopt.errors.StorageError`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from promptopt.errors import ConfigError, PromptoptError, ResumeError, StorageError
from promptopt.redact import scrub

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
    """Turn storage exceptions raised inside the block into a clear :class:`StorageError`."""
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
    """

    def __init__(
        self,
        storage: str,
        study_name: str,
        *,
        resume: bool = False,
        worker: int = 0,
        after: int = -1,
    ) -> None:
        self.storage_url = storage
        self.study_name = study_name
        self.worker = worker
        self.last_number = after
        """Number of the last trial recorded or replayed here (see ``promptopt.runs``)."""
        optuna = import_optuna()
        if resume:
            self.study = _load_study(storage, study_name)
        else:
            store = open_storage(storage)
            with storage_errors(storage, f"create study {study_name!r}"):
                self.study = optuna.create_study(
                    storage=store, study_name=study_name, direction="maximize",
                    load_if_exists=True,
                )
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
        self._replay: list[Any] = (
            sorted((t for t in self.trials()
                    if t.state in states and t.user_attrs.get("worker", 0) == worker),
                   key=lambda t: t.number)
            if resume
            else []
        )
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
    ) -> None:
        """Add one completed trial (written to the storage at once).

        When resuming, an evaluation that matches the next recorded trial is skipped.

        Raises:
            ResumeError: if a resumed run's evaluation differs from the recorded trial
                at the same position.
            StorageError: if the storage cannot be written.
        """
        clean = json.loads(json.dumps(scrub({**dict(attrs), "worker": self.worker}), default=str))
        if self._matched(float(value), clean):
            return
        self._add(import_optuna().trial.create_trial(value=float(value), user_attrs=clean))

    def record_failure(self, *, attrs: Mapping[str, Any]) -> None:
        """Add one failed trial (state ``FAIL``, no value; the reason in ``attrs``)."""
        clean = json.loads(json.dumps(scrub({**dict(attrs), "worker": self.worker}), default=str))
        if self._matched(None, clean):
            return
        optuna = import_optuna()
        self._add(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                            user_attrs=clean))

    def _add(self, trial: Any) -> None:
        """``Study.add_trial``, keeping the trial's number (allocated by the storage under
        a lock on the study row, so numbers follow the order trials were committed in)."""
        trial._validate()
        storage, study_id = self.study._storage, self.study._study_id
        doing = "record a trial (the trials recorded before it are kept)"
        with storage_errors(self.storage_url, doing):
            trial_id = storage.create_new_trial(study_id, template_trial=trial)
            self.last_number = storage.get_trial_number_from_id(trial_id)

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


def _load_study(storage: str, study_name: str) -> Any:
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
    study = _load_study(storage, study_name)
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
