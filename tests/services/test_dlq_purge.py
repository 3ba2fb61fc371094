"""Purge and delete (services/dlq/purging.py and snapshot.py) against moto over HTTP:
snapshot-bounded, every removed message backed up first, deleted by the receipt handles of
the backup scan, new arrivals left in place, --fast (PurgeQueue) kept behind its guard."""

from __future__ import annotations

import json
import stat
import uuid
from typing import Any

import pytest

from dbops.adapters.sqs import SqsQueues
from dbops.errors import ExitCode, Interrupted, RefusedError, RemoteError, UsageError
from dbops.services import dlq
from dbops.services.dlq import purging as dlq_purge
from dbops.services.dlq import snapshot
from dbops.services.messages import MessageFilter
from tests.helpers import require_purge_in_progress_rule

# One of each SQS data type, custom suffixes included.
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
    return SqsQueues(region="us-east-1", endpoint=sqs_endpoint)


def send(
    client, url: str, bodies: list[str], attributes: dict[str, Any] | None = None
) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        entries = []
        for i, body in enumerate(bodies[start : start + 10]):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": body}
            if attributes:
                entry["MessageAttributes"] = attributes
            entries.append(entry)
        response = client.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed")
        ids.extend(
            e["MessageId"] for e in sorted(response["Successful"], key=lambda e: int(e["Id"]))
        )
    return ids


def job_body(job_id: str, customer: str = "acme", **extra: Any) -> str:
    return json.dumps(
        {"job_id": job_id, "customer_id": customer, "package_size": 3, "priority": 2, **extra}
    )


def depth(queues, url: str) -> tuple[int, int]:
    attrs = queues.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def backup_lines(path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# --------------------------------------------------------------------------- purge
def test_purge_backs_up_then_deletes_exactly_what_it_received(port, queues, tmp_path):
    bodies = [job_body(f"j{i}") for i in range(15)] + [
        "raw text, not JSON",
        '{"job_id": "x", "priority": 1.5}',  # a field of an unexpected type
        json.dumps({"note": "ünïcödé ✓"}, ensure_ascii=False),
    ]
    send(queues.client, queues.dlq_url, bodies, ATTRIBUTES)
    backup = tmp_path / "new-folder" / "backup.jsonl"
    result = dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=backup)
    assert result.mode == "snapshot" and result.snapshot == 18
    assert (result.scanned, result.backed_up, result.purged, result.failed) == (18, 18, 18, 0)
    assert (result.left_in_place, result.duplicates, result.stopped) == (0, 0, "snapshot")
    assert result.counts() == {
        "snapshot": 18,
        "scanned": 18,
        "backed_up": 18,
        "purged": 18,
        "failed": 0,
        "left_in_place": 0,
    }
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.parent.stat().st_mode) == 0o700
    lines = backup_lines(backup)
    assert sorted(r["body"] for r in lines) == sorted(bodies)
    assert all(r["message_attributes"]["note"]["StringValue"] == "héllo ✓" for r in lines)
    assert all(r["queue"] == queues.dlq_name for r in lines)
    assert depth(queues, queues.dlq_url) == (0, 0)
    assert queues.drain(queues.dlq_url) == []


def test_purge_is_reexported_from_the_dlq_module():
    assert dlq.purge is dlq_purge.purge and dlq.delete_messages is dlq_purge.delete_messages


@pytest.mark.parametrize("phase", ["scan", "delete"])
def test_interrupted_purge_carries_its_counts_and_releases_the_rest(port, queues, tmp_path, phase):
    """Ctrl-C (a KeyboardInterrupt from the progress callback) becomes `Interrupted` (exit
    130), chained from it, carrying the PurgeResult so far: the one partial-result carrier
    the action log reads. Every held message not deleted is visible again at once."""
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(25)])
    calls = 0

    def progress(scanned: int, done: int) -> None:
        nonlocal calls
        calls += 1
        # one Ctrl-C: on the 2nd scanned batch, or after the first delete batch (3 scans)
        if calls == (2 if phase == "scan" else 4):
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as caught:
        dlq_purge.purge(
            queues=port,
            queue_url=queues.dlq_url,
            backup=tmp_path / "b.jsonl",
            workers=1,
            progress=progress,
        )
    exc = caught.value
    assert exc.exit_code == ExitCode.INTERRUPTED == 130
    assert isinstance(exc.__cause__, KeyboardInterrupt)
    partial = exc.partial_result
    assert isinstance(partial, dlq_purge.PurgeResult)
    counts = partial.counts()
    assert counts["snapshot"] == 25 and counts["failed"] == 0
    if phase == "scan":
        # the partial backup was removed (nothing deleted): none counts as backed up
        assert (counts["scanned"], counts["backed_up"], counts["purged"]) == (20, 0, 0)
        assert depth(queues, queues.dlq_url) == (25, 0)
        assert not (tmp_path / "b.jsonl").exists()
    else:
        assert (counts["scanned"], counts["backed_up"], counts["purged"]) == (25, 25, 10)
        assert depth(queues, queues.dlq_url) == (15, 0)


def test_a_failed_delete_carries_its_counts(port, queues, tmp_path):
    """A DbopsError raised mid-run gets the DeleteResult so far as `partial_result`."""
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(15)])
    calls = 0

    def progress(scanned: int, done: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RemoteError("the network went away")

    with pytest.raises(RemoteError) as caught:
        dlq_purge.delete_messages(
            queues=port,
            queue_url=queues.dlq_url,
            message_filter=MessageFilter(customers=["acme"]),
            backup=None,
            progress=progress,
        )
    partial = caught.value.partial_result
    assert isinstance(partial, dlq_purge.DeleteResult)
    assert partial.counts() == {
        "snapshot": 15,
        "scanned": 15,
        "matched": 15,
        "deleted": 0,
        "failed": 0,
    }
    assert depth(queues, queues.dlq_url) == (15, 0)


def test_purge_scans_at_most_the_snapshot(port, queues, tmp_path):
    """Messages beyond the depth at the start are never received: the scan is finite."""
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(25)])
    backup = tmp_path / "b.jsonl"
    result = dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=backup, snapshot=10)
    assert (result.scanned, result.purged, result.left_in_place) == (10, 10, 15)
    assert len(backup_lines(backup)) == 10
    assert depth(queues, queues.dlq_url) == (15, 0)  # untouched: visible at once


def test_purge_with_arrivals_during_the_scan_loses_nothing(port, queues, tmp_path):
    """New messages arrive after every received batch (sent from the progress callback):
    the purge still ends after the snapshot, and every message ever sent is in the backup
    or still in the queue, never both."""
    first = [job_body(f"old{i}") for i in range(40)]
    send(queues.client, queues.dlq_url, first)
    arrived: list[str] = []

    def arrive(_scanned: int, _done: int) -> None:
        if len(arrived) < 120:
            batch = [job_body(f"new{len(arrived) + i}") for i in range(10)]
            send(queues.client, queues.dlq_url, batch)
            arrived.extend(batch)

    backup = tmp_path / "b.jsonl"
    result = dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=backup, progress=arrive)
    assert result.snapshot == 40 and result.scanned <= 40
    assert arrived, "messages should have arrived during the purge"
    saved = [r["body"] for r in backup_lines(backup)]
    left = [m["Body"] for m in queues.drain(queues.dlq_url)]
    assert len(saved) == result.backed_up == result.purged + result.failed
    assert not set(saved) & set(left)
    assert sorted(saved + left) == sorted(first + arrived)
    assert result.left_in_place == len(left)


def test_purge_leaves_messages_held_by_a_consumer_in_place(port, queues, tmp_path):
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(5)])
    queues.client.receive_message(
        QueueUrl=queues.dlq_url, MaxNumberOfMessages=2, VisibilityTimeout=600
    )
    backup = tmp_path / "b.jsonl"
    result = dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=backup)
    assert (result.snapshot, result.scanned, result.purged) == (5, 3, 3)
    assert (result.left_in_place, result.stopped) == (2, "drained")
    assert len(backup_lines(backup)) == 3
    assert depth(queues, queues.dlq_url) == (0, 2)


def test_purge_renews_the_lease_so_nothing_is_received_twice(port, queues, tmp_path):
    """A 2 s lease on a scan that takes longer (a slow disk, simulated in the progress
    callback): held messages are renewed, so none comes back and is received again."""
    import time

    bodies = [job_body(f"j{i}") for i in range(50)]
    send(queues.client, queues.dlq_url, bodies)
    backup = tmp_path / "b.jsonl"
    result = dlq_purge.purge(
        queues=port,
        queue_url=queues.dlq_url,
        backup=backup,
        lease=2,
        progress=lambda _s, _d: time.sleep(0.7),
    )
    assert result.duration_seconds > 3
    assert (result.scanned, result.purged, result.duplicates) == (50, 50, 0)
    assert sorted(r["body"] for r in backup_lines(backup)) == sorted(bodies)
    assert queues.drain(queues.dlq_url) == []


def test_purge_without_backup(port, queues):
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(12)])
    result = dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=None)
    assert (result.purged, result.backed_up, result.backup) == (12, None, None)
    assert queues.drain(queues.dlq_url) == []


def test_purge_of_an_empty_queue_receives_nothing(port, queues, tmp_path):
    result = dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=tmp_path / "b.jsonl")
    assert (result.snapshot, result.scanned, result.purged, result.stopped) == (0, 0, 0, "empty")
    assert (tmp_path / "b.jsonl").read_text() == ""


def test_purge_refuses_an_existing_backup_file_before_receiving(port, queues, tmp_path):
    send(queues.client, queues.dlq_url, [job_body("j")])
    existing = tmp_path / "b.jsonl"
    existing.write_text("keep me\n")
    with pytest.raises(UsageError, match="already exists"):
        dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=existing)
    assert existing.read_text() == "keep me\n"
    assert depth(queues, queues.dlq_url) == (1, 0)


@pytest.mark.parametrize("lease", [1, 43201])
def test_purge_rejects_a_lease_out_of_range(port, queues, lease):
    with pytest.raises(UsageError, match="--lease"):
        dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=None, lease=lease)


def test_preview_counts_and_fast_warning(port, queues):
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(4)])
    queues.client.receive_message(QueueUrl=queues.dlq_url, VisibilityTimeout=600)
    plain = dlq_purge.purge_preview(queues=port, queue_url=queues.dlq_url, backup=None)
    assert (plain.visible, plain.in_flight, plain.snapshot, plain.warning) == (3, 1, 4, None)
    fast = dlq_purge.purge_preview(queues=port, queue_url=queues.dlq_url, backup=None, fast=True)
    assert fast.fast and "NOT in the backup" in (fast.warning or "")


# --------------------------------------------------------------------------- --fast
def test_fast_purge_backs_up_then_purges(port, queues, tmp_path):
    bodies = [job_body(f"j{i}") for i in range(17)] + ["raw"]
    send(queues.client, queues.dlq_url, bodies)
    backup = tmp_path / "b.jsonl"
    result = dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=backup, fast=True)
    assert (result.mode, result.backed_up, result.purged) == ("fast", 18, 18)
    assert sorted(r["body"] for r in backup_lines(backup)) == sorted(bodies)
    assert queues.drain(queues.dlq_url) == []


def test_fast_purge_refuses_when_the_backup_cannot_hold_everything(port, queues, tmp_path):
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(5)])
    queues.client.receive_message(
        QueueUrl=queues.dlq_url, MaxNumberOfMessages=2, VisibilityTimeout=600
    )
    with pytest.raises(RefusedError, match="backup") as info:
        dlq_purge.purge(
            queues=port, queue_url=queues.dlq_url, backup=tmp_path / "b.jsonl", fast=True
        )
    assert "drop --fast" in info.value.one_line()
    assert depth(queues, queues.dlq_url) == (3, 2)


def test_second_fast_purge_within_a_minute_says_wait(port, queues):
    require_purge_in_progress_rule(queues.client)
    send(queues.client, queues.dlq_url, [job_body("j")])
    dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=None, fast=True)
    with pytest.raises(RemoteError, match="60") as info:
        dlq_purge.purge(queues=port, queue_url=queues.dlq_url, backup=None, fast=True)
    assert "wait 60 s" in info.value.one_line()


# --------------------------------------------------------------------------- delete
def test_delete_only_matching_messages_and_back_them_up(port, queues, tmp_path):
    send(
        queues.client,
        queues.dlq_url,
        [job_body(f"a{i}", customer="acme") for i in range(12)]
        + [job_body(f"g{i}", customer="globex") for i in range(8)]
        + ["raw acme text"],
    )
    flt = MessageFilter(customers=["acme"])
    preview = dlq_purge.delete_preview(queues=port, queue_url=queues.dlq_url, message_filter=flt)
    assert (preview.snapshot, preview.scanned, preview.matched) == (21, 21, 12)
    assert queues.visible(queues.dlq_url) == 21
    backup = tmp_path / "deleted.jsonl"
    result = dlq_purge.delete_messages(
        queues=port, queue_url=queues.dlq_url, message_filter=flt, backup=backup
    )
    assert (result.matched, result.deleted, result.failed, result.released) == (12, 12, 0, 9)
    assert (result.backed_up, result.counts()["deleted"]) == (12, 12)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    saved = backup_lines(backup)
    assert sorted(r["customer_id"] for r in saved) == ["acme"] * 12
    left = queues.drain(queues.dlq_url)
    assert len(left) == 9
    assert all("acme" not in m["Body"] or m["Body"] == "raw acme text" for m in left)


def test_delete_scans_at_most_the_snapshot(port, queues, tmp_path):
    send(queues.client, queues.dlq_url, [job_body(f"a{i}") for i in range(20)])
    result = dlq_purge.delete_messages(
        queues=port,
        queue_url=queues.dlq_url,
        message_filter=MessageFilter(customers=["acme"]),
        backup=tmp_path / "b.jsonl",
        snapshot=10,
    )
    assert (result.scanned, result.deleted, result.stopped) == (10, 10, "snapshot")
    assert depth(queues, queues.dlq_url) == (10, 0)


def test_delete_by_manifest_stops_when_all_found(port, queues, tmp_path):
    ids = send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(15)])
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"message_id": i}) + "\n" for i in ids[:3]))
    flt = MessageFilter(message_ids=dlq.read_manifest(manifest))
    result = dlq_purge.delete_messages(
        queues=port, queue_url=queues.dlq_url, message_filter=flt, backup=None
    )
    assert result.deleted == 3
    remaining = {m["MessageId"] for m in queues.drain(queues.dlq_url)}
    assert remaining == set(ids[3:])


def test_delete_requires_a_filter(port, queues):
    with pytest.raises(UsageError, match="filter") as info:
        dlq_purge.delete_messages(
            queues=port, queue_url=queues.dlq_url, message_filter=MessageFilter(), backup=None
        )
    assert "dbops dlq purge" in info.value.one_line()
    with pytest.raises(UsageError, match="no message ids"):
        dlq_purge.delete_preview(
            queues=port, queue_url=queues.dlq_url, message_filter=MessageFilter(message_ids=[])
        )


def test_backup_record_keeps_every_attribute_type_raw():
    from dbops.ports import QueueMessage
    from dbops.services.messages import parse

    message = QueueMessage(
        message_id=str(uuid.uuid4()),
        receipt_handle="h",
        body='{"email": "bob@corp.io"}',
        message_attributes=ATTRIBUTES,
    )
    record = snapshot.backup_record(parse(message), queue="q")
    assert record["body"] == '{"email": "bob@corp.io"}'  # never masked
    assert record["message_attributes"]["blob"] == {"DataType": "Binary", "BinaryValue": "AAH+/w=="}
    assert record["message_attributes"]["ratio"] == ATTRIBUTES["ratio"]
    assert "masked" not in record
