"""One of each odd message a DLQ holds in the field, for tests of every DLQ command.

    from tests.odd_messages import ODD, put_odd_messages
    ids = put_odd_messages(client, queue_url)   # ids[i] is the message ODD[i] describes

Every body and attribute here is valid for SQS (AWS, LocalStack and moto accept it): no
NUL and no other C0 control character than tab, CR and LF. `BIG` is 1 MiB of letters
(or the queue's MaximumMessageSize when it is smaller and cannot be raised).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024
BINARY = bytes(range(256))  # every byte value, NUL and invalid UTF-8 included
GZIP_MAGIC = b"\x1f\x8b\x08\x00\xff\xfe"


@dataclass(frozen=True)
class Odd:
    name: str
    body: str  # for "big", a placeholder: the body is built at the queue's size limit
    attributes: dict[str, Any] = field(default_factory=dict)


ODD: list[Odd] = [
    Odd("not_json", "Traceback (most recent call last): timeout talking to bob@corp.io {"),
    Odd("json_array", '[1, "two", {"job_id": "in-an-array"}]'),
    Odd("json_string", '"just a string, call +44 20 7946 0958"'),
    Odd("json_number", "42.5"),
    Odd("json_null", "null"),
    Odd("float_priority", '{"job_id": "x", "priority": 1.5}'),
    Odd(
        "wrong_types",
        json.dumps(
            {
                "job_id": {"a": 1},
                "customer_id": ["c1", "c2"],
                "priority": {"p": True},
                "_dlq_reason": 7,
                "email": "jane@example.com",
            }
        ),
    ),
    Odd("deep_json", "[" * 5000 + "]" * 5000),
    Odd("big", ""),
    Odd(
        "unicode",
        json.dumps(
            {
                "job_id": "jöb-😀-中文",
                "customer_id": "客户-ü",
                "_dlq_reason": "tab\there, CR\rLF\n, DEL\x7f, NEL\x85, LS\u2028, "
                "RTL \u202e, ZWSP \u200b, BOM \ufeff, astral 𝄞, mail ünï@example.com",
            },
            ensure_ascii=False,
        ),
    ),
    Odd("control_text", "\ufeffraw\ttext\r\nwith \x7f\x85\u2028 and 🙂 but no NUL"),
    Odd(
        "binary_attribute",
        json.dumps({"job_id": "odd-binary", "_dlq_reason": "binary attribute"}),
        {
            "blob": {"DataType": "Binary", "BinaryValue": BINARY},
            "gz": {"DataType": "Binary.gzip", "BinaryValue": GZIP_MAGIC},
            "job_id": {"DataType": "String", "StringValue": "odd-binary"},
        },
    ),
    Odd(
        "typed_attributes",
        "not json, job id in the attributes",
        {
            "job_id": {"DataType": "String", "StringValue": "odd-attrs"},
            "score": {"DataType": "Number.float", "StringValue": "1.5"},
            "priority": {"DataType": "Number", "StringValue": "-3"},
            "meta": {"DataType": "String.json", "StringValue": '{"a": [1, 2]}'},
            "email": {"DataType": "String", "StringValue": "jane@example.com"},
            "note": {"DataType": "String", "StringValue": "call 555-123-4567 😀"},
        },
    ),
]

NAMES = [o.name for o in ODD]


def big_body_size(client: Any, queue_url: str) -> int:
    """1 MiB, raising the queue's MaximumMessageSize to it when the endpoint allows."""
    # An endpoint with a lower ceiling refuses: then use what the queue takes.
    with contextlib.suppress(Exception):
        client.set_queue_attributes(QueueUrl=queue_url, Attributes={"MaximumMessageSize": str(MIB)})
    attrs = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"])
    return min(MIB, int(attrs["Attributes"].get("MaximumMessageSize", MIB)))


def body_of(odd: Odd, big_size: int) -> str:
    return "x" * big_size if odd.name == "big" else odd.body


def put_odd_messages(client: Any, queue_url: str) -> list[str]:
    """Send one message per `ODD` entry (in order) to `queue_url`; their MessageIds."""
    size = big_body_size(client, queue_url)
    ids: list[str] = []
    for odd in ODD:
        kwargs: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body_of(odd, size)}
        if odd.attributes:
            kwargs["MessageAttributes"] = odd.attributes
        ids.append(client.send_message(**kwargs)["MessageId"])
    return ids
