"""The operator action log: one row per invocation of a mutating command."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, Field

from dbops.errors import DbopsError, Interrupted, RefusedError, UsageError, partial_result_of
from dbops.files import append_private
from dbops.ports import Store
from dbops.redaction import scrub_fragments
from dbops.services.redact import redact_arguments, redact_text


class ActionLogEntry(BaseModel):
    """One row of `dbops log -o json`."""

    id: int
    operator: str
    caller_arn: str | None = None
    command: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    dry_run: bool
    counts: dict[str, Any] = Field(default_factory=dict)
    outcome: str
    error: str | None = None
    started_at: datetime
    finished_at: datetime


class ActionRecorder:
    """Context manager: records the outcome of one mutating command.

    The command sets `counts` from the service's result; when the service fails or is
    interrupted, the counts come from the result model the exception carries
    (`partial_result`, see `dbops.errors.partial_result_on_failure`: its `counts()`). The
    row is written on exit whatever happened (ok, dry_run, refused, interrupted, error).
    When the database is unreachable the row goes to a local JSONL file instead, so it is
    never lost.

    Arguments and the error are redacted (URL userinfo, key=value passwords, API keys,
    webhook paths) and, with `secrets` (the configured ones), scrubbed of every part of 4
    or more characters of them.
    """

    def __init__(
        self,
        *,
        store: Store | None,
        command: str,
        arguments: dict[str, Any],
        operator: str,
        dry_run: bool = False,
        caller_arn: str | None = None,
        fallback_file: Path | None = None,
        secrets: list[str] | None = None,
    ) -> None:
        self.store = store
        self.command = command
        self.secrets = list(secrets or [])
        self.arguments = _scrubbed(redact_arguments(arguments), self.secrets)
        self.operator = operator
        self.dry_run = dry_run
        self.caller_arn = caller_arn
        self.fallback_file = fallback_file
        self.counts: dict[str, Any] = {}
        self.started_at = datetime.now(UTC)
        self.written_to: str | None = None

    def __enter__(self) -> ActionRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        partial_counts = getattr(partial_result_of(exc), "counts", None)
        if callable(partial_counts):
            self.counts = partial_counts()
        if exc is None:
            outcome, error = ("dry_run" if self.dry_run else "ok"), None
        elif isinstance(exc, RefusedError):
            outcome, error = "refused", exc.one_line()
        elif isinstance(exc, KeyboardInterrupt | Interrupted):
            outcome, error = "interrupted", "interrupted by operator"
        elif isinstance(exc, DbopsError):
            outcome, error = "error", exc.one_line()
        else:
            outcome, error = "error", type(exc).__name__
        self.write(outcome, error)

    def write(self, outcome: str, error: str | None) -> None:
        params = {
            "p_operator": self.operator,
            "p_caller_arn": self.caller_arn,
            "p_command": self.command,
            "p_arguments": self.arguments,
            "p_dry_run": self.dry_run,
            "p_counts": self.counts,
            "p_outcome": outcome,
            "p_error": scrub_fragments(redact_text(error), self.secrets) if error else None,
            "p_started_at": self.started_at,
        }
        if self.store is not None:
            try:
                self.store.call("dbops_action_log_write", params)
                self.written_to = "database"
                return
            except DbopsError:
                pass
        if self.fallback_file is not None:
            record = {k[2:]: v for k, v in params.items()}
            record["started_at"] = self.started_at.isoformat()
            record["finished_at"] = datetime.now(UTC).isoformat()
            append_private(self.fallback_file, json.dumps(record) + "\n")
            self.written_to = str(self.fallback_file)


def _scrubbed(value: Any, secrets: list[str]) -> Any:
    """`value` (arguments) with no 4+ character part of a secret left in any string."""
    if not secrets:
        return value
    if isinstance(value, str):
        return scrub_fragments(value, secrets)
    if isinstance(value, dict):
        return {k: _scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v, secrets) for v in value]
    return value


OUTCOMES = ("ok", "dry_run", "refused", "interrupted", "error")


def _filter_value(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    text = " ".join(value.split())
    if not text:
        raise UsageError(f"invalid {option} {value!r}: give a value, or leave the option out")
    return text


def list_entries(
    *,
    store: Store,
    since_seconds: int,
    limit: int,
    operator: str | None = None,
    command: str | None = None,
    outcome: str | None = None,
) -> list[ActionLogEntry]:
    """Rows newest first. Filters (all optional, combined with AND): `operator` exactly,
    `outcome` one of OUTCOMES, `command` exactly or as its leading words (`dlq` matches
    `dlq redrive` and `dlq purge`, not `dlqx`). An empty filter value is a UsageError."""
    params: dict[str, Any] = {"p_since_seconds": since_seconds, "p_limit": limit}
    operator = _filter_value(operator, "--operator")
    command = _filter_value(command, "--command")
    outcome = _filter_value(outcome, "--outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise UsageError(f"invalid --outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
    for name, value in (("p_operator", operator), ("p_command", command), ("p_outcome", outcome)):
        if value is not None:  # only sent when given: older installs take the first two
            params[name] = value
    rows = store.call("dbops_action_log_list", params)
    return [ActionLogEntry.model_validate(r) for r in rows]
