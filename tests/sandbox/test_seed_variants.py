"""The seeder on the production-shaped `legacy` application schema (issue 11).

These tests need the application schema only (no dbops migration), so they build it into
an empty database themselves: `migrate(which="app_legacy")`. The same scenarios as on the
standard schema, fitted to what the catalog allows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from dbops.adapters.postgres import PostgresStore
from dbops.adapters.sqs import SqsQueues
from dbops.errors import ConfigError
from dbops.sandbox import seed
from dbops.sandbox.seed import SeedResult, Shape
from dbops.services import migrations
from tests.conftest import QueuePair

LEGACY_STATUSES = {"pending", "in_progress", "complete", "completed", "failed"}
STALE_SQL = """
select j.id from jobs j
where j.status = 'in_progress'
  and greatest(j.updated_at, (select max(w.last_heartbeat) from worker_heartbeats w
                              where w.current_job_id = j.id)) < now() - interval '10 minutes'
"""


@pytest.fixture
def legacy_url(empty_database_url: str) -> str:
    store = PostgresStore(empty_database_url)
    try:
        migrations.migrate(store=store, which="app_legacy")
    finally:
        store.close()
    return empty_database_url


@pytest.fixture
def store(legacy_url: str) -> Iterator[PostgresStore]:
    built = PostgresStore(legacy_url)
    yield built
    built.close()


@pytest.fixture
def conn(legacy_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(legacy_url, autocommit=True, row_factory=dict_row) as c:
        yield c


def _seed(store: PostgresStore, queues: QueuePair, sqs_endpoint: str, scenario: Any) -> SeedResult:
    return seed.seed(
        store=store,
        queues=SqsQueues(region="us-east-1", endpoint=sqs_endpoint),
        main_queue_url=queues.main_url,
        dlq_url=queues.dlq_url,
        scenario=scenario,
        schema="legacy",
    )


def _all(conn: psycopg.Connection[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    return conn.execute(query).fetchall()


def _one(conn: psycopg.Connection[dict[str, Any]], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return next(iter(row.values()))


@pytest.fixture
def incident(store: PostgresStore, queues: QueuePair, sqs_endpoint: str) -> SeedResult:
    return _seed(store, queues, sqs_endpoint, "incident")


# --------------------------------------------------------------------------- the catalog
def test_read_shape_of_the_legacy_schema(store: PostgresStore) -> None:
    shape = seed.read_shape(store)
    assert shape.customer_type == "uuid"
    assert shape.statuses == LEGACY_STATUSES
    assert shape.legacy_history
    assert {"business_name", "email", "directory_limit", "package_type"} <= shape.columns["jobs"]


def test_read_shape_of_the_standard_schema(database_url: str) -> None:
    standard = PostgresStore(database_url)
    try:
        shape = seed.read_shape(standard)
    finally:
        standard.close()
    assert shape.customer_type == "text"
    assert shape.statuses is not None and "cancelled" in shape.statuses
    assert not shape.legacy_history


def test_read_shape_without_a_jobs_table(empty_database_url: str) -> None:
    bare = PostgresStore(empty_database_url)
    try:
        with pytest.raises(ConfigError, match="no jobs table"):
            seed.read_shape(bare)
    finally:
        bare.close()


def test_fit_status_picks_the_nearest_allowed_or_refuses() -> None:
    shape = Shape(statuses=frozenset({"pending", "complete", "failed"}))
    assert shape.fit_status("cancelled") == "failed"
    assert shape.fit_status("completed") == "complete"
    assert shape.fit_status("pending") == "pending"
    assert Shape().fit_status("cancelled") == "cancelled"  # no check constraint
    with pytest.raises(ConfigError, match="allows only complete, failed, pending"):
        shape.fit_status("in_progress")


# --------------------------------------------------------------------------- the incident
def test_incident_fits_the_status_constraint(incident: SeedResult, conn: Any) -> None:
    by_status = {
        r["status"]: r["n"] for r in _all(conn, "select status, count(*) as n from jobs group by 1")
    }
    assert by_status == incident.jobs_by_status
    assert set(by_status) == LEGACY_STATUSES  # no cancelled; both complete and completed
    assert incident.statuses_mapped == {"cancelled": "failed"}
    # The standard incident's cancelled jobs are failed here, saying why.
    assert by_status["failed"] == 35
    assert (
        _one(conn, "select count(*) from jobs where error_message = 'cancelled by operator'") == 10
    )
    assert incident.schema_name == "legacy" and incident.customer_ids == "uuid"


def test_incident_is_the_same_scenario_as_on_the_standard_schema(incident: SeedResult) -> None:
    standard = seed.plan_incident(seed.DEFAULT_SEED)
    assert incident.jobs == len(standard.jobs)
    assert incident.stale_jobs == standard.stale_jobs
    assert incident.orphaned_pending_jobs == standard.orphaned
    assert incident.long_running_job_id == standard.long_running_job_id
    assert incident.dlq_messages == len(standard.dlq)
    assert incident.main_queue_messages == len(standard.main)


def test_incident_customers_are_uuids_named_by_business_name(
    incident: SeedResult, conn: Any
) -> None:
    rows = _all(conn, "select customer_id, business_name, email, package_type from jobs")
    assert len(rows) == incident.jobs
    for row in rows:
        assert isinstance(row["customer_id"], uuid.UUID)
        assert row["business_name"].startswith("cust_")
        assert str(row["customer_id"]) == seed.customer_uuid(row["business_name"])
        assert row["email"].endswith("@customers.example.com")
        assert row["package_type"] in {"starter", "pro", "enterprise"}


def test_incident_messages_carry_the_uuid_customer_ids(
    incident: SeedResult, conn: Any, queues: QueuePair
) -> None:
    customers = {
        str(r["id"]): str(r["customer_id"]) for r in _all(conn, "select id, customer_id from jobs")
    }
    messages = queues.drain(queues.main_url) + queues.drain(queues.dlq_url)
    assert len(messages) == incident.main_queue_messages + incident.dlq_messages
    checked = 0
    for message in messages:
        try:
            body = json.loads(message["Body"])
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("job_id") in customers:
            assert body["customer_id"] == customers[body["job_id"]]
            attrs = message.get("MessageAttributes", {})
            if "customer_id" in attrs:
                assert attrs["customer_id"]["StringValue"] == body["customer_id"]
            checked += 1
    assert checked >= 20


def test_incident_legacy_history_rows(incident: SeedResult, conn: Any) -> None:
    legacy = _all(
        conn,
        "select id, event, details, status_from, status_to from queue_history "
        "where status_to is not null",
    )
    assert len(legacy) == incident.legacy_history_rows > 50
    assert all(isinstance(r["id"], uuid.UUID) for r in legacy)
    assert all(r["event"] is None and r["details"] is None for r in legacy)
    transitions = {(r["status_from"], r["status_to"]) for r in legacy}
    assert ("pending", "in_progress") in transitions
    assert {("in_progress", "completed"), ("in_progress", "failed")} <= transitions
    assert all(to in LEGACY_STATUSES for _, to in transitions)
    # The rest are ordinary events, queue_claimed among them (orphans are found by it).
    assert _one(conn, "select count(*) from queue_history") == incident.queue_history_events
    orphans = _one(
        conn,
        """select count(*) from jobs j
           where j.status = 'pending' and j.created_at < now() - interval '30 minutes'
             and not exists (select 1 from queue_history q
                             where q.job_id = j.id and q.event = 'queue_claimed')""",
    )
    assert orphans == incident.orphaned_pending_jobs


def test_incident_stale_jobs_workers_and_results(incident: SeedResult, conn: Any) -> None:
    assert len(_all(conn, STALE_SQL)) == incident.stale_jobs
    dead_holding = _one(
        conn,
        "select count(*) from worker_heartbeats where current_job_id is not null "
        "and last_heartbeat < now() - interval '2 minutes'",
    )
    assert dead_holding == incident.dead_workers_holding_jobs
    assert _one(conn, "select count(*) from stale_workers") >= dead_holding
    assert _one(conn, "select count(*) from worker_heartbeats where metadata ? 'hostname'") == (
        incident.workers
    )
    rows = _all(
        conn,
        """select r.job_id::text as job_id, r.directory_name, r.idempotency_key, r.payload,
                  j.customer_id::text as customer_id, j.package_size
           from job_results r join jobs j on j.id = r.job_id""",
    )
    assert len(rows) == incident.job_results
    for r in rows:
        factors = seed.result_factors(r["customer_id"], r["package_size"])
        assert r["idempotency_key"] == seed.idempotency_key(
            r["job_id"], r["directory_name"], factors
        )
        assert r["payload"]["factors"] == factors


def test_clean_scenario_on_the_legacy_schema(
    store: PostgresStore, queues: QueuePair, sqs_endpoint: str, conn: Any
) -> None:
    result = _seed(store, queues, sqs_endpoint, "clean")
    assert result.statuses_mapped == {} and result.legacy_history_rows > 0
    assert result.stale_jobs == result.dlq_messages == 0
    assert _all(conn, STALE_SQL) == []
    statuses = {r["status"] for r in _all(conn, "select distinct status from jobs")}
    assert statuses <= LEGACY_STATUSES


def test_reseeding_is_deterministic(
    store: PostgresStore, queues: QueuePair, sqs_endpoint: str, conn: Any
) -> None:
    first = _seed(store, queues, sqs_endpoint, "incident")
    ids = {r["id"] for r in _all(conn, "select id from jobs")}
    second = _seed(store, queues, sqs_endpoint, "incident")
    assert {r["id"] for r in _all(conn, "select id from jobs")} == ids
    assert second.model_dump(exclude={"elapsed_seconds"}) == first.model_dump(
        exclude={"elapsed_seconds"}
    )


# --------------------------------------------------------------------------- the schema
def test_legacy_history_is_append_only(incident: SeedResult, conn: Any) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="UPDATE is not allowed"):
        conn.execute("update queue_history set event = 'x'")
    with pytest.raises(psycopg.errors.RaiseException, match="DELETE is not allowed"):
        conn.execute("delete from queue_history")
    conn.execute("insert into queue_history (job_id) values (gen_random_uuid())")  # inserts: ok


def test_legacy_schema_constraints(incident: SeedResult, conn: Any) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "insert into jobs (customer_id, status) values (gen_random_uuid(), 'cancelled')"
        )
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(
            "insert into worker_heartbeats (worker_id, status, current_job_id) "
            "values (gen_random_uuid(), 'running', gen_random_uuid())"
        )
    policies = _all(
        conn,
        "select polname, array(select rolname from pg_roles where oid = any(polroles)) as roles "
        "from pg_policy where polrelid = 'jobs'::regclass",
    )
    assert [p["roles"] for p in policies] == [["service_role"]]
    assert _one(conn, "select relrowsecurity from pg_class where oid = 'jobs'::regclass")
    assert _one(conn, "select pg_typeof(id)::text from rate_limit_requests limit 1") == "uuid"


def test_app_migration_versions_do_not_collide_with_dbops(conn: Any) -> None:
    """The app set is recorded as app_legacy/NNNN, so dbops' own 0001 is still pending."""
    assert [m.version for m in migrations.load_migrations("app_legacy")] == ["app_legacy/0001"]
    recorded = [r["version"] for r in _all(conn, "select version from dbops_schema_migrations")]
    assert recorded == ["app_legacy/0001"]
    assert "0001" in {m.version for m in migrations.load_migrations("dbops")}
