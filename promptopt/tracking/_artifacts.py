"""Predictions as Optuna artifacts, downloadable from optuna-dashboard.

Every evaluation of a template on the validation or the test split (so every run's
final validation and test evaluations) gets a CSV of all its predictions (example id,
inputs, target, prediction, score) in Optuna's ``FileSystemArtifactStore``. The folder
sits beside the storage: ``<file>-artifacts/`` next to a SQLite file; for a database
server (PostgreSQL), ``<cache dir>/artifacts/<backend>-<host>-<port>-<database>/``, one
folder per database, named from the storage (``PROMPTOPT_CACHE_DIR``, else
``~/.cache/promptopt``). ``promptopt dashboard`` serves the same folder
(:func:`artifact_dir`), so the files download from each trial's page.

The artifact is written before its trial and named in the trial's system attributes
by Optuna's own ``upload_artifact``, so the trial is created finished in one write.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ARTIFACT_SPLITS = ("val", "test")
"""Splits whose evaluations upload their predictions."""


def artifact_dir(storage: str) -> Path | None:
    """The artifact folder of ``storage`` (None: an in-memory SQLite database).

    Args:
        storage: An Optuna storage URL.
    """
    scheme, sep, rest = storage.partition("://")
    if scheme.startswith("sqlite"):
        path = rest[1:] if rest.startswith("/") else rest
        path = path.split("?", 1)[0]
        if not path or path == ":memory:":
            return None
        return Path(path).expanduser().absolute().with_name(Path(path).name + "-artifacts")
    from sqlalchemy.engine import make_url

    from promptopt.llm import default_cache_dir

    try:
        url = make_url(storage)
        parts = [url.get_backend_name(), url.host or "local", str(url.port or ""),
                 url.database or ""]
    except Exception:  # noqa: BLE001 - an unusual URL still gets a folder
        parts = [scheme, rest.rpartition("@")[2]]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(p for p in parts if p)).strip("_")
    return default_cache_dir() / "artifacts" / (name or "storage")


class _Collect:
    """Stands in for a storage in ``upload_artifact``: keeps the system attribute."""

    def __init__(self) -> None:
        self.attrs: dict[str, Any] = {}

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.attrs[key] = value


def wants_artifact(attrs: Mapping[str, Any]) -> bool:
    """Whether an evaluation with these attributes uploads its predictions."""
    meta = attrs.get("meta") or {}
    return attrs.get("split") in ARTIFACT_SPLITS and not meta.get("constant")


def predictions_artifact(
    folder: Path, filename: str, rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Write ``rows`` as a CSV artifact into ``folder``; the trial system attributes
    that name it (pass them to the trial when it is created).

    Args:
        folder: The artifact folder (created if missing).
        filename: The file name shown in the dashboard.
        rows: One dict per example: ``id``, ``inputs`` (a dict), ``target``,
            ``prediction``, ``score``.
    """
    import optuna
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    folder.mkdir(parents=True, exist_ok=True)
    inputs = list(dict.fromkeys(k for r in rows for k in dict(r.get("inputs") or {})))
    columns = ["id", *inputs, "target", "prediction", "score"]
    collect = _Collect()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for r in rows:
                writer.writerow({"id": r.get("id", ""), **dict(r.get("inputs") or {}),
                                 "target": r.get("target", ""),
                                 "prediction": r.get("prediction", ""), "score": r.get("score")})
        placeholder = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED)
        upload_artifact(artifact_store=FileSystemArtifactStore(str(folder)), file_path=str(path),
                        study_or_trial=placeholder, storage=collect,  # type: ignore[arg-type]
                        mimetype="text/csv")
    return collect.attrs
