"""The reusable test databases (tests/dbpool.py): a reused clone is the template again."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.dbpool import DatabasePool, with_db


def _connect(server: str, name: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(with_db(server, name), autocommit=True)


@pytest.fixture
def pool(pg_server_url: str) -> Iterator[DatabasePool]:
    """A pool of its own (prefix dbops_pooltest), closed and its databases dropped after."""
    pool = DatabasePool(pg_server_url, prefix="dbops_pooltest")
    try:
        yield pool
    finally:
        pool.close()
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            for (left,) in admin.execute(
                "select datname from pg_database where datname like 'dbops_pooltest%'"
            ).fetchall():
                admin.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(left))
                )


def test_a_reused_clone_has_the_templates_rows_and_sequences(
    pg_server_url: str, pg_template: str, pool: DatabasePool
) -> None:
    name = pool.acquire(pg_template)
    with _connect(pg_server_url, name) as conn:
        fresh_rules = conn.execute("select count(*) from dbops_rate_limit_rules").fetchone()
        fresh_migrations = conn.execute("select count(*) from dbops_schema_migrations").fetchone()
        fresh_audit_id = conn.execute(
            "select nextval(pg_get_serial_sequence('dbops_audit_runs', 'id'))"
        ).fetchone()
        assert fresh_rules is not None and fresh_rules[0] > 0
        conn.execute("delete from dbops_rate_limit_rules")  # a template table, emptied
        conn.execute(
            "insert into jobs (id, customer_id, status) values (gen_random_uuid(), 'c', 'pending')"
        )
        for _ in range(3):
            conn.execute("select nextval(pg_get_serial_sequence('dbops_audit_runs', 'id'))")
    pool.release(name)

    assert pool.acquire(pg_template) == name  # reused, not cloned again
    with _connect(pg_server_url, name) as conn:
        assert conn.execute("select count(*) from jobs").fetchone() == (0,)
        assert conn.execute("select count(*) from dbops_rate_limit_rules").fetchone() == fresh_rules
        assert (
            conn.execute("select count(*) from dbops_schema_migrations").fetchone()
            == fresh_migrations
        )
        assert (
            conn.execute(
                "select nextval(pg_get_serial_sequence('dbops_audit_runs', 'id'))"
            ).fetchone()
            == fresh_audit_id
        )
        # A schema change makes the clone unusable for the next test: it is dropped.
        conn.execute("create table stray (x int)")
    pool.release(name)
    assert pool.acquire(pg_template) != name
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        gone = admin.execute(
            "select count(*) from pg_database where datname = %s", [name]
        ).fetchone()
    assert gone == (0,)


def test_the_catalog_stamp_only_skips_the_fingerprint_when_nothing_changed(
    pg_server_url: str, pg_template: str, pool: DatabasePool
) -> None:
    name = pool.acquire(pg_template)
    pool.release(name)  # the first reset proves it equal to the template: stamped
    assert name in pool.stamps
    assert pool.acquire(pg_template) == name
    with _connect(pg_server_url, name) as conn:
        # Changed and changed back: new catalog row versions, the same catalog. The
        # stamp differs, the fingerprint does not: the clone is reused.
        conn.execute("alter table jobs rename to jobs_renamed")
        conn.execute("alter table jobs_renamed rename to jobs")
    pool.release(name)
    assert pool.acquire(pg_template) == name
    with _connect(pg_server_url, name) as conn:
        conn.execute("grant select on jobs to public")  # a grant alone: no new table
    pool.release(name)
    assert name not in pool.stamps
    assert pool.acquire(pg_template) != name
