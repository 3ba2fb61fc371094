"""dbops.services.roles: the rules behind the two roles, checked against the SQL itself."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dbops.adapters.postgres import PostgresStore
from dbops.errors import ConfigError, ExitCode, PermissionDeniedError
from dbops.services import migrations, roles

WRITE = re.compile(r"\b(insert\s+into|update|delete\s+from)\s+(?:public\.)?([a-z_][a-z0-9_]*)")
UPSERT = re.compile(
    r"insert\s+into\s+(?:public\.)?([a-z_][a-z0-9_]*)[^;]*?on\s+conflict[^;]*?do\s+update", re.S
)
PRIVILEGE = {"insert into": "INSERT", "update": "UPDATE", "delete from": "DELETE"}

# The functions behind the read commands (list, show, stats, stale, orphans, status,
# inspect, audit, log, db status / check...). They must be STABLE or IMMUTABLE: that is
# the rule that gives dbops_readonly EXECUTE on them.
READ_FUNCTIONS = [
    "dbops_ping",
    "dbops_migrations_applied",
    "dbops_action_log_list",
    "dbops_jobs_list",
    "dbops_jobs_show",
    "dbops_jobs_get",
    "dbops_jobs_stats",
    "dbops_jobs_stale",
    "dbops_jobs_orphans",
    "dbops_jobs_outbox_unsent",
    "dbops_jobs_retry_preview",
    "dbops_jobs_status_lookup",
    "dbops_resolve_ids",
    "dbops_dlq_stats_job_status",
    "dbops_dlq_monitor_get",
    "dbops_ratelimit_rules",
    "dbops_ratelimit_top",
    "dbops_ratelimit_status",
    "dbops_ratelimit_evaluate",
    "dbops_ratelimit_blocks",
    "dbops_ratelimit_429_ratio",
    "dbops_ratelimit_reset_preview",
    "dbops_ratelimit_cleanup_preview",
    "dbops_inspect_locks",
    "dbops_inspect_blocking",
    "dbops_inspect_long_running",
    "dbops_inspect_connections",
    "dbops_inspect_table_sizes",
    "dbops_inspect_index_usage",
    "dbops_inspect_cache_hit",
    "dbops_inspect_vacuum",
    "dbops_audit_observe",
    "dbops_audit_rls_hides",
    "dbops_audit_history",
    "dbops_audit_run",
    "dbops_audit_run_history",
    "dbops_audit_previous",
    "dbops_demo_summary",
    "dbops_overview",
    "dbops_app_check",
    "dbops_app_status_values",
]


def _function_bodies() -> dict[str, str]:
    """name -> body of every `create or replace function` in dbops' migrations."""
    bodies: dict[str, str] = {}
    for m in migrations.load_migrations():
        for match in re.finditer(
            r"create or replace function (dbops_[a-z0-9_]+)\(.*?\$\$(.*?)\$\$", m.sql, re.S
        ):
            bodies[match.group(1)] = bodies.get(match.group(1), "") + match.group(2)
    return bodies


def test_operator_privileges_cover_every_write_in_dbops_sql() -> None:
    needed: dict[str, set[str]] = {}
    for raw in _function_bodies().values():
        # row locks (`for update of j`) need UPDATE on tables these functions update anyway
        body = re.sub(r"for\s+update(\s+of\s+\w+)?", "", raw.lower())
        for verb, table in WRITE.findall(body):
            if table not in ("set",):  # `on conflict ... do update set`
                needed.setdefault(table, set()).add(PRIVILEGE[" ".join(verb.split())])
        for table in UPSERT.findall(body):
            needed.setdefault(table, set()).add("UPDATE")
    assert needed, "no writes found: the pattern is broken"
    granted = {t: set(p) for t, p in roles.OPERATOR_TABLE_PRIVILEGES.items()}
    missing = {t: sorted(p - granted.get(t, set())) for t, p in needed.items()}
    assert {t: p for t, p in missing.items() if p} == {}
    # And nothing beyond what the SQL needs (SELECT aside), so the map stays least-privilege.
    extra = {t: sorted(p - {"SELECT"} - needed.get(t, set())) for t, p in granted.items()}
    assert {t: p for t, p in extra.items() if p} == {}


def test_every_installed_dbops_table_has_operator_privileges(db: Any) -> None:
    tables = {
        r["relname"]
        for r in db.execute(
            "select relname from pg_class where relnamespace = 'public'::regnamespace "
            "and relkind in ('r', 'p') and relname like 'dbops\\_%'"
        )
    }
    assert tables and tables - set(roles.OPERATOR_TABLE_PRIVILEGES) == set()


def test_read_functions_are_stable_and_volatile_ones_write(db: Any) -> None:
    volatility = {
        r["proname"]: r["provolatile"]
        for r in db.execute(
            "select proname, provolatile from pg_proc "
            "where pronamespace = 'public'::regnamespace and proname like 'dbops\\_%'"
        )
    }
    assert {f: volatility.get(f) for f in READ_FUNCTIONS if volatility.get(f) not in "si"} == {}
    # No function is VOLATILE by accident: each one writes, or calls one that does.
    bodies = _function_bodies()
    volatile = {f for f, v in volatility.items() if v == "v"}
    for name in sorted(volatile):
        body = bodies[name].lower()
        writes = WRITE.search(body) or any(
            other in body for other in volatile - {name} if re.search(rf"\b{other}\(", body)
        )
        assert writes, f"{name} is VOLATILE but writes nothing: declare it STABLE"


def test_grants_follow_new_and_redeclared_functions_on_migrate(db_env: str, db: Any) -> None:
    store = PostgresStore(db_env)
    try:
        roles.apply(store=store)
        db.execute(
            "create function dbops_test_peek() returns int language sql stable as $$ select 1 $$"
        )
        migrations.migrate(store=store)
        assert _can(db, "dbops_readonly", "dbops_test_peek()")
        assert _can(db, "dbops_operator", "dbops_test_peek()")
        db.execute(
            "create or replace function dbops_test_peek() returns int language sql volatile "
            "as $$ select 1 $$"
        )
        migrations.migrate(store=store)
        assert not _can(db, "dbops_readonly", "dbops_test_peek()")  # volatile now
        assert _can(db, "dbops_operator", "dbops_test_peek()")
    finally:
        store.close()
    assert "dbops_readonly" in migrations.render_script()  # the SQL editor path too


def _can(db: Any, role: str, function: str) -> bool:
    row = db.execute(
        "select has_function_privilege(%s, %s, 'execute') as ok", [role, function]
    ).fetchone()
    return bool(row["ok"])


def test_readonly_role_holds_no_write_privilege(db_env: str, db: Any) -> None:
    store = PostgresStore(db_env)
    try:
        report = roles.apply(store=store)
    finally:
        store.close()
    readonly = next(r for r in report.roles if r.name == roles.READONLY)
    assert {(tuple(g.privileges), g.object_type) for g in readonly.grants} == {
        (("USAGE",), "schema"),
        (("SELECT",), "table"),
        (("EXECUTE",), "function"),
    }
    writable = db.execute(
        """select c.relname, p.privilege_type
           from pg_class c, lateral (select unnest(array['INSERT', 'UPDATE', 'DELETE',
                'TRUNCATE']) as privilege_type) p
           where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'
             and has_table_privilege('dbops_readonly', c.oid, p.privilege_type)"""
    ).fetchall()
    assert writable == []
    volatile_executable = db.execute(
        """select proname from pg_proc
           where pronamespace = 'public'::regnamespace and proname like 'dbops\\_%'
             and provolatile = 'v' and has_function_privilege('dbops_readonly', oid, 'execute')"""
    ).fetchall()
    assert volatile_executable == []


def test_apply_refuses_without_a_direct_connection() -> None:
    class RpcOnly:
        transport = "supabase"

    with pytest.raises(ConfigError, match="direct Postgres"):
        roles.apply(store=RpcOnly())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("primary", "expected"),
    [
        (
            "permission denied for function dbops_jobs_fail",
            "lacks EXECUTE on function dbops_jobs_fail",
        ),
        ("permission denied for table jobs", "lacks the privilege this needs on table jobs"),
        ("permission denied for sequence queue_history_id_seq", "USAGE on sequence"),
        ("permission denied for schema public", "lacks USAGE on schema public"),
        (
            'new row violates row-level security policy for table "dbops_audit_runs"',
            "new row violates row-level security policy",
        ),
    ],
)
def test_permission_denied_names_the_privilege(primary: str, expected: str) -> None:
    error = PermissionDeniedError.from_database(primary, "db.example:5432/app")
    assert isinstance(error, ConfigError) and error.exit_code == ExitCode.CONFIG
    assert expected in error.one_line() and "\n" not in error.one_line()
