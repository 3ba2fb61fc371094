"""`dbops jobs` use cases that change jobs: recover, requeue (both through the outbox)
and fail; each with its preview and dry run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from dbops.errors import UsageError
from dbops.ports import Checkpoint, Queues, Store
from dbops.services.jobs.inputs import (
    _check_limit,
    _chunks,
    check_recover_threshold,
    resolve_job_ids,
)
from dbops.services.jobs.models import (
    DEFAULT_CHUNK,
    LEASE_SECONDS,
    WORKER_DEAD_SECONDS,
    FailedJob,
    FailResult,
    GroupBy,
    JobState,
    Progress,
    RecoveredJob,
    RecoverPreview,
    RecoverResult,
    RequeuePreview,
    RequeueResult,
)
from dbops.services.jobs.outbox import _Sender, open_sender, outbox_state, resume_outbox, run_outbox
from dbops.services.jobs.queries import get_jobs, orphans, stale


# --------------------------------------------------------------------------- recover
def recover_preview(
    *, store: Store, older_than_seconds: int, limit: int, max_recoveries: int
) -> RecoverPreview:
    check_recover_threshold(older_than_seconds)
    _check_limit(limit)
    if max_recoveries < 0:
        raise UsageError(f"invalid --max-recoveries {max_recoveries}: use 0 or more")
    rows = stale(store=store, older_than_seconds=older_than_seconds, limit=min(limit + 1, 100_000))
    more = len(rows) > limit
    rows = rows[:limit]
    requeue = sum(1 for r in rows if r.recoveries < max_recoveries)
    state, _dead = outbox_state(store=store)
    return RecoverPreview(
        older_than_seconds=older_than_seconds,
        limit=limit,
        max_recoveries=max_recoveries,
        stale=rows,
        would_claim=len(rows),
        would_requeue=requeue,
        would_abandon=len(rows) - requeue,
        more_stale=more,
        outbox=state,
    )


def recover_dry_run(preview: RecoverPreview) -> RecoverResult:
    """What `recover` would do, from its preview; nothing is changed or sent."""
    return RecoverResult(
        dry_run=True,
        older_than_seconds=preview.older_than_seconds,
        limit=preview.limit,
        max_recoveries=preview.max_recoveries,
        claimed=preview.would_claim,
        requeued=preview.would_requeue,
        abandoned=preview.would_abandon,
        unsent_remaining=preview.outbox.unsent,
        leased_elsewhere=preview.outbox.leased_elsewhere,
        more_stale=preview.more_stale,
        jobs=[
            RecoveredJob(
                job_id=s.id,
                customer_id=s.customer_id,
                action="requeued" if s.recoveries < preview.max_recoveries else "abandoned",
                attempt=s.recoveries + 1 if s.recoveries < preview.max_recoveries else s.recoveries,
                last_activity_at=s.last_activity_at,
            )
            for s in preview.stale
        ],
    )


def recover(
    *,
    store: Store,
    queues: Queues,
    queue_url: str,
    operator: str,
    older_than_seconds: int,
    limit: int = 1000,
    max_recoveries: int = 3,
    chunk_size: int = DEFAULT_CHUNK,
    lease_seconds: int = LEASE_SECONDS,
    progress: Progress | None = None,
    group_by: GroupBy = "job",
    checkpoint: Checkpoint | None = None,
    claim_at_most: int | None = None,
) -> RecoverResult:
    """Finish the outbox, then claim stale jobs and send their messages (see package doc).

    Claims at most `limit` jobs, and at most `claim_at_most` when given (the CLI passes
    the number it previewed and the operator confirmed, so a run never does more than it
    announced; 0: only finish the outbox). The result reports `limit`. `checkpoint` is called at
    `before_outbox`, `before_claim`, `after_claim` (claim committed, nothing sent yet),
    `after_send` (a batch sent, not yet recorded) and `after_batch` (sent and recorded).
    """
    check_recover_threshold(older_than_seconds)
    if limit != 0:  # 0: only finish what earlier runs left in the outbox
        _check_limit(limit)
    _check_limit(chunk_size, "--chunk-size", 10_000)
    if max_recoveries < 0:
        raise UsageError(f"invalid --max-recoveries {max_recoveries}: use 0 or more")
    result = RecoverResult(
        dry_run=False,
        older_than_seconds=older_than_seconds,
        limit=limit,
        max_recoveries=max_recoveries,
    )
    sender = open_sender(
        store=store,
        queues=queues,
        queue_url=queue_url,
        progress=progress,
        lease_seconds=lease_seconds,
        group_by=group_by,
        checkpoint=checkpoint,
    )

    claim = limit if claim_at_most is None else max(0, min(limit, claim_at_most))

    def work() -> None:
        sender.checkpoint("before_outbox")
        resume_outbox(sender, result, chunk_size=chunk_size)
        sender.checkpoint("before_claim")
        _claim_stale(sender, result, claim, operator=operator, chunk_size=chunk_size)

    run_outbox(sender, result, operator=operator, command="jobs recover", work=work)
    return result


def _claim_stale(
    sender: _Sender, result: RecoverResult, claim: int, *, operator: str, chunk_size: int
) -> None:
    """Claim up to `claim` stale jobs, a chunk per transaction, sending each chunk's
    messages before claiming the next."""
    remaining = claim
    while remaining > 0:
        want = min(chunk_size, remaining)
        rows = sender.store.call(
            "dbops_jobs_claim_stale",
            {
                "p_older_than_seconds": result.older_than_seconds,
                "p_limit": want,
                "p_max_recoveries": result.max_recoveries,
                "p_operator": operator,
                "p_lease_owner": sender.owner,
                "p_lease_seconds": sender.lease_seconds,
            },
        )
        sender.leased()
        if not rows:
            break
        remaining -= len(rows)
        to_send = sender.track(rows, result.jobs)
        result.claimed += len(rows)
        result.requeued += len(to_send)
        result.abandoned += len(rows) - len(to_send)
        sender.checkpoint("after_claim")
        sender.expect(len(to_send))
        sender.send(to_send)
        if len(rows) < want:
            break
    if remaining <= 0 and claim > 0:
        result.more_stale = bool(
            stale(store=sender.store, older_than_seconds=result.older_than_seconds, limit=1)
        )


# --------------------------------------------------------------------------- requeue
def requeue_preview(
    *,
    store: Store,
    job_ids: Sequence[str] | None = None,
    orphans_older_than_seconds: int | None = None,
    limit: int = 100,
) -> RequeuePreview:
    """Requested jobs (unknown ids: exit 4) or current orphans, and what would happen."""
    if orphans_older_than_seconds is not None:
        found = orphans(store=store, older_than_seconds=orphans_older_than_seconds, limit=limit)
        states = [
            JobState(
                id=o.id,
                customer_id=o.customer_id,
                status=o.status,
                priority_level=o.priority_level,
                created_at=o.created_at,
                updated_at=o.updated_at,
                last_activity_at=o.updated_at,
                recoveries=o.recoveries,
            )
            for o in found
        ]
    else:
        states = get_jobs(store=store, job_ids=resolve_job_ids(job_ids or [], store=store))
    requeue = sum(1 for s in states if s.status in ("pending", "failed") and not s.unsent)
    state, _dead = outbox_state(store=store)
    return RequeuePreview(
        orphans=orphans_older_than_seconds is not None,
        jobs=states,
        would_requeue=requeue,
        would_skip=len(states) - requeue,
        outbox=state,
    )


def requeue_dry_run(preview: RequeuePreview) -> RequeueResult:
    return RequeueResult(
        dry_run=True,
        orphans=preview.orphans,
        requested=len(preview.jobs),
        requeued=preview.would_requeue,
        skipped=preview.would_skip,
        unsent_remaining=preview.outbox.unsent,
        leased_elsewhere=preview.outbox.leased_elsewhere,
        jobs=[
            RecoveredJob(
                job_id=s.id,
                customer_id=s.customer_id,
                action="requeued"
                if s.status in ("pending", "failed") and not s.unsent
                else "skipped",
                attempt=s.recoveries + 1,
                last_activity_at=s.last_activity_at,
            )
            for s in preview.jobs
        ],
    )


def requeue(
    *,
    store: Store,
    queues: Queues,
    queue_url: str,
    operator: str,
    job_ids: Sequence[str],
    orphans_older_than_seconds: int | None = None,
    lease_seconds: int = LEASE_SECONDS,
    progress: Progress | None = None,
    expected: Mapping[str, str] | None = None,
    force: bool = False,
    group_by: GroupBy = "job",
    checkpoint: Checkpoint | None = None,
) -> RequeueResult:
    """Re-queue pending/failed jobs (or orphans, re-checked under lock) via the outbox.

    `expected` maps job id -> the status the operator saw in the preview: a job whose
    status differs by the time its row is locked is skipped (`skipped_changed`). A pending
    job dbops already enqueued since its last state change is skipped
    (`skipped_enqueued`) unless `force`. `checkpoint` is called at `after_send` and
    `after_batch` (see `recover`).
    """
    ids = resolve_job_ids(job_ids, store=store)
    result = RequeueResult(
        dry_run=False, orphans=orphans_older_than_seconds is not None, requested=len(ids)
    )
    sender = open_sender(
        store=store,
        queues=queues,
        queue_url=queue_url,
        progress=progress,
        lease_seconds=lease_seconds,
        group_by=group_by,
        checkpoint=checkpoint,
    )
    params = {
        "p_operator": operator,
        "p_lease_owner": sender.owner,
        "p_lease_seconds": lease_seconds,
        "p_kind": "orphan" if orphans_older_than_seconds is not None else "manual",
        "p_orphan_older_than_seconds": orphans_older_than_seconds,
        "p_expected": {str(k): v for k, v in (expected or {}).items()},
        "p_force": force,
    }

    def work() -> None:
        resume_outbox(sender, result, chunk_size=DEFAULT_CHUNK)
        for chunk in _chunks(ids, DEFAULT_CHUNK):
            _requeue_chunk(sender, result, {"p_job_ids": list(chunk), **params})

    run_outbox(sender, result, operator=operator, command="jobs requeue", work=work)
    return result


def _requeue_chunk(sender: _Sender, result: RequeueResult, params: dict[str, Any]) -> None:
    """Re-queue one chunk of jobs in one transaction, then send its messages."""
    rows = sender.store.call("dbops_jobs_requeue", params)
    sender.leased()
    to_send = sender.track(rows, result.jobs)
    result.requeued += len(to_send)
    result.skipped += len(rows) - len(to_send)
    for row in rows:
        reason = str(row.get("reason") or "")
        result.skipped_changed += reason.startswith("skipped_changed")
        result.skipped_enqueued += reason.startswith("skipped_enqueued")
    sender.expect(len(to_send))
    sender.send(to_send)


# --------------------------------------------------------------------------- fail
def fail_preview(*, store: Store, job_ids: Sequence[str]) -> list[JobState]:
    return get_jobs(store=store, job_ids=resolve_job_ids(job_ids, store=store))


def _fresh(job: JobState) -> bool:
    if job.last_activity_at is None:
        return False
    now = datetime.now(job.last_activity_at.tzinfo)
    return (now - job.last_activity_at).total_seconds() < WORKER_DEAD_SECONDS


def fail_skip_reason(job: JobState) -> str | None:
    """Why `fail` would leave this job alone (None: it would be failed)."""
    if job.status not in ("pending", "in_progress"):
        return f"status is {job.status} (only pending or in_progress jobs are failed)"
    if job.status == "in_progress" and _fresh(job):
        return "last sign of life is fresh: a worker may still run it; stop the worker first"
    return None


def fail_dry_run(preview: Sequence[JobState], reason: str) -> FailResult:
    jobs = [
        FailedJob(
            job_id=j.id,
            previous_status=j.status,
            status="failed" if fail_skip_reason(j) is None else j.status,
            changed=fail_skip_reason(j) is None,
            reason=fail_skip_reason(j),
        )
        for j in preview
    ]
    changed = sum(1 for j in jobs if j.changed)
    return FailResult(
        dry_run=True,
        requested=len(jobs),
        failed=changed,
        skipped=len(jobs) - changed,
        reason=reason,
        jobs=jobs,
    )


def fail(
    *,
    store: Store,
    job_ids: Sequence[str],
    reason: str,
    operator: str,
    expected: Mapping[str, str] | None = None,
) -> FailResult:
    """Mark jobs failed with a reason (pending, or in progress without sign of life).

    `expected` maps job id -> the status the preview showed; a job another operator
    changed meanwhile is skipped (`skipped_changed`), checked under the row lock.
    """
    ids = resolve_job_ids(job_ids, store=store)
    if not reason.strip():
        raise UsageError("--reason must not be empty")
    rows = store.call(
        "dbops_jobs_fail",
        {
            "p_job_ids": ids,
            "p_reason": reason,
            "p_operator": operator,
            "p_dead_after_seconds": WORKER_DEAD_SECONDS,
            "p_expected": {str(k): v for k, v in (expected or {}).items()},
        },
    )
    jobs = [FailedJob.model_validate(r) for r in rows]
    changed = sum(1 for j in jobs if j.changed)
    return FailResult(
        dry_run=False,
        requested=len(ids),
        failed=changed,
        skipped=len(jobs) - changed,
        reason=reason,
        skipped_changed=sum(1 for j in jobs if (j.reason or "").startswith("skipped_changed")),
        jobs=jobs,
    )
