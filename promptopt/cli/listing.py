"""`promptopt list`: methods, tasks and embedded models."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from promptopt.cli._common import (
    out,
)
from promptopt.cli._options import (
    DEFAULT_MODEL,
)
from promptopt.llm import DEFAULT_PROPOSER, EMBEDDED_MODELS


def list_command() -> None:
    """List methods, tasks, metrics, embedded models and plugins that failed to load."""
    import promptopt.optimizers  # noqa: F401  (registers the methods)
    from promptopt.registry import metrics, optimizers, tasks
    from promptopt.scoring import describe

    table = Table(title="promptopt")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("description")
    for name in optimizers.names():
        doc = (optimizers.get(name).__doc__ or "").strip().split("\n")[0]
        table.add_row("method", name, doc)
    for name in tasks.names():
        table.add_row("task", name, tasks.get(name).description)
    for name in metrics.names():
        table.add_row("metric", name, describe(name))
    for registry in (optimizers, tasks, metrics):
        for name, why in registry.broken().items():
            table.add_row(f"[red]broken {registry.kind}[/red]", name, why)
    for name, m in EMBEDDED_MODELS.items():
        roles = [role for role, string in (("default task model", DEFAULT_MODEL),
                                           ("default proposer", DEFAULT_PROPOSER))
                 if string == f"llamacpp/{name}"]
        default = f" ({', '.join(roles)})" if roles else ""
        table.add_row(
            "model",
            f"llamacpp/{name}",
            escape(f"{m.description}{default}; {m.size_text}, {m.speed}, licence {m.licence} "
                   f"[{m.package}]"),  # escaped: rich took "[package]" for a style tag
        )
    out.print(table)
