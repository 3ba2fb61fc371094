"""Input checks shared by the `dbops jobs` queries and use cases."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar
from uuid import UUID

from dbops.errors import UsageError
from dbops.ports import Store
from dbops.services.ids import resolve_ids
from dbops.services.jobs.models import MIN_RECOVER_OLDER_THAN_SECONDS

T = TypeVar("T")


def parse_job_ids(values: Sequence[str]) -> list[str]:
    """Canonical UUID strings, de-duplicated in order; a usage error names a bad one."""
    ids: list[str] = []
    for raw in values:
        try:
            canonical = str(UUID(str(raw).strip()))
        except ValueError:
            raise UsageError(f"invalid job id {raw!r}: not a UUID") from None
        if canonical not in ids:
            ids.append(canonical)
    if not ids:
        raise UsageError("give at least one job id")
    return ids


def resolve_job_ids(values: Sequence[str], *, store: Store) -> list[str]:
    """Whole job ids for `values`: UUIDs or unique prefixes of at least 6 hex characters
    (one database round trip for all the prefixes; see `dbops.services.ids`). An unknown
    prefix is exit 4, an ambiguous one exit 2; whole UUIDs are checked by the caller."""
    return resolve_ids(store=store, kind="job", values=values)


def check_recover_threshold(seconds: int, *, given: str | None = None) -> None:
    """Refuse thresholds under the worker-dead threshold (a live worker could be robbed)."""
    if seconds < MIN_RECOVER_OLDER_THAN_SECONDS:
        shown = repr(given) if given else f"{seconds}s"
        raise UsageError(
            f"invalid --older-than {shown}: recovery needs at least 2m, since a worker "
            "is only dead after 2 minutes without a heartbeat"
        )


def _check_limit(limit: int, name: str = "--limit", maximum: int = 100_000) -> None:
    if limit < 1 or limit > maximum:
        raise UsageError(f"invalid {name} {limit}: use 1 to {maximum}")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
