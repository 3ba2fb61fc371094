"""DLQ redrive: move dead-lettered messages back to a work queue without ever losing one.

Two methods:

- ``copy`` (default): receive from the DLQ in batches of 10 under a long visibility lease,
  send the matching messages to the target (body and message attributes preserved, FIFO
  group id kept with a fresh deduplication id), then delete from the DLQ only the entries
  whose send succeeded. Messages that do not match (or could not be sent) stay invisible
  until the scan ends and are then released (visibility 0), so nothing is scanned twice
  and nothing is lost: a crash at any point leaves every message in the DLQ, the target,
  or both (a duplicate, never a loss).
- ``native``: AWS's StartMessageMoveTask, with progress from ListMessageMoveTasks.

Services never print: progress goes through a callback, test hooks through ``checkpoint``.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from dbops.errors import DbopsError, NotFoundError, RemoteError, UsageError
from dbops.ports import BatchResult, OutgoingMessage, QueueMessage, Queues, Store
from dbops.services.messages import MessageFilter, ParsedMessage, parse
from dbops.services.redrive_journal import (
    JournalPending,
    RedriveJournal,
    SettleReport,
    open_journal,
)
from dbops.services.redrive_journal import pending as journal_pending

LEASE_SECONDS = 300  # visibility lease on scanned messages: far longer than a batch cycle
MIN_LEASE_SECONDS = 2
RECEIVE_WAIT_SECONDS = 1  # every receive is a long poll (all SQS servers are queried)
SETTLE_SECONDS = 20.0  # how long to keep polling while the DLQ still reports visible messages
DEFAULT_MAX_MESSAGE_SIZE = 262144  # older queues; current default is 1 MiB
MAX_ATTRIBUTES = 10
REDRIVE_COUNT_ATTRIBUTE = "dbops-redrive-count"
COMPLETED_STATUSES = frozenset({"completed", "complete"})
FAILURES_KEPT = 500
RECENT_IDS_KEPT = 1000  # recent message ids, to spot SQS redeliveries (bounded memory)
SAMPLE_SIZE = 5
CONSECUTIVE_SEND_FAILURES_FATAL = 3
NATIVE_MAX_RATE = 500
NATIVE_DONE = frozenset({"COMPLETED", "CANCELLED", "FAILED"})
TRACE_HEADER = "AWSTraceHeader"  # the one message system attribute SQS lets a sender set

Method = Literal["copy", "native"]
Checkpoint = Callable[[str], None]


# --------------------------------------------------------------------------- models
class RedriveFailure(BaseModel):
    """One message that was not moved (it stays in the DLQ unless stage is `delete`)."""

    message_id: str
    job_id: str | None = None
    stage: Literal["size", "send", "delete"]
    reason: str


class SampleRow(BaseModel):
    message_id: str
    job_id: str | None = None
    customer_id: str | None = None
    reason: str | None = None
    age_seconds: float | None = None
    size: int


class CallStats(BaseModel):
    """SQS calls made and messages per call (efficiency, for the benchmark and the log)."""

    receive_calls: int = 0
    received: int = 0
    send_calls: int = 0
    sent: int = 0
    delete_calls: int = 0
    deleted: int = 0
    visibility_calls: int = 0

    @property
    def per_receive(self) -> float:
        return self.received / self.receive_calls if self.receive_calls else 0.0

    @property
    def per_send(self) -> float:
        return self.sent / self.send_calls if self.send_calls else 0.0

    @property
    def per_delete(self) -> float:
        return self.deleted / self.delete_calls if self.delete_calls else 0.0


class CanaryReport(BaseModel):
    requested: int
    moved: int
    wait_seconds: int
    came_back: list[str] = Field(default_factory=list)  # message ids found back in the DLQ
    came_back_jobs: list[str] = Field(default_factory=list)
    passed: bool


class RedriveResult(BaseModel):
    """`dbops dlq redrive -o json`.

    Counts add up: every matching message is `moved`, `failed` (listed in `failures`; it
    stays in the DLQ unless its stage is `delete`) or `not_sent` (the run stopped before
    its turn: Ctrl-C while it waited for `--rate`, or a fatal error); it stays in the DLQ.
    `settled` says what this run first settled from an earlier run that did not finish
    (see `SettleReport`), `system_attributes_dropped` how many AWSTraceHeader values the
    target refused (those messages were sent without it).
    """

    method: Method
    dry_run: bool
    source: str
    target: str
    scanned: int = 0
    matched: int = 0
    moved: int = 0
    failed: int = 0
    released: int = 0
    skipped_completed: int = 0
    duplicates_possible: int = 0
    redelivered: int = 0  # copies SQS delivered again during the run (not sent twice)
    not_sent: int = 0  # matched, but the run stopped before sending them (still in the DLQ)
    system_attributes_dropped: int = 0
    settled: SettleReport | None = None
    not_found: list[str] = Field(default_factory=list)
    failures: list[RedriveFailure] = Field(default_factory=list)
    failures_truncated: bool = False
    sample: list[SampleRow] = Field(default_factory=list)
    stopped: str = "drained"
    remaining_visible: int | None = None
    interrupted: bool = False
    canary: CanaryReport | None = None
    task_handle: str | None = None
    task_status: str | None = None
    calls: CallStats = Field(default_factory=CallStats)
    duration_seconds: float = 0.0


class RedrivePreview(BaseModel):
    """What a redrive would do, shown before confirmation."""

    method: Method
    source: str
    target: str
    visible: int
    in_flight: int
    target_fifo: bool
    max_message_size: int
    filtered: bool
    scan: RedriveResult | None = None
    journal: JournalPending | None = None  # an earlier run to settle first


class MoveTask(BaseModel):
    """One row of `dbops dlq redrive-status`."""

    task_handle: str | None = None
    status: str
    source_arn: str | None = None
    destination_arn: str | None = None
    rate: int | None = None
    moved: int | None = None
    to_move: int | None = None
    failure_reason: str | None = None
    started_at: int | None = None


class CancelResult(BaseModel):
    task_handle: str
    moved_before_cancel: int
    dry_run: bool = False


@dataclass
class RedriveProgress:
    """Snapshot passed to the progress callback."""

    scanned: int
    matched: int
    moved: int
    failed: int
    total: int | None


ProgressFn = Callable[[RedriveProgress], None]


# --------------------------------------------------------------------------- helpers
def queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


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


def attribute_size(attributes: Mapping[str, Any]) -> int:
    """Bytes SQS counts for message attributes: name + data type + value."""
    size = 0
    for name, value in attributes.items():
        size += len(name.encode())
        if not isinstance(value, Mapping):
            continue
        size += len(str(value.get("DataType", "")).encode())
        if value.get("StringValue") is not None:
            size += len(str(value["StringValue"]).encode())
        binary = value.get("BinaryValue")
        if binary is not None:
            size += len(binary if isinstance(binary, bytes | bytearray) else str(binary).encode())
    return size


def message_size(message: OutgoingMessage) -> int:
    return len(message.body.encode()) + attribute_size(message.message_attributes)


def clean_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Message attributes as received -> as sendable (drop empty list fields)."""
    cleaned: dict[str, Any] = {}
    for name, value in attributes.items():
        if not isinstance(value, Mapping) or "DataType" not in value:
            continue
        item: dict[str, Any] = {"DataType": value["DataType"]}
        if value.get("StringValue") is not None:
            item["StringValue"] = value["StringValue"]
        if value.get("BinaryValue") is not None:
            item["BinaryValue"] = value["BinaryValue"]
        if len(item) > 1:
            cleaned[name] = item
    return cleaned


def stamp_redrive_count(attributes: dict[str, Any]) -> bool:
    """Increment `dbops-redrive-count` in place when the 10-attribute limit allows."""
    current = attributes.get(REDRIVE_COUNT_ATTRIBUTE)
    if current is None and len(attributes) >= MAX_ATTRIBUTES:
        return False
    count = 0
    if isinstance(current, Mapping):
        try:
            count = int(float(str(current.get("StringValue", "0"))))
        except ValueError:
            count = 0
    attributes[REDRIVE_COUNT_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(count + 1)}
    return True


def split_by_size(
    entries: Sequence[OutgoingMessage], limit: int
) -> tuple[list[list[OutgoingMessage]], list[tuple[OutgoingMessage, int]]]:
    """Send batches (at most 10 entries, total payload <= limit) plus the entries too
    large to send at all, each with its size. Order is kept."""
    batches: list[list[OutgoingMessage]] = []
    oversized: list[tuple[OutgoingMessage, int]] = []
    current: list[OutgoingMessage] = []
    current_size = 0
    for entry in entries:
        size = message_size(entry)
        if size > limit:
            oversized.append((entry, size))
            continue
        if current and (len(current) >= 10 or current_size + size > limit):
            batches.append(current)
            current, current_size = [], 0
        current.append(entry)
        current_size += size
    if current:
        batches.append(current)
    return batches, oversized


def completed_job_ids(store: Store, job_ids: Iterable[str]) -> set[str]:
    """The subset of `job_ids` whose job is completed in the database (via the shared
    `dbops_jobs_status_lookup`; ids that are not UUIDs simply never match)."""
    from dbops.services.dlq import job_statuses

    statuses = job_statuses(store=store, job_ids=list(job_ids))
    return {job for job, status in statuses.items() if status.lower() in COMPLETED_STATUSES}


class TokenBucket:
    """Shared rate limit in messages per second (debt-based: average rate is exact)."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise UsageError("--rate must be greater than zero")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, min(rate, 10.0))
        self.tokens = self.capacity
        self._clock = clock
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self, n: int) -> float:
        """Take `n` tokens now; return how long the caller must wait before using them."""
        with self._lock:
            now = self._clock()
            self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.rate)
            self._updated = now
            self.tokens -= n
            return max(0.0, -self.tokens / self.rate)


# --------------------------------------------------------------------------- copy engine
@dataclass
class _Held:
    receipt_handle: str
    since: float


# (message id, job id) pairs collected for the canary.
Sink = list[tuple[str, str | None]]


@dataclass
class CopyOptions:
    source_url: str
    target_url: str
    accept: Callable[[ParsedMessage], bool]
    dry_run: bool = False
    max_messages: int | None = None
    manifest: set[str] | None = None
    rate: float | None = None
    workers: int = 1
    skip_completed: Callable[[list[str]], set[str]] | None = None
    lease_seconds: int = LEASE_SECONDS
    wait_seconds: int = RECEIVE_WAIT_SECONDS
    settle_seconds: float = SETTLE_SECONDS
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    target_fifo: bool = False
    total_hint: int | None = None
    sent_sink: Sink | None = None  # ids the target gave to moved messages
    matched_sink: Sink | None = None  # ids of matching messages (scans)
    stop_event: threading.Event = field(default_factory=threading.Event)
    journal: RedriveJournal | None = None


class _CopyRun:
    def __init__(
        self,
        queues: Queues,
        options: CopyOptions,
        *,
        progress: ProgressFn | None,
        checkpoint: Checkpoint | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.q = queues
        self.o = options
        self.progress = progress
        self.checkpoint = checkpoint or (lambda _point: None)
        self.clock = clock
        self.lock = threading.Lock()
        self.stop = threading.Event()  # this run's workers stop (max, drained, fatal, ...)
        # Only an interruption (Ctrl-C, stop_event) abandons a batch already received: a
        # worker that another one told to stop (drained, max) still sends what it matched.
        self.abort = threading.Event()
        self.journal = options.journal
        self.system_attributes_ok = True
        self.cancel = options.stop_event  # set from outside: stop after the batch in flight
        self.bucket = TokenBucket(options.rate) if options.rate else None
        self.remaining = options.max_messages
        self.outstanding = 0  # budget reserved by receives in flight
        self.pending = set(options.manifest) if options.manifest is not None else None
        self.held: dict[str, _Held] = {}  # receipt handle -> lease start
        self.recent: OrderedDict[str, bool] = OrderedDict()  # message id -> moved
        self.result = RedriveResult(
            method="copy",
            dry_run=options.dry_run,
            source=options.source_url,
            target=options.target_url,
        )
        self.next_extend: float | None = None
        self.fatal: BaseException | None = None
        self.stop_reason: str | None = None
        self.empty_since: float | None = None
        self.send_failure_streak = 0
        self.lookup_lock = threading.Lock()

    # -- bookkeeping -----------------------------------------------------------------
    def _reserve(self) -> int:
        """Up to 10 of the --max budget for one receive; 0 when the budget is spent, -1
        when it is all reserved by other workers (which may hand some back)."""
        with self.lock:
            if self.remaining is None:
                return 10
            take = min(10, self.remaining)
            if take == 0:
                return -1 if self.outstanding else 0
            self.remaining -= take
            self.outstanding += take
            return take

    def _settle(self, reserved: int, used: int) -> None:
        """A receive's reservation is over: `used` of it matched, the rest goes back."""
        with self.lock:
            if self.remaining is not None:
                self.outstanding -= reserved
                self.remaining += reserved - used

    def _set_stop(self, reason: str) -> None:
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self.stop.set()

    def _interrupt(self) -> None:
        with self.lock:
            self.stop_reason = "interrupted"
        self.abort.set()
        self.stop.set()

    def _not_sent(self, count: int) -> None:
        with self.lock:
            self.result.not_sent += count

    def _fail(
        self, message: ParsedMessage, stage: Literal["size", "send", "delete"], why: str
    ) -> None:
        with self.lock:
            self.result.failed += 1
            if len(self.result.failures) < FAILURES_KEPT:
                self.result.failures.append(
                    RedriveFailure(
                        message_id=message.message_id,
                        job_id=message.job_id,
                        stage=stage,
                        reason=why,
                    )
                )
            else:
                self.result.failures_truncated = True

    def _hold(self, messages: Iterable[ParsedMessage | QueueMessage], since: float) -> None:
        with self.lock:
            for m in messages:
                self.held[m.receipt_handle] = _Held(m.receipt_handle, since)
                if self.next_extend is None:
                    self.next_extend = since + self.o.lease_seconds / 2

    def _notify(self) -> None:
        if self.progress is None:
            return
        with self.lock:
            snap = RedriveProgress(
                scanned=self.result.scanned,
                matched=self.result.matched,
                moved=self.result.moved,
                failed=self.result.failed,
                total=self.o.total_hint,
            )
        self.progress(snap)

    # -- SQS calls with accounting -----------------------------------------------------
    def _receive(self, n: int) -> list[QueueMessage]:
        got = self.q.receive(
            self.o.source_url,
            max_messages=n,
            visibility_timeout=self.o.lease_seconds,
            wait_seconds=self.o.wait_seconds,
        )
        with self.lock:
            self.result.calls.receive_calls += 1
            self.result.calls.received += len(got)
        if self.journal is not None and got:
            try:
                self.journal.received((m.message_id, m.receipt_handle) for m in got)
            except BaseException:
                self._hold(got, self.clock())  # released at the end
                raise
        return got

    def _send(
        self, batch: Sequence[OutgoingMessage], record: Callable[[BatchResult], None]
    ) -> BatchResult:
        """Per-entry outcome. A batch-level rejection (e.g. one entry over the target's
        size limit on implementations that refuse the whole call) is retried entry by
        entry so that one bad message cannot hold back the rest. An entry refused for its
        AWSTraceHeader is sent again without it (counted in `system_attributes_dropped`).
        `record` sees every call's successes as soon as it returns (the journal)."""
        if not self.system_attributes_ok and any(e.system_attributes for e in batch):
            batch = self._strip_system_attributes(batch)
        try:
            result = self.q.send_batch(self.o.target_url, batch)
        except NotFoundError:
            raise
        except RemoteError as exc:
            with self.lock:
                self.result.calls.send_calls += 1
            if _refuses_system_attributes(exc.message) and any(e.system_attributes for e in batch):
                self.system_attributes_ok = False  # the endpoint does not take them at all
                return self._send(batch, record)
            if len(batch) == 1:
                return BatchResult(failed={batch[0].id: exc.one_line()})
            merged = BatchResult()
            for entry in batch:
                single = self._send([entry], record)
                merged.successful.update(single.successful)
                merged.failed.update(single.failed)
            return merged
        with self.lock:
            self.result.calls.send_calls += 1
            self.result.calls.sent += len(result.successful)
        record(result)
        refused = [
            e
            for e in batch
            if e.system_attributes
            and e.id in result.failed
            and _refuses_system_attributes(result.failed[e.id])
        ]
        if refused:
            retry = self._send(self._strip_system_attributes(refused), record)
            for e in refused:
                result.failed.pop(e.id, None)
            result.successful.update(retry.successful)
            result.failed.update(retry.failed)
        return result

    def _strip_system_attributes(self, batch: Sequence[OutgoingMessage]) -> list[OutgoingMessage]:
        stripped = [e.model_copy(update={"system_attributes": {}}) for e in batch]
        with self.lock:
            self.result.system_attributes_dropped += sum(1 for e in batch if e.system_attributes)
        return stripped

    def _delete(self, handles: Mapping[str, str]) -> BatchResult:
        result = self.q.delete_batch(self.o.source_url, handles)
        with self.lock:
            self.result.calls.delete_calls += 1
            self.result.calls.deleted += len(result.successful)
        if self.journal is not None:
            self.journal.finished(handles[eid] for eid in result.successful if eid in handles)
        return result

    def _change_visibility(self, handles: Mapping[str, str], timeout: int) -> BatchResult:
        result = self.q.change_visibility_batch(self.o.source_url, handles, timeout)
        with self.lock:
            self.result.calls.visibility_calls += 1
        return result

    # -- lease upkeep -----------------------------------------------------------------
    def _extend_held(self) -> None:
        """Keep held messages invisible while the scan goes on (the scan may outlast a lease)."""
        now = self.clock()
        half = self.o.lease_seconds / 2
        with self.lock:
            if self.next_extend is None or now < self.next_extend:
                return
            due = {mid: h for mid, h in self.held.items() if now - h.since >= half}
            for h in due.values():
                h.since = now
            oldest = min((h.since for h in self.held.values()), default=None)
            self.next_extend = oldest + half if oldest is not None else None
        items = list(due.items())
        for start in range(0, len(items), 10):
            chunk = {
                str(i): h.receipt_handle for i, (_mid, h) in enumerate(items[start : start + 10])
            }
            # On failure they become visible and are scanned again: a repeat, never a loss.
            with contextlib.suppress(DbopsError):
                self._change_visibility(chunk, self.o.lease_seconds)

    def _extend_batch(self, messages: Sequence[ParsedMessage], seconds: int) -> None:
        handles = {str(i): m.receipt_handle for i, m in enumerate(messages)}
        if handles:
            with contextlib.suppress(DbopsError):
                self._change_visibility(handles, seconds)

    # -- main loop -------------------------------------------------------------------
    def _drained(self) -> bool:
        attrs = self.q.get_attributes(self.o.source_url)
        visible = int(attrs.get("ApproximateNumberOfMessages", "0") or 0)
        with self.lock:
            self.result.remaining_visible = visible
        if visible == 0:
            self._set_stop("drained")
            return True
        now = self.clock()
        with self.lock:
            if self.empty_since is None:
                self.empty_since = now
            waited = now - self.empty_since
        if waited >= self.o.settle_seconds:
            self._set_stop("unsettled")
            return True
        return False

    def worker(self) -> None:
        try:
            while not self.stop.is_set():
                if self.cancel.is_set():
                    self._interrupt()
                    break
                want = self._reserve()
                if want == 0:
                    self._set_stop("max")
                    break
                if want < 0:  # another worker holds the rest of the budget
                    self.stop.wait(0.02)
                    continue
                self._extend_held()
                try:
                    messages = self._receive(want)
                except BaseException:
                    self._settle(want, 0)
                    raise
                if not messages:
                    self._settle(want, 0)
                    if self._drained():
                        break
                    continue
                with self.lock:
                    self.empty_since = None
                self.checkpoint("after_receive")
                try:
                    self._handle(messages, want)
                except BaseException:
                    # Release whatever this batch still holds (moved ones fail harmlessly).
                    self._hold(messages, self.clock())
                    raise
                self._notify()
                if self.pending is not None:
                    with self.lock:
                        done = not self.pending
                    if done:
                        self._set_stop("manifest")
        except BaseException as exc:  # recorded; the main thread cleans up and re-raises
            with self.lock:
                if self.fatal is None:
                    self.fatal = exc
            self.stop.set()

    def _fresh(self, parsed: Sequence[ParsedMessage], received_at: float) -> list[ParsedMessage]:
        """Drop copies of messages this run already has (SQS delivers at least once, and a
        lease can run out): a copy of a moved message is deleted, any other copy is held.
        A message an earlier, killed run sent (its handle had expired when this run settled
        the journal) is deleted as well, never sent twice."""
        fresh: list[ParsedMessage] = []
        moved_copies: list[ParsedMessage] = []
        other_copies: list[ParsedMessage] = []
        earlier: list[ParsedMessage] = []
        with self.lock:
            for p in parsed:
                state = self.recent.get(p.message_id)
                if (
                    state is None
                    and self.journal is not None
                    and self.journal.sent_earlier(p.message_id)
                ):
                    earlier.append(p)
                    continue
                if state is None:
                    self.recent[p.message_id] = False
                    fresh.append(p)
                else:
                    (moved_copies if state else other_copies).append(p)
            while len(self.recent) > RECENT_IDS_KEPT:
                self.recent.popitem(last=False)
            self.result.redelivered += len(moved_copies) + len(other_copies)
        self._hold(other_copies, received_at)
        if self.o.dry_run:  # a scan deletes nothing
            self._hold(moved_copies + earlier, received_at)
            return fresh
        copies = moved_copies + earlier
        if copies:
            # Already in the target: this copy must not be sent again.
            handles = {str(i): m.receipt_handle for i, m in enumerate(copies)}
            try:
                deleted = self._delete(handles)
            except DbopsError:
                deleted = BatchResult()
            for i, m in enumerate(copies):
                if str(i) not in deleted.successful:
                    self._hold([m], received_at)  # stays in the DLQ, still never resent
                elif i >= len(moved_copies) and self.journal is not None:
                    self.journal.copy_deleted(m.message_id)
        return fresh

    def _handle(self, messages: Sequence[QueueMessage], reserved: int) -> None:
        received_at = self.clock()
        parsed = self._fresh([parse(m) for m in messages], received_at)
        matching: list[ParsedMessage] = []
        others: list[ParsedMessage] = []
        for p in parsed:
            (matching if self.o.accept(p) else others).append(p)
        skipped: list[ParsedMessage] = []
        if matching and self.o.skip_completed is not None:
            with self.lookup_lock:
                done = self.o.skip_completed([m.job_id for m in matching if m.job_id])
            if done:
                skipped = [m for m in matching if m.job_id in done]
                matching = [m for m in matching if m.job_id not in done]
        self._settle(reserved, len(matching))
        with self.lock:
            self.result.scanned += len(parsed)
            self.result.matched += len(matching)
            self.result.skipped_completed += len(skipped)
            if self.pending is not None:
                for m in matching:
                    self.pending.discard(m.message_id)
            for m in matching:
                if len(self.result.sample) < SAMPLE_SIZE:
                    self.result.sample.append(_sample(m))
                if self.o.matched_sink is not None:
                    self.o.matched_sink.append((m.message_id, m.job_id))
        self._hold(others + skipped, received_at)
        if not matching:
            return
        if self.o.dry_run:
            self._hold(matching, received_at)
            return
        if self.bucket is not None:
            wait = self.bucket.reserve(len(matching))
            if wait > self.o.lease_seconds / 3:
                self._extend_batch(matching, int(wait) + self.o.lease_seconds)
                received_at = self.clock()
            # Wait on `abort`, not `stop`: another worker stopping the run (drained, max)
            # must not make this one drop the batch it already matched (it would be left
            # in the DLQ while the summary said "drained").
            if wait > 0 and self.abort.wait(wait):
                # Interrupted while waiting for the rate limit: nothing of this batch was sent.
                self._hold(matching, received_at)
                self._not_sent(len(matching))
                return
        self._move(matching, received_at)

    def _move(self, matching: Sequence[ParsedMessage], received_at: float) -> None:
        by_entry: dict[str, ParsedMessage] = {}
        entries: list[OutgoingMessage] = []
        limit = self.o.max_message_size
        for index, m in enumerate(matching):
            entry_id = str(index)
            by_entry[entry_id] = m
            entries.append(self._outgoing(entry_id, m, limit))
        batches, oversized = split_by_size(entries, limit)
        for entry, size in oversized:
            m = by_entry[entry.id]
            self._fail(
                m,
                "size",
                f"message is {size} bytes; {queue_name(self.o.target_url)} accepts at most "
                f"{limit} (MaximumMessageSize)",
            )
            self._hold([m], received_at)
        journal = self.journal
        journal_error: list[DbopsError] = []

        def record(result: BatchResult) -> None:
            if journal is None:
                return
            try:
                journal.sent(
                    (by_entry[eid].message_id, by_entry[eid].receipt_handle)
                    for eid in result.successful
                    if eid in by_entry
                )
            except DbopsError as exc:  # sent all the same: delete them, then stop
                journal_error.append(exc)

        for number, batch in enumerate(batches):
            try:
                result = self._send(batch, record)
            except BaseException:
                for rest in batches[number:]:
                    self._hold([by_entry[e.id] for e in rest], received_at)
                    self._not_sent(len(rest))
                raise
            self.checkpoint("after_send")
            sent_ok = {eid: mid for eid, mid in result.successful.items() if eid in by_entry}
            for eid, why in result.failed.items():
                if eid in by_entry:
                    self._fail(by_entry[eid], "send", why)
                    self._hold([by_entry[eid]], received_at)
            unanswered = [
                e.id for e in batch if e.id not in result.successful and e.id not in result.failed
            ]
            for eid in unanswered:  # no per-entry answer: treat as not sent, keep it
                self._fail(by_entry[eid], "send", "no result for this entry")
                self._hold([by_entry[eid]], received_at)
            with self.lock:
                self.send_failure_streak = 0 if sent_ok else self.send_failure_streak + 1
                streak = self.send_failure_streak
            if sent_ok:
                self._delete_sent(sent_ok, by_entry)
            if journal_error:
                for rest in batches[number + 1 :]:
                    self._hold([by_entry[e.id] for e in rest], received_at)
                    self._not_sent(len(rest))
                raise journal_error[0]
            if number == 0 and len(batches) > 1:
                self.checkpoint("mid_batch")
            if streak >= CONSECUTIVE_SEND_FAILURES_FATAL:
                for rest in batches[number + 1 :]:
                    self._hold([by_entry[e.id] for e in rest], received_at)
                    self._not_sent(len(rest))
                reasons = sorted(set(result.failed.values()))[:1]
                raise RemoteError(
                    f"sending to {queue_name(self.o.target_url)} keeps failing"
                    + (f" ({reasons[0]})" if reasons else ""),
                    hint="nothing was lost: unsent messages stay in the DLQ",
                )

    def _delete_sent(
        self, sent_ok: Mapping[str, str], by_entry: Mapping[str, ParsedMessage]
    ) -> None:
        handles = {eid: by_entry[eid].receipt_handle for eid in sent_ok}
        try:
            deleted = self._delete(handles)
        except DbopsError as exc:
            deleted = BatchResult(failed={eid: exc.one_line() for eid in handles})
        self.checkpoint("after_delete")
        with self.lock:
            self.result.moved += len(deleted.successful)
            for eid in deleted.successful:
                if by_entry[eid].message_id in self.recent:
                    self.recent[by_entry[eid].message_id] = True
            if self.o.sent_sink is not None:
                for eid in deleted.successful:
                    self.o.sent_sink.append((sent_ok[eid], by_entry[eid].job_id))
        for eid, why in deleted.failed.items():
            # Sent but still in the DLQ: a duplicate is possible, nothing is lost.
            self._fail(by_entry[eid], "delete", f"sent, but delete from the DLQ failed: {why}")
            with self.lock:
                self.result.duplicates_possible += 1
                if self.o.sent_sink is not None:
                    self.o.sent_sink.append((sent_ok[eid], by_entry[eid].job_id))

    def _outgoing(self, entry_id: str, m: ParsedMessage, limit: int) -> OutgoingMessage:
        attributes = clean_attributes(m.message_attributes)
        unstamped = dict(attributes)
        stamp_redrive_count(attributes)
        entry = OutgoingMessage(id=entry_id, body=m.body, message_attributes=attributes)
        trace = m.attributes.get(TRACE_HEADER)
        if trace:
            entry.system_attributes = {TRACE_HEADER: trace}
        if message_size(entry) > limit:
            entry.message_attributes = unstamped  # fits without the stamp? keep it movable
        if self.o.target_fifo:
            entry.message_group_id = m.attributes.get("MessageGroupId") or m.job_id or m.message_id
            entry.message_deduplication_id = uuid.uuid4().hex
        return entry

    # -- driver ------------------------------------------------------------------------
    def run(self) -> RedriveResult:
        started = time.monotonic()
        finished = [threading.Event() for _ in range(max(1, self.o.workers))]

        def work(done: threading.Event) -> None:
            try:
                self.worker()
            finally:
                done.set()

        for i, done in enumerate(finished):
            threading.Thread(
                target=work, args=(done,), name=f"dbops-redrive-{i}", daemon=True
            ).start()
        interrupted = False

        def poll() -> None:
            if self.cancel.is_set() and not self.abort.is_set():
                self._interrupt()

        try:
            _wait_all(finished, poll)
        except KeyboardInterrupt:
            # Stop after the batch in flight: workers finish sending and deleting it.
            interrupted = True
            self._interrupt()
            _wait_all(finished, poll)
        interrupted = interrupted or self.stop_reason == "interrupted"
        self._release_all()
        self.result.interrupted = interrupted
        self.result.stopped = self.stop_reason or ("interrupted" if interrupted else "drained")
        if self.pending:
            self.result.not_found = sorted(self.pending)
        self.result.duration_seconds = round(time.monotonic() - started, 3)
        if self.fatal is not None:
            fatal = self.fatal
            if isinstance(fatal, DbopsError):
                fatal.partial_result = self.result  # type: ignore[attr-defined]
            raise fatal
        return self.result

    def _release_all(self) -> None:
        """Make every held message visible again (visibility 0)."""
        with self.lock:
            items = list(self.held.items())
            self.held.clear()
        chunks = [
            {str(i): h.receipt_handle for i, (_mid, h) in enumerate(items[s : s + 10])}
            for s in range(0, len(items), 10)
        ]

        def release(chunk: dict[str, str]) -> int:
            try:
                result = self._change_visibility(chunk, 0)
            except DbopsError:
                return 0  # they become visible when the lease ends (a re-run releases them)
            if self.journal is not None:
                # Released, or no longer ours to release (deleted, lease over): settled.
                answered = set(result.successful) | set(result.failed)
                self.journal.finished(
                    (h for eid, h in chunk.items() if eid in answered), sent_too=False
                )
            return len(result.successful)

        if not chunks:
            return
        workers = max(1, min(self.o.workers, len(chunks)))
        if workers == 1:
            released = sum(release(c) for c in chunks)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers) as pool:
                released = sum(pool.map(release, chunks))
        with self.lock:
            self.result.released += released


def _refuses_system_attributes(reason: str) -> bool:
    """A send error about the message system attributes (AWSTraceHeader) of an entry."""
    text = reason.lower()
    return "messagesystemattribute" in text.replace(" ", "") or "awstraceheader" in text


def _wait_all(finished: Sequence[threading.Event], poll: Callable[[], None]) -> None:
    """Wait for every worker. Not Thread.join(): on Python 3.11 a KeyboardInterrupt inside
    join() can mark a still-running thread as stopped, and we must wait for its batch."""
    for done in finished:
        while not done.wait(0.1):
            poll()


def _sample(m: ParsedMessage) -> SampleRow:
    return SampleRow(
        message_id=m.message_id,
        job_id=m.job_id,
        customer_id=m.customer_id,
        reason=m.reason,
        age_seconds=round(m.age_seconds, 1) if m.age_seconds is not None else None,
        size=m.size,
    )


# --------------------------------------------------------------------------- use cases
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


def copy_redrive(
    *,
    queues: Queues,
    dlq_url: str,
    target_url: str,
    message_filter: MessageFilter | None = None,
    dry_run: bool = False,
    max_messages: int | None = None,
    rate: float | None = None,
    workers: int = 1,
    store: Store | None = None,
    skip_completed_jobs: bool = False,
    canary: int | None = None,
    canary_wait_seconds: int = 60,
    lease_seconds: int = LEASE_SECONDS,
    wait_seconds: int = RECEIVE_WAIT_SECONDS,
    settle_seconds: float = SETTLE_SECONDS,
    max_message_size: int | None = None,
    progress: ProgressFn | None = None,
    checkpoint: Checkpoint | None = None,
    stop_event: threading.Event | None = None,
    journal_dir: Path | None = None,
) -> RedriveResult:
    """Redrive by copy: send, then delete exactly the entries that were sent.

    With `canary`, move that many first, wait `canary_wait_seconds`, and stop
    (`result.canary.passed` false, `stopped == "canary"`) if any came back to the DLQ.

    With `journal_dir` (not for a dry run), the run keeps a journal of the receipt handles
    it holds and of what it sent but did not delete yet, and first settles the journal an
    earlier run of the same DLQ left behind (see `dbops.services.redrive_journal`):
    what that run sent is deleted from the DLQ (not sent again), what it held is released
    at once, and `result.settled` says so. Refused (exit 6) while another redrive of the
    same DLQ runs.
    """
    validate(
        max_messages=max_messages,
        rate=rate,
        workers=workers,
        lease_seconds=lease_seconds,
        canary=canary,
    )
    if skip_completed_jobs and store is None:
        raise UsageError("--skip-completed-jobs needs a database (set DATABASE_URL)")
    journal: RedriveJournal | None = None
    settled: SettleReport | None = None
    if journal_dir is not None and not dry_run:
        queue_facts(queues, dlq_url)  # a missing DLQ is "not found", before any file
        journal = open_journal(journal_dir, source_url=dlq_url, target_url=target_url)
    drained = False
    try:
        if journal is not None:
            settled = journal.settle(queues, workers=workers)
            if checkpoint is not None:
                checkpoint("after_settle")
        try:
            result = _copy_redrive(
                queues=queues,
                dlq_url=dlq_url,
                target_url=target_url,
                message_filter=message_filter,
                dry_run=dry_run,
                max_messages=max_messages,
                rate=rate,
                workers=workers,
                store=store,
                skip_completed_jobs=skip_completed_jobs,
                canary=canary,
                canary_wait_seconds=canary_wait_seconds,
                lease_seconds=lease_seconds,
                wait_seconds=wait_seconds,
                settle_seconds=settle_seconds,
                max_message_size=max_message_size,
                progress=progress,
                checkpoint=checkpoint,
                stop_event=stop_event,
                journal=journal,
            )
        except DbopsError as exc:
            partial = getattr(exc, "partial_result", None)
            if isinstance(partial, RedriveResult):
                partial.settled = journal.report if journal is not None else None
            raise
        result.settled = journal.report if journal is not None else settled
        if (
            journal is not None
            and journal.has_unconfirmed
            and result.stopped == "drained"
            and not result.interrupted
        ):
            # Sent-earlier ids not met by a scan of the whole DLQ are gone, unless some
            # message was invisible to the scan (held by another reader): then keep them.
            with contextlib.suppress(DbopsError):
                drained = queue_facts(queues, dlq_url).in_flight == 0
        return result
    finally:
        if journal is not None:
            journal.close(drained=drained)


def _copy_redrive(
    *,
    queues: Queues,
    dlq_url: str,
    target_url: str,
    message_filter: MessageFilter | None = None,
    dry_run: bool = False,
    max_messages: int | None = None,
    rate: float | None = None,
    workers: int = 1,
    store: Store | None = None,
    skip_completed_jobs: bool = False,
    canary: int | None = None,
    canary_wait_seconds: int = 60,
    lease_seconds: int = LEASE_SECONDS,
    wait_seconds: int = RECEIVE_WAIT_SECONDS,
    settle_seconds: float = SETTLE_SECONDS,
    max_message_size: int | None = None,
    progress: ProgressFn | None = None,
    checkpoint: Checkpoint | None = None,
    stop_event: threading.Event | None = None,
    journal: RedriveJournal | None = None,
) -> RedriveResult:
    validate(
        max_messages=max_messages,
        rate=rate,
        workers=workers,
        lease_seconds=lease_seconds,
        canary=canary,
    )
    if skip_completed_jobs and store is None:
        raise UsageError("--skip-completed-jobs needs a database (set DATABASE_URL)")
    flt = message_filter or MessageFilter()
    source = queue_facts(queues, dlq_url)
    target = queue_facts(queues, target_url)
    stop = stop_event or threading.Event()
    lookup: Callable[[list[str]], set[str]] | None = None
    if skip_completed_jobs and store is not None:
        db = store

        def lookup(ids: list[str]) -> set[str]:
            return completed_job_ids(db, ids)

    total = source.visible + source.in_flight
    if max_messages is not None:
        total = min(total, max_messages)

    def once(limit: int | None, sink: Sink | None) -> RedriveResult:
        options = CopyOptions(
            source_url=dlq_url,
            target_url=target_url,
            accept=flt.accepts,
            dry_run=dry_run,
            max_messages=limit,
            manifest=set(flt.message_ids) if flt.message_ids is not None else None,
            rate=rate,
            workers=workers,
            skip_completed=lookup,
            lease_seconds=lease_seconds,
            wait_seconds=wait_seconds,
            settle_seconds=settle_seconds,
            max_message_size=max_message_size or target.max_message_size,
            target_fifo=target.fifo,
            total_hint=total,
            sent_sink=sink,
            stop_event=stop,
            journal=journal,
        )
        return _CopyRun(queues, options, progress=progress, checkpoint=checkpoint).run()

    if canary is None or dry_run:
        return once(max_messages, None)

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
    return _combine(first, rest, report)


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


def scan(
    *,
    queues: Queues,
    dlq_url: str,
    accept: Callable[[ParsedMessage], bool],
    sink: Sink | None = None,
    workers: int = 1,
    lease_seconds: int = LEASE_SECONDS,
    wait_seconds: int = RECEIVE_WAIT_SECONDS,
    settle_seconds: float = SETTLE_SECONDS,
    journal: RedriveJournal | None = None,
) -> RedriveResult:
    """Peek at every message (hold all, then release all); matches go to `sink`."""
    facts = queue_facts(queues, dlq_url)
    options = CopyOptions(
        source_url=dlq_url,
        target_url=dlq_url,
        accept=accept,
        dry_run=True,
        workers=workers,
        lease_seconds=lease_seconds,
        wait_seconds=wait_seconds,
        settle_seconds=settle_seconds,
        total_hint=facts.visible,
        matched_sink=sink,
        journal=journal,
    )
    return _CopyRun(queues, options, progress=None, checkpoint=None).run()


def _combine(first: RedriveResult, rest: RedriveResult, report: CanaryReport) -> RedriveResult:
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


def preview(
    *,
    queues: Queues,
    dlq_url: str,
    target_url: str,
    method: Method,
    message_filter: MessageFilter | None = None,
    skip_completed_jobs: bool = False,
    store: Store | None = None,
    max_messages: int | None = None,
    full_scan: bool = False,
    workers: int = 1,
    lease_seconds: int = LEASE_SECONDS,
    wait_seconds: int = RECEIVE_WAIT_SECONDS,
    journal_dir: Path | None = None,
) -> RedrivePreview:
    """Depths and target facts; with `full_scan`, a dry-run pass counting what matches;
    with `journal_dir`, what an earlier run left to settle first."""
    source = queue_facts(queues, dlq_url)
    target = queue_facts(queues, target_url)
    flt = message_filter or MessageFilter()
    result = None
    if full_scan and method == "copy":
        result = copy_redrive(
            queues=queues,
            dlq_url=dlq_url,
            target_url=target_url,
            message_filter=flt,
            dry_run=True,
            max_messages=max_messages,
            store=store,
            skip_completed_jobs=skip_completed_jobs,
            workers=workers,
            lease_seconds=lease_seconds,
            wait_seconds=wait_seconds,
        )
    return RedrivePreview(
        method=method,
        source=dlq_url,
        target=target_url,
        visible=source.visible,
        in_flight=source.in_flight,
        target_fifo=target.fifo,
        max_message_size=target.max_message_size,
        filtered=not flt.is_empty or skip_completed_jobs,
        scan=result,
        journal=journal_pending(journal_dir, dlq_url) if journal_dir is not None else None,
    )


# --------------------------------------------------------------------------- native
_UNSUPPORTED_MARKERS = (
    "NotImplemented",
    "not implemented",
    "InvalidAction",
    "UnknownOperation",
    "UnsupportedOperation",
    "<html",
    "<!doctype",
)


def _is_unsupported(exc: RemoteError) -> bool:
    text = exc.message
    if any(marker.lower() in text.lower() for marker in _UNSUPPORTED_MARKERS):
        return True
    parts = [p.strip() for p in text.split(":")]
    return len(parts) > 1 and parts[1] in {"500", "501", "404"}


def _native_call(queues: Queues, api: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except RemoteError as exc:
        if _is_unsupported(exc):
            where = queues.endpoint or "this SQS endpoint"
            raise RemoteError(
                f"{where} does not implement {api} (message move tasks)",
                hint="use --method copy, the default",
            ) from None
        raise


def _task(item: Mapping[str, Any]) -> MoveTask:
    return MoveTask(
        task_handle=item.get("TaskHandle"),
        status=str(item.get("Status", "UNKNOWN")),
        source_arn=item.get("SourceArn"),
        destination_arn=item.get("DestinationArn"),
        rate=item.get("MaxNumberOfMessagesPerSecond"),
        moved=item.get("ApproximateNumberOfMessagesMoved"),
        to_move=item.get("ApproximateNumberOfMessagesToMove"),
        failure_reason=item.get("FailureReason"),
        started_at=item.get("StartedTimestamp"),
    )


def _arn(queues: Queues, url: str) -> str:
    arn = queue_facts(queues, url).arn
    if not arn:
        raise RemoteError(f"queue {queue_name(url)} has no QueueArn attribute")
    return arn


def list_move_tasks(*, queues: Queues, dlq_url: str) -> list[MoveTask]:
    source_arn = _arn(queues, dlq_url)
    items = _native_call(queues, "ListMessageMoveTasks", lambda: queues.list_move_tasks(source_arn))
    return [_task(i) for i in items]


def running_task(*, queues: Queues, dlq_url: str) -> MoveTask:
    """The DLQ's running move task (the newest one), or not found (exit 4)."""
    for task in list_move_tasks(queues=queues, dlq_url=dlq_url):
        if task.status == "RUNNING" and task.task_handle:
            return task
    raise NotFoundError(f"no running message move task on {queue_name(dlq_url)}")


def cancel_move_task(
    *, queues: Queues, dlq_url: str, task_handle: str | None, dry_run: bool = False
) -> CancelResult:
    """Cancel `task_handle`, or the DLQ's running move task when none is given."""
    handle = task_handle or running_task(queues=queues, dlq_url=dlq_url).task_handle or ""
    if dry_run:
        return CancelResult(task_handle=handle, moved_before_cancel=0, dry_run=True)
    moved = _native_call(queues, "CancelMessageMoveTask", lambda: queues.cancel_move_task(handle))
    return CancelResult(task_handle=handle, moved_before_cancel=int(moved))


def check_native(*, queues: Queues, dlq_url: str) -> None:
    """Fail early (exit 5) when the endpoint has no message move tasks."""
    list_move_tasks(queues=queues, dlq_url=dlq_url)


def validate_native_rate(rate: float | None) -> int | None:
    """`--rate` as MaxNumberOfMessagesPerSecond: a whole number from 1 to 500."""
    if rate is None:
        return None
    if rate != int(rate) or not 1 <= rate <= NATIVE_MAX_RATE:
        raise UsageError(
            f"invalid --rate {rate:g} for --method native: use a whole number 1-{NATIVE_MAX_RATE}"
        )
    return int(rate)


def native_redrive(
    *,
    queues: Queues,
    dlq_url: str,
    target_url: str,
    rate: float | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    poll_seconds: float = 2.0,
    stop_event: threading.Event | None = None,
    timeout_seconds: float | None = None,
) -> RedriveResult:
    """StartMessageMoveTask, then follow ListMessageMoveTasks until the task ends."""
    native_rate = validate_native_rate(rate)
    started = time.monotonic()
    source = queue_facts(queues, dlq_url)
    source_arn = source.arn or _arn(queues, dlq_url)
    target_arn = _arn(queues, target_url)
    check_native(queues=queues, dlq_url=dlq_url)
    result = RedriveResult(method="native", dry_run=dry_run, source=dlq_url, target=target_url)
    result.scanned = source.visible
    result.matched = source.visible
    if dry_run:
        result.stopped = "dry_run"
        result.duration_seconds = round(time.monotonic() - started, 3)
        return result
    handle = _native_call(
        queues,
        "StartMessageMoveTask",
        lambda: queues.start_move_task(source_arn, target_arn, native_rate),
    )
    result.task_handle = handle
    stop = stop_event or threading.Event()
    task: MoveTask | None = None
    try:
        while True:
            tasks = list_move_tasks(queues=queues, dlq_url=dlq_url)
            mine = [t for t in tasks if t.task_handle == handle]
            task = mine[0] if mine else (tasks[0] if tasks else None)
            if task is not None:
                if task.to_move is not None:
                    result.matched = task.to_move
                result.moved = task.moved or 0
                if progress is not None:
                    progress(
                        RedriveProgress(
                            result.moved, result.matched, result.moved, 0, result.matched
                        )
                    )
                if task.status in NATIVE_DONE:
                    break
            if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
                result.stopped = "timeout"
                break
            if stop.wait(poll_seconds):
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        try:
            moved = _native_call(
                queues, "CancelMessageMoveTask", lambda: queues.cancel_move_task(handle)
            )
            result.moved = max(result.moved, int(moved))
            result.task_status = "CANCELLED"
        except DbopsError:
            result.task_status = "RUNNING"
        result.interrupted = True
        result.stopped = "interrupted"
        result.duration_seconds = round(time.monotonic() - started, 3)
        return result
    if task is not None:
        result.task_status = task.status
        if task.status == "FAILED":
            result.failed = max(0, result.matched - result.moved)
            result.failures.append(
                RedriveFailure(
                    message_id="*", stage="send", reason=task.failure_reason or "move task failed"
                )
            )
            result.stopped = "failed"
        elif task.status == "CANCELLED":
            result.stopped = "cancelled"
        elif result.stopped != "timeout":
            result.stopped = "drained"
    result.duration_seconds = round(time.monotonic() - started, 3)
    return result
