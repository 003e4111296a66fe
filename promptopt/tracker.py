"""The tracker: one Optuna study per run, one trial per evaluated candidate.

Trials are written with ``study.add_trial`` as soon as an evaluation ends, so
``optuna-dashboard`` shows the search as it happens. Every attribute is JSON
(template, parents, method, split, score, scorer, usage); run settings and the final
result live on the study's user attributes. API keys never reach the storage. A
resumed run (``Tracker(..., resume=True)``) replays its recorded trials without
writing them twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from promptopt.errors import ConfigError, ResumeError
from promptopt.redact import redact

_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token(?!s)|password)", re.IGNORECASE)
"""Keys whose values are withheld; ``token`` but not ``prompt_tokens`` (a count)."""


def scrub(value: Any) -> Any:
    """Drop values under secret-looking keys from nested settings, and mask credentials
    in every string (secret environment values, keys and passwords in URLs)."""
    if isinstance(value, Mapping):
        return {
            k: ("***" if _SECRET_KEY.search(str(k)) and v else scrub(v)) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(url: str) -> Any:
    """An Optuna RDB storage for ``url``, with a clear error if it cannot be opened."""
    optuna = _optuna()
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except Exception as exc:  # SQLAlchemy raises many types
        raise ConfigError(f"cannot open storage {url!r}: {type(exc).__name__}: {exc}") from None


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
    """

    def __init__(self, storage: str, study_name: str, *, resume: bool = False) -> None:
        self.storage_url = storage
        self.study_name = study_name
        optuna = _optuna()
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
                (t for t in self.study.get_trials(deepcopy=False) if t.state == complete),
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
        clean = json.loads(json.dumps(scrub(dict(attrs)), default=str))
        if self.replayed < len(self._replay):
            self._check_replay(self._replay[self.replayed], float(value), clean)
            self.replayed += 1
            return
        trial = optuna.trial.create_trial(value=float(value), user_attrs=clean)
        self.study.add_trial(trial)

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
        return list(self.study.get_trials(deepcopy=False))


def _load_study(storage: str, study_name: str) -> Any:
    optuna = _optuna()
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
        raise ConfigError(
            f"no study {study_name!r} in {storage}; studies there: {', '.join(names) or '(none)'}"
        ) from None


def load_study_attrs(storage: str, study_name: str) -> dict[str, Any]:
    """The user attributes of an existing study (settings, result)."""
    return dict(_load_study(storage, study_name).user_attrs)


def find_study(storage: str, study_name: str) -> tuple[dict[str, Any], int] | None:
    """The user attributes and the number of trials of ``study_name``, or None if missing."""
    optuna = _optuna()
    store = open_storage(storage)
    if study_name not in optuna.get_all_study_names(store):
        return None
    study = optuna.load_study(study_name=study_name, storage=store)
    return dict(study.user_attrs), len(study.get_trials(deepcopy=False))
