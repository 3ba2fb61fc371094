"""`dbops log`: the operator action log."""

from __future__ import annotations

from typing import Annotated

import typer

from dbops.cli import _deps
from dbops.cli._common import duration
from dbops.cli.output import OutputOpt, render
from dbops.services import actionlog


def log(
    since: Annotated[str, typer.Option(help="How far back, e.g. 24h, 7d.")] = "24h",
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many rows.")] = 50,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """List the operator action log (who ran which mutating command, and how it went).

    Example:
        dbops log --since 7d -o json
    """
    since_seconds = duration(since, "--since") or 0
    entries = actionlog.list_entries(store=_deps.store(), since_seconds=since_seconds, limit=limit)
    render(
        entries,
        output,
        columns=["started_at", "operator", "command", "dry_run", "outcome", "counts", "error"],
        empty="no actions logged in that window",
    )
