"""Job messages as found on the queues: parsing tolerant of every shape in architecture.md s.3,
and the filters shared by `dlq list/export/redrive/delete`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from dbops.errors import UsageError
from dbops.ports import QueueMessage
from dbops.services.redact import NOT_JSON, load_json

BodyKind = Literal["object", "array", "string", "number", "boolean", "null", "text"]


class ParsedMessage(BaseModel):
    """A received message plus what dbops could read out of it (best effort).

    The body is opaque text: `body` is exactly what SQS returned, `message_attributes`
    exactly what boto3 returned (binary values stay `bytes`). The fields read out of it
    (`job_id`, `customer_id`, `priority`, `reason`, ...) never fail: a field of an
    unexpected type is kept as its compact JSON text and `notes` says so; a body that is
    not a JSON object leaves them to the message attributes (or null).
    """

    message_id: str
    receipt_handle: str = Field(exclude=True)
    body: str
    body_json: dict[str, Any] | None = None
    body_kind: BodyKind = "text"
    job_id: str | None = None
    customer_id: str | None = None
    priority: int | str | None = None
    reason: str | None = None
    sent_at: datetime | None = None
    age_seconds: float | None = None
    receive_count: int | None = None
    size: int
    attributes: dict[str, str] = Field(default_factory=dict)
    message_attributes: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    @property
    def is_json(self) -> bool:
        """The body is a JSON object (the shape job messages have)."""
        return self.body_json is not None


def _attr(message_attributes: dict[str, Any], name: str) -> str | None:
    value = message_attributes.get(name)
    if isinstance(value, dict):
        got = value.get("StringValue")
        return got if isinstance(got, str) else None
    return None


def json_kind(value: Any) -> BodyKind:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else "text"


def json_text(value: Any) -> str:
    """Compact JSON text of a parsed value (never raises)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        return str(value)


def _text_field(data: dict[str, Any], key: str, notes: list[str]) -> str | None:
    """A body field expected to be a string: other types as their JSON text, with a note."""
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    notes.append(f"{key} is a JSON {json_kind(value)}, not a string: shown as JSON text")
    return json_text(value)


def _priority(data: dict[str, Any], notes: list[str]) -> int | str | None:
    value = data.get("priority")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    kind = json_kind(value)
    what = "a number with a fraction" if isinstance(value, float) else f"a JSON {kind}"
    notes.append(f"priority is {what}, not an integer or a string: shown as JSON text")
    return json_text(value)


def _epoch_ms(value: str | None) -> float | None:
    """SentTimestamp-style epoch milliseconds as seconds; None when not a plain number."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 15:
        return None
    return int(value) / 1000


def _count(value: str | None) -> int | None:
    if not value or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def parse(message: QueueMessage, *, now: float | None = None) -> ParsedMessage:
    """What dbops can read out of `message`. Never raises on the body or the attributes."""
    notes: list[str] = []
    loaded = load_json(message.body)
    kind: BodyKind = "text" if loaded is NOT_JSON else json_kind(loaded)
    body_json: dict[str, Any] | None = loaded if kind == "object" else None
    if kind not in ("object", "text"):
        notes.append(f"body is a JSON {kind}, not an object: no job fields read from it")
    elif kind == "text" and message.body.lstrip()[:1] in ("{", "["):
        notes.append("body looks like JSON but does not parse (or nests too deeply): raw text")
    data = body_json or {}
    job_id = _text_field(data, "job_id", notes)
    if job_id is None:
        job_id = _attr(message.message_attributes, "job_id")
    customer = _text_field(data, "customer_id", notes)
    if customer is None:
        customer = _attr(message.message_attributes, "customer_id")
    sent_at = None
    age = None
    sent = _epoch_ms(message.attributes.get("SentTimestamp"))
    if sent is not None:
        try:
            sent_at = datetime.fromtimestamp(sent, tz=UTC)
            age = max(0.0, (now if now is not None else time.time()) - sent)
        except (ValueError, OverflowError, OSError):
            sent_at = None
    return ParsedMessage(
        message_id=message.message_id,
        receipt_handle=message.receipt_handle,
        body=message.body,
        body_json=body_json,
        body_kind=kind,
        job_id=job_id,
        customer_id=customer,
        priority=_priority(data, notes),
        reason=_text_field(data, "_dlq_reason", notes),
        sent_at=sent_at,
        age_seconds=age,
        receive_count=_count(message.attributes.get("ApproximateReceiveCount")),
        size=len(message.body.encode("utf-8", "surrogatepass")),
        attributes=message.attributes,
        message_attributes=message.message_attributes,
        notes=notes,
    )


class MessageFilter(BaseModel):
    """Which messages a command acts on. Empty filter = all messages."""

    job_ids: list[str] = Field(default_factory=list)
    customers: list[str] = Field(default_factory=list)
    matches: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None
    older_than_seconds: int | None = None
    newer_than_seconds: int | None = None
    message_ids: list[str] | None = None

    @property
    def is_empty(self) -> bool:
        return not (
            self.job_ids
            or self.customers
            or self.matches
            or self.reason
            or self.older_than_seconds
            or self.newer_than_seconds
            or self.message_ids is not None
        )

    def accepts(self, message: ParsedMessage) -> bool:
        if self.message_ids is not None and message.message_id not in self.message_ids:
            return False
        if self.job_ids and message.job_id not in self.job_ids:
            return False
        if self.customers and message.customer_id not in self.customers:
            return False
        if self.matches:
            if message.body_json is None:
                return False
            for key, expected in self.matches.items():
                actual = message.body_json.get(key)
                if actual is None or _as_text(actual) != expected:
                    return False
        if self.reason:
            haystack = (message.reason or "") if message.is_json else message.body
            if self.reason.lower() not in haystack.lower():
                return False
        if self.older_than_seconds is not None and (
            message.age_seconds is None or message.age_seconds < self.older_than_seconds
        ):
            return False
        return not (
            self.newer_than_seconds is not None
            and (message.age_seconds is None or message.age_seconds > self.newer_than_seconds)
        )


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def parse_match(items: list[str]) -> dict[str, str]:
    """`--match KEY=VALUE` options -> dict; a usage error for anything else."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"invalid --match {item!r}: use KEY=VALUE (a top-level body field)")
        parsed[key.strip()] = value
    return parsed
