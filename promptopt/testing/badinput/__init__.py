"""A corpus of defective dataset and template files, each with the outcome it must have.

Test support (part of :mod:`promptopt.testing`): the fuzz tests drive the generators with
Hypothesis (through a ``random.Random`` it controls) and
``experiments/bench_bad_input.py`` with a seeded one. :func:`check_data_case` and
:func:`check_template_case` run the real loaders and judge what they did.
"""

from promptopt.testing.badinput._check import Outcome, check_data_case, expected_rows
from promptopt.testing.badinput._data import ANY, DataCase, FileError, Row, cell_kinds
from promptopt.testing.badinput._templates import (
    TemplateCase,
    check_template_case,
    make_template_case,
)
from promptopt.testing.badinput._write import make_data_case

__all__ = [
    "ANY",
    "DataCase",
    "FileError",
    "Outcome",
    "Row",
    "cell_kinds",
    "TemplateCase",
    "check_data_case",
    "check_template_case",
    "expected_rows",
    "make_data_case",
    "make_template_case",
]
