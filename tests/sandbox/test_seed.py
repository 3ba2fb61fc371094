"""Seeding scenarios into a real sandbox: counts and shapes, checked in the DB and queues."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg.rows import dict_row

from dbops.sandbox import runtime, seed
from dbops.sandbox.runtime import SandboxState
from dbops.sandbox.seed import SeedResult
from dbops.services import demo
from tests.helpers import pgdata_parent

# Independent of dbops_demo_summary(): the definitions the task gives, in plain SQL.
STALE_SQL = """
select j.id from jobs j
where j.status = 'in_progress'
  and greatest(j.updated_at, (select max(w.last_heartbeat) from worker_heartbeats w
                              where w.current_job_id = j.id)) < now() - interval '10 minutes'
"""


@pytest.fixture(scope="module")
def sandbox_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One sandbox for this module, in its own folders; stopped at the end."""
    # Data outside pytest's basetemp (see tests/sandbox/test_runtime.py::private_sandbox).
    data = tempfile.mkdtemp(prefix="dbops-sbx-test-", dir=pgdata_parent())
    base = tmp_path_factory.mktemp("sbx-seed")
    dirs = {"DBOPS_DATA_DIR": data, "DBOPS_CONFIG_DIR": str(base / "config")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in dirs.items():
            mp.setenv(key, value)
        runtime.up()
    yield dirs
    with pytest.MonkeyPatch.context() as mp:
        for key, value in dirs.items():
            mp.setenv(key, value)
        try:
            runtime.down()
        finally:
            shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def state(sandbox_dirs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> SandboxState:
    for key, value in sandbox_dirs.items():
        monkeypatch.setenv(key, value)
    return runtime.require_running()


@pytest.fixture
def conn(state: SandboxState) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    assert state.database_url
    with psycopg.connect(state.database_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def sqs(state: SandboxState) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=state.sqs_endpoint,
        region_name="us-east-1",
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )


@pytest.fixture
def incident(state: SandboxState) -> SeedResult:
    return seed.run("incident")


def _all(conn: psycopg.Connection[dict[str, Any]], sql: str) -> list[dict[str, Any]]:
    return conn.execute(sql).fetchall()


def _one(conn: psycopg.Connection[dict[str, Any]], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return next(iter(row.values()))


def _peek_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every visible message (left on the queue, hidden for a minute)."""
    seen: dict[str, dict[str, Any]] = {}
    empty = 0
    while empty < 2:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        empty = 0 if got else empty + 1
        for m in got:
            seen[m["MessageId"]] = m
    return list(seen.values())


def _json(body: str) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- jobs
def test_incident_jobs_cover_every_status(incident: SeedResult, conn: Any) -> None:
    rows = _all(conn, "select status, count(*) as n from jobs group by status")
    by_status = {r["status"]: r["n"] for r in rows}

    assert by_status == incident.jobs_by_status
    assert set(by_status) == {
        "pending",
        "in_progress",
        "completed",
        "complete",
        "failed",
        "cancelled",
    }
    assert 200 <= sum(by_status.values()) == incident.jobs <= 500
    assert by_status["complete"] >= 5  # legacy rows


def test_incident_stale_jobs_have_dead_workers_or_none(incident: SeedResult, conn: Any) -> None:
    stale = {r["id"] for r in _all(conn, STALE_SQL)}
    assert len(stale) == incident.stale_jobs >= 10

    holders = _all(
        conn,
        """select j.id, j.updated_at, w.last_heartbeat,
                  now() - j.updated_at as idle, now() - w.last_heartbeat as silent
           from jobs j left join worker_heartbeats w on w.current_job_id = j.id
           where j.id = any(array("""
        + STALE_SQL
        + "))",
    )
    assert {r["id"] for r in holders} == stale
    for row in holders:
        assert 30 * 60 - 5 <= row["idle"].total_seconds() <= 90 * 60 + 5
        if row["last_heartbeat"] is not None:
            assert row["silent"].total_seconds() > 120  # the holding worker is dead
    with_worker = [r for r in holders if r["last_heartbeat"] is not None]
    assert len(with_worker) == incident.dead_workers_holding_jobs


def test_incident_long_job_is_alive_and_never_stale(incident: SeedResult, conn: Any) -> None:
    assert incident.long_running_job_id
    row = conn.execute(
        """select j.status, now() - j.updated_at as idle, now() - w.last_heartbeat as silent,
                  w.status as worker_status
           from jobs j join worker_heartbeats w on w.current_job_id = j.id
           where j.id = %s""",
        (incident.long_running_job_id,),
    ).fetchone()
    assert row is not None
    assert row["status"] == "in_progress"
    assert row["idle"].total_seconds() > 2 * 3600  # the row itself looks abandoned ...
    assert row["silent"].total_seconds() < 30  # ... but its worker beats right now
    assert row["worker_status"] == "running"
    stale = {str(r["id"]) for r in _all(conn, STALE_SQL)}
    assert incident.long_running_job_id not in stale


def test_incident_live_and_dead_workers(incident: SeedResult, conn: Any) -> None:
    live = _one(
        conn,
        "select count(*) from worker_heartbeats "
        "where last_heartbeat >= now() - interval '2 minutes'",
    )
    dead_holding = _one(
        conn,
        "select count(*) from worker_heartbeats where current_job_id is not null "
        "and last_heartbeat < now() - interval '2 minutes'",
    )
    assert live == incident.live_workers >= 5
    assert dead_holding == incident.dead_workers_holding_jobs >= 5
    statuses = {r["status"] for r in _all(conn, "select distinct status from worker_heartbeats")}
    assert statuses == {"starting", "idle", "running", "paused", "error"}


def test_incident_orphaned_pending_jobs(incident: SeedResult, conn: Any) -> None:
    orphans = _one(
        conn,
        """select count(*) from jobs j
           where j.status = 'pending' and j.created_at < now() - interval '30 minutes'
             and not exists (select 1 from queue_history q
                             where q.job_id = j.id and q.event = 'queue_claimed')""",
    )
    assert orphans == incident.orphaned_pending_jobs >= 5
    # Recent pending jobs were claimed and enqueued: not orphans.
    claimed_recent = _one(
        conn,
        """select count(*) from jobs j
           where j.status = 'pending' and j.created_at >= now() - interval '30 minutes'
             and exists (select 1 from queue_history q
                         where q.job_id = j.id and q.event = 'queue_claimed')""",
    )
    assert claimed_recent >= 10


def test_incident_results_and_idempotency_keys(incident: SeedResult, conn: Any) -> None:
    stuck = _one(
        conn,
        "select count(*) from job_results where status = 'submitting' "
        "and updated_at < now() - interval '15 minutes'",
    )
    assert stuck == incident.results_stuck_submitting >= 3
    rows = _all(
        conn,
        """select r.job_id::text as job_id, r.directory_name, r.idempotency_key, r.status,
                  j.customer_id, j.package_size
           from job_results r join jobs j on j.id = r.job_id""",
    )
    assert len(rows) == incident.job_results
    assert {r["status"] for r in rows} == {"submitting", "submitted", "failed", "skipped"}
    for r in rows:
        factors = seed.result_factors(r["customer_id"], r["package_size"])
        assert re.fullmatch(r"[0-9a-f]{64}", r["idempotency_key"])
        assert r["idempotency_key"] == seed.idempotency_key(
            r["job_id"], r["directory_name"], factors
        )


def test_idempotency_key_format() -> None:
    key = seed.idempotency_key("j1", "inbox", {"b": 2, "a": [1, "x"]})
    import hashlib

    assert key == hashlib.sha256(b'j1:inbox:{"a":[1,"x"],"b":2}').hexdigest()


def test_incident_queue_history(incident: SeedResult, conn: Any) -> None:
    assert _one(conn, "select count(*) from queue_history") == incident.queue_history_events
    events = {r["event"] for r in _all(conn, "select distinct event from queue_history")}
    assert {"created", "queue_claimed", "enqueued", "started", "completed", "failed"} <= events


# --------------------------------------------------------------------------- rate limits
def test_incident_rate_limit_traffic(incident: SeedResult, conn: Any) -> None:
    recent = _all(
        conn,
        """select identifier, endpoint, count(*) as n from rate_limit_requests
           where created_at >= now() - interval '1 minute'
           group by 1, 2 order by n desc""",
    )
    top = recent[0]
    assert top["identifier"].startswith("ip:") and top["endpoint"] == "/api/public/search"
    assert top["n"] == 400 > 100  # far over the public preset
    keys = [r for r in recent if r["identifier"].startswith("api_key:")]
    assert keys and 20 <= keys[0]["n"] <= 30  # near the staff preset, not over it
    assert len({r["identifier"] for r in recent}) > 2  # background traffic too
    old = _one(
        conn,
        "select count(*) from rate_limit_requests where created_at < now() - interval '24 hours'",
    )
    assert old > 0
    assert _one(conn, "select count(*) from rate_limit_requests") == incident.rate_limit_requests


# --------------------------------------------------------------------------- queues
def test_incident_dlq_has_every_shape(
    incident: SeedResult, state: SandboxState, sqs: Any, conn: Any
) -> None:
    messages = _peek_all(sqs, state.dlq_url)
    assert len(messages) == incident.dlq_messages >= 10
    bodies = [(m, _json(m["Body"])) for m in messages]
    attrs = [m.get("MessageAttributes", {}) for m in messages]

    normal = [
        a
        for (m, b), a in zip(bodies, attrs, strict=True)
        if b
        and isinstance(b.get("priority"), int)
        and a.get("job_id", {}).get("DataType") == "String"
        and a.get("customer_id", {}).get("DataType") == "String"
        and a.get("priority", {}).get("DataType") == "Number"
    ]
    assert normal
    assert any(b and b.get("priority") == "pro" for _, b in bodies)
    assert any(b is None for _, b in bodies)  # not JSON at all
    assert any(b and "_dlq_reason" in b and "_original_message_id" in b for _, b in bodies)
    assert any(b and not m.get("MessageAttributes") for m, b in bodies)  # attributes missing
    assert any(b and "retry_attempt" in b and "requeued_by" in b for _, b in bodies)

    completed = {str(r["id"]) for r in _all(conn, "select id from jobs where status = 'completed'")}
    assert any(b and b.get("job_id") in completed for _, b in bodies)


def test_incident_main_queue_has_a_handful(
    incident: SeedResult, state: SandboxState, sqs: Any
) -> None:
    messages = _peek_all(sqs, state.main_queue_url)
    assert len(messages) == incident.main_queue_messages
    assert 3 <= len(messages) <= 50
    assert all(_json(m["Body"]) for m in messages)


# --------------------------------------------------------------------------- re-seeding
def test_reseeding_replaces_data_with_the_same_scenario_and_fresh_ids(
    state: SandboxState, conn: Any, sqs: Any
) -> None:
    first = seed.run("incident")
    ids_first = {r["id"] for r in _all(conn, "select id from jobs")}
    _peek_all(sqs, state.dlq_url)  # hide them: a re-seed must purge in-flight ones too

    second = seed.run("incident")
    ids_second = {r["id"] for r in _all(conn, "select id from jobs")}

    assert ids_first.isdisjoint(ids_second)  # fresh ids every time
    same = {"elapsed_seconds", "long_running_job_id"}
    assert second.model_dump(exclude=same) == first.model_dump(exclude=same)
    assert _one(conn, "select count(*) from jobs") == second.jobs  # replaced, not doubled
    assert len(_peek_all(sqs, state.dlq_url)) == second.dlq_messages


def test_fresh_ids_keep_every_shape_and_age() -> None:
    plain, salted = seed.plan_incident(), seed.plan_incident(id_salt=12345)
    strip = {"id", "job_id", "worker_id", "current_job_id", "idempotency_key", "metadata"}
    for a, b in ((plain.jobs, salted.jobs), (plain.workers, salted.workers)):
        assert [{k: v for k, v in r.items() if k not in strip} for r in a] == [
            {k: v for k, v in r.items() if k not in strip} for r in b
        ]
    assert {j["id"] for j in plain.jobs}.isdisjoint(j["id"] for j in salted.jobs)
    assert seed.plan_incident().long_running_job_id == plain.long_running_job_id


def test_incident_summary_function_agrees(incident: SeedResult, state: SandboxState) -> None:
    with runtime.connected() as c:
        assert state.main_queue_url and state.dlq_url
        summary = demo.summarize(
            store=c.store,
            queues=c.queues,
            main_queue_url=state.main_queue_url,
            dlq_url=state.dlq_url,
        )
    assert summary.stale_jobs == incident.stale_jobs
    assert summary.dead_workers_holding_jobs == incident.dead_workers_holding_jobs
    assert summary.orphaned_pending_jobs == incident.orphaned_pending_jobs
    assert summary.results_stuck_submitting == incident.results_stuck_submitting
    assert summary.live_workers == incident.live_workers
    assert summary.legacy_complete_jobs == incident.jobs_by_status["complete"]
    assert summary.dlq_depth == incident.dlq_messages
    assert summary.main_queue_depth == incident.main_queue_messages
    offender = summary.top_rate_limit_offender
    assert offender is not None and offender.identifier == incident.rate_limit_offender
    assert offender.requests == 400 and offender.preset == "public" and offender.limit == 100
    assert len(summary.findings) >= 6


def test_clean_scenario_is_healthy(state: SandboxState, conn: Any) -> None:
    result = seed.run("clean")

    assert result.stale_jobs == result.orphaned_pending_jobs == 0
    assert result.dlq_messages == result.results_stuck_submitting == 0
    assert result.dead_workers_holding_jobs == 0 and result.live_workers > 0
    assert result.jobs_by_status.get("completed", 0) >= 50
    assert _all(conn, STALE_SQL) == []
    with runtime.connected() as c:
        assert state.main_queue_url and state.dlq_url
        summary = demo.summarize(
            store=c.store,
            queues=c.queues,
            main_queue_url=state.main_queue_url,
            dlq_url=state.dlq_url,
        )
    assert summary.findings == []
    assert summary.dlq_depth == 0 and summary.stale_jobs == 0
    assert summary.top_rate_limit_offender is None or (
        summary.top_rate_limit_offender.requests <= (summary.top_rate_limit_offender.limit or 30)
    )
    statuses = Counter(r["status"] for r in _all(conn, "select status from jobs"))
    assert set(statuses) <= {"completed", "failed", "in_progress", "pending"}


def test_seed_refuses_when_the_sandbox_is_down(tmp_path: Path) -> None:
    # The autouse fixture points DBOPS_DATA_DIR at an empty folder: no sandbox there.
    from dbops.errors import ConfigError

    with pytest.raises(ConfigError, match="sandbox is not running"):
        seed.run("incident")


def test_demo_falls_back_to_its_summary_when_the_audit_fails(state: SandboxState) -> None:
    from dbops.errors import RemoteError
    from dbops.sandbox.demo import run_demo

    def broken_audit(**_: Any) -> Any:
        raise RemoteError("audit exploded")

    report, audit_model = run_demo(audit_hook=broken_audit)

    assert audit_model is None and report.audit is None
    assert report.audit_error == "RemoteError: audit exploded"
    assert report.sandbox.already_running is True
    assert report.summary.stale_jobs == report.seeded.stale_jobs > 0
