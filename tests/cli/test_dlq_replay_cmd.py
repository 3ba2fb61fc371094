"""`dbops dlq replay` through the CLI, against moto over HTTP and the test Postgres:
`dlq purge` followed by `dlq replay BACKUP` is an undo (same bodies, same attributes, FIFO
group ids kept); the destructive flow (preview, confirm, dry run, action log); masked
exports refused."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.helpers import invoke, one_line_error

ATTRIBUTES: dict[str, Any] = {
    "job_id": {"DataType": "String", "StringValue": "j-1"},
    "priority": {"DataType": "Number", "StringValue": "2"},
    "ratio": {"DataType": "Number.float", "StringValue": "1.5"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
    "packed": {"DataType": "Binary.gzip", "BinaryValue": b"\x1f\x8b\x08\x00"},
    "note": {"DataType": "String.custom", "StringValue": "héllo ✓"},
}


def send(client, url: str, bodies: list[str], **extra: Any) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": body, "MessageAttributes": ATTRIBUTES, **extra}
            for i, body in enumerate(bodies[start : start + 10])
        ]
        if "MessageGroupId" in extra:
            for entry in entries:
                entry["MessageDeduplicationId"] = uuid.uuid4().hex
        assert not client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def bodies_of(n: int, *, odd: bool = True) -> list[str]:
    """n unique bodies; the last two are not what the parsed view expects (`odd`; `dlq
    export` cannot read the second one yet, purge and replay must)."""
    run = uuid.uuid4().hex[:6]
    out = [json.dumps({"job_id": f"{run}-{i}", "customer_id": "acme"}) for i in range(n - 2)]
    tail = json.dumps({"priority": 1.5, "ü": "✓"} if odd else {"ü": "✓"}, ensure_ascii=False)
    return [*out, "raw text: not JSON", tail]


def action_rows(db, command: str) -> list[dict[str, Any]]:
    return db.execute(
        "select * from dbops_action_log where command = %s order by id", (command,)
    ).fetchall()


def snapshot(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """What must survive an undo: each body with its attributes (order-free)."""
    return sorted(
        (m["Body"], json.dumps(m.get("MessageAttributes", {}), sort_keys=True, default=repr))
        for m in messages
    )


def test_purge_then_replay_backup_is_an_undo(env, db, tmp_path):
    bodies = bodies_of(30)
    send(env.client, env.dlq_url, bodies)
    backup = tmp_path / "backup.jsonl"
    purged = invoke(["dlq", "purge", "--backup", str(backup), "--yes", "-o", "json"]).json
    assert purged["purged"] == 30 and env.visible(env.dlq_url) == 0

    result = invoke(["dlq", "replay", str(backup), "--yes", "-o", "json"]).json
    assert (result["target"], result["sent"], result["failed"]) == (env.dlq_name, 30, 0)
    assert result["per_call"] >= 9.5 and result["send_calls"] == 3
    restored = env.drain(env.dlq_url)
    expected = [{"Body": b, "MessageAttributes": ATTRIBUTES} for b in bodies]
    assert snapshot(restored) == snapshot(expected)

    rows = action_rows(db, "dlq replay")
    assert [r["outcome"] for r in rows] == ["ok"]
    assert rows[0]["counts"]["sent"] == 30
    assert rows[0]["arguments"]["to"] == env.dlq_name

    again = invoke(["dlq", "replay", str(backup), "--yes", "-o", "json"]).json
    assert (again["already_sent"], again["sent"]) == (30, 0)
    assert env.visible(env.dlq_url) == 0


def test_fifo_purge_then_replay_keeps_group_ids(env, tmp_path):
    fifo = env.client.create_queue(
        QueueName=f"t-{uuid.uuid4().hex[:8]}-dlq.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    send(env.client, fifo, ["a1", "a2", "a3"], MessageGroupId="group-a")
    send(env.client, fifo, ["b1", "b2"], MessageGroupId="group-b")
    backup = tmp_path / "backup.jsonl"
    invoke(["dlq", "purge", "--queue", fifo, "--backup", str(backup), "--yes"])
    result = invoke(["dlq", "replay", str(backup), "--yes", "-o", "json"]).json
    assert result["target_fifo"] is True and result["sent"] == 5
    restored = env.drain(fifo)
    groups = {m["Body"]: m["Attributes"]["MessageGroupId"] for m in restored}
    assert groups == {
        "a1": "group-a",
        "a2": "group-a",
        "a3": "group-a",
        "b1": "group-b",
        "b2": "group-b",
    }
    assert [m["Body"] for m in restored if m["Body"].startswith("a")] == ["a1", "a2", "a3"]


def test_export_replayed_to_another_queue(env, tmp_path):
    bodies = bodies_of(12, odd=False)
    send(env.client, env.dlq_url, bodies)
    export = tmp_path / "export.jsonl"
    invoke(["dlq", "export", "--out", str(export), "--reveal"])
    result = invoke(["dlq", "replay", str(export), "--to", env.main_name, "--yes", "-o", "json"])
    assert result.json["sent"] == 12
    assert sorted(m["Body"] for m in env.drain(env.main_url)) == sorted(bodies)
    assert env.visible(env.dlq_url) == 12  # an export is a copy: the DLQ still holds them


def test_replay_dry_run_and_refusal_send_nothing(env, db, tmp_path):
    send(env.client, env.dlq_url, bodies_of(4, odd=False))
    export = tmp_path / "export.jsonl"
    invoke(["dlq", "export", "--out", str(export), "--reveal"])
    preview = invoke(
        ["dlq", "replay", str(export), "--to", env.main_name, "--dry-run", "-o", "json"]
    )
    assert (preview.json["to_send"], preview.json["dry_run"]) == (4, True)
    assert "Replay 4 of 4 message(s)" in preview.stderr
    refused = invoke(["dlq", "replay", str(export), "--to", env.main_name], code=6)
    assert refused.stderr.splitlines()[-1].startswith("Error: refusing to replay 4 message(s)")
    assert env.visible(env.main_url) == 0
    assert not Path(str(export) + ".replay-progress").exists()
    assert [r["outcome"] for r in action_rows(db, "dlq replay")] == ["dry_run", "refused"]


def test_masked_export_is_refused_with_one_line(env, tmp_path):
    masked = tmp_path / "masked.jsonl"
    masked.write_text(
        json.dumps({"dbops_export": {"version": 1, "masked": True}})
        + "\n"
        + json.dumps({"message_id": "m1", "queue": env.dlq_name, "body": '{"email": "****"}'})
        + "\n"
    )
    result = invoke(["dlq", "replay", str(masked), "--yes"], code=6)
    line = one_line_error(result.stderr)
    assert "masked export" in line and "--reveal" in line
    per_line = tmp_path / "per-line.jsonl"
    per_line.write_text(
        json.dumps({"message_id": "m1", "queue": env.dlq_name, "body": "x", "masked": True}) + "\n"
    )
    assert "masked export" in one_line_error(
        invoke(["dlq", "replay", str(per_line)], code=6).stderr
    )
    assert env.visible(env.dlq_url) == 0


def test_replay_without_a_source_queue_asks_for_to(env, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"message_id": "m1", "body": "x"}) + "\n")
    result = invoke(["dlq", "replay", str(path), "--yes"], code=2)
    assert "--to QUEUE" in one_line_error(result.stderr)
