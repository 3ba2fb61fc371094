"""Shared CLI pieces: confirmation, the action recorder, option types."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from dbops.cli import _deps
from dbops.config_files import data_dir
from dbops.durations import parse_duration
from dbops.errors import DbopsError, RefusedError
from dbops.services.actionlog import ActionRecorder

YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")
]


def duration(value: str | None, option: str) -> int | None:
    """Seconds for a duration option, or None when not given (usage error when malformed)."""
    if value is None:
        return None
    return parse_duration(value, option=option)


def is_interactive() -> bool:
    return sys.stdin.isatty()


def confirm(action: str, *, yes: bool, dry_run: bool) -> None:
    """Ask on a TTY; refuse (exit 6) without --yes when not on one. Dry runs need neither.

    A refusal is itself written to the action log (outcome `refused`), so the log shows
    attempts that were stopped as well as actions that ran.
    """
    if dry_run or yes:
        return
    if not is_interactive():
        refusal = RefusedError(
            f"refusing to {action} without confirmation", hint="re-run with --yes (or --dry-run)"
        )
    elif typer.confirm(f"{action}?", default=False, err=True):
        return
    else:
        refusal = RefusedError(f"{action}: not confirmed")
    _log_refusal(refusal)
    raise refusal


def _log_refusal(refusal: RefusedError) -> None:
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    command = ctx.command_path.removeprefix(ctx.find_root().info_name or "dbops").strip()
    params = {k: v for k, v in ctx.params.items() if k != "output"}
    rec = recorder(command, params)
    rec.write("refused", refusal.one_line())


def recorder(command: str, arguments: dict[str, Any], *, dry_run: bool = False) -> ActionRecorder:
    """An action-log recorder for this invocation (database, else a local file)."""
    try:
        store = _deps.store()
    except DbopsError:
        store = None
    caller = None
    if not dry_run:
        try:
            caller = _deps.queues().caller_identity() if _deps.settings().sqs_queue_url else None
        except DbopsError:
            caller = None
    return ActionRecorder(
        store=store,
        command=command,
        arguments=arguments,
        operator=_deps.operator(),
        dry_run=dry_run,
        caller_arn=caller,
        fallback_file=data_dir() / "action-log.jsonl",
        secrets=_deps.secret_fragments(),
    )
