"""DLQ service against moto over HTTP and the test Postgres: scan, list, show, export,
manifest, monitor, personal-data masking (purge and delete: test_dlq_purge.py). Tests
taking `store` run on both transports (direct Postgres and Supabase through the PostgREST stub)."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from dbops.adapters.postgres import PostgresStore
from dbops.adapters.sqs import SqsQueues
from dbops.errors import NotFoundError, RemoteError, UsageError
from dbops.services import dlq, slack
from dbops.services.messages import MessageFilter


@pytest.fixture
def port(sqs_endpoint):
    return SqsQueues(region="us-east-1", endpoint=sqs_endpoint, max_wait_seconds=0)


def send(
    client, url: str, bodies: list[str], attributes: dict[str, Any] | None = None
) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        entries = []
        for i, body in enumerate(chunk):
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


def in_flight(queues, url: str) -> int:
    attrs = queues.client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessagesNotVisible"])


# --------------------------------------------------------------------------- scan / peek
def test_scan_reads_each_message_once_and_releases_them(port, queues):
    sent = send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(25)])
    seen: list[str] = []
    with dlq.Scan(port, queues.dlq_url, lease=300) as scan:
        for batch in scan.batches():
            seen.extend(m.message_id for m in batch)
            assert len(batch) <= 10
    assert sorted(seen) == sorted(sent)
    assert scan.stats.drained is True
    assert scan.stats.released == 25
    assert queues.visible(queues.dlq_url) == 25
    assert in_flight(queues, queues.dlq_url) == 0


def test_scan_of_empty_queue_ends(port, queues):
    with dlq.Scan(port, queues.dlq_url) as scan:
        assert list(scan.batches()) == []
    assert scan.stats.drained is True


def test_scan_releases_on_error_inside_the_loop(port, queues):
    send(queues.client, queues.dlq_url, [job_body("a"), job_body("b")])
    with pytest.raises(RuntimeError), dlq.Scan(port, queues.dlq_url, lease=300) as scan:
        for _batch in scan.batches():
            raise RuntimeError("boom")
    assert queues.visible(queues.dlq_url) == 2


def test_peek_respects_limit_and_leaves_everything(port, queues):
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(15)])
    found, stats = dlq.peek(queues=port, queue_url=queues.dlq_url, limit=5)
    assert len(found) == 5
    assert stats.drained is False
    assert queues.visible(queues.dlq_url) == 15


@pytest.mark.parametrize("limit", [0, -1])
def test_peek_rejects_bad_limit(port, queues, limit):
    with pytest.raises(UsageError):
        dlq.peek(queues=port, queue_url=queues.dlq_url, limit=limit)


# --------------------------------------------------------------------------- concurrent scan
class ThreadRecordingQueues(SqsQueues):
    """The real adapter, noting which thread made each receive that returned messages, and
    failing the `fail_at`-th receive (counted over all threads) with a RemoteError."""

    def __init__(self, endpoint: str, *, fail_at: int | None = None) -> None:
        super().__init__(region="us-east-1", endpoint=endpoint)
        self.threads: list[str] = []
        self.calls = 0
        self.fail_at = fail_at
        self._lock = threading.Lock()

    def receive(self, queue_url: str, **kwargs: Any) -> list[Any]:
        with self._lock:
            self.calls += 1
            if self.fail_at is not None and self.calls == self.fail_at:
                raise RemoteError("receive from test: injected failure")
        got = super().receive(queue_url, **kwargs)
        if got:
            with self._lock:
                self.threads.append(threading.current_thread().name)
        return got


def test_concurrent_scan_reads_each_message_once_and_releases_them(sqs_endpoint, queues):
    sent = send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(300)])
    port = ThreadRecordingQueues(sqs_endpoint)
    seen: list[str] = []
    with dlq.Scan(port, queues.dlq_url, lease=300, receivers=4, release_workers=4) as scan:
        for batch in scan.batches():
            seen.extend(m.message_id for m in batch)
    assert len(seen) == len(set(seen)) == 300
    assert set(seen) == set(sent)
    assert (scan.stats.scanned, scan.stats.drained) == (300, True)
    # moto, like SQS itself now and then, may hand one message to two concurrent receives:
    # it is yielded once, and both receipt handles are released
    assert scan.stats.released == 300 + scan.stats.duplicates
    # the receiving really was spread over several receiver threads
    assert len({t for t in port.threads if t.startswith("dbops-receive-")}) >= 2
    assert queues.visible(queues.dlq_url) == 300
    assert in_flight(queues, queues.dlq_url) == 0
    # each message was received once by the scan, bar those duplicates (and once by this drain)
    counts = [m["Attributes"]["ApproximateReceiveCount"] for m in queues.drain(queues.dlq_url)]
    assert len(counts) == 300
    assert sum(c != "2" for c in counts) <= scan.stats.duplicates


def test_concurrent_scan_on_a_small_queue_stays_serial(sqs_endpoint, queues):
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(7)])
    port = ThreadRecordingQueues(sqs_endpoint)
    with dlq.Scan(port, queues.dlq_url, receivers=4) as scan:
        assert sum(len(b) for b in scan.batches()) == 7
    assert port.threads == ["MainThread"]
    assert scan.stats.drained is True
    assert queues.visible(queues.dlq_url) == 7


def test_concurrent_scan_releases_everything_when_the_consumer_stops(sqs_endpoint, queues):
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(120)])
    port = ThreadRecordingQueues(sqs_endpoint)
    with pytest.raises(RuntimeError), dlq.Scan(port, queues.dlq_url, receivers=4) as scan:
        for _batch in scan.batches():
            raise RuntimeError("boom")
    # whatever the receivers had in flight when the loop stopped was released too
    assert scan.stats.released > 0
    assert queues.visible(queues.dlq_url) == 120
    assert in_flight(queues, queues.dlq_url) == 0


def test_concurrent_scan_receiver_error_is_raised_and_nothing_stays_held(sqs_endpoint, queues):
    send(queues.client, queues.dlq_url, [job_body(f"j{i}") for i in range(120)])
    port = ThreadRecordingQueues(sqs_endpoint, fail_at=4)
    with (
        pytest.raises(RemoteError, match="injected failure"),
        dlq.Scan(port, queues.dlq_url, receivers=4) as scan,
    ):
        for _batch in scan.batches():
            pass
    assert scan.stats.released >= 10
    assert queues.visible(queues.dlq_url) == 120
    assert in_flight(queues, queues.dlq_url) == 0


# --------------------------------------------------------------------------- list
def test_list_reports_job_status_from_the_database(port, queues, store, db):
    done, legacy, failed, missing = (str(uuid.uuid4()) for _ in range(4))
    db.execute(
        "insert into jobs (id, customer_id, status) values (%s, 'a', 'completed'), "
        "(%s, 'b', 'complete'), (%s, 'c', 'failed')",
        (done, legacy, failed),
    )
    send(
        queues.client,
        queues.dlq_url,
        [
            job_body(done),
            job_body(legacy.upper()),
            job_body(failed, _dlq_reason="timeout"),
            job_body(missing),
            job_body("not-a-uuid"),
            "plain text: worker crashed",
        ],
    )
    listing = dlq.list_messages(queues=port, queue_url=queues.dlq_url, limit=50, store=store)
    by_job = {m.job_id: m for m in listing.messages}
    assert by_job[done].job_status == "completed"
    assert by_job[legacy.upper()].job_status == "completed"  # legacy spelling, any case
    assert by_job[failed].job_status == "failed"
    assert by_job[failed].reason == "timeout"
    assert by_job[missing].job_status is None
    assert by_job["not-a-uuid"].job_status is None
    raw = by_job[None]
    assert raw.is_json is False and raw.preview == "plain text: worker crashed"
    assert listing.warnings == []
    assert all(m.receive_count == 1 for m in listing.messages)
    assert queues.visible(queues.dlq_url) == 6


def test_list_without_store_still_works_and_warns(port, queues):
    send(queues.client, queues.dlq_url, [job_body(str(uuid.uuid4()))])
    listing = dlq.list_messages(
        queues=port,
        queue_url=queues.dlq_url,
        limit=10,
        store=None,
        store_warning="job_status unavailable: no database configured",
    )
    assert [m.job_status for m in listing.messages] == [None]
    assert listing.warnings == ["job_status unavailable: no database configured"]


def test_list_with_unmigrated_database_warns_instead_of_failing(port, queues, empty_database_url):
    send(queues.client, queues.dlq_url, [job_body(str(uuid.uuid4()))])
    bare = PostgresStore(empty_database_url)
    try:
        listing = dlq.list_messages(queues=port, queue_url=queues.dlq_url, limit=10, store=bare)
    finally:
        bare.close()
    assert listing.messages[0].job_status is None
    assert len(listing.warnings) == 1 and "job_status unavailable" in listing.warnings[0]


def test_job_statuses_ignores_odd_ids(store, db):
    job = str(uuid.uuid4())
    db.execute("insert into jobs (id, customer_id, status) values (%s, 'a', 'pending')", (job,))
    odd = ["", "  ", "x", "123", 'quote"s', "back\\slash", "{braces}", "comma,id", None]
    assert dlq.job_statuses(store=store, job_ids=[job, *odd]) == {job: "pending"}
    assert dlq.job_statuses(store=store, job_ids=[]) == {}


# --------------------------------------------------------------------------- masking
def test_mask_personal_keys_and_patterns():
    body = {
        "job_id": "12345678-1234-1234-1234-123456789012",
        "customer_id": "acme",
        "email": "jane@example.com",
        "contactPhone": "+1 555 123 4567",
        "first_name": "Jane",
        "directory_name": "google-business",
        "metadata": {"note": "call 555-123-4567 or mail bob@example.org", "address": "1 Main St"},
        "created_at": "2024-01-01T12:00:00Z",
        "items": [{"name": "Jane Doe"}],
    }
    masked = dlq.mask_personal(body)
    assert masked["job_id"] == body["job_id"]
    assert masked["created_at"] == body["created_at"]
    assert masked["directory_name"] == "google-business"
    assert masked["email"] == masked["contactPhone"] == masked["first_name"] == "****"
    assert masked["metadata"]["address"] == "****"
    assert masked["metadata"]["note"] == "call **** or mail ****"
    assert masked["items"][0]["name"] == "****"
    assert "jane@example.com" not in json.dumps(masked)


def test_mask_text_leaves_ids_and_dates_alone():
    text = "job 12345678-1234-1234-1234-123456789012 at 2024-01-01 12:00:00 size 1234567"
    assert dlq.mask_text(text) == text
    assert dlq.mask_text("reach me at +44 20 7946 0958") == "reach me at ****"
    assert dlq.mask_text("(555) 123-4567") == "****"


# --------------------------------------------------------------------------- show
def test_show_masks_unless_revealed(port, queues):
    ids = send(
        queues.client,
        queues.dlq_url,
        [
            job_body("j1"),
            job_body("j2", email="jane@example.com"),
            "raw mail jane@example.com",
        ],
        attributes={"contact_email": {"DataType": "String", "StringValue": "x@example.com"}},
    )
    detail = dlq.show_message(queues=port, queue_url=queues.dlq_url, message_id=ids[1])
    assert detail.is_json and detail.body["email"] == "****" and detail.masked
    assert detail.message_attributes["contact_email"]["value"] == "****"
    assert "SentTimestamp" in detail.system_attributes
    shown = dlq.show_message(queues=port, queue_url=queues.dlq_url, message_id=ids[1], reveal=True)
    assert shown.body["email"] == "jane@example.com"
    raw = dlq.show_message(queues=port, queue_url=queues.dlq_url, message_id=ids[2])
    assert raw.is_json is False and raw.body == "raw mail ****"
    assert queues.visible(queues.dlq_url) == 3


def test_show_not_found(port, queues):
    send(queues.client, queues.dlq_url, [job_body("j1")])
    with pytest.raises(NotFoundError, match="not found"):
        dlq.show_message(queues=port, queue_url=queues.dlq_url, message_id="nope")
    assert queues.visible(queues.dlq_url) == 1


# --------------------------------------------------------------------------- export / manifest
def test_export_streams_every_message_with_attributes(port, queues, tmp_path):
    bodies = [job_body(f"j{i}", customer="acme" if i % 2 else "globex") for i in range(23)]
    bodies.append("not json at all")
    attrs = {
        "job_id": {"DataType": "String", "StringValue": "attr-job"},
        "priority": {"DataType": "Number", "StringValue": "2"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
    }
    ids = send(queues.client, queues.dlq_url, bodies, attributes=attrs)
    path = tmp_path / "out" / "dlq.jsonl"
    seen_progress: list[tuple[int, int]] = []
    result = dlq.export_to_file(
        queues=port,
        queue_url=queues.dlq_url,
        path=path,
        progress=lambda s, m: seen_progress.append((s, m)),
    )
    assert (result.scanned, result.exported, result.released) == (24, 24, 24)
    assert result.drained is True
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["message_id"] for r in lines) == sorted(ids)
    assert sorted(r["body"] for r in lines) == sorted(bodies)
    record = next(r for r in lines if r["body"] == bodies[0])
    assert record["message_attributes"]["blob"]["BinaryValue"] == "AP8="
    assert record["message_attributes"]["priority"] == {"DataType": "Number", "StringValue": "2"}
    assert "SentTimestamp" in record["system_attributes"]
    assert record["job_id"] == "j0" and record["customer_id"] == "globex"
    assert seen_progress[-1] == (24, 24)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert queues.visible(queues.dlq_url) == 24
    assert dlq.read_manifest(path) == [r["message_id"] for r in lines]


def test_export_filters_including_non_json_bodies(port, queues, tmp_path):
    send(
        queues.client,
        queues.dlq_url,
        [
            job_body("j1", customer="acme", _dlq_reason="Timeout after 300s"),
            job_body("j2", customer="globex", _dlq_reason="validation failed"),
            "Traceback: TIMEOUT in worker",
            "<html>502 bad gateway</html>",
        ],
    )
    out = tmp_path / "t.jsonl"
    result = dlq.export_to_file(
        queues=port,
        queue_url=queues.dlq_url,
        path=out,
        message_filter=MessageFilter(reason="timeout"),
    )
    assert result.exported == 2 and result.scanned == 4 and result.filtered
    assert sorted(json.loads(x)["body"][:10] for x in out.read_text().splitlines()) == sorted(
        [job_body("j1", customer="acme", _dlq_reason="Timeout after 300s")[:10], "Traceback:"]
    )
    older = dlq.export_to_file(
        queues=port,
        queue_url=queues.dlq_url,
        path=tmp_path / "o.jsonl",
        message_filter=MessageFilter(older_than_seconds=3600),
    )
    newer = dlq.export_to_file(
        queues=port,
        queue_url=queues.dlq_url,
        path=tmp_path / "n.jsonl",
        message_filter=MessageFilter(newer_than_seconds=3600),
    )
    assert (older.exported, newer.exported) == (0, 4)
    assert queues.visible(queues.dlq_url) == 4


def test_export_refuses_to_overwrite(port, queues, tmp_path):
    out = tmp_path / "exists.jsonl"
    out.write_text("keep me\n")
    with pytest.raises(UsageError, match="already exists"):
        dlq.export_to_file(queues=port, queue_url=queues.dlq_url, path=out)
    assert out.read_text() == "keep me\n"


def test_read_manifest_shapes_and_errors(tmp_path):
    good = tmp_path / "m.jsonl"
    good.write_text('{"message_id": "a"}\n\n{"MessageId": "b"}\n"c"\n{"message_id": "a"}\n')
    assert dlq.read_manifest(good) == ["a", "b", "c"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"message_id": "a"}\nnot json\n')
    with pytest.raises(UsageError, match="line 2"):
        dlq.read_manifest(bad)
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"message_id": "a"}\n' + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(UsageError, match="line 2 is not JSON"):
        dlq.read_manifest(deep)
    no_id = tmp_path / "noid.jsonl"
    no_id.write_text('{"body": "x"}\n')
    with pytest.raises(UsageError, match="no message_id"):
        dlq.read_manifest(no_id)
    with pytest.raises(UsageError, match="cannot read manifest"):
        dlq.read_manifest(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- monitor
class Recorder:
    """A Notifier that keeps payloads (or fails): our own port, not an SDK."""

    name = "slack"

    def __init__(self, fail: bool = False) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.fail = fail

    def send(self, payload: dict[str, Any]) -> None:
        if self.fail:
            raise RemoteError("Slack webhook returned HTTP 500")
        self.payloads.append(payload)


def test_monitor_threshold_without_notifier(port, queues):
    send(queues.client, queues.dlq_url, [job_body("a"), job_body("b")])
    ok = dlq.monitor(queues=port, queue_url=queues.dlq_url, threshold=3)
    assert (ok.depth, ok.alerting, ok.notified, ok.state) == (2, False, False, "not used")
    alert = dlq.monitor(queues=port, queue_url=queues.dlq_url, threshold=2)
    assert alert.alerting is True and alert.messages == []
    with pytest.raises(UsageError):
        dlq.monitor(queues=port, queue_url=queues.dlq_url, threshold=0)


def test_monitor_alerts_again_only_when_depth_grows(port, queues, store, db):
    send(queues.client, queues.dlq_url, [job_body("a", _dlq_reason="boom"), job_body("b")])
    notifier = Recorder()

    def check() -> dlq.MonitorResult:
        return dlq.monitor(
            queues=port, queue_url=queues.dlq_url, threshold=1, notifier=notifier, store=store
        )

    first = check()
    assert first.notified and first.state == "database" and len(notifier.payloads) == 1
    assert {m.job_id for m in first.messages} == {"a", "b"}
    again = check()
    assert not again.notified and "not grown" in (again.notify_skipped or "")
    assert again.last_alert_depth == 2
    send(queues.client, queues.dlq_url, [job_body("c")])
    grown = check()
    assert grown.notified and len(notifier.payloads) == 2
    assert "up from 2" in notifier.payloads[1]["text"]
    queues.drain(queues.dlq_url)
    calm = check()
    assert not calm.alerting and calm.notify_skipped == "below threshold"
    send(queues.client, queues.dlq_url, [job_body("d")])
    back = check()
    assert back.notified and len(notifier.payloads) == 3  # state was reset below threshold
    row = db.execute("select alerts_sent from dbops_dlq_monitor_state").fetchone()
    assert row["alerts_sent"] == 3


def test_monitor_without_database_alerts_every_time(port, queues):
    send(queues.client, queues.dlq_url, [job_body("a")])
    notifier = Recorder()
    for _ in range(2):
        result = dlq.monitor(
            queues=port,
            queue_url=queues.dlq_url,
            threshold=1,
            notifier=notifier,
            store=None,
            store_warning="no database configured",
        )
        assert result.notified and result.state == "unavailable"
        assert "every alerting check notifies" in result.warnings[0]
    assert len(notifier.payloads) == 2


def test_monitor_failed_notification_is_retried_next_time(port, queues, store):
    send(queues.client, queues.dlq_url, [job_body("a")])
    failed = dlq.monitor(
        queues=port,
        queue_url=queues.dlq_url,
        threshold=1,
        notifier=Recorder(fail=True),
        store=store,
    )
    assert failed.alerting and not failed.notified
    assert failed.notify_error == "Slack webhook returned HTTP 500"
    retry = dlq.monitor(
        queues=port, queue_url=queues.dlq_url, threshold=1, notifier=Recorder(), store=store
    )
    assert retry.notified


def test_slack_payload_shape():
    payload = slack.dlq_alert(
        queue="jobs-dlq",
        depth=7,
        threshold=1,
        previous_alert_depth=None,
        messages=[
            slack.AlertMessage(
                message_id=f"m{i}",
                job_id=f"j{i}",
                customer="acme",
                reason="timeout",
                age_seconds=90,
            )
            for i in range(8)
        ],
    )
    assert payload["text"].startswith("DLQ jobs-dlq: 7 message(s)")
    text = json.dumps(payload, ensure_ascii=False)
    assert text.count("• job") == 5  # the first five only
    assert "j4" in text and "j5" not in text
    assert "1m30s" in text
    assert "dbops dlq list --queue jobs-dlq" in text
    assert "dbops dlq redrive --queue jobs-dlq --dry-run" in text
    assert payload["blocks"][0]["type"] == "header"
