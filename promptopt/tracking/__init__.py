"""Tracking: one Optuna study per run in an RDB storage (SQLite, PostgreSQL)."""

from promptopt.tracking._artifacts import artifact_dir
from promptopt.tracking._attrs import RunStatus, StudyAttrs
from promptopt.tracking._params import evaluation_trials, is_evaluation, is_objective
from promptopt.tracking._storage import (
    OBJECTIVE_NAME,
    create_study,
    display_url,
    engine_url,
    find_study,
    import_optuna,
    load_study,
    load_study_attrs,
    open_storage,
    storage_errors,
)
from promptopt.tracking._tracker import Tracker

__all__ = [
    "OBJECTIVE_NAME",
    "RunStatus",
    "StudyAttrs",
    "Tracker",
    "artifact_dir",
    "create_study",
    "display_url",
    "engine_url",
    "evaluation_trials",
    "find_study",
    "import_optuna",
    "is_evaluation",
    "is_objective",
    "load_study",
    "load_study_attrs",
    "open_storage",
    "storage_errors",
]
