"""Versioned, idempotent migrations recorded in `dbops_schema_migrations`."""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Literal

from pydantic import BaseModel

from dbops.errors import ConfigError, DbopsError
from dbops.ports import SqlStore, Store

MigrationSet = Literal["dbops", "app", "app_legacy"]
NO_TRANSACTION = "-- dbops:no-transaction"

BOOTSTRAP = """
create table if not exists dbops_schema_migrations (
    version text primary key,
    checksum text not null,
    applied_at timestamptz not null default now()
);
"""

# Every dbops_* function is callable by the service role only (DESIGN.md section 1).
# Supabase grants new objects to `anon` and `authenticated` by default, which would
# expose them through PostgREST with the public key: revoke those too, and turn on RLS
# with a policy that admits every role but those two, so the tables stay closed to the
# API even if a grant slips back, while a non-owner operator role still works.
FINALIZE = """
do $$
declare
    fn regprocedure;
    tbl regclass;
    r text;
    has_service boolean := exists (select 1 from pg_roles where rolname = 'service_role');
begin
    for fn in
        select p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public' and p.proname like 'dbops\\_%'
    loop
        execute format('revoke all on function %s from public', fn);
        foreach r in array array['anon', 'authenticated'] loop
            if exists (select 1 from pg_roles where rolname = r) then
                execute format('revoke all on function %s from %I', fn, r);
            end if;
        end loop;
        if has_service then
            execute format('grant execute on function %s to service_role', fn);
        end if;
    end loop;
    for tbl in
        select c.oid::regclass from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relname like 'dbops\\_%' and c.relkind in ('r', 'S')
    loop
        execute format('revoke all on %s from public', tbl);
        foreach r in array array['anon', 'authenticated'] loop
            if exists (select 1 from pg_roles where rolname = r) then
                execute format('revoke all on %s from %I', tbl, r);
            end if;
        end loop;
        if has_service then
            execute format('grant all on %s to service_role', tbl);
        end if;
        if (select relkind from pg_class where oid = tbl) = 'r' then
            execute format('alter table %s enable row level security', tbl);
            -- Any operator role may use the table; Supabase's public API roles may not.
            if not exists (select 1 from pg_policy where polrelid = tbl
                           and polname = 'dbops_not_api_roles') then
                execute format(
                    'create policy dbops_not_api_roles on %s for all to public '
                    'using (current_user not in (''anon'', ''authenticated'')) '
                    'with check (current_user not in (''anon'', ''authenticated''))', tbl);
            end if;
        end if;
    end loop;
end;
$$;
"""


class Migration(BaseModel):
    version: str
    name: str
    checksum: str
    transactional: bool
    sql: str


class MigrationState(BaseModel):
    """One row of `dbops db status`."""

    version: str
    name: str
    status: Literal["applied", "pending", "changed"]
    applied_at: str | None = None


class MigrateResult(BaseModel):
    """`dbops db migrate -o json`."""

    applied: list[str]
    already_applied: int
    dry_run: bool
    transport: str


def load_migrations(which: MigrationSet = "dbops") -> list[Migration]:
    folder = resources.files("dbops.sql").joinpath(which)
    migrations = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", entry.name):
            continue
        text = entry.read_text()
        migrations.append(
            Migration(
                version=f"{which}/{entry.name[:4]}" if which != "dbops" else entry.name[:4],
                name=entry.name[5:-4],
                checksum=hashlib.sha256(text.encode()).hexdigest()[:16],
                transactional=NO_TRANSACTION not in text,
                sql=text,
            )
        )
    return migrations


def applied_versions(store: Store) -> dict[str, dict[str, str]]:
    """version -> {checksum, applied_at}; empty when dbops was never installed."""
    try:
        rows = store.call("dbops_migrations_applied")
    except ConfigError:
        return {}
    return {
        str(r["version"]): {"checksum": str(r["checksum"]), "applied_at": str(r["applied_at"])}
        for r in rows
    }


def status(*, store: Store, which: MigrationSet = "dbops") -> list[MigrationState]:
    applied = applied_versions(store)
    states = []
    for m in load_migrations(which):
        done = applied.get(m.version)
        if done is None:
            state: Literal["applied", "pending", "changed"] = "pending"
        elif done["checksum"] != m.checksum:
            state = "changed"
        else:
            state = "applied"
        states.append(
            MigrationState(
                version=m.version,
                name=m.name,
                status=state,
                applied_at=done["applied_at"] if done else None,
            )
        )
    return states


def pending(*, store: Store, which: MigrationSet = "dbops") -> list[Migration]:
    applied = applied_versions(store)
    return [m for m in load_migrations(which) if m.version not in applied]


def _record(m: Migration) -> str:
    return (
        "insert into dbops_schema_migrations (version, checksum) values "
        f"('{m.version}', '{m.checksum}') on conflict (version) do update "
        "set checksum = excluded.checksum, applied_at = now();\n"
    )


def migrate(*, store: Store, which: MigrationSet = "dbops", dry_run: bool = False) -> MigrateResult:
    if not hasattr(store, "execute_script"):
        raise ConfigError(
            "migrations need a direct Postgres connection (DATABASE_URL)",
            hint="on Supabase, run `dbops db migrate --print` and paste it into the SQL editor",
        )
    sql_store: SqlStore = store  # type: ignore[assignment]
    applied_before = applied_versions(store)
    todo = [m for m in load_migrations(which) if m.version not in applied_before]
    if not dry_run:
        sql_store.execute_script(BOOTSTRAP)
        for m in todo:
            try:
                if m.transactional:
                    sql_store.execute_script(m.sql + "\n" + _record(m))
                else:
                    sql_store.execute_script(m.sql, transactional=False)
                    sql_store.execute_script(_record(m))
            except DbopsError as exc:
                raise type(exc)(f"migration {m.version}_{m.name} failed: {exc.message}") from None
        sql_store.execute_script(FINALIZE)
    return MigrateResult(
        applied=[f"{m.version}_{m.name}" for m in todo],
        already_applied=len(applied_before),
        dry_run=dry_run,
        transport=store.transport,
    )


def render_script(which: MigrationSet = "dbops") -> str:
    """All migrations as one script for the Supabase SQL editor (re-runnable)."""
    parts = [
        "-- dbops migrations: paste into the Supabase SQL editor and run.",
        "-- Every statement is idempotent; re-running is safe.",
        BOOTSTRAP.strip(),
    ]
    for m in load_migrations(which):
        body = m.sql
        if not m.transactional:
            # The SQL editor runs one transaction, where CONCURRENTLY is not allowed.
            body = body.replace("concurrently ", "").replace("CONCURRENTLY ", "")
        parts.append(f"-- migration {m.version}_{m.name}\n{body.strip()}\n{_record(m).strip()}")
    parts.append(FINALIZE.strip())
    return "\n\n".join(parts) + "\n"
