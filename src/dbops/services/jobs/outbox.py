"""The recovery outbox (see the package doc): run ids and leases, taking unsent rows,
sending them to SQS in batches and recording each batch, releasing what a run holds."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from dbops.errors import DbopsError
from dbops.ports import Checkpoint, OutgoingMessage, Queues, Row, Store
from dbops.services.jobs.inputs import _chunks
from dbops.services.jobs.models import (
    SQS_BATCH,
    GroupBy,
    OutboxResult,
    OutboxState,
    Progress,
    RecoveredJob,
    RecoveryIncomplete,
)


def lease_owner() -> str:
    """A random run id; its liveness is held in the database (dbops_job_runs)."""
    return f"run-{uuid.uuid4().hex}"


def session_lock(store: Store) -> bool:
    """Whether a run holds a session lock: only where the session is ours (not through a
    transaction pooler or PostgREST)."""
    return bool(getattr(store, "holds_sessions", False))


def _start_run(store: Store, owner: str, operator: str, command: str, lease: int) -> None:
    store.call(
        "dbops_jobs_run_start",
        {
            "p_run_id": owner,
            "p_operator": operator,
            "p_command": command,
            "p_lease_seconds": lease,
            "p_session_lock": session_lock(store),
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
    """The job message as the producers make it (architecture.md section 3) plus the re-queue
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
    """Sends outbox rows in batches of 10 and records each batch with one database call.

    With `defer_marks` (bulk retry) the batches' outcomes are kept until the caller
    records them: with its next claim (`take_marks` then `recorded`) or with `flush`."""

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
        defer_marks: bool = False,
    ) -> None:
        self.defer_marks = defer_marks
        self.unmarked_sent: dict[int, str] = {}
        self.unmarked_failed: dict[int, str] = {}
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

    def resume(self, row: Row) -> RecoveredJob:
        """The `RecoveredJob` of an outbox row an earlier run left unsent, registered for
        its send."""
        job = RecoveredJob(
            job_id=row["job_id"],
            customer_id=row.get("customer_id"),
            action="requeued",
            attempt=row.get("attempt"),
            outbox_id=row["outbox_id"],
            resumed=True,
        )
        self.jobs[int(row["outbox_id"])] = job
        return job

    def track(self, rows: Sequence[Row], into: list[RecoveredJob]) -> list[Row]:
        """One `RecoveredJob` per claim or re-queue row, appended to `into`; the re-queued
        ones are registered for their send. Returns the rows to send."""
        to_send: list[Row] = []
        for row in rows:
            requeued = row["action"] == "requeued"
            job = RecoveredJob(
                job_id=row["job_id"],
                customer_id=row.get("customer_id"),
                action=row["action"],
                attempt=row.get("attempt"),
                outbox_id=row.get("outbox_id") if requeued else None,
                last_activity_at=row.get("last_activity_at"),
                error=row.get("reason"),
            )
            into.append(job)
            if requeued:
                self.jobs[int(row["outbox_id"])] = job
                to_send.append(row)
        return to_send

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
            self.unmarked_sent.update(sent)
            self.unmarked_failed.update(failed)
            if not self.defer_marks:
                self._mark()
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
            if not self.defer_marks:
                self.checkpoint("after_batch")

    def take_marks(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The outcomes not recorded yet, as `dbops_jobs_outbox_mark` takes them; the
        caller records them and then calls `recorded`."""
        sent = [{"id": k, "message_id": v} for k, v in self.unmarked_sent.items()]
        failed = [{"id": k, "error": v} for k, v in self.unmarked_failed.items()]
        self.unmarked_sent, self.unmarked_failed = {}, {}
        return sent, failed

    def recorded(self, rejected: int) -> None:
        # Rows another run took over while this one stalled past its lease: that run
        # sends them too, so these messages may exist twice (never zero times).
        self.possibly_duplicated += rejected
        if self.defer_marks:
            self.checkpoint("after_batch")

    def _mark(self) -> None:
        sent, failed = self.take_marks()
        marked = self.store.call(
            "dbops_jobs_outbox_mark",
            {
                "p_lease_owner": self.owner,
                "p_queue_url": self.queue_url,
                "p_sent": sent,
                "p_failed": failed,
            },
        )
        self.recorded(int(marked[0].get("rejected") or 0) if marked else 0)

    def flush(self) -> None:
        """Record the outcomes kept so far (deferred marks), in one database call."""
        if self.unmarked_sent or self.unmarked_failed:
            self._mark()


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
        taken.extend(sender.resume(row) for row in sendable)
        sender.expect(len(sendable))
        sender.send(sendable)
        sender.flush()


def _release(store: Store, owner: str) -> None:
    # On failure the lease expires on its own, and a later run on this host takes over.
    with contextlib.suppress(DbopsError):
        store.call("dbops_jobs_outbox_release", {"p_lease_owner": owner})


def _waiting(result: OutboxResult) -> int:
    """Jobs this run re-queued (or took from the outbox) whose message is not sent yet."""
    return sum(1 for j in result.jobs if j.action == "requeued" and not j.sent)


def _incomplete(
    exc: DbopsError, sender: _Sender, result: OutboxResult, command: str
) -> RecoveryIncomplete:
    waiting = _waiting(result)
    return RecoveryIncomplete(
        f"{exc.message}; {sender.sent} message(s) sent, {waiting} re-queued job(s) wait "
        f"unsent in the dbops outbox: re-run `{command}` to send them",
        exit_code=int(exc.exit_code),
        result=result,
    )


def _finalize(
    store: Store, sender: _Sender, result: OutboxResult, state: OutboxState | None = None
) -> None:
    """Fill in the result's totals; the outbox state afterwards is `state` when the run's
    last call already read it, else read now (best effort)."""
    result.sent = sender.sent
    result.failed_sends = sender.failed
    result.possibly_duplicated = sender.possibly_duplicated
    if state is None:
        try:
            state, _dead = outbox_state(store=store)
        except DbopsError:
            return
    result.unsent_remaining = state.unsent
    result.leased_elsewhere = state.leased_elsewhere


def finish_run(sender: _Sender) -> OutboxState:
    """The last call of a run (one round trip): record the sends not recorded yet, release
    the run and read the outbox state afterwards (`dbops_jobs_outbox_finish`)."""
    sent, failed = sender.take_marks()
    rows = sender.store.call(
        "dbops_jobs_outbox_finish",
        {
            "p_lease_owner": sender.owner,
            "p_queue_url": sender.queue_url,
            "p_sent": sent,
            "p_failed": failed,
        },
    )
    row = rows[0] if rows else {}
    if sent or failed:
        sender.recorded(int(row.get("rejected") or 0))
    return OutboxState(
        unsent=int(row.get("unsent") or 0), leased_elsewhere=int(row.get("leased_elsewhere") or 0)
    )


def open_sender(
    *,
    store: Store,
    queues: Queues,
    queue_url: str,
    progress: Progress | None,
    lease_seconds: int,
    group_by: GroupBy,
    checkpoint: Checkpoint | None,
    defer_marks: bool = False,
) -> _Sender:
    """A sender for a new run (new run id); first checks, before anything changes, that
    the queue is there and the credentials are good."""
    queue_url = queues.resolve_url(queue_url)
    queues.get_attributes(queue_url)
    return _Sender(
        store=store,
        queues=queues,
        queue_url=queue_url,
        owner=lease_owner(),
        progress=progress,
        lease_seconds=lease_seconds,
        group_by=group_by,
        checkpoint=checkpoint,
        defer_marks=defer_marks,
    )


def resume_outbox(sender: _Sender, result: OutboxResult, *, chunk_size: int) -> None:
    """Step 1 of a run: take and send what earlier runs left unsent."""
    _state, dead = outbox_state(store=sender.store)
    resumed, skipped = _finish_outbox(sender, takeover=dead, chunk_size=chunk_size)
    result.resumed, result.skipped_unsent = len(resumed), skipped
    result.jobs.extend(resumed)


def run_outbox(
    sender: _Sender,
    result: OutboxResult,
    *,
    operator: str,
    command: str,
    work: Callable[[], OutboxState | None],
    starts_run: bool = False,
) -> None:
    """Register the run, do `work`, release what the run holds whatever happens, and fill
    in the result. A failure once re-queued jobs wait unsent raises RecoveryIncomplete
    (carrying the result): a re-run of `dbops jobs recover` sends them.

    `starts_run`: `work` registers the run itself with its first call (bulk retry). When
    `work` returns the outbox state, it has released the run itself (`finish_run`)."""
    store, owner = sender.store, sender.owner
    if not starts_run:
        _start_run(store, owner, operator, command, sender.lease_seconds)
    try:
        state = work()
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
    if state is None:
        _release(store, owner)
    _finalize(store, sender, result, state)
