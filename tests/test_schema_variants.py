"""The command matrix of issue 11 on every application schema variant.

Each test runs once per variant (`schema_variant`: "standard", then "legacy") through the
parametrized fixtures in tests/conftest.py (`variant_env`, `variant_db`, ...): a fresh
database holding that variant's app schema plus every dbops migration. The `legacy`
variant is production-shaped (the `-- dbops:only legacy` lines of src/dbops/sql/app/):
jobs.customer_id uuid, extra columns, RLS with a service_role policy only, no 'cancelled'
in the status check, queue_history ids uuid with legacy status_from/status_to rows (event
and details null) and append-only triggers, worker_heartbeats.current_job_id a foreign
key, uuid rate_limit_requests ids. Every command must do its real work on both.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import psycopg
import pytest

from dbops.adapters.postgres import PostgresStore
from dbops.adapters.sqs import SqsQueues
from dbops.sandbox import seed as seeding
from dbops.services.audit import CHECK_IDS
from tests.conftest import QueuePair
from tests.helpers import invoke

Conn = psycopg.Connection[Any]
HOUR = 3600

# Stale as docs/architecture.md defines it, in plain SQL (independent of dbops' own functions).
STALE_SQL = """
select j.id::text as id from jobs j
where j.status = 'in_progress'
  and greatest(j.updated_at, (select max(w.last_heartbeat) from worker_heartbeats w
                              where w.current_job_id = j.id)) < now() - interval '10 minutes'
"""


# --------------------------------------------------------------------------- helpers
def _rows(conn: Conn, query: str, params: Any = None) -> list[dict[str, Any]]:
    return conn.execute(query, params).fetchall()


def _one(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return next(iter(row.values()))


def _allowed_statuses(url: str) -> frozenset[str] | None:
    store = PostgresStore(url)
    try:
        return seeding.read_shape(store).statuses
    finally:
        store.close()


def _statuses_fit(conn: Conn, url: str) -> None:
    """dbops never wrote a status the jobs check constraint does not allow."""
    allowed = _allowed_statuses(url)
    present = {r["status"] for r in _rows(conn, "select distinct status from jobs")}
    assert allowed is None or present <= allowed, (present, allowed)


def _customers(conn: Conn) -> dict[str, str]:
    """job id -> customer id, both as text (a uuid column's value as its text form)."""
    query = "select id::text as id, customer_id::text as c from jobs"
    return {r["id"]: r["c"] for r in _rows(conn, query)}


def _bodies(queues: QueuePair, url: str) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in queues.drain(url)]


def _log(command: str) -> list[dict[str, Any]]:
    return [e for e in invoke(["log", "-o", "json"]).json if e["command"] == command]


class VariantRows:
    """Direct inserts that fit the variant: customer ids of the column's type."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.uuid_customers = (
            _one(
                conn,
                """select data_type from information_schema.columns
                   where table_schema = current_schema() and table_name = 'jobs'
                     and column_name = 'customer_id'""",
            )
            == "uuid"
        )

    def customer(self, name: str) -> str:
        return seeding.customer_uuid(name) if self.uuid_customers else name

    def job(self, *, status: str, idle: float = 60, customer: str = "acme") -> str:
        return str(
            _one(
                self.conn,
                """insert into jobs (customer_id, status, created_at, updated_at, started_at,
                                     completed_at)
                   values (%s, %s, now() - make_interval(secs => %s + 60),
                           now() - make_interval(secs => %s),
                           now() - make_interval(secs => %s + 30),
                           case when %s in ('completed', 'complete')
                                then now() - make_interval(secs => %s) end)
                   returning id::text""",
                [self.customer(customer), status, idle, idle, idle, status, idle],
            )
        )


@pytest.fixture
def rows(variant_db: Conn) -> VariantRows:
    return VariantRows(variant_db)


@pytest.fixture
def incident(
    variant_env: QueuePair,
    variant_database_url: str,
    sqs_endpoint: str,
    schema_variant: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> seeding.SeedResult:
    """The sandbox's incident scenario, seeded into this variant's database and queues."""
    monkeypatch.chdir(tmp_path)  # runbooks write files to the cwd
    store = PostgresStore(variant_database_url)
    try:
        return seeding.seed(
            store=store,
            queues=SqsQueues(region="us-east-1", endpoint=sqs_endpoint),
            main_queue_url=variant_env.main_url,
            dlq_url=variant_env.dlq_url,
            scenario="incident",
            schema=schema_variant,
        )
    finally:
        store.close()


# --------------------------------------------------------------------------- the variants
def test_the_variant_is_what_it_claims(
    schema_variant: str, incident: seeding.SeedResult, variant_db: Conn
) -> None:
    """Guards the fixture: each parameter really builds its own schema shape."""
    customer_type = _one(
        variant_db,
        "select data_type from information_schema.columns "
        "where table_name = 'jobs' and column_name = 'customer_id'",
    )
    statuses = {r["status"] for r in _rows(variant_db, "select distinct status from jobs")}
    if schema_variant == "legacy":
        assert customer_type == "uuid" and incident.customer_ids == "uuid"
        assert "cancelled" not in statuses and {"complete", "completed"} <= statuses
        assert incident.legacy_history_rows > 0
        assert _one(variant_db, "select relrowsecurity from pg_class where relname = 'jobs'")
    else:
        assert customer_type == "text" and incident.customer_ids == "text"
        assert "cancelled" in statuses and incident.legacy_history_rows == 0


# --------------------------------------------------------------------------- jobs: reads
def test_jobs_list(incident: seeding.SeedResult, variant_db: Conn) -> None:
    by_status = incident.jobs_by_status
    failed = invoke(["jobs", "list", "--status", "failed", "--limit", "1000", "-o", "json"]).json
    assert len(failed) == by_status["failed"]
    assert {j["status"] for j in failed} == {"failed"}
    completed = invoke(
        ["jobs", "list", "--status", "completed", "--limit", "1000", "-o", "json"]
    ).json
    assert len(completed) == by_status["completed"] + by_status["complete"]

    top = _rows(
        variant_db,
        "select customer_id::text as c, count(*) as n from jobs "
        "group by 1 order by 2 desc, 1 limit 1",
    )[0]
    customer, count = top["c"], top["n"]
    mine = invoke(["jobs", "list", "--customer", customer, "--limit", "1000", "-o", "json"]).json
    assert len(mine) == count > 0
    assert {j["customer_id"] for j in mine} == {customer}


def test_jobs_show_with_uuid_ids_and_legacy_history(
    schema_variant: str, incident: seeding.SeedResult, variant_db: Conn
) -> None:
    legacy = schema_variant == "legacy"
    job_id = _one(
        variant_db,
        "select job_id::text from queue_history "
        + ("where event is null and status_to is not null " if legacy else "")
        + "order by created_at limit 1",
    )
    history = _rows(
        variant_db,
        "select id::text as id, to_jsonb(q) as raw from queue_history q where job_id = %s",
        [job_id],
    )

    shown = invoke(["jobs", "show", job_id, "-o", "json"]).json

    assert shown["job"]["id"] == job_id
    assert shown["job"]["customer_id"] == _one(
        variant_db, "select customer_id::text from jobs where id = %s", [job_id]
    )
    entries = {str(e["id"]): e for e in shown["history"]}
    assert set(entries) == {h["id"] for h in history}
    if legacy:
        transitions = [h["raw"] for h in history if h["raw"]["event"] is None]
        assert transitions
        for raw in transitions:
            # The legacy row is shown, and says what changed.
            assert raw["status_to"] in json.dumps(entries[str(raw["id"])])
    assert job_id in invoke(["jobs", "show", job_id]).stdout


def test_jobs_stats(incident: seeding.SeedResult) -> None:
    stats = invoke(["jobs", "stats", "--since", "30d", "-o", "json"]).json
    by_status = incident.jobs_by_status
    assert stats["by_status"] == by_status
    assert stats["completed"] == by_status["completed"] + by_status["complete"]
    assert stats["failed"] == by_status["failed"]
    assert stats["legacy_complete"] == by_status["complete"]
    assert stats["stuck_submitting"] == incident.results_stuck_submitting


def test_jobs_stale_and_orphans(incident: seeding.SeedResult, variant_db: Conn) -> None:
    stale = invoke(["jobs", "stale", "--limit", "1000", "-o", "json"]).json
    assert {j["id"] for j in stale} == {r["id"] for r in _rows(variant_db, STALE_SQL)}
    assert len(stale) == incident.stale_jobs
    assert incident.long_running_job_id not in {j["id"] for j in stale}
    customers = _customers(variant_db)
    assert all(j["customer_id"] == customers[j["id"]] for j in stale)

    orphans = invoke(["jobs", "orphans", "--limit", "1000", "-o", "json"]).json
    assert len(orphans) == incident.orphaned_pending_jobs


# --------------------------------------------------------------------------- jobs: writes
def test_jobs_recover_sends_every_stale_job(
    incident: seeding.SeedResult,
    variant_env: QueuePair,
    variant_db: Conn,
    variant_database_url: str,
) -> None:
    stale = {r["id"] for r in _rows(variant_db, STALE_SQL)}
    history_before = _one(variant_db, "select count(*) from queue_history")

    result = invoke(["jobs", "recover", "--yes", "-o", "json"]).json

    assert (result["claimed"], result["requeued"], result["sent"]) == (len(stale),) * 3
    assert result["failed_sends"] == 0
    bodies = _bodies(variant_env, variant_env.main_url)
    recovered = [b for b in bodies if b.get("requeued_by")]
    assert Counter(b["job_id"] for b in recovered) == Counter(stale)
    customers = _customers(variant_db)
    assert all(b["customer_id"] == customers[b["job_id"]] for b in recovered)
    assert invoke(["jobs", "stale", "-o", "json"]).json == []
    # dbops appended to the history (never updated it: the legacy triggers would refuse).
    assert _one(variant_db, "select count(*) from queue_history") > history_before
    _statuses_fit(variant_db, variant_database_url)
    (entry,) = _log("jobs recover")
    assert entry["outcome"] == "ok" and entry["counts"]["sent"] == len(stale)


def test_jobs_requeue_and_fail(
    incident: seeding.SeedResult,
    variant_env: QueuePair,
    variant_db: Conn,
    variant_database_url: str,
) -> None:
    failed = _one(
        variant_db, "select id::text from jobs where status = 'failed' order by id limit 1"
    )
    orphans = {o["id"] for o in invoke(["jobs", "orphans", "-o", "json"]).json}
    variant_env.drain(variant_env.main_url)  # the seeded messages

    one = invoke(["jobs", "requeue", failed, "--yes", "-o", "json"]).json
    assert (one["requeued"], one["sent"]) == (1, 1)
    many = invoke(["jobs", "requeue", "--orphans", "--yes", "-o", "json"]).json
    assert (many["requeued"], many["sent"]) == (len(orphans), len(orphans))
    sent = Counter(b["job_id"] for b in _bodies(variant_env, variant_env.main_url))
    assert sent == Counter([failed, *orphans])

    pending = _one(
        variant_db,
        "select id::text from jobs where status = 'pending' and not (id::text = any(%s)) "
        "order by id limit 1",
        [list(orphans)],
    )
    done = _one(variant_db, "select id::text from jobs where status = 'complete' limit 1")
    result = invoke(
        ["jobs", "fail", pending, done, "--reason", "bad input file", "--yes", "-o", "json"]
    ).json
    assert (result["failed"], result["skipped"]) == (1, 1)
    row = variant_db.execute(
        "select status, error_message from jobs where id = %s", [pending]
    ).fetchone()
    assert row is not None
    assert row["status"] == "failed" and "bad input file" in row["error_message"]
    assert _one(variant_db, "select status from jobs where id = %s", [done]) == "complete"
    _statuses_fit(variant_db, variant_database_url)
    assert [e["outcome"] for e in _log("jobs requeue")] == ["ok", "ok"]
    assert [e["outcome"] for e in _log("jobs fail")] == ["ok"]


def test_jobs_retry_and_fail_by_filter(
    variant_env: QueuePair,
    variant_db: Conn,
    variant_database_url: str,
    rows: VariantRows,
    schema_variant: str,
) -> None:
    failed = [rows.job(status="failed", customer="acme") for _ in range(3)]
    other = rows.job(status="failed", customer="beta")
    pending = [rows.job(status="pending", idle=HOUR, customer="beta") for _ in range(2)]
    variant_db.execute(
        "update jobs set error_message = 'Timeout talking to S3' where id::text = any(%s)",
        [[*failed, other]],
    )
    acme, beta = rows.customer("acme"), rows.customer("beta")

    args = ["jobs", "retry", "--customer", acme, "--error-like", "timeout", "--yes", "-o", "json"]
    result = invoke(args).json

    assert (result["matched"], result["retried"], result["sent"]) == (3, 3, 3)
    bodies = _bodies(variant_env, variant_env.main_url)
    assert Counter(b["job_id"] for b in bodies) == Counter(failed)
    assert {b["customer_id"] for b in bodies} == {acme}
    args = ["jobs", "fail", "--customer", beta, "--status", "pending", "--reason", "closed"]
    done = invoke([*args, "--yes", "-o", "json"]).json
    assert (done["matched"], done["failed"]) == (2, 2)
    assert _one(variant_db, "select status from jobs where id = %s", [other]) == "failed"
    assert {_one(variant_db, "select status from jobs where id = %s", [p]) for p in pending} == {
        "failed"
    }
    _statuses_fit(variant_db, variant_database_url)
    # Statuses are checked against this database's own check constraint.
    refused = invoke(["jobs", "retry", "--status", "cancelled", "--yes"], code=2).stderr
    expected = "status check allows only" if schema_variant == "legacy" else "failed jobs only"
    assert expected in refused
    assert [e["outcome"] for e in _log("jobs retry")] == ["ok"]


# --------------------------------------------------------------------------- audit
def test_audit(incident: seeding.SeedResult) -> None:
    result = invoke(["audit", "-o", "json"], code=None)
    data = result.json
    assert result.code == data["exit_code"]
    assert [c["id"] for c in data["checks"]] == list(CHECK_IDS)
    checks = {c["id"]: c for c in data["checks"]}
    assert not [c["id"] for c in data["checks"] if c["severity"] == "unknown"], data
    assert checks["db.schema"]["severity"] == "ok", checks["db.schema"]
    assert checks["jobs.stale"]["observed"] == incident.stale_jobs
    assert checks["jobs.orphaned"]["observed"] == incident.orphaned_pending_jobs
    assert data["verdict"] == "CRITICAL"


# --------------------------------------------------------------------------- rate limits
def test_ratelimit_top_status_reset_block_cleanup(
    incident: seeding.SeedResult, variant_db: Conn
) -> None:
    offender = seeding.OFFENDER_IP
    top = invoke(["ratelimit", "top", "--since", "1m", "-o", "json"]).json
    assert top[0]["identifier"] == offender
    assert top[0]["requests"] >= seeding.OFFENDER_REQUESTS
    assert top[0]["throttled"] is True

    status = invoke(
        ["ratelimit", "status", offender, "--endpoint", seeding.OFFENDER_ENDPOINT, "-o", "json"]
    ).json
    assert status[0]["allowed"] is False

    reset = invoke(["ratelimit", "reset", offender, "--yes", "-o", "json"]).json
    # Everything inside the longest window went (uuid ids on legacy, bigserial on standard).
    assert reset["deleted"] == reset["requests"] >= seeding.OFFENDER_REQUESTS
    inside = _one(
        variant_db,
        "select count(*) from rate_limit_requests where identifier = %s and created_at >= %s",
        [offender, reset["cutoff"]],
    )
    assert inside == 0
    after = invoke(
        ["ratelimit", "status", offender, "--endpoint", seeding.OFFENDER_ENDPOINT, "-o", "json"]
    ).json
    assert after[0]["allowed"] is True

    invoke(["ratelimit", "block", "ip:192.0.2.10", "--for", "1h", "--reason", "abuse", "--yes"])
    blocked = invoke(["ratelimit", "status", "ip:192.0.2.10", "-o", "json"]).json
    assert blocked and all(s["blocked"] for s in blocked)

    old = _one(
        variant_db,
        "select count(*) from rate_limit_requests where created_at < now() - interval '1 day'",
    )
    cleaned = invoke(
        ["ratelimit", "cleanup", "--older-than", "1d", "--batch-size", "60", "--yes", "-o", "json"]
    ).json
    assert cleaned["deleted_requests"] == old > 0
    assert (
        _one(
            variant_db,
            "select count(*) from rate_limit_requests where created_at < now() - interval '1 day'",
        )
        == 0
    )
    commands = [e["command"] for e in invoke(["log", "-o", "json"]).json]
    assert {"ratelimit reset", "ratelimit block", "ratelimit cleanup"} <= set(commands)


# --------------------------------------------------------------------------- dlq
def test_dlq_redrive_skip_completed_jobs(variant_env: QueuePair, rows: VariantRows) -> None:
    done, todo = rows.job(status="complete"), rows.job(status="failed")
    for job_id in (done, todo):
        variant_env.client.send_message(
            QueueUrl=variant_env.dlq_url,
            MessageBody=json.dumps({"job_id": job_id, "customer_id": rows.customer("acme")}),
        )

    result = invoke(["dlq", "redrive", "--skip-completed-jobs", "--yes", "-o", "json"]).json

    assert (result["moved"], result["skipped_completed"]) == (1, 1)
    assert [b["job_id"] for b in _bodies(variant_env, variant_env.dlq_url)] == [done]
    assert [b["job_id"] for b in _bodies(variant_env, variant_env.main_url)] == [todo]
    (entry,) = _log("dlq redrive")
    assert entry["outcome"] == "ok"


# --------------------------------------------------------------------------- log
def test_log_records_every_mutation(variant_env: QueuePair, rows: VariantRows) -> None:
    job = rows.job(status="in_progress", idle=HOUR)
    invoke(["jobs", "recover", "--dry-run"])
    invoke(["jobs", "recover", "--yes"])
    invoke(["jobs", "fail", job, "--reason", "gave up", "--yes"])

    entries = invoke(["log", "-o", "json"]).json

    assert [(e["command"], e["outcome"]) for e in entries] == [
        ("jobs fail", "ok"),
        ("jobs recover", "ok"),
        ("jobs recover", "dry_run"),
    ]
    assert [b["job_id"] for b in _bodies(variant_env, variant_env.main_url)] == [job]


# --------------------------------------------------------------------------- runbook
def test_stale_jobs_runbook(
    incident: seeding.SeedResult,
    variant_env: QueuePair,
    variant_db: Conn,
    variant_database_url: str,
) -> None:
    stale = {r["id"] for r in _rows(variant_db, STALE_SQL)}
    assert len(stale) == incident.stale_jobs

    summary = invoke(["runbook", "run", "stale-jobs", "--yes", "-o", "json"]).json

    assert summary["ok"] is True and all(s["status"] == "ok" for s in summary["steps"]), summary
    assert invoke(["jobs", "stale", "-o", "json"]).json == []
    sent = {b["job_id"] for b in _bodies(variant_env, variant_env.main_url)}
    assert stale <= sent
    _statuses_fit(variant_db, variant_database_url)
