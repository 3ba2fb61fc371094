"""`dlq replay FILE`: send the messages of a JSON-lines file back to a queue, exactly as
they were (architecture.md section 5, invariant 8: every bulk removal can be undone).

Files it reads (one JSON object per line, the `dlq export` line format): a `dlq export`
file, a `dlq purge` / `dlq delete` backup (always raw), or a reviewed manifest cut from
either. Per line it uses `message_id` (required: the key of the progress file), `body`
(required, the exact body), `message_attributes` (the SQS API shape, binary values base64),
`system_attributes.MessageGroupId` (FIFO) and `queue` (the queue the message came from:
the default target). Blank lines are skipped; a line repeating a message id is sent once.

Masked exports are refused (RefusedError, exit 6): a line with a top-level `"masked": true`,
or a header line `{"dbops_export": {..., "masked": true}}`. Replaying one would put masked
bodies on the queue.

Exactly once across kills: after each SendMessageBatch, the entries SQS accepted are
appended to `FILE.replay-progress` (one JSON line per message id, fsynced) before the next
batch is sent; a re-run skips every id listed there. Only a kill between a
SendMessageBatch call returning and that fsync can send a batch (at most 10 messages)
twice; for a FIFO target even that is absorbed, because the MessageDeduplicationId is
derived from the original message id (SQS drops a repeat within 5 minutes).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import IO

from dbops.errors import (
    DbopsError,
    NotFoundError,
    RefusedError,
    RemoteError,
    UsageError,
    partial_result_on_failure,
)
from dbops.ports import BatchResult, Checkpoint, OutgoingMessage, Queues
from dbops.services.dlq.replay_file import (  # noqa: F401  (re-exported: `dlq.replay.X`)
    CONSECUTIVE_FAILURES_FATAL,
    DEFAULT_MAX_MESSAGE_SIZE,
    FAILURES_KEPT,
    MAX_WORKERS,
    PROGRESS_SUFFIX,
    Progress,
    ReplayFailure,
    ReplayLine,
    ReplayPlan,
    ReplayPreview,
    ReplayResult,
    TargetFacts,
    _already_sent,
    deduplication_id,
    default_target,
    entry_size,
    plan,
    preview,
    progress_path,
    read_lines,
    read_progress,
    sendable_attributes,
    target_facts,
    validate,
)


class _Run:
    def __init__(
        self,
        queues: Queues,
        replay_plan: ReplayPlan,
        target: TargetFacts,
        result: ReplayResult,
        *,
        rate: float | None,
        workers: int,
        progress: Progress | None,
        stop: threading.Event,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        from dbops.services.redrive import TokenBucket

        self.q = queues
        self.checkpoint: Checkpoint = checkpoint or (lambda _point: None)
        self.plan = replay_plan
        self.target = target
        self.result = result
        self.workers = workers
        self.progress = progress
        self.stop = stop
        self.bucket = TokenBucket(rate) if rate else None
        self.lock = threading.Lock()
        self.streak = 0
        self.fatal: DbopsError | None = None
        self._progress_file: IO[str] | None = None

    # -- progress file ---------------------------------------------------------------
    def open_progress(self) -> None:
        path = self.plan.progress_file
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise UsageError(
                f"cannot write the progress file {path}: {exc.strerror}",
                hint="replay needs it next to FILE to send each message once",
            ) from None
        self._progress_file = os.fdopen(fd, "a", encoding="utf-8")
        # A kill while appending can leave a torn last line: start on a fresh one, so the
        # torn fragment (ignored when read) does not swallow the next record.
        torn = False
        with contextlib.suppress(OSError):
            size = os.fstat(fd).st_size
            if size:
                with path.open("rb") as existing:
                    existing.seek(size - 1)
                    torn = existing.read(1) != b"\n"
        if torn:
            self._progress_file.write("\n")
            self._progress_file.flush()

    def close_progress(self) -> None:
        if self._progress_file is not None:
            with contextlib.suppress(OSError):
                self._progress_file.close()

    def _record(self, sent: list[tuple[str, str]]) -> None:
        """Append the accepted entries and fsync, before anything else is sent."""
        assert self._progress_file is not None
        at = datetime.now(UTC).isoformat()
        lines = "".join(
            json.dumps(
                {"message_id": mid, "sent_message_id": new, "target": self.target.name, "at": at}
            )
            + "\n"
            for mid, new in sent
        )
        try:
            self._progress_file.write(lines)
            self._progress_file.flush()
            os.fsync(self._progress_file.fileno())
        except OSError as exc:
            raise RefusedError(
                f"could not record progress in {self.plan.progress_file}: {exc.strerror}; "
                f"{len(sent)} message(s) just sent are not recorded",
                hint="a re-run may send those again; free space and re-run",
            ) from None

    # -- batches ---------------------------------------------------------------------
    def batches(self) -> Iterator[list[tuple[OutgoingMessage, str]]]:
        """(entry, original message id) batches: 10 entries, within the size limit."""
        limit = self.target.max_message_size
        done = set(self.plan.sent)
        batch: list[tuple[OutgoingMessage, str]] = []
        size = 0
        for line in read_lines(self.plan.path):
            if line.message_id in done:
                continue
            done.add(line.message_id)
            entry = OutgoingMessage(id="0", body=line.body, message_attributes=line.attributes)
            if self.target.fifo:
                entry.message_group_id = line.group_id or line.job_id or line.message_id
                entry.message_deduplication_id = deduplication_id(line.message_id)
            entry_bytes = entry_size(entry)
            if entry_bytes > limit:
                self._fail(
                    line.message_id,
                    f"message is {entry_bytes} bytes; {self.target.name} accepts at most "
                    f"{limit} (MaximumMessageSize)",
                )
                continue
            if batch and (len(batch) == 10 or size + entry_bytes > limit):
                yield batch
                batch, size = [], 0
            entry.id = str(len(batch))
            batch.append((entry, line.message_id))
            size += entry_bytes
        if batch:
            yield batch

    def _fail(self, message_id: str, reason: str) -> None:
        with self.lock:
            self.result.failed += 1
            if len(self.result.failures) < FAILURES_KEPT:
                self.result.failures.append(ReplayFailure(message_id=message_id, reason=reason))
            else:
                self.result.failures_truncated = True

    def _send(self, entries: list[OutgoingMessage]) -> BatchResult:
        """Per-entry outcome; a batch refused as a whole is retried entry by entry."""
        try:
            result = self.q.send_batch(self.target.url, entries)
        except NotFoundError:
            raise
        except RemoteError as exc:
            with self.lock:
                self.result.send_calls += 1
            if len(entries) == 1:
                return BatchResult(failed={entries[0].id: exc.one_line()})
            merged = BatchResult()
            for entry in entries:
                single = self._send([entry])
                merged.successful.update(single.successful)
                merged.failed.update(single.failed)
            return merged
        with self.lock:
            self.result.send_calls += 1
        return result

    def send(self, batch: list[tuple[OutgoingMessage, str]]) -> None:
        if self.stop.is_set():
            return
        if self.bucket is not None:
            delay = self.bucket.reserve(len(batch))
            if delay > 0 and self.stop.wait(delay):
                return
        result = self._send([entry for entry, _mid in batch])
        self.checkpoint("replay_after_send")
        by_entry = {entry.id: mid for entry, mid in batch}
        sent = [(by_entry[eid], new) for eid, new in result.successful.items() if eid in by_entry]
        with self.lock:
            if sent:
                self._record(sent)
            self.result.sent += len(sent)
            self.streak = 0 if sent else self.streak + 1
            streak = self.streak
        self.checkpoint("replay_after_progress")
        for entry, mid in batch:
            if entry.id not in result.successful:
                self._fail(mid, result.failed.get(entry.id, "no result for this entry"))
        if streak >= CONSECUTIVE_FAILURES_FATAL:
            reasons = sorted(set(result.failed.values()))[:1]
            raise RemoteError(
                f"sending to {self.target.name} keeps failing"
                + (f" ({reasons[0]})" if reasons else ""),
                hint=f"what was sent is recorded in {self.plan.progress_file}: re-run to continue",
            )

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.result.sent, self.result.failed)

    def run(self) -> None:
        pending: set[Future[None]] = set()

        def settle() -> None:
            nonlocal pending
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    future.result()
                except DbopsError as exc:
                    self.fatal = self.fatal or exc
                    self.stop.set()
            self.report()

        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dbops-replay")
        try:
            for batch in self.batches():
                if self.stop.is_set():
                    break
                while len(pending) >= self.workers:
                    settle()
                if self.stop.is_set():
                    break
                pending.add(pool.submit(self.send, batch))
            while pending:
                settle()
        except KeyboardInterrupt:
            self.stop.set()
            self.result.interrupted = True
        finally:
            try:
                while pending:
                    settle()
            finally:
                pool.shutdown(wait=True)


def replay(
    *,
    queues: Queues,
    replay_plan: ReplayPlan,
    target: TargetFacts,
    rate: float | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    stop_event: threading.Event | None = None,
    checkpoint: Checkpoint | None = None,
) -> ReplayResult:
    """Send every message of the plan's file not yet in its progress file to `target`.

    Ctrl-C inside the send loop stops after the batches in flight and returns the result
    with `interrupted` set. Raises the first fatal error (target gone, or failing batch
    after batch), or `Interrupted` outside the loop, with `partial_result` set; what was
    sent is in the progress file either way.
    """
    validate(rate=rate, workers=workers)
    started = time.monotonic()
    already = _already_sent(replay_plan, target)
    result = ReplayResult(
        file=str(replay_plan.path),
        progress_file=str(replay_plan.progress_file),
        target=target.name,
        target_fifo=target.fifo,
        messages=replay_plan.messages,
        already_sent=already,
    )
    run = _Run(
        queues,
        replay_plan,
        target,
        result,
        rate=rate,
        workers=workers,
        progress=progress,
        stop=stop_event or threading.Event(),
        checkpoint=checkpoint,
    )

    def finished() -> ReplayResult:
        result.not_sent = max(0, result.messages - already - result.sent - result.failed)
        result.per_call = round(result.sent / result.send_calls, 2) if result.send_calls else 0.0
        result.duration_seconds = round(time.monotonic() - started, 3)
        return result

    with partial_result_on_failure(finished):
        if replay_plan.messages > already:
            run.open_progress()
            try:
                run.run()
            finally:
                run.close_progress()
        if run.fatal is not None:
            raise run.fatal
    return finished()
