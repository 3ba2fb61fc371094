"""Bulk job actions, by ids or by filter: `retry` (failed jobs back to pending and enqueued,
through the outbox of `recover`/`requeue`) and `fail` by filter.

The filter is evaluated once, by the preview (`dbops_jobs_match`, sql/dbops/0012); the
action then runs on the previewed jobs, a chunk per database call, each job re-checked
under its row lock against the status the preview showed (`skipped_changed`).

Retry costs one database round trip per chunk (default 1,000 jobs) and one SQS call per
10 jobs: the sender sends a chunk's messages in batches of 10 and records them with the
next chunk's claim (`dbops_jobs_retry` does both in one transaction), the last chunk with
one `dbops_jobs_outbox_mark`. Killed between SQS accepting a batch and that record, the
chunk's rows stay in the outbox: the next run resends them (at least once, never lost;
on a FIFO queue SQS drops the resend within its 5-minute deduplication window).
"""

from __future__ import annotations

from collections.abc import Sequence

from dbops.errors import UsageError
from dbops.ports import Checkpoint, Queues, Store
from dbops.services.jobs.inputs import _check_limit, _chunks, parse_job_ids
from dbops.services.jobs.models import (
    BULK_LIMIT,
    DEFAULT_CHUNK,
    LEASE_SECONDS,
    WORKER_DEAD_SECONDS,
    BulkPreview,
    FailedJob,
    FailResult,
    GroupBy,
    JobFilter,
    JobState,
    Progress,
    RecoveredJob,
    RetryResult,
)
from dbops.services.jobs.outbox import _Sender, open_sender, outbox_state, resume_outbox, run_outbox
from dbops.services.jobs.queries import get_jobs
from dbops.services.jobs.usecases import fail, fail_dry_run, fail_skip_reason

RETRY_SKIP = (
    "status is {status} (jobs retry re-queues failed jobs only; `dbops jobs requeue` "
    "re-queues pending ones)"
)
MAX_FILTER_TEXT = 500
UNSENT_SKIP = "already waiting in the dbops outbox: run `dbops jobs recover` to send it"


def job_filter(
    *,
    status: str | None = None,
    customer: str | None = None,
    error_like: str | None = None,
    since_seconds: int | None = None,
    until_seconds: int | None = None,
    limit: int = BULK_LIMIT,
) -> JobFilter | None:
    """The filter given (None when no filter option was: the command then needs ids).

    Values are stripped; an empty or over-long one, a bad limit or an empty window is a
    usage error.
    Statuses are checked by the database, against the jobs table's own check constraint.
    """
    values = {"--status": status, "--customer": customer, "--error-like": error_like}
    cleaned: dict[str, str | None] = {}
    for option, value in values.items():
        if value is not None:
            value = " ".join(value.split())
            if not value:
                raise UsageError(f"invalid {option} '': give a value")
            if len(value) > MAX_FILTER_TEXT:
                raise UsageError(
                    f"invalid {option}: {len(value)} characters, at most {MAX_FILTER_TEXT}"
                )
        cleaned[option] = value
    _check_limit(limit)
    if since_seconds is not None and until_seconds is not None and since_seconds <= until_seconds:
        raise UsageError(
            "invalid --since/--until: the window is empty (--since must reach further back "
            "than --until, e.g. --since 6h --until 1h)"
        )
    if all(v is None for v in (*cleaned.values(), since_seconds, until_seconds)):
        return None
    return JobFilter(
        status=cleaned["--status"],
        customer=cleaned["--customer"],
        error_like=cleaned["--error-like"],
        since_seconds=since_seconds,
        until_seconds=until_seconds,
        limit=limit,
    )


def select_jobs(
    *, store: Store, action: str, job_ids: Sequence[str] | None, filter: JobFilter | None
) -> tuple[list[JobState], bool]:
    """The jobs given by id (unknown ids: exit 4), or those the filter matches (at most
    its limit; the flag says whether more match). Exactly one of ids and filter."""
    if job_ids and filter is not None:
        raise UsageError("give job ids or filter options (not both)")
    if not job_ids and filter is None:
        raise UsageError(
            "give job ids or at least one filter (--status, --customer, --error-like, "
            "--since, --until)"
        )
    if filter is None:
        return get_jobs(store=store, job_ids=parse_job_ids(job_ids or [])), False
    rows = store.call(
        "dbops_jobs_match",
        {
            "p_action": action,
            "p_status": filter.status,
            "p_customer": filter.customer,
            "p_error_like": filter.error_like,
            "p_since_seconds": filter.since_seconds,
            "p_until_seconds": filter.until_seconds,
            "p_limit": filter.limit + 1,
            "p_dead_after_seconds": WORKER_DEAD_SECONDS,
        },
    )
    found = [JobState.model_validate(r) for r in rows]
    return found[: filter.limit], len(found) > filter.limit


# --------------------------------------------------------------------------- retry
def _retry_skip(job: JobState) -> str | None:
    if job.status != "failed":
        return RETRY_SKIP.format(status=job.status)
    return UNSENT_SKIP if job.unsent else None


def retry_preview(
    *, store: Store, job_ids: Sequence[str] | None = None, filter: JobFilter | None = None
) -> BulkPreview:
    """The failed jobs a retry would re-queue (by ids, or matching the filter)."""
    found, more = select_jobs(store=store, action="retry", job_ids=job_ids, filter=filter)
    act = sum(1 for j in found if _retry_skip(j) is None)
    state, _dead = outbox_state(store=store)
    return BulkPreview(
        action="retry",
        filter=filter.redacted() if filter else None,
        jobs=found,
        more_matched=more,
        would_act=act,
        would_skip=len(found) - act,
        outbox=state,
    )


def _skipped(job: JobState, reason: str) -> RecoveredJob:
    return RecoveredJob(job_id=job.id, customer_id=job.customer_id, action="skipped", error=reason)


def retry_dry_run(preview: BulkPreview) -> RetryResult:
    """What `retry` would do, from its preview; nothing is changed or sent."""
    jobs = []
    for job in preview.jobs:
        reason = _retry_skip(job)
        if reason is not None:
            jobs.append(_skipped(job, reason))
            continue
        jobs.append(
            RecoveredJob(
                job_id=job.id,
                customer_id=job.customer_id,
                action="requeued",
                attempt=job.recoveries + 1,
                last_activity_at=job.last_activity_at,
            )
        )
    return RetryResult(
        dry_run=True,
        filter=preview.filter,
        matched=len(preview.jobs),
        more_matched=preview.more_matched,
        retried=preview.would_act,
        skipped=preview.would_skip,
        unsent_remaining=preview.outbox.unsent,
        leased_elsewhere=preview.outbox.leased_elsewhere,
        jobs=jobs,
    )


def retry(
    *,
    store: Store,
    queues: Queues,
    queue_url: str,
    operator: str,
    preview: BulkPreview,
    chunk_size: int = DEFAULT_CHUNK,
    lease_seconds: int = LEASE_SECONDS,
    progress: Progress | None = None,
    group_by: GroupBy = "job",
    checkpoint: Checkpoint | None = None,
) -> RetryResult:
    """Re-queue the failed jobs of `preview` (the jobs the operator confirmed) through the
    outbox: first what earlier runs left unsent, then a chunk per `dbops_jobs_retry` call.

    `checkpoint` is called at `after_claim` (a chunk claimed and the previous one
    recorded), `after_send` (an SQS batch sent, not yet recorded) and `after_batch`
    (sends recorded)."""
    _check_limit(chunk_size, "--chunk-size", 10_000)
    result = RetryResult(
        dry_run=False,
        filter=preview.filter,
        matched=len(preview.jobs),
        more_matched=preview.more_matched,
    )
    chosen = []
    for job in preview.jobs:
        reason = _retry_skip(job)
        if reason is None:
            chosen.append(str(job.id))
        else:
            result.jobs.append(_skipped(job, reason))
            result.skipped += 1
    sender = open_sender(
        store=store,
        queues=queues,
        queue_url=queue_url,
        progress=progress,
        lease_seconds=lease_seconds,
        group_by=group_by,
        checkpoint=checkpoint,
        defer_marks=True,
    )

    def work() -> None:
        resume_outbox(sender, result, chunk_size=chunk_size)
        for chunk in _chunks(chosen, chunk_size):
            _retry_chunk(sender, result, list(chunk), operator=operator)
        sender.flush()

    run_outbox(sender, result, operator=operator, command="jobs retry", work=work)
    return result


def _retry_chunk(sender: _Sender, result: RetryResult, ids: list[str], *, operator: str) -> None:
    """Record the previous chunk's sends and re-queue this chunk (one database call), then
    send this chunk's messages."""
    sent, failed = sender.take_marks()
    rows = sender.store.call(
        "dbops_jobs_retry",
        {
            "p_job_ids": ids,
            "p_operator": operator,
            "p_lease_owner": sender.owner,
            "p_lease_seconds": sender.lease_seconds,
            "p_expected": dict.fromkeys(ids, "failed"),
            "p_queue_url": sender.queue_url,
            "p_sent": sent,
            "p_failed": failed,
        },
    )
    sender.leased()
    if sent or failed:
        sender.recorded(int(rows[0].get("rejected") or 0) if rows else 0)
    to_send = sender.track(rows, result.jobs)
    for row in rows:
        result.skipped_changed += str(row.get("reason") or "").startswith("skipped_changed")
    result.retried += len(to_send)
    result.skipped += len(rows) - len(to_send)
    sender.checkpoint("after_claim")
    sender.expect(len(to_send))
    sender.send(to_send)


# --------------------------------------------------------------------------- fail
def fail_bulk_preview(
    *, store: Store, job_ids: Sequence[str] | None = None, filter: JobFilter | None = None
) -> BulkPreview:
    """The jobs a `fail` would act on (by ids, or matching the filter)."""
    found, more = select_jobs(store=store, action="fail", job_ids=job_ids, filter=filter)
    act = sum(1 for j in found if fail_skip_reason(j) is None)
    return BulkPreview(
        action="fail",
        filter=filter.redacted() if filter else None,
        jobs=found,
        more_matched=more,
        would_act=act,
        would_skip=len(found) - act,
    )


def fail_bulk_dry_run(preview: BulkPreview, reason: str) -> FailResult:
    planned = fail_dry_run(preview.jobs, reason)
    return planned.model_copy(
        update={
            "filter": preview.filter,
            "matched": len(preview.jobs),
            "more_matched": preview.more_matched,
        }
    )


def fail_bulk(
    *,
    store: Store,
    preview: BulkPreview,
    reason: str,
    operator: str,
    chunk_size: int = DEFAULT_CHUNK,
) -> FailResult:
    """Fail the jobs of `preview`, a chunk per database call, each re-checked under its row
    lock against the status the preview showed (changed or deleted: `skipped_changed`)."""
    if not reason.strip():
        raise UsageError("--reason must not be empty")
    _check_limit(chunk_size, "--chunk-size", 10_000)
    expected = {str(j.id): j.status for j in preview.jobs}
    if preview.filter is None:  # by ids: the one call `jobs fail ID...` always made
        by_ids = fail(
            store=store, job_ids=list(expected), reason=reason, operator=operator, expected=expected
        )
        return by_ids.model_copy(update={"matched": len(preview.jobs)})
    jobs: list[FailedJob] = []
    for chunk in _chunks(preview.jobs, chunk_size):
        rows = store.call(
            "dbops_jobs_fail_bulk",
            {
                "p_job_ids": [str(j.id) for j in chunk],
                "p_reason": reason,
                "p_operator": operator,
                "p_dead_after_seconds": WORKER_DEAD_SECONDS,
                "p_expected": {str(j.id): expected[str(j.id)] for j in chunk},
            },
        )
        jobs.extend(FailedJob.model_validate(r) for r in rows)
    changed = sum(1 for j in jobs if j.changed)
    return FailResult(
        dry_run=False,
        requested=len(preview.jobs),
        failed=changed,
        skipped=len(jobs) - changed,
        reason=reason,
        skipped_changed=sum(1 for j in jobs if (j.reason or "").startswith("skipped_changed")),
        filter=preview.filter,
        matched=len(preview.jobs),
        more_matched=preview.more_matched,
        jobs=jobs,
    )
