"""The copy engine: worker threads receive under a long lease, keep fresh matching
messages, wait for the rate limit and move them (`batch.py`); the driver waits for the
workers, releases every held message and returns the counts. `scan` is a pass that only
holds and releases (dry runs, the canary check)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from dbops.errors import DbopsError
from dbops.ports import BatchResult, QueueMessage, Queues
from dbops.services.messages import ParsedMessage, parse
from dbops.services.redrive.batch import BatchMover
from dbops.services.redrive.facts import queue_facts
from dbops.services.redrive.journal import RedriveJournal
from dbops.services.redrive.models import (
    LEASE_SECONDS,
    RECEIVE_WAIT_SECONDS,
    RECENT_IDS_KEPT,
    SAMPLE_SIZE,
    SETTLE_POLL_SECONDS,
    SETTLE_SECONDS,
    RedriveResult,
)
from dbops.services.redrive.shaping import sample_row
from dbops.services.redrive.state import CopyOptions, Sink


class _CopyRun(BatchMover):
    """One copy pass: `run()` starts `options.workers` threads running `worker()`."""

    # -- workers -----------------------------------------------------------------------
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
        # Messages are visible but none came: poll again shortly. A long poll paces this
        # loop by itself; a receive that does not wait (sqs_long_poll_seconds = 0) would
        # otherwise spin on the queue until settle_seconds ran out.
        self.stop.wait(SETTLE_POLL_SECONDS)
        return False

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
                    self.result.sample.append(sample_row(m))
                if self.o.matched_sink is not None:
                    self.o.matched_sink.append((m.message_id, m.job_id))
        self._hold(others + skipped, received_at)
        if not matching:
            return
        if self.o.dry_run:
            self._hold(matching, received_at)
            return
        if self.bucket is not None:
            waited = self._wait_for_rate(matching, received_at)
            if waited is None:
                return
            received_at = waited
        self._move(matching, received_at)

    # -- rate limiting -----------------------------------------------------------------
    def _wait_for_rate(self, matching: Sequence[ParsedMessage], received_at: float) -> float | None:
        """Wait for the shared rate limit (the lease extended when the wait is long); the
        batch's new lease start, or None when interrupted (the batch is then held, unsent)."""
        assert self.bucket is not None
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
            return None
        return received_at

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
                fatal.partial_result = self.result
            raise fatal
        return self.result


def _wait_all(finished: Sequence[threading.Event], poll: Callable[[], None]) -> None:
    """Wait for every worker. Not Thread.join(): on Python 3.11 a KeyboardInterrupt inside
    join() can mark a still-running thread as stopped, and we must wait for its batch."""
    for done in finished:
        while not done.wait(0.1):
            poll()


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
