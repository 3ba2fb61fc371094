"""`dlq replay` service (services/dlq/replay.py) against moto over HTTP: file validation,
masked exports refused, bodies and attributes sent exactly as they were, FIFO group ids
kept with deterministic deduplication ids, full batches, and a progress file that makes a
re-run send each line once."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from dbops.adapters.sqs import SqsQueues
from dbops.errors import RefusedError, UsageError
from dbops.services.dlq import replay, snapshot

ATTRIBUTES: dict[str, Any] = {
    "job_id": {"DataType": "String", "StringValue": "j-1"},
    "priority": {"DataType": "Number", "StringValue": "2"},
    "ratio": {"DataType": "Number.float", "StringValue": "1.5"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
    "packed": {"DataType": "Binary.gzip", "BinaryValue": b"\x1f\x8b\x08\x00"},
    "note": {"DataType": "String.custom", "StringValue": "héllo ✓"},
}


@pytest.fixture
def port(sqs_endpoint):
    return SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_wait_seconds=0)


def record(
    body: str,
    *,
    queue: str = "jobs-dlq",
    message_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    plain = snapshot.plain_attributes(attributes or {})
    return {
        "message_id": message_id or str(uuid.uuid4()),
        "queue": queue,
        "body": body,
        "message_attributes": plain,
        "system_attributes": {"MessageGroupId": group} if group else {},
    }


def write(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def received(client, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        got = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            VisibilityTimeout=60,
            WaitTimeSeconds=0 if out else 1,
        ).get("Messages", [])
        if not got:
            return out
        out.extend(got)


def run(port, path: Path, url: str, **kwargs: Any) -> replay.ReplayResult:
    plan = replay.plan(path)
    return replay.replay(
        queues=port, replay_plan=plan, target=replay.target_facts(port, url), **kwargs
    )


# --------------------------------------------------------------------------- the file
def test_masked_line_is_refused(tmp_path):
    path = write(tmp_path / "x.jsonl", [record("a"), {**record("****"), "masked": True}])
    with pytest.raises(RefusedError, match="masked export") as info:
        replay.plan(path)
    assert "line 2" in info.value.one_line() and "--reveal" in info.value.one_line()


def test_masked_header_is_refused_and_an_unmasked_header_skipped(tmp_path):
    masked = write(
        tmp_path / "m.jsonl", [{"dbops_export": {"version": 1, "masked": True}}, record("a")]
    )
    with pytest.raises(RefusedError, match="line 1"):
        replay.plan(masked)
    raw = write(
        tmp_path / "r.jsonl", [{"dbops_export": {"version": 1, "masked": False}}, record("a")]
    )
    assert replay.plan(raw).messages == 1


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("not json", "line 2: not JSON"),
        # Deeper than the parser's recursion limit: not an unexpected RecursionError.
        ("[" * 50_000 + "]" * 50_000, "line 2: not JSON"),
        ('{"a": ' * 200 + "1" + "}" * 200, "line 2: not JSON"),
        ("[1, 2]", "line 2: not a JSON object"),
        (json.dumps({"body": "x"}), "line 2: no message_id"),
        (json.dumps({"message_id": "m"}), "line 2: no body"),
        (json.dumps({**record("x"), "message_attributes": {"a": {"StringValue": "1"}}}), "no Data"),
        (
            json.dumps(
                {
                    **record("x"),
                    "message_attributes": {"b": {"DataType": "Binary", "BinaryValue": "%%"}},
                }
            ),
            "is not base64",
        ),
    ],
)
def test_bad_lines_are_usage_errors_naming_the_line(tmp_path, line, error):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(record("ok")) + "\n" + line + "\n")
    with pytest.raises(UsageError, match=error):
        replay.plan(path)


def test_empty_or_missing_file_is_a_usage_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UsageError, match="holds no messages"):
        replay.plan(tmp_path / "empty.jsonl")
    with pytest.raises(UsageError, match="cannot read"):
        replay.plan(tmp_path / "missing.jsonl")


def test_default_target_is_the_single_source_queue(tmp_path):
    one = replay.plan(write(tmp_path / "a.jsonl", [record("a"), record("b")]))
    assert replay.default_target(one) == "jobs-dlq"
    two = replay.plan(write(tmp_path / "b.jsonl", [record("a"), record("b", queue="other")]))
    with pytest.raises(UsageError, match="2 queues"):
        replay.default_target(two)


# --------------------------------------------------------------------------- sending
def test_replay_sends_bodies_and_every_attribute_type_exactly(port, queues, tmp_path):
    bodies = [json.dumps({"job_id": f"j{i}"}) for i in range(97)] + [
        "raw text",
        json.dumps({"ü": "✓"}, ensure_ascii=False),
        " ",
    ]
    items = [record(b, attributes=ATTRIBUTES) for b in bodies]
    path = write(tmp_path / "backup.jsonl", [*items, items[0]])  # a repeated line: sent once
    plan = replay.plan(path)
    assert (plan.lines, plan.messages, plan.duplicates) == (101, 100, 1)
    result = run(port, path, queues.main_url)
    assert (result.sent, result.failed, result.not_sent, result.already_sent) == (100, 0, 0, 0)
    assert result.send_calls == 10 and result.per_call == 10.0
    got = received(queues.client, queues.main_url)
    assert sorted(m.get("Body", "") for m in got) == sorted(bodies)
    for message in got:
        assert message["MessageAttributes"] == ATTRIBUTES
    sent = replay.read_progress(replay.progress_path(path))
    assert set(sent) == {i["message_id"] for i in items}
    assert set(sent.values()) == {queues.main_name}


def test_rerun_sends_nothing_twice_and_another_target_is_refused(port, queues, tmp_path):
    items = [record(f"m{i}") for i in range(25)]
    path = write(tmp_path / "x.jsonl", items)
    # a previous (killed) run sent the first 12 and recorded them
    progress = replay.progress_path(path)
    progress.write_text(
        "".join(
            json.dumps({"message_id": i["message_id"], "target": queues.main_name}) + "\n"
            for i in items[:12]
        )
        + '{"message_id": "torn'  # a kill while appending: ignored
    )
    result = run(port, path, queues.main_url)
    assert (result.already_sent, result.sent) == (12, 13)
    assert sorted(m["Body"] for m in received(queues.client, queues.main_url)) == sorted(
        i["body"] for i in items[12:]
    )
    again = run(port, path, queues.main_url)
    assert (again.already_sent, again.sent, again.send_calls) == (25, 0, 0)
    with pytest.raises(RefusedError, match="records a replay") as info:
        run(port, path, queues.dlq_url)
    assert f"remove {replay.progress_path(path)}" in info.value.one_line()


def test_fifo_replay_keeps_group_ids_and_deduplicates_by_original_id(port, queues, tmp_path):
    fifo = queues.client.create_queue(
        QueueName=f"t-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    items = [record(f"m{i}", group=f"g{i % 3}") for i in range(9)]
    path = write(tmp_path / "x.jsonl", items)
    first = run(port, path, fifo)
    assert first.target_fifo and first.sent == 9
    replay.progress_path(path).unlink()  # as if the progress was lost: SQS drops the resend
    assert run(port, path, fifo).sent == 9
    got = received(queues.client, fifo)
    assert sorted(m["Body"] for m in got) == sorted(i["body"] for i in items)
    by_body = {i["body"]: i for i in items}
    for message in got:
        original = by_body[message["Body"]]
        assert (
            message["Attributes"]["MessageGroupId"]
            == original["system_attributes"]["MessageGroupId"]
        )
        assert message["Attributes"]["MessageDeduplicationId"] == replay.deduplication_id(
            original["message_id"]
        )


def test_a_message_too_large_for_the_target_fails_alone(port, queues, tmp_path):
    small = queues.client.create_queue(
        QueueName=f"t-{uuid.uuid4().hex[:8]}", Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    items = [record("x" * 100) for _ in range(5)] + [record("y" * 2000)]
    result = run(port, write(tmp_path / "x.jsonl", items), small)
    assert (result.sent, result.failed) == (5, 1)
    assert result.failures[0].message_id == items[-1]["message_id"]
    assert "1024" in result.failures[0].reason
    assert len(received(queues.client, small)) == 5


def test_rate_and_workers_are_validated():
    with pytest.raises(UsageError, match="--rate"):
        replay.validate(rate=0, workers=1)
    with pytest.raises(UsageError, match="--workers"):
        replay.validate(rate=None, workers=0)


def test_binary_attributes_round_trip_through_base64():
    raw = {"b": {"DataType": "Binary.x", "BinaryValue": base64.b64encode(b"\x00\xff").decode()}}
    sendable = replay.sendable_attributes(raw, path=Path("f"), number=1)
    assert sendable == {"b": {"DataType": "Binary.x", "BinaryValue": b"\x00\xff"}}


def test_workers_and_rate(port, queues, tmp_path):
    items = [record(f"m{i}") for i in range(60)]
    path = write(tmp_path / "x.jsonl", items)
    result = run(port, path, queues.main_url, workers=4, rate=50)
    assert (result.sent, result.send_calls) == (60, 6)
    # 50 messages a second with a burst of 10: the last 50 cannot go out in under 1 s
    assert result.duration_seconds >= 0.9
    assert sorted(m["Body"] for m in received(queues.client, queues.main_url)) == sorted(
        i["body"] for i in items
    )


def test_a_progress_file_line_too_deep_to_parse_is_skipped_like_a_torn_one(tmp_path):
    progress = tmp_path / "x.jsonl.replay-progress"
    progress.write_text(
        json.dumps({"message_id": "m1", "target": "jobs"}) + "\n" + "[" * 50_000 + "\n"
    )
    assert replay.read_progress(progress) == {"m1": "jobs"}
