"""The engine of `dlq purge` and `dlq delete` (`purging.py`): remove messages without a
race, keeping a raw backup of exactly what was removed (architecture.md section 5, invariants 1
and 8).

Both work on a snapshot of the queue:

1. The snapshot is the depth when the command starts: ApproximateNumberOfMessages +
   ApproximateNumberOfMessagesNotVisible. The scan receives at most that many distinct
   messages, so it always ends, even while new messages keep arriving: it never chases
   them.
2. Every received message is held invisible (a visibility lease long enough for the whole
   operation, extended while it runs), so nothing is received twice. The messages to
   remove are written to the backup file (raw JSON lines, mode 0600) as they arrive;
   receipt handles are spooled to a temporary file (memory stays flat).
3. The backup is fsynced. A backup write failure stops here: nothing has been deleted,
   the partial file is removed, every held message is released, exit 6.
4. DeleteMessageBatch with the receipt handles from that scan, batches of 10 run in
   parallel by a small thread pool. Each entry's outcome is read (never assumed): an entry
   SQS refuses stays in the queue, is released and is reported.
5. Messages not to be removed (`dlq delete`'s non-matching ones) are released
   (visibility 0). Anything that arrived meanwhile was never touched and is reported as
   left in place.

So a kill at any point leaves every message in the queue or in the backup: before the
deletes nothing is removed (held messages come back when the lease ends), and every
deleted message was in the fsynced backup first.

`purge(fast=True)` keeps the old PurgeQueue path for very deep queues: backup scan,
release, then PurgeQueue, which also deletes whatever arrives during the scan and during
SQS's up-to-60-second purge window, without it being in the backup.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from dbops.config_files import data_dir
from dbops.errors import DbopsError, RefusedError, UsageError
from dbops.names import queue_name
from dbops.ports import BatchResult, Checkpoint, QueueMessage, Queues
from dbops.services.dlq.scan import (
    LONG_POLL_SECONDS,
    MAX_EMPTY_RECEIVES,
    Progress,
    plain_message_attributes,
)
from dbops.services.messages import ParsedMessage, parse
from dbops.services.queue import read_counts

LEASE_SECONDS = 300  # default visibility lease on held messages (--lease)
MIN_LEASE_SECONDS = 2
MAX_LEASE_SECONDS = 43200  # SQS's maximum visibility timeout (12 h)
WORKERS = 4  # parallel DeleteMessageBatch / ChangeMessageVisibilityBatch calls
FAILURES_KEPT = 20

Stopped = Literal["snapshot", "drained", "unsettled", "manifest", "empty"]

# The export file's attribute shape (one implementation: `scan.plain_message_attributes`).
plain_attributes = plain_message_attributes


# --------------------------------------------------------------------------- backup file
def default_backup_path(queue_url: str, kind: str = "purge") -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return data_dir() / "backups" / f"{queue_name(queue_url)}-{kind}-{stamp}.jsonl"


def backup_record(message: ParsedMessage, *, queue: str) -> dict[str, Any]:
    """One line of a purge/delete backup: the `dlq export` line format, always raw (never
    masked: a backup exists to restore with `dlq replay`)."""
    return {
        "message_id": message.message_id,
        "queue": queue,
        "job_id": message.job_id,
        "customer_id": message.customer_id,
        "reason": message.reason,
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "receive_count": message.receive_count,
        "size": message.size,
        "body": message.body,
        "message_attributes": plain_attributes(message.message_attributes),
        "system_attributes": dict(message.attributes),
    }


class Backup:
    """The backup file: created with os.open(..., 0o600) (a folder dbops creates gets
    0o700), one JSON line per message, flushed per batch and fsynced before anything is
    deleted. A write failure removes the partial file and raises RefusedError (exit 6)
    naming the file and the OS error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._file: IO[str] | None = None

    @classmethod
    def create(cls, path: Path) -> Backup:
        backup = cls(path)
        parent = path.parent
        try:
            if not parent.exists():
                parent.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise UsageError(f"cannot create backup folder {parent}: {exc.strerror}") from None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise UsageError(
                f"backup file {path} already exists", hint="choose another --backup"
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot create backup file {path}: {exc.strerror}") from None
        backup._file = os.fdopen(fd, "w", encoding="utf-8")
        return backup

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        assert self._file is not None
        try:
            self._file.write("".join(json.dumps(r) + "\n" for r in records))
            self._file.flush()
        except OSError as exc:
            self.fail(exc)
        self.lines += len(records)

    def sync(self) -> None:
        assert self._file is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            self.fail(exc)

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                self._file = None
                self.fail(exc)

    def discard(self) -> None:
        """Remove the (partial) file: nothing it lists was deleted (and none is backed up)."""
        self.lines = 0
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    def fail(self, exc: OSError) -> None:
        self.discard()
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RefusedError(
            f"could not write the backup {self.path}: {reason}; nothing was deleted",
            hint="the partial file was removed; free some space or choose another --backup",
        ) from None


# --------------------------------------------------------------------------- the engine
def _parse(message: QueueMessage, now: float) -> ParsedMessage:
    """The parsed view, best effort: a body dbops cannot read is still removed and backed
    up as it is (dbops never fails on data it did not write)."""
    try:
        return parse(message, now=now)
    except Exception:  # any body: the parsed fields are conveniences only
        return ParsedMessage(
            message_id=message.message_id,
            receipt_handle=message.receipt_handle,
            body=message.body,
            size=len(message.body.encode("utf-8", "surrogatepass")),
            attributes=dict(message.attributes),
            message_attributes=dict(message.message_attributes),
        )


def _no_checkpoint(point: str) -> None:
    return None


Item = tuple[str, str]  # (message id, receipt handle)


class _SnapshotRun:
    """Scan at most `bound` distinct messages, holding each and backing up the accepted
    ones (`scan`); then `delete` the accepted ones by receipt handle and `release` the rest
    (or, for a peek, `release(everything=True)`). See the module docstring."""

    def __init__(
        self,
        queues: Queues,
        queue_url: str,
        *,
        bound: int,
        accept: Callable[[ParsedMessage], bool] | None = None,
        backup: Backup | None = None,
        manifest: set[str] | None = None,
        lease: int = LEASE_SECONDS,
        workers: int = WORKERS,
        progress: Progress | None = None,
        long_poll: int = LONG_POLL_SECONDS,
        max_empty: int = MAX_EMPTY_RECEIVES,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self.checkpoint: Checkpoint = checkpoint or _no_checkpoint
        self.queues = queues
        self.url = queue_url
        self.name = queue_name(queue_url)
        self.bound = max(0, bound)
        self.accept = accept
        self.backup = backup
        self.manifest = manifest
        self.lease = lease
        self.workers = max(1, workers)
        self.progress = progress
        self.long_poll = long_poll
        self.max_empty = max(2, max_empty)
        self.scanned = self.matched = self.duplicates = 0
        self.deleted = self.failed = self.released = self.release_failed = 0
        self.failures: list[str] = []
        self.stopped: Stopped = "empty" if self.bound == 0 else "snapshot"
        self._seen: set[str] = set()
        self._found: set[str] = set()  # manifest ids matched so far
        self._latest: dict[str, str] = {}  # newest handle of a message received twice
        self._spool: IO[str] = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self._leased_at: float | None = None
        self._not_deleted: list[Item] = []
        self._unspooled: list[Item] = []  # the batch being received, until it is spooled
        self._deleted: set[str] = set()

    def __enter__(self) -> _SnapshotRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._spool.close()

    # -- bookkeeping ---------------------------------------------------------------
    def _report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(self.scanned, done)

    def _held(self, kinds: str) -> Iterator[Item]:
        """Held messages of the given kinds (M: to remove, R: to release), newest handles."""
        self._spool.flush()
        self._spool.seek(0)
        items: list[Item] = []
        for line in self._spool:
            kind, message_id, handle = line.rstrip("\n").split("\t", 2)
            if kind in kinds:
                items.append((message_id, self._latest.get(message_id, handle)))
            if len(items) >= 1000:
                yield from items
                items.clear()
        self._spool.seek(0, os.SEEK_END)
        yield from items

    def _batched(self, items: Iterable[Item]) -> Iterator[list[Item]]:
        chunk: list[Item] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == 10:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _parallel(
        self,
        chunks: Iterable[list[Item]],
        call: Callable[[dict[str, str]], BatchResult],
        on_result: Callable[[list[Item], BatchResult], None],
    ) -> None:
        """Run `call` on each chunk ({entry id: handle}) with at most `workers` in flight;
        `on_result` runs in this thread. An interruption still records the calls in flight."""

        def one(chunk: list[Item]) -> BatchResult:
            entries = {str(i): handle for i, (_mid, handle) in enumerate(chunk)}
            try:
                return call(entries)
            except DbopsError as exc:
                return BatchResult(failed={key: exc.one_line() for key in entries})

        pending: dict[Future[BatchResult], list[Item]] = {}

        def settle() -> None:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                on_result(pending.pop(future), future.result())

        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dbops-purge")
        try:
            for chunk in chunks:
                while len(pending) >= self.workers:
                    settle()
                pending[pool.submit(one, chunk)] = chunk
            while pending:
                settle()
        finally:
            try:
                while pending:
                    settle()
            finally:
                pool.shutdown(wait=True)

    def _set_visibility(self, items: Iterable[Item], timeout: int) -> tuple[int, int]:
        ok = failed = 0

        def on_result(chunk: list[Item], result: BatchResult) -> None:
            nonlocal ok, failed
            ok += len(result.successful)
            failed += len(chunk) - len(result.successful)

        self._parallel(
            self._batched(items),
            lambda entries: self.queues.change_visibility_batch(self.url, entries, timeout),
            on_result,
        )
        return ok, failed

    def keep_leases(self, fraction: float = 0.5) -> None:
        """Renew every held message's lease once `fraction` of it has passed, so that no
        message comes back (and is received twice, or by someone else) while we run."""
        if self._leased_at is None:
            return
        now = time.monotonic()
        if now - self._leased_at < self.lease * fraction:
            return
        self._leased_at = now
        # A renewal that fails lets a message come back: it is then received again (the
        # newest handle is kept), never lost.
        self._set_visibility(self._held("MR"), self.lease)

    # -- phases ----------------------------------------------------------------------
    def scan(self) -> None:
        """Receive up to `bound` distinct messages; back up the accepted ones. On any
        failure nothing has been deleted: release everything, drop the partial backup."""
        try:
            self._scan()
            if self.backup is not None:
                self.backup.sync()
                self.backup.close()
        except BaseException:
            if self.backup is not None:
                self.backup.discard()
            with contextlib.suppress(DbopsError):
                self.release(everything=True)
            raise

    def _scan(self) -> None:
        empty = 0
        while self.scanned < self.bound:
            if self.manifest is not None and len(self._found) >= len(self.manifest):
                self.stopped = "manifest"
                return
            self.keep_leases()
            started = time.monotonic()
            got = self.queues.receive(
                self.url,
                max_messages=min(10, self.bound - self.scanned),
                visibility_timeout=self.lease,
                wait_seconds=0 if empty == 0 else self.long_poll,
            )
            if not got:
                empty += 1
                if empty >= 2:
                    visible = read_counts(queues=self.queues, queue_url=self.url).visible
                    if visible == 0:
                        self.stopped = "drained"
                        return
                    if empty >= self.max_empty:
                        self.stopped = "unsettled"
                        return
                continue
            empty = 0
            # Until spooled below, this batch is released from here if anything fails.
            self._unspooled = [(m.message_id, m.receipt_handle) for m in got]
            if self._leased_at is None:
                self._leased_at = started
            now = time.time()
            fresh: list[ParsedMessage] = []
            for message in got:
                if message.message_id in self._seen:
                    self.duplicates += 1
                    self._latest[message.message_id] = message.receipt_handle
                    continue
                self._seen.add(message.message_id)
                fresh.append(_parse(message, now))
            if not fresh:
                self._unspooled = []  # only copies of spooled messages (newest handles kept)
                continue
            hits = {m.message_id for m in fresh if self.accept is None or self.accept(m)}
            # Spool first: if the backup write fails, these are released with the rest.
            self._spool.write(
                "".join(
                    f"{'M' if m.message_id in hits else 'R'}\t{m.message_id}\t{m.receipt_handle}\n"
                    for m in fresh
                )
            )
            self._unspooled = []
            if self.backup is not None and hits:
                self.backup.write(
                    [backup_record(m, queue=self.name) for m in fresh if m.message_id in hits]
                )
            self.scanned += len(fresh)
            self.matched += len(hits)
            if self.manifest is not None:
                self._found.update(hits)
            self._report(self.matched)
            self.checkpoint("backup_batch")

    def delete(self) -> None:
        """DeleteMessageBatch with the held receipt handles of the accepted messages. If it
        is interrupted, every held message not deleted is released before re-raising."""
        try:
            self._delete()
        except BaseException:
            with contextlib.suppress(DbopsError):
                self.release(everything=True)
            raise

    def _delete(self) -> None:
        self.keep_leases(fraction=1 / 3)
        first = True

        def on_result(chunk: list[Item], result: BatchResult) -> None:
            nonlocal first
            for i, (message_id, handle) in enumerate(chunk):
                if str(i) in result.successful:
                    self.deleted += 1
                    self._deleted.add(message_id)
                    continue
                self.failed += 1
                self._not_deleted.append((message_id, handle))
                if len(self.failures) < FAILURES_KEPT:
                    why = result.failed.get(str(i), "no result for this entry")
                    self.failures.append(f"{message_id}: {why}")
            self._report(self.deleted)
            if first:
                first = False
                self.checkpoint("mid_delete")

        self._parallel(
            self._batched(self._held("M")),
            lambda entries: self.queues.delete_batch(self.url, entries),
            on_result,
        )

    def release(self, *, everything: bool = False) -> None:
        """Visibility 0 for the held messages to keep (not accepted, or their delete was
        refused); with `everything` (after a failure), for every held message not deleted."""
        items: Iterable[Item] = (
            itertools.chain(
                (i for i in self._held("MR") if i[0] not in self._deleted), self._unspooled
            )
            if everything
            else itertools.chain(self._held("R"), self._not_deleted)
        )
        ok, failed = self._set_visibility(items, 0)
        self.released += ok
        self.release_failed += failed


def _left_in_place(queues: Queues, queue_url: str) -> int | None:
    try:
        return read_counts(queues=queues, queue_url=queue_url).total
    except DbopsError:
        return None


def validate(*, lease: int, workers: int = WORKERS) -> None:
    if not MIN_LEASE_SECONDS <= lease <= MAX_LEASE_SECONDS:
        raise UsageError(
            f"invalid --lease {lease}s: use {MIN_LEASE_SECONDS}s to 12h (SQS's maximum "
            "visibility timeout), longer than the whole operation"
        )
    if not 1 <= workers <= 32:
        raise UsageError(f"invalid workers {workers}: use 1 to 32")
