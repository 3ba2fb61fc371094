"""SqsQueues against the session's SQS server over real HTTP (moto, or LocalStack via
DBOPS_TEST_SQS_ENDPOINT): per-entry batch results, receive/delete/visibility, and
one-line, secret-free error translation."""

from __future__ import annotations

import json

import pytest

from dbops.adapters.sqs import SqsQueues, queue_name
from dbops.errors import NotFoundError, RemoteError
from dbops.ports import OutgoingMessage
from tests.helpers import free_port

pytestmark = pytest.mark.sqs

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"


@pytest.fixture
def sqs(sqs_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_attempts=2)


def _send(sqs, url, *bodies, **attributes):
    entries = [
        OutgoingMessage(
            id=f"m{i}",
            body=body,
            message_attributes={
                "job_id": {"DataType": "String", "StringValue": f"job-{i}"},
                "priority": {"DataType": "Number", "StringValue": "2"},
            },
            **attributes,
        )
        for i, body in enumerate(bodies)
    ]
    return sqs.send_batch(url, entries)


def _assert_one_line_without_secrets(error: Exception) -> str:
    text = error.one_line()  # type: ignore[attr-defined]
    assert "\n" not in text and "Traceback" not in text
    assert SECRET not in text and "testing" not in text
    return text


# --------------------------------------------------------------------------- batches
def test_send_batch_reports_every_entry(sqs, queues):
    result = _send(sqs, queues.main_url, '{"job_id": "a"}', '{"job_id": "b"}', "not json")
    assert set(result.successful) == {"m0", "m1", "m2"} and not result.failed
    assert all(result.successful.values())  # message ids
    bodies = sorted(m["Body"] for m in queues.drain(queues.main_url))
    assert bodies == sorted(['{"job_id": "a"}', '{"job_id": "b"}', "not json"])


def test_send_batch_partial_failure_is_reported_per_entry(sqs, queues):
    """One batch, two good entries and two invalid ones (a delay over SQS's 900 s
    maximum, a body with a character SQS does not accept): implementations differ in
    which they refuse, but every refusal is per entry and the good entries are sent."""
    entries = [
        OutgoingMessage(id="good1", body='{"job_id": "1"}'),
        OutgoingMessage(id="late", body='{"job_id": "late"}', delay_seconds=901),
        OutgoingMessage(id="nul", body="bad \x00 body"),
        OutgoingMessage(id="good2", body='{"job_id": "2"}'),
    ]
    result = sqs.send_batch(queues.main_url, entries)
    assert {"good1", "good2"} <= set(result.successful)
    assert result.failed and set(result.failed) <= {"late", "nul"}
    assert set(result.successful) | set(result.failed) == {e.id for e in entries}
    assert not set(result.successful) & set(result.failed)
    for reason in result.failed.values():
        code, _, message = reason.partition(": ")
        assert code and message and "\n" not in reason
    visible = {m["Body"] for m in queues.drain(queues.main_url)}
    assert {'{"job_id": "1"}', '{"job_id": "2"}'} <= visible
    assert '{"job_id": "late"}' not in visible  # sent with a delay, or refused
    assert ("bad \x00 body" in visible) == ("nul" in result.successful)


def test_empty_batches_make_no_call(sqs):
    unreachable = "http://127.0.0.1:1/000000000000/nowhere"
    assert sqs.send_batch(unreachable, []).successful == {}
    assert sqs.delete_batch(unreachable, {}).failed == {}
    assert sqs.change_visibility_batch(unreachable, {}, 0).failed == {}


# --------------------------------------------------------------------------- receive etc.
def test_receive_delete_and_change_visibility(sqs, queues):
    _send(sqs, queues.main_url, '{"job_id": "a"}', '{"job_id": "b"}', "plain text")
    got = []
    for _ in range(5):  # SQS may hand out fewer than asked per call
        got += sqs.receive(queues.main_url, max_messages=10, visibility_timeout=120)
        if len(got) == 3:
            break
    assert sorted(m.body for m in got) == sorted(
        ['{"job_id": "a"}', '{"job_id": "b"}', "plain text"]
    )
    first = got[0]
    assert first.message_id and first.receipt_handle
    assert first.attributes["ApproximateReceiveCount"] == "1"
    assert first.message_attributes["job_id"]["DataType"] == "String"
    assert first.message_attributes["job_id"]["StringValue"].startswith("job-")
    assert first.md5_of_body
    # In flight: nothing else to receive.
    assert sqs.receive(queues.main_url, max_messages=10) == []

    handles = {f"e{i}": m.receipt_handle for i, m in enumerate(got)}
    bad = {"e0": handles["e0"], "bogus": "not-a-receipt-handle"}
    changed = sqs.change_visibility_batch(queues.main_url, bad, 0)
    assert set(changed.successful) == {"e0"} and set(changed.failed) == {"bogus"}
    again = sqs.receive(queues.main_url, max_messages=10, visibility_timeout=120)
    assert [m.body for m in again] == [got[0].body]
    assert again[0].attributes["ApproximateReceiveCount"] == "2"

    handles["e0"] = again[0].receipt_handle
    deleted = sqs.delete_batch(queues.main_url, {**handles, "bogus": "not-a-receipt-handle"})
    assert set(deleted.successful) == {"e0", "e1", "e2"}
    assert set(deleted.failed) == {"bogus"}
    assert deleted.failed["bogus"].split(":")[0]  # "Code: message"
    assert queues.drain(queues.main_url) == []


def test_binary_and_custom_typed_attributes_round_trip_byte_identical(sqs, queues):
    """receive() keeps BinaryValue as bytes and send_batch() sends them back unchanged,
    with every data type (custom suffixes included) and any Unicode body."""
    blob = bytes(range(256)) * 4  # NUL and invalid UTF-8 included
    attributes = {
        "blob": {"DataType": "Binary", "BinaryValue": blob},
        "gz": {"DataType": "Binary.gzip", "BinaryValue": b"\x1f\x8b\x00"},
        "score": {"DataType": "Number.float", "StringValue": "1.5"},
        "meta": {"DataType": "String.json", "StringValue": '{"a": "ü😀"}'},
        "n": {"DataType": "Number", "StringValue": "-12.50"},
    }
    body = "ü 😀 中文\t\r\n\x7f \u2028 not json"
    sent = sqs.send_batch(
        queues.dlq_url, [OutgoingMessage(id="0", body=body, message_attributes=attributes)]
    )
    assert not sent.failed
    (received,) = sqs.receive(queues.dlq_url, visibility_timeout=60)
    assert received.body == body
    assert received.message_attributes == attributes
    assert isinstance(received.message_attributes["blob"]["BinaryValue"], bytes)
    again = sqs.send_batch(
        queues.main_url,
        [
            OutgoingMessage(
                id="0", body=received.body, message_attributes=received.message_attributes
            )
        ],
    )
    assert not again.failed
    (copy,) = sqs.receive(queues.main_url, visibility_timeout=60)
    assert copy.body == body and copy.message_attributes == attributes
    assert copy.md5_of_body == received.md5_of_body


def test_receive_clamps_max_messages(sqs, queues):
    _send(sqs, queues.main_url, "x")
    assert len(sqs.receive(queues.main_url, max_messages=50)) <= 10
    assert sqs.receive(queues.main_url, max_messages=0) == []  # asks for 1; x is in flight


@pytest.mark.parametrize(("cap", "sent"), [(None, 1), (0, 0), (5, 1)])
def test_max_wait_seconds_caps_the_long_poll_sent(sqs_endpoint, queues, cap, sent):
    sqs = SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_wait_seconds=cap)
    asked: list[int] = []
    # Observed on the way out (botocore's own event), not mocked: the call still goes out.
    sqs.client.meta.events.register(
        "provide-client-params.sqs.ReceiveMessage",
        lambda params, **_: asked.append(params["WaitTimeSeconds"]),
    )
    _send(sqs, queues.main_url, "x")
    assert [m.body for m in sqs.receive(queues.main_url, wait_seconds=1)] == ["x"]
    assert asked == [sent]


def test_queue_attributes_dead_letter_sources_and_listing(sqs, queues):
    attrs = sqs.get_attributes(queues.main_url)
    policy = json.loads(attrs["RedrivePolicy"])
    dlq_arn = sqs.get_attributes(queues.dlq_url)["QueueArn"]
    assert policy["deadLetterTargetArn"] == dlq_arn
    assert int(policy["maxReceiveCount"]) == 3
    sources = sqs.dead_letter_sources(queues.dlq_url)
    assert [queue_name(u) for u in sources] == [queues.main_name]
    listed = {queue_name(u) for u in sqs.list_queues(prefix=queues.main_name)}
    assert listed == {queues.main_name, queues.dlq_name}
    assert queue_name(sqs.resolve_url(queues.dlq_name)) == queues.dlq_name
    assert sqs.resolve_url(queues.main_url) == queues.main_url


def test_purge(sqs, queues):
    _send(sqs, queues.dlq_url, "a", "b")
    sqs.purge(queues.dlq_url)
    assert queues.drain(queues.dlq_url) == []


def test_identity_and_metrics_never_raise(sqs, queues):
    arn = sqs.caller_identity()
    assert arn is None or arn.startswith("arn:")
    age = sqs.oldest_message_age(queues.main_url)
    assert age is None or age >= 0


# --------------------------------------------------------------------------- errors
def test_nonexistent_queue_is_not_found(sqs, sqs_endpoint, queues):
    missing_url = queues.main_url.rsplit("/", 1)[0] + "/dbops-no-such-queue"
    for call in (
        lambda: sqs.get_attributes(missing_url),
        lambda: sqs.send_batch(missing_url, [OutgoingMessage(id="a", body="x")]),
        lambda: sqs.receive(missing_url),
        lambda: sqs.resolve_url("dbops-no-such-queue"),
    ):
        with pytest.raises(NotFoundError) as caught:
            call()
        text = _assert_one_line_without_secrets(caught.value)
        assert "dbops-no-such-queue" in text
        assert caught.value.exit_code == 4


def test_unreachable_endpoint_is_a_remote_error(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    endpoint = f"http://127.0.0.1:{free_port()}"
    sqs = SqsQueues(region="us-east-1", endpoint=endpoint, max_attempts=1, connect_timeout=1)
    url = f"{endpoint}/000000000000/jobs"
    for call in (
        lambda: sqs.get_attributes(url),
        lambda: sqs.send_batch(url, [OutgoingMessage(id="a", body="x")]),
        lambda: sqs.list_queues(),
    ):
        with pytest.raises(RemoteError) as caught:
            call()
        text = _assert_one_line_without_secrets(caught.value)
        assert "cannot reach SQS endpoint" in text
        assert caught.value.exit_code == 5
    assert sqs.caller_identity() is None
