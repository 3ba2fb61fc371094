"""State of one copy-redrive pass shared by its worker threads: options, counters under
one lock, the --max budget, the messages held (leased) and their upkeep and release, and
the SQS calls with their accounting. `batch.py` adds sending and deleting, `copy.py` the
worker loop and the driver."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dbops.errors import DbopsError
from dbops.ports import BatchResult, Checkpoint, QueueMessage, Queues
from dbops.services.messages import ParsedMessage
from dbops.services.redrive.journal import RedriveJournal
from dbops.services.redrive.models import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FAILURES_KEPT,
    LEASE_SECONDS,
    RECEIVE_WAIT_SECONDS,
    SETTLE_SECONDS,
    ProgressFn,
    RedriveFailure,
    RedriveProgress,
    RedriveResult,
)
from dbops.services.redrive.rate import TokenBucket


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


class RunState:
    """Counters, budget and held messages of one pass (see the module docstring)."""

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
