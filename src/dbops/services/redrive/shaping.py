"""Message shaping for the target: attributes as sendable, the redrive-count stamp, the
AWSTraceHeader system attribute, FIFO group and deduplication ids, and size batching."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from dbops.ports import OutgoingMessage
from dbops.services.messages import ParsedMessage
from dbops.services.redrive.models import (
    MAX_ATTRIBUTES,
    REDRIVE_COUNT_ATTRIBUTE,
    TRACE_HEADER,
    SampleRow,
)


def attribute_size(attributes: Mapping[str, Any]) -> int:
    """Bytes SQS counts for message attributes: name + data type + value."""
    size = 0
    for name, value in attributes.items():
        size += len(name.encode())
        if not isinstance(value, Mapping):
            continue
        size += len(str(value.get("DataType", "")).encode())
        if value.get("StringValue") is not None:
            size += len(str(value["StringValue"]).encode())
        binary = value.get("BinaryValue")
        if binary is not None:
            size += len(binary if isinstance(binary, bytes | bytearray) else str(binary).encode())
    return size


def message_size(message: OutgoingMessage) -> int:
    return len(message.body.encode()) + attribute_size(message.message_attributes)


def clean_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Message attributes as received -> as sendable (drop empty list fields)."""
    cleaned: dict[str, Any] = {}
    for name, value in attributes.items():
        if not isinstance(value, Mapping) or "DataType" not in value:
            continue
        item: dict[str, Any] = {"DataType": value["DataType"]}
        if value.get("StringValue") is not None:
            item["StringValue"] = value["StringValue"]
        if value.get("BinaryValue") is not None:
            item["BinaryValue"] = value["BinaryValue"]
        if len(item) > 1:
            cleaned[name] = item
    return cleaned


def stamp_redrive_count(attributes: dict[str, Any]) -> bool:
    """Increment `dbops-redrive-count` in place when the 10-attribute limit allows."""
    current = attributes.get(REDRIVE_COUNT_ATTRIBUTE)
    if current is None and len(attributes) >= MAX_ATTRIBUTES:
        return False
    count = 0
    if isinstance(current, Mapping):
        try:
            count = int(float(str(current.get("StringValue", "0"))))
        except ValueError:
            count = 0
    attributes[REDRIVE_COUNT_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(count + 1)}
    return True


def split_by_size(
    entries: Sequence[OutgoingMessage], limit: int
) -> tuple[list[list[OutgoingMessage]], list[tuple[OutgoingMessage, int]]]:
    """Send batches (at most 10 entries, total payload <= limit) plus the entries too
    large to send at all, each with its size. Order is kept."""
    batches: list[list[OutgoingMessage]] = []
    oversized: list[tuple[OutgoingMessage, int]] = []
    current: list[OutgoingMessage] = []
    current_size = 0
    for entry in entries:
        size = message_size(entry)
        if size > limit:
            oversized.append((entry, size))
            continue
        if current and (len(current) >= 10 or current_size + size > limit):
            batches.append(current)
            current, current_size = [], 0
        current.append(entry)
        current_size += size
    if current:
        batches.append(current)
    return batches, oversized


def outgoing(entry_id: str, m: ParsedMessage, *, limit: int, target_fifo: bool) -> OutgoingMessage:
    """`m` as a send entry: body and attributes kept, `dbops-redrive-count` stamped when it
    fits, AWSTraceHeader carried over, FIFO group kept with a fresh deduplication id."""
    attributes = clean_attributes(m.message_attributes)
    unstamped = dict(attributes)
    stamp_redrive_count(attributes)
    entry = OutgoingMessage(id=entry_id, body=m.body, message_attributes=attributes)
    trace = m.attributes.get(TRACE_HEADER)
    if trace:
        entry.system_attributes = {TRACE_HEADER: trace}
    if message_size(entry) > limit:
        entry.message_attributes = unstamped  # fits without the stamp? keep it movable
    if target_fifo:
        entry.message_group_id = m.attributes.get("MessageGroupId") or m.job_id or m.message_id
        entry.message_deduplication_id = uuid.uuid4().hex
    return entry


def strip_system_attributes(batch: Sequence[OutgoingMessage]) -> list[OutgoingMessage]:
    return [e.model_copy(update={"system_attributes": {}}) for e in batch]


def refuses_system_attributes(reason: str) -> bool:
    """A send error about the message system attributes (AWSTraceHeader) of an entry."""
    text = reason.lower()
    return "messagesystemattribute" in text.replace(" ", "") or "awstraceheader" in text


def sample_row(m: ParsedMessage) -> SampleRow:
    return SampleRow(
        message_id=m.message_id,
        job_id=m.job_id,
        customer_id=m.customer_id,
        reason=m.reason,
        age_seconds=round(m.age_seconds, 1) if m.age_seconds is not None else None,
        size=m.size,
    )
