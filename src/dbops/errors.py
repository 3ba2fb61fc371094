"""Exit codes and the error hierarchy.

Every failure dbops expects is a `DbopsError` subclass carrying its exit code; the CLI
boundary (`dbops.cli.main`) turns it into one line on stderr and that exit code.
Messages must never contain a secret: adapters build them from safe parts only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    CONFIG = 3
    NOT_FOUND = 4
    REMOTE = 5
    REFUSED = 6
    INTERRUPTED = 130


class DbopsError(Exception):
    """Base class: an expected failure with a one-line, secret-free message."""

    exit_code: ExitCode = ExitCode.UNEXPECTED
    #: The one partial-result pattern: a command that did part of its work before failing
    #: (or being interrupted: `Interrupted`) raises with the result model so far; the action
    #: recorder logs that model's `counts()` and the CLI may render it before the one-line
    #: error. Services attach it with `partial_result_on_failure`.
    partial_result: Any = None

    def __init__(
        self, message: str, *, hint: str | None = None, partial_result: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if partial_result is not None:
            self.partial_result = partial_result

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text = f"{text} ({' '.join(self.hint.split())})"
        return text


class UsageError(DbopsError):
    exit_code = ExitCode.USAGE


class ConfigError(DbopsError):
    exit_code = ExitCode.CONFIG


class PermissionDeniedError(ConfigError):
    """The database refused the connected role (SQLSTATE 42501): a missing grant, or
    row-level security. A credentials problem (exit 3), not a remote failure."""

    @classmethod
    def from_database(
        cls, primary: str, where: str, *, hint: str | None = None
    ) -> PermissionDeniedError:
        """One line naming the privilege and object from the server's message, e.g.
        `permission denied for function dbops_jobs_fail` -> EXECUTE on that function."""
        primary = " ".join((primary or "permission denied").split())
        match = re.fullmatch(
            r"permission denied for (function|procedure|table|view|sequence|schema) (\S+)",
            primary,
        )
        if match:
            kind, name = match.groups()
            privilege = {
                "function": "EXECUTE on function",
                "procedure": "EXECUTE on procedure",
                "sequence": "USAGE on sequence",
                "schema": "USAGE on schema",
            }.get(kind, f"the privilege this needs on {kind}")
            detail = f"the database role lacks {privilege} {name}"
        else:
            detail = primary
        return cls(
            f"permission denied on {where}: {detail}",
            hint=hint
            or "a dbops_readonly member can only read; use a dbops_operator member or the "
            "service role for changes (see `dbops db roles`)",
        )


class NotFoundError(DbopsError):
    exit_code = ExitCode.NOT_FOUND


class RemoteError(DbopsError):
    """SQS, Postgres or PostgREST failed or could not be reached."""

    exit_code = ExitCode.REMOTE


class RefusedError(DbopsError):
    """A destructive action was not confirmed, or a safety guard tripped."""

    exit_code = ExitCode.REFUSED


class MissingExtraError(ConfigError):
    """An optional dependency (the `sandbox` extra) is not installed."""


class Interrupted(DbopsError):
    """Ctrl-C (KeyboardInterrupt) in a service that did part of its work: exit 130, the
    action-log outcome `interrupted`, and `partial_result` the progress so far. Raised by
    `partial_result_on_failure`, chained from the KeyboardInterrupt."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, message: str = "interrupted", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


@contextlib.contextmanager
def partial_result_on_failure(partial: Callable[[], Any]) -> Iterator[None]:
    """Attach `partial()` (the service's result model so far) to whatever propagates.

    A DbopsError gets it as `partial_result` (unless it carries one already); a
    KeyboardInterrupt becomes `Interrupted` carrying it; any other exception (a bug) gets
    the attribute too, so the action log still has the counts.
    """
    try:
        yield
    except DbopsError as exc:
        if exc.partial_result is None:
            exc.partial_result = partial()
        raise
    except KeyboardInterrupt as exc:
        raise Interrupted(partial_result=partial()) from exc
    except Exception as exc:
        with contextlib.suppress(AttributeError):
            exc.partial_result = partial()  # type: ignore[attr-defined]
        raise


def partial_result_of(exc: BaseException | None) -> Any:
    """The partial result an exception carries (None when it carries none)."""
    return getattr(exc, "partial_result", None)
