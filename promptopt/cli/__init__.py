"""The ``promptopt`` command line: a thin Typer layer over :mod:`promptopt.runs` and
:mod:`promptopt.comparison`, one module per command (``run.py``, ``compare.py``,
``evaluate.py``, ``predict.py``, ``dashboard.py``, ``listing.py``, ``data.py``, ``refine.py``,
``report.py``), the options they share in ``_options.py``."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from promptopt.cli._common import out
from promptopt.cli.compare import compare_command
from promptopt.cli.dashboard import dashboard_command
from promptopt.cli.data import data_app
from promptopt.cli.evaluate import eval_command
from promptopt.cli.listing import list_command
from promptopt.cli.predict import predict_command
from promptopt.cli.refine import refine_command
from promptopt.cli.report import report_command
from promptopt.cli.run import run_command
from promptopt.redact import redact_log_records
from promptopt.version import __version__

__all__ = ["app", "main"]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

app = typer.Typer(
    name="promptopt",
    help="Optimize LLM prompt templates; every search tracked in Optuna.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"promptopt {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Optimize LLM prompt templates; every search tracked in Optuna."""
    redact_log_records()  # libraries log request URLs at DEBUG; keep credentials out


app.command("run")(run_command)
app.command("compare")(compare_command)
app.command("eval")(eval_command)
app.command("predict")(predict_command)
app.command("dashboard")(dashboard_command)
app.command("list")(list_command)
app.add_typer(data_app)
app.command("refine")(refine_command)
app.command("report")(report_command)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="promptopt")


if __name__ == "__main__":
    main()
