"""`dlq replay FILE`: send the messages of a JSON-lines file back to a queue, exactly as
they were (DESIGN.md section 5, invariant 8: every bulk removal can be undone).

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

import base64
import binascii
import contextlib
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, Field

from dbops.errors import DbopsError, NotFoundError, RefusedError, RemoteError, UsageError
from dbops.ports import BatchResult, OutgoingMessage, Queues
from dbops.services.queue import queue_label
from dbops.services.testhooks import pause

PROGRESS_SUFFIX = ".replay-progress"
DEFAULT_MAX_MESSAGE_SIZE = 262144  # when the target's MaximumMessageSize cannot be read
FAILURES_KEPT = 200
CONSECUTIVE_FAILURES_FATAL = 3
MAX_WORKERS = 64

Progress = Callable[[int, int], None]  # (sent, failed)


# --------------------------------------------------------------------------- models
class ReplayFailure(BaseModel):
    message_id: str
    reason: str


class ReplayPreview(BaseModel):
    """`dbops dlq replay --dry-run -o json`, and what is shown before confirming.

    `messages` distinct message ids in the file (`duplicates` more lines repeat one);
    `already_sent` of them are listed in the progress file (a previous run sent them);
    `to_send` is what this run sends.
    """

    file: str
    progress_file: str
    source_queues: list[str]
    target: str
    target_fifo: bool
    lines: int
    messages: int
    duplicates: int
    already_sent: int
    to_send: int
    dry_run: bool = True


class ReplayResult(BaseModel):
    """`dbops dlq replay -o json`.

    `messages == already_sent + sent + failed + not_sent`; `not_sent` is non-zero only when
    the run stopped early (interrupted, or the target kept failing). `send_calls` counts
    SendMessageBatch calls, `per_call` the messages sent per call.
    """

    file: str
    progress_file: str
    target: str
    target_fifo: bool
    messages: int
    already_sent: int
    sent: int = 0
    failed: int = 0
    not_sent: int = 0
    failures: list[ReplayFailure] = Field(default_factory=list)
    failures_truncated: bool = False
    send_calls: int = 0
    per_call: float = 0.0
    interrupted: bool = False
    duration_seconds: float = 0.0
    dry_run: bool = False


# --------------------------------------------------------------------------- the file
@dataclass
class ReplayLine:
    number: int
    message_id: str
    body: str
    attributes: dict[str, Any]
    group_id: str | None
    job_id: str | None
    queue: str | None


def progress_path(path: Path) -> Path:
    return path.with_name(path.name + PROGRESS_SUFFIX)


def _masked_refusal(path: Path, number: int) -> RefusedError:
    return RefusedError(
        f"{path} is a masked export (line {number}): replaying it would put masked bodies "
        "on the queue",
        hint="replay a purge/delete backup (always raw) or an export written with --reveal",
    )


def _bad(path: Path, number: int, what: str) -> UsageError:
    return UsageError(
        f"{path} line {number}: {what}",
        hint="replay a file written by `dbops dlq export`, `dlq purge` or `dlq delete`",
    )


def sendable_attributes(raw: Any, *, path: Path, number: int) -> dict[str, Any]:
    """Message attributes as written in the file -> as SendMessage takes them: every data
    type kept as it was (custom suffixes such as `Number.float`, `Binary.gzip` included),
    binary values decoded from base64."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad(path, number, "message_attributes is not an object")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        data_type = value.get("DataType") if isinstance(value, dict) else None
        if not isinstance(data_type, str) or not data_type:
            raise _bad(path, number, f"attribute {name!r} has no DataType")
        if data_type.split(".", 1)[0] == "Binary":
            encoded = value.get("BinaryValue")
            if not isinstance(encoded, str):
                raise _bad(path, number, f"attribute {name!r} has no BinaryValue")
            try:
                decoded = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise _bad(path, number, f"attribute {name!r} is not base64") from None
            out[name] = {"DataType": data_type, "BinaryValue": decoded}
        else:
            text = value.get("StringValue")
            if not isinstance(text, str):
                raise _bad(path, number, f"attribute {name!r} has no StringValue")
            out[name] = {"DataType": data_type, "StringValue": text}
    return out


def read_lines(path: Path) -> Iterator[ReplayLine]:
    """Every message line of a replay file, validated, in file order (repeats included)."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if not text:
                    continue
                try:
                    item = json.loads(text)
                except ValueError:
                    raise _bad(path, number, "not JSON") from None
                if not isinstance(item, dict):
                    raise _bad(path, number, "not a JSON object")
                if item.get("masked") is True:
                    raise _masked_refusal(path, number)
                if "dbops_export" in item:  # a header line, not a message
                    header = item["dbops_export"]
                    if isinstance(header, dict) and header.get("masked") is True:
                        raise _masked_refusal(path, number)
                    continue
                yield _line(item, path=path, number=number)
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text") from None


def _line(item: dict[str, Any], *, path: Path, number: int) -> ReplayLine:
    message_id = item.get("message_id", item.get("MessageId"))
    if not isinstance(message_id, str) or not message_id.strip():
        raise _bad(path, number, "no message_id")
    body = item.get("body", item.get("Body"))
    if not isinstance(body, str):
        raise _bad(path, number, "no body (a manifest of ids alone cannot be replayed)")
    system = item.get("system_attributes")
    group = system.get("MessageGroupId") if isinstance(system, dict) else None
    queue = item.get("queue")
    job_id = item.get("job_id")
    return ReplayLine(
        number=number,
        message_id=message_id.strip(),
        body=body,
        attributes=sendable_attributes(
            item.get("message_attributes", item.get("MessageAttributes")), path=path, number=number
        ),
        group_id=group if isinstance(group, str) and group else None,
        job_id=job_id if isinstance(job_id, str) and job_id else None,
        queue=queue if isinstance(queue, str) and queue.strip() else None,
    )


def read_progress(path: Path) -> dict[str, str]:
    """message id -> target queue name, from a progress file (missing: empty). A torn last
    line (a kill while appending) is ignored: that entry's batch was not fsynced."""
    sent: dict[str, str] = {}
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return sent
    except OSError as exc:
        raise UsageError(f"cannot read the progress file {path}: {exc.strerror}") from None
    with handle:
        for line in handle:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and isinstance(item.get("message_id"), str):
                sent[item["message_id"]] = str(item.get("target", ""))
    return sent


@dataclass
class ReplayPlan:
    path: Path
    lines: int
    messages: int
    duplicates: int
    source_queues: list[str]
    sent: dict[str, str]  # from the progress file

    @property
    def progress_file(self) -> Path:
        return progress_path(self.path)


def plan(path: Path) -> ReplayPlan:
    """Validate the whole file (nothing is sent from a file that is bad anywhere)."""
    path = Path(path)
    seen: set[str] = set()
    queues: dict[str, None] = {}
    lines = duplicates = 0
    for line in read_lines(path):
        lines += 1
        if line.message_id in seen:
            duplicates += 1
            continue
        seen.add(line.message_id)
        if line.queue:
            queues.setdefault(line.queue, None)
    if not seen:
        raise UsageError(f"{path} holds no messages")
    return ReplayPlan(
        path=path,
        lines=lines,
        messages=len(seen),
        duplicates=duplicates,
        source_queues=list(queues),
        sent=read_progress(progress_path(path)),
    )


def default_target(replay_plan: ReplayPlan) -> str:
    """The queue the messages came from (recorded in the file), when it names exactly one."""
    sources = replay_plan.source_queues
    if len(sources) != 1:
        what = (
            "records no source queue"
            if not sources
            else f"holds messages from {len(sources)} queues ({', '.join(sources[:5])})"
        )
        raise UsageError(f"{replay_plan.path} {what}", hint="name the target with --to QUEUE")
    return sources[0]


# --------------------------------------------------------------------------- sending
def deduplication_id(message_id: str) -> str:
    """Deterministic per original message: a re-run's resend is dropped by a FIFO queue."""
    return hashlib.sha256(f"dbops-replay:{message_id}".encode()).hexdigest()


def entry_size(entry: OutgoingMessage) -> int:
    size = len(entry.body.encode("utf-8", "surrogatepass"))
    for name, value in entry.message_attributes.items():
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        if "BinaryValue" in value:
            size += len(value["BinaryValue"])
        else:
            size += len(str(value.get("StringValue", "")).encode())
    return size


@dataclass
class TargetFacts:
    url: str
    name: str
    fifo: bool
    max_message_size: int


def target_facts(queues: Queues, url: str) -> TargetFacts:
    attrs = queues.get_attributes(url)
    try:
        size = int(attrs.get("MaximumMessageSize") or DEFAULT_MAX_MESSAGE_SIZE)
    except ValueError:
        size = DEFAULT_MAX_MESSAGE_SIZE
    fifo = str(attrs.get("FifoQueue", "")).lower() == "true" or url.endswith(".fifo")
    return TargetFacts(url=url, name=queue_label(url), fifo=fifo, max_message_size=size)


def preview(*, replay_plan: ReplayPlan, target: TargetFacts) -> ReplayPreview:
    already = _already_sent(replay_plan, target)
    return ReplayPreview(
        file=str(replay_plan.path),
        progress_file=str(replay_plan.progress_file),
        source_queues=replay_plan.source_queues,
        target=target.name,
        target_fifo=target.fifo,
        lines=replay_plan.lines,
        messages=replay_plan.messages,
        duplicates=replay_plan.duplicates,
        already_sent=already,
        to_send=replay_plan.messages - already,
    )


def _already_sent(replay_plan: ReplayPlan, target: TargetFacts) -> int:
    others = sorted({t for t in replay_plan.sent.values() if t and t != target.name})
    if others:
        raise RefusedError(
            f"{replay_plan.progress_file} records a replay of {replay_plan.path} to "
            f"{', '.join(others[:3])}, not {target.name}",
            hint=f"remove {replay_plan.progress_file} to replay the whole file again",
        )
    return len(replay_plan.sent)


def validate(*, rate: float | None, workers: int) -> None:
    if rate is not None and (not math.isfinite(rate) or rate <= 0):
        raise UsageError(f"invalid --rate {rate:g}: must be greater than zero (messages/second)")
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"invalid --workers {workers}: use 1 to {MAX_WORKERS}")


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
        counts: dict[str, Any] | None,
        stop: threading.Event,
    ) -> None:
        from dbops.services.redrive import TokenBucket

        self.q = queues
        self.plan = replay_plan
        self.target = target
        self.result = result
        self.workers = workers
        self.progress = progress
        self.counts = counts
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
        pause("replay_after_send")
        by_entry = {entry.id: mid for entry, mid in batch}
        sent = [(by_entry[eid], new) for eid, new in result.successful.items() if eid in by_entry]
        with self.lock:
            if sent:
                self._record(sent)
            self.result.sent += len(sent)
            self.streak = 0 if sent else self.streak + 1
            streak = self.streak
        pause("replay_after_progress")
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
        if self.counts is not None:
            self.counts.update(sent=self.result.sent, failed=self.result.failed)
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
    counts: dict[str, Any] | None = None,
    stop_event: threading.Event | None = None,
) -> ReplayResult:
    """Send every message of the plan's file not yet in its progress file to `target`.

    Raises the first fatal error (target gone, or failing batch after batch) with
    `partial_result` set; what was sent is in the progress file either way.
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
        counts=counts,
        stop=stop_event or threading.Event(),
    )
    if replay_plan.messages > already:
        run.open_progress()
        try:
            run.run()
        finally:
            run.close_progress()
    result.not_sent = max(0, result.messages - already - result.sent - result.failed)
    result.per_call = round(result.sent / result.send_calls, 2) if result.send_calls else 0.0
    result.duration_seconds = round(time.monotonic() - started, 3)
    if run.fatal is not None:
        run.fatal.partial_result = result  # type: ignore[attr-defined]
        raise run.fatal
    return result
