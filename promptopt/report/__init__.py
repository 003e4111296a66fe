"""The report of a run or a comparison: one self-contained HTML page and PNG figures.

    from promptopt.report import read_study, write_report
    write_report([read_study("sqlite:///promptopt.db", "opro-...")], "report-opro")

Reads the studies only (trials, results and the predictions' artifacts the tracker
wrote); see :mod:`promptopt.report._html` for what the page shows.
"""

from promptopt.report._html import Report, write_report
from promptopt.report._lineage import Lineage, Node, build_lineage, rejected_per_step
from promptopt.report._read import (
    StudyRecord,
    TrialRecord,
    read_studies,
    read_study,
    studies_with_prefix,
)

__all__ = [
    "Lineage",
    "Node",
    "Report",
    "StudyRecord",
    "TrialRecord",
    "build_lineage",
    "read_studies",
    "read_study",
    "rejected_per_step",
    "studies_with_prefix",
    "write_report",
]
