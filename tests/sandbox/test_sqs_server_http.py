"""dbops.sandbox.sqs_server's HTTP changes: kept-alive connections, one write per response,
the cached backend lookup and the quiet request log, against moto's own server."""

from __future__ import annotations

import http.client
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from dbops.sandbox.sqs_server import ThreadedSqsServer

AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request,"
    " SignedHeaders=host, Signature=0"
)
# Differ from one answer to the next whatever the server: left out of the comparison.
VARYING = {"date", "x-amzn-requestid", "connection"}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int]]:
    """(ours, moto's own) ports; both serve the same in-process moto backend."""
    ours = ThreadedSqsServer("127.0.0.1", 0, log_requests=False)
    ours.start()
    theirs = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    theirs.start()
    yield ours.get_host_and_port()[1], theirs.get_host_and_port()[1]
    ours.stop()
    theirs.stop()


def _call(conn: http.client.HTTPConnection, action: str, body: dict[str, Any]) -> Any:
    conn.request(
        "POST",
        "/",
        body=json.dumps(body),
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"AmazonSQS.{action}",
            "Authorization": AUTH.format(service="sqs"),
        },
    )
    response = conn.getresponse()
    return response.status, response.getheaders(), response.read()


def _requests(port: int, name: str) -> list[tuple[str, dict[str, Any]]]:
    url = f"http://127.0.0.1:{port}/123456789012/{name}"
    return [
        ("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["VisibilityTimeout"]}),
        ("GetQueueUrl", {"QueueName": f"{name}-missing"}),  # a 400
        ("SendMessage", {"QueueUrl": url, "MessageBody": "hello"}),
        ("ListQueues", {"QueueNamePrefix": name}),
        ("ReceiveMessage", {"QueueUrl": url, "VisibilityTimeout": 0}),
    ]


def _comparable(port: int, answer: Any) -> tuple[int, list[tuple[str, str]], Any]:
    status, headers, body = answer
    kept = [(k, v) for k, v in headers if k.lower() not in VARYING]
    parsed = json.loads(body.decode().replace(f":{port}/", ":PORT/"))
    parsed.pop("MessageId", None)  # random in both
    for message in parsed.get("Messages", []):
        message.pop("ReceiptHandle")
        message.pop("MessageId")
    return status, kept, parsed


def test_answers_match_motos_own_server_over_one_kept_connection(servers: Any) -> None:
    ours, theirs = servers
    name = f"http-{uuid.uuid4().hex[:10]}"
    setup = http.client.HTTPConnection("127.0.0.1", ours, timeout=10)
    assert _call(setup, "CreateQueue", {"QueueName": name})[0] == 200
    kept = http.client.HTTPConnection("127.0.0.1", ours, timeout=10)
    kept.connect()
    sock = kept.sock
    for (action, body), (_, their_body) in zip(
        _requests(ours, name), _requests(theirs, name), strict=True
    ):
        mine = _call(kept, action, body)
        assert kept.sock is sock, f"{action}: the connection was closed"
        assert all(k.lower() != "connection" for k, _ in mine[1])
        theirs_answer = _call(
            http.client.HTTPConnection("127.0.0.1", theirs, timeout=10), action, their_body
        )
        assert ("Connection", "close") in theirs_answer[1]  # moto's: one connection per request
        assert _comparable(ours, mine) == _comparable(theirs, theirs_answer), action


def test_an_unread_request_body_does_not_spill_into_the_next_request(servers: Any) -> None:
    ours, _ = servers
    conn = http.client.HTTPConnection("127.0.0.1", ours, timeout=10)
    conn.request("POST", "/moto-api/not-a-route", body=b"x" * 5000)  # a 404, body never read
    first = conn.getresponse()
    first.read()
    assert first.status == 404
    sock = conn.sock
    status, _, body = _call(conn, "ListQueues", {"QueueNamePrefix": "no-such-prefix-"})
    assert (status, json.loads(body)) == (200, {})
    assert conn.sock is sock


def test_cached_backend_lookup_keeps_services_apart(servers: Any) -> None:
    ours, _ = servers
    endpoint = f"http://127.0.0.1:{ours}"
    keys = {"region_name": "us-east-1", "aws_access_key_id": "t", "aws_secret_access_key": "t"}
    sqs = boto3.client("sqs", endpoint_url=endpoint, **keys)
    sts = boto3.client("sts", endpoint_url=endpoint, **keys)
    name = f"cache-{uuid.uuid4().hex[:10]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert sts.get_caller_identity()["Account"] == "123456789012"  # STS, not SQS, answers
    sqs.send_message(QueueUrl=url, MessageBody="after sts")
    got = sqs.receive_message(QueueUrl=url)["Messages"]
    assert [m["Body"] for m in got] == ["after sts"]
    assert sts.get_caller_identity()["Arn"].startswith("arn:aws:sts::123456789012:")


def test_request_log_is_quiet_for_tests_and_kept_for_the_sandbox(
    servers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_port, _ = servers
    loud = ThreadedSqsServer("127.0.0.1", 0, log_requests=True)  # as the sandbox's main()
    loud.start()
    try:
        caplog.set_level(logging.INFO, logger="werkzeug")
        for port in (quiet_port, loud.get_host_and_port()[1]):
            status, _, _ = _call(
                http.client.HTTPConnection("127.0.0.1", port, timeout=10), "ListQueues", {}
            )
            assert status == 200
    finally:
        loud.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert len(lines) == 1 and '"POST / HTTP/1.1" 200' in lines[0], lines
