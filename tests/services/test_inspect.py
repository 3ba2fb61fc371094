"""dbops.services.inspect (`dbops db inspect`): every section against a real Postgres, a real
blocking scenario between two sessions, over both transports."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from dbops.adapters.postgres import PostgresStore
from dbops.errors import UsageError
from dbops.services import inspect
from dbops.services.redact import mask_sql

HOLDER_SECRET = "holder-secret-7731"
WAITER_SECRET = "waiter-secret-4242"


@dataclass
class Contention:
    holder_pid: int
    waiter_pid: int


def _until(condition: Any, what: str, thread: threading.Thread | None = None) -> None:
    """Poll `condition` (a database look-up) until true; fail after 15 s."""
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if thread is not None:
            assert thread.is_alive(), f"the waiting session ended before {what}"
            thread.join(0.02)  # gives the waiter a moment; the poll above is the sync


@pytest.fixture
def contention(database_url: str, db: Any) -> Iterator[Contention]:
    """Session A holds a row lock (idle in transaction); session B waits for it in a thread.
    Yields once pg_blocking_pids() shows B waiting on A."""
    db.execute("create table inspect_accounts (id int primary key, note text)")
    db.execute("insert into inspect_accounts values (1, 'start')")
    holder = psycopg.connect(database_url, autocommit=False, application_name="inspect-holder")
    waiter = psycopg.connect(database_url, autocommit=True, application_name="inspect-waiter")
    holder.execute(
        f"update inspect_accounts set note = '{HOLDER_SECRET}'"
        " where id = 1 and 314159265358 = 314159265358"
    )
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            waiter.execute(
                f"update inspect_accounts set note = '{WAITER_SECRET}'"
                " where id = 1 and 271828182845 > 0"
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    waiter_pid = waiter.info.backend_pid
    _until(
        lambda: db.execute("select pg_blocking_pids(%s) as b", (waiter_pid,)).fetchone()["b"],
        "the waiter to block",
        thread,
    )
    try:
        yield Contention(holder_pid=holder.info.backend_pid, waiter_pid=waiter_pid)
    finally:
        holder.rollback()
        thread.join(15)
        holder.close()
        waiter.close()
    assert not errors, errors


def test_blocking_shows_both_pids_queries_masked_and_the_wait(store: Any, contention: Contention):
    rows = inspect.section(store=store, name="blocking")
    [pair] = [
        r
        for r in rows
        if isinstance(r, inspect.BlockingRow) and r.blocked_pid == contention.waiter_pid
    ]
    assert pair.blocking_pid == contention.holder_pid
    assert pair.blocking_state == "idle in transaction"
    assert pair.wait_event == "Lock:transactionid"
    assert pair.wait_seconds is not None and pair.wait_seconds >= 0
    assert pair.blocked_query == ("update inspect_accounts set note = '?' where id = ? and ? > ?")
    assert pair.blocking_query == ("update inspect_accounts set note = '?' where id = ? and ? = ?")
    dumped = str([r.model_dump(mode="json") for r in rows])
    # Long literals: a short one ("4242") also turned up inside a backend pid (24242).
    for secret in ("secret", "314159265358", "271828182845"):
        assert secret not in dumped


def test_locks_show_the_granted_and_the_awaited_lock(store: Any, contention: Contention):
    rows = [r for r in inspect.section(store=store, name="locks") if isinstance(r, inspect.LockRow)]
    waiting = [r for r in rows if r.pid == contention.waiter_pid and not r.granted]
    assert [(r.locktype, r.mode) for r in waiting] == [("transactionid", "ShareLock")]
    held = {(r.relation, r.mode) for r in rows if r.pid == contention.holder_pid and r.granted}
    assert ("inspect_accounts", "RowExclusiveLock") in held
    assert rows[0].granted is False  # awaited locks first
    assert all(HOLDER_SECRET not in (r.query or "") for r in rows)


def test_long_running_honours_min_duration(store: Any, contention: Contention):
    rows = inspect.section(store=store, name="long-running", min_duration_seconds=0)
    by_pid = {r.pid: r for r in rows if isinstance(r, inspect.LongRunningRow)}
    assert by_pid[contention.holder_pid].state == "idle in transaction"
    assert by_pid[contention.waiter_pid].state == "active"
    assert by_pid[contention.waiter_pid].wait_event == "Lock:transactionid"
    assert by_pid[contention.holder_pid].application == "inspect-holder"
    assert WAITER_SECRET not in (by_pid[contention.waiter_pid].query or "")
    # Neither has been running for an hour.
    later = inspect.section(store=store, name="long-running", min_duration_seconds=3600)
    assert not {r.pid for r in later if isinstance(r, inspect.LongRunningRow)} & set(by_pid)


def test_every_section_returns_rows_with_the_documented_fields(store: Any, contention: Contention):
    report = inspect.inspect_all(store=store, min_duration_seconds=0)
    for name, rows in report.by_section().items():
        assert rows, f"{name}: no rows"
        for row in rows:
            assert list(row.model_dump(mode="json")) == inspect.columns(name), name
    assert {r.name for r in report.cache_hit} == {"tables", "indexes"}
    assert sum(r.connections for r in report.connections) >= 3  # ours, holder, waiter
    assert all(r.max_connections > 0 for r in report.connections)
    assert ("public", "inspect_accounts") in {(r.schema_, r.table) for r in report.vacuum}
    assert "inspect_accounts_pkey" in {r.index for r in report.index_usage}
    dumped = report.model_dump(mode="json")
    assert list(dumped) == [n.replace("-", "_") for n in inspect.SECTIONS]
    assert dumped["table_sizes"][0]["schema"]  # the JSON field is `schema`


@pytest.mark.parametrize("function", [f for f, _m, _q in inspect.SECTIONS.values()])
def test_each_function_runs_in_a_read_only_transaction(database_url: str, function: str):
    with psycopg.connect(database_url, row_factory=dict_row) as conn:  # one transaction
        args = "p_min_seconds => 0" if function == "dbops_inspect_long_running" else ""
        conn.execute(f"select * from {function}({args})")
        assert conn.execute("show transaction_read_only").fetchone()["transaction_read_only"] == (
            "on"
        )
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("create table inspect_should_not_exist (id int)")


def test_table_sizes_list_the_application_tables(variant_database_url: str, variant_db: Any):
    variant_db.execute(
        "insert into worker_heartbeats (worker_id, queue_name, status, last_heartbeat) "
        "values (gen_random_uuid(), 'main', 'idle', now())"
    )
    store = PostgresStore(variant_database_url)
    try:
        rows = inspect.section(store=store, name="table-sizes")
    finally:
        store.close()
    tables = {(r.schema_, r.table): r for r in rows if isinstance(r, inspect.TableSizeRow)}
    for name in ("jobs", "job_results", "worker_heartbeats", "queue_history"):
        row = tables[("public", name)]
        assert row.total_bytes == row.table_bytes + row.index_bytes + row.toast_bytes
        assert row.index_bytes > 0  # at least the primary key
    assert tables[("public", "worker_heartbeats")].table_bytes > 0
    sizes = [r.total_bytes for r in rows if isinstance(r, inspect.TableSizeRow)]
    assert sizes == sorted(sizes, reverse=True)


def test_bad_input(store: Any):
    with pytest.raises(UsageError, match="unknown section"):
        inspect.section(store=store, name="everything")
    with pytest.raises(UsageError, match="--min-duration"):
        inspect.section(store=store, name="long-running", min_duration_seconds=-1)


# --------------------------------------------------------------------------- masking
@pytest.mark.parametrize(
    ("query", "masked"),
    [
        ("select * from t where a = 'x''y' and b = 42", "select * from t where a = '?' and b = ?"),
        ("select E'it\\'s', 3.5e+10, -7, t1.c2", "select E'?', ?, -?, t1.c2"),
        ("select $1, $tag$secret$tag$, $$x$$", "select $1, $?$, $?$"),
        ('select "Col 1" from x -- pw=hunter2\nwhere y', 'select "Col 1" from x /*?*/ where y'),
        ("select /* 555-1234 */ 1", "select /*?*/ ?"),
        ("update t set a = 'never closed", "update t set a = '?'"),
        ("select\n\t  1", "select ?"),
    ],
)
def test_mask_sql(query: str, masked: str):
    assert mask_sql(query) == masked


def test_mask_sql_cuts_and_stays_linear():
    assert mask_sql("select " + "1, " * 500, limit=20) == "select ?, ?, ?, ?,…"
    assert mask_sql(None) is None
    # One pass over the text: these finish at once (the suite's timeout is what a quadratic
    # regression trips); the assertions are on the results.
    big = 1_000_000
    assert mask_sql("'" * 200_000, limit=big) == "'?'"
    assert mask_sql("/*" + "-- x" * 50_000, limit=big) == "/*?*/"
    assert mask_sql("1e" * 100_000, limit=big) == "?e"
    assert mask_sql('"' + "x" * 200_000, limit=big) == '"' + "x" * 200_000
    dollars = mask_sql("$a" * 100_000, limit=big)
    assert dollars is not None and dollars.startswith("$?$")
