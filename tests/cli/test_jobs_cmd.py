"""`dbops jobs ...` through the CLI: JSON contracts, exit codes, the safety flow."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.helpers import free_port, invoke, one_line_error

HOUR = 3600
UNKNOWN = "00000000-0000-0000-0000-0000000000ff"


def _log(command: str) -> list[dict]:
    return [e for e in invoke(["log", "-o", "json"]).json if e["command"] == command]


# --------------------------------------------------------------------------- read commands
def test_stale_json_contract(env, job_seed):
    job = job_seed.job(idle=HOUR, customer="acme", priority=1)
    worker = job_seed.heartbeat(job, age=900)
    job_seed.job(idle=30)

    rows = invoke(["jobs", "stale", "-o", "json"]).json

    assert len(rows) == 1
    row = rows[0]
    assert {
        "id",
        "customer_id",
        "status",
        "last_activity_at",
        "worker_id",
        "worker_alive",
        "recoveries",
    } <= set(row)
    assert row["id"] == job and row["customer_id"] == "acme" and row["status"] == "in_progress"
    assert row["worker_id"] == worker and row["worker_alive"] is False
    assert row["recoveries"] == 0 and row["priority_level"] == 1


def test_stale_default_threshold_comes_from_the_environment(env, job_seed, monkeypatch):
    job = job_seed.job(idle=20 * 60)
    assert [r["id"] for r in invoke(["jobs", "stale", "-o", "json"]).json] == [job]
    monkeypatch.setenv("STALE_THRESHOLD_MINUTES", "30")
    assert invoke(["jobs", "stale", "-o", "json"]).json == []
    assert invoke(["jobs", "stale", "--older-than", "15m", "-o", "json"]).json != []


def test_stale_table_and_csv(env, job_seed, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    job_seed.job(idle=HOUR)
    table = invoke(["jobs", "stale"])
    assert "recoveries" in table.stdout and "1h" in table.stdout
    csv_lines = invoke(["jobs", "stale", "-o", "csv"]).stdout.splitlines()
    assert csv_lines[0].startswith("id,customer_id") and len(csv_lines) == 2


def test_list_orphans_stats_show(env, job_seed):
    orphan = job_seed.job(status="pending", idle=2 * HOUR, customer="acme")
    job_seed.job(status="completed", idle=60, started=120, completed=60)
    job_seed.job(status="failed", idle=60)

    listed = invoke(["jobs", "list", "--status", "pending", "-o", "json"]).json
    assert [j["id"] for j in listed] == [orphan]
    assert [o["id"] for o in invoke(["jobs", "orphans", "-o", "json"]).json] == [orphan]
    assert invoke(["jobs", "orphans", "--older-than", "3h", "-o", "json"]).json == []
    stats = invoke(["jobs", "stats", "--since", "24h", "-o", "json"]).json
    assert stats["completed"] == 1 and stats["failed"] == 1 and stats["error_rate"] == 50.0
    assert {
        "by_status",
        "hourly",
        "runtime_p50_seconds",
        "runtime_p95_seconds",
        "stuck_submitting",
        "legacy_complete",
    } <= set(stats)
    assert "error_rate" in invoke(["jobs", "stats"]).stdout
    assert not any("█" in str(h) for h in stats["hourly"])  # charts in tables only

    shown = invoke(["jobs", "show", orphan, "-o", "json"]).json
    assert shown["job"]["id"] == orphan and shown["dlq_messages"] == []
    assert {"results_by_status", "history", "worker", "recoveries"} <= set(shown)
    assert orphan in invoke(["jobs", "show", orphan]).stdout


def test_stats_table_draws_hourly_bars(env, job_seed, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    # One transaction: the five jobs are aged from the same now(), so they share one hourly
    # bucket (separate autocommit inserts could straddle an hour boundary and split them).
    with job_seed.conn.transaction():
        for _ in range(4):
            job_seed.job(status="completed", idle=60, started=120, completed=60)
        job_seed.job(status="failed", idle=60)

    table = invoke(["jobs", "stats"]).stdout

    row = next(line for line in table.splitlines() if "████" in line)
    assert "4 ████████████████████" in row and "1 █████" in row  # one scale: 4 -> 20 cells
    assert "█" not in invoke(["jobs", "stats", "-o", "csv"]).stdout


def test_show_lists_the_jobs_dlq_messages_and_leaves_them_there(env, job_seed):
    job = job_seed.job(idle=HOUR)
    env.client.send_message(
        QueueUrl=env.dlq_url, MessageBody=json.dumps({"job_id": job, "_dlq_reason": "boom"})
    )
    env.client.send_message(QueueUrl=env.dlq_url, MessageBody=json.dumps({"job_id": "other"}))

    shown = invoke(["jobs", "show", job, "-o", "json"]).json

    assert [m["reason"] for m in shown["dlq_messages"]] == ["boom"]
    assert env.visible(env.dlq_url) == 2


def test_show_masks_personal_data_unless_revealed(env, job_seed):
    job = job_seed.job(
        idle=HOUR,
        customer="jane@example.com",
        metadata={"email": "jane@example.com", "note": "call +44 20 7946 0958", "plan": "pro"},
        error="timeout talking to bob@corp.io",
    )
    env.client.send_message(
        QueueUrl=env.dlq_url,
        MessageBody=json.dumps(
            {"job_id": job, "_dlq_reason": "smtp bob@corp.io", "phone": "+1 555 123 4567"}
        ),
    )

    masked = invoke(["jobs", "show", job, "-o", "json"])
    shown = masked.json
    assert shown["masked"] is True
    assert shown["job"]["customer_id"] == "****"
    assert shown["job"]["error_message"] == "timeout talking to ****"
    assert shown["job"]["metadata"] == {"email": "****", "note": "call ****", "plan": "pro"}
    (message,) = shown["dlq_messages"]
    assert message["reason"] == "smtp ****"
    assert json.loads(message["body"]) == {
        "job_id": job,
        "_dlq_reason": "smtp ****",
        "phone": "****",
    }
    for text in (masked.stdout, invoke(["jobs", "show", job]).stdout):
        assert "bob@corp.io" not in text and "jane@example.com" not in text
        assert "7946 0958" not in text and "555 123" not in text  # not bare digits: ids hold them

    revealed = invoke(["jobs", "show", job, "--reveal", "-o", "json"]).json
    assert revealed["masked"] is False and revealed["job"]["customer_id"] == "jane@example.com"
    assert revealed["dlq_messages"][0]["reason"] == "smtp bob@corp.io"
    assert env.visible(env.dlq_url) == 1


# --------------------------------------------------------------------------- recover
def test_recover_json_contract_action_log_and_messages(env, job_seed, db):
    ids = job_seed.many(12, idle=HOUR)
    capped = job_seed.job(idle=HOUR)
    db.execute(
        """insert into dbops_job_recoveries (job_id, kind, action, attempt, operator, state)
           select %s, 'stale', 'requeued', g, 'x', 'sent' from generate_series(1, 3) g""",
        [capped],
    )

    result = invoke(["jobs", "recover", "--yes", "-o", "json"]).json

    assert {"claimed", "requeued", "abandoned", "sent", "failed_sends", "dry_run"} <= set(result)
    assert (result["claimed"], result["requeued"], result["abandoned"]) == (13, 12, 1)
    assert (result["sent"], result["failed_sends"], result["dry_run"]) == (12, 0, False)
    bodies = [json.loads(m["Body"]) for m in env.drain(env.main_url)]
    assert Counter(b["job_id"] for b in bodies) == Counter(ids)
    assert {b["requeued_by"] for b in bodies} == {"dbops:test-operator"}
    (entry,) = _log("jobs recover")
    assert entry["outcome"] == "ok" and entry["dry_run"] is False
    assert entry["counts"]["claimed"] == 13 and entry["counts"]["sent"] == 12
    assert entry["operator"] == "test-operator"


def test_recover_table_output(env, job_seed):
    job_seed.many(3, idle=HOUR)
    result = invoke(["jobs", "recover", "--yes"])
    assert "requeued" in result.stdout and "3 to re-queue" in result.stderr


def test_recover_refuses_without_yes_off_a_tty(env, job_seed, db):
    job_seed.many(3, idle=HOUR)
    before = db.execute("select id, status, updated_at from jobs order by id").fetchall()

    result = invoke(["jobs", "recover", "-o", "json"], code=6)

    assert "--yes" in one_line_error(result.stderr)
    assert db.execute("select id, status, updated_at from jobs order by id").fetchall() == before
    assert env.visible(env.main_url) == 0


@pytest.mark.parametrize("bad", ["1m", "119s", "90s"])
def test_recover_refuses_thresholds_under_two_minutes(env, job_seed, bad):
    job_seed.many(2, idle=HOUR)
    result = invoke(["jobs", "recover", "--older-than", bad, "--yes", "-o", "json"], code=2)
    line = one_line_error(result.stderr)
    assert bad in line and "2m" in line
    assert env.visible(env.main_url) == 0


def test_recover_help_explains_the_floor():
    text = " ".join(invoke(["jobs", "recover", "--help"]).stdout.split())
    assert "At least 2m" in text and "exit 2" in text


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "stale", "--older-than", "ten minutes"],
        ["jobs", "recover", "--older-than", "5x", "--yes"],
        ["jobs", "orphans", "--older-than", "-3m"],
        ["jobs", "list", "--since", "yesterday"],
        ["jobs", "stats", "--since", "0s"],
    ],
)
def test_malformed_durations_are_usage_errors_naming_the_value(db_env, args):
    result = invoke(args, code=2)
    bad = args[
        args.index("--older-than") + 1 if "--older-than" in args else args.index("--since") + 1
    ]
    assert repr(bad) in one_line_error(result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "show", "not-a-uuid"],
        ["jobs", "requeue", "not-a-uuid", "--yes"],
        ["jobs", "fail", "12345", "--reason", "x", "--yes"],
    ],
)
def test_malformed_uuid_is_a_usage_error(env, args):
    result = invoke(args, code=2)
    assert "not a UUID" in one_line_error(result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "show", UNKNOWN],
        ["jobs", "requeue", UNKNOWN, "--yes"],
        ["jobs", "fail", UNKNOWN, "--reason", "x", "--yes"],
    ],
)
def test_unknown_job_is_not_found(env, args):
    result = invoke(args, code=4)
    assert UNKNOWN in one_line_error(result.stderr)


@pytest.mark.parametrize(
    "args",
    [["jobs", "stale"], ["jobs", "recover", "--yes"], ["jobs", "show", UNKNOWN]],
)
def test_database_down_is_a_remote_error(monkeypatch, args):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://dbops:s3cret-pw@127.0.0.1:{free_port()}/x")
    monkeypatch.setenv("SQS_QUEUE_URL", "http://127.0.0.1:1/000000000000/q")
    result = invoke(args, code=5)
    line = one_line_error(result.stderr)
    assert "unreachable" in line and "s3cret-pw" not in line


def test_recover_without_a_queue_is_a_config_error(db_env, job_seed, db):
    job_seed.many(2, idle=HOUR)
    result = invoke(["jobs", "recover", "--yes"], code=3)
    assert "SQS_QUEUE_URL" in one_line_error(result.stderr)
    assert db.execute("select count(*) as n from dbops_job_recoveries").fetchone()["n"] == 0


def test_recover_nothing_to_do(env):
    result = invoke(["jobs", "recover", "--yes", "-o", "json"]).json
    assert (result["claimed"], result["sent"]) == (0, 0)


def test_recover_dry_run_reports_what_would_happen(env, job_seed):
    ids = job_seed.many(4, idle=HOUR)
    result = invoke(["jobs", "recover", "--dry-run", "-o", "json"]).json
    assert result["dry_run"] is True
    assert (result["claimed"], result["requeued"], result["sent"]) == (4, 4, 0)
    assert sorted(j["job_id"] for j in result["jobs"]) == sorted(ids)
    assert _log("jobs recover")[0]["outcome"] == "dry_run"


# --------------------------------------------------------------------------- requeue, fail
def test_requeue_ids_and_orphans(env, job_seed, db):
    failed = job_seed.job(status="failed", idle=60, error="boom")
    orphan = job_seed.job(status="pending", idle=2 * HOUR)

    result = invoke(["jobs", "requeue", failed, "--yes", "-o", "json"]).json
    assert (result["requeued"], result["sent"], result["dry_run"]) == (1, 1, False)
    dry = invoke(["jobs", "requeue", "--orphans", "--dry-run", "-o", "json"]).json
    assert [j["job_id"] for j in dry["jobs"]] == [orphan] and dry["dry_run"] is True
    result = invoke(
        ["jobs", "requeue", "--orphans", "--older-than", "1h", "--yes", "-o", "json"]
    ).json
    assert (result["requeued"], result["sent"]) == (1, 1)

    bodies = [json.loads(m["Body"]) for m in env.drain(env.main_url)]
    assert Counter(b["job_id"] for b in bodies) == Counter([failed, orphan])
    assert [e["outcome"] for e in _log("jobs requeue")] == ["ok", "dry_run", "ok"]


def test_requeue_needs_ids_or_orphans(env):
    assert "--orphans" in one_line_error(invoke(["jobs", "requeue", "--yes"], code=2).stderr)
    some = "00000000-0000-0000-0000-000000000001"
    invoke(["jobs", "requeue", some, "--orphans", "--yes"], code=2)
    invoke(["jobs", "requeue", some, "--older-than", "1h", "--yes"], code=2)


def test_fail_command(env, job_seed, db):
    pending = job_seed.job(status="pending", idle=60)
    done = job_seed.job(status="completed", idle=60)

    invoke(["jobs", "fail", pending, "--reason", "bad file"], code=6)
    dry = invoke(
        ["jobs", "fail", pending, done, "--reason", "bad file", "--dry-run", "-o", "json"]
    ).json
    assert (dry["failed"], dry["skipped"], dry["dry_run"]) == (1, 1, True)
    assert (
        db.execute("select status from jobs where id = %s", [pending]).fetchone()["status"]
        == "pending"
    )
    result = invoke(
        ["jobs", "fail", pending, done, "--reason", "bad file", "--yes", "-o", "json"]
    ).json
    assert (result["failed"], result["skipped"]) == (1, 1)
    row = db.execute("select status, error_message from jobs where id = %s", [pending]).fetchone()
    assert row["status"] == "failed" and "bad file" in row["error_message"]
    assert [e["outcome"] for e in _log("jobs fail")] == ["ok", "dry_run", "refused"]


def test_supabase_transport_recover(supabase_env, env, job_seed, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")
    ids = job_seed.many(11, idle=HOUR)
    result = invoke(["jobs", "recover", "--yes", "-o", "json"]).json
    assert (result["claimed"], result["sent"]) == (11, 11)
    assert Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url)) == Counter(ids)
    assert invoke(["jobs", "stale", "-o", "json"]).json == []


def test_recover_accepts_a_queue_name(env, job_seed, monkeypatch):
    ids = job_seed.many(3, idle=HOUR)
    monkeypatch.setenv("SQS_QUEUE_URL", env.main_name)
    assert invoke(["jobs", "recover", "--yes", "-o", "json"]).json["sent"] == 3
    assert Counter(json.loads(m["Body"])["job_id"] for m in env.drain(env.main_url)) == Counter(ids)
