"""The tracker: one Optuna study per run, one trial per evaluated candidate.

Trials are written with ``study.add_trial`` as soon as an evaluation ends, so
``optuna-dashboard`` shows the search as it happens. Every attribute is JSON
(template, parents, method, split, score, scorer, usage); run settings and the final
result live on the study's user attributes. API keys never reach the storage. A
resumed run (``Tracker(..., resume=True)``) replays its recorded trials without
writing them twice. Several workers may record into one study (see
:mod:`promptopt.workers`): each trial carries its ``worker`` index, and a resumed
worker replays its own trials only. Storage failures surface as
:class:`~promptopt.errors.StorageError`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from promptopt.errors import ConfigError, ResumeError, StorageError

_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token(?!s)|password)", re.IGNORECASE)
"""Keys whose values are withheld; ``token`` but not ``prompt_tokens`` (a count)."""


def scrub(value: Any) -> Any:
    """Drop values under secret-looking keys from nested settings."""
    if isinstance(value, Mapping):
        return {
            k: ("***" if _SECRET_KEY.search(str(k)) and v else scrub(v)) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def display_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def _engine_url(url: str) -> str:
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
    optuna = _optuna()
    engine_url = _engine_url(url)
    kwargs: dict[str, Any] = {}
    if not engine_url.startswith("sqlite"):
        kwargs["pool_pre_ping"] = True
        if engine_url.startswith("postgres") and "connect_timeout" not in engine_url:
            kwargs["connect_args"] = {"connect_timeout": 10}
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(
                engine_url, heartbeat_interval=None, engine_kwargs=kwargs
            )
        except Exception as exc:  # SQLAlchemy raises many types
            import sqlalchemy.exc

            racing = isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc)
            if attempt == 2 or not racing:
                raise ConfigError(
                    f"cannot open storage {display_url(url)!r}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def storage_errors(url: str, doing: str) -> Iterator[None]:
    """Turn the storage's own exceptions (SQLAlchemy, Optuna) into :class:`StorageError`."""
    try:
        yield
    except Exception as exc:
        import sqlalchemy.exc

        optuna = _optuna()
        if isinstance(exc, (sqlalchemy.exc.SQLAlchemyError,
                            optuna.exceptions.StorageInternalError)):
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            first = (str(cause).strip().splitlines() or [""])[0]
            raise StorageError(
                f"storage {display_url(url)} failed while {doing}: {type(cause).__name__}: "
                f"{first}. Trials recorded before are kept"
            ) from exc
        raise


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
        """Number of the last trial recorded or replayed here (see :mod:`promptopt.sharing`)."""
        optuna = _optuna()
        with storage_errors(storage, f"opening study {study_name!r}"):
            if resume:
                self.study = _load_study(storage, study_name)
            else:
                self.study = optuna.create_study(
                    storage=open_storage(storage),
                    study_name=study_name,
                    direction="maximize",
                    load_if_exists=True,
                )
            complete = optuna.trial.TrialState.COMPLETE
            self._replay: list[Any] = (
                sorted(
                    (t for t in self.study.get_trials(deepcopy=False)
                     if t.state == complete and t.user_attrs.get("worker", 0) == worker),
                    key=lambda t: t.number,
                )
                if resume
                else []
            )
        self.replayed = 0
        """Evaluations matched against recorded trials (not written again)."""

    @property
    def replay_pending(self) -> int:
        """Recorded trials the resumed run has not replayed yet."""
        return len(self._replay) - self.replayed

    def set_attr(self, key: str, value: Any) -> None:
        """Store a JSON-able value on the study (secrets scrubbed)."""
        with storage_errors(self.storage_url, f"writing {key!r} on study {self.study_name!r}"):
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
        """
        optuna = _optuna()
        clean = json.loads(json.dumps(scrub({**dict(attrs), "worker": self.worker}), default=str))
        if self.replayed < len(self._replay):
            old = self._replay[self.replayed]
            self._check_replay(old, float(value), clean)
            self.replayed += 1
            self.last_number = old.number
            return
        trial = optuna.trial.create_trial(value=float(value), user_attrs=clean)
        trial._validate()
        # Study.add_trial, keeping the trial's number (allocated by the storage under a
        # lock on the study row, so numbers follow the order trials were committed in).
        storage, study_id = self.study._storage, self.study._study_id
        with storage_errors(self.storage_url, f"recording a trial in study {self.study_name!r}"):
            trial_id = storage.create_new_trial(study_id, template_trial=trial)
            self.last_number = storage.get_trial_number_from_id(trial_id)

    def _check_replay(self, old: Any, value: float, attrs: Mapping[str, Any]) -> None:
        recorded = old.user_attrs
        same = all(
            recorded.get(k) == attrs.get(k) for k in REPLAY_KEYS if k in recorded
        ) and old.value is not None and abs(float(old.value) - value) <= 1e-6
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
        with storage_errors(self.storage_url, f"reading study {self.study_name!r}"):
            return list(self.study.get_trials(deepcopy=False))

    def attrs(self) -> dict[str, Any]:
        """The study's user attributes, read afresh from the storage."""
        with storage_errors(self.storage_url, f"reading study {self.study_name!r}"):
            study_id = self.study._study_id
            return dict(self.study._storage.get_study_user_attrs(study_id))


def _load_study(storage: str, study_name: str) -> Any:
    optuna = _optuna()
    try:
        with storage_errors(storage, f"loading study {study_name!r}"):
            return optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        with storage_errors(storage, "listing its studies"):
            names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
        raise ConfigError(
            f"no study {study_name!r} in {display_url(storage)}; studies there: "
            f"{', '.join(names) or '(none)'}"
        ) from None


def load_study_attrs(storage: str, study_name: str) -> dict[str, Any]:
    """The user attributes of an existing study (settings, result)."""
    return dict(_load_study(storage, study_name).user_attrs)


def find_study(storage: str, study_name: str) -> tuple[dict[str, Any], int] | None:
    """The user attributes and the number of trials of ``study_name``, or None if missing."""
    optuna = _optuna()
    store = open_storage(storage)
    with storage_errors(storage, f"looking for study {study_name!r}"):
        if study_name not in optuna.get_all_study_names(store):
            return None
        study = optuna.load_study(study_name=study_name, storage=store)
        return dict(study.user_attrs), len(study.get_trials(deepcopy=False))
