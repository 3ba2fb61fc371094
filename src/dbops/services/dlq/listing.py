"""`dlq list` and `dlq show`: peek at messages, personal data masked unless revealed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from dbops.durations import format_duration
from dbops.errors import DbopsError, NotFoundError, UsageError
from dbops.names import queue_name
from dbops.ports import Queues, Store
from dbops.services.dlq.scan import (
    PEEK_LEASE_SECONDS,
    Scan,
    job_statuses,
    peek,
    simple_message_attributes,
)
from dbops.services.ids import choose, parse_id
from dbops.services.messages import ParsedMessage
from dbops.services.redact import (
    NOT_JSON,
    load_json,
    mask_optional,
    mask_personal,
    mask_simple_attributes,
    mask_text,
)


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


def preview_text(message: ParsedMessage, size: int = 60, *, reveal: bool = False) -> str | None:
    """The start of a body that is not a JSON object, whitespace collapsed; personal data
    masked (over the whole body first, so a cut never exposes half an address)."""
    if message.is_json:
        return None
    text = " ".join(message.body.split())
    if not reveal:
        text = mask_text(text)
    return text if len(text) <= size else text[: size - 1] + "…"


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
        preview=preview_text(m, reveal=reveal),
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
        queue=queue_name(queue_url),
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
    """Find one message by scanning with peeks (at most `scan_limit` messages).

    `message_id` is the whole SQS MessageId or a unique prefix of at least 6 hex
    characters (`dbops.services.ids`): a prefix scans up to `scan_limit` messages to make
    sure it names one message (several: exit 2 naming them; none: exit 4)."""
    if not message_id.strip():
        raise UsageError("MESSAGE_ID must not be empty")
    ref = parse_id(message_id, label="message id", other_whole=True)
    if scan_limit < 1:
        raise UsageError(f"invalid scan limit {scan_limit}: must be at least 1")
    hits: list[ParsedMessage] = []
    with Scan(queues, queue_url, lease=lease, limit=scan_limit) as scan:
        for batch in scan.batches():
            hits.extend(m for m in batch if ref.matches(m.message_id))
            if hits and ref.full:
                break
    if not hits:
        where = queue_name(queue_url)
        bound = "" if scan.stats.drained else f" (searched the first {scan.stats.scanned})"
        raise NotFoundError(
            f"message {ref.given} not found in {where}{bound}"
            if ref.full
            else f"no message id starts with {ref.given!r} in {where}{bound}",
            hint="list ids with `dbops dlq list`; raise the bound with --scan-limit",
        )
    ids = list(dict.fromkeys(m.message_id for m in hits))
    chosen = choose(ref, ids, label="message id")
    hit = next(m for m in hits if m.message_id == chosen)
    return message_detail(
        hit, queue=queue_name(queue_url), reveal=reveal, scanned=scan.stats.scanned
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
