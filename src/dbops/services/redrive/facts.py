"""Queue facts and request checks shared by both methods: the target, the manifest, the
numbers (`validate`), completed-job lookups."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dbops.errors import UsageError
from dbops.names import queue_name
from dbops.ports import Queues, Store
from dbops.services.redrive.models import (
    COMPLETED_STATUSES,
    DEFAULT_MAX_MESSAGE_SIZE,
    LEASE_SECONDS,
    MIN_LEASE_SECONDS,
)


def resolve_target(*, queues: Queues, dlq_url: str, to: str | None) -> str:
    """The queue to redrive into: `--to`, else the DLQ's single source queue."""
    if to:
        target = queues.resolve_url(to)
    else:
        sources = queues.dead_letter_sources(dlq_url)
        if len(sources) != 1:
            what = (
                "no queue uses it as its dead-letter queue"
                if not sources
                else f"it is the dead-letter queue of {len(sources)} queues "
                f"({', '.join(queue_name(s) for s in sources[:5])})"
            )
            raise UsageError(
                f"cannot infer the redrive target for {queue_name(dlq_url)}: {what}",
                hint="name the target with --to QUEUE",
            )
        target = sources[0]
    if target.rstrip("/") == dlq_url.rstrip("/"):
        raise UsageError("the redrive target is the DLQ itself", hint="pick another --to QUEUE")
    return target


def read_manifest(path: str | Path) -> list[str]:
    """MessageIds from an export file (`dbops dlq export` JSONL, one `message_id` a line)."""
    from dbops.services.dlq import read_manifest as read_export_manifest

    ids = read_export_manifest(path)
    if not ids:
        raise UsageError(f"manifest {path} lists no messages")
    return ids


def completed_job_ids(store: Store, job_ids: Iterable[str]) -> set[str]:
    """The subset of `job_ids` whose job is completed in the database (via the shared
    `dbops_jobs_status_lookup`; ids that are not UUIDs simply never match)."""
    from dbops.services.dlq import job_statuses

    statuses = job_statuses(store=store, job_ids=list(job_ids))
    return {job for job, status in statuses.items() if status.lower() in COMPLETED_STATUSES}


@dataclass
class QueueFacts:
    visible: int
    in_flight: int
    fifo: bool
    max_message_size: int
    arn: str | None


def queue_facts(queues: Queues, url: str) -> QueueFacts:
    attrs = queues.get_attributes(url)
    try:
        size = int(attrs.get("MaximumMessageSize") or DEFAULT_MAX_MESSAGE_SIZE)
    except ValueError:
        size = DEFAULT_MAX_MESSAGE_SIZE
    return QueueFacts(
        visible=int(attrs.get("ApproximateNumberOfMessages", "0") or 0),
        in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", "0") or 0),
        fifo=str(attrs.get("FifoQueue", "")).lower() == "true" or url.endswith(".fifo"),
        max_message_size=size,
        arn=attrs.get("QueueArn"),
    )


def validate(
    *,
    max_messages: int | None = None,
    rate: float | None = None,
    workers: int = 1,
    lease_seconds: int = LEASE_SECONDS,
    canary: int | None = None,
) -> None:
    """Usage errors (exit 2) for bad numbers, before anything touches a queue."""
    if max_messages is not None and max_messages < 1:
        raise UsageError(f"invalid --max {max_messages}: must be 1 or more")
    if rate is not None and (not math.isfinite(rate) or rate <= 0):
        raise UsageError(f"invalid --rate {rate:g}: must be greater than zero (messages/second)")
    if workers < 1 or workers > 64:
        raise UsageError(f"invalid --workers {workers}: use 1 to 64")
    if lease_seconds < MIN_LEASE_SECONDS:
        raise UsageError(f"visibility lease {lease_seconds}s is too short")
    if canary is not None:
        if canary < 1:
            raise UsageError(f"invalid --canary {canary}: must be 1 or more")
        if max_messages is not None and canary > max_messages:
            raise UsageError(f"--canary {canary} is larger than --max {max_messages}")
