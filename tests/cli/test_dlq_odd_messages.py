"""Every DLQ command over one of each odd message (tests/odd_messages.py): bodies that are
not JSON, JSON that is not an object, fields of the wrong type, 1 MiB of letters, any
Unicode, Binary and custom-typed attributes. None may exit 1; all keep every message."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from dbops.adapters.sqs import SqsQueues
from dbops.services import dlq, slack
from tests.helpers import invoke
from tests.odd_messages import BINARY, GZIP_MAGIC, NAMES, ODD, body_of, put_odd_messages

PERSONAL = ("bob@corp.io", "jane@example.com", "7946 0958", "555-123-4567", "ünï@example.com")


@pytest.fixture
def odd(env) -> dict[str, str]:
    """name -> MessageId of each odd message, in the DLQ."""
    return dict(zip(NAMES, put_odd_messages(env.client, env.dlq_url), strict=True))


def _big(env) -> int:
    attrs = env.client.get_queue_attributes(
        QueueUrl=env.dlq_url, AttributeNames=["MaximumMessageSize"]
    )["Attributes"]
    return int(attrs["MaximumMessageSize"])


def _no_personal(text: str) -> None:
    for value in PERSONAL:
        assert value not in text, value


def test_list_reads_every_odd_message(env, odd):
    result = invoke(["dlq", "list", "-o", "json"])
    rows = {r["message_id"]: r for r in result.json}
    assert set(rows) == set(odd.values())
    by = {name: rows[mid] for name, mid in odd.items()}
    assert by["float_priority"]["job_id"] == "x" and by["float_priority"]["is_json"] is True
    assert any("priority" in n for n in by["float_priority"]["notes"])
    wrong = by["wrong_types"]
    assert (wrong["job_id"], wrong["customer"], wrong["reason"]) == ('{"a":1}', '["c1","c2"]', "7")
    assert {n.split()[0] for n in wrong["notes"]} >= {"job_id", "customer_id", "priority"}
    for name in ("json_array", "json_string", "json_number", "json_null"):
        assert by[name]["is_json"] is False and by[name]["body_kind"] == name.split("_")[1]
        assert by[name]["job_id"] is None and by[name]["notes"]
    assert by["deep_json"]["body_kind"] == "text" and by["deep_json"]["notes"]
    assert by["big"]["size"] == _big(env) and by["big"]["preview"].startswith("xxxx")
    assert by["unicode"]["job_id"] == "jöb-😀-中文" and by["unicode"]["customer"] == "客户-ü"
    assert by["typed_attributes"]["job_id"] == "odd-attrs"
    assert by["binary_attribute"]["job_id"] == "odd-binary"
    assert by["not_json"]["preview"].startswith("Traceback")
    _no_personal(result.stdout)
    revealed = invoke(["dlq", "list", "--reveal", "-o", "json"]).stdout
    assert "talking to bob@c" in revealed and "ünï@example.com" in revealed
    for fmt in ("table", "csv", "md", "jsonl"):
        invoke(["dlq", "list", "-o", fmt])
    assert env.visible(env.dlq_url) == len(ODD)


def test_show_each_odd_message(env, odd):
    for name, mid in odd.items():
        shown = invoke(["dlq", "show", mid, "-o", "json"])
        detail = shown.json
        assert detail["message_id"] == mid and detail["masked"] is True, name
        _no_personal(shown.stdout)
        invoke(["dlq", "show", mid])  # the table view too
    attrs = invoke(["dlq", "show", odd["binary_attribute"], "-o", "json"]).json
    assert attrs["message_attributes"]["blob"] == {
        "type": "Binary",
        "value": base64.b64encode(BINARY).decode(),
    }
    assert attrs["message_attributes"]["gz"]["type"] == "Binary.gzip"
    typed = invoke(["dlq", "show", odd["typed_attributes"], "-o", "json"]).json
    assert typed["message_attributes"]["score"] == {"type": "Number.float", "value": "1.5"}
    assert typed["message_attributes"]["meta"]["type"] == "String.json"
    assert typed["message_attributes"]["email"]["value"] == "****"
    assert typed["message_attributes"]["note"]["value"] == "call **** 😀"
    deep = invoke(["dlq", "show", odd["deep_json"], "-o", "json"]).json
    assert deep["is_json"] is False and deep["body"] == "[" * 5000 + "]" * 5000
    number = invoke(["dlq", "show", odd["json_number"], "-o", "json"]).json
    assert number["is_json"] is True and number["body"] == 42.5
    raw = invoke(["dlq", "show", odd["wrong_types"], "--reveal", "-o", "json"]).json
    assert raw["body"]["email"] == "jane@example.com" and raw["masked"] is False
    assert env.visible(env.dlq_url) == len(ODD)


def test_export_masked_by_default_and_raw_with_reveal(env, odd, tmp_path):
    masked = tmp_path / "masked.jsonl"
    summary = invoke(["dlq", "export", "--out", str(masked), "-o", "json"]).json
    assert summary["exported"] == len(ODD) and summary["masked"] is True
    text = masked.read_text(encoding="utf-8")
    _no_personal(text)
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == len(ODD) and all(line["masked"] is True for line in lines)

    raw_path = tmp_path / "raw.jsonl"
    raw = invoke(["dlq", "export", "--out", str(raw_path), "--reveal", "-o", "json"]).json
    assert raw["masked"] is False
    records = {
        r["message_id"]: r for r in map(json.loads, raw_path.read_text("utf-8").splitlines())
    }
    big = _big(env)
    for item in ODD:
        record = records[odd[item.name]]
        assert record["masked"] is False
        assert record["body"] == body_of(item, big), item.name  # byte-identical
        for attr, value in item.attributes.items():
            got = record["message_attributes"][attr]
            assert got["DataType"] == value["DataType"]
            if "BinaryValue" in value:
                assert base64.b64decode(got["BinaryValue"]) == value["BinaryValue"]
            else:
                assert got["StringValue"] == value["StringValue"]
    assert (
        base64.b64decode(
            records[odd["binary_attribute"]]["message_attributes"]["gz"]["BinaryValue"]
        )
        == GZIP_MAGIC
    )

    stdout = invoke(["dlq", "export", "--out", "-"])
    assert len(stdout.jsonl) == len(ODD) and "masked" in stdout.stderr
    assert env.visible(env.dlq_url) == len(ODD)


def test_monitor_and_dry_runs_over_odd_messages(env, odd):
    check = invoke(["dlq", "monitor", "--threshold", "100", "-o", "json"]).json
    assert check["depth"] == len(ODD) and check["alerting"] is False
    alert = invoke(["dlq", "monitor", "-o", "json"], code=1).json  # exit 1 = alerting
    assert alert["alerting"] is True and alert["depth"] == len(ODD)

    redrive = invoke(["dlq", "redrive", "--dry-run", "-o", "json"]).json
    assert redrive["dry_run"] is True and redrive["matched"] == len(ODD)
    purge = invoke(["dlq", "purge", "--dry-run", "-o", "json"]).json
    assert purge["dry_run"] is True and purge["total"] == len(ODD)
    delete = invoke(["dlq", "delete", "--newer-than", "1d", "--dry-run", "-o", "json"]).json
    assert delete["dry_run"] is True and delete["matched"] == len(ODD)
    by_reason = invoke(["dlq", "delete", "--reason", "timeout", "--dry-run", "-o", "json"]).json
    assert by_reason["matched"] == 1  # the non-JSON body, matched on its raw text
    assert env.visible(env.dlq_url) == len(ODD)


class _Capture:
    """A notifier that keeps the payloads (the Slack webhook transport is tested elsewhere)."""

    name = "capture"

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def send(self, payload: dict[str, Any]) -> None:
        self.payloads.append(payload)


def test_monitor_alert_quotes_every_odd_message_masked(env, odd, sqs_endpoint):
    port = SqsQueues(region="us-east-1", endpoint=sqs_endpoint)
    notifier: slack.Notifier = _Capture()  # type: ignore[assignment]
    result = dlq.monitor(
        queues=port, queue_url=env.dlq_url, threshold=1, notifier=notifier, sample_size=len(ODD)
    )
    assert result.notified is True
    assert {m.message_id for m in result.messages} == set(odd.values())
    text = json.dumps(notifier.payloads, ensure_ascii=False)  # type: ignore[attr-defined]
    _no_personal(text)
    _no_personal(result.model_dump_json())
    quoted = {m.message_id: m for m in result.messages}
    assert quoted[odd["float_priority"]].job_id == "x"
    assert quoted[odd["unicode"]].reason is not None
    assert "****" in (quoted[odd["unicode"]].reason or "")


def test_jobs_show_peeks_past_odd_messages(env, odd, job_seed):
    job = job_seed.job(idle=3600)
    env.client.send_message(
        QueueUrl=env.dlq_url,
        MessageBody=json.dumps({"job_id": job, "priority": 1.5, "_dlq_reason": "to bob@corp.io"}),
    )
    result = invoke(["jobs", "show", job, "-o", "json"])
    shown = result.json
    assert shown["dlq_error"] is None and shown["dlq_scanned"] == len(ODD) + 1
    assert [m["reason"] for m in shown["dlq_messages"]] == ["to ****"]
    _no_personal(result.stdout)
    invoke(["jobs", "show", job])
    assert env.visible(env.dlq_url) == len(ODD) + 1


def test_redrive_moves_odd_messages_byte_identical(env, odd):
    moved = invoke(["dlq", "redrive", "--yes", "-o", "json"]).json
    assert moved["moved"] == len(ODD) and moved["failed"] == 0
    got = {m["Body"]: m for m in env.drain(env.main_url)}
    big = _big(env)
    assert len(got) == len(ODD)
    for item in ODD:
        message = got[body_of(item, big)]
        attributes = message.get("MessageAttributes", {})
        for name, value in item.attributes.items():
            assert attributes[name]["DataType"] == value["DataType"]
            key = "BinaryValue" if "BinaryValue" in value else "StringValue"
            assert attributes[name][key] == value[key], (item.name, name)
    assert env.visible(env.dlq_url) == 0
