"""`dbops dlq list|show|export|purge|delete|monitor` through the CLI, against moto over
HTTP and the test Postgres; Slack through a local HTTP receiver."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import invoke, one_line_error, require_purge_in_progress_rule


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
    return json.dumps({"job_id": job_id, "customer_id": customer, "priority": 2, **extra})


def action_rows(db, command: str) -> list[dict[str, Any]]:
    return db.execute(
        "select * from dbops_action_log where command = %s order by id", (command,)
    ).fetchall()


# --------------------------------------------------------------------------- Slack receiver
class Receiver:
    """A local webhook endpoint (stdlib http.server on 127.0.0.1) that records payloads."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.paths.append(self.path)
                receiver.payloads.append(json.loads(self.rfile.read(length)))
                body = b"ok" if receiver.status < 300 else b"no_service"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.token = "T0SECRET/B0SECRET/" + uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{self.token}"


@pytest.fixture
def slack_receiver(monkeypatch) -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", receiver.url)
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def assert_no_webhook(receiver: Receiver, *outputs: str) -> None:
    for text in outputs:
        assert receiver.token not in text
        assert "SECRET" not in text


# --------------------------------------------------------------------------- list
def test_list_json_contract_with_job_status(env, db):
    done, failed = str(uuid.uuid4()), str(uuid.uuid4())
    db.execute(
        "insert into jobs (id, customer_id, status) values (%s, 'a', 'completed'), "
        "(%s, 'b', 'failed')",
        (done, failed),
    )
    send(
        env.client,
        env.dlq_url,
        [
            job_body(done, _dlq_reason="timeout"),
            job_body(failed),
            job_body("legacy-42"),
            "worker crashed: OOM",
        ],
    )
    result = invoke(["dlq", "list", "-o", "json"])
    rows = result.json
    assert len(rows) == 4
    for row in rows:
        for key in (
            "message_id",
            "job_id",
            "customer",
            "sent_at",
            "age",
            "receive_count",
            "reason",
            "size",
            "job_status",
        ):
            assert key in row
    by_job = {r["job_id"]: r for r in rows}
    assert by_job[done]["job_status"] == "completed" and by_job[done]["reason"] == "timeout"
    assert by_job[failed]["job_status"] == "failed"
    assert by_job["legacy-42"]["job_status"] is None
    raw = by_job[None]
    assert raw["is_json"] is False and raw["preview"] == "worker crashed: OOM"
    assert result.stderr == ""
    assert env.visible(env.dlq_url) == 4  # peeked, not consumed


def test_list_masks_personal_data_in_every_text_field(env):
    send(
        env.client,
        env.dlq_url,
        [
            job_body("j1", customer="jane@example.com", _dlq_reason="timeout to bob@corp.io"),
            "raw body: call +1 555 123 4567",
        ],
    )
    result = invoke(["dlq", "list", "-o", "json"])
    rows = {r["job_id"]: r for r in result.json}
    assert rows["j1"]["reason"] == "timeout to ****"
    assert rows["j1"]["customer"] == "****"
    assert rows[None]["preview"] == "raw body: call ****"
    table = invoke(["dlq", "list"]).stdout
    for text in (result.stdout, table):
        assert "bob@corp.io" not in text and "jane@" not in text and "555 123" not in text
    revealed = {r["job_id"]: r for r in invoke(["dlq", "list", "--reveal", "-o", "json"]).json}
    assert revealed["j1"]["reason"] == "timeout to bob@corp.io"
    assert revealed[None]["preview"] == "raw body: call +1 555 123 4567"


def test_list_table_shows_raw_bodies(env, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    send(env.client, env.dlq_url, ["<<not json>>"])
    result = invoke(["dlq", "list"])
    assert "(raw) <<not json>>" in result.stdout


def test_list_without_database_warns_and_still_lists(env, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")
    send(env.client, env.dlq_url, [job_body(str(uuid.uuid4()))])
    result = invoke(["dlq", "list", "-o", "json"])
    assert [r["job_status"] for r in result.json] == [None]
    warning = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and "no database configured" in warning[0]


def test_list_limit_and_queue_override(env):
    send(env.client, env.main_url, [job_body(f"j{i}") for i in range(12)])
    rows = invoke(["dlq", "list", "--queue", env.main_name, "--limit", "5", "-o", "json"]).json
    assert len(rows) == 5
    assert env.visible(env.main_url) == 12


@pytest.mark.parametrize("limit", ["0", "-1", "ten"])
def test_list_bad_limit_exits_2(env, limit):
    invoke(["dlq", "list", "--limit", limit], code=2)


def test_list_nonexistent_queue_exits_4(env):
    result = invoke(["dlq", "list", "--queue", "no-such-queue-dbops"], code=4)
    one_line_error(result.stderr)


def test_list_without_dlq_configured_exits_3(queues, sqs_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    result = invoke(["dlq", "list"], code=3)
    assert "SQS_DLQ_URL" in one_line_error(result.stderr)


# --------------------------------------------------------------------------- show
def test_show_masks_personal_data_unless_revealed(env):
    ids = send(
        env.client,
        env.dlq_url,
        [
            job_body(
                "j1",
                email="jane@example.com",
                phone="+1 555 123 4567",
                metadata={"note": "mail bob@example.org"},
            ),
        ],
        attributes={"job_id": {"DataType": "String", "StringValue": "j1"}},
    )
    masked = invoke(["dlq", "show", ids[0], "-o", "json"]).json
    assert masked["masked"] is True
    assert masked["body"]["email"] == "****" and masked["body"]["phone"] == "****"
    assert masked["body"]["metadata"]["note"] == "mail ****"
    assert masked["message_attributes"]["job_id"] == {"type": "String", "value": "j1"}
    assert "SentTimestamp" in masked["system_attributes"]
    revealed = invoke(["dlq", "show", ids[0], "--reveal", "-o", "json"]).json
    assert revealed["body"]["email"] == "jane@example.com" and revealed["masked"] is False
    table = invoke(["dlq", "show", ids[0]])
    assert '"email": "****"' in table.stdout and "jane@example.com" not in table.stdout


def test_show_raw_body(env):
    ids = send(env.client, env.dlq_url, ["plain text body"])
    shown = invoke(["dlq", "show", ids[0], "-o", "json"]).json
    assert shown["is_json"] is False and shown["body"] == "plain text body"
    table = invoke(["dlq", "show", ids[0]])
    assert "not JSON, raw" in table.stdout and "plain text body" in table.stdout


def test_show_not_found_exits_4(env):
    send(env.client, env.dlq_url, [job_body("j1")])
    result = invoke(["dlq", "show", "00000000-0000-0000-0000-000000000000"], code=4)
    assert "not found" in one_line_error(result.stderr)
    assert env.visible(env.dlq_url) == 1


# --------------------------------------------------------------------------- export
def test_export_writes_every_message(env, tmp_path):
    bodies = [job_body(f"j{i}", customer="acme" if i < 8 else "globex") for i in range(14)]
    bodies.append("garbage {")
    ids = send(
        env.client,
        env.dlq_url,
        bodies,
        attributes={"retry": {"DataType": "String", "StringValue": "1"}},
    )
    out = tmp_path / "dlq.jsonl"
    result = invoke(["dlq", "export", "--out", str(out), "-o", "json"])
    assert result.json["exported"] == 15 and result.json["path"] == str(out)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["message_id"] for r in lines) == sorted(ids)
    assert all(r["message_attributes"]["retry"]["StringValue"] == "1" for r in lines)
    assert all("ApproximateReceiveCount" in r["system_attributes"] for r in lines)
    assert env.visible(env.dlq_url) == 15
    filtered = tmp_path / "acme.jsonl"
    invoke(["dlq", "export", "--out", str(filtered), "--customer", "acme", "--match", "priority=2"])
    assert len(filtered.read_text().splitlines()) == 8
    again = invoke(["dlq", "export", "--out", str(filtered)], code=2)
    assert "already exists" in one_line_error(again.stderr)
    invoke(["dlq", "export", "--out", str(filtered), "--force", "--job-id", "j9"])
    assert [json.loads(x)["job_id"] for x in filtered.read_text().splitlines()] == ["j9"]


def test_export_force_replaces_a_world_readable_file_with_a_private_one(env, tmp_path):
    send(env.client, env.dlq_url, [job_body("j1")])
    out = tmp_path / "dlq.jsonl"
    out.write_text("someone else's notes\n")
    out.chmod(0o644)
    invoke(["dlq", "export", "--out", str(out), "--force"])
    assert (out.stat().st_mode & 0o777) == 0o600
    assert json.loads(out.read_text().splitlines()[0])["job_id"] == "j1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dlq.jsonl"]


def test_export_write_failure_is_one_line_exit_6_without_a_partial_file(env, tmp_path):
    import os
    import resource
    import signal
    import subprocess
    import sys

    send(env.client, env.dlq_url, [job_body(f"j{i}", filler="x" * 2000) for i in range(20)])
    out = tmp_path / "dlq.jsonl"

    def small_files() -> None:  # like a full disk: writes past 8 KiB fail (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    done = subprocess.run(
        [sys.executable, "-m", "dbops", "dlq", "export", "--out", str(out)],
        # No bytecode written under the 8 KiB limit: a truncated .pyc in the shared cache
        # (tests/__init__.py) broke every later process importing that module ("Aborted!").
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        preexec_fn=small_files,
    )
    assert done.returncode == 6, done.stderr
    line = one_line_error(done.stderr)
    assert str(out) in line and "File too large" in line
    assert list(tmp_path.iterdir()) == []
    assert env.visible(env.dlq_url) == 20  # non-destructive: every message still there


def test_export_masks_by_default_and_marks_every_line(env, tmp_path):
    body = job_body("j1", email="jane@example.com", _dlq_reason="mail to bob@corp.io")
    ids = send(
        env.client,
        env.dlq_url,
        [body, "raw +44 20 7946 0958"],
        attributes={"email": {"DataType": "String", "StringValue": "jane@example.com"}},
    )
    out = tmp_path / "masked.jsonl"
    summary = invoke(["dlq", "export", "--out", str(out), "-o", "json"]).json
    assert summary["masked"] is True
    lines = {r["message_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    first, second = lines[ids[0]], lines[ids[1]]
    assert first["masked"] is True and second["masked"] is True
    assert json.loads(first["body"])["email"] == "****" and first["reason"] == "mail to ****"
    assert first["message_attributes"]["email"]["StringValue"] == "****"
    assert second["body"] == "raw ****"
    assert "jane@" not in out.read_text() and "bob@" not in out.read_text()
    # a masked export still works as a manifest (only message ids are read)
    assert sorted(dlq_manifest(out)) == sorted(ids)

    raw = tmp_path / "raw.jsonl"
    invoke(["dlq", "export", "--out", str(raw), "--reveal"])
    records = {r["message_id"]: r for r in map(json.loads, raw.read_text().splitlines())}
    assert records[ids[0]]["masked"] is False and records[ids[0]]["body"] == body
    assert records[ids[0]]["message_attributes"]["email"]["StringValue"] == "jane@example.com"
    assert oct(raw.stat().st_mode & 0o777) == "0o600"


def dlq_manifest(path: Path) -> list[str]:
    from dbops.services.dlq import read_manifest

    return read_manifest(path)


def test_monitor_slack_message_masks_personal_data(env, slack_receiver):
    send(
        env.client,
        env.dlq_url,
        [
            job_body("j1", customer="jane@example.com", _dlq_reason="smtp bob@corp.io"),
            "not json: call (555) 123-4567",
        ],
    )
    result = invoke(["dlq", "monitor", "--notify", "slack", "-o", "json"], code=1)
    (payload,) = slack_receiver.payloads
    for text in (json.dumps(payload, ensure_ascii=False), result.stdout):
        assert "bob@corp.io" not in text and "jane@example.com" not in text
        assert "123-4567" not in text
    assert "smtp ****" in json.dumps(payload)


def test_export_to_stdout(env):
    send(env.client, env.dlq_url, [job_body("j1"), "raw"])
    result = invoke(["dlq", "export", "--out", "-"])
    assert sorted(r["body"] for r in result.jsonl) == sorted([job_body("j1"), "raw"])
    assert "exported 2 of 2" in result.stderr


def test_export_filters_non_json_by_reason_and_age(env, tmp_path):
    send(
        env.client,
        env.dlq_url,
        [
            "Traceback: ValueError in parser",
            "OOM killed",
            job_body("j1", _dlq_reason="ValueError: bad size"),
        ],
    )
    out = tmp_path / "r.jsonl"
    invoke(["dlq", "export", "--out", str(out), "--reason", "valueerror"])
    assert len(out.read_text().splitlines()) == 2
    old = tmp_path / "old.jsonl"
    invoke(["dlq", "export", "--out", str(old), "--older-than", "1h"])
    assert old.read_text() == ""
    new = tmp_path / "new.jsonl"
    invoke(["dlq", "export", "--out", str(new), "--newer-than", "1h"])
    assert len(new.read_text().splitlines()) == 3


@pytest.mark.parametrize(
    "extra",
    [
        ["--match", "priority"],
        ["--match", "=2"],
        ["--older-than", "yesterday"],
        ["--newer-than", "10"],
        ["--lease", "0s"],
        ["--max", "0"],
    ],
)
def test_export_bad_input_exits_2(env, tmp_path, extra):
    result = invoke(["dlq", "export", "--out", str(tmp_path / "x.jsonl"), *extra], code=2)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.jsonl").exists()


# --------------------------------------------------------------------------- delete
def test_delete_needs_a_filter(env):
    result = invoke(["dlq", "delete", "--yes"], code=2)
    assert "dbops dlq purge" in one_line_error(result.stderr)


def test_delete_refuses_without_yes_off_a_tty(env, db):
    send(env.client, env.dlq_url, [job_body("j1", customer="acme")])
    result = invoke(["dlq", "delete", "--customer", "acme"], code=6)
    assert "--yes" in result.stderr
    assert env.visible(env.dlq_url) == 1


def test_delete_dry_run_changes_nothing(env, db):
    send(env.client, env.dlq_url, [job_body("a", customer="acme"), job_body("b", customer="x")])
    preview = invoke(["dlq", "delete", "--customer", "acme", "--dry-run", "-o", "json"]).json
    assert (preview["matched"], preview["scanned"], preview["dry_run"]) == (1, 2, True)
    assert env.visible(env.dlq_url) == 2
    assert [r["outcome"] for r in action_rows(db, "dlq delete")] == ["dry_run"]


def test_delete_by_filter_with_backup_and_action_log(env, db, tmp_path):
    send(
        env.client,
        env.dlq_url,
        [job_body(f"a{i}", customer="acme") for i in range(6)]
        + [job_body(f"g{i}", customer="globex") for i in range(4)]
        + ["raw acme"],
    )
    backup = tmp_path / "deleted.jsonl"
    result = invoke(
        ["dlq", "delete", "--customer", "acme", "--backup", str(backup), "--yes", "-o", "json"]
    ).json
    assert (result["matched"], result["deleted"], result["failed"]) == (6, 6, 0)
    assert len(backup.read_text().splitlines()) == 6
    left = env.drain(env.dlq_url)
    assert sorted(m["Body"] for m in left) == sorted(
        [job_body(f"g{i}", customer="globex") for i in range(4)] + ["raw acme"]
    )
    rows = action_rows(db, "dlq delete")
    assert [r["outcome"] for r in rows] == ["ok"]
    assert rows[0]["counts"]["deleted"] == 6
    assert rows[0]["arguments"]["customers"] == ["acme"]


def test_delete_by_manifest_from_export(env, tmp_path):
    ids = send(
        env.client,
        env.dlq_url,
        [job_body(f"j{i}", customer="acme" if i < 3 else "x") for i in range(9)],
    )
    manifest = tmp_path / "review.jsonl"
    invoke(["dlq", "export", "--out", str(manifest), "--customer", "acme"])
    result = invoke(
        ["dlq", "delete", "--manifest", str(manifest), "--no-backup", "--yes", "-o", "json"]
    ).json
    assert result["deleted"] == 3 and result["backup"] is None
    assert {m["MessageId"] for m in env.drain(env.dlq_url)} == set(ids[3:])


def test_delete_default_backup_goes_to_data_dir(env, tmp_path):
    send(env.client, env.dlq_url, [job_body("j1", customer="acme")])
    result = invoke(["dlq", "delete", "--job-id", "j1", "--yes", "-o", "json"]).json
    path = Path(result["backup"])
    assert path.parent == tmp_path / "data" / "backups"
    assert path.name.startswith(env.dlq_name + "-delete-")
    assert json.loads(path.read_text())["job_id"] == "j1"


def test_delete_bad_manifest_exits_2(env, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    invoke(["dlq", "delete", "--manifest", str(bad), "--yes"], code=2)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    invoke(["dlq", "delete", "--manifest", str(empty), "--yes"], code=2)
    invoke(["dlq", "delete", "--manifest", str(tmp_path / "missing.jsonl"), "--yes"], code=2)


# --------------------------------------------------------------------------- purge
def test_purge_dry_run_and_refusal(env, db):
    send(env.client, env.dlq_url, [job_body("j1"), job_body("j2")])
    preview = invoke(["dlq", "purge", "--dry-run", "-o", "json"]).json
    assert preview["total"] == 2 and preview["dry_run"] is True
    refused = invoke(["dlq", "purge"], code=6)
    assert "--yes" in refused.stderr
    assert env.visible(env.dlq_url) == 2
    assert [r["outcome"] for r in action_rows(db, "dlq purge")] == ["dry_run", "refused"]
    assert not (Path(preview["backup"])).exists()


def test_purge_with_default_backup(env, db, tmp_path):
    bodies = [job_body(f"j{i}") for i in range(12)] + ["not json"]
    send(env.client, env.dlq_url, bodies)
    result = invoke(["dlq", "purge", "--yes", "-o", "json"]).json
    backup = Path(result["backup"])
    assert backup.parent == tmp_path / "data" / "backups"
    assert result["backed_up"] == 13 and result["purged"] == 13
    assert sorted(json.loads(x)["body"] for x in backup.read_text().splitlines()) == sorted(bodies)
    assert env.drain(env.dlq_url) == []
    rows = action_rows(db, "dlq purge")
    assert [r["outcome"] for r in rows] == ["ok"]
    assert rows[0]["counts"] == {
        "snapshot": 13,
        "scanned": 13,
        "backed_up": 13,
        "purged": 13,
        "failed": 0,
        "left_in_place": 0,
    }
    assert rows[0]["arguments"]["fast"] is False


def test_purge_while_messages_keep_arriving_finishes_and_loses_nothing(env, tmp_path):
    """A sender thread keeps putting messages on the DLQ (150, one per call) for the whole
    purge of 100: the purge ends after its snapshot, and every message ever sent is either
    still in the queue or in the backup (never both, never neither)."""
    first = [job_body(f"old-{i}") for i in range(100)]
    send(env.client, env.dlq_url, first)
    arrivals: list[str] = []
    warmed_up = threading.Event()
    purge_done = threading.Event()

    def keep_sending() -> None:
        for i in range(150):
            body = job_body(f"new-{i}")
            env.client.send_message(QueueUrl=env.dlq_url, MessageBody=body)
            arrivals.append(body)
            if i == 4:
                warmed_up.set()
            purge_done.wait(0.01)  # pace: keep arriving while the purge runs

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    assert warmed_up.wait(30)
    before = len(arrivals)
    backup = tmp_path / "backup.jsonl"
    result = invoke(["dlq", "purge", "--backup", str(backup), "--yes", "-o", "json"]).json
    during = len(arrivals) - before
    purge_done.set()
    sender.join(60)
    assert not sender.is_alive() and len(arrivals) == 150
    assert during > 0, "no message arrived while the purge ran"

    assert result["snapshot"] >= 100 and result["scanned"] <= result["snapshot"]
    saved = [json.loads(x)["body"] for x in backup.read_text().splitlines()]
    left = [m["Body"] for m in env.drain(env.dlq_url)]
    assert len(saved) == result["backed_up"] == result["scanned"]
    assert result["backed_up"] == result["purged"] + result["failed"] and result["failed"] == 0
    assert not set(saved) & set(left)
    assert sorted(saved + left) == sorted(first + arrivals)
    assert result["purged"] + len(left) == 250
    assert result["left_in_place"] <= len(left)


def test_purge_fast_preview_says_what_it_can_lose(env, db):
    send(env.client, env.dlq_url, [job_body("j1")])
    result = invoke(["dlq", "purge", "--fast", "--dry-run", "-o", "json"])
    assert result.json["fast"] is True and "NOT in the backup" in result.json["warning"]
    assert "NOT in the backup" in result.stderr
    assert env.visible(env.dlq_url) == 1


def test_purge_fast_twice_within_a_minute_exits_5(env):
    require_purge_in_progress_rule(env.client)
    send(env.client, env.dlq_url, [job_body("j1")])
    invoke(["dlq", "purge", "--fast", "--no-backup", "--yes"])
    send(env.client, env.dlq_url, [job_body("j2")])
    result = invoke(["dlq", "purge", "--fast", "--no-backup", "--yes"], code=5)
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "wait 60 s" in error[0]


def test_purge_of_empty_queue_does_nothing(env):
    result = invoke(["dlq", "purge", "--yes", "-o", "json"]).json
    assert result["purged"] == 0 and result["backup"] is None


def test_purge_backup_options_conflict(env, tmp_path):
    invoke(["dlq", "purge", "--backup", str(tmp_path / "b.jsonl"), "--no-backup", "--yes"], code=2)


# --------------------------------------------------------------------------- monitor
def test_monitor_exit_codes(env):
    ok = invoke(["dlq", "monitor", "-o", "json"]).json
    assert (ok["depth"], ok["threshold"], ok["alerting"], ok["notified"]) == (0, 1, False, False)
    send(env.client, env.dlq_url, [job_body("j1"), job_body("j2")])
    alert = invoke(["dlq", "monitor", "-o", "json"], code=1).json
    assert alert["alerting"] is True and alert["depth"] == 2
    invoke(["dlq", "monitor", "--threshold", "3"], code=0)
    invoke(["dlq", "monitor", "--threshold", "0"], code=2)


def test_monitor_threshold_from_environment(env, monkeypatch):
    send(env.client, env.dlq_url, [job_body("j1"), job_body("j2")])
    monkeypatch.setenv("DLQ_ALERT_THRESHOLD", "5")
    assert invoke(["dlq", "monitor", "-o", "json"]).json["threshold"] == 5


def test_monitor_notify_without_webhook_exits_3(env):
    result = invoke(["dlq", "monitor", "--notify", "slack"], code=3)
    assert "SLACK_WEBHOOK_URL" in one_line_error(result.stderr)
    invoke(["dlq", "monitor", "--notify", "pager"], code=2)


def test_monitor_posts_block_kit_and_alerts_again_only_when_grown(env, slack_receiver):
    send(
        env.client,
        env.dlq_url,
        [job_body(f"job-{i}", customer=f"cust-{i}", _dlq_reason=f"reason {i}") for i in range(6)]
        + ["unparseable body"],
    )
    first = invoke(["dlq", "monitor", "--notify", "slack", "-o", "json"], code=1)
    assert first.json["notified"] is True and first.json["state"] == "database"
    assert len(slack_receiver.payloads) == 1
    payload = slack_receiver.payloads[0]
    text = json.dumps(payload, ensure_ascii=False)
    assert payload["text"].startswith(f"DLQ {env.dlq_name}: 7 message(s)")
    assert text.count("• job") == 5
    assert f"dbops dlq list --queue {env.dlq_name}" in text
    assert f"dbops dlq export --queue {env.dlq_name}" in text
    assert "customer `cust-" in text and "reason: reason " in text
    assert slack_receiver.paths[0] == f"/services/{slack_receiver.token}"
    assert_no_webhook(slack_receiver, first.stdout, first.stderr, text)

    again = invoke(["dlq", "monitor", "--notify", "slack", "-o", "json"], code=1).json
    assert again["notified"] is False and "not grown" in again["notify_skipped"]
    assert len(slack_receiver.payloads) == 1

    send(env.client, env.dlq_url, [job_body("job-new")])
    grown = invoke(["dlq", "monitor", "--notify", "slack"], code=1)
    assert "notified slack" in grown.stdout
    assert len(slack_receiver.payloads) == 2
    assert_no_webhook(slack_receiver, grown.stdout, grown.stderr)
    assert env.visible(env.dlq_url) == 8


def test_monitor_without_database_notifies_every_time(env, slack_receiver, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")
    send(env.client, env.dlq_url, [job_body("j1")])
    for _ in range(2):
        result = invoke(["dlq", "monitor", "--notify", "slack", "-o", "json"], code=1)
        assert result.json["notified"] is True and result.json["state"] == "unavailable"
        assert "every alerting check notifies" in result.stderr
    assert len(slack_receiver.payloads) == 2


def test_monitor_webhook_failure_exits_5_after_printing_the_check(env, slack_receiver):
    slack_receiver.status = 500
    send(env.client, env.dlq_url, [job_body("j1")])
    result = invoke(["dlq", "monitor", "--notify", "slack", "-o", "json"], code=5)
    check = result.json
    assert check["alerting"] is True and check["depth"] == 1 and check["notified"] is False
    assert "HTTP 500" in check["notify_error"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "HTTP 500" in errors[0]
    assert_no_webhook(slack_receiver, result.stdout, result.stderr)
    slack_receiver.status = 200
    retry = invoke(["dlq", "monitor", "--notify", "slack", "-o", "json"], code=1).json
    assert retry["notified"] is True  # a failed alert does not count as sent


def test_monitor_unreachable_webhook_exits_5_without_the_url(env, monkeypatch):
    from tests.helpers import free_port

    token = "T9/B9/" + uuid.uuid4().hex
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/services/{token}")
    send(env.client, env.dlq_url, [job_body("j1")])
    result = invoke(["dlq", "monitor", "--notify", "slack", "-o", "json"], code=5)
    assert result.json["alerting"] is True
    assert "unreachable" in result.json["notify_error"]
    assert token not in result.stdout + result.stderr


def test_monitor_watch_with_count(env):
    send(env.client, env.dlq_url, [job_body("j1")])
    result = invoke(
        ["dlq", "monitor", "--watch", "--interval", "1s", "--count", "2", "-o", "jsonl"], code=1
    )
    assert [r["depth"] for r in result.jsonl] == [1, 1]
    invoke(["dlq", "monitor", "--count", "2"], code=2)
    invoke(["dlq", "monitor", "--watch", "--interval", "fast", "--count", "1"], code=2)
