"""The shared Typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="migsched",
    help="Dynamic NVIDIA MIG partitioning and scheduling: simulate, compare and run GPU job batches.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
