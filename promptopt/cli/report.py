"""``promptopt report``: the HTML report of a run or a comparison (see :mod:`promptopt.report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from promptopt.cli._common import err, friendly_errors, out
from promptopt.cli._options import Storage
from promptopt.errors import ConfigError
from promptopt.runs import DEFAULT_STORAGE


def report_command(
    study: Annotated[
        list[str] | None, typer.Option("--study", "-s", help="A run's study; repeat it to "
                                       "report several runs on one page.")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="A comparison's prefix: every study <prefix>-... .")
    ] = None,
    storage: Storage = DEFAULT_STORAGE,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for report.html and the PNG "
                                  "figures (default: report-<study or prefix>).")
    ] = None,
    artifact_dir: Annotated[
        Path | None, typer.Option(help="Folder of the predictions' artifacts (default: the "
                                  "storage's, e.g. promptopt.db-artifacts).")
    ] = None,
) -> None:
    """Write one self-contained HTML page (and a PNG per figure) for a run or a comparison:
    best score so far, lineage tree, start vs returned template, test predictions worst
    first, usage and cost, every trial."""
    from promptopt.report import read_studies, studies_with_prefix, write_report

    with friendly_errors():
        names = list(dict.fromkeys(study or []))
        if prefix:
            names += [n for n in studies_with_prefix(storage, prefix) if n not in names]
        if not names:
            raise ConfigError("name the run to report: --study NAME (repeatable) or "
                              "--prefix PREFIX for a comparison's studies")
        studies = read_studies(storage, names, artifacts=artifact_dir)
        folder = out_dir or Path(f"report-{prefix or names[0]}")
        report = write_report(studies, folder)
        err.print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}, "
                  f"{sum(len(s.trials) for s in studies)} trials, "
                  f"{len(report.figures)} figures in {folder}/")
        out.print(str(report.html))
