"""The tracker: one Optuna study per run, one trial per evaluated candidate.

Trials are written with ``study.add_trial`` as soon as an evaluation ends, so
``optuna-dashboard`` shows the search as it happens. Every attribute is JSON
(template, parents, method, split, score, scorer, usage); run settings and the final
result live on the study's user attributes. API keys never reach the storage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from promptopt.errors import ConfigError

_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password)", re.IGNORECASE)


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


def open_storage(url: str) -> Any:
    """An Optuna RDB storage for ``url``, with a clear error if it cannot be opened."""
    optuna = _optuna()
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except Exception as exc:  # SQLAlchemy raises many types
        raise ConfigError(f"cannot open storage {url!r}: {type(exc).__name__}: {exc}") from None


class Tracker:
    """Records evaluations into an Optuna study.

    Args:
        storage: An Optuna storage URL (``sqlite:///promptopt.db``, ``postgresql://...``).
        study_name: The study (created if missing, reused if it exists).
    """

    def __init__(self, storage: str, study_name: str) -> None:
        self.storage_url = storage
        self.study_name = study_name
        optuna = _optuna()
        self.study = optuna.create_study(
            storage=open_storage(storage),
            study_name=study_name,
            direction="maximize",
            load_if_exists=True,
        )

    def set_attr(self, key: str, value: Any) -> None:
        """Store a JSON-able value on the study (secrets scrubbed)."""
        self.study.set_user_attr(key, json.loads(json.dumps(scrub(value), default=str)))

    def record(
        self,
        *,
        value: float,
        attrs: Mapping[str, Any],
    ) -> None:
        """Add one completed trial (written to the storage at once)."""
        optuna = _optuna()
        clean = json.loads(json.dumps(scrub(dict(attrs)), default=str))
        trial = optuna.trial.create_trial(value=float(value), user_attrs=clean)
        self.study.add_trial(trial)

    def trials(self) -> list[Any]:
        """All trials of the study."""
        return list(self.study.get_trials(deepcopy=False))


def load_study_attrs(storage: str, study_name: str) -> dict[str, Any]:
    """The user attributes of an existing study (settings, result)."""
    optuna = _optuna()
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
        raise ConfigError(
            f"no study {study_name!r} in {storage}; studies there: {', '.join(names) or '(none)'}"
        ) from None
    return dict(study.user_attrs)
