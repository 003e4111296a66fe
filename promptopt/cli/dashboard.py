"""`promptopt dashboard`: optuna-dashboard on a run's storage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptopt.cli._common import (
    err,
    friendly_errors,
)
from promptopt.cli._options import (
    Storage,
)
from promptopt.runs import DEFAULT_STORAGE


def dashboard_command(
    storage: Storage = DEFAULT_STORAGE,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    artifact_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of the predictions' artifacts (default: the storage's, "
                     "e.g. promptopt.db-artifacts beside a SQLite file)."),
    ] = None,
) -> None:
    """Serve optuna-dashboard on STORAGE (trials, notes, predictions, lineage, scores)."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    from promptopt.tracking import artifact_dir as default_artifacts
    from promptopt.tracking import open_storage

    with friendly_errors():
        store = open_storage(storage)
        folder = artifact_dir if artifact_dir is not None else default_artifacts(storage)
        artifacts = None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            artifacts = FileSystemArtifactStore(str(folder))
        err.print(f"optuna-dashboard on http://{host}:{port}/ for {storage} (artifacts: "
                  f"{folder or 'none'}; Ctrl-C to stop)")
        run_server(store, host=host, port=port, artifact_store=artifacts)
