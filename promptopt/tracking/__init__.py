"""Tracking: one Optuna study per run in an RDB storage (SQLite, PostgreSQL)."""

from promptopt.tracking._attrs import StudyAttrs
from promptopt.tracking._tracker import (
    Tracker,
    display_url,
    engine_url,
    find_study,
    import_optuna,
    load_study_attrs,
    open_storage,
    storage_errors,
)

__all__ = [
    "StudyAttrs",
    "Tracker",
    "display_url",
    "engine_url",
    "find_study",
    "import_optuna",
    "load_study_attrs",
    "open_storage",
    "storage_errors",
]
