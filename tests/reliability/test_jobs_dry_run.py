"""`--dry-run` on `dbops jobs recover/requeue/fail` changes nothing, byte for byte.

The only write a dry run makes is its own row in the operator action log (invariant 4),
so that table is checked separately: exactly one `dry_run` row per command.
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import sql

from tests.helpers import invoke

pytestmark = pytest.mark.reliability

HOUR = 3600


def snapshot_tables(db: Any) -> dict[str, str]:
    """md5 of every public table's full contents (sorted), except the action log."""
    names = [
        r["table_name"]
        for r in db.execute(
            """select table_name from information_schema.tables
               where table_schema = 'public' and table_type = 'BASE TABLE'
                 and table_name <> 'dbops_action_log' order by table_name"""
        ).fetchall()
    ]
    digests = {}
    for name in names:
        row = db.execute(
            sql.SQL(
                "select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as d, "
                "count(*) as n from {} t"
            ).format(sql.Identifier(name))
        ).fetchone()
        digests[name] = f"{row['n']}:{row['d']}"
    return digests


def snapshot_queue(env: Any, url: str) -> dict[str, str]:
    attrs = env.client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return dict(attrs)


def test_dry_runs_leave_database_and_queues_unchanged(env, job_seed, db):
    stale = job_seed.many(15, idle=HOUR)
    job_seed.heartbeat(stale[0], age=1800)
    capped = job_seed.job(idle=HOUR)
    db.execute(
        """insert into dbops_job_recoveries (job_id, kind, action, attempt, operator, state)
           select %s, 'stale', 'requeued', g, 'x', 'sent' from generate_series(1, 3) g""",
        [capped],
    )
    orphan = job_seed.job(status="pending", idle=2 * HOUR)
    failed = job_seed.job(status="failed", idle=60, error="boom")
    job_seed.event(orphan, "created", age=2 * HOUR)
    # An unsent outbox row left by a crashed run (another host, lease expired).
    left = job_seed.many(2, idle=3 * HOUR, customer_prefix="left-")  # the oldest: claimed
    claimed = db.execute(
        "select job_id::text from dbops_jobs_claim_stale(600, 2, 3, 'crashed', 'elsewhere:1:x')"
    ).fetchall()
    assert sorted(r["job_id"] for r in claimed) == sorted(left)
    db.execute("update dbops_job_recoveries set sending_until = now() - interval '1 minute'")
    env.client.send_message(QueueUrl=env.main_url, MessageBody='{"job_id": "already-there"}')
    env.client.send_message(QueueUrl=env.dlq_url, MessageBody='{"job_id": "dead"}')

    tables_before = snapshot_tables(db)
    queues_before = (snapshot_queue(env, env.main_url), snapshot_queue(env, env.dlq_url))
    log_before = db.execute("select count(*) as n from dbops_action_log").fetchone()["n"]

    recover = invoke(["jobs", "recover", "--dry-run", "-o", "json"]).json
    requeue = invoke(["jobs", "requeue", "--orphans", "--dry-run", "-o", "json"]).json
    requeue_ids = invoke(["jobs", "requeue", failed, "--dry-run", "-o", "json"]).json
    fail = invoke(["jobs", "fail", orphan, "--reason", "x", "--dry-run", "-o", "json"]).json
    table = invoke(["jobs", "recover", "--dry-run"])

    assert snapshot_tables(db) == tables_before
    assert (snapshot_queue(env, env.main_url), snapshot_queue(env, env.dlq_url)) == queues_before
    assert [m["Body"] for m in env.drain(env.main_url)] == ['{"job_id": "already-there"}']

    assert recover["dry_run"] is True
    assert (recover["claimed"], recover["requeued"], recover["abandoned"]) == (16, 15, 1)
    assert (recover["sent"], recover["unsent_remaining"]) == (0, 2)
    assert requeue["dry_run"] and [j["job_id"] for j in requeue["jobs"]] == [orphan]
    assert requeue_ids["requeued"] == 1 and fail["failed"] == 1 and fail["dry_run"]
    assert "dry run" in table.stdout + table.stderr
    outcomes = [
        r["outcome"]
        for r in db.execute("select outcome from dbops_action_log order by id").fetchall()
    ]
    assert len(outcomes) == log_before + 5 and set(outcomes[log_before:]) == {"dry_run"}
