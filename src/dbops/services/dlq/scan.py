"""Scanning a queue: `Scan` receives every message once under a visibility lease, holds
them all invisible until the scan ends, then releases them back to visibility 0 in
batches. Receipt handles are spooled to a temporary file, so memory does not grow with the
queue (only message ids are kept, to skip a message seen twice if a lease ran out). One
empty receive is not proof the queue is drained: a scan ends after two empty receives (the
second a long poll) and the queue's ApproximateNumberOfMessages being 0, or at its message
bound. Also: `peek`, attribute shaping and job-status lookups shared by the DLQ commands.
"""

from __future__ import annotations

import base64
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import IO, Any

from pydantic import BaseModel

from dbops.errors import DbopsError, RemoteError, UsageError
from dbops.ports import QueueMessage, Queues, Store
from dbops.services.messages import ParsedMessage, parse
from dbops.services.queue import read_counts

PEEK_LEASE_SECONDS = 30
SCAN_LEASE_SECONDS = 300
LONG_POLL_SECONDS = 1
MAX_EMPTY_RECEIVES = 5

Progress = Callable[[int, int], None]  # (scanned, matched)


class ScanStats(BaseModel):
    scanned: int = 0
    duplicates: int = 0
    released: int = 0
    release_failed: int = 0
    drained: bool = False
    visible_at_end: int | None = None


class Scan:
    """Receive every message of a queue once, holding each invisible until `release()`.

    Use as a context manager: held messages are released on exit whatever happened
    (a crash instead leaves them to come back on their own when the lease ends).
    `consumed(ids)` marks messages that were deleted, so they are not released.
    `release_workers` > 1 sends that many ChangeMessageVisibilityBatch calls at once when
    releasing (the messages are all held by then, so their order does not matter).
    `receivers` > 1 (without a `limit`) receives with that many threads, each its own
    ReceiveMessage loop, once the first receive comes back full (see `_concurrent_batches`);
    batches are still yielded in the calling thread, de-duplicated by message id.
    """

    def __init__(
        self,
        queues: Queues,
        queue_url: str,
        *,
        lease: int = SCAN_LEASE_SECONDS,
        limit: int | None = None,
        long_poll: int = LONG_POLL_SECONDS,
        max_empty: int = MAX_EMPTY_RECEIVES,
        release_workers: int = 1,
        receivers: int = 1,
    ) -> None:
        if limit is not None and limit < 0:
            raise UsageError("scan limit must not be negative")
        self.queues = queues
        self.queue_url = queue_url
        self.lease = lease
        self.limit = limit
        self.long_poll = long_poll
        self.max_empty = max(2, max_empty)
        self.release_workers = max(1, release_workers)
        self.receivers = max(1, receivers)
        self._receivers: _Receivers | None = None
        self.stats = ScanStats()
        self._seen: set[str] = set()
        self._consumed: set[str] = set()
        self._spool: IO[str] = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self._released = False

    def __enter__(self) -> Scan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._released:
                self.release(raise_errors=exc is None)
        finally:
            self._spool.close()

    def batches(self) -> Iterator[list[ParsedMessage]]:
        """Yield fresh (not seen before) messages, a received batch at a time."""
        if self.receivers > 1 and self.limit is None:
            yield from self._concurrent_batches()
            return
        yield from self._serial_batches(empty=0)

    def _serial_batches(self, *, empty: int) -> Iterator[list[ParsedMessage]]:
        while self.limit is None or self.stats.scanned < self.limit:
            want = 10 if self.limit is None else min(10, self.limit - self.stats.scanned)
            got = self.queues.receive(
                self.queue_url,
                max_messages=want,
                visibility_timeout=self.lease,
                wait_seconds=0 if empty == 0 else self.long_poll,
            )
            if not got:
                empty += 1
                if empty >= 2 and self._confirm_end(final=empty >= self.max_empty):
                    return
                continue
            empty = 0
            fresh = self._take(got)
            if fresh:
                yield fresh

    def _confirm_end(self, *, final: bool) -> bool:
        """After two empty receives: is the queue drained (or are we out of tries)?"""
        visible = read_counts(queues=self.queues, queue_url=self.queue_url).visible
        self.stats.visible_at_end = visible
        if visible == 0 or final:
            self.stats.drained = visible == 0
            return True
        return False

    def _take(self, got: Sequence[QueueMessage]) -> list[ParsedMessage]:
        """Spool the receipt handles of a received batch; parse the messages not seen yet."""
        now = time.time()
        fresh: list[ParsedMessage] = []
        for message in got:
            self._spool.write(f"{message.message_id}\t{message.receipt_handle}\n")
            if message.message_id in self._seen:
                self.stats.duplicates += 1
                continue
            self._seen.add(message.message_id)
            fresh.append(parse(message, now=now))
        self.stats.scanned += len(fresh)
        return fresh

    def _concurrent_batches(self) -> Iterator[list[ParsedMessage]]:
        """`receivers` threads, each its own receive loop, feeding this (the calling) thread,
        which spools, de-duplicates and parses. A small queue only starts them when the
        first receive comes back full. Each receiver stops after two empty receives in a
        row (the second a long poll); when all have stopped the queue's visible count
        decides as in the serial scan, which then takes over if messages are left."""
        first = self.queues.receive(
            self.queue_url, max_messages=10, visibility_timeout=self.lease, wait_seconds=0
        )
        if len(first) < 10:
            if first:
                fresh = self._take(first)
                if fresh:
                    yield fresh
            yield from self._serial_batches(empty=0 if first else 1)
            return
        fresh = self._take(first)
        if fresh:
            yield fresh
        self._receivers = pool = _Receivers(self, self.receivers)
        try:
            for got in pool.results():
                fresh = self._take(got)
                if fresh:
                    yield fresh
        finally:
            self._stop_receivers()
        if not self._confirm_end(final=self.max_empty <= 2):
            yield from self._serial_batches(empty=2)

    def _stop_receivers(self) -> None:
        """Whatever stopped the iteration, wait for every receive in flight and spool its
        messages, so that release() makes them visible again."""
        pool, self._receivers = self._receivers, None
        if pool is not None:
            for got in pool.stop():  # never yielded: only their receipt handles are kept
                for message in got:
                    self._spool.write(f"{message.message_id}\t{message.receipt_handle}\n")

    def consumed(self, message_ids: Iterable[str]) -> None:
        self._consumed.update(message_ids)

    def release(self, *, raise_errors: bool = True) -> int:
        """Make every held, not consumed message visible again (visibility 0)."""
        self._stop_receivers()  # a batches() iterator abandoned half-way
        self._released = True
        self._spool.flush()
        self._spool.seek(0)
        first_error: DbopsError | None = None

        def one(batch: dict[str, str]) -> tuple[int, int, DbopsError | None]:
            try:
                result = self.queues.change_visibility_batch(self.queue_url, batch, 0)
                return len(result.successful), len(result.failed), None
            except DbopsError as exc:
                return 0, len(batch), exc

        def settle(outcome: tuple[int, int, DbopsError | None]) -> None:
            nonlocal first_error
            ok, failed, error = outcome
            self.stats.released += ok
            self.stats.release_failed += failed
            first_error = first_error or error

        if self.release_workers == 1:
            for batch in self._release_batches():
                settle(one(batch))
        else:
            with ThreadPoolExecutor(
                max_workers=self.release_workers, thread_name_prefix="dbops-release"
            ) as pool:
                pending: set[Future[tuple[int, int, DbopsError | None]]] = set()
                for batch in self._release_batches():
                    if len(pending) >= 2 * self.release_workers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            settle(future.result())
                    pending.add(pool.submit(one, batch))
                for future in pending:
                    settle(future.result())
        if first_error is not None and raise_errors:
            raise RemoteError(
                f"could not release {self.stats.release_failed} message(s) back to visibility "
                f"({first_error.one_line()})",
                hint=f"they become visible again on their own within {self.lease} s",
            )
        return self.stats.released

    def _release_batches(self) -> Iterator[dict[str, str]]:
        """The spooled receipt handles of the not consumed messages, 10 per batch."""
        batch: dict[str, str] = {}
        for line in self._spool:
            message_id, _, handle = line.rstrip("\n").partition("\t")
            if not handle or message_id in self._consumed:
                continue
            batch[str(len(batch))] = handle
            if len(batch) == 10:
                yield batch
                batch = {}
        if batch:
            yield batch


class _Done:
    """A receiver thread's last item on the results queue."""


class _Receivers:
    """`count` threads receiving from the scan's queue, each until two empty receives in a
    row (the second a long poll) or `stop()`. Received batches (or a receiver's exception)
    go through a small bounded queue, so receiving runs at most a few batches ahead of the
    consumer."""

    def __init__(self, scan: Scan, count: int) -> None:
        self._scan = scan
        self._out: queue.Queue[list[QueueMessage] | BaseException | _Done] = queue.Queue(
            maxsize=2 * count
        )
        self._halt = threading.Event()
        self._running = count
        self._threads = [
            threading.Thread(target=self._run, name=f"dbops-receive-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        scan = self._scan
        empty = 0
        try:
            while not self._halt.is_set():
                got = scan.queues.receive(
                    scan.queue_url,
                    max_messages=10,
                    visibility_timeout=scan.lease,
                    wait_seconds=0 if empty == 0 else scan.long_poll,
                )
                if got:
                    empty = 0
                    self._out.put(got)
                else:
                    empty += 1
                    if empty >= 2:
                        break
        except BaseException as exc:  # handed to the consumer, raised there
            self._out.put(exc)
        finally:
            self._out.put(_Done())

    def results(self) -> Iterator[list[QueueMessage]]:
        """Received batches until every receiver has stopped; a receiver's error is raised."""
        while self._running:
            item = self._out.get()
            if isinstance(item, _Done):
                self._running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item

    def stop(self) -> list[list[QueueMessage]]:
        """Stop the receivers; the batches they received that were not taken yet."""
        self._halt.set()
        left: list[list[QueueMessage]] = []
        while self._running:
            item = self._out.get()
            if isinstance(item, _Done):
                self._running -= 1
            elif isinstance(item, list):
                left.append(item)
        for thread in self._threads:
            thread.join()
        return left


def peek(
    *, queues: Queues, queue_url: str, limit: int, lease: int = PEEK_LEASE_SECONDS
) -> tuple[list[ParsedMessage], ScanStats]:
    """Up to `limit` messages without consuming them (raises their receive counts)."""
    if limit < 1:
        raise UsageError(f"invalid limit {limit}: must be at least 1")
    found: list[ParsedMessage] = []
    with Scan(queues, queue_url, lease=lease, limit=limit) as scan:
        for batch in scan.batches():
            found.extend(batch)
    return found, scan.stats


def plain_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS MessageAttributes as JSON-safe dicts (binary values base64-encoded)."""
    out: dict[str, Any] = {}
    for name, value in attributes.items():
        if not isinstance(value, dict):
            out[name] = value
            continue
        item: dict[str, Any] = {}
        for key, inner in value.items():
            if isinstance(inner, bytes | bytearray):
                item[key] = base64.b64encode(bytes(inner)).decode()
            elif isinstance(inner, list):
                item[key] = [
                    base64.b64encode(bytes(v)).decode() if isinstance(v, bytes | bytearray) else v
                    for v in inner
                ]
            else:
                item[key] = inner
        out[name] = item
    return out


def simple_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """name -> {type, value} for display (binary values base64-encoded)."""
    out: dict[str, Any] = {}
    for name, value in plain_message_attributes(attributes).items():
        if isinstance(value, dict):
            out[name] = {
                "type": value.get("DataType"),
                "value": value.get("StringValue", value.get("BinaryValue")),
            }
        else:
            out[name] = {"type": None, "value": value}
    return out


def canonical_job_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(job_id.strip()))
    except (ValueError, AttributeError):
        return job_id.strip().lower()


def pg_text_array(values: Sequence[str]) -> str:
    """A Postgres text[] literal: binds as text[] over psycopg and over PostgREST alike."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


def job_statuses(*, store: Store, job_ids: Iterable[str | None]) -> dict[str, str]:
    """Current status per job id (keys as given), for the ids that name a job.

    Ids that are not UUIDs never match. Legacy `complete` is reported as `completed`.
    """
    given = sorted({j for j in job_ids if j and j.strip()})
    if not given:
        return {}
    found: dict[str, str] = {}
    for start in range(0, len(given), 500):
        chunk = given[start : start + 500]
        rows = store.call("dbops_jobs_status_lookup", {"p_job_ids": pg_text_array(chunk)})
        for row in rows:
            status = str(row.get("status"))
            found[canonical_job_id(str(row.get("job_id")))] = (
                "completed" if status == "complete" else status
            )
    return {j: found[canonical_job_id(j)] for j in given if canonical_job_id(j) in found}
