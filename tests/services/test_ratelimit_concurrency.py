"""The atomic check under real concurrency: separate connections from many threads."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from dbops.adapters.postgres import PostgresStore
from dbops.errors import ConfigError
from dbops.services import ratelimit as rl


def hammer(
    database_url: str, calls: list[tuple[str, str]], *, isolation: str | None = None
) -> list[Any]:
    """One thread and one connection per call, all released at once by a barrier.

    With `isolation`, each call runs in an explicit transaction at that level whose snapshot
    is taken (by a first statement) before the barrier, as in the issue's report; errors the
    function raises are returned in place of rows.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [RuntimeError("no result")] * len(calls)

    def worker(i: int, identifier: str, endpoint: str) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
                if isolation is not None:
                    conn.execute(f"begin isolation level {isolation}")
                    conn.execute("select count(*) from rate_limit_requests")  # the snapshot
                barrier.wait(timeout=60)
                try:
                    results[i] = conn.execute(
                        "select * from dbops_rate_limit_hit(%s, %s)", (identifier, endpoint)
                    ).fetchone()
                except psycopg.Error as exc:
                    if isolation is None:
                        raise
                    results[i] = exc
                if isolation is not None:
                    conn.execute("rollback" if isinstance(results[i], Exception) else "commit")
        except BaseException as exc:
            barrier.abort()
            results[i] = exc

    threads = [
        threading.Thread(target=worker, args=(i, ident, ep)) for i, (ident, ep) in enumerate(calls)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [
        r
        for r in results
        if isinstance(r, BaseException) and not (isolation and isinstance(r, psycopg.Error))
    ]
    assert not errors, errors[:3]
    return results


def test_150_concurrent_hits_on_a_100_per_minute_rule_allow_exactly_100(database_url, db):
    results = hammer(database_url, [("ip:203.0.113.7", "/api/jobs")] * 150)
    allowed = [r for r in results if r["allowed"]]
    denied = [r for r in results if not r["allowed"]]
    assert len(allowed) == 100
    assert len(denied) == 50
    assert all(r["limit"] == 100 and r["rule_name"] == "public" for r in results)
    assert sorted(r["remaining"] for r in allowed) == list(range(100))
    assert all(r["retry_after_seconds"] >= 1 for r in denied)
    logged = db.execute("select count(*) as n from rate_limit_requests").fetchone()["n"]
    assert logged == 100
    counted = db.execute("select sum(denied) as n from dbops_rate_limit_denials").fetchone()["n"]
    assert counted == 50


def test_concurrent_identifiers_do_not_share_a_window(database_url, db):
    calls = [("ip:198.51.100.1", "/api/auth/login")] * 20 + [
        ("api_key:k-2", "/api/auth/login")
    ] * 20
    results = hammer(database_url, calls)
    first = [r["allowed"] for r in results[:20]]
    second = [r["allowed"] for r in results[20:]]
    assert first.count(True) == 5 and second.count(True) == 5


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_150_concurrent_hits_above_read_committed_are_refused(database_url, db, isolation):
    """Above READ COMMITTED the snapshot predates the lock (every call would count the same
    window: 20 of 20 were allowed at a limit of 5): the function refuses, with SQLSTATE 25000
    and a message naming the level and what to do, and records nothing."""
    results = hammer(database_url, [("ip:203.0.113.7", "/api/jobs")] * 150, isolation=isolation)
    assert all(isinstance(r, psycopg.Error) for r in results), [
        r for r in results if not isinstance(r, psycopg.Error)
    ][:3]
    assert {r.sqlstate for r in results} == {"25000"}
    message = results[0].diag.message_primary
    assert isolation.upper() in message
    assert "READ COMMITTED or autocommit" in message
    assert db.execute("select count(*) as n from rate_limit_requests").fetchone()["n"] == 0
    assert db.execute("select count(*) as n from dbops_rate_limit_denials").fetchone()["n"] == 0


def test_read_committed_transaction_and_read_only_status_still_work(database_url, db):
    with psycopg.connect(database_url, row_factory=dict_row) as conn:  # not autocommit
        conn.execute("begin isolation level read committed")
        row = conn.execute("select * from dbops_rate_limit_hit('ip:203.0.113.9', '/api/x')")
        assert row.fetchone()["allowed"]
    # status only reads: fine at any isolation level
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("begin isolation level serializable")
        rows = conn.execute(
            "select * from dbops_ratelimit_status('ip:203.0.113.9', '/api/x')"
        ).fetchall()
        conn.execute("commit")
    assert rows[0]["used"] == 1


def test_default_isolation_above_read_committed_is_one_config_error(database_url):
    """A connection whose default isolation is REPEATABLE READ (PGOPTIONS, the DSN, a role
    default): even an autocommit call is refused, and dbops reports it in one line (exit 3)."""
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    info["options"] = "-c default_transaction_isolation=repeatable\\ read"
    store = PostgresStore(psycopg.conninfo.make_conninfo(**info))
    try:
        with pytest.raises(ConfigError) as caught:
            rl.hit(store=store, identifier="ip:203.0.113.7", endpoint="/api/jobs")
    finally:
        store.close()
    line = caught.value.one_line()
    assert "\n" not in line
    assert "REPEATABLE READ" in line and "READ COMMITTED or autocommit" in line
    assert int(caught.value.exit_code) == 3
