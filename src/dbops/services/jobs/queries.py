"""Read-only `dbops jobs` queries: list, stale, orphans, get, stats, show (DLQ peek)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbops.errors import DbopsError, UsageError
from dbops.ports import Queues, Store
from dbops.services.jobs.inputs import _check_limit, _chunks, resolve_job_ids
from dbops.services.jobs.models import (
    DLQ_PEEK_RECEIVES,
    DLQ_PEEK_VISIBILITY,
    SHOW_HISTORY,
    SQS_BATCH,
    STATUSES,
    WORKER_DEAD_SECONDS,
    HistoryEvent,
    HourlyCount,
    Job,
    JobDetail,
    JobDlqMessage,
    JobState,
    JobStats,
    OrphanJob,
    RecoveryRecord,
    StaleJob,
    WorkerInfo,
)
from dbops.services.messages import parse
from dbops.services.redact import mask_body, mask_optional, mask_personal


def list_jobs(
    *,
    store: Store,
    status: str | None = None,
    customer: str | None = None,
    since_seconds: int | None = None,
    limit: int = 50,
) -> list[Job]:
    if status is not None and status not in STATUSES:
        raise UsageError(f"invalid --status {status!r}: use one of {', '.join(STATUSES)}")
    _check_limit(limit)
    rows = store.call(
        "dbops_jobs_list",
        {
            "p_status": status,
            "p_customer": customer,
            "p_since_seconds": since_seconds,
            "p_limit": limit,
        },
    )
    return [Job.model_validate(r) for r in rows]


def stale(*, store: Store, older_than_seconds: int, limit: int = 100) -> list[StaleJob]:
    _check_limit(limit)
    rows = store.call(
        "dbops_jobs_stale",
        {
            "p_older_than_seconds": older_than_seconds,
            "p_limit": limit,
            "p_dead_after_seconds": WORKER_DEAD_SECONDS,
        },
    )
    return [StaleJob.model_validate(r) for r in rows]


def orphans(*, store: Store, older_than_seconds: int, limit: int = 100) -> list[OrphanJob]:
    _check_limit(limit)
    rows = store.call(
        "dbops_jobs_orphans", {"p_older_than_seconds": older_than_seconds, "p_limit": limit}
    )
    return [OrphanJob.model_validate(r) for r in rows]


def get_jobs(*, store: Store, job_ids: Sequence[str]) -> list[JobState]:
    rows = store.call(
        "dbops_jobs_get",
        {"p_job_ids": list(job_ids), "p_dead_after_seconds": WORKER_DEAD_SECONDS},
    )
    return [JobState.model_validate(r) for r in rows]


def stats(*, store: Store, since_seconds: int, submitting_seconds: int = 900) -> JobStats:
    rows = store.call(
        "dbops_jobs_stats",
        {"p_since_seconds": since_seconds, "p_submitting_seconds": submitting_seconds},
    )
    row = rows[0] if rows else {}
    return JobStats(
        since_seconds=since_seconds,
        by_status={str(k): int(v) for k, v in (row.get("by_status") or {}).items()},
        completed=int(row.get("completed") or 0),
        failed=int(row.get("failed") or 0),
        error_rate=_float(row.get("error_rate")),
        runtime_p50_seconds=_float(row.get("runtime_p50_seconds")),
        runtime_p95_seconds=_float(row.get("runtime_p95_seconds")),
        stuck_submitting=int(row.get("stuck_submitting") or 0),
        submitting_threshold_seconds=submitting_seconds,
        legacy_complete=int(row.get("legacy_complete") or 0),
        hourly=[HourlyCount.model_validate(h) for h in row.get("hourly") or []],
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def show(
    *,
    store: Store,
    job_id: str,
    queues: Queues | None = None,
    dlq_url: str | None = None,
    reveal: bool = False,
) -> JobDetail:
    """The job and what surrounds it; its DLQ messages are peeked, never consumed.

    Unless `reveal`, personal data is masked in every free-text field: the job's
    `customer_id`, `error_message` and `metadata`, history `details`, and the DLQ
    messages' `reason` and `body` (see `dbops.services.redact`)."""
    (canonical,) = resolve_job_ids([job_id], store=store)
    rows = store.call(
        "dbops_jobs_show",
        {
            "p_job_id": canonical,
            "p_history_limit": SHOW_HISTORY,
            "p_dead_after_seconds": WORKER_DEAD_SECONDS,
        },
    )
    row = rows[0]
    detail = JobDetail(
        job=Job.model_validate(row["job"]),
        last_activity_at=row.get("last_activity_at"),
        results_by_status={str(k): int(v) for k, v in (row.get("results_by_status") or {}).items()},
        history=[HistoryEvent.model_validate(h) for h in row.get("history") or []],
        worker=WorkerInfo.model_validate(row["worker"]) if row.get("worker") else None,
        recoveries=[RecoveryRecord.model_validate(r) for r in row.get("recoveries") or []],
    )
    if queues is not None and dlq_url:
        try:
            detail.dlq_messages, detail.dlq_scanned = peek_dlq(
                queues=queues, dlq_url=dlq_url, job_id=canonical
            )
        except DbopsError as exc:
            detail.dlq_error = exc.one_line()
    return detail if reveal else mask_detail(detail)


def mask_detail(detail: JobDetail) -> JobDetail:
    """A copy of `detail` with personal data masked (`masked` set)."""
    job = detail.job.model_copy(
        update={
            "customer_id": mask_optional(detail.job.customer_id),
            "error_message": mask_optional(detail.job.error_message),
            "metadata": mask_personal(detail.job.metadata),
        }
    )
    history = [h.model_copy(update={"details": mask_personal(h.details)}) for h in detail.history]
    messages = (
        None
        if detail.dlq_messages is None
        else [
            m.model_copy(update={"reason": mask_optional(m.reason), "body": mask_body(m.body)})
            for m in detail.dlq_messages
        ]
    )
    return detail.model_copy(
        update={"job": job, "history": history, "dlq_messages": messages, "masked": True}
    )


def peek_dlq(
    *,
    queues: Queues,
    dlq_url: str,
    job_id: str,
    max_receives: int = DLQ_PEEK_RECEIVES,
    visibility_seconds: int = DLQ_PEEK_VISIBILITY,
) -> tuple[list[JobDlqMessage], int]:
    """Messages for `job_id` in the DLQ, without consuming any.

    At most `max_receives` receive calls with a short visibility timeout (so nothing is
    received twice during the scan); every message seen is made visible again at once.
    """
    dlq_url = queues.resolve_url(dlq_url)
    handles: dict[str, str] = {}
    found: list[JobDlqMessage] = []
    try:
        for _ in range(max_receives):
            got = queues.receive(
                dlq_url, max_messages=10, visibility_timeout=visibility_seconds, wait_seconds=0
            )
            new = [m for m in got if m.message_id not in handles]
            for message in got:
                handles[message.message_id] = message.receipt_handle
            if not new:
                break
            for message in new:
                parsed = parse(message)
                if parsed.job_id == job_id:
                    found.append(
                        JobDlqMessage(
                            message_id=parsed.message_id,
                            sent_at=parsed.sent_at,
                            age_seconds=parsed.age_seconds,
                            receive_count=parsed.receive_count,
                            reason=parsed.reason,
                            body=parsed.body,
                        )
                    )
    finally:
        items = list(handles.values())
        for chunk in _chunks(items, SQS_BATCH):
            queues.change_visibility_batch(
                dlq_url, {str(i): handle for i, handle in enumerate(chunk)}, 0
            )
    return found, len(handles)
