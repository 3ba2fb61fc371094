"""`dbops sandbox`: the embedded local stack (placeholder, being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run an embedded Postgres + SQS sandbox.", no_args_is_help=True)
