"""`dbops log`: the operator action log."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from dbops.cli import _deps
from dbops.cli._common import duration
from dbops.cli.output import OutputOpt, render
from dbops.services import actionlog


class Outcome(StrEnum):
    """How a logged command ended (the action log's `outcome`)."""

    ok = "ok"
    dry_run = "dry_run"
    refused = "refused"
    interrupted = "interrupted"
    error = "error"


def log(
    since: Annotated[str, typer.Option(help="How far back, e.g. 24h, 7d.")] = "24h",
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many rows.")] = 50,
    operator: Annotated[
        str | None,
        typer.Option("--operator", help="Only rows by this operator (exact match)."),
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(
            "--command",
            help="Only this command, or commands starting with these words "
            "('dlq' matches 'dlq redrive' and 'dlq purge').",
        ),
    ] = None,
    outcome: Annotated[
        Outcome | None,
        typer.Option("--outcome", case_sensitive=False, help="Only rows that ended this way."),
    ] = None,
    output: OutputOpt = "table",  # type: ignore[assignment]
) -> None:
    """List the operator action log (who ran which mutating command, and how it went).

    Filters combine (AND) and apply before --limit. An empty filter value is refused
    (exit 2).

    Example:
        dbops log --since 7d -o json
        dbops log --command "dlq redrive" --outcome error --since 7d
    """
    since_seconds = duration(since, "--since") or 0
    entries = actionlog.list_entries(
        store=_deps.store(),
        since_seconds=since_seconds,
        limit=limit,
        operator=operator,
        command=command,
        outcome=outcome.value if outcome is not None else None,
    )
    render(
        entries,
        output,
        columns=["started_at", "operator", "command", "dry_run", "outcome", "counts", "error"],
        empty="no actions logged in that window",
    )
