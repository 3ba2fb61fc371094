"""The canary: move a few messages first, wait, and go on only if none came back to the
DLQ (a redriven message that fails again comes back with the id the target gave it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dbops.ports import Queues
from dbops.services.messages import ParsedMessage
from dbops.services.redrive.copy import scan
from dbops.services.redrive.journal import RedriveJournal
from dbops.services.redrive.models import (
    FAILURES_KEPT,
    LEASE_SECONDS,
    RECEIVE_WAIT_SECONDS,
    SAMPLE_SIZE,
    SETTLE_SECONDS,
    CallStats,
    CanaryReport,
    RedriveResult,
)
from dbops.services.redrive.state import Sink

# One copy pass: (at most this many, collect what was sent here) -> its result.
Pass = Callable[[int | None, Sink | None], RedriveResult]


def with_canary(
    once: Pass,
    *,
    queues: Queues,
    dlq_url: str,
    canary: int,
    canary_wait_seconds: int,
    max_messages: int | None,
    stop: threading.Event,
    workers: int = 1,
    lease_seconds: int = LEASE_SECONDS,
    wait_seconds: int = RECEIVE_WAIT_SECONDS,
    settle_seconds: float = SETTLE_SECONDS,
    journal: RedriveJournal | None = None,
) -> RedriveResult:
    """Move `canary` messages, wait `canary_wait_seconds`, look for them in the DLQ; stop
    (`stopped == "canary"`, `canary.passed` false) if any came back, else move the rest."""
    started_wall = time.time()
    sent: Sink = []
    first = once(canary, sent)
    report = CanaryReport(
        requested=canary, moved=first.moved, wait_seconds=canary_wait_seconds, passed=True
    )
    first.canary = report
    if first.interrupted or first.moved == 0:
        return first
    try:
        interrupted = stop.wait(canary_wait_seconds)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        first.interrupted = True
        first.stopped = "interrupted"
        return first
    back = canary_check(
        queues=queues,
        dlq_url=dlq_url,
        sent=sent,
        since_epoch=started_wall,
        workers=workers,
        lease_seconds=lease_seconds,
        wait_seconds=wait_seconds,
        settle_seconds=settle_seconds,
        journal=journal,
    )
    report.came_back = sorted({mid for mid, _job in back})
    report.came_back_jobs = sorted({job for _mid, job in back if job})
    if back:
        report.passed = False
        first.stopped = "canary"
        return first
    if max_messages is not None and max_messages <= first.moved + first.failed:
        first.stopped = "max"
        return first
    rest = once(None if max_messages is None else max_messages - first.matched, None)
    return combine(first, rest, report)


def canary_check(
    *,
    queues: Queues,
    dlq_url: str,
    sent: Sink,
    since_epoch: float,
    workers: int = 1,
    lease_seconds: int = LEASE_SECONDS,
    wait_seconds: int = RECEIVE_WAIT_SECONDS,
    settle_seconds: float = SETTLE_SECONDS,
    journal: RedriveJournal | None = None,
) -> Sink:
    """Peek at the whole DLQ for the canary's messages: a redriven message that fails again
    comes back with the id the target gave it; its job id is matched too (for messages
    re-enqueued by someone else since the canary started). Everything is released."""
    ids = {mid for mid, _job in sent}
    jobs = {job for _mid, job in sent if job}
    since_ms = (since_epoch - 5) * 1000  # tolerate a little clock skew

    def came_back(m: ParsedMessage) -> bool:
        if m.message_id in ids:
            return True
        sent_ms = m.attributes.get("SentTimestamp")
        recent = bool(sent_ms and str(sent_ms).isdigit() and int(sent_ms) >= since_ms)
        return bool(m.job_id and m.job_id in jobs and recent)

    found: Sink = []
    scan(
        queues=queues,
        dlq_url=dlq_url,
        accept=came_back,
        sink=found,
        workers=workers,
        lease_seconds=lease_seconds,
        wait_seconds=wait_seconds,
        settle_seconds=settle_seconds,
        journal=journal,
    )
    return found


def combine(first: RedriveResult, rest: RedriveResult, report: CanaryReport) -> RedriveResult:
    combined = rest.model_copy(deep=True)
    for name in (
        "scanned",
        "matched",
        "moved",
        "failed",
        "released",
        "skipped_completed",
        "duplicates_possible",
        "redelivered",
        "not_sent",
        "system_attributes_dropped",
    ):
        setattr(combined, name, getattr(first, name) + getattr(rest, name))
    failures = first.failures + rest.failures
    combined.failures = failures[:FAILURES_KEPT]
    combined.failures_truncated = (
        first.failures_truncated or rest.failures_truncated or len(failures) > FAILURES_KEPT
    )
    combined.sample = (first.sample + rest.sample)[:SAMPLE_SIZE]
    calls = CallStats()
    for name in CallStats.model_fields:
        setattr(calls, name, getattr(first.calls, name) + getattr(rest.calls, name))
    combined.calls = calls
    combined.duration_seconds = round(first.duration_seconds + rest.duration_seconds, 3)
    combined.canary = report
    return combined
