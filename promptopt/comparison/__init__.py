"""Comparison: several methods on one task over seeds, with its table, plot and report."""

from promptopt.comparison._compare import PER_RUN, compare, resolve_methods, runnable_methods
from promptopt.comparison._report import TRIAL_COLUMNS, best_so_far, curve_band, gains_table
from promptopt.comparison._results import (
    FIXED_PREDICTION,
    TABLE_COLUMNS,
    CompareResult,
    CompareRow,
    Stat,
    study_name,
)

__all__ = [
    "CompareResult",
    "CompareRow",
    "FIXED_PREDICTION",
    "PER_RUN",
    "Stat",
    "TABLE_COLUMNS",
    "TRIAL_COLUMNS",
    "best_so_far",
    "compare",
    "curve_band",
    "gains_table",
    "resolve_methods",
    "runnable_methods",
    "study_name",
]
