"""`dbops jobs`: find, inspect and safely recover stale and orphaned jobs.

Every database step is a `dbops_jobs_*` SQL function (sql/dbops/0002_jobs.sql), so this
works the same over direct Postgres and Supabase's PostgREST.

Recovery (`recover`, `requeue`) is an outbox protocol:
1. rows left unsent by an earlier run are taken first (leased, oldest first);
2. a claim function moves jobs and writes one outbox row per re-queued job in the same
   transaction, leased to this run (`lease_owner`, `sending_until`);
3. messages go to SQS in batches of 10; each batch is recorded with one database call
   (MessageIds); entries SQS refused stay unsent and are retried by the next run.
A run that dies between 2 and 3 leaves its rows in the outbox; the next run takes them
over. Each run has a random run id registered in `dbops_job_runs` with a lease it renews
as it works; over direct Postgres it also holds a session advisory lock, so a killed run
is seen dead at once (wherever it ran), and a stalled one once its lease expired. Only
the run that still holds a row may record it sent: a stalled run whose rows were taken
over reports them as `possibly_duplicated` (sent by both runs, never lost).

On a FIFO main queue each message carries MessageGroupId (the job id, or the customer id
with `group_by="customer"`) and a MessageDeduplicationId derived from its outbox row, so
SQS itself drops a resend of the same recovery within its 5-minute window.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, Field, TypeAdapter

from dbops.errors import DbopsError, ExitCode, RemoteError, UsageError
from dbops.ports import OutgoingMessage, Queues, Row, Store
from dbops.services.messages import parse

WORKER_DEAD_SECONDS = 120  # a worker is dead after 2 minutes without a heartbeat
MIN_RECOVER_OLDER_THAN_SECONDS = WORKER_DEAD_SECONDS
SQS_BATCH = 10
DEFAULT_CHUNK = 1000  # jobs claimed per transaction
LEASE_SECONDS = 300
SHOW_HISTORY = 20
DLQ_PEEK_RECEIVES = 10
DLQ_PEEK_VISIBILITY = 30
STATUSES = ("pending", "in_progress", "completed", "complete", "failed", "cancelled")

Progress = Callable[[int, int], None]
# Called at named points of a run (tests pause or interrupt it there); None: no-op.
Checkpoint = Callable[[str], None]
GroupBy = Literal["job", "customer"]
T = TypeVar("T")


# --------------------------------------------------------------------------- models
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


class DlqMessage(BaseModel):
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
    dlq_messages: list[DlqMessage] | None = None
    dlq_scanned: int | None = None
    dlq_error: str | None = None


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


class FailedJob(BaseModel):
    job_id: UUID
    previous_status: str
    status: str
    changed: bool
    reason: str | None = None


class FailResult(BaseModel):
    """`dbops jobs fail -o json` (`skipped_changed`: jobs whose status another operator
    changed after the preview; they are part of `skipped`)."""

    dry_run: bool
    requested: int
    failed: int
    skipped: int
    reason: str
    skipped_changed: int = 0
    jobs: list[FailedJob] = Field(default_factory=list)


class RecoveryIncomplete(RemoteError):
    """SQS (or the database) failed after jobs were claimed: they wait in the outbox."""

    def __init__(self, message: str, *, exit_code: int, result: BaseModel) -> None:
        super().__init__(message)
        self.exit_code = ExitCode(exit_code)
        self.result = result


# --------------------------------------------------------------------------- input
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


# --------------------------------------------------------------------------- read
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
) -> JobDetail:
    """The job and what surrounds it; its DLQ messages are peeked, never consumed."""
    (canonical,) = parse_job_ids([job_id])
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
    return detail


def peek_dlq(
    *,
    queues: Queues,
    dlq_url: str,
    job_id: str,
    max_receives: int = DLQ_PEEK_RECEIVES,
    visibility_seconds: int = DLQ_PEEK_VISIBILITY,
) -> tuple[list[DlqMessage], int]:
    """Messages for `job_id` in the DLQ, without consuming any.

    At most `max_receives` receive calls with a short visibility timeout (so nothing is
    received twice during the scan); every message seen is made visible again at once.
    """
    dlq_url = queues.resolve_url(dlq_url)
    handles: dict[str, str] = {}
    found: list[DlqMessage] = []
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
                        DlqMessage(
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


# --------------------------------------------------------------------------- outbox
def lease_owner() -> str:
    """A random run id; its liveness is held in the database (dbops_job_runs)."""
    return f"run-{uuid.uuid4().hex}"


def _start_run(store: Store, owner: str, operator: str, command: str, lease: int) -> None:
    store.call(
        "dbops_jobs_run_start",
        {
            "p_run_id": owner,
            "p_operator": operator,
            "p_command": command,
            "p_lease_seconds": lease,
            # a session lock only where the session is ours (not through a pooler/PostgREST)
            "p_session_lock": bool(getattr(store, "holds_sessions", False)),
        },
    )


def outbox_state(*, store: Store) -> tuple[OutboxState, list[str]]:
    """Unsent outbox rows; the database already counts rows of dead runs as free (the
    second value, owners to take over, stays for callers that know of more)."""
    rows = store.call("dbops_jobs_outbox_unsent")
    state = OutboxState()
    for row in rows:
        count = int(row.get("unsent") or 0)
        state.unsent += count
        if row.get("lease_owner"):
            state.leased_elsewhere += count
    return state, []


def _test_pause(point: str) -> None:
    """TEST-ONLY hook, inert unless DBOPS_TEST_PAUSE_AT names `point`.

    Writes this pid to DBOPS_TEST_PAUSE_MARKER (if set; tests pass a FIFO), then blocks:
    until DBOPS_TEST_RELEASE_FILE (a FIFO) can be read, or, when that is not set, until
    the process is killed. Points: `before_outbox`, `before_claim`, `after_claim` (claim
    committed, nothing sent yet), `after_batch` (first SQS batch sent and recorded).
    Each point pauses once per process.
    """
    if os.environ.get("DBOPS_TEST_PAUSE_AT") != point or point in _PAUSED:
        return
    _PAUSED.add(point)
    marker = os.environ.get("DBOPS_TEST_PAUSE_MARKER")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    release = os.environ.get("DBOPS_TEST_RELEASE_FILE")
    if release:
        Path(release).read_text()
        return
    threading.Event().wait()


_PAUSED: set[str] = set()


def _iso(value: Any) -> str | None:
    """A timestamp (datetime, or ISO text from PostgREST) as UTC ISO 8601 with `Z`."""
    if value is None:
        return None
    moment = _DATETIME.validate_python(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


def message_body(row: Row) -> dict[str, Any]:
    """The job message as the producers make it (DESIGN.md section 3) plus the re-queue
    fields. Built from the job row and its outbox row (attempt, operator, created_at =
    requeued_at), so a re-send after a crash carries the same re-queue fields."""
    metadata = row.get("metadata")
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    metadata = metadata if isinstance(metadata, dict) else {}
    source = metadata.get("source")
    return {
        "job_id": str(row["job_id"]),
        "customer_id": row.get("customer_id"),
        "package_size": row.get("package_size"),
        "priority": row.get("priority_level"),
        "created_at": _iso(row.get("created_at")),
        "source": str(source) if source not in (None, "") else "dbops",
        "metadata": metadata,
        "retry_attempt": row.get("attempt"),
        "requeued_by": f"dbops:{row.get('operator')}",
        "requeued_at": _iso(row.get("requeued_at")),
    }


def _outgoing(row: Row, *, fifo: bool = False, group_by: GroupBy = "job") -> OutgoingMessage:
    body = message_body(row)
    attributes: dict[str, Any] = {"job_id": {"DataType": "String", "StringValue": body["job_id"]}}
    customer = body.get("customer_id")
    if customer not in (None, ""):
        attributes["customer_id"] = {"DataType": "String", "StringValue": str(customer)}
    priority = body.get("priority")
    if isinstance(priority, int) and not isinstance(priority, bool):
        attributes["priority"] = {"DataType": "Number", "StringValue": str(priority)}
    group = None
    dedup = None
    if fifo:
        group = body["job_id"]
        if group_by == "customer" and customer not in (None, ""):
            group = str(customer)
        # One id per recovery (outbox row): a resend of it within 5 minutes is dropped by
        # SQS, a later recovery of the same job is a new message.
        dedup = f"dbops-recovery-{row['outbox_id']}-{body['job_id']}"
    return OutgoingMessage(
        id=str(row["outbox_id"]),
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        message_attributes=attributes,
        message_group_id=group,
        message_deduplication_id=dedup,
    )


class _Sender:
    """Sends outbox rows in batches of 10 and records each batch with one database call."""

    def __init__(
        self,
        *,
        store: Store,
        queues: Queues,
        queue_url: str,
        owner: str,
        progress: Progress | None,
        lease_seconds: int,
        group_by: GroupBy = "job",
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.fifo = queue_url.endswith(".fifo")
        self.group_by: GroupBy = group_by
        self.checkpoint = checkpoint or (lambda _point: None)
        self.possibly_duplicated = 0
        self.store = store
        self.queues = queues
        self.queue_url = queue_url
        self.owner = owner
        self.progress = progress
        self.lease_seconds = lease_seconds
        self.leased_at = time.monotonic()
        self.total = 0
        self.done = 0
        self.sent = 0
        self.failed = 0
        self.jobs: dict[int, RecoveredJob] = {}

    def expect(self, count: int) -> None:
        self.total += count
        self._report()

    def leased(self) -> None:
        self.leased_at = time.monotonic()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)

    def send(self, rows: Sequence[Row]) -> None:
        for batch in _chunks(rows, SQS_BATCH):
            if time.monotonic() - self.leased_at > self.lease_seconds / 3:
                self.store.call(
                    "dbops_jobs_outbox_renew",
                    {"p_lease_owner": self.owner, "p_lease_seconds": self.lease_seconds},
                )
                self.leased()
            outcome = self.queues.send_batch(
                self.queue_url,
                [_outgoing(r, fifo=self.fifo, group_by=self.group_by) for r in batch],
            )
            sent = {int(entry): message_id for entry, message_id in outcome.successful.items()}
            failed = {int(entry): error for entry, error in outcome.failed.items()}
            for row in batch:
                outbox_id = int(row["outbox_id"])
                if outbox_id not in sent and outbox_id not in failed:
                    failed[outbox_id] = "no result from SQS"
            self.checkpoint("after_send")
            marked = self.store.call(
                "dbops_jobs_outbox_mark",
                {
                    "p_lease_owner": self.owner,
                    "p_queue_url": self.queue_url,
                    "p_sent": [{"id": k, "message_id": v} for k, v in sent.items()],
                    "p_failed": [{"id": k, "error": v} for k, v in failed.items()],
                },
            )
            # Rows another run took over while this one stalled past its lease: that run
            # sends them too, so these messages may exist twice (never zero times).
            rejected = int(marked[0].get("rejected") or 0) if marked else 0
            self.possibly_duplicated += rejected
            for outbox_id, message_id in sent.items():
                job = self.jobs.get(outbox_id)
                if job is not None:
                    job.sent, job.message_id = True, message_id
            for outbox_id, error in failed.items():
                job = self.jobs.get(outbox_id)
                if job is not None:
                    job.error = error
            self.sent += len(sent)
            self.failed += len(failed)
            self.done += len(batch)
            self._report()
            _test_pause("after_batch")


def _finish_outbox(
    sender: _Sender, *, takeover: list[str], chunk_size: int
) -> tuple[list[RecoveredJob], int]:
    """Take and send every unsent row we may take; (jobs taken, rows skipped)."""
    taken: list[RecoveredJob] = []
    skipped = 0
    while True:
        rows = sender.store.call(
            "dbops_jobs_outbox_take",
            {
                "p_lease_owner": sender.owner,
                "p_limit": chunk_size,
                "p_lease_seconds": sender.lease_seconds,
                "p_takeover_owners": takeover,
            },
        )
        if not rows:
            return taken, skipped
        sender.leased()
        sendable = [r for r in rows if r.get("taken")]
        skipped += len(rows) - len(sendable)
        for row in sendable:
            job = RecoveredJob(
                job_id=row["job_id"],
                customer_id=row.get("customer_id"),
                action="requeued",
                attempt=row.get("attempt"),
                outbox_id=row["outbox_id"],
                resumed=True,
            )
            sender.jobs[int(row["outbox_id"])] = job
            taken.append(job)
        sender.expect(len(sendable))
        sender.send(sendable)


def _release(store: Store, owner: str) -> None:
    # On failure the lease expires on its own, and a later run on this host takes over.
    with contextlib.suppress(DbopsError):
        store.call("dbops_jobs_outbox_release", {"p_lease_owner": owner})


def _waiting(result: RecoverResult | RequeueResult) -> int:
    """Jobs this run re-queued (or took from the outbox) whose message is not sent yet."""
    return sum(1 for j in result.jobs if j.action == "requeued" and not j.sent)


def _incomplete(
    exc: DbopsError, sender: _Sender, result: RecoverResult | RequeueResult, command: str
) -> RecoveryIncomplete:
    waiting = _waiting(result)
    return RecoveryIncomplete(
        f"{exc.message}; {sender.sent} message(s) sent, {waiting} re-queued job(s) wait "
        f"unsent in the dbops outbox: re-run `{command}` to send them",
        exit_code=int(exc.exit_code),
        result=result,
    )


def _finalize(store: Store, sender: _Sender, result: RecoverResult | RequeueResult) -> None:
    result.sent = sender.sent
    result.failed_sends = sender.failed
    result.possibly_duplicated = sender.possibly_duplicated
    try:
        state, _dead = outbox_state(store=store)
        result.unsent_remaining = state.unsent
        result.leased_elsewhere = state.leased_elsewhere
    except DbopsError:
        pass


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
) -> RecoverResult:
    """Finish the outbox, then claim stale jobs and send their messages (see module doc).

    Claims at most `limit` jobs (the CLI passes the number it previewed and the operator
    confirmed, so a run never does more than it announced).
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
    # Before anything changes: is the queue there, are the credentials good?
    queue_url = queues.resolve_url(queue_url)
    queues.get_attributes(queue_url)
    owner = lease_owner()
    sender = _Sender(
        store=store,
        queues=queues,
        queue_url=queue_url,
        owner=owner,
        progress=progress,
        lease_seconds=lease_seconds,
        group_by=group_by,
        checkpoint=checkpoint,
    )
    _start_run(store, owner, operator, "jobs recover", lease_seconds)
    try:
        _test_pause("before_outbox")
        _state, dead = outbox_state(store=store)
        resumed, skipped = _finish_outbox(sender, takeover=dead, chunk_size=chunk_size)
        result.resumed, result.skipped_unsent = len(resumed), skipped
        result.jobs.extend(resumed)
        _test_pause("before_claim")
        remaining = limit
        while remaining > 0:
            want = min(chunk_size, remaining)
            rows = store.call(
                "dbops_jobs_claim_stale",
                {
                    "p_older_than_seconds": older_than_seconds,
                    "p_limit": want,
                    "p_max_recoveries": max_recoveries,
                    "p_operator": operator,
                    "p_lease_owner": owner,
                    "p_lease_seconds": lease_seconds,
                },
            )
            sender.leased()
            if not rows:
                break
            remaining -= len(rows)
            to_send = []
            for row in rows:
                job = RecoveredJob(
                    job_id=row["job_id"],
                    customer_id=row.get("customer_id"),
                    action=row["action"],
                    attempt=row.get("attempt"),
                    outbox_id=row["outbox_id"] if row["action"] == "requeued" else None,
                    last_activity_at=row.get("last_activity_at"),
                )
                result.jobs.append(job)
                if row["action"] == "requeued":
                    sender.jobs[int(row["outbox_id"])] = job
                    to_send.append(row)
            result.claimed += len(rows)
            result.requeued += len(to_send)
            result.abandoned += len(rows) - len(to_send)
            _test_pause("after_claim")
            sender.expect(len(to_send))
            sender.send(to_send)
            if len(rows) < want:
                break
        if remaining <= 0 and limit > 0:
            result.more_stale = bool(
                stale(store=store, older_than_seconds=older_than_seconds, limit=1)
            )
    except DbopsError as exc:
        result.sent, result.failed_sends = sender.sent, sender.failed
        result.possibly_duplicated = sender.possibly_duplicated
        _release(store, owner)
        if not _waiting(result):
            raise
        raise _incomplete(exc, sender, result, "dbops jobs recover") from None
    except BaseException:
        _release(store, owner)
        raise
    _release(store, owner)
    _finalize(store, sender, result)
    return result


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
        states = get_jobs(store=store, job_ids=parse_job_ids(job_ids or []))
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
    (`skipped_enqueued`) unless `force`.
    """
    ids = parse_job_ids(job_ids)
    result = RequeueResult(
        dry_run=False, orphans=orphans_older_than_seconds is not None, requested=len(ids)
    )
    queue_url = queues.resolve_url(queue_url)
    queues.get_attributes(queue_url)  # is the queue there, are the credentials good?
    owner = lease_owner()
    sender = _Sender(
        store=store,
        queues=queues,
        queue_url=queue_url,
        owner=owner,
        progress=progress,
        lease_seconds=lease_seconds,
        group_by=group_by,
        checkpoint=checkpoint,
    )
    _start_run(store, owner, operator, "jobs requeue", lease_seconds)
    try:
        _state, dead = outbox_state(store=store)
        resumed, skipped = _finish_outbox(sender, takeover=dead, chunk_size=DEFAULT_CHUNK)
        result.resumed, result.skipped_unsent = len(resumed), skipped
        result.jobs.extend(resumed)
        for chunk in _chunks(ids, DEFAULT_CHUNK):
            rows = store.call(
                "dbops_jobs_requeue",
                {
                    "p_job_ids": list(chunk),
                    "p_operator": operator,
                    "p_lease_owner": owner,
                    "p_lease_seconds": lease_seconds,
                    "p_kind": "orphan" if orphans_older_than_seconds is not None else "manual",
                    "p_orphan_older_than_seconds": orphans_older_than_seconds,
                    "p_expected": {str(k): v for k, v in (expected or {}).items()},
                    "p_force": force,
                },
            )
            sender.leased()
            to_send = []
            for row in rows:
                job = RecoveredJob(
                    job_id=row["job_id"],
                    customer_id=row.get("customer_id"),
                    action=row["action"],
                    attempt=row.get("attempt"),
                    outbox_id=row.get("outbox_id"),
                    error=row.get("reason"),
                )
                result.jobs.append(job)
                if row["action"] == "requeued":
                    sender.jobs[int(row["outbox_id"])] = job
                    to_send.append(row)
            result.requeued += len(to_send)
            result.skipped += len(rows) - len(to_send)
            for row in rows:
                reason = str(row.get("reason") or "")
                result.skipped_changed += reason.startswith("skipped_changed")
                result.skipped_enqueued += reason.startswith("skipped_enqueued")
            sender.expect(len(to_send))
            sender.send(to_send)
    except DbopsError as exc:
        result.sent, result.failed_sends = sender.sent, sender.failed
        result.possibly_duplicated = sender.possibly_duplicated
        _release(store, owner)
        if not _waiting(result):
            raise
        raise _incomplete(exc, sender, result, "dbops jobs recover") from None
    except BaseException:
        _release(store, owner)
        raise
    _release(store, owner)
    _finalize(store, sender, result)
    return result


# --------------------------------------------------------------------------- fail
def fail_preview(*, store: Store, job_ids: Sequence[str]) -> list[JobState]:
    return get_jobs(store=store, job_ids=parse_job_ids(job_ids))


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
    ids = parse_job_ids(job_ids)
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
