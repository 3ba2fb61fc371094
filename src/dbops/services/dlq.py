"""Dead-letter queue use cases: list (peek), show, export, monitor. Purge and delete live in
`dbops.services.dlq_purge` (re-exported here for existing callers).

Everything that reads messages goes through `Scan`: receive in batches of 10 with a
visibility lease, hold every message invisible until the scan ends (so each is read once),
then release them all back to visibility 0 in batches. Receipt handles are spooled to a
temporary file, so memory does not grow with the queue (only message ids are kept, to skip
a message seen twice if a lease ran out). One empty receive is not proof the queue is
drained: a scan ends after two empty receives (the second a long poll) and the queue's
ApproximateNumberOfMessages being 0, or at its message bound.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from pydantic import BaseModel, Field

from dbops.durations import format_duration
from dbops.errors import DbopsError, RemoteError, UsageError
from dbops.files import write_private
from dbops.ports import Queues, Store
from dbops.services import slack
from dbops.services.dlq_purge import (  # noqa: F401  (re-exported: purge and delete moved)
    DeletePreview,
    DeleteResult,
    PurgePreview,
    PurgeResult,
    default_backup_path,
    delete_messages,
    delete_preview,
    purge,
    purge_preview,
)
from dbops.services.messages import MessageFilter, ParsedMessage, parse
from dbops.services.personal import (
    MASK,
    NOT_JSON,
    is_personal_key,
    load_json,
    mask_body,
    mask_optional,
    mask_personal,
    mask_text,
)
from dbops.services.queue import QueueCounts, queue_label, read_counts

PEEK_LEASE_SECONDS = 30
SCAN_LEASE_SECONDS = 300
LONG_POLL_SECONDS = 1
MAX_EMPTY_RECEIVES = 5

Progress = Callable[[int, int], None]  # (scanned, matched)


# --------------------------------------------------------------------------- scanning
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
    ) -> None:
        if limit is not None and limit < 0:
            raise UsageError("scan limit must not be negative")
        self.queues = queues
        self.queue_url = queue_url
        self.lease = lease
        self.limit = limit
        self.long_poll = long_poll
        self.max_empty = max(2, max_empty)
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
        empty = 0
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
                if empty >= 2:
                    visible = read_counts(queues=self.queues, queue_url=self.queue_url).visible
                    self.stats.visible_at_end = visible
                    if visible == 0 or empty >= self.max_empty:
                        self.stats.drained = visible == 0
                        return
                continue
            empty = 0
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
            if fresh:
                yield fresh

    def consumed(self, message_ids: Iterable[str]) -> None:
        self._consumed.update(message_ids)

    def release(self, *, raise_errors: bool = True) -> int:
        """Make every held, not consumed message visible again (visibility 0)."""
        self._released = True
        self._spool.flush()
        self._spool.seek(0)
        batch: dict[str, str] = {}
        first_error: DbopsError | None = None

        def flush() -> None:
            nonlocal first_error
            if not batch:
                return
            try:
                result = self.queues.change_visibility_batch(self.queue_url, batch, 0)
                self.stats.released += len(result.successful)
                self.stats.release_failed += len(result.failed)
            except DbopsError as exc:
                self.stats.release_failed += len(batch)
                first_error = first_error or exc
            batch.clear()

        for line in self._spool:
            message_id, _, handle = line.rstrip("\n").partition("\t")
            if not handle or message_id in self._consumed:
                continue
            batch[str(len(batch))] = handle
            if len(batch) == 10:
                flush()
        flush()
        if first_error is not None and raise_errors:
            raise RemoteError(
                f"could not release {self.stats.release_failed} message(s) back to visibility "
                f"({first_error.one_line()})",
                hint=f"they become visible again on their own within {self.lease} s",
            )
        return self.stats.released


# --------------------------------------------------------------------------- helpers
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


def _is_binary(data_type: Any) -> bool:
    return str(data_type or "").split(".", 1)[0] == "Binary"


def mask_simple_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """`simple_message_attributes` with personal data masked: every value of an attribute
    whose name looks personal; emails and phones inside text values. Binary values are
    left as they are (base64 text is not personal-looking text)."""
    out: dict[str, Any] = {}
    for name, item in attributes.items():
        value = item.get("value")
        if is_personal_key(name) and value not in (None, ""):
            value = MASK
        elif not _is_binary(item.get("type")):
            value = mask_personal(value)
        out[name] = {**item, "value": value}
    return out


def mask_plain_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """`plain_message_attributes` (the SQS shape) with personal data masked, as
    `mask_simple_attributes` does."""
    out: dict[str, Any] = {}
    for name, item in attributes.items():
        if not isinstance(item, dict):
            out[name] = mask_personal(item, str(name))
            continue
        personal = is_personal_key(str(name))
        masked: dict[str, Any] = {}
        for key, value in item.items():
            if key == "DataType" or value in (None, "", []):
                masked[key] = value
            elif personal:
                masked[key] = [MASK for _ in value] if isinstance(value, list) else MASK
            elif key in ("StringValue", "StringListValues"):
                masked[key] = mask_personal(value)
            else:
                masked[key] = value
        out[name] = masked
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


# --------------------------------------------------------------------------- personal data
# Masking lives in `dbops.services.personal` (linear time on any input); `dlq.mask_text`,
# `dlq.mask_personal`, `dlq.is_personal_key` and `dlq.MASK` stay importable from here.


# --------------------------------------------------------------------------- list
class DlqMessage(BaseModel):
    """One row of `dbops dlq list -o json`."""

    message_id: str
    job_id: str | None = None
    customer: str | None = None
    sent_at: datetime | None = None
    age: str
    age_seconds: float | None = None
    receive_count: int | None = None
    reason: str | None = None
    size: int
    job_status: str | None = None
    is_json: bool
    body_kind: str = "text"
    preview: str | None = None
    notes: list[str] = Field(default_factory=list)


class DlqListing(BaseModel):
    queue: str
    messages: list[DlqMessage]
    scanned: int
    released: int
    limit: int
    limit_reached: bool
    warnings: list[str] = Field(default_factory=list)


def _preview(message: ParsedMessage, size: int = 60, *, reveal: bool = False) -> str | None:
    """The start of a body that is not a JSON object, whitespace collapsed; personal data
    masked (over the whole body first, so a cut never exposes half an address)."""
    if message.is_json:
        return None
    text = " ".join(message.body.split())
    if not reveal:
        text = mask_text(text)
    return text if len(text) <= size else text[: size - 1] + "…"


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


def list_row(
    message: ParsedMessage, *, job_status: str | None = None, reveal: bool = False
) -> DlqMessage:
    """One `dlq list` row; text fields personal-data masked unless `reveal`."""
    shown = (lambda text: text) if reveal else mask_optional
    m = message
    return DlqMessage(
        message_id=m.message_id,
        job_id=shown(m.job_id),
        customer=shown(m.customer_id),
        sent_at=m.sent_at,
        age=format_duration(m.age_seconds),
        age_seconds=round(m.age_seconds, 1) if m.age_seconds is not None else None,
        receive_count=m.receive_count,
        reason=shown(m.reason),
        size=m.size,
        job_status=job_status,
        is_json=m.is_json,
        body_kind=m.body_kind,
        preview=_preview(m, reveal=reveal),
        notes=m.notes,
    )


def list_messages(
    *,
    queues: Queues,
    queue_url: str,
    limit: int,
    store: Store | None,
    store_warning: str | None = None,
    lease: int = PEEK_LEASE_SECONDS,
    reveal: bool = False,
) -> DlqListing:
    """Peek at up to `limit` messages; every text field personal-data masked unless
    `reveal` (job statuses are looked up with the raw job ids)."""
    messages, stats = peek(queues=queues, queue_url=queue_url, limit=limit, lease=lease)
    warnings = [store_warning] if store_warning else []
    statuses: dict[str, str] = {}
    if store is not None:
        try:
            statuses = job_statuses(store=store, job_ids=[m.job_id for m in messages])
        except DbopsError as exc:
            warnings.append(f"job_status unavailable: {exc.one_line()}")
    messages.sort(key=lambda m: (m.sent_at is None, m.sent_at or datetime.min.replace(tzinfo=UTC)))
    rows = [
        list_row(m, job_status=statuses.get(m.job_id) if m.job_id else None, reveal=reveal)
        for m in messages
    ]
    return DlqListing(
        queue=queue_label(queue_url),
        messages=rows,
        scanned=stats.scanned,
        released=stats.released,
        limit=limit,
        limit_reached=stats.scanned >= limit,
        warnings=warnings,
    )


# --------------------------------------------------------------------------- show
class DlqMessageDetail(BaseModel):
    """`dbops dlq show -o json`."""

    queue: str
    message_id: str
    job_id: str | None = None
    customer: str | None = None
    reason: str | None = None
    sent_at: datetime | None = None
    age: str
    receive_count: int | None = None
    size: int
    is_json: bool
    body_kind: str = "text"
    body: Any
    message_attributes: dict[str, Any] = Field(default_factory=dict)
    system_attributes: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    masked: bool
    scanned: int


def show_message(
    *,
    queues: Queues,
    queue_url: str,
    message_id: str,
    reveal: bool = False,
    scan_limit: int = 1000,
    lease: int = PEEK_LEASE_SECONDS,
) -> DlqMessageDetail:
    """Find one message by scanning with peeks (at most `scan_limit` messages)."""
    from dbops.errors import NotFoundError

    wanted = message_id.strip()
    if not wanted:
        raise UsageError("MESSAGE_ID must not be empty")
    if scan_limit < 1:
        raise UsageError(f"invalid scan limit {scan_limit}: must be at least 1")
    hit: ParsedMessage | None = None
    with Scan(queues, queue_url, lease=lease, limit=scan_limit) as scan:
        for batch in scan.batches():
            hit = next((m for m in batch if m.message_id == wanted), None)
            if hit is not None:
                break
    if hit is None:
        where = queue_label(queue_url)
        bound = "" if scan.stats.drained else f" (searched the first {scan.stats.scanned})"
        raise NotFoundError(
            f"message {wanted} not found in {where}{bound}",
            hint="list ids with `dbops dlq list`; raise the bound with --scan-limit",
        )
    return message_detail(
        hit, queue=queue_label(queue_url), reveal=reveal, scanned=scan.stats.scanned
    )


def message_detail(
    hit: ParsedMessage, *, queue: str, reveal: bool = False, scanned: int = 1
) -> DlqMessageDetail:
    """The `dlq show` view of one message; personal data masked unless `reveal`."""
    body: Any = load_json(hit.body)
    is_json = body is not NOT_JSON
    if not is_json:
        body = hit.body
    attrs = simple_message_attributes(hit.message_attributes)
    job_id, customer, reason = hit.job_id, hit.customer_id, hit.reason
    if not reveal:
        body = mask_personal(body) if is_json else mask_text(body)
        attrs = mask_simple_attributes(attrs)
        job_id, customer, reason = map(mask_optional, (job_id, customer, reason))
    return DlqMessageDetail(
        queue=queue,
        message_id=hit.message_id,
        job_id=job_id,
        customer=customer,
        reason=reason,
        sent_at=hit.sent_at,
        age=format_duration(hit.age_seconds),
        receive_count=hit.receive_count,
        size=hit.size,
        is_json=is_json,
        body_kind=hit.body_kind,
        body=body,
        message_attributes=attrs,
        system_attributes=dict(hit.attributes),
        notes=hit.notes,
        masked=not reveal,
        scanned=scanned,
    )


# --------------------------------------------------------------------------- export
def export_record(message: ParsedMessage, *, queue: str, mask: bool = False) -> dict[str, Any]:
    """One line of an export file (the format `--manifest` reads: see docs/dlq.md).

    Raw by default (purge and delete backups, `dlq export --reveal`): `body` is exactly the
    message body. With `mask`, personal data is masked in the body, the text fields and
    the attribute values, and the line says `"masked": true`: such a line can no longer
    restore the message, and `dlq replay` refuses it.
    """
    attributes = plain_message_attributes(message.message_attributes)
    body, job_id, customer, reason = (
        message.body,
        message.job_id,
        message.customer_id,
        message.reason,
    )
    if mask:
        body = mask_body(body)
        job_id, customer, reason = map(mask_optional, (job_id, customer, reason))
        attributes = mask_plain_attributes(attributes)
    return {
        "message_id": message.message_id,
        "queue": queue,
        "masked": mask,
        "job_id": job_id,
        "customer_id": customer,
        "reason": reason,
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "receive_count": message.receive_count,
        "size": message.size,
        "body": body,
        "message_attributes": attributes,
        "system_attributes": dict(message.attributes),
        "notes": message.notes,
    }


class ExportResult(BaseModel):
    """`dbops dlq export -o json`."""

    queue: str
    path: str | None = None
    scanned: int
    exported: int
    released: int
    release_failed: int = 0
    drained: bool
    visible_at_end: int | None = None
    filtered: bool
    masked: bool = False


def open_export_file(path: Path, *, overwrite: bool = False) -> Any:
    """The export file: 0600 from the start (exports hold personal data), written to a
    temporary file and renamed into place at the end, so `--force` never leaves a mix of
    the old and the new export, and a write failure leaves no partial file (exit 6)."""
    return write_private(path, overwrite=overwrite)


def _sync(stream: IO[str]) -> None:
    stream.flush()
    with contextlib.suppress(OSError, ValueError, AttributeError):  # stdout, a pipe
        os.fsync(stream.fileno())


def export_messages(
    *,
    queues: Queues,
    queue_url: str,
    stream: IO[str],
    message_filter: MessageFilter | None = None,
    lease: int = SCAN_LEASE_SECONDS,
    limit: int | None = None,
    progress: Progress | None = None,
    mask: bool = False,
) -> ExportResult:
    """Write every (matching) message as one JSON line, as received (raw), or with personal
    data masked (`mask`: see `export_record`); non-destructive."""
    message_filter = message_filter or MessageFilter()
    name = queue_label(queue_url)
    exported = 0
    with Scan(queues, queue_url, lease=lease, limit=limit) as scan:
        for batch in scan.batches():
            for message in batch:
                if message_filter.accepts(message):
                    record = export_record(message, queue=name, mask=mask)
                    stream.write(json.dumps(record) + "\n")
                    exported += 1
            _sync(stream)
            if progress:
                progress(scan.stats.scanned, exported)
            _test_pause("export_batch")
    return ExportResult(
        queue=name,
        scanned=scan.stats.scanned,
        exported=exported,
        released=scan.stats.released,
        release_failed=scan.stats.release_failed,
        drained=scan.stats.drained,
        visible_at_end=scan.stats.visible_at_end,
        filtered=not message_filter.is_empty,
        masked=mask,
    )


def export_to_file(
    *,
    queues: Queues,
    queue_url: str,
    path: Path,
    overwrite: bool = False,
    message_filter: MessageFilter | None = None,
    lease: int = SCAN_LEASE_SECONDS,
    limit: int | None = None,
    progress: Progress | None = None,
    mask: bool = False,
) -> ExportResult:
    with open_export_file(path, overwrite=overwrite) as stream:
        result = export_messages(
            queues=queues,
            queue_url=queue_url,
            stream=stream,
            message_filter=message_filter,
            lease=lease,
            limit=limit,
            progress=progress,
            mask=mask,
        )
    result.path = str(path)
    return result


def read_manifest(path: Path | str) -> list[str]:
    """MessageIds listed in an export file (JSON lines with `message_id`), in order, once.

    Also accepted per line: `{"MessageId": ...}` (AWS shape) and a JSON string. Blank lines
    are skipped; anything else is a usage error naming the line.
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read manifest {path}: {exc.strerror}") from None
    ids: dict[str, None] = {}
    with handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                item = json.loads(text)
            except ValueError:
                raise UsageError(
                    f"manifest {path} line {number} is not JSON",
                    hint="use a file written by `dbops dlq export`",
                ) from None
            value = (
                item.get("message_id", item.get("MessageId")) if isinstance(item, dict) else item
            )
            if not isinstance(value, str) or not value.strip():
                raise UsageError(
                    f"manifest {path} line {number} has no message_id",
                    hint="use a file written by `dbops dlq export`",
                )
            ids.setdefault(value.strip(), None)
    return list(ids)


# --------------------------------------------------------------------------- test hook
def _test_pause(point: str) -> None:
    """Test-only hook: DBOPS_TEST_PAUSE_AT=<point> writes DBOPS_TEST_PAUSE_MARKER and blocks,
    so a reliability test can SIGKILL the process at a known point."""
    if os.environ.get("DBOPS_TEST_PAUSE_AT") != point:
        return
    marker = os.environ.get("DBOPS_TEST_PAUSE_MARKER")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {point}\n")
    while True:
        time.sleep(3600)


# --------------------------------------------------------------------------- monitor
class MonitorResult(BaseModel):
    """`dbops dlq monitor -o json`: exit 1 when `alerting`, 0 otherwise."""

    queue: str
    depth: int
    visible: int
    in_flight: int
    delayed: int
    threshold: int
    alerting: bool
    notify: str | None = None
    notified: bool = False
    notify_skipped: str | None = None
    notify_error: str | None = None
    last_alert_depth: int | None = None
    state: Literal["database", "unavailable", "not used"] = "not used"
    checked_at: datetime
    messages: list[slack.AlertMessage] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def _alert_messages(*, queues: Queues, queue_url: str, count: int) -> list[slack.AlertMessage]:
    messages, _ = peek(queues=queues, queue_url=queue_url, limit=count)
    messages.sort(key=lambda m: (m.sent_at is None, m.sent_at or datetime.min.replace(tzinfo=UTC)))
    return [alert_message(m) for m in messages]


def alert_message(m: ParsedMessage) -> slack.AlertMessage:
    """How a message is quoted in a Slack alert: personal data always masked."""
    return slack.AlertMessage(
        message_id=m.message_id,
        job_id=mask_optional(m.job_id),
        customer=mask_optional(m.customer_id),
        reason=mask_optional(m.reason) if m.is_json else _preview(m),
        age_seconds=round(m.age_seconds, 1) if m.age_seconds is not None else None,
    )


def monitor(
    *,
    queues: Queues,
    queue_url: str,
    threshold: int,
    notifier: slack.Notifier | None = None,
    channel: str | None = None,
    store: Store | None = None,
    store_warning: str | None = None,
    sample_size: int = 5,
) -> MonitorResult:
    """Check the DLQ depth against `threshold`; with a notifier, alert when it grew.

    Alert state lives in the database (`dbops_dlq_monitor_*`): an alert is sent when the
    depth is at or above the threshold and greater than at the last alert, and the state
    resets once the depth drops below the threshold. Without a database every alerting
    check notifies (and says so). A notifier failure is reported in `notify_error`.
    """
    if threshold < 1:
        raise UsageError(f"invalid threshold {threshold}: must be at least 1")
    counts: QueueCounts = read_counts(queues=queues, queue_url=queue_url)
    name = queue_label(queue_url)
    result = MonitorResult(
        queue=name,
        depth=counts.total,
        visible=counts.visible,
        in_flight=counts.in_flight,
        delayed=counts.delayed,
        threshold=threshold,
        alerting=counts.total >= threshold,
        checked_at=datetime.now(UTC),
    )
    if notifier is None:
        return result
    result.notify = channel or notifier.name
    state_ok = False
    if store is None:
        result.state = "unavailable"
        result.warnings.append(
            (store_warning or "no database")
            + ": alert state is not kept, so every alerting check notifies"
        )
    else:
        try:
            rows = store.call("dbops_dlq_monitor_get", {"p_queue": queue_url})
            state_ok = True
            result.state = "database"
            if rows and rows[0].get("last_alert_depth") is not None:
                result.last_alert_depth = int(rows[0]["last_alert_depth"])
        except DbopsError as exc:
            result.state = "unavailable"
            result.warnings.append(
                f"alert state unavailable ({exc.one_line()}): every alerting check notifies"
            )
    if not result.alerting:
        result.notify_skipped = "below threshold"
    elif result.last_alert_depth is not None and counts.total <= result.last_alert_depth:
        result.notify_skipped = (
            f"depth has not grown since the last alert (at depth {result.last_alert_depth})"
        )
    else:
        try:
            result.messages = _alert_messages(queues=queues, queue_url=queue_url, count=sample_size)
        except DbopsError as exc:
            result.warnings.append(f"could not sample messages: {exc.one_line()}")
        payload = slack.dlq_alert(
            queue=name,
            depth=counts.total,
            threshold=threshold,
            previous_alert_depth=result.last_alert_depth,
            messages=result.messages,
        )
        try:
            notifier.send(payload)
            result.notified = True
        except DbopsError as exc:
            result.notify_error = exc.one_line()
    if state_ok and store is not None:
        try:
            store.call(
                "dbops_dlq_monitor_record",
                {
                    "p_queue": queue_url,
                    "p_depth": counts.total,
                    "p_alerting": result.alerting,
                    "p_notified": result.notified,
                },
            )
        except DbopsError as exc:
            result.warnings.append(f"could not record alert state: {exc.one_line()}")
    return result
