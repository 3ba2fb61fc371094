"""`dbops runbook` (placeholder: being built)."""

from __future__ import annotations

import typer

app = typer.Typer(help="(not built yet)", no_args_is_help=True)
