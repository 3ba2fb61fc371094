"""PostgresStore specifics: connection settings, timeouts, no prepared statements, and
one-line, password-free errors (through the CLI too)."""

from __future__ import annotations

import pytest
from psycopg.conninfo import make_conninfo

from dbops.adapters.postgres import PostgresStore, describe_target
from dbops.errors import ConfigError, RemoteError
from tests.helpers import free_port, invoke, one_line_error

SLEEP_SQL = """
create function dbops_test_sleep(p_seconds float8) returns table (slept boolean)
language sql as $$ select true from pg_sleep(p_seconds) $$;
"""


@pytest.fixture
def pg(database_url):
    store = PostgresStore(database_url)
    yield store
    store.close()


def test_application_name_is_visible_in_pg_stat_activity(pg, db):
    pg.call("dbops_ping")
    pid = pg.connection().info.backend_pid
    row = db.execute(
        "select application_name, datname = current_database() as here "
        "from pg_stat_activity where pid = %s",
        [pid],
    ).fetchone()
    assert row == {"application_name": "dbops", "here": True}


def test_no_prepared_statements(pg):
    for _ in range(12):  # well past psycopg's default prepare threshold (5)
        pg.call("dbops_ping")
        pg.call("dbops_action_log_list", {"p_since_seconds": 60, "p_limit": 5})
    assert pg.connection().prepare_threshold is None
    rows = pg.query("select count(*) as n from pg_prepared_statements")
    assert rows == [{"n": 0}]


def test_statement_timeout_is_applied(database_url, db):
    db.execute(SLEEP_SQL)
    store = PostgresStore(database_url, statement_timeout_ms=250)
    try:
        assert store.query("show statement_timeout") == [{"statement_timeout": "250ms"}]
        with pytest.raises(RemoteError) as caught:
            store.call("dbops_test_sleep", {"p_seconds": 5})
        text = caught.value.one_line()
        assert "statement timeout" in text and "unreachable" not in text
        assert "DBOPS_STATEMENT_TIMEOUT_MS" in text
        # The connection survives a canceled statement.
        assert store.call("dbops_test_sleep", {"p_seconds": 0}) == [{"slept": True}]
    finally:
        store.close()


def test_default_statement_timeout_is_30s(pg):
    assert pg.query("show statement_timeout") == [{"statement_timeout": "30s"}]


def test_statement_timeout_per_call_for_poolers(database_url, db):
    """Through a transaction pooler the timeout is set per call, not for the session."""
    db.execute(SLEEP_SQL)
    store = PostgresStore(database_url, statement_timeout_ms=250, timeout_per_call=True)
    try:
        session_default = db.execute("show statement_timeout").fetchone()["statement_timeout"]
        assert store.query("show statement_timeout") == [{"statement_timeout": session_default}]
        with pytest.raises(RemoteError, match="statement timeout"):
            store.call("dbops_test_sleep", {"p_seconds": 5})
        assert store.call("dbops_test_sleep", {"p_seconds": 0}) == [{"slept": True}]
        assert store.call("dbops_ping")[0]["ok"] is True
        assert store.query("select count(*) as n from pg_prepared_statements") == [{"n": 0}]
    finally:
        store.close()


def test_pooler_port_sets_the_timeout_per_call():
    assert PostgresStore("postgresql://u:p@pooler.example.com:6543/postgres")._timeout_per_call
    assert not PostgresStore("postgresql://u:p@db.example.com:5432/postgres")._timeout_per_call


def test_options_in_the_dsn_are_kept(database_url):
    store = PostgresStore(make_conninfo(database_url, options="-c work_mem=5MB"))
    try:
        assert store.query("show work_mem") == [{"work_mem": "5MB"}]
        assert store.query("show statement_timeout") == [{"statement_timeout": "30s"}]
    finally:
        store.close()


def test_a_dropped_connection_is_reported_then_replaced(pg, db):
    pg.call("dbops_ping")
    db.execute("select pg_terminate_backend(%s)", [pg.connection().info.backend_pid])
    with pytest.raises(RemoteError) as caught:
        pg.call("dbops_ping")
    assert "\n" not in caught.value.one_line()
    assert pg.call("dbops_ping")[0]["ok"] is True


def test_describe_target_has_no_credentials():
    assert describe_target("postgresql://u:secretpw@db.example.com:6543/postgres") == (
        "db.example.com:6543/postgres"
    )
    assert describe_target("host=/tmp/sock dbname=x password=secretpw") == "local socket:5432/x"
    assert "secretpw" not in describe_target("postgres//u:secretpw@host/db")


@pytest.mark.parametrize(
    "password",
    [
        "se@cret/pass@word",
        "Pw:with@at@sign",
        "pct%zzQXJK",
        "hash#tag?query&amp",
        "sp ace d word",
        "a@b:c/d%e#f?g&h i@j",
    ],
)
def test_unencoded_passwords_never_reach_messages(password):
    """Userinfo is removed up to the last `@` before the DSN is parsed for the target, and
    libpq's own message (which quotes what it mis-split) is scrubbed of every 4+ character
    part of the password."""
    port = free_port()
    parts = {password[i : i + 4] for i in range(len(password) - 3)}
    for dsn in (
        f"postgresql://dbops:{password}@127.0.0.1:{port}/app",
        f"host=127.0.0.1 port={port} user=dbops password='{password}' dbname=app",
        f"host=127.0.0.1 port={port} user=dbops password={password} dbname=app",
    ):
        target = describe_target(dsn)
        assert target in (f"127.0.0.1:{port}/app", "the database"), (dsn, target)
        store = PostgresStore(dsn, connect_timeout=1)
        with pytest.raises((RemoteError, ConfigError)) as caught:
            store.call("dbops_ping")
        line = caught.value.one_line()
        assert "\n" not in line and "@" not in line.split("(")[0].replace("'****@", "")
        assert not [p for p in parts if p in line], (dsn, line)
        assert not [p for p in parts if p in str(caught.value)], (dsn, str(caught.value))
    # A URL whose password needs encoding says so.
    store = PostgresStore(f"postgresql://dbops:{password}@127.0.0.1:{port}/app", connect_timeout=1)
    with pytest.raises((RemoteError, ConfigError)) as caught:
        store.call("dbops_ping")
    assert "percent-encode" in caught.value.one_line()


# --------------------------------------------------------------------------- errors
def test_database_down_is_a_remote_error(monkeypatch):
    port = free_port()
    dsn = f"postgresql://u:secretpw@127.0.0.1:{port}/x"
    store = PostgresStore(dsn, connect_timeout=1)
    with pytest.raises(RemoteError) as caught:
        store.call("dbops_ping")
    text = caught.value.one_line()
    assert f"127.0.0.1:{port}/x unreachable" in text and "secretpw" not in text
    assert "\n" not in text

    monkeypatch.setenv("DATABASE_URL", dsn)
    result = invoke(["log"], code=5)
    line = one_line_error(result.stderr)
    assert "unreachable" in line
    assert "secretpw" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "dsn",
    [
        "postgres//u:secretpw@host/db",
        "postgresql://u:secretpw@[bad/x",
        "postgresql://u:secretpw@127.0.0.1:notaport/x",
        "host=127.0.0.1 password=secretpw foo=bar",
        "postgresql://u:secretpw@127.0.0.1:1/x?sslmode=bogus",
    ],
)
def test_malformed_database_url(monkeypatch, dsn):
    with pytest.raises((ConfigError, RemoteError)) as caught:
        PostgresStore(dsn, connect_timeout=1).call("dbops_ping")
    assert "secretpw" not in caught.value.one_line()

    monkeypatch.setenv("DATABASE_URL", dsn)
    result = invoke(["log", "-o", "json"], code=None)
    assert result.code in (3, 5), result.stderr
    one_line_error(result.stderr)
    assert "secretpw" not in result.stdout + result.stderr
    assert result.stdout == ""
