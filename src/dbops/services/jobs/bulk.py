"""Bulk job actions, by ids or by filter: `retry` (failed jobs back to pending and enqueued,
through the outbox of `recover`/`requeue`) and `fail` by filter.

The filter is evaluated once, by the preview (`dbops_jobs_match`, sql/dbops/0012); the
action then runs on the previewed jobs, a chunk per database call, each job re-checked
under its row lock against the status the preview showed (`skipped_changed`).

Retry by filter costs one database round trip per chunk (default 2,000 jobs) plus two
per run, and one SQS call per 10 jobs: the preview is one call
(`dbops_jobs_retry_preview`: the matching jobs and the outbox state); each chunk is one
`dbops_jobs_retry_step`, which also records the previous chunk's sends, and the first one
also registers the run and takes what earlier runs left unsent; the sender sends a chunk's
messages in batches of 10; one `dbops_jobs_outbox_finish` records the last chunk's sends,
releases the run and reads the outbox state (sql/dbops/0018). Killed between SQS accepting
a batch and that record, the chunk's rows stay in the outbox: the next run resends them (at
least once, never lost: at most one chunk is sent twice; on a FIFO queue SQS drops the
resend within its 5-minute deduplication window).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from dbops.errors import UsageError
from dbops.ports import Checkpoint, Queues, Row, Store
from dbops.services.jobs.inputs import _check_limit, _chunks, parse_job_ids
from dbops.services.jobs.models import (
    BULK_LIMIT,
    DEFAULT_CHUNK,
    LEASE_SECONDS,
    RETRY_CHUNK,
    WORKER_DEAD_SECONDS,
    BulkPreview,
    FailedJob,
    FailResult,
    GroupBy,
    JobFilter,
    JobState,
    OutboxState,
    Progress,
    RecoveredJob,
    RetryResult,
)
from dbops.services.jobs.outbox import (
    _Sender,
    finish_run,
    open_sender,
    outbox_state,
    run_outbox,
    session_lock,
)
from dbops.services.jobs.queries import get_jobs
from dbops.services.jobs.usecases import fail, fail_dry_run, fail_skip_reason

RETRY_SKIP = (
    "status is {status} (jobs retry re-queues failed jobs only; `dbops jobs requeue` "
    "re-queues pending ones)"
)
MAX_FILTER_TEXT = 500
COMMAND = "jobs retry"
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
    rows = store.call("dbops_jobs_match", {"p_action": action, **_match_params(filter)})
    return _found(rows, filter)


def _match_params(filter: JobFilter) -> dict[str, object]:
    return {
        "p_status": filter.status,
        "p_customer": filter.customer,
        "p_error_like": filter.error_like,
        "p_since_seconds": filter.since_seconds,
        "p_until_seconds": filter.until_seconds,
        "p_limit": filter.limit + 1,
        "p_dead_after_seconds": WORKER_DEAD_SECONDS,
    }


def _found(rows: Sequence[Row], filter: JobFilter) -> tuple[list[JobState], bool]:
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
    """The failed jobs a retry would re-queue (by ids, or matching the filter), and the
    outbox rows waiting unsent. By filter one round trip (`dbops_jobs_retry_preview`: the
    matching jobs, then a row with id null carrying the outbox state)."""
    if filter is not None and not job_ids:
        rows = store.call("dbops_jobs_retry_preview", _match_params(filter))
        found, more = _found([r for r in rows if r.get("id") is not None], filter)
        summary = next((r for r in rows if r.get("id") is None), {})
        state = OutboxState(
            unsent=int(summary.get("outbox_unsent") or 0),
            leased_elsewhere=int(summary.get("outbox_leased_elsewhere") or 0),
        )
    else:
        found, more = select_jobs(store=store, action="retry", job_ids=job_ids, filter=filter)
        state, _dead = outbox_state(store=store)
    act = sum(1 for j in found if _retry_skip(j) is None)
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
    chunk_size: int = RETRY_CHUNK,
    lease_seconds: int = LEASE_SECONDS,
    progress: Progress | None = None,
    group_by: GroupBy = "job",
    checkpoint: Checkpoint | None = None,
) -> RetryResult:
    """Re-queue the failed jobs of `preview` (the jobs the operator confirmed) through the
    outbox, a chunk per `dbops_jobs_retry_step` call (the first one also registers the run
    and takes what earlier runs left unsent), then one `dbops_jobs_outbox_finish`.

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

    def work() -> OutboxState:
        steps = deque(list(chunk) for chunk in _chunks(chosen, chunk_size))
        take, first = chunk_size, True
        while first or steps or take:
            ids = steps.popleft() if steps else []
            full = _retry_step(sender, result, ids, operator=operator, start=first, take=take)
            take, first = (chunk_size if full else 0), False
        return finish_run(sender)

    run_outbox(sender, result, operator=operator, command=COMMAND, work=work, starts_run=True)
    return result


def _retry_step(
    sender: _Sender,
    result: RetryResult,
    ids: list[str],
    *,
    operator: str,
    start: bool,
    take: int,
) -> bool:
    """One database call (`dbops_jobs_retry_step`): register the run (the first step),
    record the previous step's sends, take up to `take` rows earlier runs left unsent and
    re-queue this chunk; then send what it took and re-queued. True when the take was full
    (more unsent rows may wait: the next step takes again)."""
    sent, failed = sender.take_marks()
    rows = sender.store.call(
        "dbops_jobs_retry_step",
        {
            "p_job_ids": ids,
            "p_operator": operator,
            "p_lease_owner": sender.owner,
            "p_lease_seconds": sender.lease_seconds,
            "p_expected": dict.fromkeys(ids, "failed"),
            "p_queue_url": sender.queue_url,
            "p_sent": sent,
            "p_failed": failed,
            "p_start": start,
            "p_command": COMMAND,
            "p_session_lock": session_lock(sender.store),
            "p_take": take,
        },
    )
    sender.leased()
    recorded = next((r for r in rows if r.get("action") == "recorded"), {})
    if sent or failed:
        sender.recorded(int(recorded.get("rejected") or 0))
    taken = [r for r in rows if r.get("resumed")]
    claimed = [r for r in rows if not r.get("resumed") and r.get("action") != "recorded"]
    resumed = [r for r in taken if r["action"] == "requeued"]
    result.skipped_unsent += len(taken) - len(resumed)
    result.resumed += len(resumed)
    result.jobs.extend(sender.resume(row) for row in resumed)
    to_send = sender.track(claimed, result.jobs)
    for row in claimed:
        result.skipped_changed += str(row.get("reason") or "").startswith("skipped_changed")
    result.retried += len(to_send)
    result.skipped += len(claimed) - len(to_send)
    sender.checkpoint("after_claim")
    sender.expect(len(resumed) + len(to_send))
    sender.send([*resumed, *to_send])
    return take > 0 and len(taken) >= take


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
