"""`dbops db check` and `dbops db migrate` against application schemas dbops did not create."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dbops.adapters.postgres import PostgresStore
from dbops.errors import ConfigError, RemoteError
from dbops.services import migrations
from tests.conftest import _admin, _with_db
from tests.helpers import invoke, one_line_error


def _app_db(url: str, *alterations: str) -> None:
    """The sandbox's standard application schema, then the given ALTERs."""
    migrations.migrate(store=PostgresStore(url), which="app")
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in alterations:
            conn.execute(statement.encode())


def _dbops_objects(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            """select p.proname::text from pg_proc p
               where p.pronamespace = 'public'::regnamespace and p.proname like 'dbops\\_%'
               union all
               select c.relname::text from pg_class c
               where c.relnamespace = 'public'::regnamespace and c.relname like 'dbops\\_%'"""
        ).fetchall()
    return [r[0] for r in rows]


def _exposed_to_api_roles(url: str) -> list[str]:
    """dbops objects that anon or authenticated could reach through PostgREST."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            """select p.proname::text from pg_proc p
               where p.pronamespace = 'public'::regnamespace and p.proname like 'dbops\\_%'
                 and (has_function_privilege('anon', p.oid, 'execute')
                      or has_function_privilege('authenticated', p.oid, 'execute'))
               union all
               select c.relname::text from pg_class c
               where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'v', 'S')
                 and (c.relname like 'dbops\\_%'
                      or obj_description(c.oid, 'pg_class') like 'dbops: created by dbops%')
                 and ((c.relkind = 'r' and not c.relrowsecurity)
                      or has_table_privilege('anon', c.oid, 'select')
                      or has_table_privilege('authenticated', c.oid, 'select')
                      or has_table_privilege('anon', c.oid, 'insert'))"""
        ).fetchall()
    return [r[0] for r in rows]


# --------------------------------------------------------------------------- db check
def test_check_standard_schema_is_compatible(db_env: str) -> None:
    report = invoke(["db", "check", "-o", "json"]).json
    assert report["compatible"] is True
    assert {"pending", "in_progress", "failed", "cancelled"} <= set(report["status_values"])
    cols = {(c["table"], c["column"]): c for c in report["columns"]}
    assert cols[("jobs", "customer_id")]["found"] == "text"
    assert cols[("jobs", "customer_id")]["ok"] is True
    assert cols[("jobs", None)]["found"] == "present"
    assert all(c["ok"] for c in report["columns"])
    assert set(report) == {"compatible", "columns", "status_values", "summary"}
    assert set(report["columns"][0]) == {"table", "column", "expected", "found", "ok", "note"}


def test_check_is_read_only_and_works_before_install(empty_database_url, monkeypatch) -> None:
    _app_db(empty_database_url)
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    before = _dbops_objects(empty_database_url)
    invoke(["db", "check", "-o", "json"], code=0)
    after = _dbops_objects(empty_database_url)
    assert after == before and not any(name.startswith("dbops_app") for name in after)


def test_check_table_output_lists_rows_and_statuses(db_env: str) -> None:
    result = invoke(["db", "check"])
    shown = result.stdout + result.stderr
    assert "table\tcolumn\texpected\tfound" in shown and "\njobs\t" in shown
    assert "jobs.status allows: cancelled, complete, completed, failed" in shown
    assert "compatible: every table and column it needs is usable" in shown


@pytest.mark.parametrize(
    ("alteration", "names"),
    [
        ("alter table jobs drop column updated_at cascade", "jobs.updated_at"),
        (
            "alter table jobs alter column customer_id type numeric using 0",
            "jobs.customer_id (cannot use numeric",
        ),
        ("drop table job_results", "job_results"),
        (
            "alter table queue_history add column source text not null",
            "queue_history.source",
        ),
        (
            "alter table jobs add constraint only_some check (status in ('pending', 'done'))",
            "jobs.status",
        ),
    ],
)
def test_check_names_what_it_cannot_use(empty_database_url, monkeypatch, alteration, names):
    if "only_some" in alteration:
        _app_db(
            empty_database_url,
            "alter table jobs drop constraint jobs_status_check",
            alteration,
        )
    else:
        _app_db(empty_database_url, alteration)
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    result = invoke(["db", "check", "-o", "json"], code=3)
    assert result.json["compatible"] is False
    bad = [c for c in result.json["columns"] if not c["ok"]]
    assert bad
    line = one_line_error(result.stderr)
    assert names in line
    # migrate refuses the same way, before it changes anything
    refused = invoke(["db", "migrate", "--yes"], code=3)
    assert names in one_line_error(refused.stderr)
    assert not any(n.startswith("dbops_app") for n in _dbops_objects(empty_database_url))


def test_a_database_that_is_not_the_backends(empty_database_url, monkeypatch) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("create table invoices (id int primary key, total numeric)")
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    for args in (["db", "check"], ["db", "migrate", "--yes"], ["db", "migrate", "--dry-run"]):
        result = invoke(args, code=3)
        line = one_line_error(result.stderr)
        assert "this database has no jobs table (is DATABASE_URL right?)" in line
    assert _dbops_objects(empty_database_url) == []


def test_check_over_postgrest_uses_the_installed_function(supabase_env: str) -> None:
    report = invoke(["db", "check", "-o", "json"]).json
    assert report["compatible"] is True
    assert any(c["column"] == "customer_id" for c in report["columns"])


# --------------------------------------------------------------------------- variants
PRODUCTION_SHAPED = [
    "alter table jobs alter column customer_id type uuid using gen_random_uuid()",
    "alter table jobs drop column package_size, drop column metadata, drop column started_at",
    "alter table jobs add column business_name text, add column email text",
    "alter table jobs drop constraint jobs_status_check",
    "alter table jobs add constraint jobs_status_check "
    "check (status in ('pending', 'in_progress', 'complete', 'completed', 'failed'))",
    "alter table jobs enable row level security",
    "create policy service_only on jobs for all to service_role using (true)",
    "drop trigger queue_history_no_update on queue_history",
    "alter table queue_history drop column id",
    "alter table queue_history add column id uuid primary key default gen_random_uuid()",
    "alter table queue_history alter column event drop not null",
    "alter table queue_history alter column details drop not null",
    "alter table queue_history alter column details drop default",
    "alter table queue_history add column status_from text, add column status_to text",
    "create trigger queue_history_no_update before update or delete on queue_history "
    "for each row execute function queue_history_append_only()",
    "alter table rate_limit_requests drop column id",
    "alter table rate_limit_requests add column id uuid primary key default gen_random_uuid()",
]


@pytest.fixture
def production_shaped(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    _app_db(empty_database_url, *PRODUCTION_SHAPED)
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    return empty_database_url


def test_migrate_and_read_a_production_shaped_schema(production_shaped: str) -> None:
    report = invoke(["db", "check", "-o", "json"]).json
    assert report["compatible"] is True, report["summary"]
    assert "cancelled" not in report["status_values"]
    absent = {c["column"] for c in report["columns"] if c["found"] == "missing"}
    assert absent == {"package_size", "metadata", "started_at"}
    invoke(["db", "migrate", "--yes", "-o", "json"])
    assert _exposed_to_api_roles(production_shaped) == []

    job_id, customer = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(production_shaped, autocommit=True) as conn:
        conn.execute(
            "insert into jobs (id, customer_id, status, updated_at) "
            "values (%s, %s, 'failed', now() - interval '1 hour')",
            [job_id, customer],
        )
        conn.execute(
            "insert into queue_history (job_id, status_from, status_to) "
            "values (%s, 'in_progress', 'failed')",
            [job_id],
        )
        conn.execute(
            "insert into queue_history (job_id, event, details) values (%s, 'queue_claimed', null)",
            [job_id],
        )
    listed = invoke(["jobs", "list", "--customer", str(customer), "-o", "json"]).json
    assert [j["id"] for j in listed] == [str(job_id)]
    assert listed[0]["customer_id"] == str(customer)
    assert listed[0]["package_size"] is None

    shown = invoke(["jobs", "show", str(job_id), "-o", "json"]).json
    events = {h["event"] for h in shown["history"]}
    assert events == {"in_progress -> failed", "queue_claimed"}
    assert all(isinstance(h["id"], str) and len(h["id"]) == 36 for h in shown["history"])

    invoke(["jobs", "stats", "-o", "json"])
    invoke(["jobs", "fail", str(job_id), "--reason", "x", "--yes", "-o", "json"], code=None)


def test_a_missing_required_column_after_install_is_one_line_exit_3(db_env: str, db) -> None:
    db.execute("alter table jobs drop column error_message")
    result = invoke(["jobs", "list", "-o", "json"], code=3)
    line = one_line_error(result.stderr)
    assert "error_message" in line and "dbops db check" in line


# --------------------------------------------------------------------------- safety
def _snapshot_every_step(server_url: str, steps: list[str]) -> dict[str, str]:
    """step -> a new database holding what one migrate run (app schema, then dbops' own
    set from the start) had committed just before that step: the state an interruption
    there leaves behind.

    One run, copied at each checkpoint (CREATE DATABASE ... TEMPLATE needs the source idle,
    so the run's connection is closed there and opens again for the next step), instead of
    one run from an empty database per step: a step's own work is all that is repeated.
    """
    source = f"dbops_i_{uuid.uuid4().hex[:10]}"
    copies: dict[str, str] = {}
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(source)))
    store = PostgresStore(_with_db(server_url, source))
    try:
        migrations.migrate(store=store, which="app")

        def copy(step: str) -> None:
            if step not in steps:
                return
            store.close()
            copies[step] = f"{source}_{len(copies)}"
            with _admin(server_url) as conn:
                conn.execute(
                    sql.SQL("create database {} template {}").format(
                        sql.Identifier(copies[step]), sql.Identifier(source)
                    )
                )

        migrations.migrate(store=store, checkpoint=copy)
    except BaseException:
        _drop(server_url, *copies.values())
        raise
    finally:
        store.close()
        _drop(server_url, source)
    assert list(copies) == steps
    return copies


def _drop(server_url: str, *names: str) -> None:
    with _admin(server_url) as conn:
        for name in names:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.mark.parametrize("how", ["crash_before", "timeout_inside"])
def test_migrate_interrupted_at_every_step_exposes_nothing_and_completes_later(
    pg_server_url: str, how: str
) -> None:
    steps = ["bootstrap", "check"] + [m.version for m in migrations.load_migrations()]
    # Each step's database starts where a run from the app schema alone stood before it.
    before = _snapshot_every_step(pg_server_url, steps)
    try:
        for index, stop_at in enumerate(steps):
            url = _with_db(pg_server_url, before[stop_at])
            store = PostgresStore(url)

            def checkpoint(step: str, store: Any = store, stop_at: str = stop_at) -> None:
                if step != stop_at:
                    return
                if how == "crash_before":
                    raise KeyboardInterrupt(step)
                # Every statement of this step now times out, inside its transaction.
                store.query("set statement_timeout = 1")
                store.query("set lock_timeout = 1")

            with pytest.raises((KeyboardInterrupt, RemoteError, ConfigError)):
                migrations.migrate(store=store, checkpoint=checkpoint)
                if how == "timeout_inside":
                    # a step too quick to time out: the point is the protection, go on
                    raise KeyboardInterrupt("finished")
            store.close()
            assert _exposed_to_api_roles(url) == [], f"step {index} {stop_at}"
            store = PostgresStore(url)
            done = migrations.migrate(store=store)
            assert _exposed_to_api_roles(url) == []
            states = migrations.status(store=store)
            store.close()
            assert {s.status for s in states} == {"applied"}, done
            _drop(pg_server_url, before.pop(stop_at))
    finally:
        _drop(pg_server_url, *before.values())


def test_an_invalid_index_is_dropped_and_rebuilt(db_env: str, db) -> None:
    db.execute("drop index jobs_in_progress_activity_idx")
    # What an interrupted CREATE INDEX CONCURRENTLY leaves behind.
    db.execute(
        "create index jobs_in_progress_activity_idx on jobs (updated_at) "
        "where status = 'in_progress'"
    )
    db.execute(
        "update pg_index set indisvalid = false "
        "where indexrelid = 'jobs_in_progress_activity_idx'::regclass"
    )
    result = invoke(["db", "migrate", "--yes", "-o", "json"]).json
    assert result["rebuilt_indexes"] == ["jobs_in_progress_activity_idx"]
    valid = db.execute(
        "select indisvalid from pg_index "
        "where indexrelid = 'jobs_in_progress_activity_idx'::regclass"
    ).fetchone()
    assert valid["indisvalid"] is True
    assert invoke(["db", "migrate", "-o", "json"]).json["rebuilt_indexes"] == []


def test_rate_limit_requests_created_by_dbops_is_protected(empty_database_url, monkeypatch):
    _app_db(empty_database_url, "drop table rate_limit_requests")
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    invoke(["db", "migrate", "--yes"])
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        row = conn.execute(
            "select relrowsecurity, has_table_privilege('anon', oid, 'select') as anon "
            "from pg_class where oid = 'rate_limit_requests'::regclass"
        ).fetchone()
    assert row == (True, False)
    assert _exposed_to_api_roles(empty_database_url) == []
