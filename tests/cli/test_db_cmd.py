from dbops.services.migrations import load_migrations
from tests.helpers import invoke


def test_migrate_dry_run_then_apply_then_idempotent(monkeypatch, empty_database_url, db):
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    from dbops.adapters.postgres import PostgresStore
    from dbops.services.migrations import migrate

    # dbops functions read the application tables, which a real deployment already has.
    migrate(store=PostgresStore(empty_database_url), which="app")
    expected = [f"{m.version}_{m.name}" for m in load_migrations()]

    status = invoke(["db", "status", "-o", "json"]).json
    assert {s["status"] for s in status} == {"pending"}

    dry = invoke(["db", "migrate", "--dry-run", "-o", "json"]).json
    assert dry["applied"] == expected and dry["dry_run"] is True
    assert {s["status"] for s in invoke(["db", "status", "-o", "json"]).json} == {"pending"}

    invoke(["db", "migrate", "-o", "json"], code=6)  # not confirmed off a TTY
    applied = invoke(["db", "migrate", "--yes", "-o", "json"]).json
    assert applied["applied"] == expected and applied["dry_run"] is False
    status = invoke(["db", "status", "-o", "json"]).json
    assert [s["status"] for s in status] == ["applied"] * len(expected)
    assert all(s["applied_at"] for s in status)

    again = invoke(["db", "migrate", "-o", "json"]).json
    assert again["applied"] == []


def test_migrate_table_output_says_up_to_date(db_env):
    result = invoke(["db", "migrate"])
    assert "up to date" in result.stderr


def test_functions_are_executable_by_service_role_only(db_env, db):
    rows = db.execute(
        """select p.proname,
                  has_function_privilege('service_role', p.oid, 'execute') as service,
                  has_function_privilege('anon', p.oid, 'execute') as anon,
                  has_function_privilege('authenticated', p.oid, 'execute') as authed
           from pg_proc p join pg_namespace n on n.oid = p.pronamespace
           where n.nspname = 'public' and p.proname like 'dbops\\_%'"""
    ).fetchall()
    assert rows
    assert all(r["service"] for r in rows)
    assert not any(r["anon"] or r["authed"] for r in rows)
    tables = db.execute(
        """select c.relname, c.relrowsecurity,
                  has_table_privilege('anon', c.oid, 'select') as anon
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = 'public' and c.relkind = 'r' and c.relname like 'dbops\\_%'"""
    ).fetchall()
    assert tables
    assert all(t["relrowsecurity"] and not t["anon"] for t in tables)


def test_print_emits_a_rerunnable_script_without_concurrently(empty_database_url, db):
    script = invoke(["db", "migrate", "--print"]).stdout
    assert "create table if not exists dbops_schema_migrations" in script
    assert "concurrently" not in script.lower()
    for m in load_migrations():
        assert f"-- migration {m.version}_{m.name}" in script
    # The printed script really installs dbops (as pasted into the SQL editor), twice.
    import psycopg

    from dbops.adapters.postgres import PostgresStore
    from dbops.services.migrations import migrate

    migrate(store=PostgresStore(empty_database_url), which="app")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(script.encode())
        conn.execute(script.encode())
        versions = conn.execute("select version from dbops_schema_migrations").fetchall()
    assert {v[0] for v in versions} >= {m.version for m in load_migrations()}


def test_changed_migration_is_reported(db_env, db):
    db.execute("update dbops_schema_migrations set checksum = 'tampered' where version = '0001'")
    rows = {r["version"]: r["status"] for r in invoke(["db", "status", "-o", "json"]).json}
    assert rows["0001"] == "changed"


def test_a_non_owner_operator_role_can_use_dbops_tables_but_api_roles_cannot(db_env, db):
    import uuid

    import psycopg

    db.execute(
        "insert into dbops_action_log (operator, command, outcome, started_at) "
        "values ('x', 'y', 'ok', now())"
    )
    role = f"dbops_op_{uuid.uuid4().hex[:8]}"
    db.execute(f"create role {role}")
    db.execute(f"grant select on dbops_action_log to {role}, anon")
    try:
        with psycopg.connect(db_env, autocommit=True) as conn:
            conn.execute(f"set role {role}")
            assert conn.execute("select count(*) from dbops_action_log").fetchone()[0] == 1
            conn.execute("reset role")
            conn.execute("set role anon")  # even with a grant slipped back
            assert conn.execute("select count(*) from dbops_action_log").fetchone()[0] == 0
    finally:
        db.execute(f"revoke select on dbops_action_log from {role}, anon")
        db.execute(f"drop role {role}")
