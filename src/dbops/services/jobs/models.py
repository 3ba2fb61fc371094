"""`dbops jobs` models (the `-o json` shapes), constants and the partial-result error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from dbops.errors import ExitCode, RemoteError

WORKER_DEAD_SECONDS = 120  # a worker is dead after 2 minutes without a heartbeat
MIN_RECOVER_OLDER_THAN_SECONDS = WORKER_DEAD_SECONDS
SQS_BATCH = 10
DEFAULT_CHUNK = 1000  # jobs claimed per transaction
# jobs a bulk `jobs retry` re-queues per database call: 10,000 jobs in at most 10 round
# trips counting everything (docs/performance.md); a crash re-sends at most one chunk
RETRY_CHUNK = 2000
BULK_LIMIT = 1000  # jobs a bulk retry/fail acts on unless --limit says otherwise
LEASE_SECONDS = 300
SHOW_HISTORY = 20
DLQ_PEEK_RECEIVES = 10
DLQ_PEEK_VISIBILITY = 30
STATUSES = ("pending", "in_progress", "completed", "complete", "failed", "cancelled")

Progress = Callable[[int, int], None]
GroupBy = Literal["job", "customer"]


class Job(BaseModel):
    """One row of `dbops jobs list -o json` (and `job` in `jobs show`)."""

    id: UUID
    customer_id: str | None = None
    status: str
    priority_level: int | None = None
    package_size: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class StaleJob(BaseModel):
    """One row of `dbops jobs stale -o json`."""

    id: UUID
    customer_id: str | None = None
    status: str
    priority_level: int | None = None
    package_size: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    last_activity_at: datetime
    age_seconds: float
    worker_id: UUID | None = None
    worker_status: str | None = None
    worker_last_heartbeat: datetime | None = None
    worker_alive: bool
    recoveries: int


class OrphanJob(BaseModel):
    """One row of `dbops jobs orphans -o json`."""

    id: UUID
    customer_id: str | None = None
    status: str
    priority_level: int | None = None
    package_size: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    pending_since: datetime
    age_seconds: float
    recoveries: int


class JobState(BaseModel):
    """A job as previewed by `requeue`/`fail`."""

    id: UUID
    customer_id: str | None = None
    status: str
    priority_level: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_activity_at: datetime | None = None
    worker_id: UUID | None = None
    worker_alive: bool = False
    recoveries: int = 0
    unsent: bool = False
    error_message: str | None = None


class HistoryEvent(BaseModel):
    """One queue_history row. `id` is the table's own key (bigint or uuid, as found);
    legacy rows without an event show `status_from -> status_to`; `details` is shown as
    stored, whatever its JSON shape."""

    id: int | str
    event: str
    details: Any = Field(default_factory=dict)
    worker_id: UUID | None = None
    created_at: datetime


class WorkerInfo(BaseModel):
    worker_id: UUID
    status: str | None = None
    queue_name: str | None = None
    last_heartbeat: datetime | None = None
    heartbeat_age_seconds: float | None = None
    alive: bool


class RecoveryRecord(BaseModel):
    id: int
    kind: str
    action: str
    attempt: int
    operator: str
    state: str
    message_id: str | None = None
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


class JobDlqMessage(BaseModel):
    """A DLQ message that names this job (`jobs show`), with its (masked) body."""

    message_id: str
    sent_at: datetime | None = None
    age_seconds: float | None = None
    receive_count: int | None = None
    reason: str | None = None
    body: str


class JobDetail(BaseModel):
    """`dbops jobs show JOB_ID -o json`."""

    job: Job
    last_activity_at: datetime | None = None
    results_by_status: dict[str, int] = Field(default_factory=dict)
    history: list[HistoryEvent] = Field(default_factory=list)
    worker: WorkerInfo | None = None
    recoveries: list[RecoveryRecord] = Field(default_factory=list)
    dlq_messages: list[JobDlqMessage] | None = None
    dlq_scanned: int | None = None
    dlq_error: str | None = None
    masked: bool = False


class HourlyCount(BaseModel):
    hour: datetime
    completed: int
    failed: int


class JobStats(BaseModel):
    """`dbops jobs stats -o json`."""

    since_seconds: int
    by_status: dict[str, int] = Field(default_factory=dict)
    completed: int
    failed: int
    error_rate: float | None = None
    runtime_p50_seconds: float | None = None
    runtime_p95_seconds: float | None = None
    stuck_submitting: int
    submitting_threshold_seconds: int
    legacy_complete: int
    hourly: list[HourlyCount] = Field(default_factory=list)


class RecoveredJob(BaseModel):
    """One job in a `recover`/`requeue` result."""

    job_id: UUID
    customer_id: str | None = None
    action: Literal["requeued", "abandoned", "skipped"]
    attempt: int | None = None
    outbox_id: int | None = None
    message_id: str | None = None
    sent: bool = False
    error: str | None = None
    last_activity_at: datetime | None = None
    resumed: bool = False


class OutboxState(BaseModel):
    unsent: int = 0
    leased_elsewhere: int = 0


class RecoverPreview(BaseModel):
    older_than_seconds: int
    limit: int
    max_recoveries: int
    stale: list[StaleJob]
    would_claim: int
    would_requeue: int
    would_abandon: int
    more_stale: bool
    outbox: OutboxState

    @property
    def to_send(self) -> int:
        """Messages a run would send: the jobs to re-queue plus the unsent outbox rows no
        live run holds."""
        return self.would_requeue + self.outbox.unsent - self.outbox.leased_elsewhere

    @property
    def nothing_to_do(self) -> bool:
        return not self.would_claim and not (self.outbox.unsent - self.outbox.leased_elsewhere)

    def action(self) -> str:
        """What the operator confirms."""
        unsent = self.outbox.unsent
        return f"re-queue {self.would_requeue} and fail {self.would_abandon} stale job(s)" + (
            f", and send {unsent} unsent message(s)" if unsent else ""
        )


class RecoverResult(BaseModel):
    """`dbops jobs recover -o json`."""

    dry_run: bool
    older_than_seconds: int
    limit: int
    max_recoveries: int
    resumed: int = 0
    claimed: int = 0
    requeued: int = 0
    abandoned: int = 0
    sent: int = 0
    failed_sends: int = 0
    skipped_unsent: int = 0
    unsent_remaining: int = 0
    leased_elsewhere: int = 0
    possibly_duplicated: int = 0
    more_stale: bool = False
    jobs: list[RecoveredJob] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in (
                "resumed",
                "claimed",
                "requeued",
                "abandoned",
                "sent",
                "failed_sends",
                "unsent_remaining",
                "possibly_duplicated",
            )
        }


class RequeuePreview(BaseModel):
    orphans: bool
    jobs: list[JobState]
    would_requeue: int
    would_skip: int
    outbox: OutboxState


class RequeueResult(BaseModel):
    """`dbops jobs requeue -o json`.

    `skipped` counts every job left alone; of those, `skipped_changed` had another status
    than the preview showed (another operator changed it meanwhile) and `skipped_enqueued`
    were pending jobs dbops had already enqueued since their last state change.
    """

    dry_run: bool
    orphans: bool
    requested: int
    requeued: int = 0
    skipped: int = 0
    skipped_changed: int = 0
    skipped_enqueued: int = 0
    resumed: int = 0
    sent: int = 0
    failed_sends: int = 0
    skipped_unsent: int = 0
    unsent_remaining: int = 0
    leased_elsewhere: int = 0
    possibly_duplicated: int = 0
    jobs: list[RecoveredJob] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in (
                "requested",
                "requeued",
                "skipped",
                "skipped_changed",
                "skipped_enqueued",
                "resumed",
                "sent",
                "failed_sends",
                "possibly_duplicated",
            )
        }


class JobFilter(BaseModel):
    """The filter of a bulk `jobs retry`/`jobs fail`, as recorded in the result and the
    action log. `since_seconds`/`until_seconds`: the job's last state change (updated_at)
    was at most / more than this many seconds ago. `error_like`: a case-insensitive
    substring of error_message."""

    status: str | None = None
    customer: str | None = None
    error_like: str | None = None
    since_seconds: int | None = None
    until_seconds: int | None = None
    limit: int = BULK_LIMIT

    def redacted(self) -> JobFilter:
        """A copy fit for output and the action log: secrets in the text values masked
        (an API key given as --customer or --error-like is never echoed)."""
        from dbops.services.redact import redact_text

        return self.model_copy(
            update={
                "customer": None if self.customer is None else redact_text(self.customer),
                "error_like": None if self.error_like is None else redact_text(self.error_like),
            }
        )


class BulkPreview(BaseModel):
    """What a `jobs retry` or `jobs fail` would act on (`filter` None: by ids; redacted,
    for output: the jobs were selected with the filter as given)."""

    action: Literal["retry", "fail"]
    filter: JobFilter | None = None
    jobs: list[JobState]
    more_matched: bool = False
    would_act: int
    would_skip: int
    outbox: OutboxState = Field(default_factory=OutboxState)


class RetryResult(BaseModel):
    """`dbops jobs retry -o json`: failed jobs back to pending and enqueued, through the
    outbox of `jobs recover`/`jobs requeue`.

    `filter` is the filter given (null when job ids were given). `matched`: jobs the ids or
    the filter selected in the preview (at most `filter.limit`; `more_matched` when the
    filter matched more). `retried`: jobs moved back to pending with an outbox row.
    `skipped`: matched jobs left alone (not failed, or already waiting in the outbox); of
    those, `skipped_changed` changed after the preview (another status now, or deleted).
    `sent`: messages SQS accepted in this run, including `resumed` ones (outbox rows an
    earlier run left unsent, sent first). `failed_sends`, `unsent_remaining`,
    `leased_elsewhere`, `possibly_duplicated`, `skipped_unsent`: as in `jobs recover`.
    `jobs`: one entry per matched job (action `requeued` or `skipped`, with the reason in
    `error`).
    """

    dry_run: bool
    filter: JobFilter | None = None
    matched: int
    more_matched: bool = False
    retried: int = 0
    skipped: int = 0
    skipped_changed: int = 0
    resumed: int = 0
    sent: int = 0
    failed_sends: int = 0
    skipped_unsent: int = 0
    unsent_remaining: int = 0
    leased_elsewhere: int = 0
    possibly_duplicated: int = 0
    jobs: list[RecoveredJob] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in (
                "matched",
                "retried",
                "skipped",
                "skipped_changed",
                "resumed",
                "sent",
                "failed_sends",
                "possibly_duplicated",
            )
        }


OutboxResult = RecoverResult | RequeueResult | RetryResult


class FailedJob(BaseModel):
    job_id: UUID
    previous_status: str
    status: str
    changed: bool
    reason: str | None = None


class FailResult(BaseModel):
    """`dbops jobs fail -o json` (`skipped_changed`: jobs whose status another operator
    changed after the preview, or that were deleted since; they are part of `skipped`).

    By filter: `filter` is the filter given (null when job ids were given), `matched` the
    jobs it selected in the preview (at most `filter.limit`; `more_matched` when it matched
    more); `requested` equals `matched` then. Nothing is sent to SQS, so there is no
    `sent`."""

    dry_run: bool
    requested: int
    failed: int
    skipped: int
    reason: str
    skipped_changed: int = 0
    filter: JobFilter | None = None
    matched: int = 0
    more_matched: bool = False
    jobs: list[FailedJob] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in ("matched", "requested", "failed", "skipped", "skipped_changed")
        }


class RecoveryIncomplete(RemoteError):
    """SQS (or the database) failed after jobs were claimed: they wait in the outbox."""

    def __init__(self, message: str, *, exit_code: int, result: BaseModel) -> None:
        super().__init__(message, partial_result=result)
        self.exit_code = ExitCode(exit_code)

    @property
    def result(self) -> BaseModel:
        return self.partial_result
