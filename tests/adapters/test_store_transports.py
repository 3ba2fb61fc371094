"""The Store port on both transports: direct Postgres (psycopg) and Supabase (supabase-py
over HTTP to the PostgREST stub), against the same per-test database.

Rows come back in each transport's natural types (datetimes vs ISO strings); the
contract is that they validate into the same pydantic models.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from dbops.adapters.postgres import PostgresStore
from dbops.adapters.supabase import SupabaseStore
from dbops.errors import ConfigError, ExitCode, NotFoundError, UsageError
from dbops.services import migrations
from dbops.services.actionlog import ActionLogEntry, ActionRecorder, list_entries

WRITE_PARAMS: dict[str, Any] = {
    "p_operator": "alice",
    "p_caller_arn": None,
    "p_command": "dlq redrive",
    "p_arguments": {"queue": "jobs-dlq", "max": 5, "ids": [1, "two", None], "nested": {"a": 1}},
    "p_dry_run": True,
    "p_counts": {"moved": 3, "failed": 0},
    "p_outcome": "dry_run",
    "p_error": None,
    "p_started_at": datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
}


def test_transport_name(store):
    assert store.transport in ("postgres", "supabase")
    assert isinstance(store, PostgresStore if store.transport == "postgres" else SupabaseStore)


def test_ping(store):
    rows = store.call("dbops_ping")
    assert len(rows) == 1 and rows[0]["ok"] is True
    server_time = _as_datetime(rows[0]["server_time"])
    assert server_time.tzinfo is not None
    assert abs(datetime.now(UTC) - server_time) < timedelta(minutes=5)
    assert store.ping() > 0


def test_migrations_applied_lists_every_dbops_migration(store):
    rows = store.call("dbops_migrations_applied")
    applied = {r["version"]: r["checksum"] for r in rows}
    for m in migrations.load_migrations("dbops"):
        assert applied[m.version] == m.checksum
    assert all(_as_datetime(r["applied_at"]).tzinfo is not None for r in rows)


def test_migration_status_is_all_applied(store):
    states = migrations.status(store=store)
    assert states and {s.status for s in states} == {"applied"}
    assert all(s.applied_at and _as_datetime(s.applied_at) for s in states)


def test_action_log_write_and_list_round_trip(store):
    rows = store.call("dbops_action_log_write", WRITE_PARAMS)
    assert len(rows) == 1 and isinstance(rows[0]["id"], int)
    # started_at is in 2030: inside any look-back window.
    listed = store.call("dbops_action_log_list", {"p_since_seconds": 3600, "p_limit": 10})
    assert [r["id"] for r in listed] == [rows[0]["id"]]
    entry = ActionLogEntry.model_validate(listed[0])
    assert entry.operator == "alice" and entry.caller_arn is None
    assert entry.arguments == WRITE_PARAMS["p_arguments"]
    assert entry.counts == {"moved": 3, "failed": 0}
    assert entry.dry_run is True and entry.outcome == "dry_run" and entry.error is None
    assert entry.started_at == WRITE_PARAMS["p_started_at"]
    assert entry.finished_at.tzinfo is not None


def test_action_log_list_limit_and_order(store):
    base = datetime.now(UTC)
    for i in range(3):
        params = dict(WRITE_PARAMS, p_command=f"cmd {i}", p_dry_run=False, p_outcome="ok")
        params["p_started_at"] = base - timedelta(minutes=i)
        store.call("dbops_action_log_write", params)
    entries = list_entries(store=store, since_seconds=3600, limit=2)
    assert [e.command for e in entries] == ["cmd 0", "cmd 1"]
    assert all(e.dry_run is False for e in entries)


def test_action_recorder_writes_one_redacted_row(store, db):
    hook = "https://hooks.slack.com/services/T000/B000/SECRETHOOKVALUE"
    with ActionRecorder(
        store=store,
        command="ratelimit block",
        arguments={
            "identifier": "api_key:sk_live_0123456789abcdef",
            "slack_webhook_url": hook,
            "database": "postgresql://ops:hunter2pass@db.example.com/postgres",
            "minutes": 15,
        },
        operator="bob",
    ) as rec:
        rec.counts = {"blocked": 1}
    assert rec.written_to == "database"
    row = db.execute("select * from dbops_action_log").fetchone()
    assert row["command"] == "ratelimit block" and row["operator"] == "bob"
    assert row["outcome"] == "ok" and row["counts"] == {"blocked": 1}
    assert row["arguments"]["minutes"] == 15
    assert row["arguments"]["identifier"] == "api_key:****cdef"
    raw = json.dumps(row, default=str)
    for secret in ("sk_live_0123456789abcdef", "SECRETHOOKVALUE", "hunter2pass"):
        assert secret not in raw


def test_action_recorder_records_an_error_outcome(store, db):
    with (
        pytest.raises(NotFoundError),
        ActionRecorder(
            store=store, command="jobs requeue", arguments={"job": "x"}, operator="carol"
        ),
    ):
        raise NotFoundError("job x not found")
    row = db.execute("select outcome, error from dbops_action_log").fetchone()
    assert row == {"outcome": "error", "error": "job x not found"}


# --------------------------------------------------------------------------- errors
def test_unknown_function_is_a_configuration_error(store):
    with pytest.raises(ConfigError) as caught:
        store.call("dbops_does_not_exist", {"p_x": 1})
    assert caught.value.exit_code == ExitCode.CONFIG
    assert "dbops db migrate" in caught.value.one_line()
    assert "\n" not in caught.value.one_line()


def test_wrong_argument_names_are_a_configuration_error(store):
    with pytest.raises(ConfigError):
        store.call("dbops_action_log_list", {"p_since": 60, "p_limit": 1})


def test_not_found_and_bad_input_errcodes(store, db):
    db.execute(
        """
        create function dbops_test_lookup(p_id text) returns table (id text)
        language plpgsql as $$
        begin
            if p_id = 'bad' then
                raise exception 'p_id must not be bad' using errcode = '22023';
            end if;
            raise exception 'not found: job %', p_id using errcode = 'P0002';
        end $$;
        create function dbops_test_plain_raise() returns table (x int)
        language plpgsql as $$ begin raise exception 'refusing: limit too high'; end $$;
        """
    )
    with pytest.raises(NotFoundError) as nf:
        store.call("dbops_test_lookup", {"p_id": "42"})
    assert nf.value.one_line() == "not found: job 42"
    assert nf.value.exit_code == ExitCode.NOT_FOUND
    with pytest.raises(UsageError) as bad:
        store.call("dbops_test_lookup", {"p_id": "bad"})
    assert bad.value.one_line() == "p_id must not be bad"
    assert bad.value.exit_code == ExitCode.USAGE
    with pytest.raises(UsageError, match="refusing: limit too high"):
        store.call("dbops_test_plain_raise")


def test_invalid_input_syntax_is_a_usage_error(store):
    with pytest.raises(UsageError):
        store.call("dbops_action_log_list", {"p_since_seconds": "soon", "p_limit": 1})


def test_non_dbops_function_names_are_refused_before_any_call(store):
    with pytest.raises(ValueError):
        store.call("pg_sleep", {"seconds": 1})


# --------------------------------------------------------------------------- argument types
class Echo(BaseModel):
    i: int
    b: int
    t: str | None
    u: uuid.UUID
    ts: datetime
    j: dict[str, Any] | list[Any]
    flag: bool
    ids: list[int]
    names: list[str]
    with_default: str


ECHO_SQL = """
create function dbops_test_echo(
    p_i int, p_b bigint, p_t text, p_u uuid, p_ts timestamptz, p_j jsonb, p_flag boolean,
    p_ids int[], p_names text[], p_default text default 'fallback'
) returns table (
    i int, b bigint, t text, u uuid, ts timestamptz, j jsonb, flag boolean, ids int[],
    names text[], with_default text
) language sql as $$
    select p_i, p_b, p_t, p_u, p_ts, p_j, p_flag, p_ids, p_names, p_default
$$;
"""


@pytest.mark.parametrize(
    "values",
    [
        {
            "p_i": 7,
            "p_b": 9_007_199_254_740_993,
            "p_t": "héllo 'quoted' \"text\"",
            "p_u": uuid.UUID("4b0f0a6e-4a4a-4bda-9d0a-9f0d5e3d3b1a"),
            "p_ts": datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC),
            "p_j": {"nested": {"list": [1, 2.5, None, True]}, "s": "x"},
            "p_flag": True,
            "p_ids": [3, 1, 2],
            "p_names": ["a", "b c", "ü"],
        },
        {
            "p_i": -1,
            "p_b": 0,
            "p_t": None,
            "p_u": "00000000-0000-0000-0000-000000000000",
            "p_ts": "2024-01-01T00:00:00+02:00",
            "p_j": [1, "two", {"three": 3}],
            "p_flag": False,
            "p_ids": [],
            "p_names": [],
            "p_default": "given",
        },
    ],
    ids=["python-types", "strings-and-empties"],
)
def test_argument_types_round_trip(store, db, values):
    db.execute(ECHO_SQL)
    rows = store.call("dbops_test_echo", values)
    assert len(rows) == 1
    echo = Echo.model_validate(rows[0])
    assert echo.i == values["p_i"] and echo.b == values["p_b"]
    assert echo.t == values["p_t"]
    assert echo.u == uuid.UUID(str(values["p_u"]))
    expected_ts = values["p_ts"]
    if isinstance(expected_ts, str):
        expected_ts = datetime.fromisoformat(expected_ts)
    assert echo.ts == expected_ts
    assert echo.j == values["p_j"]
    assert echo.flag is values["p_flag"]
    assert echo.ids == values["p_ids"] and echo.names == values["p_names"]
    assert echo.with_default == values.get("p_default", "fallback")


def test_transports_return_rows_that_validate_the_same(database_url, supabase_url, supabase_key):
    postgres = PostgresStore(database_url)
    supabase = SupabaseStore(supabase_url, supabase_key)
    try:
        postgres.call("dbops_action_log_write", WRITE_PARAMS)
        supabase.call("dbops_action_log_write", dict(WRITE_PARAMS, p_operator="bob"))
        args = {"p_since_seconds": 3600, "p_limit": 10}
        via_postgres = [
            ActionLogEntry.model_validate(r) for r in postgres.call("dbops_action_log_list", args)
        ]
        via_supabase = [
            ActionLogEntry.model_validate(r) for r in supabase.call("dbops_action_log_list", args)
        ]
        assert via_postgres == via_supabase
        assert {e.operator for e in via_postgres} == {"alice", "bob"}
        assert set(postgres.call("dbops_ping")[0]) == set(supabase.call("dbops_ping")[0])
    finally:
        postgres.close()
        supabase.close()


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
