"""Job messages as found on the queues: parsing tolerant of every shape in DESIGN.md s.3,
and the filters shared by `dlq list/export/redrive/delete`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from dbops.errors import UsageError
from dbops.ports import QueueMessage


class ParsedMessage(BaseModel):
    """A received message plus what dbops could read out of it."""

    message_id: str
    receipt_handle: str = Field(exclude=True)
    body: str
    body_json: dict[str, Any] | None = None
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

    @property
    def is_json(self) -> bool:
        return self.body_json is not None


def _attr(message_attributes: dict[str, Any], name: str) -> str | None:
    value = message_attributes.get(name)
    if isinstance(value, dict):
        got = value.get("StringValue")
        return str(got) if got is not None else None
    return None


def parse(message: QueueMessage, *, now: float | None = None) -> ParsedMessage:
    body_json: dict[str, Any] | None = None
    try:
        loaded = json.loads(message.body)
        if isinstance(loaded, dict):
            body_json = loaded
    except (ValueError, TypeError):
        body_json = None
    data = body_json or {}
    job_id = data.get("job_id")
    job_id = str(job_id) if job_id is not None else _attr(message.message_attributes, "job_id")
    customer = data.get("customer_id")
    customer = (
        str(customer) if customer is not None else _attr(message.message_attributes, "customer_id")
    )
    sent_ms = message.attributes.get("SentTimestamp")
    sent_at = None
    age = None
    if sent_ms and str(sent_ms).isdigit():
        sent_at = datetime.fromtimestamp(int(sent_ms) / 1000, tz=UTC)
        age = max(0.0, (now if now is not None else time.time()) - int(sent_ms) / 1000)
    receive = message.attributes.get("ApproximateReceiveCount")
    reason = data.get("_dlq_reason")
    return ParsedMessage(
        message_id=message.message_id,
        receipt_handle=message.receipt_handle,
        body=message.body,
        body_json=body_json,
        job_id=job_id,
        customer_id=customer,
        priority=data.get("priority"),
        reason=str(reason) if reason is not None else None,
        sent_at=sent_at,
        age_seconds=age,
        receive_count=int(receive) if receive and str(receive).isdigit() else None,
        size=len(message.body.encode()),
        attributes=message.attributes,
        message_attributes=message.message_attributes,
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
